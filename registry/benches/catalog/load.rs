//! What loads of many calls cost: the metadata store's round trips per
//! publish, and a mixed load of concurrent clients on one or two replicas.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use algobay_proto::v1 as pb;

use super::data::*;
use super::{counting, pct, req, Served};

/// The metadata store's round trips per publish (weights inline), past the
/// replica's copy of the hot trees.
pub async fn round_trips(s: &Served, pg: &counting::Counting) {
    let mut catalog = pb::catalog_client::CatalogClient::new(s.ch.clone());
    let config = br#"{"layers":[4,3]}"#.to_vec();
    let n = 100;
    pg.take();
    for i in 0..n {
        let i = 50_000_000 + i;
        catalog
            .publish_model(req(
                publish_request(i, &tiny_mlp(i as u64), &config, true),
                &s.token,
            ))
            .await
            .unwrap();
    }
    let calls = pg.take();
    let total: u64 = calls.values().sum();
    println!(
        "metadata round trips per publish: {:.1} ({})",
        total as f64 / n as f64,
        calls
            .iter()
            .map(|(k, v)| format!("{k} {:.1}", *v as f64 / n as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// `clients` clients for `secs`, each a loop of get, search and (one in ten) a
/// publish, on the replicas in turn: (operations per second, p99 ms).
pub async fn mixed_load(
    replicas: &[&Served],
    clients: usize,
    secs: u64,
    base: usize,
    seeded: usize,
) -> (f64, f64) {
    let end = Instant::now() + Duration::from_secs(secs);
    let config = br#"{"layers":[4,3]}"#.to_vec();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let s = replicas[c % replicas.len()];
        let (ch, token, config) = (s.ch.clone(), s.token.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            let mut catalog = pb::catalog_client::CatalogClient::new(ch);
            let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
            let mut lat = Vec::new();
            let mut n = 0usize;
            while Instant::now() < end {
                let s = Instant::now();
                match n % 10 {
                    0 => {
                        let i = base + c * 1_000_000 + n;
                        let blob = tiny_mlp(i as u64);
                        catalog
                            .publish_model(req(publish_request(i, &blob, &config, true), &token))
                            .await
                            .unwrap();
                    }
                    k if k % 2 == 1 => {
                        let i = rng.gen_range(0..seeded);
                        let a = generated(i, &mut rand::rngs::StdRng::seed_from_u64(i as u64));
                        catalog
                            .get(req(
                                pb::GetRequest {
                                    reference: format!("{}@1.0.0", a.name),
                                    kind: pb::Kind::Model as i32,
                                },
                                &token,
                            ))
                            .await
                            .unwrap();
                    }
                    _ => {
                        catalog
                            .search(req(
                                pb::SearchRequest {
                                    text: WORDS[n % WORDS.len()].into(),
                                    page_size: 20,
                                    ..Default::default()
                                },
                                &token,
                            ))
                            .await
                            .unwrap();
                    }
                }
                lat.push(s.elapsed());
                n += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all.len() as f64 / secs as f64, pct(&mut all, 0.99))
}

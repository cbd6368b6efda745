//! The search index alone, in this process: the query mix of the API
//! benchmark run straight on a `SearchIndex` over the same generated models,
//! so that what the index costs shows apart from TLS, gRPC and the page's
//! conversion. Per kind of query: p50, p99 and the largest.

use std::time::{Duration, Instant};

use rand::SeedableRng;

use algobay_registry::domain::{Principal, Query, Role};
use algobay_registry::index::SearchIndex;

use super::data::*;

/// The API benchmark's search request `q` (of 1,000) as a query.
pub fn query_mix(q: usize) -> (&'static str, Query) {
    let mut r = Query {
        page_size: 20,
        viewer: Some(Principal {
            role: Role::Team,
            subject: "bench".into(),
            token_id: String::new(),
        }),
        ..Default::default()
    };
    let kind = match q % 5 {
        0 => {
            r.text = WORDS[q % WORDS.len()].into();
            "one word"
        }
        1 => {
            r.domain = DOMAINS[q % 4].0.into();
            "domain"
        }
        2 => {
            r.industry = INDUSTRIES[q % 8].into();
            r.text = "edge".into();
            "industry + word"
        }
        3 => {
            r.team = format!("team-{:02}", q % 60);
            "team"
        }
        _ => {
            r.text = format!("{} model", WORDS[(q * 7) % WORDS.len()]);
            r.task = "ocr".into();
            "two words + task"
        }
    };
    (kind, r)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Builds the index over `n` generated models and times the query mix on it;
/// returns the p99 over all queries (ms).
pub fn profile(n: usize) -> f64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let t = Instant::now();
    let mut index = SearchIndex::default();
    for i in 0..n {
        index.upsert(generated(i, &mut rng));
    }
    println!(
        "index built over {n} models in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let mut by_kind: Vec<(&str, Vec<Duration>)> = Vec::new();
    let mut all = Vec::new();
    for round in 0..3 {
        for q in 0..1000 {
            let (kind, query) = query_mix(q);
            let s = Instant::now();
            let page = index.search(&query);
            let took = s.elapsed();
            std::hint::black_box(page);
            if round == 0 {
                continue; // warm-up
            }
            all.push(took);
            match by_kind.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, v)) => v.push(took),
                None => by_kind.push((kind, vec![took])),
            }
        }
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        ms(v[((v.len() as f64 - 1.0) * p).round() as usize])
    };
    for (kind, v) in &mut by_kind {
        println!(
            "  {kind:<18} p50 {:>6.3} ms  p99 {:>6.3} ms  max {:>6.3} ms",
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0)
        );
    }
    let p99 = pct(&mut all, 0.99);
    println!(
        "  all                p50 {:>6.3} ms  p99 {p99:>6.3} ms",
        pct(&mut all, 0.5)
    );
    p99
}

//! Registry benchmarks over real gRPC with TLS on loopback. Prints figures; asserts nothing.
//!
//!   cargo bench -p algobay-registry --bench catalog
//!
//! - 100,000 models in the store (generated metadata), then publish, get and
//!   search latency and throughput through the API;
//! - the same operations against MLflow's model registry (a local tracking
//!   server on SQLite), side by side, when `build/pyref` has mlflow installed;
//! - upload and download of a 500 MB blob, and its re-upload (which sends nothing).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::Request;

use algobay_proto::v1 as pb;
use algobay_registry::blobs::LocalBlobStore;
use algobay_registry::domain::{Artifact, Kind, SystemClock};
use algobay_registry::service::Registry;
use algobay_registry::store::{Batch, KvStore, SledStore, Tree};
use algobay_runtime::{Digest, Runtime, RuntimeOptions, SecretKey};

const SEEDED: usize = 100_000;
const DOMAINS: [(&str, &[&str]); 4] = [
    (
        "vision",
        &["classification", "detection", "ocr", "segmentation"],
    ),
    ("speech", &["vad", "asr", "keyword-spotting"]),
    ("nlp", &["embedding", "ner", "sentiment"]),
    ("tabular", &["regression", "forecasting"]),
];
const INDUSTRIES: [&str; 8] = [
    "finance",
    "retail",
    "logistics",
    "manufacturing",
    "energy",
    "healthcare",
    "telecom",
    "agriculture",
];
const WORDS: [&str; 16] = [
    "fast",
    "robust",
    "tiny",
    "quantized",
    "edge",
    "multilingual",
    "accurate",
    "distilled",
    "industrial",
    "realtime",
    "compact",
    "pruned",
    "streaming",
    "calibrated",
    "lowlight",
    "noisy",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

fn req<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// A small, valid, distinct MLP in safetensors (4 inputs, 3 classes).
fn tiny_mlp(seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let w: Vec<f32> = (0..12).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let b: Vec<f32> = (0..3).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let header = r#"{"layers.0.bias":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"layers.0.weight":{"dtype":"F32","shape":[3,4],"data_offsets":[12,60]}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for v in b.iter().chain(&w) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn generated(i: usize, rng: &mut rand::rngs::StdRng) -> Artifact {
    let (domain, tasks) = DOMAINS[i % DOMAINS.len()];
    let task = tasks[(i / DOMAINS.len()) % tasks.len()];
    let words: Vec<&str> = (0..3)
        .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
        .collect();
    let name = format!("team-{:02}/{}-{}-{i}", i % 60, domain, task);
    Artifact {
        description: format!("A {} {} {} model for {task}", words[0], words[1], words[2]),
        license: "Apache-2.0".into(),
        industries: vec![INDUSTRIES[i % 8].into(), INDUSTRIES[(i / 8) % 8].into()],
        tags: vec![words[0].into()],
        domain: domain.into(),
        task: task.into(),
        architecture: "mlp".into(),
        published_unix: 1_800_000_000,
        published_by: "seed".into(),
        ..Artifact::new(
            Kind::Model,
            name,
            "1.0.0".into(),
            Digest::of(format!("model {i}").as_bytes()),
            60,
            "safetensors",
        )
    }
}

/// Publishing `bench/mlp-<i>` with the shared config blob, and its weights
/// either inline or uploaded before.
fn publish_request(i: usize, blob: &[u8], config: &[u8], inline: bool) -> pb::PublishModelRequest {
    pb::PublishModelRequest {
        blobs: if inline {
            vec![pb::InlineBlob {
                digest: Digest::of(blob).to_string(),
                data: blob.to_vec(),
            }]
        } else {
            Vec::new()
        },
        name: format!("bench/mlp-{i}"),
        version: "1.0.0".into(),
        digest: Digest::of(blob).to_string(),
        domain: "tabular".into(),
        task: "classification".into(),
        architecture: "mlp".into(),
        config_digest: Digest::of(config).to_string(),
        description: "a tiny benchmark classifier".into(),
        ..Default::default()
    }
}

struct Client {
    ch: Channel,
    token: String,
}

impl Client {
    async fn upload(&self, data: &[u8], chunk: usize) -> (u64, bool) {
        let d = Digest::of(data);
        let mut blobs = pb::blobs_client::BlobsClient::new(self.ch.clone());
        let st = blobs
            .stat(req(
                pb::StatBlobRequest {
                    digest: d.to_string(),
                    ..Default::default()
                },
                &self.token,
            ))
            .await
            .unwrap()
            .into_inner();
        if st.present {
            return (0, true);
        }
        let from = st.received as usize;
        let size = data.len() as u64;
        let ds = d.to_string();
        let chunks: Vec<pb::UploadChunk> = data[from..]
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| pb::UploadChunk {
                digest: ds.clone(),
                size,
                offset: (from + i * chunk) as u64,
                data: c.to_vec(),
                chunk_digest: String::new(),
            })
            .collect();
        blobs
            .upload(req(tokio_stream::iter(chunks), &self.token))
            .await
            .unwrap();
        ((data.len() - from) as u64, false)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    println!(
        "algobay-registry benchmarks ({} cores)\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // ---------------------------------------------------------------- seed
    let kv = Arc::new(SledStore::open(&dir.path().join("meta")).unwrap());
    let t = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for start in (0..SEEDED).step_by(1000) {
        let mut b = Batch::new();
        for i in start..(start + 1000).min(SEEDED) {
            let a = generated(i, &mut rng);
            b = b
                .put(Tree::Artifacts, a.key(), serde_json::to_vec(&a).unwrap())
                .put(
                    Tree::Digests,
                    format!("{}/{}", a.digest, a.key()),
                    Vec::new(),
                );
        }
        assert!(kv.commit(b).unwrap());
    }
    println!(
        "seeded {SEEDED} generated models in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let blobs = Arc::new(LocalBlobStore::open(&dir.path().join("blobs"), 2 << 30).unwrap());
    let runtime = Arc::new(
        Runtime::new(RuntimeOptions {
            cache_dir: None,
            ort_library: None,
            ort_threads: 1,
            stage_limits_cap: None,
            max_batch: 0,
        })
        .unwrap(),
    );
    let t = Instant::now();
    let registry = Arc::new(
        Registry::open(
            kv.clone() as Arc<dyn KvStore>,
            blobs,
            runtime,
            Arc::new(SystemClock),
        )
        .unwrap(),
    );
    println!(
        "registry opened (search index rebuilt over {SEEDED} models) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let op = registry.bootstrap_operator().unwrap().unwrap();
    let (tls, _) =
        algobay_registry::tls::TlsIdentity::self_signed_in(&dir.path().join("tls"), &[]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cert = tls.cert_pem.clone();
    tokio::spawn(algobay_registry::server::serve(
        listener,
        registry.clone(),
        Some(tls),
        algobay_registry::metrics::Metrics::new(),
        std::future::pending(),
    ));
    let ch = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(cert))
                .domain_name("localhost"),
        )
        .unwrap()
        .initial_stream_window_size(4 << 20)
        .initial_connection_window_size(8 << 20)
        .connect()
        .await
        .unwrap();
    let mut admin = pb::admin_client::AdminClient::new(ch.clone());
    admin
        .create_team(req(
            pb::CreateTeamRequest {
                name: "bench".into(),
                display_name: "Bench".into(),
                signing_key: SecretKey::generate().public().to_string(),
            },
            &op,
        ))
        .await
        .unwrap();
    let token = admin
        .create_token(req(
            pb::CreateTokenRequest {
                role: pb::Role::Team as i32,
                subject: "bench".into(),
                ttl_seconds: 0,
                description: String::new(),
            },
            &op,
        ))
        .await
        .unwrap()
        .into_inner()
        .token;
    let client = Client {
        ch: ch.clone(),
        token: token.clone(),
    };
    let mut catalog = pb::catalog_client::CatalogClient::new(ch.clone());
    let config = br#"{"layers":[4,3]}"#.to_vec();
    client.upload(&config, 1 << 20).await;

    // ---------------------------------------------------------------- publish / get / search
    println!(
        "\n## catalog operations with {SEEDED} models in the store (gRPC over TLS, one client)"
    );
    let n_pub = 1000;
    let mut pub_lat = Vec::new();
    let t = Instant::now();
    // As the SDK does for small files: the weights travel inside the publish call.
    for i in 0..n_pub {
        let blob = tiny_mlp(i as u64);
        let s = Instant::now();
        catalog
            .publish_model(req(publish_request(i, &blob, &config, true), &token))
            .await
            .unwrap();
        pub_lat.push(s.elapsed());
    }
    let pub_rate = n_pub as f64 / t.elapsed().as_secs_f64();
    println!(
        "publish (weights inline, validate, store; one call): {pub_rate:.0} /s, p50 {:.2} ms, p99 {:.2} ms",
        pct(&mut pub_lat, 0.5),
        pct(&mut pub_lat, 0.99)
    );
    let mut lat = Vec::new();
    let t = Instant::now();
    for i in n_pub..2 * n_pub {
        let blob = tiny_mlp(i as u64);
        let s = Instant::now();
        client.upload(&blob, 1 << 20).await;
        catalog
            .publish_model(req(publish_request(i, &blob, &config, false), &token))
            .await
            .unwrap();
        lat.push(s.elapsed());
    }
    println!(
        "publish after a separate upload (stat, upload, publish): {:.0} /s, p50 {:.2} ms, p99 {:.2} ms",
        n_pub as f64 / t.elapsed().as_secs_f64(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );

    // Sixteen publishers at once, as many teams' pipelines would.
    let conc = 16;
    let per = 125;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conc {
        let ch = ch.clone();
        let token = token.clone();
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let mut catalog = pb::catalog_client::CatalogClient::new(ch);
            for j in 0..per {
                let i = 100_000 + c * per + j;
                let blob = tiny_mlp(i as u64);
                catalog
                    .publish_model(req(publish_request(i, &blob, &config, true), &token))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let pub_conc_rate = (conc * per) as f64 / t.elapsed().as_secs_f64();
    println!("publish with {conc} concurrent publishers: {pub_conc_rate:.0} /s");

    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut get_lat = Vec::new();
    let t = Instant::now();
    for _ in 0..5000 {
        let i = rng.gen_range(0..SEEDED);
        let a = generated(i, &mut rand::rngs::StdRng::seed_from_u64(i as u64));
        let s = Instant::now();
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
        get_lat.push(s.elapsed());
    }
    let get_rate = 5000.0 / t.elapsed().as_secs_f64();
    println!(
        "get by reference: {get_rate:.0} /s, p50 {:.2} ms, p99 {:.2} ms",
        pct(&mut get_lat, 0.5),
        pct(&mut get_lat, 0.99)
    );

    let mut search_lat = Vec::new();
    let t = Instant::now();
    for q in 0..1000 {
        let mut r = pb::SearchRequest {
            page_size: 20,
            ..Default::default()
        };
        match q % 5 {
            0 => r.text = WORDS[q % WORDS.len()].into(),
            1 => r.domain = DOMAINS[q % 4].0.into(),
            2 => {
                r.industry = INDUSTRIES[q % 8].into();
                r.text = "edge".into();
            }
            3 => r.team = format!("team-{:02}", q % 60),
            _ => {
                r.text = format!("{} model", WORDS[(q * 7) % WORDS.len()]);
                r.task = "ocr".into();
            }
        }
        let s = Instant::now();
        catalog.search(req(r, &token)).await.unwrap();
        search_lat.push(s.elapsed());
    }
    let search_rate = 1000.0 / t.elapsed().as_secs_f64();
    println!(
        "search (text, domain, industry, team, task filters; page of 20 with total count): {search_rate:.0} /s, p50 {:.2} ms, p99 {:.2} ms",
        pct(&mut search_lat, 0.5),
        pct(&mut search_lat, 0.99)
    );
    let by_name_lat = {
        let mut v = Vec::new();
        for i in 0..1000 {
            let s = Instant::now();
            catalog
                .search(req(
                    pb::SearchRequest {
                        text: format!("bench/mlp-{i}"),
                        page_size: 20,
                        ..Default::default()
                    },
                    &token,
                ))
                .await
                .unwrap();
            v.push(s.elapsed());
        }
        v
    };
    let ours = (
        pub_rate,
        get_rate,
        1000.0 / by_name_lat.iter().map(|d| d.as_secs_f64()).sum::<f64>(),
    );
    println!("search by name: {:.0} /s", ours.2);

    // ---------------------------------------------------------------- mlflow
    let python = root().join("build/pyref/bin/python");
    let has_mlflow = std::process::Command::new(&python)
        .args(["-c", "import mlflow"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if has_mlflow {
        println!("\n## the same operations against MLflow's model registry (local tracking server, SQLite backend)");
        let out = std::process::Command::new(&python)
            .arg(root().join("registry/benches/mlflow_bench.py"))
            .arg(dir.path().join("mlflow"))
            .arg("300")
            .output()
            .unwrap();
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let (mp, mg, ms) = (
                v["register_per_s"].as_f64().unwrap(),
                v["get_per_s"].as_f64().unwrap(),
                v["search_per_s"].as_f64().unwrap(),
            );
            let mpc = v["register_concurrent_per_s"].as_f64().unwrap();
            println!("mlflow: register model version {mp:.0} /s, with 16 concurrent clients {mpc:.0} /s, get {mg:.0} /s, search by name {ms:.0} /s");
            println!(
                "ratio (algobay / mlflow): publish {:.1}x, publish with 16 concurrent clients {:.1}x, get {:.1}x, search {:.1}x",
                ours.0 / mp,
                pub_conc_rate / mpc,
                ours.1 / mg,
                ours.2 / ms
            );
            println!(
                "publish throughput, each at its best setting (algobay {:.0} /s, mlflow {:.0} /s): {:.1}x",
                ours.0.max(pub_conc_rate),
                mp.max(mpc),
                ours.0.max(pub_conc_rate) / mp.max(mpc)
            );
        } else {
            println!(
                "mlflow run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    } else {
        println!("\nmlflow: skipped (install it with build/pyref/bin/pip install mlflow)");
    }

    // ---------------------------------------------------------------- blobs
    println!("\n## a 500 MB blob over TLS on loopback");
    let mut big = vec![0u8; 500 << 20];
    rand::rngs::StdRng::seed_from_u64(3).fill(&mut big[..]);
    let d = Digest::of(&big);
    let t = Instant::now();
    let (sent, _) = client.upload(&big, 4 << 20).await;
    let up = t.elapsed().as_secs_f64();
    println!(
        "upload: {:.0} MB/s ({} bytes in {:.2} s, digest verified before it is stored)",
        sent as f64 / up / 1e6,
        sent,
        up
    );
    let t = Instant::now();
    let mut blobs =
        pb::blobs_client::BlobsClient::new(ch.clone()).max_decoding_message_size(16 << 20);
    let mut s = blobs
        .download(req(
            pb::DownloadRequest {
                digest: d.to_string(),
                offset: 0,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut got = 0usize;
    while let Some(c) = s.message().await.unwrap() {
        got += c.data.len();
    }
    let down = t.elapsed().as_secs_f64();
    println!(
        "download: {:.0} MB/s ({got} bytes in {down:.2} s, hashed as it streams)",
        got as f64 / down / 1e6
    );
    let t = Instant::now();
    let (sent, existed) = client.upload(&big, 4 << 20).await;
    println!(
        "re-upload of the same blob: {sent} bytes sent (present: {existed}) in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
}

//! Registry benchmarks over real gRPC with TLS on loopback. Prints figures; asserts nothing.
//!
//!   cargo bench -p algobay-registry --bench catalog
//!
//! - 100,000 models in the store (generated metadata), then publish, get and
//!   search latency and throughput through the API;
//! - the same operations against MLflow's model registry (a local tracking
//!   server on SQLite), side by side, when `build/pyref` has mlflow installed;
//! - upload and download of a 500 MB blob, and its re-upload (which sends nothing);
//! - all of it again on PostgreSQL + an S3-compatible server (throwaway ones:
//!   `initdb` and `tools/s3-server` over s3s-fs, which the set-up installs), side by side with sled
//!   and a local folder, with what each store call costs;
//! - two replicas on PostgreSQL + S3 against one, under the same concurrent load.
//!
//! `cargo bench -p algobay-registry --bench catalog [-- --models 100000 --big-mb 500]`;
//! `-- --index-only` times the search index alone, in this process;
//! `-- --catalog-only` stops after the catalog operations on sled and MLflow's.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod counting;
mod data;
mod index;
mod load;

use data::*;
use rand::{Rng, SeedableRng};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::Request;

use algobay_proto::v1 as pb;
use algobay_registry::blobs::{BlobStore, LocalBlobStore, ObjectBlobStore};
use algobay_registry::domain::SystemClock;
use algobay_registry::service::Registry;
use algobay_registry::store::{Batch, KvStore, SledStore, Tree};
use algobay_runtime::{Digest, Runtime, RuntimeOptions, SecretKey};

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

/// A number from the command line (`--name N`).
fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One pair of stores the registry runs on.
struct Engine {
    name: &'static str,
    kv: Arc<dyn KvStore>,
    blobs: Arc<dyn BlobStore>,
    /// The same blobs through another handle, which has read nothing yet
    /// (so a read goes to the store, not to a copy kept in memory).
    cold: Arc<dyn BlobStore>,
}

/// A registry served over TLS on loopback, with a team token.
struct Served {
    registry: Arc<Registry>,
    ch: Channel,
    token: String,
    client: Client,
}

/// Figures of one engine, for the side-by-side table.
#[derive(Default)]
struct Figures {
    seed_s: f64,
    open_s: f64,
    publish: (f64, f64, f64),
    upload_publish: (f64, f64, f64),
    concurrent: f64,
    get: (f64, f64, f64),
    search: (f64, f64, f64),
    by_name: f64,
    big_up: f64,
    big_down: f64,
    kv_get: f64,
    kv_commit: f64,
    blob_put: f64,
    blob_read: f64,
}

fn runtime() -> Arc<Runtime> {
    Arc::new(
        Runtime::new(RuntimeOptions {
            cache_dir: None,
            ort_library: None,
            ort_threads: 1,
            stage_limits_cap: None,
            max_batch: 0,
        })
        .unwrap(),
    )
}

/// The median time of a 4 KiB append made durable (`fdatasync`) in `dir`:
/// the least a commit that survives a crash can take on this disk.
fn fsync_ms(dir: &std::path::Path) -> f64 {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let mut lat: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&[7u8; 4096]).unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    pct(&mut lat, 0.5)
}

/// Writes `n` generated models straight into the store, 1,000 a batch.
fn seed(kv: &dyn KvStore, n: usize) -> f64 {
    let t = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for start in (0..n).step_by(1000) {
        let mut b = Batch::new();
        for i in start..(start + 1000).min(n) {
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
    t.elapsed().as_secs_f64()
}

/// Opens a registry on `e` and serves it; `first` makes the operator and the team.
async fn serve_on(e: &Engine, dir: &std::path::Path, op: Option<&str>) -> (Served, f64, String) {
    let t = Instant::now();
    let registry = Arc::new(
        Registry::open(
            e.kv.clone(),
            e.blobs.clone(),
            runtime(),
            Arc::new(SystemClock),
        )
        .unwrap(),
    );
    let open_s = t.elapsed().as_secs_f64();
    let op = match op {
        Some(op) => op.to_owned(),
        None => registry.bootstrap_operator().unwrap().unwrap(),
    };
    let (tls, _) =
        algobay_registry::tls::TlsIdentity::self_signed_in(&dir.join("tls"), &[]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let cert = tls.cert_pem.clone();
    tokio::spawn(algobay_registry::server::serve(
        listener,
        registry.clone(),
        Some(tls),
        algobay_registry::metrics::Metrics::new(),
        algobay_net::Limits::default(),
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
    // The team may be there already (another replica of the same stores made it).
    let _ = admin
        .create_team(req(
            pb::CreateTeamRequest {
                name: "bench".into(),
                display_name: "Bench".into(),
                signing_key: SecretKey::generate().public().to_string(),
            },
            &op,
        ))
        .await;
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
    (
        Served {
            registry,
            ch,
            token,
            client,
        },
        open_s,
        op,
    )
}

/// Publish, get and search through the API; `base` numbers this run's new models.
async fn operations(s: &Served, seeded: usize, base: usize, f: &mut Figures) {
    let (ch, token, client) = (&s.ch, &s.token, &s.client);
    let mut catalog = pb::catalog_client::CatalogClient::new(ch.clone());
    let config = br#"{"layers":[4,3]}"#.to_vec();
    client.upload(&config, 1 << 20).await;
    let big_config = br#"{"layers":[128,256]}"#.to_vec();
    client.upload(&big_config, 1 << 20).await;
    let n_pub = 1000;
    let mut lat = Vec::new();
    let t = Instant::now();
    // As the SDK does for small files: the weights travel inside the publish call.
    for i in base..base + n_pub {
        let blob = tiny_mlp(i as u64);
        let s = Instant::now();
        catalog
            .publish_model(req(publish_request(i, &blob, &config, true), token))
            .await
            .unwrap();
        lat.push(s.elapsed());
    }
    f.publish = (
        n_pub as f64 / t.elapsed().as_secs_f64(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
    );
    println!(
        "publish (weights inline, validate, store; one call): {:.0} /s, p50 {:.2} ms, p99 {:.2} ms",
        f.publish.0, f.publish.1, f.publish.2
    );
    let n_up = 300;
    let mut lat = Vec::new();
    let t = Instant::now();
    for i in base + n_pub..base + n_pub + n_up {
        // Past the inline limit: the weights go to the blob store first.
        let blob = mlp(i as u64, 128, 256);
        let s = Instant::now();
        client.upload(&blob, 1 << 20).await;
        let mut r = publish_request(i, &blob, &big_config, false);
        r.config_digest = Digest::of(&big_config).to_string();
        catalog
            .publish_model(req(r, token))
            .await
            .unwrap_or_else(|e| panic!("publish after upload: {e}"));
        lat.push(s.elapsed());
    }
    f.upload_publish = (
        n_up as f64 / t.elapsed().as_secs_f64(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
    );
    println!(
        "publish after a separate upload of 128 KiB (stat, upload to the blob store, publish): {:.0} /s, p50 {:.2} ms, p99 {:.2} ms",
        f.upload_publish.0, f.upload_publish.1, f.upload_publish.2
    );
    // Sixteen publishers at once, as many teams' pipelines would.
    let (conc, per) = (16, 125);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conc {
        let (ch, token, config) = (ch.clone(), token.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            let mut catalog = pb::catalog_client::CatalogClient::new(ch);
            for j in 0..per {
                let i = base + 100_000 + c * per + j;
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
    f.concurrent = (conc * per) as f64 / t.elapsed().as_secs_f64();
    println!(
        "publish with {conc} concurrent publishers: {:.0} /s",
        f.concurrent
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let mut lat = Vec::new();
    let t = Instant::now();
    for _ in 0..5000 {
        let i = rng.gen_range(0..seeded);
        let a = generated(i, &mut rand::rngs::StdRng::seed_from_u64(i as u64));
        let s = Instant::now();
        catalog
            .get(req(
                pb::GetRequest {
                    reference: format!("{}@1.0.0", a.name),
                    kind: pb::Kind::Model as i32,
                },
                token,
            ))
            .await
            .unwrap();
        lat.push(s.elapsed());
    }
    f.get = (
        5000.0 / t.elapsed().as_secs_f64(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
    );
    println!(
        "get by reference: {:.0} /s, p50 {:.2} ms, p99 {:.2} ms",
        f.get.0, f.get.1, f.get.2
    );
    let mut lat = Vec::new();
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
        catalog.search(req(r, token)).await.unwrap();
        lat.push(s.elapsed());
    }
    f.search = (
        1000.0 / t.elapsed().as_secs_f64(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
    );
    println!(
        "search (text, domain, industry, team, task filters; page of 20 with total count): {:.0} /s, p50 {:.2} ms, p99 {:.2} ms",
        f.search.0, f.search.1, f.search.2
    );
    let t = Instant::now();
    for i in 0..1000 {
        catalog
            .search(req(
                pb::SearchRequest {
                    text: format!("bench/mlp-{}", base + i),
                    page_size: 20,
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap();
    }
    f.by_name = 1000.0 / t.elapsed().as_secs_f64();
    println!("search by name: {:.0} /s", f.by_name);
}

/// Upload, download and re-upload of one big blob.
async fn big_blob(s: &Served, mb: usize, f: &mut Figures) {
    let mut big = vec![0u8; mb << 20];
    rand::rngs::StdRng::seed_from_u64(3 + mb as u64).fill(&mut big[..]);
    let d = Digest::of(&big);
    let t = Instant::now();
    let (sent, _) = s.client.upload(&big, 4 << 20).await;
    let up = t.elapsed().as_secs_f64();
    f.big_up = sent as f64 / up / 1e6;
    println!(
        "upload: {:.0} MB/s ({} bytes in {:.2} s, digest verified before it is stored)",
        f.big_up, sent, up
    );
    let t = Instant::now();
    let mut blobs =
        pb::blobs_client::BlobsClient::new(s.ch.clone()).max_decoding_message_size(16 << 20);
    let mut st = blobs
        .download(req(
            pb::DownloadRequest {
                digest: d.to_string(),
                offset: 0,
                ..Default::default()
            },
            &s.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut got = 0usize;
    while let Some(c) = st.message().await.unwrap() {
        got += c.data.len();
    }
    let down = t.elapsed().as_secs_f64();
    f.big_down = got as f64 / down / 1e6;
    println!(
        "download: {:.0} MB/s ({got} bytes in {down:.2} s, hashed as it streams)",
        f.big_down
    );
    let t = Instant::now();
    let (sent, existed) = s.client.upload(&big, 4 << 20).await;
    println!(
        "re-upload of the same blob: {sent} bytes sent (present: {existed}) in {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
}

/// What single store calls cost (ms, median of 500), off the async threads.
async fn store_calls(e: &Engine, f: &mut Figures) {
    let (kv, blobs, cold) = (e.kv.clone(), e.blobs.clone(), e.cold.clone());
    let got = tokio::task::spawn_blocking(move || {
        let med = |mut v: Vec<Duration>| pct(&mut v, 0.5);
        let mut g = Vec::new();
        let mut c = Vec::new();
        let mut p = Vec::new();
        let mut r = Vec::new();
        for i in 0..500u32 {
            let key = format!("team-{:02}/vision-classification-{}", i % 60, i * 7);
            let s = Instant::now();
            let _ = kv.get(Tree::Artifacts, key.as_bytes()).unwrap();
            g.push(s.elapsed());
            let s = Instant::now();
            assert!(kv
                .commit(Batch::new().put(Tree::Counters, format!("bench-{i}"), "1"))
                .unwrap());
            c.push(s.elapsed());
            let data = format!("a small blob {i} {}", "x".repeat(4000)).into_bytes();
            let d = Digest::of(&data);
            let s = Instant::now();
            blobs.put(&d, &data).unwrap();
            p.push(s.elapsed());
            let s = Instant::now();
            assert_eq!(cold.read_all(&d).unwrap().len(), data.len());
            r.push(s.elapsed());
        }
        (med(g), med(c), med(p), med(r))
    })
    .await
    .unwrap();
    (f.kv_get, f.kv_commit, f.blob_put, f.blob_read) = got;
    println!(
        "one store call (median): metadata get {:.3} ms, checked commit {:.3} ms; 4 KB blob put {:.3} ms, read (not in memory) {:.3} ms",
        f.kv_get, f.kv_commit, f.blob_put, f.blob_read
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seeded = arg("--models", 100_000);
    let big_mb = arg("--big-mb", 500);
    if std::env::args().any(|a| a == "--index-only") {
        println!("## the search index alone ({seeded} models, in this process)");
        index::profile(seeded);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    println!(
        "algobay-registry benchmarks ({} cores)\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // ---------------------------------------------------------------- sled + local folder
    let local_blobs: Arc<dyn BlobStore> =
        Arc::new(LocalBlobStore::open(&dir.path().join("blobs"), 2 << 30).unwrap());
    let local = Engine {
        name: "sled + local folder",
        kv: Arc::new(SledStore::open(&dir.path().join("meta")).unwrap()),
        blobs: local_blobs.clone(),
        cold: local_blobs,
    };
    let mut fl = Figures {
        seed_s: seed(&*local.kv, seeded),
        ..Default::default()
    };
    println!("seeded {seeded} generated models in {:.1} s", fl.seed_s);
    let (served, open_s, _) = serve_on(&local, &dir.path().join("local"), None).await;
    fl.open_s = open_s;
    println!("registry opened (search index rebuilt over {seeded} models) in {open_s:.2} s");
    println!(
        "\n## catalog operations with {seeded} models in the store (gRPC over TLS, one client)"
    );
    operations(&served, seeded, 0, &mut fl).await;
    let ours = (fl.publish.0, fl.get.0, fl.by_name);
    let pub_conc_rate = fl.concurrent;

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
            // A publish returns once it is on disk: one at a time, each
            // waits for an fsync and a round trip, whatever the registry does.
            let fsync = fsync_ms(dir.path());
            let ceiling = 1e3 / (fsync + fl.get.1);
            let met = |v: f64, goal: f64| if v >= goal { "met" } else { "not met" };
            println!(
                "goal publish >= 20x: {:.1}x, {}; the ceiling of a durable publish one at a time on this disk is 1 / (fsync {fsync:.2} ms + round trip {:.2} ms) = {ceiling:.0} /s = {:.1}x mlflow, and ours is {:.0}% of it",
                ours.0 / mp,
                met(ours.0 / mp, 20.0),
                fl.get.1,
                ceiling / mp,
                100.0 * ours.0 / ceiling
            );
            println!(
                "goal publish with 16 clients >= 40x: {:.1}x, {}; get >= 40x: {:.1}x, {}; search >= 40x: {:.1}x, {}",
                pub_conc_rate / mpc,
                met(pub_conc_rate / mpc, 40.0),
                ours.1 / mg,
                met(ours.1 / mg, 40.0),
                ours.2 / ms,
                met(ours.2 / ms, 40.0)
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

    if std::env::args().any(|a| a == "--catalog-only") {
        return;
    }
    println!("\n## a {big_mb} MB blob over TLS on loopback");
    big_blob(&served, big_mb, &mut fl).await;
    store_calls(&local, &mut fl).await;
    drop(served);

    // ---------------------------------------------------------------- PostgreSQL + S3
    use algobay_registry::blobs::object::throwaway::{ACCESS_KEY, S3, SECRET_KEY};
    use algobay_registry::store::postgres::throwaway::Postgres;
    println!("\n## the same on PostgreSQL 15 + an S3-compatible server (s3s-fs's store), both throwaway on this machine");
    let pg = Postgres::start();
    let s3 = S3::start();
    let (meta, bucket) = (pg.database("bench"), s3.bucket("bench"));
    // As the server opens them (`--meta postgres://...`): PostgreSQL behind
    // the replica's coherent copy of the hot trees; below the copy, a count
    // of the round trips.
    let counts: Arc<Mutex<Vec<Arc<counting::Counting>>>> = Default::default();
    let pg_engine = || {
        let pg = Arc::new(counting::Counting::new(Arc::new(
            algobay_registry::store::PgStore::connect(&meta).unwrap(),
        )));
        counts.lock().unwrap().push(pg.clone());
        let kv: Arc<dyn KvStore> = Arc::new(algobay_registry::store::CachedKv::new(pg).unwrap());
        let blobs: Arc<dyn BlobStore> = Arc::new(
            ObjectBlobStore::open_url(&bucket, kv.clone(), 2 << 30, Some((ACCESS_KEY, SECRET_KEY)))
                .unwrap(),
        );
        (kv, blobs)
    };
    let (kv, blobs) = pg_engine();
    let remote = Engine {
        name: "PostgreSQL + S3",
        kv,
        blobs,
        cold: pg_engine().1,
    };
    let mut fr = Figures {
        seed_s: seed(&*remote.kv, seeded),
        ..Default::default()
    };
    println!("seeded {seeded} generated models in {:.1} s", fr.seed_s);
    let (served, open_s, op) = serve_on(&remote, &dir.path().join("remote"), None).await;
    fr.open_s = open_s;
    println!("registry opened (search index rebuilt over {seeded} models) in {open_s:.2} s");
    operations(&served, seeded, 0, &mut fr).await;
    load::round_trips(&served, &counts.lock().unwrap()[0]).await;
    big_blob(&served, big_mb, &mut fr).await;
    store_calls(&remote, &mut fr).await;

    println!("\n## side by side ({seeded} models; ratio = PostgreSQL + S3 / sled + local)");
    println!("| | {} | {} | ratio |", local.name, remote.name);
    println!("|---|---|---|---|");
    let row = |what: &str, a: f64, b: f64, unit: &str| {
        println!("| {what} | {a:.2} {unit} | {b:.2} {unit} | {:.2} |", b / a);
    };
    row("seed (batches of 1,000)", fl.seed_s, fr.seed_s, "s");
    row("open (index rebuilt)", fl.open_s, fr.open_s, "s");
    row("publish, inline: rate", fl.publish.0, fr.publish.0, "/s");
    row("publish, inline: p50", fl.publish.1, fr.publish.1, "ms");
    row("publish, inline: p99", fl.publish.2, fr.publish.2, "ms");
    row(
        "upload 128 KiB + publish: p50",
        fl.upload_publish.1,
        fr.upload_publish.1,
        "ms",
    );
    row(
        "upload 128 KiB + publish: p99",
        fl.upload_publish.2,
        fr.upload_publish.2,
        "ms",
    );
    row(
        "publish, 16 at once: rate",
        fl.concurrent,
        fr.concurrent,
        "/s",
    );
    row("get: p50", fl.get.1, fr.get.1, "ms");
    row("get: p99", fl.get.2, fr.get.2, "ms");
    row("search: p50", fl.search.1, fr.search.1, "ms");
    row("search: p99", fl.search.2, fr.search.2, "ms");
    row(&format!("{big_mb} MB upload"), fl.big_up, fr.big_up, "MB/s");
    row(
        &format!("{big_mb} MB download"),
        fl.big_down,
        fr.big_down,
        "MB/s",
    );
    row("store: metadata get", fl.kv_get, fr.kv_get, "ms");
    row("store: checked commit", fl.kv_commit, fr.kv_commit, "ms");
    row("store: 4 KB blob put", fl.blob_put, fr.blob_put, "ms");
    row(
        "store: 4 KB blob read, not in memory",
        fl.blob_read,
        fr.blob_read,
        "ms",
    );

    // ---------------------------------------------------------------- replicas
    println!("\n## two replicas on PostgreSQL + S3 against one (in this process; 16 clients: 50% get, 40% search, 10% publish)");
    let (kv, blobs) = pg_engine();
    let second = Engine {
        name: "replica 2",
        kv,
        blobs: blobs.clone(),
        cold: blobs,
    };
    let (served_b, open_b, _) = serve_on(&second, &dir.path().join("remote-b"), Some(&op)).await;
    println!("second replica opened on the same stores in {open_b:.2} s");
    let (one_rate, one_p99) = load::mixed_load(&[&served], 16, 10, 10_000_000, seeded).await;
    println!("one replica: {one_rate:.0} operations/s, p99 {one_p99:.2} ms");
    let (two_rate, two_p99) =
        load::mixed_load(&[&served, &served_b], 16, 10, 20_000_000, seeded).await;
    println!(
        "two replicas: {two_rate:.0} operations/s, p99 {two_p99:.2} ms ({:.2}x the throughput of one)",
        two_rate / one_rate
    );
    // What one published, the other finds.
    let t = Instant::now();
    let mut catalog = pb::catalog_client::CatalogClient::new(served.ch.clone());
    let config = br#"{"layers":[4,3]}"#.to_vec();
    let blob = tiny_mlp(99_999_999);
    catalog
        .publish_model(req(
            publish_request(99_999_999, &blob, &config, true),
            &served.token,
        ))
        .await
        .unwrap();
    let published = t.elapsed();
    loop {
        let page = served_b
            .registry
            .search(&algobay_registry::domain::Query {
                text: "bench/mlp-99999999".into(),
                page_size: 5,
                ..Default::default()
            })
            .unwrap();
        if !page.artifacts.is_empty() || t.elapsed() > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "published through one replica in {:.2} ms, found by the other's search {:.2} ms after the call began",
        published.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
    let _ = &served.registry;
}

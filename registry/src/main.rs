//! `algobay-registry serve`: the registry on its embedded defaults (sled metadata,
//! a local blob folder, TLS with a self-signed certificate unless given one).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use algobay_registry::domain::SystemClock;
use algobay_registry::limits::Ceilings;
use algobay_registry::service::Registry;
use algobay_registry::tls::TlsIdentity;
use algobay_runtime::{Runtime, RuntimeOptions};

#[derive(Debug, Parser)]
#[command(
    name = "algobay-registry",
    version,
    about = "The Algobay registry: a gRPC catalog of teams, models, tools and kits"
)]
struct Cli {
    /// Log filter (RUST_LOG works too).
    #[arg(long, global = true, env = "ALGOBAY_LOG", default_value = "info")]
    log: String,
    /// Log lines as JSON.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the registry until SIGINT or SIGTERM, then finish requests in flight.
    #[command(
        after_help = "The registry listens on three addresses: gRPC (--listen, 127.0.0.1:7443), the web \
console (--web-listen, 127.0.0.1:7444) and Prometheus metrics (--metrics-listen, 127.0.0.1:9464). \
A second registry on the same machine needs all three moved (port 0 picks a free one; the \
addresses chosen are printed), or the console and metrics turned off with an empty value.\n\n\
Examples:\n  algobay-registry serve --data /var/lib/algobay --listen 0.0.0.0:7443\n  \
algobay-registry serve --data ./second --listen 127.0.0.1:7543 --web-listen 127.0.0.1:7544 --metrics-listen ''"
    )]
    Serve {
        /// Where metadata (sled), blobs, TLS files and the operator token live.
        #[arg(long, env = "ALGOBAY_DATA", default_value = "algobay-data")]
        data: PathBuf,
        /// The metadata store: `postgres://user@host:port/db` (the `PG*`
        /// variables fill what the URL leaves out; TLS unless `sslmode=disable`,
        /// trusting `PGSSLROOTCERT`). Without it, sled under DATA/meta.
        #[arg(long, env = "ALGOBAY_META")]
        meta: Option<String>,
        /// The blob store: `s3://bucket[/prefix][?endpoint=URL&region=R&part_mb=N]`
        /// on S3 or an S3-compatible server (keys from `AWS_ACCESS_KEY_ID`,
        /// `AWS_SECRET_ACCESS_KEY`; unfinished uploads are kept in the metadata
        /// store, so they resume through any replica). Without it, a folder DATA/blobs.
        #[arg(long, env = "ALGOBAY_BLOBS")]
        blobs: Option<String>,
        /// Address to listen on.
        #[arg(long, env = "ALGOBAY_LISTEN", default_value = "127.0.0.1:7443")]
        listen: String,
        /// PEM certificate; without it a self-signed one is made under DATA/tls/.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Extra host names for the self-signed certificate.
        #[arg(long)]
        tls_host: Vec<String>,
        /// Serve plaintext gRPC (no TLS). Only for trusted networks.
        #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
        insecure: bool,
        /// Largest blob accepted, in bytes.
        #[arg(long, default_value_t = 8 << 30)]
        max_blob_bytes: u64,
        /// Where to serve the web console (HTTPS with the registry's certificate;
        /// plain HTTP with --insecure); empty to turn it off.
        #[arg(long, env = "ALGOBAY_WEB_LISTEN", default_value = "127.0.0.1:7444")]
        web_listen: String,
        /// Where to serve Prometheus metrics (`GET /metrics`); empty to turn them off.
        #[arg(long, env = "ALGOBAY_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
        metrics_listen: String,
        /// ONNX Runtime's shared library, used to check published models and kits.
        #[arg(long, env = "ORT_DYLIB_PATH")]
        ort_lib: Option<PathBuf>,
        #[command(flatten)]
        ceilings: CeilingArgs,
        #[command(flatten)]
        listeners: ListenerArgs,
    },
}

/// Bounds on each listener (gRPC and console), against slow and many clients.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Listeners: connections and timeouts")]
struct ListenerArgs {
    /// Connections open at once on a listener; past it the longest idle is shed.
    #[arg(long, env = "ALGOBAY_MAX_CONNECTIONS", default_value_t = algobay_net::Limits::default().max_connections)]
    max_connections: usize,
    /// Connections open at once from one address; past it its longest idle is shed.
    #[arg(long, env = "ALGOBAY_MAX_CONNECTIONS_PER_PEER", default_value_t = algobay_net::Limits::default().max_per_peer)]
    max_connections_per_peer: usize,
    /// Time to finish a TLS handshake (seconds).
    #[arg(long, env = "ALGOBAY_HANDSHAKE_TIMEOUT_SECONDS", default_value_t = algobay_net::Limits::default().handshake_timeout.as_secs())]
    handshake_timeout_seconds: u64,
    /// Time to send a console request's headers, also the longest idle time
    /// of a kept-alive connection (seconds).
    #[arg(long, env = "ALGOBAY_HEADER_TIMEOUT_SECONDS", default_value_t = algobay_net::Limits::default().header_timeout.as_secs())]
    header_timeout_seconds: u64,
    /// Time to send a console request's body (seconds).
    #[arg(long, env = "ALGOBAY_BODY_TIMEOUT_SECONDS", default_value_t = algobay_net::Limits::default().body_timeout.as_secs())]
    body_timeout_seconds: u64,
}

impl ListenerArgs {
    fn limits(&self) -> anyhow::Result<algobay_net::Limits> {
        use std::time::Duration;
        let l = algobay_net::Limits {
            max_connections: self.max_connections,
            max_per_peer: self.max_connections_per_peer,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_seconds),
            header_timeout: Duration::from_secs(self.header_timeout_seconds),
            body_timeout: Duration::from_secs(self.body_timeout_seconds),
        };
        l.check()
            .map_err(|e| anyhow::anyhow!("--{}", e.replace('_', "-")))?;
        Ok(l)
    }
}

/// What a published kit may ask of the registry, which runs its golden samples.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Ceilings on published kits and uploads")]
struct CeilingArgs {
    /// Largest kit manifest, in bytes.
    #[arg(long, env = "ALGOBAY_MAX_MANIFEST_BYTES", default_value_t = 1 << 20)]
    max_manifest_bytes: usize,
    /// Most steps in a kit.
    #[arg(long, env = "ALGOBAY_MAX_STEPS", default_value_t = 64)]
    max_steps: usize,
    /// Largest time budget a stage may declare for one call (ms).
    #[arg(long, env = "ALGOBAY_MAX_STAGE_TIME_MS", default_value_t = 10_000)]
    max_stage_time_ms: u32,
    /// Largest memory a stage may declare (MiB).
    #[arg(long, env = "ALGOBAY_MAX_STAGE_MEMORY_MB", default_value_t = 512)]
    max_stage_memory_mb: u32,
    /// Most golden samples in a kit.
    #[arg(long, env = "ALGOBAY_MAX_GOLDEN_SAMPLES", default_value_t = 32)]
    max_golden_samples: usize,
    /// Largest golden sample files of a kit, all together (bytes).
    #[arg(long, env = "ALGOBAY_MAX_GOLDEN_BYTES", default_value_t = 64 << 20)]
    max_golden_bytes: u64,
    /// Largest kit, manifest and blobs (bytes).
    #[arg(long, env = "ALGOBAY_MAX_KIT_BYTES", default_value_t = 2 << 30)]
    max_kit_bytes: u64,
    /// Wall-clock budget for one kit's golden samples (seconds).
    #[arg(long, env = "ALGOBAY_GOLDEN_BUDGET_SECONDS", default_value_t = 60)]
    golden_budget_seconds: u64,
    /// Kits whose golden samples run at once; more wait, then are told to retry.
    #[arg(long, env = "ALGOBAY_GOLDEN_SLOTS", default_value_t = 1)]
    golden_slots: usize,
    /// Of those, one team's at most; a freed slot goes to the team served longest ago
    /// (0: half of --golden-slots, at least one).
    #[arg(long, env = "ALGOBAY_GOLDEN_TEAM_SLOTS", default_value_t = 0)]
    golden_team_slots: usize,
    /// An upload that sends nothing for this long is dropped (it can resume) (seconds).
    #[arg(long, env = "ALGOBAY_UPLOAD_IDLE_SECONDS", default_value_t = 60)]
    upload_idle_seconds: u64,
    /// Partial uploads untouched for this long are removed (seconds).
    #[arg(long, env = "ALGOBAY_PARTIAL_MAX_AGE_SECONDS", default_value_t = 24 * 3600)]
    partial_max_age_seconds: u64,
    /// How long requests in flight may finish after SIGTERM (seconds).
    #[arg(long, env = "ALGOBAY_SHUTDOWN_GRACE_SECONDS", default_value_t = 10)]
    shutdown_grace_seconds: u64,
}

impl CeilingArgs {
    fn ceilings(&self) -> Ceilings {
        use std::time::Duration;
        Ceilings {
            max_manifest_bytes: self.max_manifest_bytes,
            max_steps: self.max_steps,
            max_stage_time_ms: self.max_stage_time_ms,
            max_stage_memory_mb: self.max_stage_memory_mb,
            max_golden_samples: self.max_golden_samples,
            max_golden_bytes: self.max_golden_bytes,
            max_kit_bytes: self.max_kit_bytes,
            golden_budget: Duration::from_secs(self.golden_budget_seconds),
            golden_slots: self.golden_slots.max(1),
            golden_team_slots: if self.golden_team_slots == 0 {
                self.golden_slots.max(1).div_ceil(2)
            } else {
                self.golden_team_slots.min(self.golden_slots.max(1))
            },
            golden_wait: Duration::from_secs(30),
            upload_idle: Duration::from_secs(self.upload_idle_seconds.max(1)),
            partial_max_age: Duration::from_secs(self.partial_max_age_seconds),
        }
    }
}

fn init_tracing(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init()
    } else {
        b.init()
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: finishing requests in flight");
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log, cli.log_json);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(run(cli));
    // Work still on blocking threads (a golden run told to stop) is not waited for.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// The registry's signing key, device CA and TLS identity.
struct Identity {
    key: algobay_runtime::SecretKey,
    ca: Option<algobay_registry::tls::DeviceCa>,
    tls: Option<TlsIdentity>,
}

/// Loads the identity's files from `data`, making those that are missing.
fn load_identity(
    data: &std::path::Path,
    insecure: bool,
    tls_files: Option<(&std::path::Path, &std::path::Path)>,
    tls_host: &[String],
) -> anyhow::Result<Identity> {
    let key_path = data.join("registry.key");
    let key = if key_path.exists() {
        algobay_runtime::SecretKey::read(&key_path)?
    } else {
        let k = algobay_runtime::SecretKey::generate();
        algobay_registry::tls::write_private(&key_path, k.to_text().as_bytes())?;
        std::fs::write(data.join("registry.key.pub"), format!("{}\n", k.public()))?;
        k
    };
    if insecure {
        return Ok(Identity {
            key,
            ca: None,
            tls: None,
        });
    }
    let ca = algobay_registry::tls::DeviceCa::open_or_create(&data.join("ca"))?;
    let tls = match tls_files {
        Some((c, k)) => TlsIdentity::read(c, k)?,
        None => {
            let (id, made) = TlsIdentity::self_signed_in(&data.join("tls"), tls_host)?;
            if made {
                println!(
                    "made a self-signed certificate in {}",
                    data.join("tls").display()
                );
            }
            id
        }
    };
    Ok(Identity {
        key,
        ca: Some(ca),
        tls: Some(tls),
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Command::Serve {
        data,
        meta,
        blobs,
        listen,
        tls_cert,
        tls_key,
        tls_host,
        insecure,
        max_blob_bytes,
        metrics_listen,
        web_listen,
        ort_lib,
        ceilings,
        listeners,
    } = cli.command;
    let limits = listeners.limits()?;
    let grace = std::time::Duration::from_secs(ceilings.shutdown_grace_seconds);
    let ceilings = ceilings.ceilings();
    std::fs::create_dir_all(&data)?;
    let kv = algobay_registry::store::open_meta(meta.as_deref(), &data.join("meta"))?;
    let blobs = algobay_registry::blobs::open_blobs(
        blobs.as_deref(),
        &data.join("blobs"),
        kv.clone(),
        max_blob_bytes,
    )?;
    let runtime = Arc::new(Runtime::new(RuntimeOptions {
        cache_dir: Some(data.join("wasm-cache")),
        ort_library: ort_lib,
        ort_threads: 0,
        // Belt and braces: a kit asking for more is refused before it runs.
        stage_limits_cap: Some(algobay_runtime::manifest::Limits {
            memory_mb: ceilings.max_stage_memory_mb,
            time_ms: ceilings.max_stage_time_ms,
        }),
        max_batch: 0,
    })?);
    let mut registry =
        Registry::open(kv.clone(), blobs, runtime, Arc::new(SystemClock))?.with_ceilings(ceilings);
    // This replica's name among those sharing the stores, kept in its own data folder.
    let replica_path = data.join("replica.id");
    let replica = match std::fs::read_to_string(&replica_path) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
        _ => {
            let id = algobay_runtime::Digest::of(
                format!("{:?}{}", std::time::SystemTime::now(), std::process::id()).as_bytes(),
            )
            .hex()[..16]
                .to_owned();
            std::fs::write(&replica_path, format!("{id}\n"))?;
            id
        }
    };
    registry = registry.with_replica(&replica);
    // Replicas sharing a store share its keys: take the store's, or offer ours.
    let mut shared_before = algobay_registry::shared::pull(&*kv, &data)?;
    let id = loop {
        let id = load_identity(
            &data,
            insecure,
            tls_cert.as_deref().zip(tls_key.as_deref()),
            &tls_host,
        )?;
        if algobay_registry::shared::push(&*kv, &data)? {
            break id;
        }
        // Another replica stored its files first: use those.
        shared_before = algobay_registry::shared::pull(&*kv, &data)?;
    };
    if shared_before {
        println!("keys and certificates shared by the replicas of this store");
    }
    println!(
        "registry signing key (countersigns accepted kits; in {}): {}",
        data.join("registry.key.pub").display(),
        id.key.public()
    );
    registry = registry.with_signing_key(id.key);
    let device_ca = id.ca.as_ref().map(|ca| ca.cert_pem().to_owned());
    if let Some(ca) = id.ca {
        registry = registry.with_device_ca(ca);
    }
    let registry = Arc::new(registry);
    if let Some(token) = registry.bootstrap_operator()? {
        let path = data.join("operator.token");
        algobay_registry::tls::write_private(&path, format!("{token}\n").as_bytes())?;
        println!(
            "operator token (shown once, also in {}): {token}",
            path.display()
        );
    }
    let tls = match id.tls {
        None => {
            tracing::warn!("serving plaintext gRPC (--insecure)");
            None
        }
        Some(t) => {
            println!("tls certificate sha256 fingerprint: {}", t.fingerprint());
            Some(t)
        }
    };
    // The console uses the same certificate, without asking browsers for one.
    let web_tls = tls
        .as_ref()
        .map(algobay_registry::web::tls_config)
        .transpose()?;
    // Devices enroll for a certificate from the registry's own CA, then use mTLS.
    let tls = tls.map(|id| match &device_ca {
        Some(ca) => id.with_client_ca(ca),
        None => id,
    });
    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| {
        anyhow::anyhow!("--listen {listen}: {e} (another registry there? give another address; port 0 picks a free one)")
    })?;
    let addr = listener.local_addr()?;
    let metrics = algobay_registry::metrics::Metrics::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if !metrics_listen.is_empty() {
        let ml = tokio::net::TcpListener::bind(&metrics_listen).await.map_err(|e| {
            anyhow::anyhow!("--metrics-listen {metrics_listen}: {e} (another registry there? give another address, or empty to turn metrics off)")
        })?;
        println!("metrics on http://{}/metrics", ml.local_addr()?);
        let mut rx = stop_rx.clone();
        tokio::spawn(algobay_registry::metrics::serve_metrics(
            ml,
            metrics.clone(),
            registry.clone(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
    }
    if !web_listen.is_empty() {
        let wl = tokio::net::TcpListener::bind(&web_listen).await.map_err(|e| {
            anyhow::anyhow!("--web-listen {web_listen}: {e} (another registry there? give another address, or empty to turn the console off)")
        })?;
        println!(
            "console on {}://{}/",
            if web_tls.is_some() { "https" } else { "http" },
            wl.local_addr()?
        );
        let mut rx = stop_rx.clone();
        let app = algobay_registry::web::router(registry.clone());
        tokio::spawn(algobay_registry::web::serve(
            wl,
            app,
            web_tls,
            limits,
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
    }
    println!(
        "listening on {}://{addr}",
        if tls.is_some() { "https" } else { "http" }
    );
    tracing::info!(%addr, data = %data.display(), "registry serving");
    let mut stopping = stop_rx.clone();
    let served =
        algobay_registry::server::serve(listener, registry, tls, metrics, limits, async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
    tokio::select! {
        r = served => r?,
        _ = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_s = grace.as_secs(), "requests still in flight after the grace period; stopping them");
        }
    }
    Ok(())
}

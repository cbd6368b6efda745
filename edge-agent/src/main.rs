//! `algobay-agent`: the device daemon.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use algobay_agent::{Agent, AgentConfig};
use algobay_runtime::{Runtime, RuntimeOptions};

#[derive(Parser)]
#[command(
    name = "algobay-agent",
    version,
    about = "The Algobay edge agent: enrolls the device, keeps its kits as the registry wants them, serves them locally",
    after_help = "Example:\n  algobay-agent run --config /etc/algobay/agent.toml\n\n\
Exit codes: 0 stopped by a signal, 2 usage or config, 3 enrollment refused, 6 environment (ONNX Runtime, files)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (error, warn, info, debug) or RUST_LOG syntax.
    #[arg(
        long,
        global = true,
        env = "ALGOBAY_LOG",
        default_value = "info,ort=warn"
    )]
    log: String,
}

#[derive(Subcommand)]
enum Command {
    /// Enroll on first start, then sync, pull, verify, test, activate and serve until stopped.
    #[command(
        after_help = "Example agent.toml:\n  registry = \"https://registry.example:7443\"\n  \
ca_cert = \"registry-cert.pem\"\n  enrollment_token = \"abe_…\"   # first start only\n  \
data_dir = \"/var/lib/algobay\"\n  name = \"line-3-camera\"\n  labels = { site = \"hangzhou\" }\n  \
trust = [\"algobay.key.pub\"]\n  listen = \"127.0.0.1:8470\"       # HTTP: /v1/infer, /v2, /metrics\n  \
grpc_listen = \"127.0.0.1:8471\"  # gRPC inference; \"\" turns it off\n\n\
Every key, its default and its environment variable: docs/agent.md"
    )]
    Run {
        #[arg(long, short, env = "ALGOBAY_AGENT_CONFIG")]
        config: PathBuf,
        /// Overrides `listen` in the file.
        #[arg(long, env = "ALGOBAY_AGENT_LISTEN")]
        listen: Option<String>,
        /// Overrides `data_dir` in the file.
        #[arg(long, env = "ALGOBAY_AGENT_DATA")]
        data: Option<PathBuf>,
    },
}

fn exit_code(e: &anyhow::Error) -> i32 {
    use algobay_agent::AgentError as E;
    match e.downcast_ref::<E>() {
        Some(E::Config(_)) => 2,
        Some(E::Enroll(_)) | Some(E::Registry(_)) => 3,
        Some(_) => 6,
        None => 1,
    }
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(6);
        }
    };
    if let Err(e) = rt.block_on(run(cli.command)) {
        eprintln!("error: {e:#}");
        std::process::exit(exit_code(&e));
    }
}

async fn run(cmd: Command) -> anyhow::Result<()> {
    let Command::Run {
        config,
        listen,
        data,
    } = cmd;
    let mut cfg = AgentConfig::read(&config)?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(d) = data {
        cfg.data_dir = d;
    }
    let runtime = Arc::new(Runtime::new(RuntimeOptions {
        cache_dir: Some(cfg.data_dir.join("wasm-cache")),
        ort_library: cfg
            .ort_library
            .clone()
            .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from)),
        ort_threads: cfg.ort_threads,
        stage_limits_cap: cfg.stage_limits_cap(),
        max_batch: cfg.max_batch,
    })?);
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| algobay_agent::AgentError::Config(format!("listen: {}: {e}", cfg.listen)))?;
    let grpc_listener = if cfg.grpc_listen.is_empty() {
        None
    } else {
        Some(
            tokio::net::TcpListener::bind(&cfg.grpc_listen)
                .await
                .map_err(|e| {
                    algobay_agent::AgentError::Config(format!(
                        "grpc_listen: {}: {e}",
                        cfg.grpc_listen
                    ))
                })?,
        )
    };
    let agent = Agent::start(cfg, runtime).await?;
    println!(
        "device {} listening on http://{}{}",
        agent.device_id(),
        listener.local_addr()?,
        match &grpc_listener {
            Some(l) => format!(" and grpc://{}", l.local_addr()?),
            None => String::new(),
        }
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let mut rx = stop_rx.clone();
        tokio::spawn(algobay_agent::serve::serve(
            listener,
            agent.clone(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ))
    };
    let grpc = grpc_listener.map(|l| {
        let mut rx = stop_rx.clone();
        tokio::spawn(algobay_agent::oip_grpc::serve(
            l,
            agent.clone(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ))
    });
    let mut rx = stop_rx;
    let sync = tokio::spawn(agent.clone().run(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    shutdown_signal().await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    let _ = sync.await;
    server.await??;
    if let Some(g) = grpc {
        g.await??;
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

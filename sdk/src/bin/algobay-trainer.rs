//! `algobay-trainer`: works the training runs of a team's kits. It claims a
//! run with a lease, trains on the base dataset and the enterprise's labelled
//! samples, sends both models' holdout answers to the registry's gate, and
//! releases the new kit version when the gate promotes it.
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Deserialize;

use algobay_runtime::{Runtime, RuntimeOptions, SecretKey};
use algobay_sdk::trainer::{Trainer, TrainerOptions};
use algobay_sdk::Client;

#[derive(Parser, Debug)]
#[command(
    name = "algobay-trainer",
    version,
    about = "Works the training runs of a team's kits: claim, train, judge, release",
    after_help = "Settings come from flags, then environment (ALGOBAY_REGISTRY, ALGOBAY_TOKEN, ALGOBAY_CA), then --config.\n\nExample trainer.toml:\n  registry = \"https://127.0.0.1:7443\"\n  token = \"abt_...\"          # a token of the kits' team\n  ca = \"algobay-data/tls/cert.pem\"\n  key = \"keys/team.key\"      # the team's signing key\n  holder = \"trainer-1\"\n  lease_seconds = 60\n  poll_seconds = 2\n  work_dir = \"trainer-work\"\n\nExit codes: 0 done, 1 failure, 2 bad usage or config, 3 (--once) no run to work."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Claim and work runs until stopped (or one, with --once).
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// A TOML file of the settings below.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    registry: Option<String>,
    #[arg(long)]
    token: Option<String>,
    /// The registry's certificate (PEM), for a self-signed registry.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The team's signing key.
    #[arg(long)]
    key: Option<PathBuf>,
    /// This trainer's name in the runs' histories.
    #[arg(long)]
    holder: Option<String>,
    #[arg(long)]
    lease_seconds: Option<u32>,
    /// How long to wait between claims when there is nothing to do.
    #[arg(long)]
    poll_seconds: Option<u64>,
    /// Where kits and datasets are cached.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Work at most one run, then exit (3 when there was none).
    #[arg(long)]
    once: bool,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    registry: Option<String>,
    token: Option<String>,
    ca: Option<PathBuf>,
    key: Option<PathBuf>,
    holder: Option<String>,
    lease_seconds: Option<u32>,
    poll_seconds: Option<u64>,
    work_dir: Option<PathBuf>,
    ort_library: Option<PathBuf>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

async fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let file: FileConfig = match &a.config {
        Some(p) => toml::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("config file {}", p.display()))?,
        )
        .with_context(|| format!("config file {}", p.display()))?,
        None => FileConfig::default(),
    };
    let registry = a
        .registry
        .or_else(|| env("ALGOBAY_REGISTRY"))
        .or(file.registry)
        .context("no registry: --registry, ALGOBAY_REGISTRY or `registry` in the config")?;
    let token = a
        .token
        .or_else(|| env("ALGOBAY_TOKEN"))
        .or(file.token)
        .context("no token: --token, ALGOBAY_TOKEN or `token` in the config")?;
    let ca = match a
        .ca
        .or_else(|| env("ALGOBAY_CA").map(PathBuf::from))
        .or(file.ca)
    {
        Some(p) => {
            Some(std::fs::read_to_string(&p).with_context(|| format!("ca {}", p.display()))?)
        }
        None => None,
    };
    let key_path = a
        .key
        .or(file.key)
        .context("no signing key: --key or `key` in the config")?;
    let key = SecretKey::read(&key_path).with_context(|| format!("key {}", key_path.display()))?;
    let opts = TrainerOptions {
        holder: a
            .holder
            .or(file.holder)
            .unwrap_or_else(|| format!("trainer-{}", std::process::id())),
        lease_seconds: a.lease_seconds.or(file.lease_seconds).unwrap_or(60).max(3),
        work_dir: a
            .work_dir
            .or(file.work_dir)
            .unwrap_or_else(|| PathBuf::from("trainer-work")),
    };
    let poll =
        std::time::Duration::from_secs(a.poll_seconds.or(file.poll_seconds).unwrap_or(2).max(1));
    std::fs::create_dir_all(&opts.work_dir)
        .with_context(|| format!("work dir {}", opts.work_dir.display()))?;
    let runtime = Arc::new(Runtime::new(RuntimeOptions {
        cache_dir: Some(opts.work_dir.join("wasm")),
        ort_library: file
            .ort_library
            .or_else(|| env("ORT_DYLIB_PATH").map(PathBuf::from)),
        ort_threads: 0,
        stage_limits_cap: None,
        max_batch: 0,
    })?);
    let client = Client::connect(&registry, Some(token), ca).await?;
    let trainer = Trainer::new(client, key, runtime, opts);
    loop {
        let worked = tokio::select! {
            r = trainer.run_once() => r,
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("stopping; the run's lease will lapse and another claim takes it");
                return Ok(ExitCode::SUCCESS);
            }
        };
        match worked {
            Ok(Some(o)) => {
                tracing::info!(
                    run = %o.run.id,
                    state = %o.run.state,
                    train_seconds = o.train_seconds,
                    base_rows = o.base_rows,
                    field_train = o.field_train,
                    field_holdout = o.field_holdout,
                    "round done"
                );
                println!("{} {} {}", o.run.id, o.run.state, o.run.version);
                if a.once {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Ok(None) if a.once => return Ok(ExitCode::from(3)),
            Ok(None) => tokio::time::sleep(poll).await,
            Err(e) if a.once => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "round failed; going on");
                tokio::time::sleep(poll).await;
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ALGOBAY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run(a).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

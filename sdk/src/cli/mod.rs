//! Command-line parsing, configuration (file, environment, flags) and dispatch.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use algobay_runtime::{Error as RtError, Runtime, RuntimeOptions, TrustRoots};

mod dataset;
mod fleet;
mod kit;
mod line;
mod oci;
mod registry;
mod samples;
mod stage;
mod train;

/// Exit codes that mean something to scripts.
pub mod exit {
    /// A usage error (clap uses 2 as well).
    pub const USAGE: u8 = 2;
    /// Malformed input: a bad Kitfile, manifest, kit file, or request input.
    pub const INVALID: u8 = 3;
    /// A digest or signature did not verify.
    pub const VERIFY: u8 = 4;
    /// A golden sample did not produce its expected output.
    pub const GOLDEN: u8 = 5;
    /// Something the machine lacks: ONNX Runtime, cargo, the wasm target.
    pub const ENVIRONMENT: u8 = 6;
    /// A file, or a registry entry, that was named does not exist.
    pub const NOT_FOUND: u8 = 7;
    /// The registry could not be reached, or its certificate is not trusted.
    pub const CONNECT: u8 = 8;
    /// The token is missing, unknown, expired or revoked, or may not do this.
    pub const AUTH: u8 = 9;
    /// The registry failed on its side.
    pub const SERVER: u8 = 10;
    /// Anything else.
    pub const FAILURE: u8 = 1;
}

#[derive(Debug, Parser)]
#[command(
    name = "algobay",
    version,
    about = "Build, test, inspect and run Algobay application kits",
    long_about = "Build, test, inspect and run Algobay application kits.\n\n\
Settings come from ~/.config/algobay/config.toml (or the file ALGOBAY_CONFIG names; keys: \
registry, token, ca_cert, ort_library, cache_dir, key, trust), overridden by the environment \
(ALGOBAY_REGISTRY, ALGOBAY_TOKEN, ALGOBAY_CA_CERT, ORT_DYLIB_PATH, ALGOBAY_CACHE_DIR, ALGOBAY_KEY, \
ALGOBAY_TRUST), overridden by flags. `algobay login` writes registry, token and ca_cert.\n\n\
Exit codes: 2 usage, 3 invalid input, 4 verification failed, 5 golden sample mismatch, \
6 something missing on the machine, 7 not found, 8 registry unreachable or untrusted, \
9 token refused or not allowed, 10 registry failure.",
    after_help = "Examples:\n  algobay keygen -o team.key\n  algobay kit build examples/kits/ocr -o ocr.kit --key team.key\n  algobay kit test ocr.kit --trust team.key.pub\n  algobay kit run ocr.kit --trust team.key.pub --input photo.png"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(flatten)]
    pub connection: registry::Connection,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The ONNX Runtime shared library file (libonnxruntime.so.*).
    #[arg(long, global = true, env = "ORT_DYLIB_PATH", value_name = "FILE")]
    pub ort_lib: Option<PathBuf>,
    /// Where compiled WASM stages are cached.
    #[arg(long, global = true, env = "ALGOBAY_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The configuration file.
    #[arg(long, global = true, env = "ALGOBAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log filter (e.g. info, debug, algobay_runtime=trace); RUST_LOG also works.
    #[arg(long, global = true, env = "ALGOBAY_LOG", default_value = "warn")]
    pub log: String,
    /// Log lines as JSON.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a team signing key (ed25519): KEY (secret, mode 0600) and KEY.pub.
    #[command(after_help = "Example:\n  algobay keygen -o ~/.config/algobay/team.key")]
    Keygen {
        /// Where to write the secret key; the public key goes to the same path plus `.pub`.
        #[arg(short, long)]
        output: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Work with kits.
    #[command(subcommand)]
    Kit(kit::KitCommand),
    /// Models: inspect a model file, train a small classifier, publish to the registry.
    #[command(
        after_help = "Examples:\n  algobay model inspect examples/kits/ocr/models/det.onnx\n  algobay model publish det.onnx --name acme/ppocr-det --version 4.0.0 --domain vision --task detection"
    )]
    Model {
        #[command(subcommand)]
        command: kit::ModelCommand,
    },
    /// Check a token against a registry and remember registry, token and certificate.
    #[command(
        after_help = "Example:\n  algobay login --registry https://localhost:7443 --token abt_… --ca-cert algobay-data/tls/cert.pem"
    )]
    Login {
        /// Trust the registry's certificate when its sha256 fingerprint is this one (for
        /// scripts; the registry prints it when it starts). Without --ca-cert or this, login
        /// shows the fingerprint and asks.
        #[arg(long)]
        trust_fingerprint: Option<String>,
    },
    /// Teams (operator).
    #[command(subcommand)]
    Team(registry::TeamCommand),
    /// Tokens (operator).
    #[command(subcommand)]
    Token(registry::TokenCommand),
    /// Enterprises (operator).
    #[command(subcommand)]
    Enterprise(fleet::EnterpriseCommand),
    /// An enterprise's devices: enrollment tokens, listing, revocation.
    #[command(subcommand)]
    Device(fleet::DeviceCommand),
    /// Deployments of kits onto devices, with canary rollouts.
    #[command(subcommand)]
    Deploy(fleet::DeployCommand),
    /// Tools: WASM stages published to the registry.
    #[command(subcommand)]
    Tool(registry::ToolCommand),
    /// Datasets: data files published with a card the registry reads from them.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// An enterprise's hard examples: list, show, label, export, import labels.
    #[command(subcommand)]
    Samples(samples::SamplesCommand),
    /// Retraining a kit on the enterprise's labelled field data: policy, rounds, gate reports, lineage.
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// The production line: recipes to checked, trained and published datasets,
    /// models and kits, incrementally.
    #[command(subcommand)]
    Line(line::LineCommand),
    /// Stage crates: start one that builds outside this repository.
    #[command(subcommand)]
    Stage(stage::StageCommand),
    /// Search the registry's models, tools and kits.
    #[command(
        after_help = "Examples:\n  algobay search ocr\n  algobay search --kind kit --industry finance --json"
    )]
    Search(registry::SearchArgs),
    /// Show one artifact: `team/name@version` or a digest.
    #[command(after_help = "Example:\n  algobay show acme/ppocr-det@4.0.0")]
    Show {
        reference: String,
        /// model, tool or kit (when a reference names several)
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The ecosystem against the programme's targets (200 models, 50 tools, 300
    /// kits, 30 publishing teams, 5 industries and 100 enterprises served), then
    /// per industry and per domain: models, tools, kits, teams, datasets,
    /// enterprises served, devices. Counted from the registry's data. An
    /// enterprise is served once one of its devices runs a kit made for its
    /// industry and has reported serving requests; an industry, once it has
    /// such an enterprise.
    #[command(
        after_help = "Examples:\n  algobay coverage\n  algobay coverage --json\n  algobay coverage --check   # exits 1 unless every target is met"
    )]
    Coverage {
        #[arg(long)]
        json: bool,
        /// Exit 1 when a target is not met.
        #[arg(long)]
        check: bool,
    },
    /// Print shell completions.
    #[command(
        after_help = "Example:\n  algobay completions bash > /etc/bash_completion.d/algobay"
    )]
    Completions { shell: clap_complete::Shell },
}

/// Values read from the configuration file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub registry: Option<String>,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub ort_library: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub trust: Vec<PathBuf>,
}

fn config_home() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|p| p.join("algobay"))
}

impl Global {
    /// Where the configuration file is (or would be).
    pub fn config_path(&self) -> Option<PathBuf> {
        self.config
            .clone()
            .or_else(|| config_home().map(|h| h.join("config.toml")))
    }

    pub fn file_config(&self) -> anyhow::Result<FileConfig> {
        let path = match &self.config {
            Some(p) => p.clone(),
            None => match config_home() {
                Some(h) => h.join("config.toml"),
                None => return Ok(FileConfig::default()),
            },
        };
        if !path.exists() {
            if self.config.is_some() {
                anyhow::bail!(NotFound(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            return Ok(FileConfig::default());
        }
        let text = std::fs::read_to_string(&path)?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!(Usage(format!("config file {}: {e}", path.display()))))
    }

    pub fn runtime(&self) -> anyhow::Result<Runtime> {
        let file = self.file_config()?;
        let cache_dir = self.cache_dir.clone().or(file.cache_dir).or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/algobay/wasm"))
        });
        let ort_library = self.ort_lib.clone().or(file.ort_library);
        Ok(Runtime::new(RuntimeOptions {
            cache_dir,
            ort_library,
            ort_threads: 0,
            stage_limits_cap: None,
            max_batch: 0,
        })?)
    }

    /// Trust roots: `--trust` files, then ALGOBAY_TRUST, then the config file, then
    /// every `*.pub` in ~/.config/algobay/trust/.
    pub fn trust(&self, extra: &[PathBuf]) -> anyhow::Result<TrustRoots> {
        let mut roots = TrustRoots::new();
        for p in extra {
            roots.trust_file(p)?;
        }
        if let Some(v) = std::env::var_os("ALGOBAY_TRUST") {
            for p in std::env::split_paths(&v) {
                roots.trust_file(&p)?;
            }
        }
        for p in self.file_config()?.trust {
            roots.trust_file(&p)?;
        }
        if let Some(dir) = config_home().map(|h| h.join("trust")) {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if e.path().extension().is_some_and(|x| x == "pub") {
                        roots.trust_file(&e.path())?;
                    }
                }
            }
        }
        Ok(roots)
    }
}

/// A usage error found after parsing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// A named file or item does not exist.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// Maps an error to the exit code that says what kind of failure it was.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Usage>().is_some() {
        return exit::USAGE;
    }
    if e.downcast_ref::<NotFound>().is_some() {
        return exit::NOT_FOUND;
    }
    if let Some(s) = e.downcast_ref::<algobay_sdk::SdkError>() {
        if let Some(code) = registry::exit_code(s) {
            return code;
        }
        if let algobay_sdk::SdkError::Runtime(r) = s {
            return runtime_exit_code(r);
        }
    }
    match e.downcast_ref::<RtError>() {
        Some(r) => runtime_exit_code(r),
        None => exit::FAILURE,
    }
}

fn runtime_exit_code(e: &RtError) -> u8 {
    match e {
        RtError::Signature(_) | RtError::DigestMismatch { .. } => exit::VERIFY,
        RtError::Golden { .. } => exit::GOLDEN,
        RtError::OrtUnavailable(_) | RtError::StageBuild { .. } => exit::ENVIRONMENT,
        RtError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            exit::NOT_FOUND
        }
        _ => exit::INVALID,
    }
}

pub fn init_tracing(g: &Global) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&g.log));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if g.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen { output, force } => keygen(&output, force),
        Command::Kit(kit::KitCommand::Push {
            file,
            oci: Some(oci),
            ..
        }) => oci::push(&cli.global, &file, &oci),
        Command::Kit(kit::KitCommand::Push {
            file, private_to, ..
        }) => registry::kit_push(&cli.global, &cli.connection, &file, &private_to),
        Command::Kit(kit::KitCommand::Pull {
            reference,
            output,
            oci: true,
            trust,
        }) => oci::pull(&cli.global, &reference, &output, &trust),
        Command::Kit(kit::KitCommand::Pull {
            reference, output, ..
        }) => registry::kit_pull(&cli.global, &cli.connection, &reference, &output),
        Command::Kit(cmd) => kit::run(&cli.global, cmd),
        Command::Model {
            command: kit::ModelCommand::Publish(m),
        } => registry::model_publish(&cli.global, &cli.connection, m),
        Command::Model { command } => kit::model(&cli.global, command),
        Command::Login { trust_fingerprint } => {
            registry::login(&cli.global, &cli.connection, trust_fingerprint)
        }
        Command::Team(cmd) => registry::team(&cli.global, &cli.connection, cmd),
        Command::Token(cmd) => registry::token(&cli.global, &cli.connection, cmd),
        Command::Tool(cmd) => registry::tool(&cli.global, &cli.connection, cmd),
        Command::Stage(cmd) => stage::run(cmd),
        Command::Samples(cmd) => samples::run(&cli.global, &cli.connection, cmd),
        Command::Train(cmd) => train::run(&cli.global, &cli.connection, cmd),
        Command::Line(cmd) => line::run(&cli.global, &cli.connection, cmd),
        Command::Dataset(cmd) => dataset::run(&cli.global, &cli.connection, cmd),
        Command::Enterprise(cmd) => fleet::enterprise(&cli.global, &cli.connection, cmd),
        Command::Device(cmd) => fleet::device(&cli.global, &cli.connection, cmd),
        Command::Deploy(cmd) => fleet::deploy(&cli.global, &cli.connection, cmd),
        Command::Search(args) => registry::search(&cli.global, &cli.connection, args),
        Command::Show {
            reference,
            kind,
            json,
        } => registry::show(&cli.global, &cli.connection, &reference, &kind, json),
        Command::Coverage { json, check } => {
            registry::coverage(&cli.global, &cli.connection, json, check)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "algobay",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

fn keygen(output: &Path, force: bool) -> anyhow::Result<()> {
    let public = PathBuf::from(format!("{}.pub", output.display()));
    for p in [output, public.as_path()] {
        if p.exists() && !force {
            anyhow::bail!(Usage(format!(
                "{} exists; pass --force to replace it",
                p.display()
            )));
        }
    }
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let key = algobay_runtime::SecretKey::generate();
    write_private(output, key.to_text().as_bytes())?;
    std::fs::write(&public, format!("{}\n", key.public()))?;
    println!("secret key: {} (keep it private)", output.display());
    println!(
        "public key: {} (id {})",
        public.display(),
        key.public().id()
    );
    Ok(())
}

/// Writes a secret (a key, a token) atomically, readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    algobay_runtime::fsx::write_private(path, bytes)
}

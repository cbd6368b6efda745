//! Commands that talk to a registry.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use algobay_sdk::{Client, Kind, ModelInfo, Progress, SdkError, Search};

use super::{Global, NotFound, Usage};

/// Where the registry is and who we are to it.
#[derive(Debug, Args)]
pub struct Connection {
    /// The registry's URL (https://host:port, or http:// for an --insecure registry).
    #[arg(long, global = true, env = "ALGOBAY_REGISTRY")]
    pub registry: Option<String>,
    /// The API token.
    #[arg(long, global = true, env = "ALGOBAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM certificate to trust for the registry's TLS (its self-signed one, or a CA).
    #[arg(long, global = true, env = "ALGOBAY_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Register an outside developer team and the public key it signs kits with (operator).
    #[command(
        after_help = "Example:\n  algobay team create acme --key acme.key.pub --display-name 'Acme Vision'"
    )]
    Create {
        name: String,
        /// The team's public key file (`algobay keygen` writes it).
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "")]
        display_name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once (operator).
    #[command(
        after_help = "Example:\n  algobay token create --role team --subject acme --ttl 2592000"
    )]
    Create {
        /// operator, team or enterprise
        #[arg(long)]
        role: String,
        /// The team or enterprise the token acts for.
        #[arg(long, default_value = "")]
        subject: String,
        /// Seconds until it expires (0: never).
        #[arg(long, default_value_t = 0)]
        ttl: i64,
    },
    /// Revoke a token by its id (operator); calls made with it are refused from then on.
    #[command(after_help = "Example:\n  algobay token revoke 3f9c2a1b7d4e")]
    Revoke {
        /// The token's id (12 hex digits, printed when it was made; also the part after `abt_`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ToolCommand {
    /// Publish a WASM stage as a tool.
    #[command(
        after_help = "Example:\n  algobay tool publish softmax.wasm --name acme/softmax --version 1.0.0 --kind postprocess"
    )]
    Publish {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        version: String,
        /// preprocess, postprocess, annotation, training, evaluation, conversion or deployment
        #[arg(long)]
        kind: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, default_value = "")]
        license: String,
        /// A markdown file describing the tool.
        #[arg(long)]
        card: Option<PathBuf>,
    },
}

/// `algobay model publish` options.
#[derive(Debug, Args)]
pub struct ModelPublish {
    /// The model file: .onnx, or .safetensors with --architecture.
    pub file: PathBuf,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub version: String,
    /// vision, speech, nlp, tabular, ...
    #[arg(long)]
    pub domain: String,
    /// classification, detection, ocr, vad, embedding, ...
    #[arg(long)]
    pub task: String,
    /// For safetensors: the candle architecture (bert, mlp).
    #[arg(long, default_value = "")]
    pub architecture: String,
    /// For safetensors: the architecture's config file (config.json, or {"layers": [...]}).
    #[arg(long = "arch-config", value_name = "FILE")]
    pub arch_config: Option<PathBuf>,
    /// Industries it serves (repeatable).
    #[arg(long)]
    pub industry: Vec<String>,
    #[arg(long)]
    pub tag: Vec<String>,
    #[arg(long, default_value = "")]
    pub license: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// The model card, in markdown.
    #[arg(long)]
    pub card: Option<PathBuf>,
}

pub(super) fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    if !path.exists() {
        anyhow::bail!(NotFound(format!("{} does not exist", path.display())));
    }
    Ok(std::fs::read(path)?)
}

pub(super) fn read_text(path: &Option<PathBuf>) -> anyhow::Result<String> {
    match path {
        Some(p) => Ok(String::from_utf8(read(p)?)
            .map_err(|_| Usage(format!("{} is not utf-8 text", p.display())))?),
        None => Ok(String::new()),
    }
}

pub(super) fn rt() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

pub(super) async fn connect(g: &Global, c: &Connection) -> anyhow::Result<Client> {
    let (url, token, ca) = settings(g, c)?;
    Ok(Client::connect(&url, token, ca).await?)
}

/// The registry's URL, the token and the trusted certificate (PEM), from flags,
/// environment or the configuration file.
pub(super) fn settings(
    g: &Global,
    c: &Connection,
) -> anyhow::Result<(String, Option<String>, Option<String>)> {
    let file = g.file_config()?;
    let url = c.registry.clone().or(file.registry).ok_or_else(|| {
        Usage(
            "no registry: pass --registry URL, set ALGOBAY_REGISTRY, or run `algobay login`".into(),
        )
    })?;
    let token = c.token.clone().or(file.token);
    let ca = match c.ca_cert.clone().or(file.ca_cert) {
        Some(p) => Some(
            String::from_utf8(read(&p)?)
                .map_err(|_| Usage(format!("{} is not a PEM file", p.display())))?,
        ),
        None => None,
    };
    Ok((url, token, ca))
}

pub(super) fn bar(g: &Global, what: &str) -> (ProgressBar, Progress) {
    let bar = if g.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template"),
    );
    bar.set_message(what.to_owned());
    let b = bar.clone();
    (
        bar,
        std::sync::Arc::new(move |done, total| {
            b.set_length(total);
            b.set_position(done);
        }),
    )
}

pub(super) fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub(super) fn parse_kind(k: &Option<String>) -> anyhow::Result<Option<Kind>> {
    Ok(match k.as_deref() {
        None | Some("") => None,
        Some("model") => Some(Kind::Model),
        Some("tool") => Some(Kind::Tool),
        Some("kit") => Some(Kind::Kit),
        Some("dataset") => Some(Kind::Dataset),
        Some(other) => anyhow::bail!(Usage(format!(
            "--kind `{other}` must be model, tool, kit or dataset"
        ))),
    })
}

fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_hexdigit())
            .collect::<String>()
            .to_ascii_uppercase()
    };
    norm(a) == norm(b)
}

/// `algobay login`: checks the token and stores registry, token and certificate in the config
/// file. With no `--ca-cert`, it reads the registry's certificate, shows its fingerprint and
/// trusts it only when the user (or `--trust-fingerprint`) confirms it.
pub fn login(g: &Global, c: &Connection, trust_fingerprint: Option<String>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let url = c
        .registry
        .clone()
        .ok_or_else(|| Usage("login needs --registry URL".into()))?;
    let token = c
        .token
        .clone()
        .ok_or_else(|| Usage("login needs --token TOKEN".into()))?;
    let path = g.config_path().ok_or_else(|| {
        Usage("cannot tell where the config file goes: set HOME or --config".into())
    })?;
    let rt = rt()?;
    let mut conn = Connection {
        registry: Some(url.clone()),
        token: Some(token.clone()),
        ca_cert: c.ca_cert.clone(),
    };
    if url.starts_with("https://") && conn.ca_cert.is_none() {
        let (pem, fp) = rt.block_on(algobay_sdk::fetch_certificate(&url))?;
        eprintln!("the registry at {url} presents a certificate with sha256 fingerprint\n  {fp}");
        let trusted = match &trust_fingerprint {
            Some(want) if same_fingerprint(want, &fp) => true,
            Some(want) => {
                return Err(SdkError::Connect { url: url.clone(), message: format!("its certificate fingerprint is {fp}, not {want}; not trusting it") }.into())
            }
            None if std::io::stdin().is_terminal() => {
                eprint!("compare it with the one the registry printed when it started. trust it? [y/N] ");
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                matches!(answer.trim(), "y" | "Y" | "yes")
            }
            None => anyhow::bail!(Usage(format!(
                "not trusting the certificate of {url} without a confirmation: pass --ca-cert FILE, or --trust-fingerprint {fp} once you have checked it"
            ))),
        };
        if !trusted {
            anyhow::bail!(Usage("certificate not trusted; nothing was saved".into()));
        }
        let host = url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or("registry")
            .replace([':', '[', ']'], "_");
        let dir = path
            .parent()
            .map(|p| p.join("certs"))
            .ok_or_else(|| Usage("config path has no folder".into()))?;
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("{host}.pem"));
        std::fs::write(&file, pem)?;
        conn.ca_cert = Some(file);
    }
    // Connect with what was given, not through the config file: the file
    // may not exist yet (login is what makes it).
    let ca = match &conn.ca_cert {
        Some(p) => Some(
            String::from_utf8(read(p)?)
                .map_err(|_| Usage(format!("{} is not a PEM file", p.display())))?,
        ),
        None => None,
    };
    let (role, subject) = rt.block_on(async {
        Client::connect(&url, Some(token.clone()), ca)
            .await?
            .whoami()
            .await
            .map_err(anyhow::Error::from)
    })?;
    let mut table: toml::Table = match std::fs::read_to_string(&path) {
        Ok(t) => toml::from_str(&t).map_err(|e| Usage(format!("{}: {e}", path.display())))?,
        Err(_) => toml::Table::new(),
    };
    table.insert("registry".into(), toml::Value::String(url.clone()));
    table.insert("token".into(), toml::Value::String(token));
    if let Some(ca) = &conn.ca_cert {
        let abs = std::fs::canonicalize(ca)?;
        table.insert(
            "ca_cert".into(),
            toml::Value::String(abs.display().to_string()),
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    super::write_private(&path, toml::to_string(&table)?.as_bytes())?;
    println!(
        "logged in to {url} as {role} {subject}; saved in {}",
        path.display()
    );
    Ok(())
}

pub fn team(g: &Global, c: &Connection, cmd: TeamCommand) -> anyhow::Result<()> {
    let TeamCommand::Create {
        name,
        key,
        display_name,
    } = cmd;
    let key_text = String::from_utf8(read(&key)?)?.trim().to_owned();
    key_text.parse::<algobay_runtime::PublicKey>()?;
    rt()?.block_on(async {
        connect(g, c)
            .await?
            .create_team(&name, &display_name, &key_text)
            .await
            .map_err(anyhow::Error::from)
    })?;
    println!("team {name} created");
    Ok(())
}

pub fn token(g: &Global, c: &Connection, cmd: TokenCommand) -> anyhow::Result<()> {
    rt()?.block_on(async {
        let client = connect(g, c).await?;
        match cmd {
            TokenCommand::Create { role, subject, ttl } => {
                let (id, token) = client.create_token(&role, &subject, ttl).await?;
                eprintln!("token {id} (shown once; store it now):");
                println!("{token}");
            }
            TokenCommand::Revoke { id } => {
                client.revoke_token(&id).await?;
                println!("token {id} revoked");
            }
        }
        Ok(())
    })
}

pub fn model_publish(g: &Global, c: &Connection, m: ModelPublish) -> anyhow::Result<()> {
    let bytes = read(&m.file)?;
    let config = m.arch_config.as_deref().map(read).transpose()?;
    let info = ModelInfo {
        name: m.name,
        version: m.version,
        domain: m.domain,
        task: m.task,
        architecture: m.architecture,
        description: m.description,
        license: m.license,
        industries: m.industry,
        tags: m.tag,
        card: read_text(&m.card)?,
    };
    let a = rt()?.block_on(async {
        let client = connect(g, c).await?;
        let (bar, progress) = bar(g, "uploading");
        let a = client
            .publish_model(&bytes, config.as_deref(), info, progress)
            .await;
        bar.finish_and_clear();
        a.map_err(anyhow::Error::from)
    })?;
    println!("published model {} {}", a.reference(), a.digest);
    Ok(())
}

pub fn tool(g: &Global, c: &Connection, cmd: ToolCommand) -> anyhow::Result<()> {
    let ToolCommand::Publish {
        file,
        name,
        version,
        kind,
        description,
        license,
        card,
    } = cmd;
    let wasm = read(&file)?;
    let card = read_text(&card)?;
    let a = rt()?.block_on(async {
        connect(g, c)
            .await?
            .publish_tool(&wasm, &name, &version, &kind, &description, &license, &card)
            .await
            .map_err(anyhow::Error::from)
    })?;
    println!("published tool {} {}", a.reference(), a.digest);
    Ok(())
}

pub fn kit_push(g: &Global, c: &Connection, file: &Path, private_to: &str) -> anyhow::Result<()> {
    if !file.exists() {
        anyhow::bail!(NotFound(format!(
            "kit file {} does not exist",
            file.display()
        )));
    }
    let kit = algobay_runtime::KitArchive::read_file(file)?;
    let (a, sent) = rt()?.block_on(async {
        let client = connect(g, c).await?;
        let (bar, progress) = bar(g, "pushing");
        let r = client.push_kit_for(&kit, private_to, progress).await;
        bar.finish_and_clear();
        r.map_err(anyhow::Error::from)
    })?;
    let total: u64 = kit.blobs.values().map(|b| b.len() as u64).sum();
    println!(
        "pushed kit {} {} ({sent} of {total} blob bytes sent; the rest the registry had)",
        a.reference(),
        a.digest
    );
    Ok(())
}

pub fn kit_pull(g: &Global, c: &Connection, reference: &str, output: &Path) -> anyhow::Result<()> {
    let kit = rt()?.block_on(async {
        let client = connect(g, c).await?;
        let (bar, progress) = bar(g, "pulling");
        let r = client.pull_kit(reference, output, progress).await;
        bar.finish_and_clear();
        r.map_err(anyhow::Error::from)
    })?;
    println!(
        "pulled kit {} {} -> {}",
        kit.manifest.reference(),
        kit.digest(),
        output.display()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words that must begin words of the name, description, tags, domain or task.
    #[arg(default_value = "")]
    pub text: String,
    /// model, tool or kit
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long, default_value = "")]
    pub domain: String,
    #[arg(long, default_value = "")]
    pub task: String,
    #[arg(long, default_value = "")]
    pub industry: String,
    #[arg(long, default_value = "")]
    pub team: String,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn search(g: &Global, c: &Connection, s: SearchArgs) -> anyhow::Result<()> {
    let q = Search {
        text: s.text,
        kind: parse_kind(&s.kind)?,
        domain: s.domain,
        task: s.task,
        industry: s.industry,
        team: s.team,
        page_size: s.limit,
        page_token: String::new(),
    };
    let page = rt()?.block_on(async {
        connect(g, c)
            .await?
            .search(q)
            .await
            .map_err(anyhow::Error::from)
    })?;
    if s.json {
        return print_json(&page);
    }
    for a in &page.artifacts {
        let kind = a
            .kind
            .map(|k| format!("{k:?}").to_lowercase())
            .unwrap_or_default();
        let what = [
            a.domain.as_str(),
            a.task.as_str(),
            a.tool_kind.as_str(),
            a.scenario.as_str(),
        ]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
        println!(
            "{:<5} {:<40} {:<24} {}",
            kind,
            a.reference(),
            what,
            a.description
        );
    }
    println!("{} of {} shown", page.artifacts.len(), page.total);
    Ok(())
}

pub fn show(
    g: &Global,
    c: &Connection,
    reference: &str,
    kind: &Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let kind = parse_kind(kind)?;
    let (a, rel) = rt()?.block_on(async {
        let client = connect(g, c).await?;
        let a = client.get(reference, kind).await?;
        let rel = client
            .relations(&format!("{}@{}", a.name, a.version), a.kind)
            .await?;
        Ok::<_, anyhow::Error>((a, rel))
    })?;
    if json {
        let mut v = serde_json::to_value(&a)?;
        v["relations"] = serde_json::to_value(&rel)?;
        return print_json(&v);
    }
    println!(
        "{} {}{}",
        a.kind
            .map(|k| format!("{k:?}").to_lowercase())
            .unwrap_or_default(),
        a.reference(),
        if a.yanked { " (yanked)" } else { "" }
    );
    println!("digest      {}", a.digest);
    println!("size        {} bytes", a.size);
    for (k, v) in [
        ("format", &a.format),
        ("domain", &a.domain),
        ("task", &a.task),
        ("tool kind", &a.tool_kind),
        ("scenario", &a.scenario),
        ("made for", &a.private_to),
        ("parent", &a.parent),
        ("license", &a.license),
        ("description", &a.description),
    ] {
        if !v.is_empty() {
            println!("{k:<11} {v}");
        }
    }
    if !a.industries.is_empty() {
        println!("industries  {}", a.industries.join(", "));
    }
    for (n, t) in &a.inputs {
        println!("input       {n}: {t}");
    }
    for (n, t) in &a.outputs {
        println!("output      {n}: {t}");
    }
    for (k, v) in &a.metrics {
        println!("metric      {k} = {v:.4}");
    }
    for s in &a.signers {
        println!("signed by   key {s}");
    }
    if let Some(d) = &a.dataset {
        println!("source      {}", d.source);
        println!("rows        {}", d.rows);
        println!("columns     {} ({})", d.columns.len(), d.input_type);
        if !d.label_column.is_empty() {
            println!("label       column {}", d.label_column);
            for (v, n) in &d.label_counts {
                println!("              {v:<12} {n} rows");
            }
            if !d.label_range.is_empty() {
                println!("              range {}", d.label_range);
            }
        }
    }
    for s in &rel.steps {
        println!(
            "step        {} ({}) {} ({} bytes){}",
            s.step,
            s.kind,
            s.digest,
            s.size,
            if s.artifacts.is_empty() {
                String::new()
            } else {
                format!(" = {}", s.artifacts.join(", "))
            }
        );
        println!(
            "              ({}) -> ({})",
            s.inputs.join(", "),
            s.outputs.join(", ")
        );
    }
    for (i, gs) in rel.golden.iter().enumerate() {
        let inputs: Vec<String> = gs.inputs.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "golden {i:<4} {} -> expected {}, {}",
            inputs.join(", "),
            gs.expected,
            gs.tolerance
        );
    }
    for k in &rel.used_by {
        println!("used by     {k}");
    }
    if !a.card.is_empty() {
        println!("\n{}", a.card);
    }
    Ok(())
}

/// The programme's targets: (what, key in the coverage, goal).
pub const TARGETS: &[(&str, &str, u64)] = &[
    ("models", "models", 200),
    ("tools", "tools", 50),
    ("kits", "kits", 300),
    ("publishing teams", "publishing_teams", 30),
    ("industries served", "industries_served", 5),
    ("enterprises served", "enterprises_served", 100),
];

pub fn coverage(g: &Global, c: &Connection, json: bool, check: bool) -> anyhow::Result<()> {
    let mut v = rt()?.block_on(async {
        connect(g, c)
            .await?
            .coverage()
            .await
            .map_err(anyhow::Error::from)
    })?;
    let targets: Vec<serde_json::Value> = TARGETS
        .iter()
        .map(|(what, key, goal)| {
            let have = v[*key].as_u64().unwrap_or(0);
            serde_json::json!({"target": what, "have": have, "goal": goal, "met": have >= *goal})
        })
        .collect();
    let all_met = targets.iter().all(|t| t["met"] == true);
    v["targets"] = serde_json::Value::Array(targets.clone());
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    if json {
        print_json(&v)?;
    } else {
        println!("{:<20} {:>7} {:>7}", "programme target", "have", "goal");
        for t in &targets {
            println!(
                "{:<20} {:>7} {:>7}  {}",
                t["target"].as_str().unwrap_or(""),
                n(&t["have"]),
                n(&t["goal"]),
                if t["met"] == true { "met" } else { "not met" }
            );
        }
        println!(
            "\n{} datasets, {} registered teams, {} enterprises ({} served), {} devices",
            v["datasets"], v["teams"], v["enterprises"], v["enterprises_served"], v["devices"]
        );
        for (title, key) in [("industry", "by_industry"), ("domain", "by_domain")] {
            let Some(m) = v[key].as_object().filter(|m| !m.is_empty()) else {
                continue;
            };
            println!(
                "\n{:<15} {:>6} {:>6} {:>6} {:>6} {:>9} {:>12} {:>7} {:>8}",
                title,
                "models",
                "tools",
                "kits",
                "teams",
                "datasets",
                "enterprises",
                "served",
                "devices"
            );
            for (name, s) in m {
                println!(
                    "{:<15} {:>6} {:>6} {:>6} {:>6} {:>9} {:>12} {:>7} {:>8}",
                    name,
                    n(&s["models"]),
                    n(&s["tools"]),
                    n(&s["kits"]),
                    n(&s["teams"]),
                    n(&s["datasets"]),
                    n(&s["enterprises"]),
                    n(&s["enterprises_served"]),
                    n(&s["devices"])
                );
            }
        }
    }
    if check && !all_met {
        return Err(TargetsNotMet(
            targets
                .iter()
                .filter(|t| t["met"] != true)
                .map(|t| {
                    format!(
                        "{} {} of {}",
                        t["target"].as_str().unwrap_or(""),
                        t["have"],
                        t["goal"]
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        )
        .into());
    }
    Ok(())
}

/// `coverage --check` found targets not met.
#[derive(Debug, thiserror::Error)]
#[error("targets not met: {0}")]
pub struct TargetsNotMet(String);

/// The exit code for an error from the registry.
pub fn exit_code(e: &SdkError) -> Option<u8> {
    use tonic::Code;
    Some(match e {
        SdkError::Connect { .. } => super::exit::CONNECT,
        SdkError::Status { code, .. } => match code {
            Code::Unauthenticated | Code::PermissionDenied => super::exit::AUTH,
            Code::NotFound => super::exit::NOT_FOUND,
            Code::InvalidArgument
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::OutOfRange => super::exit::INVALID,
            _ => super::exit::SERVER,
        },
        SdkError::Invalid(_) => super::exit::INVALID,
        SdkError::Io { .. } => super::exit::FAILURE,
        SdkError::Runtime(_) => return None,
    })
}

//! `algobay kit …` and `algobay model …`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use algobay_runtime::archive::KitArchive;
use algobay_runtime::golden::{decode_input, run_golden};
use algobay_runtime::kitfile::{BuildEvent, Packager};
use algobay_runtime::manifest::StepKind;
use algobay_runtime::{SecretKey, Values};

use super::{Global, NotFound, Usage};

#[derive(Debug, Subcommand)]
pub enum KitCommand {
    /// Build a kit from the Kitfile in DIR: build its stages, read its models, check the
    /// pipeline, run its golden samples, sign it.
    #[command(
        after_help = "Examples:\n  algobay kit build examples/kits/ocr -o ocr.kit --key team.key\n  \
algobay kit build my-kit -o my.kit --key team.key --golden-report golden.json   # every output, every mismatch"
    )]
    Build {
        /// The folder holding the Kitfile.
        dir: PathBuf,
        /// The kit file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// The team's secret key (from `algobay keygen`).
        #[arg(long, env = "ALGOBAY_KEY")]
        key: Option<PathBuf>,
        /// The cargo used to build stage crates.
        #[arg(long, env = "CARGO", default_value = "cargo")]
        cargo: PathBuf,
        /// Write every golden sample's outputs and mismatches to this JSON file,
        /// whether the samples pass or not (to see a model's whole output, or to
        /// write expected files from it).
        #[arg(long, value_name = "FILE")]
        golden_report: Option<PathBuf>,
    },
    /// Run a kit's golden samples; exits with 5 when one does not match.
    #[command(
        after_help = "Examples:\n  algobay kit test ocr.kit --trust team.key.pub\n  \
algobay kit test ocr.kit --trust team.key.pub --json"
    )]
    Test {
        file: PathBuf,
        /// A trusted public key file (repeatable).
        #[arg(long)]
        trust: Vec<PathBuf>,
        /// Print one JSON document: the kit, and each sample's outcome and outputs.
        #[arg(long)]
        json: bool,
    },
    /// Run a kit on one input and print its outputs as JSON.
    #[command(
        after_help = "Examples:\n  algobay kit run ocr.kit --trust team.key.pub --input scan.png\n  \
algobay kit run embed.kit --trust team.key.pub --input 'a sentence to embed'\n  \
algobay kit run my.kit --input image=a.png --input threshold=0.3"
    )]
    Run {
        file: PathBuf,
        /// `VALUE` for a kit with one input, or `NAME=VALUE`. VALUE is a file path, or for
        /// text and json inputs the text itself.
        #[arg(long, short, required = true)]
        input: Vec<String>,
        /// A trusted public key file (repeatable).
        #[arg(long)]
        trust: Vec<PathBuf>,
        /// Print the time spent in each step to standard error.
        #[arg(long)]
        timings: bool,
    },
    /// Push a kit file to the registry (only the blobs it lacks are sent), or
    /// with --oci to an OCI distribution registry as an artifact.
    #[command(after_help = "Examples:\n  algobay kit push ocr.kit\n  \
algobay kit push ocr-custom.kit --private-to acme\n  \
algobay kit push ocr.kit --oci harbor.example.com/acme/ocr:1.0.0\n  \
algobay kit push ocr.kit --oci localhost:5000/acme/ocr:1.0.0     # localhost: plain HTTP\n\n\
OCI: the artifact's config is the signed kit manifest, each kit blob a layer with the same \
digest, the signatures one more layer, so copies made with skopeo, oras or crane keep them. \
Registries that ask for a login take ALGOBAY_OCI_USERNAME and ALGOBAY_OCI_PASSWORD; \
ALGOBAY_OCI_CA_CERT adds a trusted CA.")]
    Push {
        file: PathBuf,
        /// Make the kit for this one enterprise: only it (and your team) can see, pull and deploy it.
        #[arg(
            long,
            value_name = "ENTERPRISE",
            default_value = "",
            conflicts_with = "oci"
        )]
        private_to: String,
        /// Push to this OCI reference instead: `host[:port]/repository:tag`.
        #[arg(long, value_name = "REF")]
        oci: Option<String>,
    },
    /// Pull a kit from the registry into a kit file, every blob verified; with
    /// --oci, from an OCI registry, its signatures verified against your trust roots.
    #[command(
        after_help = "Examples:\n  algobay kit pull acme/ocr@1.0.0 -o ocr.kit\n  \
algobay kit pull --oci harbor.example.com/acme/ocr:1.0.0 -o ocr.kit --trust acme.key.pub\n  \
algobay kit pull --oci localhost:5000/acme/ocr@sha256:… -o ocr.kit"
    )]
    Pull {
        /// `team/name@version` or the kit's digest; with --oci, `host[:port]/repository:tag`
        /// or `…@sha256:…`.
        reference: String,
        #[arg(short, long)]
        output: PathBuf,
        /// The reference is an OCI artifact's.
        #[arg(long)]
        oci: bool,
        /// A trusted public key file (repeatable), for --oci.
        #[arg(long, requires = "oci")]
        trust: Vec<PathBuf>,
    },
    /// Show a kit's manifest, blobs and signatures.
    #[command(after_help = "Example:\n  algobay kit inspect ocr.kit --json")]
    Inspect {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// A trusted public key file (repeatable), to say which signatures are trusted.
        #[arg(long)]
        trust: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Publish a model file to the registry (it reads the model for its signature).
    #[command(
        after_help = "Example:\n  algobay model publish silero_vad.onnx --name acme/silero-vad --version 6.2.3 --domain speech --task vad --card README.md"
    )]
    Publish(super::registry::ModelPublish),
    /// Train a small MLP classifier with candle on a CSV of numbers (label in the last
    /// column) and write its weights as safetensors.
    #[command(
        after_help = "Example:\n  algobay model train-mlp --csv digits.csv --layers 64,32,10 -o mlp.safetensors"
    )]
    TrainMlp {
        /// Rows of features followed by an integer class label.
        #[arg(long)]
        csv: PathBuf,
        /// Layer sizes: inputs, hidden layers, classes.
        #[arg(long, value_delimiter = ',', required = true)]
        layers: Vec<usize>,
        #[arg(long, default_value_t = 300)]
        epochs: usize,
        #[arg(long, default_value_t = 0.01)]
        lr: f64,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Every Nth row is held out to measure accuracy (0: none).
        #[arg(long, default_value_t = 5)]
        holdout_every: usize,
        /// Divide every feature by this (e.g. 16 for 4-bit pixels).
        #[arg(long, default_value_t = 1.0)]
        scale: f32,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print a model's signature and metadata keys.
    #[command(
        after_help = "Examples:\n  algobay model inspect det.onnx\n  algobay model inspect mlp.safetensors --json"
    )]
    Inspect {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(g: &Global, cmd: KitCommand) -> anyhow::Result<()> {
    match cmd {
        KitCommand::Build {
            dir,
            output,
            key,
            cargo,
            golden_report,
        } => build(g, &dir, &output, key, cargo, golden_report.as_deref()),
        KitCommand::Test { file, trust, json } => test(g, &file, &trust, json),
        KitCommand::Run {
            file,
            input,
            trust,
            timings,
        } => run_kit(g, &file, &input, &trust, timings),
        KitCommand::Inspect { file, json, trust } => inspect(g, &file, json, &trust),
        KitCommand::Push { .. } | KitCommand::Pull { .. } => {
            unreachable!("dispatched to the registry commands")
        }
    }
}

fn read_archive(file: &Path) -> anyhow::Result<KitArchive> {
    if !file.exists() {
        anyhow::bail!(NotFound(format!(
            "kit file {} does not exist",
            file.display()
        )));
    }
    Ok(KitArchive::read_file(file)?)
}

fn build(
    g: &Global,
    dir: &Path,
    output: &Path,
    key: Option<PathBuf>,
    cargo: PathBuf,
    golden_report: Option<&Path>,
) -> anyhow::Result<()> {
    let key_path = key.or(g.file_config()?.key).ok_or_else(|| {
        Usage(
            "no signing key: pass --key FILE, set ALGOBAY_KEY, or create one with `algobay keygen`"
                .into(),
        )
    })?;
    if !key_path.exists() {
        anyhow::bail!(NotFound(format!(
            "key file {} does not exist (create one with `algobay keygen -o {}`)",
            key_path.display(),
            key_path.display()
        )));
    }
    let key = SecretKey::read(&key_path)?;
    let rt = g.runtime()?;
    let bar = if g.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(1)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("static template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let started = Instant::now();
    let samples = std::cell::RefCell::new(Vec::new());
    let archive = Packager::new(&rt, cargo).build(dir, &key, &|ev| match ev {
        BuildEvent::Start { total } => bar.set_length(total),
        BuildEvent::Progress(m) => {
            bar.inc(1);
            bar.set_message(m);
        }
        // cargo's lines: the crate being compiled shows beside the bar.
        BuildEvent::Building(line) => {
            if !line.is_empty() {
                bar.set_message(line);
            }
        }
        BuildEvent::Warning(w) => {
            bar.suspend(|| eprintln!("warning: {w}"));
        }
        BuildEvent::Golden {
            index,
            failure,
            outputs,
        } => {
            if failure.is_some() {
                bar.suspend(|| {
                    if let Some(out) = &outputs {
                        eprintln!("golden sample {index} got: {out}");
                    }
                });
            }
            samples.borrow_mut().push(serde_json::json!({
                "index": index,
                "passed": failure.is_none(),
                "failure": failure,
                "outputs": outputs,
            }));
        }
    });
    bar.finish_and_clear();
    if let Some(path) = golden_report {
        let doc = serde_json::json!({ "samples": samples.into_inner() });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .map_err(|e| anyhow::anyhow!("--golden-report {}: {e}", path.display()))?;
    }
    let archive = archive?;
    archive.write_file(output)?;
    let size: u64 = archive.blobs.values().map(|b| b.len() as u64).sum();
    println!(
        "built {} {} ({} blobs, {:.1} MB) in {:.1}s -> {}",
        archive.manifest.reference(),
        archive.digest(),
        archive.blobs.len(),
        size as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        output.display()
    );
    Ok(())
}

fn load(
    g: &Global,
    file: &Path,
    trust: &[PathBuf],
) -> anyhow::Result<(KitArchive, algobay_runtime::LoadedKit)> {
    let archive = read_archive(file)?;
    let roots = g.trust(trust)?;
    let verified = archive.clone().verify(&roots)?;
    let rt = g.runtime()?;
    let loaded = rt.load(&verified)?;
    Ok((archive, loaded))
}

fn test(g: &Global, file: &Path, trust: &[PathBuf], json: bool) -> anyhow::Result<()> {
    let (archive, kit) = load(g, file, trust)?;
    let started = Instant::now();
    let outcomes = if archive.manifest.golden.is_empty() {
        Vec::new()
    } else {
        run_golden(&kit, &archive)?
    };
    let outputs_json = |out: &Option<Values>| {
        out.as_ref().map(|out| {
            serde_json::Value::Object(out.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
        })
    };
    let passed = outcomes.iter().filter(|o| o.failure.is_none()).count();
    let failed = outcomes.len() - passed;
    if json {
        let samples: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "index": o.index,
                    "passed": o.failure.is_none(),
                    "failure": o.failure,
                    "outputs": outputs_json(&o.outputs),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "kit": archive.manifest.reference(),
            "digest": archive.digest().to_string(),
            "passed": passed,
            "failed": failed,
            "seconds": started.elapsed().as_secs_f64(),
            "samples": samples,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if outcomes.is_empty() {
        println!("{}: no golden samples", archive.manifest.reference());
    } else {
        for o in &outcomes {
            match &o.failure {
                None => println!("golden sample {}: ok", o.index),
                Some(f) => {
                    println!("golden sample {}: FAILED:", o.index);
                    for line in f.lines() {
                        println!("  {line}");
                    }
                    if let Some(out) = outputs_json(&o.outputs) {
                        println!("  got: {out}");
                    }
                }
            }
        }
        println!(
            "{}: {passed} passed, {failed} failed ({:.2}s)",
            archive.manifest.reference(),
            started.elapsed().as_secs_f64()
        );
    }
    if let Some(o) = outcomes.iter().find(|o| o.failure.is_some()) {
        return Err(algobay_runtime::Error::Golden {
            index: o.index,
            message: o.failure.clone().unwrap_or_default(),
        }
        .into());
    }
    Ok(())
}

fn parse_inputs(manifest: &algobay_runtime::Manifest, raw: &[String]) -> anyhow::Result<Values> {
    let mut values = Values::new();
    for item in raw {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) if manifest.inputs.iter().any(|p| p.name == n) => {
                (n.to_owned(), v.to_owned())
            }
            _ if manifest.inputs.len() == 1 => (manifest.inputs[0].name.clone(), item.clone()),
            _ => anyhow::bail!(Usage(format!(
                "--input `{item}`: this kit has several inputs ({}); write NAME=VALUE",
                manifest
                    .inputs
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        };
        let port = manifest
            .inputs
            .iter()
            .find(|p| p.name == name)
            .expect("matched above");
        let path = Path::new(&value);
        let bytes = if path.is_file() {
            std::fs::read(path)?
        } else {
            match port.ty {
                algobay_runtime::PortType::Text | algobay_runtime::PortType::Json => {
                    value.into_bytes()
                }
                _ => anyhow::bail!(NotFound(format!(
                    "input `{name}`: file {value} does not exist"
                ))),
            }
        };
        values.insert(name.clone(), decode_input(&name, &port.ty, &bytes)?);
    }
    Ok(values)
}

fn run_kit(
    g: &Global,
    file: &Path,
    raw: &[String],
    trust: &[PathBuf],
    timings: bool,
) -> anyhow::Result<()> {
    let (archive, kit) = load(g, file, trust)?;
    let inputs = parse_inputs(&archive.manifest, raw)?;
    let started = Instant::now();
    let (outputs, steps) = kit.run_timed(inputs)?;
    if timings {
        for s in &steps {
            eprintln!(
                "{:>12} {:<7} {:>9.2} ms",
                s.step,
                s.kind,
                s.elapsed.as_secs_f64() * 1e3
            );
        }
        eprintln!(
            "{:>12} {:<7} {:>9.2} ms",
            "total",
            "",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    let shown: serde_json::Map<_, _> = outputs
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::Value::Object(shown))?
    );
    Ok(())
}

fn inspect(g: &Global, file: &Path, json: bool, trust: &[PathBuf]) -> anyhow::Result<()> {
    let archive = read_archive(file)?;
    let roots = g.trust(trust)?;
    let sigs: Vec<serde_json::Value> = archive
        .signatures
        .iter()
        .map(|s| {
            let valid = s.verify(&archive.manifest_bytes);
            let key = s.public_key().ok();
            serde_json::json!({
                "key_id": key.map(|k| k.id()),
                "key": s.key,
                "valid": valid.is_ok(),
                "trusted": key.is_some_and(|k| roots.keys().contains(&k)),
            })
        })
        .collect();
    let m = &archive.manifest;
    if json {
        let out = serde_json::json!({
            "digest": archive.digest().to_string(),
            "manifest": m,
            "signatures": sigs,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("kit        {}", m.reference());
    println!("digest     {}", archive.digest());
    println!("scenario   {}", m.scenario);
    if !m.industries.is_empty() {
        println!("industries {}", m.industries.join(", "));
    }
    if !m.license.is_empty() {
        println!("license    {}", m.license);
    }
    for p in &m.inputs {
        println!(
            "input      {}: {}{}",
            p.name,
            p.ty,
            p.media
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        );
    }
    for p in &m.outputs {
        println!("output     {}: {}", p.name, p.ty);
    }
    for s in &m.steps {
        let (kind, blob) = match &s.kind {
            StepKind::Stage { wasm, features, .. } => (
                if features.is_empty() {
                    "stage (wasm)".to_string()
                } else {
                    format!("stage (wasm {})", features.join(" "))
                },
                *wasm,
            ),
            StepKind::Onnx {
                model,
                scan,
                declared,
                ..
            } => (
                match (scan.is_some(), declared.is_empty()) {
                    (true, true) => "onnx, scanned",
                    (false, true) => "onnx",
                    (true, false) => "onnx, scanned, ports declared",
                    (false, false) => "onnx, ports declared",
                }
                .to_string(),
                *model,
            ),
            StepKind::Candle {
                weights,
                architecture,
                ..
            } => (format!("candle {architecture}"), *weights),
        };
        let size = m.blobs.get(&blob).copied().unwrap_or(0);
        println!(
            "step       {:<10} {:<16} {} ({:.1} MB)",
            s.name,
            kind,
            blob,
            size as f64 / 1e6
        );
        let c = s.contract();
        for p in &c.inputs {
            println!(
                "             in  {} <- {}: {}",
                p.name,
                s.input_value(&p.name),
                p.ty
            );
        }
        for p in &c.outputs {
            println!(
                "             out {} -> {}: {}",
                p.name,
                s.output_value(&p.name),
                p.ty
            );
        }
    }
    println!("golden     {} sample(s)", m.golden.len());
    let total: u64 = m.blobs.values().sum();
    println!(
        "blobs      {} ({:.1} MB)",
        m.blobs.len(),
        total as f64 / 1e6
    );
    for s in &sigs {
        println!(
            "signature  key {} {} {}",
            s["key_id"].as_str().unwrap_or("?"),
            if s["valid"].as_bool() == Some(true) {
                "valid"
            } else {
                "INVALID"
            },
            if s["trusted"].as_bool() == Some(true) {
                "trusted"
            } else {
                "untrusted"
            }
        );
    }
    Ok(())
}

pub fn model(g: &Global, cmd: ModelCommand) -> anyhow::Result<()> {
    let (file, json) = match cmd {
        ModelCommand::Inspect { file, json } => (file, json),
        ModelCommand::Publish(_) => unreachable!("dispatched to the registry commands"),
        ModelCommand::TrainMlp {
            csv,
            layers,
            epochs,
            lr,
            seed,
            holdout_every,
            scale,
            output,
        } => {
            return train_mlp(
                &csv,
                layers,
                epochs,
                lr,
                seed,
                holdout_every,
                scale,
                &output,
            )
        }
    };
    if !file.exists() {
        anyhow::bail!(NotFound(format!(
            "model file {} does not exist",
            file.display()
        )));
    }
    let bytes = std::fs::read(&file)?;
    let step = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model")
        .to_owned();
    if file.extension().is_some_and(|e| e == "onnx") {
        let rt = g.runtime()?;
        let m = rt.ort()?.model(&step, &bytes)?;
        let keys: Vec<String> = ["character"]
            .iter()
            .filter(|k| m.metadata(k).ok().flatten().is_some())
            .map(|k| k.to_string())
            .collect();
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"signature": m.signature(), "metadata_keys": keys})
                )?
            );
        } else {
            for p in &m.signature().inputs {
                println!("input  {}: {}", p.name, p.ty);
            }
            for p in &m.signature().outputs {
                println!("output {}: {}", p.name, p.ty);
            }
            for k in keys {
                println!("metadata {k}");
            }
        }
    } else {
        let header = algobay_runtime::candle::safetensors_header(&bytes)
            .map_err(|m| Usage(format!("{}: {m}", file.display())))?;
        let obj = header.as_object().expect("checked object");
        if json {
            println!("{}", serde_json::to_string_pretty(&header)?);
        } else {
            for (k, v) in obj {
                if k != "__metadata__" {
                    println!("{k}: {} {}", v["dtype"].as_str().unwrap_or("?"), v["shape"]);
                }
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn train_mlp(
    csv: &Path,
    layers: Vec<usize>,
    epochs: usize,
    lr: f64,
    seed: u64,
    holdout_every: usize,
    scale: f32,
    output: &Path,
) -> anyhow::Result<()> {
    if !csv.exists() {
        anyhow::bail!(NotFound(format!(
            "training data {} does not exist",
            csv.display()
        )));
    }
    let n_in = *layers
        .first()
        .ok_or_else(|| Usage("--layers must not be empty".into()))?;
    let text = std::fs::read_to_string(csv)?;
    let (mut x, mut y, mut hx, mut hy) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != n_in + 1 {
            anyhow::bail!(Usage(format!(
                "{}:{}: {} columns, expected {} features and a label",
                csv.display(),
                i + 1,
                cells.len(),
                n_in
            )));
        }
        let feats = cells[..n_in]
            .iter()
            .map(|c| c.parse::<f32>().map(|v| v / scale))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Usage(format!("{}:{}: {e}", csv.display(), i + 1)))?;
        let label: u32 = cells[n_in]
            .parse()
            .map_err(|e| Usage(format!("{}:{}: label: {e}", csv.display(), i + 1)))?;
        if holdout_every > 0 && i % holdout_every == holdout_every - 1 {
            hx.extend(feats);
            hy.push(label);
        } else {
            x.extend(feats);
            y.push(label);
        }
    }
    let started = Instant::now();
    let cfg = algobay_runtime::candle::MlpConfig::dense(layers);
    let report =
        algobay_runtime::candle::train_mlp(&cfg, &x, &y, (&hx, &hy), epochs, lr, seed, output)?;
    println!(
        "trained {} epochs on {} rows in {:.1}s: loss {:.4}, train accuracy {:.3}{} -> {}",
        report.epochs,
        y.len(),
        started.elapsed().as_secs_f64(),
        report.final_loss,
        report.train_accuracy,
        report
            .holdout_accuracy
            .map(|a| format!(", holdout accuracy {a:.3} on {} rows", hy.len()))
            .unwrap_or_default(),
        output.display()
    );
    Ok(())
}

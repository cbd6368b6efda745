//! The production line: recipes in, published and checked artifacts out.
//!
//! `algobay line run LINE.toml` reads every recipe, extracts or loads its
//! dataset, checks it ([`data`]), trains and scores a linear model and an MLP
//! with candle ([`fit`]), refuses what does not beat its baseline or scores
//! suspiciously well, takes golden samples from the holdout (the expected
//! output is the true label, or the true value within the model's error),
//! builds and signs a kit of WASM tools around each model ([`kit`]) and
//! publishes dataset, tools, models and kits through the public API as the
//! recipe's team; the registry runs each kit's golden samples at push.
//!
//! Like a build system it is incremental and content-addressed: a recipe's
//! fingerprint is the hash of its text, its data and the tools it uses; a
//! recipe whose fingerprint and artifacts are unchanged is not rebuilt and
//! sends nothing. One recipe's failure is reported and the others go on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use algobay_runtime::kitfile::Packager;
use algobay_runtime::{Digest, Runtime};

use crate::client::{no_progress, Client, Kind, SdkError};

mod audio;
mod card;
pub mod data;
mod features;
pub mod fit;
mod image;
mod kit;
pub mod pilot;
pub mod recipe;
mod screen;
mod setup;
mod state;
mod text;

use recipe::{LineFile, Recipe, TaskKind};
use setup::{build_stages, team, Team};
pub use state::State;

/// What can go wrong with the line as a whole (one recipe's trouble is an
/// [`Outcome`] instead).
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("{path}: {message}")]
    Recipe { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("dataset `{key}`: {message}")]
    Extract { key: String, message: String },
    #[error("tool `{tool}`: {message}")]
    Tool { tool: String, message: String },
    #[error("team `{team}`: {message}")]
    Team { team: String, message: String },
    #[error(transparent)]
    Sdk(#[from] SdkError),
    #[error(transparent)]
    Runtime(#[from] algobay_runtime::Error),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LineError + '_ {
    move |e| LineError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Where the line publishes, and how it runs.
#[derive(Clone, Debug)]
pub struct LineOptions {
    /// The registry (`https://…`).
    pub url: String,
    pub ca_pem: Option<String>,
    /// An operator token: the line registers its teams and mints their tokens.
    pub operator_token: String,
    /// cargo, for building the tools' stage crates.
    pub cargo: PathBuf,
    /// Only these recipes (by name); all when empty.
    pub only: Vec<String>,
    /// The work folder, in place of the one LINE.toml names.
    pub work: Option<PathBuf>,
}

/// What happened to one artifact.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub recipe: String,
    /// dataset, tool, model, kit, or recipe (when the recipe failed before any artifact).
    pub kind: String,
    pub reference: String,
    /// published, unchanged, refused, failed.
    pub status: String,
    /// Why it was refused or failed, or what it scored.
    pub detail: String,
    pub digest: String,
    pub bytes_sent: u64,
}

/// Seconds spent per stage of the line.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timings {
    pub extract: f64,
    pub check: f64,
    pub train: f64,
    pub evaluate: f64,
    pub build: f64,
    pub publish: f64,
}

/// The line's report: every artifact with its status, and where time went.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub timings: Timings,
    pub seconds: f64,
    pub bytes_sent: u64,
}

impl Report {
    /// How many outcomes have this status (of this kind, when given).
    pub fn count(&self, status: &str, kind: Option<&str>) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.status == status && kind.is_none_or(|k| o.kind == k))
            .count()
    }
}

/// LINE.toml read, the folder it is in, and the work folder (`work` when given).
fn open(line_file: &Path, work: Option<&Path>) -> Result<(LineFile, PathBuf, PathBuf), LineError> {
    let line = LineFile::read(line_file)?;
    let base = line_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let work = match work {
        Some(w) => w.to_path_buf(),
        None => base.join(line.line.work.as_deref().unwrap_or("build/line")),
    };
    Ok((line, base, work))
}

/// Runs the line in `line_file`.
pub async fn run(
    runtime: &Runtime,
    line_file: &Path,
    opts: &LineOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Report, LineError> {
    let started = Instant::now();
    let (line, base, work) = open(line_file, opts.work.as_deref())?;
    for d in ["keys", "tokens", "data", "tools", "kits"] {
        std::fs::create_dir_all(work.join(d)).map_err(io(&work))?;
    }
    // Kitfiles name the tools by absolute path.
    let work = work.canonicalize().map_err(io(&work))?;
    let state_path = work.join("state.json");
    let mut state = State::load(&state_path)?;
    let mut report = Report::default();
    let operator = Client::connect(
        &opts.url,
        Some(opts.operator_token.clone()),
        opts.ca_pem.clone(),
    )
    .await?;

    // Teams: a key and a token each, kept in the work folder.
    let mut teams: BTreeMap<String, Team> = BTreeMap::new();
    for (name, display) in &line.teams {
        let t = team(&operator, opts, &work, name, display).await?;
        teams.insert(name.clone(), t);
    }

    // Tools: each stage built once, published by its team when it changed.
    progress("building tools");
    let t0 = Instant::now();
    let mut built = build_stages(&opts.cargo, &base, &line)?;
    report.timings.build += t0.elapsed().as_secs_f64();
    let mut tools: BTreeMap<String, (PathBuf, Digest)> = BTreeMap::new();
    for (name, spec) in &line.tools {
        let t0 = Instant::now();
        let wasm = built.remove(name).expect("every tool is built");
        let digest = Digest::of(&wasm);
        let path = work.join("tools").join(format!("{name}.wasm"));
        if std::fs::read(&path).ok().as_deref() != Some(&wasm[..]) {
            algobay_runtime::fsx::write_atomic(&path, &wasm).map_err(io(&path))?;
        }
        report.timings.build += t0.elapsed().as_secs_f64();
        let team = &teams[&spec.team];
        let reference = format!("{}/{name}@{}", spec.team, state::TOOL_VERSION);
        let t0 = Instant::now();
        let outcome = if state.tools.get(name) == Some(&digest.to_string())
            && exists(&team.client, &reference, Kind::Tool, &digest).await
        {
            outcome("", "tool", &reference, "unchanged", "", &digest, 0)
        } else {
            let card = setup::tool_card(&base, name, spec);
            match team
                .client
                .publish_tool(
                    &wasm,
                    &format!("{}/{name}", spec.team),
                    state::TOOL_VERSION,
                    &spec.kind,
                    &spec.description,
                    "Apache-2.0",
                    &card,
                )
                .await
            {
                Ok(_) => {
                    state.tools.insert(name.clone(), digest.to_string());
                    outcome(
                        "",
                        "tool",
                        &reference,
                        "published",
                        "",
                        &digest,
                        wasm.len() as u64,
                    )
                }
                Err(e) => outcome("", "tool", &reference, "failed", &e.to_string(), &digest, 0),
            }
        };
        report.timings.publish += t0.elapsed().as_secs_f64();
        report.outcomes.push(outcome);
        tools.insert(name.clone(), (path, digest));
    }
    state.save(&state_path)?;

    // Recipes, each on its own: a failure is reported and the next goes on.
    let files = line.recipe_files(&base)?;
    let version = line.line.version.clone().unwrap_or_else(|| "1.0.0".into());
    for file in files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !opts.only.is_empty() && !opts.only.contains(&name) {
            continue;
        }
        progress(&format!("recipe {name}"));
        let ctx = RecipeCtx {
            runtime,
            line: &line,
            base: &base,
            work: &work,
            teams: &teams,
            tools: &tools,
            version: &version,
        };
        let before = report.outcomes.len();
        if let Err(message) = ctx.recipe(&file, &mut state, &mut report).await {
            report.outcomes.truncate(before);
            report.outcomes.push(outcome(
                &name,
                "recipe",
                &file.display().to_string(),
                "failed",
                &message,
                &Digest::of(b""),
                0,
            ));
            state.recipes.remove(&name);
        }
        state.save(&state_path)?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.bytes_sent = report.outcomes.iter().map(|o| o.bytes_sent).sum();
    let path = work.join("report.json");
    let json = serde_json::to_vec_pretty(&report).expect("report serialises");
    algobay_runtime::fsx::write_atomic(&path, &json).map_err(io(&path))?;
    Ok(report)
}

fn outcome(
    recipe: &str,
    kind: &str,
    reference: &str,
    status: &str,
    detail: &str,
    digest: &Digest,
    bytes_sent: u64,
) -> Outcome {
    Outcome {
        recipe: recipe.into(),
        kind: kind.into(),
        reference: reference.into(),
        status: status.into(),
        detail: detail.into(),
        digest: if bytes_sent == 0 && digest == &Digest::of(b"") {
            String::new()
        } else {
            digest.to_string()
        },
        bytes_sent,
    }
}

/// Whether the registry holds `reference` with this digest.
/// Runs CPU-bound `f` without holding an async worker hostage: through
/// `block_in_place` on a multi-threaded runtime, directly otherwise.
fn off_async<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

async fn exists(client: &Client, reference: &str, kind: Kind, digest: &Digest) -> bool {
    matches!(client.get(reference, Some(kind)).await, Ok(a) if a.digest == digest.to_string())
}

/// The domain a recipe's dataset and models count in: a picture's pixels
/// are vision, a text is language (`nlp`, as the example kits say), the rest
/// tabular.
fn domain_of(r: &Recipe) -> &'static str {
    if r.image.is_some() {
        "vision"
    } else if r.audio.is_some() {
        "speech"
    } else if r.text.is_some() {
        "nlp"
    } else {
        "tabular"
    }
}

/// What every recipe of a run shares.
struct RecipeCtx<'a> {
    runtime: &'a Runtime,
    line: &'a LineFile,
    base: &'a Path,
    work: &'a Path,
    teams: &'a BTreeMap<String, Team>,
    tools: &'a BTreeMap<String, (PathBuf, Digest)>,
    version: &'a str,
}

impl RecipeCtx<'_> {
    /// The recipe's data as CSV bytes: a file, or what the extractor wrote (kept).
    fn dataset(&self, recipe_dir: &Path, r: &Recipe) -> Result<Vec<u8>, String> {
        if let Some(p) = r.dataset.source.strip_prefix("file:") {
            let path = recipe_dir.join(p);
            return std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()));
        }
        let key = r.dataset.source.trim_start_matches("py:");
        let out = self
            .work
            .join("data")
            .join(format!("{}.csv", key.replace([':', '/'], "_")));
        if !out.is_file() {
            let python = self
                .line
                .line
                .python
                .as_deref()
                .map(|p| self.base.join(p))
                .or_else(|| std::env::var_os("ALGOBAY_LINE_PYTHON").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("python3"));
            let script = self
                .base
                .join(self.line.line.extractor.as_deref().unwrap_or("extract.py"));
            let o = std::process::Command::new(&python)
                .arg(&script)
                .arg(key)
                .arg(&out)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
            if !o.status.success() {
                return Err(format!(
                    "the extractor failed for `{key}`: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
        }
        std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))
    }

    async fn recipe(
        &self,
        file: &Path,
        state: &mut State,
        report: &mut Report,
    ) -> Result<(), String> {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let r = Recipe::parse(file, &text).map_err(|e| e.to_string())?;
        let team = self.teams.get(&r.recipe.team).ok_or_else(|| {
            format!(
                "recipe.team `{}` is not one of LINE.toml's [teams]",
                r.recipe.team
            )
        })?;
        let used = kit::tools_for(&r);
        for t in &used {
            if !self.tools.contains_key(*t) {
                return Err(format!(
                    "the kit needs tool `{t}`, which LINE.toml's [tools] lacks"
                ));
            }
        }
        let version = r
            .recipe
            .version
            .clone()
            .unwrap_or_else(|| self.version.into());
        let t0 = Instant::now();
        let dir = file.parent().unwrap_or(Path::new("."));
        let csv = self.dataset(dir, &r)?;
        let words = match &r.text {
            Some(t) => text::word_list(dir, t)?,
            None => None,
        };
        let segmenter = match &words {
            Some(w) => Some(algobay_text::Segmenter::parse(w).map_err(|e| e.to_string())?),
            None => None,
        };
        report.timings.extract += t0.elapsed().as_secs_f64();

        // The fingerprint: everything the recipe's artifacts are made from.
        let mut fp = Vec::new();
        fp.extend(state::LINE_FORMAT.as_bytes());
        fp.extend(text.as_bytes());
        fp.extend(version.as_bytes());
        fp.extend(Digest::of(&csv).to_string().as_bytes());
        if let Some(w) = &words {
            fp.extend(Digest::of(w.as_bytes()).to_string().as_bytes());
        }
        for t in &used {
            fp.extend(self.tools[*t].1.to_string().as_bytes());
        }
        let fingerprint = Digest::of(&fp).to_string();
        if let Some(prev) = state.recipes.get(&name) {
            if prev.fingerprint == fingerprint {
                let mut all_there = true;
                for a in &prev.outcomes {
                    if a.status == "published" || a.status == "unchanged" {
                        let kind = match a.kind.as_str() {
                            "dataset" => Kind::Dataset,
                            "model" => Kind::Model,
                            _ => Kind::Kit,
                        };
                        let d: Digest = a.digest.parse().map_err(|_| "bad state".to_owned())?;
                        if !exists(&team.client, &a.reference, kind, &d).await {
                            all_there = false;
                            break;
                        }
                    }
                }
                if all_there {
                    for a in &prev.outcomes {
                        let mut o = a.clone();
                        if o.status == "published" {
                            o.status = "unchanged".into();
                        }
                        o.bytes_sent = 0;
                        report.outcomes.push(o);
                    }
                    return Ok(());
                }
            }
        }

        let mut outcomes = Vec::new();
        let t0 = Instant::now();
        let table = data::parse_csv(&String::from_utf8_lossy(&csv))
            .map_err(|e| format!("dataset `{}`: {e}", r.dataset.name))?;
        let single = r
            .text
            .as_ref()
            .map(|t| t.column.as_str())
            .or(r.audio.as_ref().map(|a| a.column.as_str()));
        let prepared = data::prepare(&table, &r.task, single).and_then(|p| {
            Ok(match (&r.text, &r.image, &r.audio) {
                (Some(t), ..) => text::text_features(p, t, segmenter.as_ref()),
                (_, Some(i), _) if i.equalize => image::equalized_features(p, i),
                (.., Some(a)) => audio::audio_features(p, a)?,
                _ => p,
            })
        });
        report.timings.check += t0.elapsed().as_secs_f64();
        let prepared = match prepared {
            Ok(p) => p,
            Err(data::Refusal(why)) => {
                for m in &r.model {
                    outcomes.push(outcome(
                        &name,
                        "model",
                        &format!(
                            "{}/{}-{}@{version}",
                            r.recipe.team,
                            r.recipe.name,
                            m.label()
                        ),
                        "refused",
                        &format!("data check: {why}"),
                        &Digest::of(b""),
                        0,
                    ));
                }
                return self.finish(&name, fingerprint, outcomes, state, report);
            }
        };
        let dataset_ref = format!("{}/{}@{version}", r.recipe.team, r.dataset.name);
        let t0 = Instant::now();
        if r.dataset.redistribute {
            let digest = Digest::of(&csv);
            let info = crate::DatasetInfo {
                name: format!("{}/{}", r.recipe.team, r.dataset.name),
                version: version.clone(),
                license: r.dataset.license.clone(),
                source: r.dataset.origin.clone(),
                label_column: r.task.target.clone(),
                header: true,
                domain: domain_of(&r).into(),
                task: kind_name(r.task.kind).into(),
                description: if r.dataset.description.is_empty() {
                    format!("{} (for: {})", r.dataset.origin, r.recipe.scenario)
                } else {
                    r.dataset.description.clone()
                },
                industries: vec![r.recipe.industry.clone()],
                tags: vec!["production-line".into()],
                card: card::dataset_card(&r, &prepared),
            };
            let o = if exists(&team.client, &dataset_ref, Kind::Dataset, &digest).await {
                outcome(&name, "dataset", &dataset_ref, "unchanged", "", &digest, 0)
            } else {
                match team.client.publish_dataset(&csv, info, no_progress()).await {
                    Ok(_) => outcome(
                        &name,
                        "dataset",
                        &dataset_ref,
                        "published",
                        "",
                        &digest,
                        csv.len() as u64,
                    ),
                    Err(e) => return Err(format!("publishing dataset {dataset_ref}: {e}")),
                }
            };
            outcomes.push(o);
        }
        report.timings.publish += t0.elapsed().as_secs_f64();

        // Pixels keep their scale; other numbers are bounded and long tails logged.
        let features = fit::Features::fit(
            &prepared,
            r.image.is_none() && r.text.is_none() && r.audio.is_none(),
            &r.task,
        );
        let t0 = Instant::now();
        let fits = off_async(|| fit::fit_all(&prepared, &features, &r));
        report.timings.train += t0.elapsed().as_secs_f64();
        for (m, fitted) in r.model.iter().zip(fits) {
            let model_name = format!("{}/{}-{}", r.recipe.team, r.recipe.name, m.label());
            let reference = format!("{model_name}@{version}");
            let fitted = match fitted {
                Ok(f) => f,
                Err(e) => {
                    outcomes.push(outcome(
                        &name,
                        "model",
                        &reference,
                        "failed",
                        &format!("training: {e}"),
                        &Digest::of(b""),
                        0,
                    ));
                    continue;
                }
            };
            let t0 = Instant::now();
            let s = &fitted.score;
            let verdict = if s.is_perfect() && s.n < fit::PERFECT_MIN_ROWS {
                Some(format!(
                    "a perfect {} on {} holdout rows looks like a leak, not a model (fewer than {} rows)",
                    s.metric, s.n, fit::PERFECT_MIN_ROWS
                ))
            } else if !s.beats_baseline() {
                Some(format!("does not beat its baseline: {}", s.summary()))
            } else {
                None
            };
            report.timings.evaluate += t0.elapsed().as_secs_f64();
            let digest = Digest::of(&fitted.weights);
            if let Some(why) = verdict {
                outcomes.push(outcome(
                    &name, "model", &reference, "refused", &why, &digest, 0,
                ));
                continue;
            }
            // Every kit is built (golden samples run) before anything of the
            // model is published: a kit that cannot be made publishes nothing.
            let mut archives = Vec::new();
            let mut build_failed = None;
            // One screening kit a recipe (its first model's), when a number column varies.
            let screened = m.label() == r.model[0].label()
                && screen::Screen::fit(&prepared, &features).is_some();
            let variants = kit::Variant::for_task(&r, prepared.classes.len())
                .into_iter()
                .filter(|v| *v != kit::Variant::Screen || screened);
            for variant in variants {
                let t0 = Instant::now();
                let kit_dir = self.work.join("kits").join(format!(
                    "{}-{}{}",
                    r.recipe.name,
                    m.label(),
                    variant.suffix()
                ));
                let built = kit::write_kit_dir(
                    &kit_dir,
                    &r,
                    m,
                    &version,
                    &prepared,
                    &features,
                    &fitted,
                    self.tools,
                    variant,
                    words.as_deref(),
                )
                .and_then(|()| {
                    Packager::new(self.runtime, PathBuf::from("cargo"))
                        .build(&kit_dir, &team.key, &|_| {})
                        .map_err(|e| e.to_string())
                });
                report.timings.build += t0.elapsed().as_secs_f64();
                let kit_ref = format!("{model_name}{}@{version}", variant.suffix());
                match built {
                    Ok(a) => archives.push((kit_ref, a)),
                    Err(e) => {
                        build_failed = Some(format!("building kit {kit_ref}: {e}"));
                        break;
                    }
                }
            }
            if let Some(why) = build_failed {
                outcomes.push(outcome(
                    &name, "model", &reference, "failed", &why, &digest, 0,
                ));
                continue;
            }
            // Then the model, then its kits.
            let t0 = Instant::now();
            let config = serde_json::to_vec(
                &serde_json::json!({"layers": fitted.layers, "conv": fitted.conv}),
            )
            .expect("json");
            let info = crate::ModelInfo {
                name: model_name.clone(),
                version: version.clone(),
                domain: domain_of(&r).into(),
                task: kind_name(r.task.kind).into(),
                architecture: if fitted.conv.is_some() { "cnn" } else { "mlp" }.into(),
                description: format!("{} ({}): {}", r.recipe.scenario, m.describe(), s.summary()),
                license: r.recipe.license.clone(),
                industries: vec![r.recipe.industry.clone()],
                tags: vec!["production-line".into(), m.architecture.clone()],
                card: card::model_card(&r, m, &prepared, &fitted, &dataset_ref),
            };
            let metrics = card::metrics(&fitted);
            if exists(&team.client, &reference, Kind::Model, &digest).await {
                outcomes.push(outcome(
                    &name,
                    "model",
                    &reference,
                    "unchanged",
                    &s.summary(),
                    &digest,
                    0,
                ));
            } else {
                let published = team
                    .client
                    .publish_model_with_metrics(
                        &fitted.weights,
                        Some(&config),
                        info,
                        metrics,
                        no_progress(),
                    )
                    .await;
                if let Err(e) = published {
                    report.timings.publish += t0.elapsed().as_secs_f64();
                    outcomes.push(outcome(
                        &name,
                        "model",
                        &reference,
                        "failed",
                        &format!("publishing: {e}"),
                        &digest,
                        0,
                    ));
                    continue;
                }
                outcomes.push(outcome(
                    &name,
                    "model",
                    &reference,
                    "published",
                    &s.summary(),
                    &digest,
                    (fitted.weights.len() + config.len()) as u64,
                ));
            }
            report.timings.publish += t0.elapsed().as_secs_f64();
            for (kit_ref, archive) in archives {
                let t0 = Instant::now();
                let pushed = team.client.push_kit(&archive, no_progress()).await;
                report.timings.publish += t0.elapsed().as_secs_f64();
                match pushed {
                    Ok((a, sent)) => outcomes.push(outcome(
                        &name,
                        "kit",
                        &kit_ref,
                        "published",
                        &format!(
                            "{} golden samples passed at push",
                            archive.manifest.golden.len()
                        ),
                        &a.digest.parse().unwrap_or_else(|_| Digest::of(b"")),
                        sent,
                    )),
                    Err(e) => outcomes.push(outcome(
                        &name,
                        "kit",
                        &kit_ref,
                        "failed",
                        &format!("pushing: {e}"),
                        &Digest::of(b""),
                        0,
                    )),
                }
            }
        }
        self.finish(&name, fingerprint, outcomes, state, report)
    }

    fn finish(
        &self,
        name: &str,
        fingerprint: String,
        outcomes: Vec<Outcome>,
        state: &mut State,
        report: &mut Report,
    ) -> Result<(), String> {
        // A recipe with a failure is tried again next time; one refused is not
        // (it is refused for what it is, until it changes).
        if outcomes.iter().any(|o| o.status == "failed") {
            state.recipes.remove(name);
        } else {
            state.recipes.insert(
                name.to_owned(),
                state::RecipeState {
                    fingerprint,
                    outcomes: outcomes.clone(),
                },
            );
        }
        report.outcomes.extend(outcomes);
        Ok(())
    }
}

fn kind_name(k: TaskKind) -> &'static str {
    match k {
        TaskKind::Classification => "classification",
        TaskKind::Regression => "regression",
    }
}

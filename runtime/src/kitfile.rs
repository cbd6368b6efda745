//! The `Kitfile` a kit author writes (paths on disk) and the packager that
//! resolves it into a signed kit (digests): builds stage crates to WASM, reads
//! model signatures from the models themselves, checks the pipeline's wiring,
//! runs the golden samples, signs the manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde::Deserialize;

use crate::archive::KitArchive;
use crate::candle::CandleModel;
use crate::digest::Digest;
use crate::engine::Runtime;
use crate::error::{Error, Result};
use crate::golden::run_golden;
use crate::manifest::{
    Golden, KitPort, Limits, Manifest, Resources, Scan, Step, StepKind, Tolerance, SCHEMA,
};
use crate::sign::SecretKey;
use crate::value::PortType;

/// The authored description of a kit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kitfile {
    pub kit: KitSection,
    #[serde(default)]
    pub input: Vec<KitPort>,
    #[serde(default)]
    pub output: Vec<KitPort>,
    #[serde(default)]
    pub step: Vec<StepSpec>,
    #[serde(default)]
    pub golden: Vec<GoldenSpec>,
    #[serde(default)]
    pub resources: Resources,
    /// `[sampling]`: which served requests are kept as hard examples.
    #[serde(default)]
    pub sampling: Option<crate::manifest::Sampling>,
    /// `[training]`: how the model is retrained from labelled field samples.
    #[serde(default)]
    pub training: Option<crate::manifest::Training>,
}

/// `[kit]`: who and what.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KitSection {
    pub name: String,
    pub version: String,
    pub scenario: String,
    #[serde(default)]
    pub industries: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub license: String,
}

/// Where an asset's bytes come from.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AssetSpec {
    /// A file, relative to the Kitfile.
    File(String),
    /// A metadata value of an earlier ONNX step's model (e.g. PP-OCR's character list).
    ModelMetadata {
        model_step: String,
        metadata: String,
    },
}

/// `[[step]]`: exactly one of `stage` (a crate folder or a `.wasm` file) or `model`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub name: String,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// For safetensors models: the candle architecture.
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    #[serde(default)]
    pub assets: BTreeMap<String, AssetSpec>,
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Option<Limits>,
    #[serde(default)]
    pub scan: Option<Scan>,
    /// ONNX models with a batch dimension: port → batch axis.
    #[serde(default)]
    pub batch: BTreeMap<String, usize>,
    /// ONNX models: port → the type to declare in place of the one the model
    /// file states (for exports that state a wrong shape); the real outputs are
    /// checked against it on the golden samples and on every call.
    #[serde(default)]
    pub ports: BTreeMap<String, PortType>,
}

/// `[[golden]]`: input files and the file holding the expected outputs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenSpec {
    pub inputs: BTreeMap<String, String>,
    pub expected: String,
    #[serde(default)]
    pub tolerance: Tolerance,
}

impl Kitfile {
    /// Parses Kitfile text; errors name the line and field.
    pub fn parse(text: &str) -> Result<Kitfile> {
        toml::from_str(text)
            .map_err(|e| Error::invalid("Kitfile", e.to_string().trim_end().to_owned()))
    }

    /// Reads `<dir>/Kitfile`.
    pub fn read(dir: &Path) -> Result<Kitfile> {
        let path = dir.join("Kitfile");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        Kitfile::parse(&text)
    }
}

/// What the packager reports while it works.
#[derive(Debug, Clone)]
pub enum BuildEvent {
    /// Starting a phase; `total` is the number of units in the whole build.
    Start { total: u64 },
    /// One unit done, with a message.
    Progress(String),
    /// A line of a stage crate's build (cargo's own progress), not a unit.
    Building(String),
    /// Something the author should know that does not stop the build.
    Warning(String),
    /// A golden sample ran: what came out, and what differed (`None`: it passed).
    Golden {
        index: usize,
        failure: Option<String>,
        outputs: Option<serde_json::Value>,
    },
}

/// Builds kits from Kitfiles.
#[derive(Debug)]
pub struct Packager<'a> {
    runtime: &'a Runtime,
    cargo: PathBuf,
}

impl<'a> Packager<'a> {
    /// A packager that checks stages and models with `runtime` and builds stage crates with `cargo`.
    pub fn new(runtime: &'a Runtime, cargo: PathBuf) -> Self {
        Packager { runtime, cargo }
    }

    /// Resolves the Kitfile in `dir`, runs its golden samples and signs it.
    pub fn build(
        &self,
        dir: &Path,
        key: &SecretKey,
        progress: &dyn Fn(BuildEvent),
    ) -> Result<KitArchive> {
        let kf = Kitfile::read(dir)?;
        let total = kf.step.len() as u64 + kf.golden.len() as u64 + 2;
        progress(BuildEvent::Start { total });
        let mut blobs: BTreeMap<Digest, Arc<Vec<u8>>> = BTreeMap::new();
        let mut add = |bytes: Vec<u8>| {
            let d = Digest::of(&bytes);
            blobs.entry(d).or_insert_with(|| Arc::new(bytes));
            d
        };
        let mut steps = Vec::new();
        let mut onnx_models: BTreeMap<String, crate::onnx::OnnxModel> = BTreeMap::new();
        for spec in &kf.step {
            let kind = match (&spec.stage, &spec.model) {
                (Some(_), Some(_)) => {
                    return Err(Error::invalid(
                        format!("step `{}`", spec.name),
                        "has both `stage` and `model`; a step is one or the other",
                    ))
                }
                (None, None) => {
                    return Err(Error::invalid(
                        format!("step `{}`", spec.name),
                        "has neither `stage` nor `model`: unknown step kind",
                    ))
                }
                (Some(stage), None) => {
                    if spec.scan.is_some()
                        || spec.architecture.is_some()
                        || !spec.batch.is_empty()
                        || !spec.ports.is_empty()
                    {
                        return Err(Error::invalid(
                            format!("step `{}`", spec.name),
                            "`scan`, `batch`, `ports` and `architecture` apply to model steps only (a stage declares its own ports)",
                        ));
                    }
                    let wasm = self.stage_wasm(&dir.join(stage), progress)?;
                    let features = crate::wasm::features_used(&wasm);
                    if !features.iter().any(|f| f == "simd128") {
                        progress(BuildEvent::Warning(format!(
                            "step `{}`: the stage's code has no SIMD instructions; if it works on pixels or samples, build it with `-C target-feature=+simd128` (in the crate's .cargo/config.toml)",
                            spec.name
                        )));
                    }
                    let mut assets = BTreeMap::new();
                    let mut asset_bytes = Vec::new();
                    for (name, a) in &spec.assets {
                        let bytes = match a {
                            AssetSpec::File(p) => read(&dir.join(p))?,
                            AssetSpec::ModelMetadata {
                                model_step,
                                metadata,
                            } => {
                                let m = onnx_models.get(model_step).ok_or_else(|| {
                                    Error::invalid(
                                        format!("step `{}` asset `{name}`", spec.name),
                                        format!("`{model_step}` is not an earlier onnx step"),
                                    )
                                })?;
                                m.metadata(metadata)?
                                    .ok_or_else(|| {
                                        Error::invalid(
                                            format!("step `{}` asset `{name}`", spec.name),
                                            format!(
                                                "model `{model_step}` has no metadata `{metadata}`"
                                            ),
                                        )
                                    })?
                                    .into_bytes()
                            }
                        };
                        asset_bytes.push((name.clone(), Arc::new(bytes.clone())));
                        assets.insert(name.clone(), add(bytes));
                    }
                    let config = spec.config.clone().unwrap_or_else(|| serde_json::json!({}));
                    let limits = spec.limits.unwrap_or_default();
                    let runner = self.runtime.stages().prepare(
                        &spec.name,
                        &wasm,
                        &config,
                        asset_bytes,
                        limits,
                    )?;
                    StepKind::Stage {
                        wasm: add(wasm),
                        config,
                        assets,
                        contract: runner.contract().clone(),
                        limits,
                        features,
                    }
                }
                (None, Some(model)) => {
                    let path = dir.join(model);
                    let bytes = read(&path)?;
                    let is_onnx = path.extension().is_some_and(|e| e == "onnx");
                    match (&spec.architecture, is_onnx) {
                        (None, true) => {
                            if spec.config.is_some() || !spec.assets.is_empty() {
                                return Err(Error::invalid(format!("step `{}`", spec.name), "onnx models take no `config` or `assets`"));
                            }
                            let mut m = self.runtime.ort()?.model(&spec.name, &bytes)?.declare(&spec.ports)?;
                            if !spec.batch.is_empty() {
                                // Checked here so that a wrong axis fails the build, not the device.
                                m = m.with_batching(&spec.batch, 1)?;
                            }
                            let signature = m.signature().clone();
                            onnx_models.insert(spec.name.clone(), m);
                            StepKind::Onnx { model: add(bytes), signature, scan: spec.scan.clone(), batch: spec.batch.clone(), declared: spec.ports.clone() }
                        }
                        (Some(arch), false) => {
                            if spec.scan.is_some() || !spec.batch.is_empty() || !spec.ports.is_empty() {
                                return Err(Error::invalid(format!("step `{}`", spec.name), "`scan`, `batch` and `ports` apply to onnx models only"));
                            }
                            let mut files = BTreeMap::new();
                            for (name, a) in &spec.assets {
                                match a {
                                    AssetSpec::File(p) => {
                                        files.insert(name.clone(), read(&dir.join(p))?);
                                    }
                                    AssetSpec::ModelMetadata { .. } => {
                                        return Err(Error::invalid(format!("step `{}` asset `{name}`", spec.name), "candle assets must be files"))
                                    }
                                }
                            }
                            let config = spec.config.clone().unwrap_or(serde_json::Value::Null);
                            let lookup = |n: &str| files.get(n).cloned();
                            let m = CandleModel::load(&spec.name, arch, &bytes, &config, &lookup)?;
                            let signature = m.signature().clone();
                            let assets = files.into_iter().map(|(k, v)| (k, add(v))).collect();
                            StepKind::Candle { weights: add(bytes), architecture: arch.clone(), config, assets, signature }
                        }
                        (None, false) => {
                            return Err(Error::invalid(
                                format!("step `{}`", spec.name),
                                format!("model `{model}` is not a .onnx file, so it needs an `architecture` (bert, mlp)"),
                            ))
                        }
                        (Some(_), true) => {
                            return Err(Error::invalid(format!("step `{}`", spec.name), "onnx models take no `architecture`"))
                        }
                    }
                }
            };
            steps.push(Step {
                name: spec.name.clone(),
                kind,
                inputs: spec.inputs.clone(),
                outputs: spec.outputs.clone(),
            });
            progress(BuildEvent::Progress(format!("step {}", spec.name)));
        }
        let mut golden = Vec::new();
        for (i, g) in kf.golden.iter().enumerate() {
            let mut inputs = BTreeMap::new();
            for (k, p) in &g.inputs {
                inputs.insert(k.clone(), add(read(&dir.join(p))?));
            }
            let expected = read(&dir.join(&g.expected))?;
            serde_json::from_slice::<serde_json::Value>(&expected).map_err(|e| {
                Error::invalid(
                    format!("golden[{i}].expected"),
                    format!("{} is not json: {e}", g.expected),
                )
            })?;
            golden.push(Golden {
                inputs,
                expected: add(expected),
                tolerance: g.tolerance.clone(),
            });
        }
        let manifest = Manifest {
            schema: SCHEMA,
            name: kf.kit.name,
            version: kf.kit.version,
            scenario: kf.kit.scenario,
            industries: kf.kit.industries,
            description: kf.kit.description,
            license: kf.kit.license,
            inputs: kf.input,
            outputs: kf.output,
            steps,
            golden,
            resources: kf.resources,
            blobs: blobs.iter().map(|(d, b)| (*d, b.len() as u64)).collect(),
            sampling: kf.sampling,
            training: kf.training,
        };
        manifest.validate()?;
        progress(BuildEvent::Progress("manifest".into()));
        let manifest_bytes = manifest.canonical_json();
        let signature = key.sign(&manifest_bytes);
        let archive = KitArchive {
            manifest,
            manifest_bytes,
            signatures: vec![signature],
            blobs,
        };
        // Run the golden samples exactly as a device would: verify, load, run.
        let mut roots = crate::sign::TrustRoots::new();
        roots.trust(key.public());
        let verified = archive.clone().verify(&roots)?;
        let loaded = self.runtime.load(&verified)?;
        // Every sample runs, so that the author sees every mismatch at once.
        let mut failed: Vec<(usize, String)> = Vec::new();
        for outcome in run_golden(&loaded, &archive)? {
            progress(BuildEvent::Golden {
                index: outcome.index,
                failure: outcome.failure.clone(),
                outputs: outcome.outputs.as_ref().map(crate::value::values_json),
            });
            match outcome.failure {
                Some(f) => failed.push((outcome.index, f)),
                None => progress(BuildEvent::Progress(format!(
                    "golden sample {}",
                    outcome.index
                ))),
            }
        }
        if let Some(&(index, _)) = failed.first() {
            return Err(Error::Golden {
                index,
                message: golden_report(&failed, archive.manifest.golden.len()),
            });
        }
        progress(BuildEvent::Progress("signed".into()));
        Ok(archive)
    }

    /// A `.wasm` file as is, or a stage crate built for `wasm32-wasip2` by
    /// cargo run in the crate's own folder (so that its `.cargo/config.toml`
    /// applies: target features, target folder), its lines reported as they come.
    /// A stage's WASM: the file itself, or the crate built as a component.
    pub fn stage_wasm(&self, path: &Path, progress: &dyn Fn(BuildEvent)) -> Result<Vec<u8>> {
        if path.is_file() {
            return read(path);
        }
        if !path.join("Cargo.toml").is_file() {
            return Err(Error::invalid(
                "stage",
                format!(
                    "{} is neither a .wasm file nor a crate folder",
                    path.display()
                ),
            ));
        }
        // cargo runs in the crate's folder, so every path it gets is absolute.
        let path = &std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
        let manifest = path.join("Cargo.toml");
        let build_error = |message: String| Error::StageBuild {
            path: path.into(),
            message,
        };
        let meta = Command::new(&self.cargo)
            .current_dir(path)
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(&manifest)
            .output()
            .map_err(|e| build_error(format!("cannot run cargo: {e}")))?;
        if !meta.status.success() {
            return Err(build_error(
                String::from_utf8_lossy(&meta.stderr).into_owned(),
            ));
        }
        let meta: serde_json::Value = serde_json::from_slice(&meta.stdout)
            .map_err(|e| build_error(format!("cargo metadata: {e}")))?;
        let target_dir = meta["target_directory"]
            .as_str()
            .map(PathBuf::from)
            .unwrap_or_else(|| path.join("target"));
        let canon = std::fs::canonicalize(&manifest).map_err(|e| Error::io(&manifest, e))?;
        let pkg = meta["packages"]
            .as_array()
            .and_then(|ps| {
                ps.iter().find(|p| {
                    p["manifest_path"]
                        .as_str()
                        .and_then(|m| std::fs::canonicalize(m).ok())
                        .as_deref()
                        == Some(canon.as_path())
                })
            })
            .and_then(|p| p["name"].as_str())
            .ok_or_else(|| build_error("no package in Cargo.toml".into()))?
            .to_owned();
        let mut child = Command::new(&self.cargo)
            .current_dir(path)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--package",
                &pkg,
                "--manifest-path",
            ])
            .arg(&manifest)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| build_error(format!("cannot run cargo: {e}")))?;
        // The last lines are kept for the error; each is reported as it comes.
        let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
        if let Some(stderr) = child.stderr.take() {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                progress(BuildEvent::Building(line.trim().to_owned()));
                if tail.len() == 200 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
        let status = child
            .wait()
            .map_err(|e| build_error(format!("cargo did not finish: {e}")))?;
        if !status.success() {
            let err = Vec::from(tail).join("\n");
            let hint =
                if err.contains("wasm32-wasip2") && err.contains("target may not be installed") {
                    "\nhint: rustup target add wasm32-wasip2"
                } else {
                    ""
                };
            return Err(build_error(format!("cargo build failed:\n{err}{hint}")));
        }
        read(
            &target_dir
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", pkg.replace('-', "_"))),
        )
    }
}

/// A new version of a kit with one candle step's weights replaced (a retrained
/// model): every other blob is the base kit's, so a device that has the base
/// kit fetches only the new weights. The golden samples run as a device would
/// run them, then the manifest is signed with `key`.
pub fn derive(
    runtime: &Runtime,
    base: &KitArchive,
    step: &str,
    weights: Vec<u8>,
    version: &str,
    key: &SecretKey,
) -> Result<KitArchive> {
    let mut manifest = base.manifest.clone();
    manifest.version = version.to_owned();
    let new = Digest::of(&weights);
    let target = manifest
        .steps
        .iter_mut()
        .find(|s| s.name == step)
        .ok_or_else(|| Error::invalid("step", format!("`{step}` is not a step of the kit")))?;
    match &mut target.kind {
        StepKind::Candle { weights: w, .. } => *w = new,
        _ => {
            return Err(Error::invalid(
                "step",
                format!("`{step}` is not a candle model step"),
            ))
        }
    }
    let mut blobs: BTreeMap<Digest, Arc<Vec<u8>>> = BTreeMap::new();
    blobs.insert(new, Arc::new(weights));
    let mut wanted: Vec<Digest> = manifest
        .steps
        .iter()
        .flat_map(|s| s.blobs())
        .map(|(d, _)| d)
        .collect();
    for g in &manifest.golden {
        wanted.extend(g.inputs.values().copied());
        wanted.push(g.expected);
    }
    for d in wanted {
        if let std::collections::btree_map::Entry::Vacant(v) = blobs.entry(d) {
            v.insert(
                base.blobs.get(&d).cloned().ok_or_else(|| {
                    Error::invalid("blobs", format!("{d} is not in the base kit"))
                })?,
            );
        }
    }
    manifest.blobs = blobs.iter().map(|(d, b)| (*d, b.len() as u64)).collect();
    manifest.validate()?;
    let manifest_bytes = manifest.canonical_json();
    let archive = KitArchive {
        signatures: vec![key.sign(&manifest_bytes)],
        manifest,
        manifest_bytes,
        blobs,
    };
    let mut roots = crate::sign::TrustRoots::new();
    roots.trust(key.public());
    let loaded = runtime.load(&archive.clone().verify(&roots)?)?;
    for outcome in run_golden(&loaded, &archive)? {
        if let Some(f) = outcome.failure {
            return Err(Error::Golden {
                index: outcome.index,
                message: f,
            });
        }
    }
    Ok(archive)
}

/// Every failing sample and each of its mismatches, for one error.
fn golden_report(failed: &[(usize, String)], total: usize) -> String {
    let mut out = format!("{} of {total} samples failed", failed.len());
    for (i, f) in failed {
        out.push_str(&format!("\n  golden sample {i}:"));
        for line in f.lines() {
            out.push_str(&format!("\n    {line}"));
        }
    }
    out
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

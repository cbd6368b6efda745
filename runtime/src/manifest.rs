//! The kit manifest: canonical JSON that names every blob by digest.
//!
//! The manifest is what a kit *is*: its digest is the kit's identity and the
//! signatures cover its exact bytes. [`Manifest::validate`] checks everything
//! that can be checked without running anything: names, versions, that every
//! step's inputs are produced earlier with a type that fits, and that the
//! kit's outputs are produced.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::value::{Dim, PortType};

/// The manifest schema this runtime writes and reads.
pub const SCHEMA: u32 = 1;

/// A named, typed port.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: PortType,
}

/// The ports a stage or model reads and writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
}

/// An input or output of the whole kit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KitPort {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: PortType,
    /// What the bytes are (`image/*`, `audio/wav`, ...), for `bytes` ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
}

/// Sandbox limits of a stage call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest linear memory the stage may grow to.
    pub memory_mb: u32,
    /// Wall-clock budget of one call.
    pub time_ms: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 256,
            time_ms: 5_000,
        }
    }
}

/// Runs a model once per slice of some inputs' first axis, carrying state between slices
/// (the way a streaming model such as silero VAD is driven over a whole recording).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    /// Model inputs fed one slice of the first axis at a time.
    pub over: Vec<String>,
    /// Model output → model input fed back on the next slice. The input's first value is
    /// the pipeline value bound to it; the output's last value is what the step returns.
    #[serde(default)]
    pub carry: BTreeMap<String, String>,
}

/// What a step does. In JSON: `{"stage": {...}}`, `{"onnx": {...}}` or `{"candle": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepKind {
    /// A WASM component implementing the stage interface.
    Stage {
        wasm: Digest,
        #[serde(default)]
        config: serde_json::Value,
        #[serde(default)]
        assets: BTreeMap<String, Digest>,
        contract: Contract,
        #[serde(default)]
        limits: Limits,
        /// Optional WebAssembly features the stage's code uses (`simd128`),
        /// read from the code by the packager.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
    },
    /// An ONNX model run by ONNX Runtime. The signature is read from the model.
    Onnx {
        model: Digest,
        signature: Contract,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scan: Option<Scan>,
        /// Model port → its batch axis, for models that take a batch: calls that
        /// overlap may then run as one. Every output needs one; inputs without
        /// one must be equal across the calls joined.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        batch: BTreeMap<String, usize>,
        /// Ports whose type the kit declares in place of the one the model file
        /// states (exports often state shapes that are wrong); `signature` already
        /// has them. Outputs are checked against them on every call.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        declared: BTreeMap<String, PortType>,
    },
    /// A safetensors model run by candle, with a named architecture.
    Candle {
        weights: Digest,
        architecture: String,
        #[serde(default)]
        config: serde_json::Value,
        #[serde(default)]
        assets: BTreeMap<String, Digest>,
        signature: Contract,
    },
}

/// One step of the pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    /// Port → pipeline value it reads. A port not listed reads the value of its own name.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Port → pipeline value it writes. A port not listed writes the value of its own name.
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
}

impl Step {
    /// The contract the step presents to the pipeline (a scanned model adds a first axis).
    pub fn contract(&self) -> Contract {
        match &self.kind {
            StepKind::Stage { contract, .. } => contract.clone(),
            StepKind::Candle { signature, .. } => signature.clone(),
            StepKind::Onnx {
                signature,
                scan: None,
                ..
            } => signature.clone(),
            StepKind::Onnx {
                signature,
                scan: Some(scan),
                ..
            } => {
                let add_axis = |p: &Port| match &p.ty {
                    PortType::Tensor { dtype, shape } => {
                        let mut s = vec![Dim::Any];
                        s.extend(shape.iter().copied());
                        Port {
                            name: p.name.clone(),
                            ty: PortType::Tensor {
                                dtype: *dtype,
                                shape: s,
                            },
                        }
                    }
                    _ => p.clone(),
                };
                Contract {
                    inputs: signature
                        .inputs
                        .iter()
                        .map(|p| {
                            if scan.over.contains(&p.name) {
                                add_axis(p)
                            } else {
                                p.clone()
                            }
                        })
                        .collect(),
                    outputs: signature
                        .outputs
                        .iter()
                        .map(|p| {
                            if scan.carry.contains_key(&p.name) {
                                p.clone()
                            } else {
                                add_axis(p)
                            }
                        })
                        .collect(),
                }
            }
        }
    }

    /// The pipeline value a port reads.
    pub fn input_value<'a>(&'a self, port: &'a str) -> &'a str {
        self.inputs.get(port).map(String::as_str).unwrap_or(port)
    }

    /// The pipeline value a port writes.
    pub fn output_value<'a>(&'a self, port: &'a str) -> &'a str {
        self.outputs.get(port).map(String::as_str).unwrap_or(port)
    }

    /// Every blob the step needs.
    pub fn blobs(&self) -> Vec<(Digest, String)> {
        let mut out = Vec::new();
        match &self.kind {
            StepKind::Stage { wasm, assets, .. } => {
                out.push((*wasm, format!("step `{}` wasm", self.name)));
                out.extend(
                    assets
                        .iter()
                        .map(|(k, d)| (*d, format!("step `{}` asset `{k}`", self.name))),
                );
            }
            StepKind::Onnx { model, .. } => {
                out.push((*model, format!("step `{}` model", self.name)))
            }
            StepKind::Candle {
                weights, assets, ..
            } => {
                out.push((*weights, format!("step `{}` weights", self.name)));
                out.extend(
                    assets
                        .iter()
                        .map(|(k, d)| (*d, format!("step `{}` asset `{k}`", self.name))),
                );
            }
        }
        out
    }
}

/// How close a golden sample's output must come to the expected one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// Largest absolute difference allowed between numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abs: Option<f64>,
    /// Smallest cosine similarity allowed between tensors (or numeric arrays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosine: Option<f64>,
    /// Tolerances of single fields, by path: an output's name, then `.key`
    /// for each object key on the way (`boxes`, `result.score`; array items
    /// share their array's path). A field takes the tolerance of the longest
    /// path that leads to it, else `abs` and `cosine` above.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldTolerance>,
}

/// The tolerance of one field of a golden sample's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldTolerance {
    /// Largest absolute difference allowed between numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abs: Option<f64>,
    /// Smallest cosine similarity allowed between tensors (or numeric arrays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosine: Option<f64>,
}

impl Tolerance {
    /// The tolerance of everything the per-field table does not name.
    pub fn base(&self) -> FieldTolerance {
        FieldTolerance {
            abs: self.abs,
            cosine: self.cosine,
        }
    }

    /// Checks the values and paths a manifest carries.
    pub fn check(&self, at: &str) -> std::result::Result<(), String> {
        let ok = |t: &FieldTolerance, name: &str| -> std::result::Result<(), String> {
            if let Some(a) = t.abs {
                if !(a.is_finite() && a >= 0.0) {
                    return Err(format!("{name}.abs: {a} must be a number of at least 0"));
                }
            }
            if let Some(c) = t.cosine {
                if !(c.is_finite() && (-1.0..=1.0).contains(&c)) {
                    return Err(format!("{name}.cosine: {c} must lie in -1..1"));
                }
            }
            Ok(())
        };
        ok(&self.base(), at)?;
        for (path, t) in &self.fields {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(format!(
                    "{at}.fields: `{path}` is not a path of output and keys (`name.key`)"
                ));
            }
            ok(t, &format!("{at}.fields.\"{path}\""))?;
        }
        Ok(())
    }
}

/// An input with the output that must come out of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Golden {
    /// Kit input → blob holding it (raw bytes, UTF-8 text, JSON, or a JSON tensor).
    pub inputs: BTreeMap<String, Digest>,
    /// Blob holding a JSON object: kit output → expected value.
    pub expected: Digest,
    #[serde(default)]
    pub tolerance: Tolerance,
}

/// What the kit needs from the device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub memory_mb: u32,
    #[serde(default)]
    pub cpus: u32,
}

/// The kit manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    /// `team/name`.
    pub name: String,
    /// Semantic version.
    pub version: String,
    pub scenario: String,
    #[serde(default)]
    pub industries: Vec<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub license: String,
    pub inputs: Vec<KitPort>,
    pub outputs: Vec<KitPort>,
    pub steps: Vec<Step>,
    #[serde(default)]
    pub golden: Vec<Golden>,
    #[serde(default)]
    pub resources: Resources,
    /// Every blob of the kit with its size in bytes.
    pub blobs: BTreeMap<Digest, u64>,
    /// Which served requests are kept as hard examples for retraining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<Sampling>,
    /// How the kit's model is retrained from labelled field samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<Training>,
}

/// A kit's training recipe: which model step is retrained, on what, how.
///
/// The step is a candle `mlp` whose input `x` reads one of the kit's inputs (a
/// field sample's input bytes are the model's features as they were served), or
/// a head on frozen features: `x` is made by the steps before it from the kit's
/// one input, and the trainer replays those steps (caching what they give by
/// their digest and the input's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// The `mlp` step retrained.
    pub step: String,
    /// The base training set: a dataset (`team/name@version` or its digest).
    pub dataset: String,
    /// The frozen base holdout: a dataset never trained on.
    pub holdout: String,
    /// The datasets' label column (a header name, or a 0-based index for CSVs without one).
    pub label_column: String,
    /// Label values in class order: output `i` of the model is `classes[i]`.
    pub classes: Vec<String>,
    /// What the gate compares: `accuracy` (McNemar and the bootstrap on the
    /// accuracy gain), or `auc` for two classes (DeLong and the bootstrap on
    /// the AUC gain; `classes[1]` is the positive class).
    #[serde(default = "default_metric")]
    pub metric: String,
    /// Full-batch epochs per round, warm-started from the model serving.
    pub epochs: usize,
    pub learning_rate: f64,
    /// Seeds initialisation and order, so a round is reproducible.
    #[serde(default)]
    pub seed: u64,
    /// The most a challenger's whole kit may take per call (median, measured
    /// by the trainer beside the champion). None: 1.5× the champion's + 1 ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_budget_ms: Option<f64>,
    /// The largest a challenger's kit may be. None: 1.1× the champion's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_budget_mb: Option<f64>,
}

fn default_metric() -> String {
    "accuracy".into()
}

impl Training {
    /// Checks the recipe against the kit's steps and inputs.
    pub fn validate(&self, m: &Manifest) -> Result<()> {
        let step = m
            .steps
            .iter()
            .find(|s| s.name == self.step)
            .ok_or_else(|| {
                Error::invalid(
                    "training.step",
                    format!("`{}` is not a step of the kit", self.step),
                )
            })?;
        let StepKind::Candle {
            architecture,
            config,
            ..
        } = &step.kind
        else {
            return Err(Error::invalid(
                "training.step",
                format!("`{}` is not a candle model step", self.step),
            ));
        };
        if architecture != "mlp" {
            return Err(Error::invalid(
                "training.step",
                format!(
                    "`{}` is a `{architecture}`; only an `mlp` is trainable",
                    self.step
                ),
            ));
        }
        let classes = config["layers"]
            .as_array()
            .and_then(|l| l.last())
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as usize;
        if self.classes.len() != classes {
            return Err(Error::invalid(
                "training.classes",
                format!(
                    "{} classes listed, the model `{}` has {classes} outputs",
                    self.classes.len(),
                    self.step
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        if let Some(dup) = self.classes.iter().find(|c| !seen.insert(c.as_str())) {
            return Err(Error::invalid(
                "training.classes",
                format!("`{dup}` is listed twice"),
            ));
        }
        // The model reads a kit input (a sample's bytes are its features), or
        // a value the steps before it make from the kit's one input (a head
        // on frozen features: the trainer replays those steps).
        let x = step.input_value("x");
        if !m.inputs.iter().any(|p| p.name == x) {
            let at = m
                .steps
                .iter()
                .position(|s| s.name == self.step)
                .unwrap_or_default();
            let made = m.steps[..at].iter().any(|s| {
                s.contract()
                    .outputs
                    .iter()
                    .any(|p| s.output_value(&p.name) == x)
            });
            if !made {
                return Err(Error::invalid(
                    "training.step",
                    format!(
                        "the input `x` of `{}` reads `{x}`, which is neither a kit input nor made by a step before it",
                        self.step
                    ),
                ));
            }
            if m.inputs.len() != 1 {
                return Err(Error::invalid(
                    "training.step",
                    format!(
                        "`{}` is a head on the steps before it, which the trainer replays on a sample's input; the kit has {} inputs, it must have one",
                        self.step,
                        m.inputs.len()
                    ),
                ));
            }
        }
        for (field, v) in [
            ("training.dataset", &self.dataset),
            ("training.holdout", &self.holdout),
        ] {
            if v.trim().is_empty() {
                return Err(Error::invalid(field, "must name a dataset"));
            }
        }
        if self.dataset == self.holdout {
            return Err(Error::invalid(
                "training.holdout",
                "is the training dataset; the holdout must be a different one",
            ));
        }
        if self.label_column.trim().is_empty() {
            return Err(Error::invalid("training.label_column", "must not be empty"));
        }
        match self.metric.as_str() {
            "accuracy" => {}
            "auc" if self.classes.len() == 2 => {}
            "auc" => {
                return Err(Error::invalid(
                    "training.metric",
                    format!(
                        "`auc` ranks two classes (the second is the positive one); {} are listed",
                        self.classes.len()
                    ),
                ))
            }
            other => {
                return Err(Error::invalid(
                    "training.metric",
                    format!("`{other}` is not known (accuracy, auc)"),
                ))
            }
        }
        if !(1..=100_000).contains(&self.epochs) {
            return Err(Error::invalid(
                "training.epochs",
                format!("{} is not within 1..=100000", self.epochs),
            ));
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate < 10.0)
        {
            return Err(Error::invalid(
                "training.learning_rate",
                format!("{} is not a rate in (0, 10)", self.learning_rate),
            ));
        }
        for (field, v) in [
            ("training.latency_budget_ms", self.latency_budget_ms),
            ("training.size_budget_mb", self.size_budget_mb),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(Error::invalid(
                        field,
                        format!("{v} is not a positive number"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A kit's sample filter: which served requests are hard examples.
///
/// - `score_below`: the lowest `score` anywhere in a JSON output is under `threshold`;
/// - `entropy_above`: the entropy (nats) of a tensor output's last dimension,
///   read as probabilities (softmax first if they are not), is over `threshold`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    pub rule: String,
    pub output: String,
    pub threshold: f64,
}

impl Sampling {
    /// Checks the rule against the kit's outputs.
    pub fn validate(&self, outputs: &[KitPort]) -> Result<()> {
        let port = outputs
            .iter()
            .find(|p| p.name == self.output)
            .ok_or_else(|| {
                Error::invalid(
                    "sampling.output",
                    format!("`{}` is not one of the kit's outputs", self.output),
                )
            })?;
        if !self.threshold.is_finite() {
            return Err(Error::invalid(
                "sampling.threshold",
                "must be a finite number",
            ));
        }
        match (self.rule.as_str(), &port.ty) {
            ("score_below", PortType::Json) | ("entropy_above", PortType::Tensor { .. }) => Ok(()),
            ("score_below", t) | ("entropy_above", t) => Err(Error::invalid(
                "sampling.output",
                format!(
                    "rule `{}` reads a {} output; `{}` is {t}",
                    self.rule,
                    if self.rule == "score_below" {
                        "json"
                    } else {
                        "tensor"
                    },
                    self.output
                ),
            )),
            (other, _) => Err(Error::invalid(
                "sampling.rule",
                format!("`{other}` is not a rule (score_below, entropy_above)"),
            )),
        }
    }

    /// Why a request with these outputs is a hard example, if it is one.
    pub fn matches(&self, outputs: &crate::value::Values) -> Option<String> {
        match (self.rule.as_str(), outputs.get(&self.output)?) {
            ("score_below", crate::value::Value::Json(text)) => {
                fn lowest(v: &serde_json::Value, min: &mut Option<f64>) {
                    match v {
                        serde_json::Value::Object(o) => {
                            for (k, x) in o {
                                match (k.as_str(), x.as_f64()) {
                                    ("score", Some(f)) => {
                                        *min = Some(min.map_or(f, |m: f64| m.min(f)))
                                    }
                                    _ => lowest(x, min),
                                }
                            }
                        }
                        serde_json::Value::Array(a) => a.iter().for_each(|x| lowest(x, min)),
                        _ => {}
                    }
                }
                let v: serde_json::Value = serde_json::from_str(text).ok()?;
                let mut min = None;
                lowest(&v, &mut min);
                let m = min?;
                (m < self.threshold)
                    .then(|| format!("lowest score {m:.4} is below {}", self.threshold))
            }
            ("entropy_above", crate::value::Value::Tensor(t)) => {
                let v = t.to_f64_lossy();
                let n = *t.shape.last()?;
                if n == 0 {
                    return None;
                }
                let mut worst: f64 = 0.0;
                for row in v.chunks(n) {
                    let sum: f64 = row.iter().sum();
                    let probs: Vec<f64> =
                        if row.iter().all(|p| *p >= 0.0) && (sum - 1.0).abs() < 1e-3 {
                            row.to_vec()
                        } else {
                            let max = row.iter().cloned().fold(f64::MIN, f64::max);
                            let e: Vec<f64> = row.iter().map(|x| (x - max).exp()).collect();
                            let s: f64 = e.iter().sum();
                            e.into_iter().map(|x| x / s).collect()
                        };
                    let h: f64 = probs
                        .iter()
                        .filter(|p| **p > 0.0)
                        .map(|p| -p * p.ln())
                        .sum();
                    worst = worst.max(h);
                }
                (worst > self.threshold)
                    .then(|| format!("entropy {worst:.4} is above {}", self.threshold))
            }
            _ => None,
        }
    }
}

/// Checks a `team/name` reference: two lowercase segments of `a-z 0-9 - _ .`, no `..`.
pub fn validate_name(field: &str, name: &str) -> Result<()> {
    let segs: Vec<&str> = name.split('/').collect();
    let seg_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s != "."
            && s != ".."
            && !s.starts_with('.')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
    };
    if segs.len() != 2 || !segs.iter().all(|s| seg_ok(s)) {
        return Err(Error::invalid(
            field,
            format!("`{}` must be `team/name`, each part 1-64 of a-z 0-9 - _ . and not starting with a dot", crate::error::shown(name)),
        ));
    }
    Ok(())
}

impl Manifest {
    /// Parses manifest bytes strictly (unknown fields are errors) and validates them.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid("manifest.json", e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// The canonical bytes: keys sorted, no white space. Their digest is the kit's digest.
    pub fn canonical_json(&self) -> Vec<u8> {
        // serde_json's default map is ordered, so going through `Value` sorts every key.
        let v = serde_json::to_value(self).expect("manifest serialises");
        serde_json::to_vec(&v).expect("json value serialises")
    }

    /// The kit's identity.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.canonical_json())
    }

    /// `team/name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Checks names, versions, blob references and the wiring of the pipeline.
    pub fn validate(&self) -> Result<()> {
        if self.schema != SCHEMA {
            return Err(Error::invalid(
                "manifest.schema",
                format!(
                    "{} is not supported (this runtime reads {SCHEMA})",
                    self.schema
                ),
            ));
        }
        validate_name("name", &self.name)?;
        semver::Version::parse(&self.version).map_err(|e| {
            Error::invalid(
                "version",
                format!("`{}` is not a semantic version: {e}", self.version),
            )
        })?;
        if self.scenario.trim().is_empty() {
            return Err(Error::invalid("scenario", "must not be empty"));
        }
        if self.inputs.is_empty() {
            return Err(Error::invalid("inputs", "a kit needs at least one input"));
        }
        if self.outputs.is_empty() {
            return Err(Error::invalid("outputs", "a kit needs at least one output"));
        }
        if self.steps.is_empty() {
            return Err(Error::invalid("steps", "a kit needs at least one step"));
        }
        if let Some(s) = &self.sampling {
            s.validate(&self.outputs)?;
        }
        if let Some(t) = &self.training {
            t.validate(self)?;
        }
        // Every referenced blob is listed.
        let mut named: Vec<(Digest, String)> = self.steps.iter().flat_map(Step::blobs).collect();
        for (i, g) in self.golden.iter().enumerate() {
            named.extend(
                g.inputs
                    .iter()
                    .map(|(k, d)| (*d, format!("golden[{i}] input `{k}`"))),
            );
            named.push((g.expected, format!("golden[{i}] expected")));
        }
        for (d, by) in &named {
            if !self.blobs.contains_key(d) {
                return Err(Error::invalid(
                    "blobs",
                    format!("{d} ({by}) is not listed in blobs"),
                ));
            }
        }
        self.check_wiring()?;
        for (i, g) in self.golden.iter().enumerate() {
            let at = format!("golden[{i}].tolerance");
            g.tolerance
                .check(&at)
                .map_err(|m| Error::invalid(at.clone(), m))?;
            for path in g.tolerance.fields.keys() {
                let output = path.split('.').next().unwrap_or_default();
                if !self.outputs.iter().any(|p| p.name == output) {
                    return Err(Error::invalid(
                        format!("{at}.fields"),
                        format!("`{path}`: `{output}` is not an output of the kit"),
                    ));
                }
            }
            for k in g.inputs.keys() {
                if !self.inputs.iter().any(|p| &p.name == k) {
                    return Err(Error::invalid(
                        format!("golden[{i}].inputs"),
                        format!("`{k}` is not an input of the kit"),
                    ));
                }
            }
            for p in &self.inputs {
                if !g.inputs.contains_key(&p.name) {
                    return Err(Error::invalid(
                        format!("golden[{i}].inputs"),
                        format!("kit input `{}` is missing", p.name),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_wiring(&self) -> Result<()> {
        let mut available: BTreeMap<String, (PortType, String)> = BTreeMap::new();
        let mut seen_inputs = BTreeSet::new();
        for p in &self.inputs {
            if !seen_inputs.insert(&p.name) {
                return Err(Error::invalid(
                    "inputs",
                    format!("`{}` is declared twice", p.name),
                ));
            }
            available.insert(p.name.clone(), (p.ty.clone(), "the kit's input".into()));
        }
        let mut step_names = BTreeSet::new();
        for step in &self.steps {
            if step.name.is_empty() || !step_names.insert(step.name.as_str()) {
                return Err(Error::invalid(
                    "steps",
                    format!("step name `{}` is empty or used twice", step.name),
                ));
            }
            let contract = step.contract();
            for port in step.inputs.keys() {
                if !contract.inputs.iter().any(|p| &p.name == port) {
                    return Err(Error::Pipeline(format!(
                        "step `{}` binds input `{port}`, which it does not have (it has: {})",
                        step.name,
                        names(&contract.inputs)
                    )));
                }
            }
            for port in step.outputs.keys() {
                if !contract.outputs.iter().any(|p| &p.name == port) {
                    return Err(Error::Pipeline(format!(
                        "step `{}` binds output `{port}`, which it does not have (it has: {})",
                        step.name,
                        names(&contract.outputs)
                    )));
                }
            }
            for port in &contract.inputs {
                let value = step.input_value(&port.name);
                let (ty, from) = available.get(value).ok_or_else(|| {
                    Error::Pipeline(format!(
                        "step `{}` reads `{value}` (port `{}`), which no earlier step or kit input produces",
                        step.name, port.name
                    ))
                })?;
                if !ty.fits(&port.ty) {
                    return Err(Error::Pipeline(format!(
                        "step `{}` port `{}` takes {}, but `{value}` from {from} is {ty}",
                        step.name, port.name, port.ty
                    )));
                }
            }
            for port in &contract.outputs {
                let value = step.output_value(&port.name);
                available.insert(
                    value.to_owned(),
                    (port.ty.clone(), format!("step `{}`", step.name)),
                );
            }
        }
        for out in &self.outputs {
            let (ty, from) = available.get(out.name.as_str()).ok_or_else(|| {
                Error::Pipeline(format!("kit output `{}` is produced by no step", out.name))
            })?;
            if !ty.fits(&out.ty) {
                return Err(Error::Pipeline(format!(
                    "kit output `{}` is declared {}, but {from} produces {ty}",
                    out.name, out.ty
                )));
            }
        }
        Ok(())
    }
}

fn names(ports: &[Port]) -> String {
    ports
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod sampling_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::value::{Tensor, Value, Values};

    fn rule(rule: &str, threshold: f64) -> Sampling {
        Sampling {
            rule: rule.into(),
            output: "out".into(),
            threshold,
        }
    }

    #[test]
    fn score_below_finds_the_lowest_score_anywhere_in_the_json() {
        let out: Values = [(
            "out".to_string(),
            Value::Json(
                r#"{"result":[{"text":"a","score":0.97},{"text":"b","score":0.41}]}"#.into(),
            ),
        )]
        .into();
        let why = rule("score_below", 0.5).matches(&out).unwrap();
        assert!(why.contains("0.4100"), "{why}");
        assert_eq!(rule("score_below", 0.4).matches(&out), None);
        let none: Values = [("out".to_string(), Value::Json(r#"{"result":[]}"#.into()))].into();
        assert_eq!(rule("score_below", 0.5).matches(&none), None);
    }

    #[test]
    fn entropy_above_reads_probabilities_or_logits() {
        let sure = Tensor::from_f32(vec![1, 4], &[0.97, 0.01, 0.01, 0.01]);
        let torn = Tensor::from_f32(vec![1, 4], &[0.25, 0.25, 0.25, 0.25]);
        let logits = Tensor::from_f32(vec![1, 4], &[3.0, 3.0, 3.0, 3.0]);
        let r = rule("entropy_above", 1.0);
        let v = |t: Tensor| -> Values { [("out".to_string(), Value::Tensor(t))].into() };
        assert_eq!(r.matches(&v(sure)), None);
        assert!(r.matches(&v(torn)).unwrap().contains("1.3863"));
        assert!(
            r.matches(&v(logits)).is_some(),
            "uniform logits are torn too"
        );
    }

    #[test]
    fn a_rule_that_does_not_fit_the_output_is_named() {
        let json_out = KitPort {
            name: "out".into(),
            ty: "json".parse().unwrap(),
            media: None,
        };
        let err = rule("entropy_above", 1.0)
            .validate(std::slice::from_ref(&json_out))
            .unwrap_err()
            .to_string();
        assert!(err.contains("reads a tensor output"), "{err}");
        let err = rule("median_above", 1.0)
            .validate(std::slice::from_ref(&json_out))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`median_above` is not a rule"), "{err}");
        let err = Sampling {
            output: "missing".into(),
            ..rule("score_below", 0.5)
        }
        .validate(&[json_out])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`missing` is not one of the kit's outputs"),
            "{err}"
        );
    }
}

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

mod golden;
mod policies;

pub use golden::{FieldTolerance, Golden, Tolerance};
pub use policies::{Sampling, Training};

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

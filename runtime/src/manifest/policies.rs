//! What a kit asks beyond running: which served requests are hard examples
//! (`Sampling`), and how its model is retrained (`Training`).

use super::*;

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

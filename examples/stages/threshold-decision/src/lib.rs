//! A yes/no decision from a two-class model at a chosen threshold: the
//! probability of the second (positive) class from the two logits, then the
//! positive label when it reaches `threshold`, else the negative one. The
//! threshold is the deployer's choice (the production line picks the one that
//! balances the two error rates on the training rows), so the same model can
//! screen sensitively or conservatively. One JSON object per row:
//! `{"label": …, "score": …, "threshold": …}`.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};

#[derive(Debug)]
struct ThresholdDecision {
    negative: String,
    positive: String,
    threshold: f64,
}

impl ThresholdDecision {
    fn decide(&self, logits: &[f32]) -> serde_json::Value {
        serde_json::Value::Array(
            logits
                .chunks_exact(2)
                .map(|l| {
                    // softmax over two logits = the logistic of their difference
                    let p = 1.0 / (1.0 + ((l[0] - l[1]) as f64).exp());
                    let label = if p >= self.threshold {
                        &self.positive
                    } else {
                        &self.negative
                    };
                    serde_json::json!({
                        "label": label,
                        "score": (p * 1e4).round() / 1e4,
                        "threshold": self.threshold,
                    })
                })
                .collect(),
        )
    }
}

impl Stage for ThresholdDecision {
    fn contract() -> Contract {
        Contract::new()
            .input("logits", "f32[?,2]")
            .output("result", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let labels = config
            .strings("labels")?
            .ok_or("config field `labels` is missing: name the negative and the positive class")?;
        let [negative, positive] = <[String; 2]>::try_from(labels).map_err(|l| {
            format!(
                "config field `labels` names {} labels; a decision needs exactly two (negative, positive)",
                l.len()
            )
        })?;
        let threshold = config.f64_or("threshold", 0.5)?;
        if !(threshold > 0.0 && threshold < 1.0) {
            return Err(format!(
                "config field `threshold` is {threshold}; it must lie strictly between 0 and 1"
            ));
        }
        Ok(ThresholdDecision {
            negative,
            positive,
            threshold,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let logits = inputs.tensor("logits")?;
        if logits.shape.last() != Some(&2) {
            return Err(format!(
                "logits have shape {:?}; a decision needs two classes",
                logits.shape
            ));
        }
        Ok(Outputs::new().json("result", &self.decide(&logits.to_f32()?)))
    }
}

algobay_stage::stage!(ThresholdDecision);

#[cfg(test)]
mod tests {
    use super::*;

    fn at(threshold: f64) -> ThresholdDecision {
        ThresholdDecision {
            negative: "benign".into(),
            positive: "malignant".into(),
            threshold,
        }
    }

    #[test]
    fn the_threshold_decides_not_the_larger_logit() {
        // p(positive) = logistic(-1) ≈ 0.2689: below 0.5, above 0.2.
        let logits = [1.0f32, 0.0];
        assert_eq!(at(0.5).decide(&logits)[0]["label"], "benign");
        let low = at(0.2).decide(&logits);
        assert_eq!(low[0]["label"], "malignant");
        assert_eq!(low[0]["score"], 0.2689);
        assert_eq!(low[0]["threshold"], 0.2);
    }

    #[test]
    fn one_decision_per_row() {
        let out = at(0.5).decide(&[0.0, 3.0, 3.0, 0.0]);
        let labels: Vec<&str> = out
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["label"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["malignant", "benign"]);
    }

    #[test]
    fn a_threshold_outside_zero_to_one_is_refused_by_name() {
        let cfg =
            Config::parse(r#"{"labels": ["no", "yes"], "threshold": 1.5}"#, Vec::new()).unwrap();
        let err = ThresholdDecision::new(&cfg).unwrap_err();
        assert!(err.contains("`threshold` is 1.5"), "{err}");
        let cfg = Config::parse(r#"{"labels": ["a", "b", "c"]}"#, Vec::new()).unwrap();
        let err = ThresholdDecision::new(&cfg).unwrap_err();
        assert!(err.contains("names 3 labels"), "{err}");
    }
}

//! A regression value with a prediction interval around it: the model's
//! standardised output back in the target's unit (times the training
//! deviation plus the mean), and `value ± half_width`, where `half_width` is a
//! split-conformal quantile of the model's absolute errors on rows it was not
//! trained on, so that about `level` of new rows fall inside. One JSON object
//! per row: `{"value", "low", "high", "level"[, "unit"]}`.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};
use tabular_common::six_figures;

#[derive(Debug)]
struct ConformalInterval {
    mean: f64,
    std: f64,
    half_width: f64,
    level: f64,
    unit: Option<String>,
}

impl ConformalInterval {
    fn intervals(&self, z: &[f32]) -> serde_json::Value {
        serde_json::Value::Array(
            z.iter()
                .map(|v| {
                    let value = *v as f64 * self.std + self.mean;
                    let mut o = serde_json::json!({
                        "value": six_figures(value),
                        "low": six_figures(value - self.half_width),
                        "high": six_figures(value + self.half_width),
                        "level": self.level,
                    });
                    if let Some(u) = &self.unit {
                        o["unit"] = serde_json::json!(u);
                    }
                    o
                })
                .collect(),
        )
    }
}

impl Stage for ConformalInterval {
    fn contract() -> Contract {
        Contract::new()
            .input("y", "f32[?,1]")
            .output("result", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(format!(
                    "config field `{name}` is {v}, not a positive number"
                ))
            }
        };
        let std = positive("std", config.f64_or("std", 1.0)?)?;
        let half_width = positive(
            "half_width",
            config
                .get("half_width")
                .ok_or("config field `half_width` is missing: the interval's half width in the target's unit")?
                .as_f64()
                .ok_or("config field `half_width` must be a number")?,
        )?;
        let level = config.f64_or("level", 0.9)?;
        if !(level > 0.0 && level < 1.0) {
            return Err(format!(
                "config field `level` is {level}; it must lie strictly between 0 and 1"
            ));
        }
        let unit = tabular_common::optional_text(config.get("unit"), "unit")?;
        Ok(ConformalInterval {
            mean: config.f64_or("mean", 0.0)?,
            std,
            half_width,
            level,
            unit,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let y = inputs.tensor("y")?;
        Ok(Outputs::new().json("result", &self.intervals(&y.to_f32()?)))
    }
}

algobay_stage::stage!(ConformalInterval);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_the_descaled_value_plus_and_minus_the_half_width() {
        let s = ConformalInterval {
            mean: 100.0,
            std: 10.0,
            half_width: 4.0,
            level: 0.9,
            unit: Some("g".into()),
        };
        assert_eq!(
            s.intervals(&[0.5, -1.0]),
            serde_json::json!([
                {"value": 105.0, "low": 101.0, "high": 109.0, "level": 0.9, "unit": "g"},
                {"value": 90.0, "low": 86.0, "high": 94.0, "level": 0.9, "unit": "g"}
            ])
        );
    }

    #[test]
    fn a_missing_or_negative_half_width_is_refused_by_name() {
        let err = ConformalInterval::new(&Config::parse(r#"{"std": 2}"#, Vec::new()).unwrap())
            .unwrap_err();
        assert!(err.contains("`half_width` is missing"), "{err}");
        let err =
            ConformalInterval::new(&Config::parse(r#"{"half_width": -1}"#, Vec::new()).unwrap())
                .unwrap_err();
        assert!(err.contains("`half_width` is -1"), "{err}");
        let err = ConformalInterval::new(
            &Config::parse(r#"{"half_width": 1, "level": 90}"#, Vec::new()).unwrap(),
        )
        .unwrap_err();
        assert!(err.contains("`level` is 90"), "{err}");
    }
}

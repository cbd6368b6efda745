//! Turns a regressor's standardised output back into the target's unit: the
//! value times the training targets' deviation plus their mean, one JSON
//! object per row (`{"value": …}`, with `unit` when the config names one).
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};

#[derive(Debug)]
struct RegressionOut {
    mean: f64,
    std: f64,
    unit: Option<String>,
}

fn descale(mean: f64, std: f64, unit: Option<&str>, z: &[f32]) -> serde_json::Value {
    serde_json::Value::Array(
        z.iter()
            .map(|v| {
                let value = tabular_common::six_figures(*v as f64 * std + mean);
                match unit {
                    Some(u) => serde_json::json!({"value": value, "unit": u}),
                    None => serde_json::json!({"value": value}),
                }
            })
            .collect(),
    )
}

impl Stage for RegressionOut {
    fn contract() -> Contract {
        Contract::new()
            .input("y", "f32[?,1]")
            .output("result", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let std = config.f64_or("std", 1.0)?;
        if !(std.is_finite() && std > 0.0) {
            return Err(format!(
                "config field `std` is {std}, not a positive deviation"
            ));
        }
        let unit = tabular_common::optional_text(config.get("unit"), "unit")?;
        Ok(RegressionOut {
            mean: config.f64_or("mean", 0.0)?,
            std,
            unit,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let y = inputs.tensor("y")?;
        let v = descale(self.mean, self.std, self.unit.as_deref(), &y.to_f32()?);
        Ok(Outputs::new().json("result", &v))
    }
}

algobay_stage::stage!(RegressionOut);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_in_the_targets_unit() {
        let v = descale(100.0, 10.0, Some("g"), &[0.5, -1.0]);
        assert_eq!(
            v,
            serde_json::json!([{"value": 105.0, "unit": "g"}, {"value": 90.0, "unit": "g"}])
        );
    }
}

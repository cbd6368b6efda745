//! Calibrates a classifier's confidence: its logits divided by a
//! `temperature` fitted on held-out rows (above 1 when the model is
//! over-confident), so that the probabilities a softmax makes of them match
//! how often the model is right. The order of the classes, and so the
//! answer, does not change.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct TemperatureScale {
    temperature: f32,
}

impl Stage for TemperatureScale {
    fn contract() -> Contract {
        Contract::new()
            .input("logits", "f32[?,?]")
            .output("scaled", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let temperature = config
            .get("temperature")
            .ok_or("config field `temperature` is missing")?
            .as_f64()
            .ok_or("config field `temperature` must be a number")?;
        if !(temperature > 0.0 && temperature <= 100.0) {
            return Err(format!(
                "config field `temperature` is {temperature}; it must be above 0 and at most 100"
            ));
        }
        Ok(TemperatureScale {
            temperature: temperature as f32,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("logits")?;
        let y: Vec<f32> = x.to_f32()?.iter().map(|v| v / self.temperature).collect();
        Ok(Outputs::new().tensor("scaled", Tensor::from_f32(x.shape.clone(), &y)))
    }
}

algobay_stage::stage!(TemperatureScale);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temperature_outside_its_range_is_refused_by_name() {
        for bad in [
            r#"{"temperature": 0}"#,
            r#"{"temperature": -1}"#,
            r#"{"temperature": 1000}"#,
        ] {
            let cfg = Config::parse(bad, Vec::new()).unwrap();
            assert!(
                TemperatureScale::new(&cfg)
                    .unwrap_err()
                    .contains("`temperature` is"),
                "{bad}"
            );
        }
        let cfg = Config::parse("{}", Vec::new()).unwrap();
        assert!(TemperatureScale::new(&cfg).unwrap_err().contains("missing"));
    }

    #[test]
    fn logits_are_divided_and_their_order_kept() {
        let s = TemperatureScale { temperature: 2.0 };
        let y: Vec<f32> = [4.0f32, -2.0, 1.0]
            .iter()
            .map(|v| v / s.temperature)
            .collect();
        assert_eq!(y, vec![2.0, -1.0, 0.5]);
    }
}

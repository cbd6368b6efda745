//! A post-processing stage: a classifier's scores in, the likeliest labels
//! out as JSON. Change it to what your model returns; the unit test at the
//! bottom runs natively with `cargo test`.

use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};

struct TopK {
    labels: Vec<String>,
    k: usize,
}

impl Stage for TopK {
    fn contract() -> Contract {
        Contract::new().input("logits", "f32[1,?]").output("result", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        Ok(TopK {
            labels: config.strings("labels")?.unwrap_or_default(),
            k: config.usize_or("top_k", 1)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let logits = inputs.tensor("logits")?.to_f32()?;
        if logits.is_empty() {
            return Err("input `logits`: no scores".into());
        }
        // Softmax, stable against large scores.
        let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        let mut order: Vec<usize> = (0..exp.len()).collect();
        order.sort_by(|&a, &b| exp[b].total_cmp(&exp[a]).then(a.cmp(&b)));
        let top: Vec<serde_json::Value> = order
            .iter()
            .take(self.k.max(1))
            .map(|&i| {
                serde_json::json!({
                    "label": self.labels.get(i).cloned().unwrap_or_else(|| i.to_string()),
                    "score": exp[i] / sum,
                })
            })
            .collect();
        Ok(Outputs::new().json("result", &serde_json::json!({ "top": top })))
    }
}

algobay_stage::stage!(TopK);

#[cfg(test)]
mod tests {
    use super::*;
    use algobay_stage::{Named, Tensor, Value};

    #[test]
    fn the_highest_score_comes_first_with_its_label() {
        let config = Config::parse(r#"{"labels": ["cat", "dog", "fox"], "top_k": 2}"#, vec![]).unwrap();
        let mut stage = TopK::new(&config).unwrap();
        let logits = Tensor::from_f32(vec![1, 3], &[0.5, 2.0, -1.0]);
        let out = stage
            .process(Inputs::new(vec![Named { name: "logits".into(), value: Value::Tensor(logits) }]))
            .unwrap()
            .into_vec();
        let Value::Json(j) = &out[0].value else { panic!("not json") };
        let v: serde_json::Value = serde_json::from_str(j).unwrap();
        assert_eq!(v["top"][0]["label"], "dog");
        assert_eq!(v["top"][1]["label"], "cat");
        assert_eq!(v["top"].as_array().unwrap().len(), 2);
    }
}

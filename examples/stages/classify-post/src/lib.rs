//! Turns a classifier's logits into labels with probabilities: softmax, then the top `k`.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};

struct ClassifyPost {
    labels: Vec<String>,
    top_k: usize,
}

impl Stage for ClassifyPost {
    fn contract() -> Contract {
        Contract::new()
            .input("logits", "f32[?,?]")
            .output("result", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let labels = match config.strings("labels")? {
            Some(l) => l,
            None => config
                .asset_text("labels")?
                .lines()
                .map(str::to_owned)
                .collect(),
        };
        if labels.is_empty() {
            return Err("config field `labels` must name at least one label".into());
        }
        Ok(ClassifyPost {
            labels,
            top_k: config.usize_or("top_k", 3)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let logits = inputs.tensor("logits")?;
        let values = logits.to_f32()?;
        let classes = *logits
            .shape
            .last()
            .ok_or("logits must have a class dimension")? as usize;
        if classes != self.labels.len() {
            return Err(format!(
                "logits have {classes} classes, config names {} labels",
                self.labels.len()
            ));
        }
        let mut rows = Vec::new();
        for row in values.chunks_exact(classes.max(1)) {
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|&a, &b| exps[b].total_cmp(&exps[a]));
            let top: Vec<serde_json::Value> = order
                .iter()
                .take(self.top_k)
                .map(|&i| serde_json::json!({"label": self.labels[i], "score": exps[i] / sum}))
                .collect();
            rows.push(serde_json::Value::Array(top));
        }
        Ok(Outputs::new().json("result", &serde_json::Value::Array(rows)))
    }
}

algobay_stage::stage!(ClassifyPost);

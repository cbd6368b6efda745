//! OCR recognition post-processing: each line's decoded class indices (from
//! `ctc-decode`) as text with the model's own character list (blank first,
//! space last), its score the mean of their probabilities; lines below
//! `text_score` dropped, each line joined with its box.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};

struct RecPost {
    characters: Vec<String>,
    text_score: f64,
}

impl RecPost {
    fn lines(
        &self,
        decoded: &[serde_json::Value],
        boxes: &[serde_json::Value],
    ) -> Result<Vec<serde_json::Value>, String> {
        let mut lines = Vec::new();
        for (i, (d, b)) in decoded.iter().zip(boxes).enumerate() {
            let list = |k: &str| {
                d.get(k)
                    .and_then(|v| v.as_array())
                    .ok_or(format!("input `decoded`: line {i} lacks the list `{k}`"))
            };
            let mut text = String::new();
            for v in list("indices")? {
                let c = v
                    .as_u64()
                    .and_then(|c| self.characters.get(c as usize))
                    .ok_or(format!(
                        "input `decoded`: line {i} has index {v}, past the {} characters (with blank and space)",
                        self.characters.len()
                    ))?;
                text.push_str(c);
            }
            let probs: Vec<f64> = list("probs")?.iter().filter_map(|v| v.as_f64()).collect();
            let score = if probs.is_empty() {
                0.0
            } else {
                probs.iter().sum::<f64>() / probs.len() as f64
            };
            if score < self.text_score {
                continue;
            }
            lines.push(serde_json::json!({
                "text": text,
                "score": score,
                "box": b.get("points").cloned().unwrap_or_default(),
            }));
        }
        Ok(lines)
    }
}

impl Stage for RecPost {
    fn contract() -> Contract {
        Contract::new()
            .input("decoded", "json")
            .input("boxes", "json")
            .output("result", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let mut characters = vec![String::new()];
        characters.extend(config.asset_text("characters")?.lines().map(str::to_owned));
        characters.push(" ".into());
        Ok(RecPost {
            characters,
            text_score: config.f64_or("text_score", 0.5)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let decoded = inputs.json("decoded")?;
        let decoded = decoded
            .as_array()
            .ok_or("input `decoded` must be a json list")?;
        let boxes = inputs.json("boxes")?;
        let boxes = boxes
            .as_array()
            .ok_or("input `boxes` must be a json list")?;
        Ok(Outputs::new().json(
            "result",
            &serde_json::Value::Array(self.lines(decoded, boxes)?),
        ))
    }
}

algobay_stage::stage!(RecPost);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn indices_become_text_and_weak_lines_drop() {
        let r = RecPost {
            characters: vec!["".into(), "a".into(), "b".into(), " ".into()],
            text_score: 0.5,
        };
        let decoded = [
            json!({"indices": [1, 3, 2], "probs": [0.9, 0.8, 0.7]}),
            json!({"indices": [2], "probs": [0.2]}),
        ];
        let boxes = [json!({"points": [[0, 0]]}), json!({"points": [[1, 1]]})];
        let lines = r.lines(&decoded, &boxes).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["text"], "a b");
        let bad = r
            .lines(&[json!({"indices": [9], "probs": [1.0]})], &boxes)
            .unwrap_err();
        assert!(bad.contains("index 9"), "{bad}");
    }
}

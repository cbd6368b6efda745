//! OCR recognition post-processing: greedy CTC decoding with the model's own
//! character list (blank first, space last), lines below `text_score` dropped,
//! each line joined with its box.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};

struct RecPost {
    characters: Vec<String>,
    text_score: f64,
}

impl Stage for RecPost {
    fn contract() -> Contract {
        Contract::new()
            .input("rec_prob", "f32[?,?,?]")
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
        let prob = inputs.tensor("rec_prob")?;
        let (n, t, c) = (
            prob.shape[0] as usize,
            prob.shape[1] as usize,
            prob.shape[2] as usize,
        );
        if c != self.characters.len() {
            return Err(format!(
                "recogniser outputs {c} classes but the character list has {} (with blank and space)",
                self.characters.len()
            ));
        }
        let p = prob.as_f32()?;
        let boxes = inputs.json("boxes")?;
        let boxes = boxes
            .as_array()
            .ok_or("input `boxes` must be a json list")?;
        let mut lines = Vec::new();
        for (i, b) in boxes.iter().enumerate().take(n) {
            let mut text = String::new();
            let mut confs = Vec::new();
            let mut prev = usize::MAX;
            for step in 0..t {
                let row = &p[(i * t + step) * c..(i * t + step + 1) * c];
                let (idx, best) =
                    row.iter()
                        .enumerate()
                        .fold(
                            (0usize, f32::MIN),
                            |acc, (j, &v)| if v > acc.1 { (j, v) } else { acc },
                        );
                if idx != 0 && idx != prev {
                    text.push_str(&self.characters[idx]);
                    confs.push(best as f64);
                }
                prev = idx;
            }
            let score = if confs.is_empty() {
                0.0
            } else {
                confs.iter().sum::<f64>() / confs.len() as f64
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
        Ok(Outputs::new().json("result", &serde_json::Value::Array(lines)))
    }
}

algobay_stage::stage!(RecPost);

//! Greedy CTC decoding of a sequence model's per-step class probabilities
//! (n, steps, classes): the best class each step, repeats collapsed, the
//! `blank` class (default 0) dropped. Out: per sequence the class `indices`
//! kept and their `probs`, for a label map (a character list, a word list)
//! to turn into text.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};
use serde_json::json;

#[derive(Debug)]
struct CtcDecode {
    blank: usize,
}

impl CtcDecode {
    fn decode(&self, p: &[f32], n: usize, steps: usize, classes: usize) -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| {
                let (mut indices, mut probs) = (Vec::new(), Vec::new());
                let mut prev = usize::MAX;
                for s in 0..steps {
                    let row = &p[(i * steps + s) * classes..(i * steps + s + 1) * classes];
                    let (idx, best) =
                        row.iter()
                            .enumerate()
                            .fold(
                                (0usize, f32::MIN),
                                |acc, (j, &v)| if v > acc.1 { (j, v) } else { acc },
                            );
                    if idx != self.blank && idx != prev {
                        indices.push(idx);
                        probs.push(best as f64);
                    }
                    prev = idx;
                }
                json!({"indices": indices, "probs": probs})
            })
            .collect()
    }
}

impl Stage for CtcDecode {
    fn contract() -> Contract {
        Contract::new()
            .input("probs", "f32[?,?,?]")
            .output("decoded", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        Ok(CtcDecode {
            blank: config.usize_or("blank", 0)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = inputs.tensor("probs")?;
        let [n, steps, classes] = t.shape[..] else {
            return Err(format!(
                "input `probs`: shape {:?}, expected [n, steps, classes]",
                t.shape
            ));
        };
        if self.blank as u64 >= classes {
            return Err(format!(
                "config field `blank` is {}, but `probs` has {classes} classes",
                self.blank
            ));
        }
        let p = t.as_f32()?;
        let out = self.decode(&p, n as usize, steps as usize, classes as usize);
        Ok(Outputs::new().json("decoded", &serde_json::Value::Array(out)))
    }
}

algobay_stage::stage!(CtcDecode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_collapse_and_blanks_separate_doubled_letters() {
        // Steps' best classes: 1 1 0 1 2 2 0 → indices 1, 1, 2.
        let best = [1usize, 1, 0, 1, 2, 2, 0];
        let mut p = vec![0.1f32; best.len() * 3];
        for (s, &b) in best.iter().enumerate() {
            p[s * 3 + b] = 0.8;
        }
        let d = CtcDecode { blank: 0 }.decode(&p, 1, best.len(), 3);
        assert_eq!(d[0]["indices"], json!([1, 1, 2]));
        assert_eq!(d[0]["probs"].as_array().unwrap().len(), 3);
    }
}

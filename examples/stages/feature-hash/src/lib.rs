//! The hashing trick: a list of tokens (words from a segmenter, or
//! `column=value` strings) to a fixed-length row, each token's count hashed
//! into `buckets` (FNV-1a) as `1 + ln(count)`, scaled to unit length
//! (`algobay_stage::text::hash_tokens`), so a vocabulary of any size needs
//! no table. Config: `buckets` (default 1024); `max_tokens` (default 20000)
//! refuses longer lists by name.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct FeatureHash {
    buckets: usize,
    max_tokens: usize,
}

impl FeatureHash {
    fn hash(&self, tokens: &serde_json::Value) -> Result<Vec<f32>, String> {
        let list = tokens
            .as_array()
            .ok_or("input `tokens` must be a JSON list of strings")?;
        if list.len() > self.max_tokens {
            return Err(format!(
                "input `tokens` has {} tokens, more than the {} this stage takes",
                list.len(),
                self.max_tokens
            ));
        }
        let words = list
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.as_str()
                    .ok_or(format!("input `tokens`: item {i} is {t}, not a string"))
            })
            .collect::<Result<Vec<&str>, String>>()?;
        Ok(algobay_stage::text::hash_tokens(&words, self.buckets))
    }
}

impl Stage for FeatureHash {
    fn contract() -> Contract {
        Contract::new()
            .input("tokens", "json")
            .output("features", "f32[1,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let buckets = config.usize_or("buckets", 1024)?;
        if !(1..=1 << 20).contains(&buckets) {
            return Err(format!(
                "config field `buckets` is {buckets}; it must be 1 to 1048576"
            ));
        }
        Ok(FeatureHash {
            buckets,
            max_tokens: config.usize_or("max_tokens", 20_000)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let v = self.hash(&inputs.json("tokens")?)?;
        Ok(Outputs::new().tensor(
            "features",
            Tensor::from_f32(vec![1, self.buckets as u64], &v),
        ))
    }
}

algobay_stage::stage!(FeatureHash);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repeated_tokens_weigh_more_in_a_unit_length_row() {
        let h = FeatureHash {
            buckets: 256,
            max_tokens: 10,
        };
        let v = h.hash(&json!(["好", "好", "好", "差"])).unwrap();
        let mut nz: Vec<f32> = v.iter().copied().filter(|x| *x > 0.0).collect();
        nz.sort_by(f32::total_cmp);
        assert_eq!(nz.len(), 2);
        assert!((nz[1] / nz[0] - (1.0 + 3f32.ln())).abs() < 1e-5);
    }

    #[test]
    fn a_list_too_long_or_not_of_strings_is_refused_by_name() {
        let h = FeatureHash {
            buckets: 8,
            max_tokens: 2,
        };
        assert!(h
            .hash(&json!(["a", "b", "c"]))
            .unwrap_err()
            .contains("3 tokens"));
        assert!(h
            .hash(&json!(["a", 5]))
            .unwrap_err()
            .contains("item 1 is 5"));
        assert!(h.hash(&json!("a b")).unwrap_err().contains("JSON list"));
    }
}

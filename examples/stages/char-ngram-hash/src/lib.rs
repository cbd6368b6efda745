//! Text to a fixed-length feature row for a linear model or MLP: the counts
//! of its character 1- to `n`-grams hashed into `buckets`, each as
//! `1 + ln(count)`, scaled to unit length (`algobay_stage::text::char_ngrams`);
//! works for any script, Chinese included, without a word segmenter.
//! Config: `buckets` (default 1024), `n` (default 2, at most 5); `max_chars`
//! (default 20000) refuses longer texts by name.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct CharNgramHash {
    buckets: usize,
    n: usize,
    max_chars: usize,
}

impl Stage for CharNgramHash {
    fn contract() -> Contract {
        Contract::new()
            .input("text", "text")
            .output("features", "f32[1,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let buckets = config.usize_or("buckets", 1024)?;
        let n = config.usize_or("n", 2)?;
        if !(1..=1 << 20).contains(&buckets) {
            return Err(format!(
                "config field `buckets` is {buckets}; it must be 1 to 1048576"
            ));
        }
        if !(1..=5).contains(&n) {
            return Err(format!("config field `n` is {n}; it must be 1 to 5"));
        }
        Ok(CharNgramHash {
            buckets,
            n,
            max_chars: config.usize_or("max_chars", 20_000)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = inputs.text("text")?;
        let len = t.chars().count();
        if len > self.max_chars {
            return Err(format!(
                "input `text` has {len} characters, more than the {} this stage takes",
                self.max_chars
            ));
        }
        let v = algobay_stage::text::char_ngrams(t, self.n, self.buckets);
        Ok(Outputs::new().tensor(
            "features",
            Tensor::from_f32(vec![1, self.buckets as u64], &v),
        ))
    }
}

algobay_stage::stage!(CharNgramHash);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_and_gram_limits_are_refused_by_name() {
        let cfg = Config::parse(r#"{"buckets": 0}"#, Vec::new()).unwrap();
        assert!(CharNgramHash::new(&cfg)
            .unwrap_err()
            .contains("`buckets` is 0"));
        let cfg = Config::parse(r#"{"n": 9}"#, Vec::new()).unwrap();
        assert!(CharNgramHash::new(&cfg).unwrap_err().contains("`n` is 9"));
    }

    #[test]
    fn a_review_becomes_one_unit_length_row() {
        let v = algobay_stage::text::char_ngrams("这本书很好", 2, 32);
        assert_eq!(v.len(), 32);
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

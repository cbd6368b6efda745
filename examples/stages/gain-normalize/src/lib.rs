//! Brings a recording to one loudness: scales it so its RMS level is
//! `target_dbfs` (default −20), by at most `max_gain_db` (default 40, so
//! near-silence is not blown up into noise), clipping at ±1
//! (`algobay_stage::audio::normalize_gain`).
use algobay_stage::{audio, Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct GainNormalize {
    target_dbfs: f32,
    max_gain_db: f32,
}

impl Stage for GainNormalize {
    fn contract() -> Contract {
        Contract::new()
            .input("samples", "f32[?]")
            .output("normalized", "f32[?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let target_dbfs = config.f32_or("target_dbfs", -20.0)?;
        let max_gain_db = config.f32_or("max_gain_db", 40.0)?;
        if !(-80.0..=0.0).contains(&target_dbfs) {
            return Err(format!(
                "config field `target_dbfs` is {target_dbfs}; it must be -80 to 0"
            ));
        }
        if !(0.0..=80.0).contains(&max_gain_db) {
            return Err(format!(
                "config field `max_gain_db` is {max_gain_db}; it must be 0 to 80"
            ));
        }
        Ok(GainNormalize {
            target_dbfs,
            max_gain_db,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("samples")?.to_f32()?;
        let y = audio::normalize_gain(&x, self.target_dbfs, self.max_gain_db);
        Ok(Outputs::new().tensor("normalized", Tensor::from_f32(vec![y.len() as u64], &y)))
    }
}

algobay_stage::stage!(GainNormalize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loud_and_quiet_takes_come_out_alike_and_bad_levels_are_refused() {
        let take: Vec<f32> = (0..800).map(|i| (i as f32 * 0.1).sin()).collect();
        let quiet: Vec<f32> = take.iter().map(|x| x * 0.05).collect();
        let a = audio::normalize_gain(&take, -20.0, 40.0);
        let b = audio::normalize_gain(&quiet, -20.0, 40.0);
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
        let cfg = Config::parse(r#"{"target_dbfs": 6}"#, Vec::new()).unwrap();
        assert!(GainNormalize::new(&cfg)
            .unwrap_err()
            .contains("`target_dbfs` is 6"));
    }
}

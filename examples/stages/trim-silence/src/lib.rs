//! Cuts leading and trailing silence: keeps the stretch from the first to
//! the last 10 ms block whose loudness is within `threshold_db` (default
//! −35) of the loudest block's, padded by `pad_ms` (default 50) each side
//! (`algobay_stage::audio::trim_silence`). Config: `rate` (Hz, the samples'
//! rate), `threshold_db`, `pad_ms`.
use algobay_stage::{audio, Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct TrimSilence {
    rate: u32,
    threshold_db: f32,
    pad_ms: u32,
}

impl Stage for TrimSilence {
    fn contract() -> Contract {
        Contract::new()
            .input("samples", "f32[?]")
            .output("trimmed", "f32[?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let rate = config.usize_or("rate", 16_000)?;
        let threshold_db = config.f32_or("threshold_db", -35.0)?;
        let pad_ms = config.usize_or("pad_ms", 50)?;
        if !(1000..=192_000).contains(&rate) {
            return Err(format!(
                "config field `rate` is {rate}; it must be 1000 to 192000 Hz"
            ));
        }
        if !(-120.0..0.0).contains(&threshold_db) {
            return Err(format!(
                "config field `threshold_db` is {threshold_db}; it must be below 0 and above -120"
            ));
        }
        if pad_ms > 10_000 {
            return Err(format!(
                "config field `pad_ms` is {pad_ms}; it must be at most 10000"
            ));
        }
        Ok(TrimSilence {
            rate: rate as u32,
            threshold_db,
            pad_ms: pad_ms as u32,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("samples")?.to_f32()?;
        let y = audio::trim_silence(&x, self.rate, self.threshold_db, self.pad_ms);
        Ok(Outputs::new().tensor("trimmed", Tensor::from_f32(vec![y.len() as u64], &y)))
    }
}

algobay_stage::stage!(TrimSilence);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_ends_go_and_a_positive_threshold_is_refused() {
        let mut x = vec![0.0f32; 800];
        x.extend((0..1600).map(|i| (i as f32 * 0.3).sin() * 0.5));
        x.extend(vec![0.001f32; 1600]);
        assert_eq!(audio::trim_silence(&x, 16000, -35.0, 0).len(), 1600);
        let cfg = Config::parse(r#"{"threshold_db": 3}"#, Vec::new()).unwrap();
        assert!(TrimSilence::new(&cfg)
            .unwrap_err()
            .contains("`threshold_db` is 3"));
    }
}

//! Resamples a recording to the rate a model was trained at: band-limited
//! (Hann-windowed sinc) interpolation, low-passed at the lower rate's
//! Nyquist frequency (`algobay_stage::audio::resample`). Inputs: `samples`
//! and their `rate`; config: `rate` (the target, Hz).
use algobay_stage::{audio, Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Resample {
    rate: u32,
}

impl Stage for Resample {
    fn contract() -> Contract {
        Contract::new()
            .input("samples", "f32[?]")
            .input("rate", "i64[]")
            .output("resampled", "f32[?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let rate = config.usize_or("rate", 16_000)?;
        if !(1000..=192_000).contains(&rate) {
            return Err(format!(
                "config field `rate` is {rate}; it must be 1000 to 192000 Hz"
            ));
        }
        Ok(Resample { rate: rate as u32 })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let from = *inputs
            .tensor("rate")?
            .to_i64()?
            .first()
            .ok_or("input `rate` holds no value")?;
        let from = u32::try_from(from)
            .ok()
            .filter(|r| (1..=768_000).contains(r))
            .ok_or_else(|| format!("input `rate` is {from} Hz; it must be 1 to 768000"))?;
        let x = inputs.tensor("samples")?.to_f32()?;
        let y = audio::resample(&x, from, self.rate);
        Ok(Outputs::new().tensor("resampled", Tensor::from_f32(vec![y.len() as u64], &y)))
    }
}

algobay_stage::stage!(Resample);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_out_of_range_is_refused_by_name() {
        let cfg = Config::parse(r#"{"rate": 50}"#, Vec::new()).unwrap();
        assert!(Resample::new(&cfg).unwrap_err().contains("`rate` is 50"));
        let ok = Resample::new(&Config::parse("{}", Vec::new()).unwrap()).unwrap();
        assert_eq!(ok.rate, 16_000);
        assert_eq!(audio::resample(&[0.1; 800], 8000, ok.rate).len(), 1600);
    }
}

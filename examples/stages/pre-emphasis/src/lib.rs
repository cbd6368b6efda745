//! Pre-emphasis before a spectrum: `y[n] = x[n] − coef·x[n−1]` (`coef`
//! default 0.97), a first-order high-pass that lifts the high frequencies
//! speech carries little energy in (`algobay_stage::audio::pre_emphasis`).
use algobay_stage::{audio, Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct PreEmphasis {
    coef: f32,
}

impl Stage for PreEmphasis {
    fn contract() -> Contract {
        Contract::new()
            .input("samples", "f32[?]")
            .output("emphasized", "f32[?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let coef = config.f32_or("coef", 0.97)?;
        if !(0.0..1.0).contains(&coef) {
            return Err(format!(
                "config field `coef` is {coef}; it must be 0 to below 1"
            ));
        }
        Ok(PreEmphasis { coef })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("samples")?.to_f32()?;
        let y = audio::pre_emphasis(&x, self.coef);
        Ok(Outputs::new().tensor("emphasized", Tensor::from_f32(vec![y.len() as u64], &y)))
    }
}

algobay_stage::stage!(PreEmphasis);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_signal_is_damped_and_a_coefficient_of_one_refused() {
        let y = audio::pre_emphasis(&[1.0; 4], 0.97);
        assert!((y[3] - 0.03).abs() < 1e-6);
        let cfg = Config::parse(r#"{"coef": 1.0}"#, Vec::new()).unwrap();
        assert!(PreEmphasis::new(&cfg).unwrap_err().contains("`coef` is 1"));
    }
}

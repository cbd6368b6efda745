//! Mel-frequency cepstral coefficients: the first `n` (default 13)
//! orthonormal DCT-II coefficients of each log-mel row
//! (`algobay_stage::audio::mfcc`), the compact speech features of classic
//! recognisers.
use algobay_stage::{audio, Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Mfcc {
    n: usize,
}

impl Stage for Mfcc {
    fn contract() -> Contract {
        Contract::new()
            .input("mel", "f32[?,?]")
            .output("mfcc", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let n = config.usize_or("n", 13)?;
        if !(1..=128).contains(&n) {
            return Err(format!("config field `n` is {n}; it must be 1 to 128"));
        }
        Ok(Mfcc { n })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = inputs.tensor("mel")?;
        let [rows, mels] = t.shape[..] else {
            return Err(format!(
                "input `mel`: shape {:?}, expected [frames, mels]",
                t.shape
            ));
        };
        if (mels as usize) < self.n {
            return Err(format!(
                "input `mel` has {mels} bands, fewer than the {} coefficients asked",
                self.n
            ));
        }
        let x = t.to_f32()?;
        let m: Vec<Vec<f32>> = x
            .chunks_exact(mels.max(1) as usize)
            .map(<[f32]>::to_vec)
            .collect();
        let c = audio::mfcc(&m, self.n).concat();
        Ok(Outputs::new().tensor("mfcc", Tensor::from_f32(vec![rows, self.n as u64], &c)))
    }
}

algobay_stage::stage!(Mfcc);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_spectrum_has_only_its_first_coefficient() {
        let c = audio::mfcc(&[vec![2.0; 40]], 13);
        assert!((c[0][0] - 2.0 * 40f32.sqrt()).abs() < 1e-4);
        assert!(c[0][1..].iter().all(|v| v.abs() < 1e-4));
        let cfg = Config::parse(r#"{"n": 0}"#, Vec::new()).unwrap();
        assert!(Mfcc::new(&cfg).unwrap_err().contains("`n` is 0"));
    }
}

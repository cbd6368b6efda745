//! Appends to each feature row (MFCC frames, time steps of a series) its
//! delta: the regression slope over ±`width` rows (default 2), the ends
//! repeated (`algobay_stage::audio::deltas`), so a model sees how features
//! move, not only where they are.
use algobay_stage::{audio, Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Delta {
    width: usize,
}

impl Stage for Delta {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[?,?]")
            .output("with_delta", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let width = config.usize_or("width", 2)?;
        if !(1..=10).contains(&width) {
            return Err(format!(
                "config field `width` is {width}; it must be 1 to 10"
            ));
        }
        Ok(Delta { width })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = inputs.tensor("x")?;
        let [rows, cols] = t.shape[..] else {
            return Err(format!(
                "input `x`: shape {:?}, expected [rows, columns]",
                t.shape
            ));
        };
        let x = t.to_f32()?;
        let r: Vec<Vec<f32>> = x
            .chunks_exact(cols.max(1) as usize)
            .map(<[f32]>::to_vec)
            .collect();
        let d = audio::deltas(&r, self.width).concat();
        Ok(Outputs::new().tensor("with_delta", Tensor::from_f32(vec![rows, cols * 2], &d)))
    }
}

algobay_stage::stage!(Delta);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_row_has_zero_delta_and_width_zero_is_refused() {
        let d = audio::deltas(&vec![vec![2.0, 3.0]; 3], 2);
        assert_eq!(d[1], vec![2.0, 3.0, 0.0, 0.0]);
        let cfg = Config::parse(r#"{"width": 0}"#, Vec::new()).unwrap();
        assert!(Delta::new(&cfg).unwrap_err().contains("`width` is 0"));
    }
}

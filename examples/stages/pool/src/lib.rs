//! Summarises a sequence of feature rows (frames of a recording, steps of a
//! series) as one fixed-length row for a dense model: per column the mean,
//! then per column the standard deviation (`algobay_stage::audio::pool`).
//! Config: `max_rows` (default 100000) refuses longer sequences by name.
use algobay_stage::{audio, Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Pool {
    max_rows: usize,
}

impl Stage for Pool {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[?,?]")
            .output("pooled", "f32[1,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        Ok(Pool {
            max_rows: config.usize_or("max_rows", 100_000)?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let t = inputs.tensor("x")?;
        let [rows, cols] = t.shape[..] else {
            return Err(format!(
                "input `x`: shape {:?}, expected [rows, columns]",
                t.shape
            ));
        };
        if rows == 0 || rows as usize > self.max_rows {
            return Err(format!(
                "input `x` has {rows} rows; it must have 1 to {}",
                self.max_rows
            ));
        }
        let x = t.to_f32()?;
        let r: Vec<Vec<f32>> = x
            .chunks_exact(cols.max(1) as usize)
            .map(<[f32]>::to_vec)
            .collect();
        let p = audio::pool(&r);
        Ok(Outputs::new().tensor("pooled", Tensor::from_f32(vec![1, p.len() as u64], &p)))
    }
}

algobay_stage::stage!(Pool);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_come_first_then_deviations() {
        let p = audio::pool(&[vec![1.0, 10.0], vec![3.0, 10.0]]);
        assert_eq!(p, vec![2.0, 10.0, 1.0, 0.0]);
        // One frame: nothing varies.
        assert_eq!(audio::pool(&[vec![4.0, 5.0]]), vec![4.0, 5.0, 0.0, 0.0]);
    }
}

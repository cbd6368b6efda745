//! Maps each feature column onto 0–1 by the training data's minimum and
//! maximum, `(x − min) / (max − min)`, and bounds the result to 0–1 so that
//! an input beyond anything seen in training stays in the range the model
//! knows (a constant column gives 0). Config: `min` and `max`, one number per
//! column; `clip` (default true) turns the bounding off when false.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct MinMaxScale {
    min: Vec<f32>,
    max: Vec<f32>,
    clip: bool,
}

impl MinMaxScale {
    fn scale(&self, shape: &[u64], x: &[f32]) -> Result<Vec<f32>, String> {
        let cols = shape.last().copied().unwrap_or(0) as usize;
        if cols != self.min.len() {
            return Err(format!(
                "input `x` has {cols} columns, but config fields `min` and `max` have {}",
                self.min.len()
            ));
        }
        Ok(x.iter()
            .enumerate()
            .map(|(i, &v)| {
                let (lo, hi) = (self.min[i % cols], self.max[i % cols]);
                let y = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
                if self.clip {
                    y.clamp(0.0, 1.0)
                } else {
                    y
                }
            })
            .collect())
    }
}

impl Stage for MinMaxScale {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[?,?]")
            .output("y", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let min = config
            .f32s("min")?
            .ok_or("config field `min` must list one number per column")?;
        let max = config
            .f32s("max")?
            .ok_or("config field `max` must list one number per column")?;
        if min.len() != max.len() {
            return Err(format!(
                "config fields `min` ({}) and `max` ({}) must be as long",
                min.len(),
                max.len()
            ));
        }
        if let Some(j) =
            (0..min.len()).find(|&j| min[j].partial_cmp(&max[j]).is_none_or(|o| o.is_gt()))
        {
            return Err(format!(
                "column {j}: `min` {} is above `max` {} (or not a number)",
                min[j], max[j]
            ));
        }
        let clip = config.bool_or("clip", true)?;
        Ok(MinMaxScale { min, max, clip })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("x")?;
        let y = self.scale(&x.shape, &x.as_f32()?)?;
        Ok(Outputs::new().tensor("y", Tensor::from_f32(x.shape.clone(), &y)))
    }
}

algobay_stage::stage!(MinMaxScale);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_map_onto_zero_to_one_and_stay_there() {
        let s = MinMaxScale {
            min: vec![0.0, 10.0],
            max: vec![4.0, 10.0],
            clip: true,
        };
        let y = s.scale(&[2, 2], &[1.0, 10.0, 9.0, 3.0]).unwrap();
        assert_eq!(y, vec![0.25, 0.0, 1.0, 0.0]);
        let open = MinMaxScale { clip: false, ..s };
        assert_eq!(open.scale(&[1, 2], &[8.0, 0.0]).unwrap()[0], 2.0);
        assert!(open
            .scale(&[1, 3], &[0.0; 3])
            .unwrap_err()
            .contains("3 columns"));
    }

    #[test]
    fn an_inverted_range_is_refused_by_column() {
        let cfg = Config::parse(r#"{"min": [0, 5], "max": [1, 2]}"#, Vec::new()).unwrap();
        assert!(MinMaxScale::new(&cfg)
            .unwrap_err()
            .contains("column 1: `min` 5"));
    }
}

//! Standard scaling: each feature column minus its training mean, divided by
//! its training standard deviation (a zero deviation divides by one).
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct StandardScale {
    mean: Vec<f32>,
    std: Vec<f32>,
}

fn scale(mean: &[f32], std: &[f32], shape: &[u64], x: &[f32]) -> Result<Vec<f32>, String> {
    let cols = shape.last().copied().unwrap_or(0) as usize;
    if cols != mean.len() {
        return Err(format!(
            "`x` has {cols} columns, config field `mean` has {}",
            mean.len()
        ));
    }
    Ok(x.iter()
        .enumerate()
        .map(|(i, v)| {
            let s = std[i % cols];
            (v - mean[i % cols]) / if s > 0.0 { s } else { 1.0 }
        })
        .collect())
}

impl Stage for StandardScale {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[?,?]")
            .output("y", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let mean = config
            .f32s("mean")?
            .ok_or("config field `mean` must list one number per column")?;
        let std = config
            .f32s("std")?
            .ok_or("config field `std` must list one number per column")?;
        if mean.len() != std.len() {
            return Err(format!(
                "config fields `mean` ({}) and `std` ({}) must be as long",
                mean.len(),
                std.len()
            ));
        }
        if let Some(bad) = std.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
            return Err(format!("config field `std` holds {bad}, not a deviation"));
        }
        Ok(StandardScale { mean, std })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("x")?;
        let y = scale(&self.mean, &self.std, &x.shape, &x.to_f32()?)?;
        Ok(Outputs::new().tensor("y", Tensor::from_f32(x.shape.clone(), &y)))
    }
}

algobay_stage::stage!(StandardScale);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn columns_are_centred_and_scaled_and_a_constant_column_only_centred() {
        let y = scale(&[1.0, 5.0], &[2.0, 0.0], &[2, 2], &[3.0, 5.0, -1.0, 6.0]).unwrap();
        assert_eq!(y, vec![1.0, 0.0, -1.0, 1.0]);
        assert!(scale(&[1.0], &[1.0], &[1, 2], &[1.0, 2.0]).is_err());
    }
}

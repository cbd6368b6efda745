//! Fills missing feature values (NaN) with a value per column: the training
//! data's mean, median or most frequent category, as the kit's maker chose.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Impute {
    fill: Vec<f32>,
}

fn impute(fill: &[f32], shape: &[u64], x: &[f32]) -> Result<Vec<f32>, String> {
    let cols = shape.last().copied().unwrap_or(0) as usize;
    if cols != fill.len() {
        return Err(format!(
            "`x` has {cols} columns, config field `fill` has {}",
            fill.len()
        ));
    }
    Ok(x.iter()
        .enumerate()
        .map(|(i, v)| if v.is_nan() { fill[i % cols] } else { *v })
        .collect())
}

impl Stage for Impute {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[?,?]")
            .output("y", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let fill = config
            .f32s("fill")?
            .ok_or("config field `fill` must list one number per column")?;
        if let Some(bad) = fill.iter().find(|v| !v.is_finite()) {
            return Err(format!(
                "config field `fill` holds {bad}, not a finite number"
            ));
        }
        Ok(Impute { fill })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("x")?;
        let y = impute(&self.fill, &x.shape, &x.to_f32()?)?;
        Ok(Outputs::new().tensor("y", Tensor::from_f32(x.shape.clone(), &y)))
    }
}

algobay_stage::stage!(Impute);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_missing_values_are_filled_column_by_column() {
        let y = impute(&[1.5, 7.0], &[2, 2], &[f32::NAN, 2.0, 3.0, f32::NAN]).unwrap();
        assert_eq!(y, vec![1.5, 2.0, 3.0, 7.0]);
        let err = impute(&[1.0], &[1, 2], &[1.0, 2.0]).unwrap_err();
        assert!(err.contains("2 columns"), "{err}");
    }
}

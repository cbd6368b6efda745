//! ln(1 + x) of the listed feature columns (`columns`, zero-based), for
//! counts and amounts whose long right tail would otherwise dominate a model;
//! the other columns pass through. A negative value in a listed column is
//! taken as 0 (the production line lists only columns that are never
//! negative in training).
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct LogTransform {
    columns: Vec<usize>,
}

impl LogTransform {
    fn apply(&self, shape: &[u64], x: &[f32]) -> Result<Vec<f32>, String> {
        let cols = shape.last().copied().unwrap_or(0) as usize;
        if let Some(c) = self.columns.iter().find(|c| **c >= cols) {
            return Err(format!(
                "config field `columns` names column {c}, but `x` has {cols} columns"
            ));
        }
        let mut mark = vec![false; cols];
        for &c in &self.columns {
            mark[c] = true;
        }
        Ok(x.iter()
            .enumerate()
            .map(|(i, &v)| {
                if mark[i % cols] {
                    v.max(0.0).ln_1p()
                } else {
                    v
                }
            })
            .collect())
    }
}

impl Stage for LogTransform {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[?,?]")
            .output("y", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let columns = tabular_common::column_numbers(config.get("columns"), "columns")?;
        Ok(LogTransform { columns })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("x")?;
        let y = self.apply(&x.shape, &x.to_f32()?)?;
        Ok(Outputs::new().tensor("y", Tensor::from_f32(x.shape.clone(), &y)))
    }
}

algobay_stage::stage!(LogTransform);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_columns_take_log1p_and_others_pass() {
        let t = LogTransform { columns: vec![1] };
        let y = t
            .apply(&[2, 2], &[5.0, 0.0, 7.0, std::f32::consts::E - 1.0])
            .unwrap();
        assert_eq!(y[0], 5.0);
        assert_eq!(y[1], 0.0);
        assert_eq!(y[2], 7.0);
        assert!((y[3] - 1.0).abs() < 1e-6);
        assert_eq!(t.apply(&[1, 2], &[1.0, -3.0]).unwrap()[1], 0.0);
    }

    #[test]
    fn a_column_beyond_the_input_is_refused_by_number() {
        let t = LogTransform { columns: vec![4] };
        let err = t.apply(&[1, 2], &[1.0, 2.0]).unwrap_err();
        assert!(err.contains("column 4, but `x` has 2 columns"), "{err}");
        let cfg = Config::parse(r#"{"columns": [-1]}"#, Vec::new()).unwrap();
        assert!(LogTransform::new(&cfg)
            .unwrap_err()
            .contains("not a column number"));
    }
}

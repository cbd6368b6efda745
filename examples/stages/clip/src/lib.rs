//! Bounds feature columns to a range, the training data's 0.5th and 99.5th
//! percentiles as the production line sets them, so a value far outside what
//! the model saw (a typo, a unit mix-up, a sensor fault) cannot push its
//! answer anywhere. Config: `columns` (zero-based) and, as long, `low` and
//! `high`; the other columns (category codes) pass through.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct Clip {
    /// (column, low, high)
    bounds: Vec<(usize, f32, f32)>,
}

impl Clip {
    fn clip(&self, shape: &[u64], x: &[f32]) -> Result<Vec<f32>, String> {
        let cols = shape.last().copied().unwrap_or(0) as usize;
        let mut per = vec![None; cols];
        for &(c, lo, hi) in &self.bounds {
            *per.get_mut(c).ok_or_else(|| {
                format!("config field `columns` names column {c}, but `x` has {cols} columns")
            })? = Some((lo, hi));
        }
        Ok(x.iter()
            .enumerate()
            .map(|(i, &v)| match per[i % cols] {
                Some((lo, hi)) if !v.is_nan() => v.clamp(lo, hi),
                _ => v,
            })
            .collect())
    }
}

impl Stage for Clip {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[?,?]")
            .output("y", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let columns = tabular_common::column_numbers(config.get("columns"), "columns")?;
        let low = config
            .f32s("low")?
            .ok_or("config field `low` must list one number per column")?;
        let high = config
            .f32s("high")?
            .ok_or("config field `high` must list one number per column")?;
        if low.len() != columns.len() || high.len() != columns.len() {
            return Err(format!(
                "config fields `columns` ({}), `low` ({}) and `high` ({}) must be as long",
                columns.len(),
                low.len(),
                high.len()
            ));
        }
        let bounds = columns
            .into_iter()
            .zip(low.into_iter().zip(high))
            .map(|(c, (lo, hi))| {
                if lo <= hi {
                    Ok((c, lo, hi))
                } else {
                    Err(format!("column {c}: `low` {lo} is above `high` {hi}"))
                }
            })
            .collect::<Result<_, String>>()?;
        Ok(Clip { bounds })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("x")?;
        let y = self.clip(&x.shape, &x.to_f32()?)?;
        Ok(Outputs::new().tensor("y", Tensor::from_f32(x.shape.clone(), &y)))
    }
}

algobay_stage::stage!(Clip);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_columns_are_bounded_and_others_pass() {
        let c = Clip {
            bounds: vec![(0, 0.0, 10.0)],
        };
        let y = c.clip(&[2, 2], &[-5.0, 99.0, 50.0, -3.0]).unwrap();
        assert_eq!(y, vec![0.0, 99.0, 10.0, -3.0]);
        let far = Clip {
            bounds: vec![(5, 0.0, 1.0)],
        };
        assert!(far
            .clip(&[1, 2], &[1.0, 2.0])
            .unwrap_err()
            .contains("column 5, but `x` has 2"));
    }

    #[test]
    fn inverted_or_uneven_bounds_are_refused_by_name() {
        let cfg =
            Config::parse(r#"{"columns": [0], "low": [5], "high": [1]}"#, Vec::new()).unwrap();
        assert!(Clip::new(&cfg)
            .unwrap_err()
            .contains("column 0: `low` 5 is above `high` 1"));
        let cfg = Config::parse(
            r#"{"columns": [0, 1], "low": [1], "high": [3]}"#,
            Vec::new(),
        )
        .unwrap();
        assert!(Clip::new(&cfg).unwrap_err().contains("must be as long"));
    }
}

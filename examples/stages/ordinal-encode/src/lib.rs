//! Turns category codes into their rank on an order the data owner gives
//! (cut Fair < Good < Very Good, an education level, a severity grade), so
//! the model sees one ordered number instead of unrelated one-hot columns.
//! Config: `columns` (zero-based) and `ranks`, per column the rank of each
//! category code (the reader's code is the index); other columns pass.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct OrdinalEncode {
    /// (column, rank per category code)
    ranks: Vec<(usize, Vec<f32>)>,
}

impl OrdinalEncode {
    fn encode(&self, shape: &[u64], x: &[f32]) -> Result<Vec<f32>, String> {
        let cols = shape.last().copied().unwrap_or(0) as usize;
        if let Some((c, _)) = self.ranks.iter().find(|(c, _)| *c >= cols) {
            return Err(format!(
                "config field `columns` names column {c}, but `x` has {cols} columns"
            ));
        }
        let mut y = x.to_vec();
        for (i, v) in y.iter_mut().enumerate() {
            let Some((c, r)) = self.ranks.iter().find(|(c, _)| *c == i % cols) else {
                continue;
            };
            if v.is_nan() {
                continue;
            }
            let code = *v;
            *v = *r
                .get(code as usize)
                .filter(|_| code >= 0.0 && code.fract() == 0.0)
                .ok_or_else(|| {
                    format!(
                        "column {c}: category code {code} has no rank ({} ranks)",
                        r.len()
                    )
                })?;
        }
        Ok(y)
    }
}

impl Stage for OrdinalEncode {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[?,?]")
            .output("y", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let columns = tabular_common::column_numbers(config.get("columns"), "columns")?;
        let ranks = config
            .get("ranks")
            .and_then(|v| v.as_array())
            .ok_or("config field `ranks` must list, per column, a list of ranks")?;
        if ranks.len() != columns.len() {
            return Err(format!(
                "config fields `columns` ({}) and `ranks` ({}) must be as long",
                columns.len(),
                ranks.len()
            ));
        }
        let ranks = columns
            .into_iter()
            .zip(ranks)
            .map(|(c, r)| {
                let list = r
                    .as_array()
                    .ok_or(format!("column {c}: `ranks` must be a list"))?;
                list.iter()
                    .map(|n| {
                        n.as_f64()
                            .map(|n| n as f32)
                            .ok_or(format!("column {c}: rank {n} is not a number"))
                    })
                    .collect::<Result<Vec<f32>, String>>()
                    .map(|r| (c, r))
            })
            .collect::<Result<_, String>>()?;
        Ok(OrdinalEncode { ranks })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("x")?;
        let y = self.encode(&x.shape, &x.as_f32()?)?;
        Ok(Outputs::new().tensor("y", Tensor::from_f32(x.shape.clone(), &y)))
    }
}

algobay_stage::stage!(OrdinalEncode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_become_ranks_and_other_columns_pass() {
        // Column 1's codes are alphabetical (Fair, Good, Ideal); ranks put Ideal last.
        let e = OrdinalEncode {
            ranks: vec![(1, vec![0.0, 1.0, 2.0])],
        };
        let y = e.encode(&[2, 2], &[7.5, 2.0, 1.0, f32::NAN]).unwrap();
        assert_eq!(&y[..3], &[7.5, 2.0, 1.0]);
        assert!(
            y[3].is_nan(),
            "missing stays missing for the imputer before"
        );
        let r = OrdinalEncode {
            ranks: vec![(0, vec![2.0, 0.0, 1.0])],
        };
        assert_eq!(r.encode(&[1, 1], &[0.0]).unwrap(), vec![2.0]);
    }

    #[test]
    fn an_unknown_code_or_uneven_config_is_refused_by_name() {
        let e = OrdinalEncode {
            ranks: vec![(0, vec![0.0, 1.0])],
        };
        assert!(e
            .encode(&[1, 1], &[5.0])
            .unwrap_err()
            .contains("category code 5 has no rank"));
        let cfg = Config::parse(r#"{"columns": [0, 1], "ranks": [[0, 1]]}"#, Vec::new()).unwrap();
        assert!(OrdinalEncode::new(&cfg)
            .unwrap_err()
            .contains("must be as long"));
    }
}

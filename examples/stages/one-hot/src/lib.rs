//! One-hot encoding: each category column (holding a category's index) becomes
//! one indicator column per category; number columns pass through, in order.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct OneHot {
    /// Per input column: 0 passes it through, n > 0 expands it to n indicators.
    sizes: Vec<usize>,
}

fn encode(sizes: &[usize], shape: &[u64], x: &[f32]) -> Result<(Vec<u64>, Vec<f32>), String> {
    let cols = shape.last().copied().unwrap_or(0) as usize;
    if cols != sizes.len() {
        return Err(format!(
            "`x` has {cols} columns, config field `sizes` has {}",
            sizes.len()
        ));
    }
    let width: usize = sizes.iter().map(|&s| s.max(1)).sum();
    let rows = if cols == 0 { 0 } else { x.len() / cols };
    let mut out = Vec::with_capacity(rows * width);
    for (r, row) in x.chunks_exact(cols.max(1)).enumerate() {
        for (c, (&v, &size)) in row.iter().zip(sizes).enumerate() {
            if size == 0 {
                out.push(v);
                continue;
            }
            if !(v >= 0.0 && v.fract() == 0.0 && (v as usize) < size) {
                return Err(format!(
                    "row {r}, column {c}: {v} is not a category index below {size}"
                ));
            }
            out.extend((0..size).map(|i| if i == v as usize { 1.0 } else { 0.0 }));
        }
    }
    let mut shape = shape.to_vec();
    if let Some(last) = shape.last_mut() {
        *last = width as u64;
    }
    Ok((shape, out))
}

impl Stage for OneHot {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[?,?]")
            .output("y", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let sizes = config
            .get("sizes")
            .and_then(|v| v.as_array())
            .ok_or("config field `sizes` must list, per column, 0 (a number) or its number of categories")?
            .iter()
            .map(|v| {
                v.as_u64()
                    .map(|n| n as usize)
                    .ok_or("config field `sizes` must hold non-negative integers")
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OneHot { sizes })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("x")?;
        let (shape, y) = encode(&self.sizes, &x.shape, &x.to_f32()?)?;
        Ok(Outputs::new().tensor("y", Tensor::from_f32(shape, &y)))
    }
}

algobay_stage::stage!(OneHot);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn category_columns_expand_and_numbers_pass_through() {
        let (shape, y) = encode(&[0, 3], &[2, 2], &[0.5, 2.0, -1.0, 0.0]).unwrap();
        assert_eq!(shape, vec![2, 4]);
        assert_eq!(y, vec![0.5, 0.0, 0.0, 1.0, -1.0, 1.0, 0.0, 0.0]);
        let err = encode(&[0, 3], &[1, 2], &[0.5, 3.0]).unwrap_err();
        assert!(
            err.contains("column 1: 3 is not a category index below 3"),
            "{err}"
        );
        assert!(encode(&[2], &[1, 1], &[f32::NAN]).is_err());
    }
}

//! Rule 5's figures: both whole kits timed side by side on the same inputs.

use std::time::Instant;

use super::{invalid, Result, Rows};

/// Up to 64 base holdout rows as the kit's input, to time kits on.
pub(super) fn timing_inputs(
    input: &str,
    shape: &[usize],
    rows: &Rows,
    width: usize,
) -> Result<Vec<algobay_runtime::Values>> {
    use algobay_runtime::{DType, Tensor, Value, Values};
    let shape = if shape.iter().product::<usize>() == width {
        shape.to_vec()
    } else {
        vec![1, width]
    };
    rows.x
        .chunks_exact(width)
        .take(64)
        .map(|row| {
            let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
            let mut v = Values::new();
            v.insert(
                input.to_owned(),
                Value::Tensor(Tensor::new(DType::F32, shape.clone(), bytes)?),
            );
            Ok(v)
        })
        .collect()
}

/// Median milliseconds per call of two kits, run alternately on the same
/// inputs (after a warm-up), so a busy machine slows both alike.
pub(super) fn side_by_side(
    a: &algobay_runtime::LoadedKit,
    b: &algobay_runtime::LoadedKit,
    inputs: &[algobay_runtime::Values],
) -> Result<(f64, f64)> {
    if inputs.is_empty() {
        return Err(invalid("the base holdout has no rows to time the kits on"));
    }
    for v in inputs.iter().take(3) {
        a.run(v.clone())?;
        b.run(v.clone())?;
    }
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for v in inputs {
        let t = Instant::now();
        a.run(v.clone())?;
        ta.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        b.run(v.clone())?;
        tb.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2].max(1e-3)
    };
    Ok((median(ta), median(tb)))
}

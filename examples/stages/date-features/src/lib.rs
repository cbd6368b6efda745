//! Calendar features from date columns (day numbers since 1970-01-01, as
//! the row readers give ISO 8601 dates): each listed column becomes, in its
//! place, the year, and the month, weekday, day of the year and time of day
//! each as a point on a circle (sine, cosine), so that December sits next
//! to January and Sunday next to Monday (`algobay_stage::text::calendar`).
//! Config: `columns` (zero-based); the other columns pass through.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};

#[derive(Debug)]
struct DateFeatures {
    columns: Vec<usize>,
}

const WIDTH: usize = algobay_stage::text::CALENDAR.len();

impl DateFeatures {
    fn expand(&self, shape: &[u64], x: &[f32]) -> Result<(Vec<u64>, Vec<f32>), String> {
        let cols = shape.last().copied().unwrap_or(0) as usize;
        if let Some(c) = self.columns.iter().find(|&&c| c >= cols) {
            return Err(format!(
                "config field `columns` names column {c}, but `x` has {cols} columns"
            ));
        }
        let mut out =
            Vec::with_capacity(x.len() / cols.max(1) * (cols + self.columns.len() * (WIDTH - 1)));
        for row in x.chunks_exact(cols.max(1)) {
            for (j, &v) in row.iter().enumerate() {
                if !self.columns.contains(&j) {
                    out.push(v);
                } else if v.is_nan() {
                    return Err(format!(
                        "column {j}: a missing date (impute before this stage)"
                    ));
                } else {
                    out.extend(algobay_stage::text::calendar(v as f64));
                }
            }
        }
        let width = cols + self.columns.len() * (WIDTH - 1);
        Ok((vec![(out.len() / width.max(1)) as u64, width as u64], out))
    }
}

impl Stage for DateFeatures {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[?,?]")
            .output("y", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let mut columns = tabular_common::column_numbers(config.get("columns"), "columns")?;
        columns.sort_unstable();
        if columns.windows(2).any(|w| w[0] == w[1]) {
            return Err("config field `columns` names a column twice".into());
        }
        Ok(DateFeatures { columns })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("x")?;
        let (shape, y) = self.expand(&x.shape, &x.as_f32()?)?;
        Ok(Outputs::new().tensor("y", Tensor::from_f32(shape, &y)))
    }
}

algobay_stage::stage!(DateFeatures);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_column_becomes_its_calendar_in_place() {
        let d = DateFeatures { columns: vec![1] };
        // 2004-03-01 (a Monday) between two numbers.
        let (shape, y) = d.expand(&[1, 3], &[7.0, 12_478.0, 9.0]).unwrap();
        assert_eq!(shape, vec![1, 11]);
        assert_eq!((y[0], y[1], y[10]), (7.0, 2004.0, 9.0));
        assert!((y[5] - 1.0).abs() < 1e-6, "Monday's cosine");
    }

    #[test]
    fn a_missing_date_or_a_column_past_the_row_is_refused_by_name() {
        let d = DateFeatures { columns: vec![0] };
        assert!(d
            .expand(&[1, 1], &[f32::NAN])
            .unwrap_err()
            .contains("missing date"));
        let far = DateFeatures { columns: vec![4] };
        assert!(far
            .expand(&[1, 2], &[0.0, 0.0])
            .unwrap_err()
            .contains("column 4"));
    }
}

//! Screens each row for values unlike the training data: per number column
//! a robust z-score, `(x − median) / scale` (the scale 1.4826 × the median
//! absolute deviation, a standard deviation's worth for normal data), and
//! the row's score is the largest, with the column it came from. A row whose
//! score passes `threshold` (the line sets the 99.5th percentile of the
//! training rows' scores) is `unusual`: the model still answers, bounded,
//! but the caller knows to look. Config: `columns` (zero-based), `names`,
//! `median` and `scale`, one each per column; `threshold`.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage};
use serde_json::{json, Value as J};

#[derive(Debug)]
struct AnomalyScore {
    /// (column, name, median, scale)
    columns: Vec<(usize, String, f32, f32)>,
    threshold: f64,
}

impl AnomalyScore {
    fn screen(&self, shape: &[u64], x: &[f32]) -> Result<Vec<J>, String> {
        let cols = shape.last().copied().unwrap_or(0) as usize;
        if let Some(c) = self.columns.iter().find(|c| c.0 >= cols) {
            return Err(format!(
                "config field `columns` names column {}, but `x` has {cols} columns",
                c.0
            ));
        }
        Ok(x.chunks_exact(cols.max(1))
            .map(|row| {
                let mut worst: Option<(f64, &str)> = None;
                for (j, name, median, scale) in &self.columns {
                    let v = row[*j];
                    if v.is_nan() {
                        continue;
                    }
                    let z = ((v - median) / scale).abs() as f64;
                    if worst.is_none_or(|(w, _)| z > w) {
                        worst = Some((z, name));
                    }
                }
                let (score, column) = worst.unwrap_or((0.0, ""));
                let score = (score * 1000.0).round() / 1000.0;
                json!({
                    "score": score,
                    "unusual": score > self.threshold,
                    "column": column,
                    "threshold": self.threshold,
                })
            })
            .collect())
    }
}

impl Stage for AnomalyScore {
    fn contract() -> Contract {
        Contract::new()
            .input("x", "f32[?,?]")
            .output("screen", "json")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let columns = tabular_common::column_numbers(config.get("columns"), "columns")?;
        let names = config
            .strings("names")?
            .ok_or("config field `names` must name each column")?;
        let median = config
            .f32s("median")?
            .ok_or("config field `median` must list one number per column")?;
        let scale = config
            .f32s("scale")?
            .ok_or("config field `scale` must list one number per column")?;
        if [names.len(), median.len(), scale.len()] != [columns.len(); 3] {
            return Err(format!(
                "config fields `columns` ({}), `names` ({}), `median` ({}) and `scale` ({}) must be as long",
                columns.len(),
                names.len(),
                median.len(),
                scale.len()
            ));
        }
        if let Some(k) = scale.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(format!(
                "column `{}`: `scale` is {}; it must be a positive number",
                names[k], scale[k]
            ));
        }
        let threshold = match config.get("threshold") {
            None => return Err("config field `threshold` is required".into()),
            Some(_) => config.f64_or("threshold", 0.0)?,
        };
        if !(threshold.is_finite() && threshold > 0.0) {
            return Err(format!(
                "config field `threshold` is {threshold}; it must be a positive number"
            ));
        }
        let columns = columns
            .into_iter()
            .zip(names)
            .zip(median.into_iter().zip(scale))
            .map(|((c, n), (m, s))| (c, n, m, s))
            .collect();
        Ok(AnomalyScore { columns, threshold })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let x = inputs.tensor("x")?;
        let rows = self.screen(&x.shape, &x.as_f32()?)?;
        Ok(Outputs::new().json("screen", &J::Array(rows)))
    }
}

algobay_stage::stage!(AnomalyScore);

#[cfg(test)]
mod tests {
    use super::*;

    fn screen() -> AnomalyScore {
        AnomalyScore {
            columns: vec![
                (0, "age".into(), 40.0, 10.0),
                (2, "income".into(), 3.0, 1.0),
            ],
            threshold: 4.0,
        }
    }

    #[test]
    fn the_farthest_column_scores_the_row_and_past_the_threshold_is_unusual() {
        let rows = screen()
            .screen(&[2, 3], &[45.0, 99.0, 3.5, 41.0, 0.0, 30.0])
            .unwrap();
        assert_eq!(rows[0]["score"], 0.5);
        assert_eq!(rows[0]["unusual"], false);
        assert_eq!(
            (rows[1]["score"].as_f64(), &rows[1]["column"]),
            (Some(27.0), &json!("income"))
        );
        assert_eq!(rows[1]["unusual"], true);
    }

    #[test]
    fn a_zero_scale_or_missing_threshold_is_refused_by_name() {
        let cfg = Config::parse(
            r#"{"columns": [0], "names": ["age"], "median": [1], "scale": [0], "threshold": 3}"#,
            Vec::new(),
        )
        .unwrap();
        assert!(AnomalyScore::new(&cfg)
            .unwrap_err()
            .contains("column `age`: `scale` is 0"));
        let cfg = Config::parse(
            r#"{"columns": [0], "names": ["age"], "median": [1], "scale": [2]}"#,
            Vec::new(),
        )
        .unwrap();
        assert!(AnomalyScore::new(&cfg)
            .unwrap_err()
            .contains("`threshold` is required"));
        let narrow = screen().screen(&[1, 2], &[0.0, 0.0]).unwrap_err();
        assert!(narrow.contains("column 2, but `x` has 2"), "{narrow}");
    }
}

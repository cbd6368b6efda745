//! Reads table rows given as JSON objects (column → value) into a feature
//! tensor, by a schema (`tabular-common`): numbers, and categories as their
//! index; a missing value becomes NaN for a later imputation step to fill.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};
use serde_json::Value as J;
use tabular_common::{cell, schema, Column};

#[derive(Debug)]
struct RowReader {
    columns: Vec<Column>,
}

fn read_rows(columns: &[Column], input: &J) -> Result<(usize, Vec<f32>), String> {
    let rows: Vec<&J> = match input {
        J::Object(_) => vec![input],
        J::Array(a) if !a.is_empty() => a.iter().collect(),
        J::Array(_) => return Err("`row` is an empty list".into()),
        _ => return Err("`row` must be a json object or a list of objects".into()),
    };
    let mut out = Vec::with_capacity(rows.len() * columns.len());
    for (r, row) in rows.iter().enumerate() {
        let obj = row
            .as_object()
            .ok_or_else(|| format!("row {r} is not a json object"))?;
        if let Some(k) = obj.keys().find(|k| !columns.iter().any(|c| &c.name == *k)) {
            return Err(format!(
                "row {r} has column `{k}`, which the schema does not name"
            ));
        }
        for c in columns {
            out.push(cell(c, r, obj.get(&c.name))?);
        }
    }
    Ok((rows.len(), out))
}

impl Stage for RowReader {
    fn contract() -> Contract {
        Contract::new().input("row", "json").output("x", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let mut obj = serde_json::Map::new();
        if let Some(c) = config.get("columns") {
            obj.insert("columns".into(), c.clone());
        }
        Ok(RowReader {
            columns: schema(&J::Object(obj))?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let (n, x) = read_rows(&self.columns, &inputs.json("row")?)?;
        let shape = vec![n as u64, self.columns.len() as u64];
        Ok(Outputs::new().tensor("x", Tensor::from_f32(shape, &x)))
    }
}

algobay_stage::stage!(RowReader);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn cols() -> Vec<Column> {
        schema(&json!({"columns": [
            {"name": "mass"},
            {"name": "island", "categories": ["Biscoe", "Dream"]},
            {"name": "year", "categories": [2007, 2008]}
        ]}))
        .unwrap()
    }

    #[test]
    fn numbers_categories_and_gaps_become_features() {
        let (n, x) = read_rows(
            &cols(),
            &json!([{"mass": 3750, "island": "Dream", "year": "2008"}, {"island": "Biscoe", "mass": "", "year": 2007.0}]),
        )
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(&x[..3], &[3750.0, 1.0, 1.0]);
        assert!(x[3].is_nan());
        assert_eq!(&x[4..], &[0.0, 0.0]);
    }

    #[test]
    fn bad_cells_and_unknown_columns_are_named() {
        let err = read_rows(&cols(), &json!({"mass": "heavy"})).unwrap_err();
        assert!(
            err.contains("column `mass`: `heavy` is not a number"),
            "{err}"
        );
        let err = read_rows(&cols(), &json!({"island": "Torgersen"})).unwrap_err();
        assert!(
            err.contains("`Torgersen` is not one of Biscoe, Dream"),
            "{err}"
        );
        let err = read_rows(&cols(), &json!({"id": 3})).unwrap_err();
        assert!(err.contains("`id`"), "{err}");
        let err = schema(&json!({"columns": [{"name": "a"}, {"name": "a"}]})).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}

//! Reads table rows given as JSON into a feature tensor, by a schema: each
//! column is a number, or a category turned into its index among the listed
//! categories. A missing, null or empty value becomes NaN (for a later
//! imputation step to fill); anything else that does not fit is an error that
//! names the row, the column and the value.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};
use serde_json::Value as J;

/// One column of the schema.
#[derive(Debug, PartialEq)]
struct Column {
    name: String,
    /// Empty for a number column.
    categories: Vec<String>,
}

#[derive(Debug)]
struct RowReader {
    columns: Vec<Column>,
}

fn schema(config: &J) -> Result<Vec<Column>, String> {
    let cols = config
        .get("columns")
        .and_then(J::as_array)
        .ok_or("config field `columns` must be a list of {name, categories?} objects")?;
    if cols.is_empty() {
        return Err("config field `columns` must name at least one column".into());
    }
    let mut out: Vec<Column> = Vec::new();
    for (i, c) in cols.iter().enumerate() {
        let name = c
            .get("name")
            .and_then(J::as_str)
            .ok_or_else(|| format!("config field `columns[{i}].name` must be a string"))?;
        if out.iter().any(|o| o.name == name) {
            return Err(format!("config field `columns` names `{name}` twice"));
        }
        let categories = match c.get("categories") {
            None => Vec::new(),
            Some(J::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| match v {
                    J::String(s) => Ok(s.clone()),
                    J::Number(n) => Ok(n.to_string()),
                    _ => Err(format!(
                        "config field `columns[{i}].categories` must list strings"
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(format!(
                    "config field `columns[{i}].categories` must be a non-empty list"
                ))
            }
        };
        out.push(Column {
            name: name.to_owned(),
            categories,
        });
    }
    Ok(out)
}

/// One cell as a feature value.
fn cell(col: &Column, row: usize, v: Option<&J>) -> Result<f32, String> {
    let text = match v {
        None | Some(J::Null) => return Ok(f32::NAN),
        Some(J::String(s)) if s.trim().is_empty() => return Ok(f32::NAN),
        Some(J::String(s)) => s.trim().to_owned(),
        Some(J::Number(n)) => n.to_string(),
        Some(J::Bool(b)) => b.to_string(),
        Some(other) => {
            return Err(format!(
                "row {row}, column `{}`: {other} is neither a number nor text",
                col.name
            ))
        }
    };
    if col.categories.is_empty() {
        let x: f32 = text
            .parse()
            .map_err(|_| format!("row {row}, column `{}`: `{text}` is not a number", col.name))?;
        if !x.is_finite() {
            return Err(format!(
                "row {row}, column `{}`: `{text}` is not a finite number",
                col.name
            ));
        }
        return Ok(x);
    }
    // Categories match as text; numbers match their shortest form ("1" and 1.0).
    let short = text
        .parse::<f64>()
        .ok()
        .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
        .map(|f| (f as i64).to_string());
    col.categories
        .iter()
        .position(|c| *c == text || Some(c) == short.as_ref())
        .map(|i| i as f32)
        .ok_or_else(|| {
            format!(
                "row {row}, column `{}`: `{text}` is not one of {}",
                col.name,
                col.categories.join(", ")
            )
        })
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

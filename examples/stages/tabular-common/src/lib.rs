//! The table schema the tabular reader stages share: each column a number,
//! a date (ISO 8601, as days since 1970-01-01), or a category turned into
//! its index among the listed categories; a
//! missing, null or empty cell becomes NaN, anything else that does not fit
//! is an error naming the row, the column and the value.
use serde_json::Value as J;

/// One column of the schema.
#[derive(Debug, PartialEq)]
pub struct Column {
    pub name: String,
    /// Empty for a number column.
    pub categories: Vec<String>,
    /// An ISO 8601 date (`YYYY-MM-DD[ HH:MM[:SS]]`), read as days since 1970-01-01.
    pub date: bool,
}

/// The `columns` of a step's config: `[{name, categories?}]`.
pub fn schema(config: &J) -> Result<Vec<Column>, String> {
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
        let date = match c.get("date") {
            None | Some(J::Bool(false)) => false,
            Some(J::Bool(true)) if categories.is_empty() => true,
            Some(_) => {
                return Err(format!(
                    "config field `columns[{i}].date` must be true or false, and a date has no categories"
                ))
            }
        };
        out.push(Column {
            name: name.to_owned(),
            categories,
            date,
        });
    }
    Ok(out)
}

/// One cell as a feature value: a number, a category's index, or NaN when
/// missing; anything else is an error naming the row, column and value.
pub fn cell(col: &Column, row: usize, v: Option<&J>) -> Result<f32, String> {
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
    if col.date {
        return algobay_text::epoch_days(&text).map(|d| d as f32).ok_or_else(|| {
            format!(
                "row {row}, column `{}`: `{text}` is not a date (YYYY-MM-DD, optionally with HH:MM[:SS])",
                col.name
            )
        });
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_categories_become_features_and_bad_cells_are_named() {
        let cols = schema(&json!({"columns": [
            {"name": "mass"},
            {"name": "year", "categories": [2007, 2008]}
        ]}))
        .unwrap();
        assert_eq!(cell(&cols[0], 0, Some(&json!("3.5"))).unwrap(), 3.5);
        assert!(cell(&cols[0], 0, Some(&json!(""))).unwrap().is_nan());
        assert_eq!(cell(&cols[1], 0, Some(&json!(2008.0))).unwrap(), 1.0);
        let err = cell(&cols[1], 4, Some(&json!("2010"))).unwrap_err();
        assert!(
            err.contains("row 4, column `year`: `2010` is not one of 2007, 2008"),
            "{err}"
        );
        let day = schema(&json!({"columns": [{"name": "day", "date": true}]})).unwrap();
        assert_eq!(cell(&day[0], 0, Some(&json!("1970-01-02"))).unwrap(), 1.0);
        let err = cell(&day[0], 2, Some(&json!("02/01/1970"))).unwrap_err();
        assert!(
            err.contains("row 2, column `day`: `02/01/1970` is not a date"),
            "{err}"
        );
        let err = schema(&json!({"columns": [{"name": "a"}, {"name": "a"}]})).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}

/// A config list of column numbers (zero-based), named `key` in errors.
pub fn column_numbers(v: Option<&J>, key: &str) -> Result<Vec<usize>, String> {
    v.and_then(|v| v.as_array())
        .ok_or_else(|| format!("config field `{key}` must list column numbers"))?
        .iter()
        .map(|c| {
            c.as_u64()
                .map(|c| c as usize)
                .ok_or_else(|| format!("config field `{key}` holds {c}, not a column number"))
        })
        .collect()
}

/// An optional config text, named `key` in errors.
pub fn optional_text(v: Option<&J>, key: &str) -> Result<Option<String>, String> {
    match v {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| format!("config field `{key}` must be a string")),
    }
}

/// `v` to six significant figures: a regression output without float noise.
pub fn six_figures(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 5 - v.abs().log10().floor() as i32;
    let p = 10f64.powi(digits.clamp(0, 12));
    (v * p).round() / p
}

#[cfg(test)]
mod figures {
    #[test]
    fn six_significant_figures_drop_float_noise() {
        assert_eq!(super::six_figures(105.000_000_3), 105.0);
        assert_eq!(super::six_figures(0.123_456_78), 0.123_457);
        assert_eq!(super::six_figures(-2.5), -2.5);
    }
}

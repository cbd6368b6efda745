//! Reads table rows given as CSV text (one row a line, the schema's columns
//! in order, no header; quoted fields may hold commas and quotes) into a
//! feature tensor, by a schema (`tabular-common`): numbers, and categories as
//! their index; an empty field becomes NaN for a later imputation step.
use algobay_stage::{Config, Contract, Inputs, Outputs, Stage, Tensor};
use serde_json::Value as J;
use tabular_common::{cell, schema, Column};

#[derive(Debug)]
struct CsvReader {
    columns: Vec<Column>,
}

/// One CSV line's fields.
fn fields(line: &str, row: usize) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            (false, ',') => out.push(std::mem::take(&mut field)),
            (_, c) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("row {row}: a quoted field is not closed"));
    }
    out.push(field);
    Ok(out)
}

fn read_lines(columns: &[Column], text: &str) -> Result<(usize, Vec<f32>), String> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return Err("`line` holds no csv row".into());
    }
    let mut out = Vec::with_capacity(lines.len() * columns.len());
    for (r, line) in lines.iter().enumerate() {
        let f = fields(line, r)?;
        if f.len() != columns.len() {
            return Err(format!(
                "row {r} has {} fields, the schema {} ({})",
                f.len(),
                columns.len(),
                columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for (c, v) in columns.iter().zip(f) {
            out.push(cell(c, r, Some(&J::String(v)))?);
        }
    }
    Ok((lines.len(), out))
}

impl Stage for CsvReader {
    fn contract() -> Contract {
        Contract::new()
            .input("line", "text")
            .output("x", "f32[?,?]")
    }

    fn new(config: &Config) -> Result<Self, String> {
        let mut obj = serde_json::Map::new();
        if let Some(c) = config.get("columns") {
            obj.insert("columns".into(), c.clone());
        }
        Ok(CsvReader {
            columns: schema(&J::Object(obj))?,
        })
    }

    fn process(&mut self, inputs: Inputs) -> Result<Outputs, String> {
        let (n, x) = read_lines(&self.columns, inputs.text("line")?)?;
        let shape = vec![n as u64, self.columns.len() as u64];
        Ok(Outputs::new().tensor("x", Tensor::from_f32(shape, &x)))
    }
}

algobay_stage::stage!(CsvReader);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn cols() -> Vec<Column> {
        schema(&json!({"columns": [{"name": "mass"}, {"name": "island", "categories": ["Biscoe", "Dream, north"]}]}))
            .unwrap()
    }

    #[test]
    fn lines_become_rows_with_quotes_gaps_and_categories() {
        let (n, x) = read_lines(&cols(), "3750,\"Dream, north\"\r\n,Biscoe\n").unwrap();
        assert_eq!(n, 2);
        assert_eq!(&x[..2], &[3750.0, 1.0]);
        assert!(x[2].is_nan());
        assert_eq!(x[3], 0.0);
    }

    #[test]
    fn a_short_line_or_an_open_quote_is_named() {
        let err = read_lines(&cols(), "3750").unwrap_err();
        assert!(
            err.contains("row 0 has 1 fields, the schema 2 (mass, island)"),
            "{err}"
        );
        let err = read_lines(&cols(), "1,\"Dream").unwrap_err();
        assert!(err.contains("not closed"), "{err}");
        assert!(read_lines(&cols(), "\n\n").is_err());
    }
}

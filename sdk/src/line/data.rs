//! A recipe's data: the CSV read, checked and split before anything trains.
//!
//! Checks, in order: the named columns exist; targets are present (and numbers
//! for regression); exact duplicate rows are removed (rows whose features
//! repeat with another target are counted and kept: noisy observations, which
//! the hash split keeps on one side); at least [`MIN_ROWS`] rows remain; the
//! split puts no row of the holdout in training (checked by the hash of its
//! features, whichever split the recipe chose); every class has at least
//! [`MIN_CLASS_ROWS`] rows and at least one in the holdout.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest as _, Sha256};

use super::recipe::{Split, TaskKind, TaskSpec};

/// Fewest rows a dataset may have after deduplication.
pub const MIN_ROWS: usize = 300;
/// Fewest rows each class must have.
pub const MIN_CLASS_ROWS: usize = 10;

/// A CSV file: its header and rows of text cells.
#[derive(Debug)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Parses CSV (RFC 4180: quoted fields may hold commas, quotes and line
/// breaks); the first line is the header and every row must be as wide.
pub fn parse_csv(text: &str) -> Result<Table, String> {
    let mut records: Vec<Vec<String>> = Vec::new();
    let mut field = String::new();
    let mut record = Vec::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut line = 1usize;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                line += 1;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {line}: a quoted field is not closed"));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records.retain(|r| !(r.len() == 1 && r[0].trim().is_empty()));
    let mut it = records.into_iter();
    let header: Vec<String> = it
        .next()
        .ok_or("the file is empty: no header line")?
        .into_iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut seen = HashSet::new();
    for h in &header {
        if !seen.insert(h) {
            return Err(format!("the header names column `{h}` twice"));
        }
    }
    let mut rows = Vec::new();
    for (i, r) in it.enumerate() {
        if r.len() != header.len() {
            return Err(format!(
                "row {} has {} fields, the header {}",
                i + 1,
                r.len(),
                header.len()
            ));
        }
        rows.push(r);
    }
    Ok(Table { header, rows })
}

/// A feature column as the kit's row reader sees it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Column {
    pub name: String,
    /// Empty for a number column.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// An ISO 8601 date, read as days since 1970-01-01 (`[task] dates`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub date: bool,
}

/// What the checks found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Checks {
    pub rows_read: usize,
    pub missing_target: usize,
    pub duplicates: usize,
    /// Rows whose features repeat with another target (kept).
    pub conflicting: usize,
    pub rows: usize,
    pub train: usize,
    pub holdout: usize,
    /// Holdout rows whose features also appear in training.
    pub leaked: usize,
    /// Rows per class (classification).
    pub classes: BTreeMap<String, usize>,
}

/// Checked, split data with features as numbers (NaN where missing, a
/// category's index for category columns).
#[derive(Debug)]
pub struct Prepared {
    pub columns: Vec<Column>,
    /// Feature values, row after row.
    pub x: Vec<Vec<f32>>,
    /// The original cells of each row's features (for golden inputs).
    pub cells: Vec<Vec<String>>,
    /// Class labels in index order (classification).
    pub classes: Vec<String>,
    pub y_class: Vec<u32>,
    pub y_value: Vec<f32>,
    pub train: Vec<usize>,
    pub holdout: Vec<usize>,
    pub checks: Checks,
}

/// Why data was refused.
#[derive(Debug)]
pub struct Refusal(pub String);

fn row_hash(cells: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for c in cells {
        h.update((c.len() as u64).to_le_bytes());
        h.update(c.as_bytes());
    }
    h.finalize().into()
}

/// Checks and splits `table` for `task`.
///
/// With `text` (a column name), that column is the only feature, kept as
/// its cells: its rows are deduplicated and split by the text, and the
/// line turns it into numbers itself.
pub fn prepare(table: &Table, task: &TaskSpec, text: Option<&str>) -> Result<Prepared, Refusal> {
    let refuse = |m: String| Refusal(m);
    let col = |name: &str| {
        table.header.iter().position(|h| h == name).ok_or_else(|| {
            refuse(format!(
                "column `{name}` is not in the data's header ({})",
                table.header.join(", ")
            ))
        })
    };
    let target = col(&task.target)?;
    for d in task.drop.iter().chain(&task.categorical) {
        col(d)?;
    }
    let features: Vec<usize> = if let Some(t) = text {
        vec![col(t)?]
    } else if task.features.is_empty() {
        (0..table.header.len())
            .filter(|&i| i != target && !task.drop.contains(&table.header[i]))
            .collect()
    } else {
        task.features
            .iter()
            .map(|f| col(f))
            .collect::<Result<_, _>>()?
    };
    if features.is_empty() {
        return Err(refuse("no feature columns are left".into()));
    }
    if features.contains(&target) {
        return Err(refuse(format!(
            "the target `{}` is also a feature: a leak by construction",
            task.target
        )));
    }
    let mut checks = Checks {
        rows_read: table.rows.len(),
        ..Checks::default()
    };
    // Rows with a target; exact duplicates out.
    let mut full_seen = HashSet::new();
    let mut feat_seen: HashSet<[u8; 32]> = HashSet::new();
    let mut kept: Vec<usize> = Vec::new();
    for (i, r) in table.rows.iter().enumerate() {
        let t = r[target].trim();
        if t.is_empty() || t.eq_ignore_ascii_case("na") || t.eq_ignore_ascii_case("nan") {
            checks.missing_target += 1;
            continue;
        }
        if task.dedup {
            let feats: Vec<&str> = features.iter().map(|&j| r[j].trim()).collect();
            let mut all = feats.clone();
            all.push(t);
            if !full_seen.insert(row_hash(&all)) {
                checks.duplicates += 1;
                continue;
            }
            // Rows whose features repeat with another target are real,
            // noisy observations: kept, and the split (by feature hash) keeps
            // them on one side.
            if !feat_seen.insert(row_hash(&feats)) {
                checks.conflicting += 1;
            }
        }
        kept.push(i);
    }
    checks.rows = kept.len();
    if kept.len() < MIN_ROWS {
        return Err(refuse(format!(
            "{} rows after removing {} duplicates: at least {MIN_ROWS} are needed",
            kept.len(),
            checks.duplicates
        )));
    }
    // Columns: categories are the values seen, in sorted order; numbers must parse.
    let mut columns = Vec::new();
    for &j in &features {
        let name = table.header[j].clone();
        // A column holding text (not only numbers) is a category column even
        // when the recipe does not list it.
        let text_cells = kept.iter().any(|&i| {
            let c = table.rows[i][j].trim();
            !is_missing(c) && c.parse::<f64>().is_err()
        });
        if Some(name.as_str()) == text || task.dates.contains(&name) {
            let date = task.dates.contains(&name);
            columns.push(Column {
                name,
                categories: Vec::new(),
                date,
            });
        } else if task.categorical.contains(&name) || text_cells {
            let mut cats: Vec<String> = kept
                .iter()
                .map(|&i| table.rows[i][j].trim().to_owned())
                .filter(|c| !is_missing(c))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            cats.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                _ => a.cmp(b),
            });
            if cats.len() > 200 {
                return Err(refuse(format!(
                    "categorical column `{name}` has {} values: more than 200 to one-hot encode",
                    cats.len()
                )));
            }
            columns.push(Column {
                name,
                categories: cats,
                date: false,
            });
        } else {
            columns.push(Column {
                name,
                categories: Vec::new(),
                date: false,
            });
        }
    }
    if let Some(d) = task
        .dates
        .iter()
        .find(|d| !columns.iter().any(|c| &c.name == *d))
    {
        return Err(refuse(format!(
            "[task] dates names `{d}`, which is not a feature column"
        )));
    }
    for (name, order) in &task.ordinal {
        let Some(c) = columns.iter().find(|c| &c.name == name) else {
            return Err(refuse(format!(
                "[task] ordinal names `{name}`, which is not a feature column"
            )));
        };
        if c.categories.is_empty() {
            return Err(refuse(format!(
                "[task] ordinal column `{name}` holds numbers; list number-coded categories in `categorical` too"
            )));
        }
        if let Some(k) = c.categories.iter().find(|k| !order.contains(k)) {
            return Err(refuse(format!(
                "ordinal column `{name}` holds `{k}`, which its order in [task] ordinal does not list"
            )));
        }
    }
    let mut x = Vec::with_capacity(kept.len());
    let mut cells = Vec::with_capacity(kept.len());
    for &i in &kept {
        let r = &table.rows[i];
        let mut v = Vec::with_capacity(features.len());
        let mut c = Vec::with_capacity(features.len());
        for (k, &j) in features.iter().enumerate() {
            let s = r[j].trim();
            c.push(s.to_owned());
            if Some(columns[k].name.as_str()) == text {
                // The text itself: the line makes its numbers.
            } else if is_missing(s) {
                v.push(f32::NAN);
            } else if columns[k].date {
                let d = algobay_text::epoch_days(s).ok_or_else(|| {
                    refuse(format!(
                        "row {}, column `{}`: `{s}` is not a date (YYYY-MM-DD, optionally with HH:MM[:SS])",
                        i + 1,
                        columns[k].name
                    ))
                })?;
                v.push(d as f32);
            } else if columns[k].categories.is_empty() {
                let f: f32 = s.parse().map_err(|_| {
                    refuse(format!(
                        "row {}, column `{}`: `{s}` is not a number",
                        i + 1,
                        columns[k].name
                    ))
                })?;
                if !f.is_finite() {
                    return Err(refuse(format!(
                        "row {}, column `{}`: `{s}` is not a finite number",
                        i + 1,
                        columns[k].name
                    )));
                }
                v.push(f);
            } else {
                let code = columns[k]
                    .categories
                    .iter()
                    .position(|c| c == s)
                    .expect("categories come from these rows");
                v.push(code as f32);
            }
        }
        x.push(v);
        cells.push(c);
    }
    // Targets.
    let mut classes = Vec::new();
    let mut y_class = Vec::new();
    let mut y_value = Vec::new();
    match task.kind {
        TaskKind::Classification => {
            let mut names: Vec<String> = kept
                .iter()
                .map(|&i| table.rows[i][target].trim().to_owned())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            names.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                _ => a.cmp(b),
            });
            if names.len() < 2 {
                return Err(refuse(format!(
                    "target `{}` has one class only",
                    task.target
                )));
            }
            if names.len() > 100 {
                return Err(refuse(format!(
                    "target `{}` has {} classes: more than 100 (is it a regression target?)",
                    task.target,
                    names.len()
                )));
            }
            for &i in &kept {
                let t = table.rows[i][target].trim();
                let c = names.iter().position(|n| n == t).expect("seen") as u32;
                y_class.push(c);
            }
            classes = names
                .iter()
                .map(|n| task.labels.get(n).cloned().unwrap_or_else(|| n.clone()))
                .collect();
        }
        TaskKind::Regression => {
            for &i in &kept {
                let t = table.rows[i][target].trim();
                let v: f32 = t.parse().map_err(|_| {
                    refuse(format!(
                        "row {}, target `{}`: `{t}` is not a number",
                        i + 1,
                        task.target
                    ))
                })?;
                if !v.is_finite() {
                    return Err(refuse(format!(
                        "row {}, target `{}`: `{t}` is not a finite number",
                        i + 1,
                        task.target
                    )));
                }
                y_value.push(v);
            }
        }
    }
    // Split.
    let n = kept.len();
    let n_hold = ((n as f64) * task.holdout).round() as usize;
    let hashes: Vec<[u8; 32]> = cells
        .iter()
        .map(|c| row_hash(&c.iter().map(String::as_str).collect::<Vec<_>>()))
        .collect();
    let (train, holdout): (Vec<usize>, Vec<usize>) = match task.split {
        Split::Ordered => ((0..n - n_hold).collect(), (n - n_hold..n).collect()),
        Split::Hash => {
            // A row goes to the holdout when its hash falls in the lowest share.
            let cut = (task.holdout * u32::MAX as f64) as u32;
            (0..n).partition(|&i| {
                u32::from_le_bytes(hashes[i][..4].try_into().expect("4 bytes")) >= cut
            })
        }
    };
    let in_train: HashSet<[u8; 32]> = train.iter().map(|&i| hashes[i]).collect();
    checks.leaked = holdout
        .iter()
        .filter(|&&i| in_train.contains(&hashes[i]))
        .count();
    checks.train = train.len();
    checks.holdout = holdout.len();
    if checks.leaked > 0 {
        return Err(refuse(format!(
            "leakage: {} of {} holdout rows also appear in training (by row hash); deduplicate before splitting",
            checks.leaked,
            holdout.len()
        )));
    }
    if task.kind == TaskKind::Classification {
        for (c, name) in classes.iter().enumerate() {
            let total = y_class.iter().filter(|&&y| y as usize == c).count();
            checks.classes.insert(name.clone(), total);
            if total < MIN_CLASS_ROWS {
                return Err(refuse(format!(
                    "class `{name}` has {total} rows: at least {MIN_CLASS_ROWS} each are needed"
                )));
            }
            if !holdout.iter().any(|&i| y_class[i] as usize == c) {
                return Err(refuse(format!("class `{name}` has no row in the holdout")));
            }
        }
    }
    Ok(Prepared {
        columns,
        x,
        cells,
        classes,
        y_class,
        y_value,
        train,
        holdout,
        checks,
    })
}

fn is_missing(s: &str) -> bool {
    s.is_empty() || s.eq_ignore_ascii_case("na") || s.eq_ignore_ascii_case("nan")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quoted_fields_keep_commas_quotes_and_line_breaks() {
        let t = parse_csv("a,b\n\"x, y\",\"say \"\"hi\"\"\"\n\"two\nlines\",3\n").unwrap();
        assert_eq!(t.header, vec!["a", "b"]);
        assert_eq!(t.rows[0], vec!["x, y", "say \"hi\""]);
        assert_eq!(t.rows[1], vec!["two\nlines", "3"]);
        assert!(parse_csv("a,b\n1\n")
            .unwrap_err()
            .contains("row 1 has 1 fields"));
        assert!(parse_csv("a,a\n").unwrap_err().contains("twice"));
    }
}

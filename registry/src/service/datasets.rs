//! Datasets as artifacts: a data file, immutable and content-addressed, whose
//! card the registry writes itself from the data (rows, columns, what a row
//! holds, how the labels are spread), so that the counts on it are true.

use super::*;

/// What a publisher says about a dataset it publishes.
#[derive(Clone, Debug, Default)]
pub struct DatasetSpec {
    pub name: String,
    pub version: String,
    pub digest: String,
    /// `csv` (the default).
    pub format: String,
    pub license: String,
    pub source: String,
    /// A column name (with a header) or a 0-based index; empty for none.
    pub label_column: String,
    pub header: bool,
    pub domain: String,
    pub task: String,
    pub description: String,
    pub industries: Vec<String>,
    pub tags: Vec<String>,
    pub card: String,
    /// (digest, bytes) of a small file sent with the publish.
    pub inline: Vec<(String, Vec<u8>)>,
}

impl Registry {
    /// Publishes a dataset: the registry reads the file for its card.
    pub fn publish_dataset(&self, p: &Principal, spec: DatasetSpec) -> Result<Artifact> {
        self.owner_check(p, &spec.name)?;
        check_version(&spec.version)?;
        check_text(
            &spec.description,
            &spec.card,
            &spec.license,
            &spec.industries,
            &spec.tags,
        )?;
        for (field, v) in [
            ("domain", &spec.domain),
            ("task", &spec.task),
            ("label_column", &spec.label_column),
            ("format", &spec.format),
        ] {
            check_len(field, v, text::WORD)?;
        }
        check_len("source", &spec.source, text::ITEM)?;
        if spec.license.trim().is_empty() {
            return Err(RegistryError::invalid(
                "license",
                "is required for a dataset (an SPDX identifier, or the name of its terms)",
            ));
        }
        if spec.source.trim().is_empty() {
            return Err(RegistryError::invalid(
                "source",
                "is required for a dataset (a package and version, a URL, a paper)",
            ));
        }
        let format = match spec.format.as_str() {
            "" | "csv" => "csv",
            other => {
                return Err(RegistryError::invalid(
                    "format",
                    format!("`{}` is not one the registry reads (csv)", shown(other)),
                ))
            }
        };
        let d = digest("digest", &spec.digest)?;
        let inline = self.inline_blobs(&[d], &spec.inline)?;
        // Profiled as it is read, a line at a time, never held whole.
        let (mut card, size) = match inline.get(&d) {
            Some(b) => (
                profile_csv(b, spec.header, &spec.label_column)?,
                b.len() as u64,
            ),
            None => {
                if !self.sees_in_catalog(p, &d)? {
                    return Err(RegistryError::FailedPrecondition(format!(
                        "dataset {d} has not been uploaded"
                    )));
                }
                let (size, reader) = self.blobs.open(&d)?;
                let reader = std::io::BufReader::with_capacity(
                    256 << 10,
                    crate::blobs::VerifyingReader::new(d, size, reader),
                );
                (
                    profile_csv_reader(reader, spec.header, &spec.label_column)?,
                    size,
                )
            }
        };
        card.source = spec.source.trim().to_owned();
        self.insert_with(
            self.inline_records(inline)?,
            Artifact {
                description: spec.description,
                license: spec.license,
                industries: spec.industries,
                tags: spec.tags,
                domain: spec.domain,
                task: spec.task,
                card: spec.card,
                blobs: vec![d],
                dataset: Some(card),
                published_unix: self.clock.now_unix(),
                published_by: p.token_id.clone(),
                ..Artifact::new(Kind::Dataset, spec.name, spec.version, d, size, format)
            },
        )
    }
}

/// What a dataset's card may hold, so that every card stays small enough to
/// show and to send in a search answer whatever a file holds.
pub mod card_limits {
    /// Columns of a row.
    pub const COLUMNS: usize = 2048;
    /// Bytes of a column's name (from the header).
    pub const COLUMN_NAME: usize = 128;
    /// Bytes of a label value counted on the card.
    pub const LABEL_VALUE: usize = 128;
    /// Bytes of one line of the file.
    pub const LINE: usize = 1 << 20;
    /// Bytes of the whole card, as stored.
    pub const CARD: usize = 64 << 10;
}

/// Splits one CSV line into fields (double quotes around a field may hold
/// commas and doubled quotes; a field may not span lines), at most
/// [`card_limits::COLUMNS`] of them.
fn fields(line: &str, n: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if cur.is_empty() => quoted = true,
            (',', false) => {
                out.push(std::mem::take(&mut cur));
                if out.len() >= card_limits::COLUMNS {
                    return Err(RegistryError::TooLarge(format!(
                        "data line {n}: more than {} fields, over the limit of columns",
                        card_limits::COLUMNS
                    )));
                }
            }
            (c, _) => cur.push(c),
        }
    }
    if quoted {
        return Err(RegistryError::invalid(
            format!("data line {n}"),
            "a quoted field is not closed on its line",
        ));
    }
    out.push(cur);
    Ok(out)
}

/// Reads a CSV file for its card: every row must have the header's (or the
/// first row's) number of fields; errors name the line.
pub fn profile_csv(bytes: &[u8], header: bool, label: &str) -> Result<DatasetCard> {
    profile_csv_reader(std::io::Cursor::new(bytes), header, label)
}

/// [`profile_csv`] over a reader, a line at a time: memory stays within a
/// line ([`card_limits::LINE`]) and the card's own bounds, whatever the size
/// of the file.
pub fn profile_csv_reader(
    mut reader: impl std::io::BufRead,
    header: bool,
    label: &str,
) -> Result<DatasetCard> {
    use std::io::{BufRead, Read};
    let mut buf = Vec::new();
    let mut n = 0usize;
    // The next non-empty line: (line number, text).
    let mut next_line = |reader: &mut dyn std::io::BufRead| -> Result<Option<(usize, String)>> {
        loop {
            buf.clear();
            let got = (&mut *reader)
                .take(card_limits::LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|e| RegistryError::Storage(format!("dataset: {e}")))?;
            if got == 0 {
                return Ok(None);
            }
            n += 1;
            if buf.len() > card_limits::LINE {
                return Err(RegistryError::TooLarge(format!(
                    "data line {n}: longer than {} bytes",
                    card_limits::LINE
                )));
            }
            let text = std::str::from_utf8(&buf).map_err(|e| {
                RegistryError::invalid(
                    format!("data line {n}"),
                    format!("is not UTF-8 text (at byte {})", e.valid_up_to()),
                )
            })?;
            let text = text.trim_end_matches('\n').trim_end_matches('\r');
            if !text.trim().is_empty() {
                return Ok(Some((n, text.to_owned())));
            }
        }
    };
    let (first_n, first) =
        next_line(&mut reader)?.ok_or_else(|| RegistryError::invalid("data", "holds no rows"))?;
    let first = fields(&first, first_n)?;
    let width = first.len();
    if header {
        if let Some((i, c)) = first
            .iter()
            .enumerate()
            .find(|(_, c)| c.len() > card_limits::COLUMN_NAME || c.chars().any(char::is_control))
        {
            return Err(RegistryError::invalid(
                format!("data line {first_n}"),
                format!(
                    "column {i}'s name `{}` is over {} bytes or holds control characters",
                    shown(c),
                    card_limits::COLUMN_NAME
                ),
            ));
        }
    }
    let (columns, mut rows): (Vec<String>, Vec<(usize, Vec<String>)>) = if header {
        (first, Vec::new())
    } else {
        (
            (0..width).map(|i| i.to_string()).collect(),
            vec![(first_n, first)],
        )
    };
    let label_at = if label.is_empty() {
        None
    } else {
        Some(
            columns
                .iter()
                .position(|c| c == label)
                .or_else(|| label.parse::<usize>().ok().filter(|&i| i < width))
                .ok_or_else(|| {
                    RegistryError::invalid(
                        "label_column",
                        format!(
                            "`{}` is not a column ({} columns{})",
                            shown(label),
                            width,
                            if header {
                                ", named in the header"
                            } else {
                                ", 0-based"
                            }
                        ),
                    )
                })?,
        )
    };
    let mut count = rows.len() as u64;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut many = false;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut label_numeric = true;
    let mut features_numeric = true;
    let mut see = |n: usize, row: &[String]| -> Result<()> {
        if row.len() != width {
            return Err(RegistryError::invalid(
                format!("data line {n}"),
                format!("has {} fields, the first row {width}", row.len()),
            ));
        }
        for (i, v) in row.iter().enumerate() {
            if Some(i) == label_at {
                continue;
            }
            if features_numeric && v.trim().parse::<f64>().is_err() {
                features_numeric = false;
            }
        }
        if let Some(at) = label_at {
            let v = row[at].trim();
            match v.parse::<f64>() {
                Ok(x) => {
                    lo = lo.min(x);
                    hi = hi.max(x);
                }
                Err(_) => label_numeric = false,
            }
            if v.len() > card_limits::LABEL_VALUE || v.chars().any(char::is_control) {
                return Err(RegistryError::invalid(
                    format!("data line {n}"),
                    format!(
                        "the label `{}` is over {} bytes or holds control characters",
                        shown(v),
                        card_limits::LABEL_VALUE
                    ),
                ));
            }
            if !many {
                *counts.entry(v.to_owned()).or_default() += 1;
                if counts.len() > MAX_LABELS {
                    many = true;
                    counts.clear();
                }
            }
        }
        Ok(())
    };
    for (n, row) in rows.drain(..) {
        see(n, &row)?;
    }
    while let Some((n, line)) = next_line(&mut reader)? {
        see(n, &fields(&line, n)?)?;
        count += 1;
    }
    if count == 0 {
        return Err(RegistryError::invalid("data", "has a header and no rows"));
    }
    let features = width - usize::from(label_at.is_some());
    let card = DatasetCard {
        format: "csv".into(),
        source: String::new(),
        rows: count,
        label_column: label_at.map(|i| columns[i].clone()).unwrap_or_default(),
        columns,
        label_counts: counts,
        input_type: if features_numeric {
            format!("f32[{features}]")
        } else {
            "mixed".into()
        },
        label_range: if many && label_numeric {
            format!("{lo}..{hi}")
        } else {
            String::new()
        },
    };
    let size = serde_json::to_vec(&card).map_or(0, |v| v.len());
    if size > card_limits::CARD {
        return Err(RegistryError::TooLarge(format!(
            "the dataset's card would be {size} bytes ({} columns, {} label values), over the limit of {}",
            card.columns.len(),
            card.label_counts.len(),
            card_limits::CARD
        )));
    }
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_gives_its_rows_columns_and_label_spread() {
        let c = profile_csv(b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n", true, "label").unwrap();
        assert_eq!((c.rows, c.columns.len()), (3, 3));
        assert_eq!(c.label_column, "label");
        assert_eq!(
            c.label_counts,
            BTreeMap::from([("x".into(), 2), ("y".into(), 1)])
        );
        assert_eq!(c.input_type, "f32[2]");
        let c = profile_csv(b"1,\"a, b\",0\n2,\"say \"\"hi\"\"\",1\n", false, "2").unwrap();
        assert_eq!((c.rows, c.input_type.as_str()), (2, "mixed"));
        let target: String = (0..300).map(|i| format!("{i},{}.5\n", i * 2)).collect();
        let c = profile_csv(target.as_bytes(), false, "1").unwrap();
        assert!(c.label_counts.is_empty());
        assert_eq!(c.label_range, "0.5..598.5");
    }

    #[test]
    fn bad_data_is_refused_with_the_line_or_column_at_fault() {
        let e = profile_csv(b"a,b\n1,2\n3\n", true, "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("data line 3") && e.contains("1 fields"), "{e}");
        let e = profile_csv(b"a,b\n1,2\n", true, "c")
            .unwrap_err()
            .to_string();
        assert!(e.contains("label_column") && e.contains("`c`"), "{e}");
        let e = profile_csv(b"1,\"open\n", false, "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("data line 1") && e.contains("not closed"), "{e}");
        let e = profile_csv(b"\xff\xfe", false, "").unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        assert!(profile_csv(b"a,b\n", true, "").is_err());
        assert!(profile_csv(b"", false, "").is_err());
    }

    #[test]
    fn a_card_is_bounded_whatever_the_file_holds() {
        // 64 MB of one line (32 million fields): refused at its first MiB.
        struct Endless(u64);
        impl std::io::Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0 as usize);
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = if i % 2 == 0 { b'1' } else { b',' };
                }
                self.0 -= n as u64;
                Ok(n)
            }
        }
        let e = profile_csv_reader(std::io::BufReader::new(Endless(64 << 20)), false, "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("data line 1: longer than 1048576 bytes"), "{e}");
        // Too many columns on a short line.
        let wide = vec!["1"; card_limits::COLUMNS + 1].join(",");
        let e = profile_csv(wide.as_bytes(), false, "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 2048 fields"), "{e}");
        // Long or control-character labels and column names.
        let long = format!("a,label\n1,{}\n", "x".repeat(200));
        let e = profile_csv(long.as_bytes(), true, "label")
            .unwrap_err()
            .to_string();
        assert!(e.contains("data line 2") && e.contains("the label"), "{e}");
        let named = format!("a,{}\n1,2\n", "n".repeat(200));
        let e = profile_csv(named.as_bytes(), true, "")
            .unwrap_err()
            .to_string();
        assert!(e.contains("column 1's name"), "{e}");
        // 2,048 columns of long names make a card past its bound.
        let names: Vec<String> = (0..2048)
            .map(|i| format!("column-with-a-long-name-{i:05}"))
            .collect();
        let csv = format!("{}\n{}\n", names.join(","), vec!["1"; 2048].join(","));
        let e = profile_csv(csv.as_bytes(), true, "")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the dataset's card would be") && e.contains("over the limit of 65536"),
            "{e}"
        );
    }
}

//! `docs/kitfile.md` documents exactly the fields the Kitfile parser takes:
//! a field added to the code and not to the reference (or the other way)
//! fails here. The parser's own list of fields is read from its error for an
//! unknown one, so this follows the structs as they are.

use std::collections::{BTreeMap, BTreeSet};

use algobay_runtime::kitfile::Kitfile;

/// The fields the parser expects in the table a probe opens.
fn fields_in_code(probe: &str) -> BTreeSet<String> {
    let text = format!("{probe}\n__probe__ = 1\n");
    let err = Kitfile::parse(&text).unwrap_err().to_string();
    let at = err
        .find("expected")
        .unwrap_or_else(|| panic!("no field list in: {err}"));
    err[at..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Section heading in the reference → the TOML that opens that table.
const TABLES: &[(&str, &str)] = &[
    ("Top level", ""),
    ("`[kit]`", "[kit]"),
    ("`[[input]]` and `[[output]]`", "[[input]]"),
    ("`[[step]]`", "[[step]]"),
    ("`[step.limits]`", "[[step]]\n[step.limits]"),
    ("`[step.scan]`", "[[step]]\n[step.scan]"),
    ("`[[golden]]`", "[[golden]]"),
    ("`[golden.tolerance]`", "[[golden]]\n[golden.tolerance]"),
    (
        "`[golden.tolerance.fields]`",
        "[[golden]]\n[golden.tolerance.fields.x]",
    ),
    ("`[resources]`", "[resources]"),
    ("`[sampling]`", "[sampling]"),
    ("`[training]`", "[training]"),
];

/// Heading → the fields its tables list (`| \`field\` | …`).
fn fields_in_reference() -> BTreeMap<String, BTreeSet<String>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/kitfile.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().to_owned();
            out.entry(section.clone()).or_default();
        } else if line.starts_with("### ") {
            // Subsections explain their table's fields; they add none.
        } else if let Some(rest) = line.strip_prefix("| `") {
            let field = rest.split('`').next().unwrap().to_owned();
            out.entry(section.clone()).or_default().insert(field);
        }
    }
    out
}

#[test]
fn the_kitfile_reference_documents_every_field_the_parser_takes_and_no_other() {
    let doc = fields_in_reference();
    let mut problems = Vec::new();
    for (heading, probe) in TABLES {
        let code = fields_in_code(probe);
        let documented = doc.get(*heading).cloned().unwrap_or_default();
        for f in code.difference(&documented) {
            problems.push(format!("{heading}: `{f}` is parsed but not documented"));
        }
        for f in documented.difference(&code) {
            problems.push(format!("{heading}: `{f}` is documented but not parsed"));
        }
    }
    // A documented table the parser has no probe for is a table it does not know.
    for (heading, fields) in &doc {
        if heading.starts_with('`')
            && !fields.is_empty()
            && !TABLES.iter().any(|(h, _)| h == heading)
        {
            problems.push(format!(
                "{heading}: documented, but no such table is parsed"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/kitfile.md is out of date:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_reference_example_is_a_kitfile_the_parser_takes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/kitfile.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + text[start..].find("```").unwrap();
    let kf = Kitfile::parse(&text[start..end]).unwrap();
    assert_eq!(kf.kit.name, "acme/doc-orientation");
    assert_eq!(kf.step.len(), 3);
    assert_eq!(kf.step[1].ports["y"].to_string(), "f32[1,4]");
}

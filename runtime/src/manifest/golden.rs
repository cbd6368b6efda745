//! Golden samples and how close their outputs must come.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// How close a golden sample's output must come to the expected one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    /// Largest absolute difference allowed between numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abs: Option<f64>,
    /// Smallest cosine similarity allowed between tensors (or numeric arrays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosine: Option<f64>,
    /// Tolerances of single fields, by path: an output's name, then `.key`
    /// for each object key on the way (`boxes`, `result.score`; array items
    /// share their array's path). A field takes the tolerance of the longest
    /// path that leads to it, else `abs` and `cosine` above.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldTolerance>,
}

/// The tolerance of one field of a golden sample's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldTolerance {
    /// Largest absolute difference allowed between numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abs: Option<f64>,
    /// Smallest cosine similarity allowed between tensors (or numeric arrays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosine: Option<f64>,
}

impl Tolerance {
    /// The tolerance of everything the per-field table does not name.
    pub fn base(&self) -> FieldTolerance {
        FieldTolerance {
            abs: self.abs,
            cosine: self.cosine,
        }
    }

    /// Checks the values and paths a manifest carries.
    pub fn check(&self, at: &str) -> std::result::Result<(), String> {
        let ok = |t: &FieldTolerance, name: &str| -> std::result::Result<(), String> {
            if let Some(a) = t.abs {
                if !(a.is_finite() && a >= 0.0) {
                    return Err(format!("{name}.abs: {a} must be a number of at least 0"));
                }
            }
            if let Some(c) = t.cosine {
                if !(c.is_finite() && (-1.0..=1.0).contains(&c)) {
                    return Err(format!("{name}.cosine: {c} must lie in -1..1"));
                }
            }
            Ok(())
        };
        ok(&self.base(), at)?;
        for (path, t) in &self.fields {
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(format!(
                    "{at}.fields: `{path}` is not a path of output and keys (`name.key`)"
                ));
            }
            ok(t, &format!("{at}.fields.\"{path}\""))?;
        }
        Ok(())
    }
}

/// An input with the output that must come out of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Golden {
    /// Kit input → blob holding it (raw bytes, UTF-8 text, JSON, or a JSON tensor).
    pub inputs: BTreeMap<String, Digest>,
    /// Blob holding a JSON object: kit output → expected value.
    pub expected: Digest,
    #[serde(default)]
    pub tolerance: Tolerance,
}

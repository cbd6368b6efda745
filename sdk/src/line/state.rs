//! What the line made last time, so that a run with nothing changed makes nothing.
//!
//! Kept as one JSON file in the work folder, replaced atomically after each
//! recipe: a run killed at any point leaves the previous state or the new one,
//! and the registry (which refuses a version with other content and accepts
//! the same content again) keeps what was published consistent either way.

use std::collections::BTreeMap;
use std::path::Path;

use super::{LineError, Outcome};

/// Changes when the way the line makes artifacts changes: every recipe is
/// then made again.
pub const LINE_FORMAT: &str = "algobay-line/2";

/// The version tools are published under (the stage crates' version).
pub const TOOL_VERSION: &str = "0.1.0";

/// One recipe's last outcome.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RecipeState {
    pub fingerprint: String,
    pub outcomes: Vec<Outcome>,
}

/// The line's memory between runs.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Recipe (file stem) → its fingerprint and outcomes.
    #[serde(default)]
    pub recipes: BTreeMap<String, RecipeState>,
    /// Tool → the digest last published.
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
}

impl State {
    /// Reads the state file; none yet is an empty state.
    pub fn load(path: &Path) -> Result<State, LineError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| LineError::Io {
                path: path.to_owned(),
                message: format!(
                    "the line's state is not valid json ({e}); delete it to start over"
                ),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(LineError::Io {
                path: path.to_owned(),
                message: e.to_string(),
            }),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), LineError> {
        let json = serde_json::to_vec_pretty(self).expect("state serialises");
        algobay_runtime::fsx::write_atomic(path, &json).map_err(|e| LineError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

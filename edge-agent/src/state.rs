//! Everything the agent knows about its kits, in one file replaced atomically:
//! a crash at any moment leaves the old state or the new one, never a mix.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use algobay_runtime::sign::Signature;

use crate::error::{write_atomic, AgentError, Result};

/// A kit the device runs (or ran).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// The kit's manifest digest.
    pub digest: String,
    pub reference: String,
    pub deployment_id: String,
    pub signatures: Vec<Signature>,
    pub activated_unix: i64,
}

/// A kit that failed on this device, so the same deployment is not retried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub deployment_id: String,
    pub digest: String,
    pub reason: String,
}

/// The active slot, the fallback slot, and recent failures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    pub active: Option<Slot>,
    pub previous: Option<Slot>,
    #[serde(default)]
    pub failed: Vec<Failure>,
}

/// Failures remembered.
const KEEP_FAILURES: usize = 32;

impl AgentState {
    pub fn path(data: &Path) -> PathBuf {
        data.join("state.json")
    }

    pub fn load(data: &Path) -> Result<AgentState> {
        let p = Self::path(data);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| AgentError::State {
                path: p.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(e) => Err(crate::error::io(&p, e)),
        }
    }

    pub fn save(&self, data: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| AgentError::State {
            path: Self::path(data).display().to_string(),
            message: e.to_string(),
        })?;
        write_atomic(&Self::path(data), &bytes, false)
    }

    pub fn failed(&self, deployment_id: &str, digest: &str) -> Option<&Failure> {
        self.failed
            .iter()
            .find(|f| f.deployment_id == deployment_id && f.digest == digest)
    }

    pub fn record_failure(&mut self, f: Failure) {
        self.failed.push(f);
        if self.failed.len() > KEEP_FAILURES {
            self.failed.remove(0);
        }
    }
}

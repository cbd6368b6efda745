//! The agent's one error type.

/// Everything the agent can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration is missing something or holds a bad value.
    #[error("config: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Enrollment could not finish.
    #[error("enrollment: {0}")]
    Enroll(String),
    /// The registry refused or could not be reached.
    #[error(transparent)]
    Registry(#[from] algobay_sdk::SdkError),
    /// A kit failed to verify, load or pass its golden samples.
    #[error(transparent)]
    Runtime(#[from] algobay_runtime::Error),
    /// The agent's own state file is unreadable.
    #[error("state file {path}: {message}")]
    State { path: String, message: String },
}

/// Result with the agent's error.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> AgentError {
    AgentError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a file so that a crash leaves either the old or the new contents
/// (see `algobay_runtime::fsx`); `private`: readable by its owner only.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8], private: bool) -> Result<()> {
    if private {
        algobay_runtime::fsx::write_private(path, bytes)
    } else {
        algobay_runtime::fsx::write_atomic(path, bytes)
    }
    .map_err(|e| io(path, e))
}

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

/// Writes a file so that a crash leaves either the old or the new contents:
/// a temporary file, synced, renamed over the old one, the folder synced.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8], private: bool) -> Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

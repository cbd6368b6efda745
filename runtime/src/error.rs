//! The one error type of the runtime crate.

use std::path::PathBuf;

/// Everything that can go wrong while building, loading or running a kit.
///
/// Messages are lowercase and name the field, file, step or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kitfile, manifest or configuration is malformed.
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A kit archive is malformed (truncated, unexpected entry, path escape, oversize).
    #[error("kit archive: {0}")]
    Archive(String),

    /// Bytes do not hash to the digest that names them.
    #[error("digest mismatch for {name}: expected {expected}, got {actual}")]
    DigestMismatch {
        name: String,
        expected: String,
        actual: String,
    },

    /// A blob named by the manifest is not in the kit.
    #[error("blob {digest} named by {by} is missing from the kit")]
    MissingBlob { digest: String, by: String },

    /// A signature is missing, malformed, invalid, or made by an untrusted key.
    #[error("signature: {0}")]
    Signature(String),

    /// Two steps do not fit together, or a step does not fit the kit's schema.
    #[error("pipeline: {0}")]
    Pipeline(String),

    /// A WASM stage failed to compile, instantiate or run.
    #[error("stage `{step}`: {message}")]
    Stage { step: String, message: String },

    /// A model failed to load or run.
    #[error("model step `{step}`: {message}")]
    Model { step: String, message: String },

    /// ONNX Runtime's shared library could not be found or loaded.
    #[error("onnx runtime is not available: {0}")]
    OrtUnavailable(String),

    /// A request's input is missing or of the wrong type.
    #[error("input `{name}`: {message}")]
    Input { name: String, message: String },

    /// A golden sample produced something other than its expected output.
    #[error("golden sample {index} failed: {message}")]
    Golden { index: usize, message: String },

    /// A stage crate failed to build to WASM.
    #[error("building stage crate {}: {message}", path.display())]
    StageBuild { path: PathBuf, message: String },
}

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn stage(step: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Stage {
            step: step.into(),
            message: message.into(),
        }
    }

    pub(crate) fn model(step: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Model {
            step: step.into(),
            message: message.to_string(),
        }
    }

    pub(crate) fn input(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Input {
            name: name.into(),
            message: message.into(),
        }
    }
}

/// A value as an error may quote it: whole when short, else its start and its
/// length, so that no error echoes a large input back.
pub fn shown(value: &str) -> String {
    const KEEP: usize = 48;
    if value.len() <= KEEP {
        return value.to_owned();
    }
    let mut end = KEEP;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &value[..end], value.len())
}

//! The registry's one error type, and the one place it becomes a gRPC status.

/// Everything the registry's services can answer with besides success.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A request field is missing or malformed.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// No token, or one that is unknown, expired or revoked.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller's role or tenant may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The name or version exists with other content.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The upload is not in the state the request assumes (wrong offset, unfinished).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A size or count limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A published artifact does not do what it claims (bad model, failing golden sample).
    #[error("rejected: {0}")]
    Rejected(String),
    /// The registry cannot take this now (a pool is full); the caller may retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The work stopped because its caller went away.
    #[error("cancelled: {0}")]
    Cancelled(String),
    #[error("storage: {0}")]
    Storage(String),
}

/// Result with the registry's error.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        RegistryError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The gRPC status code of this error.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            RegistryError::Invalid { .. } => Code::InvalidArgument,
            RegistryError::Unauthenticated(_) => Code::Unauthenticated,
            RegistryError::PermissionDenied(_) => Code::PermissionDenied,
            RegistryError::NotFound(_) => Code::NotFound,
            RegistryError::AlreadyExists(_) => Code::AlreadyExists,
            RegistryError::FailedPrecondition(_) => Code::FailedPrecondition,
            RegistryError::TooLarge(_) => Code::ResourceExhausted,
            RegistryError::Rejected(_) => Code::InvalidArgument,
            RegistryError::Unavailable(_) => Code::Unavailable,
            RegistryError::Cancelled(_) => Code::Cancelled,
            RegistryError::Storage(_) => Code::Internal,
        }
    }
}

/// The longest message a status carries: gRPC clients refuse metadata past
/// a few KiB, and an error should never echo a whole input back.
pub const MAX_MESSAGE: usize = 1024;

impl From<RegistryError> for tonic::Status {
    fn from(e: RegistryError) -> tonic::Status {
        let mut m = e.to_string();
        if m.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !m.is_char_boundary(end) {
                end -= 1;
            }
            m.truncate(end);
            m.push_str("… (cut)");
        }
        tonic::Status::new(e.code(), m)
    }
}

impl From<algobay_runtime::Error> for RegistryError {
    fn from(e: algobay_runtime::Error) -> Self {
        use algobay_runtime::Error as E;
        match e {
            E::Io { .. } => RegistryError::Storage(e.to_string()),
            E::Invalid { what, message } => RegistryError::Invalid {
                field: what,
                message,
            },
            other => RegistryError::Rejected(other.to_string()),
        }
    }
}

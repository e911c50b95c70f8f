//! The one error type a plugin returns, and the HTTP status each variant maps to.

/// An error from a backend (or the core, on its behalf). `status()` is the HTTP status
/// Vault uses for it; the message is what goes into `{"errors": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdkError {
    /// The request is malformed or asks for something invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// The token may not do this (403).
    #[error("permission denied")]
    PermissionDenied,
    /// Nothing at this path (404, no message, like Vault's empty `errors`).
    #[error("")]
    NotFound,
    /// No handler for this path in the backend (404).
    #[error("unsupported path")]
    UnsupportedPath,
    /// The path exists but not for this operation (405).
    #[error("unsupported operation")]
    UnsupportedOperation,
    /// A check-and-set or precondition failed (Vault uses 400 for KV CAS).
    #[error("{0}")]
    Conflict(String),
    /// The server is sealed (503).
    #[error("Vault is sealed")]
    Sealed,
    /// Something else with an explicit status and message.
    #[error("{message}")]
    Coded { status: u16, message: String },
    /// Storage failed underneath (500).
    #[error("storage error: {0}")]
    Storage(String),
    /// A bug or unexpected state (500). Never includes secret values.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SdkError {
    /// The HTTP status Vault answers with for this error.
    pub fn status(&self) -> u16 {
        match self {
            SdkError::BadRequest(_) | SdkError::Conflict(_) => 400,
            SdkError::PermissionDenied => 403,
            SdkError::NotFound | SdkError::UnsupportedPath => 404,
            SdkError::UnsupportedOperation => 405,
            SdkError::Sealed => 503,
            SdkError::Coded { status, .. } => *status,
            SdkError::Storage(_) | SdkError::Internal(_) => 500,
        }
    }

    /// The messages for the `errors` array (empty for a bare 404).
    pub fn messages(&self) -> Vec<String> {
        match self {
            SdkError::NotFound => Vec::new(),
            other => vec![other.to_string()],
        }
    }

    /// Shorthand for a 400 with a message.
    pub fn bad(msg: impl Into<String>) -> Self {
        SdkError::BadRequest(msg.into())
    }
}

impl From<serde_json::Error> for SdkError {
    fn from(err: serde_json::Error) -> Self {
        SdkError::Internal(format!("json: {err}"))
    }
}

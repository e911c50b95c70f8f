//! `OpError`: the outcome of one cryptographic operation on one input, split the way
//! Vault splits it (a user error becomes a 400 or a per-item `error` in a batch; an
//! internal error becomes a 500).

use coffer_sdk::SdkError;

/// Why one operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// Bad input (400, or a per-item `error` in a batch).
    User(String),
    /// Our failure (500).
    Internal(SdkError),
}

impl OpError {
    /// A user error with `message`.
    pub fn user(message: impl Into<String>) -> OpError {
        OpError::User(message.into())
    }

    /// The message for a batch item's `error` field.
    pub fn message(&self) -> String {
        match self {
            OpError::User(message) => message.clone(),
            OpError::Internal(err) => err.to_string(),
        }
    }

    /// Whether this is an internal error.
    pub fn is_internal(&self) -> bool {
        matches!(self, OpError::Internal(_))
    }
}

impl From<SdkError> for OpError {
    fn from(err: SdkError) -> Self {
        match err {
            SdkError::BadRequest(message) => OpError::User(message),
            other => OpError::Internal(other),
        }
    }
}

impl From<String> for OpError {
    fn from(message: String) -> Self {
        OpError::User(message)
    }
}

impl From<OpError> for SdkError {
    fn from(err: OpError) -> Self {
        match err {
            OpError::User(message) => SdkError::BadRequest(message),
            OpError::Internal(err) => err,
        }
    }
}

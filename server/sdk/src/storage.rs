//! The storage view a backend gets: plaintext, already scoped to its mount's prefix.

use async_trait::async_trait;
use serde::{de::DeserializeOwned, Serialize};

use crate::SdkError;

/// One write in an atomic batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageOp {
    /// Create or replace a key.
    Put { key: String, value: Vec<u8> },
    /// Remove a key (missing is fine).
    Delete { key: String },
}

/// A backend's storage: keys are relative to the mount; the view encrypts on write and
/// decrypts on read, and every `commit` is one atomic Raft entry.
#[async_trait]
pub trait Storage: Send + Sync {
    /// The value at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SdkError>;
    /// Direct children of `prefix` (sub-folders end in `/`), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, SdkError>;
    /// Apply all ops atomically (one replicated log entry).
    async fn commit(&self, ops: Vec<StorageOp>) -> Result<(), SdkError>;

    /// Write one key.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), SdkError> {
        self.commit(vec![StorageOp::Put {
            key: key.to_string(),
            value,
        }])
        .await
    }
    /// Delete one key.
    async fn delete(&self, key: &str) -> Result<(), SdkError> {
        self.commit(vec![StorageOp::Delete {
            key: key.to_string(),
        }])
        .await
    }
}

/// JSON helpers on any [`Storage`].
#[async_trait]
pub trait StorageExt: Storage {
    /// Read and deserialize a JSON value.
    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SdkError> {
        match self.get(key).await? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                SdkError::Internal(format!("stored value at {key:?} does not decode: {e}"))
            })?)),
            None => Ok(None),
        }
    }
    /// Serialize and write a JSON value.
    async fn put_json<T: Serialize + Sync>(&self, key: &str, value: &T) -> Result<(), SdkError> {
        self.put(key, serde_json::to_vec(value)?).await
    }
    /// Every key below `prefix`, recursively (folders expanded), relative to the view.
    async fn list_recursive(&self, prefix: &str) -> Result<Vec<String>, SdkError> {
        let mut out = Vec::new();
        let mut pending = vec![prefix.to_string()];
        while let Some(dir) = pending.pop() {
            for child in self.list(&dir).await? {
                let full = format!("{dir}{child}");
                if child.ends_with('/') {
                    pending.push(full);
                } else {
                    out.push(full);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

impl<S: Storage + ?Sized> StorageExt for S {}

/// Encode a JSON value for a `StorageOp::Put`.
pub fn json_op<T: Serialize>(key: &str, value: &T) -> Result<StorageOp, SdkError> {
    Ok(StorageOp::Put {
        key: key.to_string(),
        value: serde_json::to_vec(value)?,
    })
}

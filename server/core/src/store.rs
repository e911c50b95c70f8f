//! Logical (plaintext, above-the-barrier) storage for the core, and the prefix-scoped
//! views handed to plugins as their `sdk::Storage`.

use std::sync::Arc;

use async_trait::async_trait;
use coffer_barrier::barrier::{Barrier, LogicalOp};
use coffer_sdk::{SdkError, StorageOp};
use serde::{de::DeserializeOwned, Serialize};

use crate::CoreError;

/// The barrier as the core uses it. Remembers the Raft index of the last commit made
/// through it so the HTTP layer can return `X-Vault-Index`.
pub struct LogicalStore {
    barrier: Arc<Barrier>,
}

impl LogicalStore {
    /// Wrap a barrier.
    pub fn new(barrier: Arc<Barrier>) -> Arc<LogicalStore> {
        Arc::new(LogicalStore { barrier })
    }

    /// Read a key.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CoreError> {
        Ok(self.barrier.get(key)?)
    }

    /// Read and decode a JSON value.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CoreError> {
        match self.get(key)? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                CoreError::Internal(format!("stored value at {key} does not decode: {e}"))
            }),
            None => Ok(None),
        }
    }

    /// Encrypt a value that is never stored (bound to `path`).
    pub fn seal_value(&self, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, CoreError> {
        Ok(self.barrier.encrypt_value(path, plaintext)?)
    }

    /// Decrypt a value made by [`LogicalStore::seal_value`]; `None` if it does not open.
    pub fn open_value(&self, path: &str, ciphertext: &[u8]) -> Option<Vec<u8>> {
        self.barrier.decrypt_value(path, ciphertext).ok()
    }

    /// List direct children.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, CoreError> {
        Ok(self.barrier.list(prefix)?)
    }

    /// Every key below `prefix`, recursively.
    pub fn list_recursive(&self, prefix: &str) -> Result<Vec<String>, CoreError> {
        let mut out = Vec::new();
        let mut pending = vec![prefix.to_string()];
        while let Some(dir) = pending.pop() {
            for child in self.list(&dir)? {
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

    /// Commit a batch; returns the Raft index.
    pub async fn commit(&self, ops: Vec<LogicalOp>) -> Result<u64, CoreError> {
        Ok(self.barrier.commit(ops).await?)
    }

    /// Write one key.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, CoreError> {
        self.commit(vec![LogicalOp::Put {
            key: key.to_string(),
            value,
        }])
        .await
    }

    /// Write one JSON value.
    pub async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<u64, CoreError> {
        self.commit(vec![json_put(key, value)?]).await
    }

    /// Delete one key.
    pub async fn delete(&self, key: &str) -> Result<u64, CoreError> {
        self.commit(vec![LogicalOp::Delete {
            key: key.to_string(),
        }])
        .await
    }
}

/// A JSON put op.
pub fn json_put<T: Serialize>(key: &str, value: &T) -> Result<LogicalOp, CoreError> {
    Ok(LogicalOp::Put {
        key: key.to_string(),
        value: serde_json::to_vec(value).map_err(|e| CoreError::Internal(e.to_string()))?,
    })
}

/// A mount's storage: every key is prefixed, so a plugin cannot name another mount's
/// data. Keys containing `..` segments are refused.
pub struct PrefixedStorage {
    store: Arc<LogicalStore>,
    prefix: String,
}

impl PrefixedStorage {
    /// A view of `store` under `prefix` (ends with `/`).
    pub fn new(store: Arc<LogicalStore>, prefix: String) -> PrefixedStorage {
        PrefixedStorage { store, prefix }
    }

    fn full(&self, key: &str) -> Result<String, SdkError> {
        if key.split('/').any(|seg| seg == ".." || seg == ".") || key.starts_with('/') {
            return Err(SdkError::bad(format!("invalid storage key {key:?}")));
        }
        Ok(format!("{}{key}", self.prefix))
    }
}

fn to_sdk(err: CoreError) -> SdkError {
    match err {
        CoreError::Sealed => SdkError::Sealed,
        other => SdkError::Storage(other.to_string()),
    }
}

#[async_trait]
impl coffer_sdk::Storage for PrefixedStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SdkError> {
        self.store.get(&self.full(key)?).map_err(to_sdk)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, SdkError> {
        self.store.list(&self.full(prefix)?).map_err(to_sdk)
    }

    async fn commit(&self, ops: Vec<StorageOp>) -> Result<(), SdkError> {
        let mut logical = Vec::with_capacity(ops.len());
        for op in ops {
            logical.push(match op {
                StorageOp::Put { key, value } => LogicalOp::Put {
                    key: self.full(&key)?,
                    value,
                },
                StorageOp::Delete { key } => LogicalOp::Delete {
                    key: self.full(&key)?,
                },
            });
        }
        self.store.commit(logical).await.map(|_| ()).map_err(to_sdk)
    }
}

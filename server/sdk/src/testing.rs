//! Test doubles for plugin unit tests (feature `testing`): an in-memory [`Storage`]
//! and a request builder. Never used by the server itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::request::{Caller, MountTtl, Operation, Request};
use crate::storage::{Storage, StorageOp};
use crate::SdkError;

/// In-memory storage with Vault `List` semantics; counts reads and commits.
#[derive(Default)]
pub struct MemStorage {
    data: Mutex<BTreeMap<String, Vec<u8>>>,
    commits: Mutex<u64>,
    reads: AtomicU64,
}

impl MemStorage {
    /// A new, empty store.
    pub fn new() -> Arc<MemStorage> {
        Arc::new(MemStorage::default())
    }

    /// Every key currently stored.
    pub fn keys(&self) -> Vec<String> {
        self.data
            .lock()
            .map(|d| d.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of `commit` calls so far (one per atomic batch).
    pub fn commits(&self) -> u64 {
        self.commits.lock().map(|c| *c).unwrap_or(0)
    }

    /// Number of `get` calls so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Storage for MemStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SdkError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        Ok(self
            .data
            .lock()
            .map_err(|_| SdkError::Internal("poisoned".into()))?
            .get(key)
            .cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, SdkError> {
        let data = self
            .data
            .lock()
            .map_err(|_| SdkError::Internal("poisoned".into()))?;
        let mut out: Vec<String> = Vec::new();
        for key in data.keys() {
            let Some(rest) = key.strip_prefix(prefix) else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            let child = match rest.find('/') {
                Some(i) => rest[..=i].to_string(),
                None => rest.to_string(),
            };
            if out.last() != Some(&child) {
                out.push(child);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn commit(&self, ops: Vec<StorageOp>) -> Result<(), SdkError> {
        let mut data = self
            .data
            .lock()
            .map_err(|_| SdkError::Internal("poisoned".into()))?;
        for op in ops {
            match op {
                StorageOp::Put { key, value } => {
                    data.insert(key, value);
                }
                StorageOp::Delete { key } => {
                    data.remove(&key);
                }
            }
        }
        if let Ok(mut c) = self.commits.lock() {
            *c += 1;
        }
        Ok(())
    }
}

/// Build a request against `storage` for plugin tests.
pub fn request(
    storage: Arc<dyn Storage>,
    operation: Operation,
    path: &str,
    data: Value,
) -> Request {
    let data = match data {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Request {
        id: "test-request".into(),
        operation,
        path: path.into(),
        mount_point: "test/".into(),
        data,
        query: BTreeMap::new(),
        storage,
        caller: Some(Caller::default()),
        mount_ttl: MountTtl::default(),
        remote_addr: Some("127.0.0.1".into()),
        lease: None,
    }
}

//! Tests that drive the KV backends through `handle_request`, the way the core does,
//! over the sdk's in-memory storage.

mod robustness;
mod upgrade;
mod v1;
mod v2;
mod v2_metadata;

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_sdk::testing::{request, MemStorage};
use coffer_sdk::{Backend, BackendConfig, Operation, Response, SdkError};
use serde_json::Value;

use crate::factory;

/// One mount: a backend over an in-memory storage.
pub(crate) struct Kv {
    pub storage: Arc<MemStorage>,
    pub backend: Arc<dyn Backend>,
}

impl Kv {
    /// A fresh mount of `version` ("1" or "2").
    pub fn new(version: &str) -> Kv {
        Kv::over(MemStorage::new(), version)
    }

    /// A mount of `version` over existing storage (what the core does on a tune).
    pub fn over(storage: Arc<MemStorage>, version: &str) -> Kv {
        let options: BTreeMap<String, String> =
            [("version".to_string(), version.to_string())].into();
        let backend = factory(BackendConfig {
            mount_point: "test/".into(),
            options,
            storage: storage.clone(),
        })
        .unwrap_or_else(|e| panic!("factory for version {version}: {e:?}"));
        Kv { storage, backend }
    }

    /// Send one request.
    pub async fn call(&self, op: Operation, path: &str, body: Value) -> Result<Response, SdkError> {
        let mut req = request(self.storage.clone(), op, path, body);
        self.backend.handle_request(&mut req).await
    }

    /// Send one request that must succeed.
    pub async fn ok(&self, op: Operation, path: &str, body: Value) -> Response {
        match self.call(op, path, body).await {
            Ok(resp) => resp,
            Err(e) => panic!("{op:?} {path}: {e:?}"),
        }
    }

    /// The `data` of a successful request, as a JSON value (`null` when none).
    pub async fn data(&self, op: Operation, path: &str, body: Value) -> Value {
        self.ok(op, path, body)
            .await
            .data
            .map_or(Value::Null, Value::Object)
    }

    /// The HTTP status the request would get.
    pub async fn status(&self, op: Operation, path: &str, body: Value) -> u16 {
        status_of(&self.call(op, path, body).await)
    }

    /// The error of a request that must fail.
    pub async fn err(&self, op: Operation, path: &str, body: Value) -> SdkError {
        match self.call(op, path, body).await {
            Ok(resp) => panic!("{op:?} {path}: expected an error, got {resp:?}"),
            Err(e) => e,
        }
    }

    /// The backend's existence check for `path`.
    pub async fn exists(&self, path: &str) -> Option<bool> {
        let req = request(self.storage.clone(), Operation::Update, path, Value::Null);
        self.backend
            .existence_check(&req)
            .await
            .unwrap_or_else(|e| panic!("existence check {path}: {e:?}"))
    }

    /// Every storage key of the mount that starts with `prefix`.
    pub fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.storage
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect()
    }
}

/// The HTTP status of a backend answer (the core's rule: an explicit status wins, no
/// content is 204).
pub(crate) fn status_of(result: &Result<Response, SdkError>) -> u16 {
    match result {
        Ok(resp) => resp
            .status
            .unwrap_or(if resp.data.is_none() && resp.warnings.is_empty() {
                204
            } else {
                200
            }),
        Err(e) => e.status(),
    }
}

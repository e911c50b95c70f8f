//! Tests that drive the userpass backend through `handle_request` (and `renew`), the way
//! the core does, over the sdk's in-memory storage. Hashing uses cheap argon2 parameters
//! except where the real ones are the point.

mod login;
mod robustness;
mod users;

use std::sync::Arc;

use coffer_sdk::testing::{request, MemStorage};
use coffer_sdk::{Backend, Operation, Response, SdkError, Storage};
use serde_json::Value;

use crate::backend::Userpass;
use crate::password::HashParams;

/// Cheap argon2 parameters for tests that are not about the cost.
pub(crate) const CHEAP: HashParams = HashParams {
    m_cost: 64,
    t_cost: 1,
    p_cost: 1,
};

/// One mount: a backend over an in-memory storage.
pub(crate) struct Mount {
    pub storage: Arc<MemStorage>,
    pub backend: Userpass,
}

impl Mount {
    /// A fresh mount with cheap hashing.
    pub fn new() -> Mount {
        Mount::with_params(CHEAP)
    }

    /// A fresh mount hashing with `params`.
    pub fn with_params(params: HashParams) -> Mount {
        Mount {
            storage: MemStorage::new(),
            backend: Userpass::new(params).unwrap_or_else(|e| panic!("backend: {e:?}")),
        }
    }

    /// Send one request from `remote`.
    pub async fn call_from(
        &self,
        op: Operation,
        path: &str,
        body: Value,
        remote: Option<&str>,
    ) -> Result<Response, SdkError> {
        let mut req = request(self.storage.clone(), op, path, body);
        req.remote_addr = remote.map(str::to_string);
        self.backend.handle_request(&mut req).await
    }

    /// Send one request (from 127.0.0.1).
    pub async fn call(&self, op: Operation, path: &str, body: Value) -> Result<Response, SdkError> {
        self.call_from(op, path, body, Some("127.0.0.1")).await
    }

    /// Send one request that must succeed.
    pub async fn ok(&self, op: Operation, path: &str, body: Value) -> Response {
        match self.call(op, path, body).await {
            Ok(resp) => resp,
            Err(e) => panic!("{op:?} {path}: {e:?}"),
        }
    }

    /// The `data` of a successful request (`null` when none).
    pub async fn data(&self, op: Operation, path: &str, body: Value) -> Value {
        self.ok(op, path, body)
            .await
            .data
            .map_or(Value::Null, Value::Object)
    }

    /// The error of a request that must fail.
    pub async fn err(&self, op: Operation, path: &str, body: Value) -> SdkError {
        match self.call(op, path, body).await {
            Ok(resp) => panic!("{op:?} {path}: expected an error, got {resp:?}"),
            Err(e) => e,
        }
    }

    /// Renew a token whose login returned `internal`.
    pub async fn renew(&self, internal: &Value) -> Result<Response, SdkError> {
        let mut req = request(self.storage.clone(), Operation::Update, "", Value::Null);
        self.backend.renew(&mut req, internal).await
    }

    /// Every stored value, as raw bytes.
    pub async fn stored_values(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for key in self.storage.keys() {
            if let Ok(Some(value)) = self.storage.get(&key).await {
                out.push((key, value));
            }
        }
        out
    }
}

/// The HTTP status the core would answer with (explicit status wins, no content is 204).
pub(crate) fn status_of(result: &Result<Response, SdkError>) -> u16 {
    match result {
        Ok(resp) => resp.status.unwrap_or(
            if resp.data.is_none() && resp.auth.is_none() && resp.warnings.is_empty() {
                204
            } else {
                200
            },
        ),
        Err(e) => e.status(),
    }
}

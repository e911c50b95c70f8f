//! Tests that drive the approle backend through `handle_request` (and `renew`,
//! `periodic`), the way the core does, over the sdk's in-memory storage and a clock the
//! tests move by hand.

mod login;
mod robustness;
mod roles;
mod secret_ids;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use coffer_sdk::testing::{request, MemStorage};
use coffer_sdk::{Backend, Operation, Response, SdkError, Storage};
use serde_json::{json, Value};

use crate::backend::AppRole;

/// One mount: a backend over an in-memory storage, with a hand-moved clock.
pub(crate) struct Mount {
    pub storage: Arc<MemStorage>,
    pub backend: Arc<AppRole>,
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl Mount {
    /// A fresh mount whose clock reads 2024-01-01T00:00:00Z until moved.
    pub fn new() -> Mount {
        let storage = MemStorage::new();
        let start = Utc
            .with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_else(Utc::now);
        let now = Arc::new(Mutex::new(start));
        let clock_now = now.clone();
        let backend = Arc::new(AppRole::new(
            storage.clone(),
            Arc::new(move || *clock_now.lock().unwrap_or_else(|e| e.into_inner())),
        ));
        Mount {
            storage,
            backend,
            now,
        }
    }

    /// Move the clock forward.
    pub fn advance(&self, secs: i64) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += chrono::Duration::seconds(secs);
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

    /// Create role `name` with `body` and return its role id.
    pub async fn role(&self, name: &str, body: Value) -> String {
        self.ok(Operation::Create, &format!("role/{name}"), body)
            .await;
        let data = self
            .data(Operation::Read, &format!("role/{name}/role-id"), json!({}))
            .await;
        data["role_id"].as_str().unwrap_or_default().to_string()
    }

    /// Generate a secret id for role `name`: `(secret_id, accessor)`.
    pub async fn secret_id(&self, name: &str, body: Value) -> (String, String) {
        let data = self
            .data(Operation::Update, &format!("role/{name}/secret-id"), body)
            .await;
        (
            data["secret_id"].as_str().unwrap_or_default().to_string(),
            data["secret_id_accessor"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }

    /// Log in from `remote`.
    pub async fn login_from(
        &self,
        role_id: &str,
        secret_id: Option<&str>,
        remote: Option<&str>,
    ) -> Result<Response, SdkError> {
        let mut body = json!({ "role_id": role_id });
        if let Some(secret_id) = secret_id {
            body["secret_id"] = json!(secret_id);
        }
        self.call_from(Operation::Update, "login", body, remote)
            .await
    }

    /// Log in from 127.0.0.1.
    pub async fn login(
        &self,
        role_id: &str,
        secret_id: Option<&str>,
    ) -> Result<Response, SdkError> {
        self.login_from(role_id, secret_id, Some("127.0.0.1")).await
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

    /// Storage keys under `prefix`.
    pub fn keys_under(&self, prefix: &str) -> Vec<String> {
        self.storage
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect()
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

/// Vault's answer to a bad role id or secret id.
pub(crate) fn invalid() -> SdkError {
    SdkError::bad("invalid role or secret ID")
}

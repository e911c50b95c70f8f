//! Unit tests of the engine through `Backend::handle_request`, on the sdk's in-memory
//! storage: one module per endpoint group, plus Vault known-answer tests, cache
//! behaviour, and robustness against arbitrary input.

mod cache;
mod compat;
mod crypt;
mod keys;
mod robustness;
mod sign;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use coffer_sdk::testing::{request, MemStorage};
use coffer_sdk::{Backend, Operation, Response, SdkError, Storage, StorageOp};
use serde_json::{Map, Value};

use crate::TransitBackend;

/// Storage that counts reads on top of `MemStorage`.
#[derive(Default)]
pub struct CountingStorage {
    pub inner: MemStorage,
    pub gets: AtomicUsize,
    pub lists: AtomicUsize,
}

impl CountingStorage {
    pub fn reads(&self) -> usize {
        self.gets.load(Ordering::SeqCst) + self.lists.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Storage for CountingStorage {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, SdkError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, SdkError> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(prefix).await
    }
    async fn commit(&self, ops: Vec<StorageOp>) -> Result<(), SdkError> {
        self.inner.commit(ops).await
    }
}

/// A backend on counting in-memory storage.
pub struct Harness {
    pub backend: Arc<TransitBackend>,
    pub storage: Arc<CountingStorage>,
}

impl Harness {
    pub fn new() -> Harness {
        let storage = Arc::new(CountingStorage::default());
        Harness {
            backend: Arc::new(TransitBackend::new(storage.clone())),
            storage,
        }
    }

    /// A second backend over the same storage (another node, or a fresh process).
    pub fn sibling(&self) -> Harness {
        Harness {
            backend: Arc::new(TransitBackend::new(self.storage.clone())),
            storage: self.storage.clone(),
        }
    }

    pub async fn call(&self, op: Operation, path: &str, body: Value) -> Result<Response, SdkError> {
        let mut req = request(self.storage.clone(), op, path, body);
        self.backend.handle_request(&mut req).await
    }

    /// An update that must succeed; its `data`.
    pub async fn write(&self, path: &str, body: Value) -> Map<String, Value> {
        data(self.call(Operation::Update, path, body).await, path)
    }

    /// A create (existence check said "absent") that must succeed.
    pub async fn create(&self, path: &str, body: Value) -> Map<String, Value> {
        data(self.call(Operation::Create, path, body).await, path)
    }

    /// A read that must succeed.
    pub async fn read(&self, path: &str) -> Map<String, Value> {
        data(self.call(Operation::Read, path, Value::Null).await, path)
    }

    /// A read with query-like parameters.
    pub async fn read_with(&self, path: &str, body: Value) -> Map<String, Value> {
        data(self.call(Operation::Read, path, body).await, path)
    }

    /// An update that must fail; `(status, message)`.
    pub async fn write_err(&self, path: &str, body: Value) -> (u16, String) {
        failure(self.call(Operation::Update, path, body).await, path)
    }

    /// Any operation that must fail; `(status, message)`.
    pub async fn fail(&self, op: Operation, path: &str, body: Value) -> (u16, String) {
        failure(self.call(op, path, body).await, path)
    }

    /// Create a key with options.
    pub async fn key(&self, name: &str, body: Value) -> Map<String, Value> {
        self.write(&format!("keys/{name}"), body).await
    }

    /// Encrypt `plaintext` with key `name`; the ciphertext.
    pub async fn encrypt(&self, name: &str, plaintext: &[u8], extra: Value) -> String {
        let mut body = obj(extra);
        body.insert("plaintext".into(), Value::String(b64(plaintext)));
        let out = self
            .write(&format!("encrypt/{name}"), Value::Object(body))
            .await;
        str_of(&out, "ciphertext").to_string()
    }

    /// Decrypt with key `name`; the plaintext bytes.
    pub async fn decrypt(&self, name: &str, ciphertext: &str, extra: Value) -> Vec<u8> {
        let mut body = obj(extra);
        body.insert("ciphertext".into(), Value::String(ciphertext.into()));
        let out = self
            .write(&format!("decrypt/{name}"), Value::Object(body))
            .await;
        unb64(str_of(&out, "plaintext"))
    }
}

fn data(result: Result<Response, SdkError>, path: &str) -> Map<String, Value> {
    match result {
        Ok(resp) => {
            assert!(
                resp.status.is_none(),
                "{path}: unexpected status {:?}",
                resp.status
            );
            resp.data.unwrap_or_default()
        }
        Err(e) => panic!("{path}: unexpected error {} {e}", e.status()),
    }
}

fn failure(result: Result<Response, SdkError>, path: &str) -> (u16, String) {
    match result {
        Ok(resp) => panic!("{path}: expected an error, got {:?}", resp.data),
        Err(e) => (e.status(), e.to_string()),
    }
}

pub fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("not base64 {text:?}: {e}"))
}

pub fn str_of<'a>(data: &'a Map<String, Value>, key: &str) -> &'a str {
    data.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string {key} in {data:?}"))
}

/// The base64 body of a `vault:vN:` value.
pub fn body_of(value: &str) -> Vec<u8> {
    let rest = value.strip_prefix("vault:v").expect("prefix");
    let (_, body) = rest.split_once(':').expect("version");
    unb64(body)
}

//! `kv-echo`: an example external secret engine for Coffer. It is an ordinary sdk
//! `Backend`, run as its own process with `coffer_plugin_host::serve_factory`; its
//! storage is Coffer's (proxied over the plugin protocol), so the data survives the
//! plugin being killed and is encrypted by the barrier like any other mount's.
//!
//! Register and mount it (the SHA-256 is of this binary):
//!
//! ```text
//! vault write sys/plugins/catalog/secret/kv-echo sha256=<hex> command=coffer-plugin-kv-echo
//! vault secrets enable -path=echo kv-echo
//! ```
//!
//! Paths, relative to the mount:
//! - `kv/<path>`: write a JSON object (stored as given), read it back with one computed
//!   field, `_size` (the bytes stored), delete it, LIST `kv/` and its folders.
//! - `pid` (read): this process's id, so tests can kill it.
//! - `info` (read): the mount point and options the plugin was started with, and the
//!   names of its environment variables (the catalog's `env`, nothing inherited).
//! - `sleep` (write `{"ms": n, "marker": "name"}`): stores `{"pid": ...}` at
//!   `kv/<marker>` first, then answers after `n` milliseconds (at most 30 000): a request
//!   that is reliably in flight.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coffer_sdk::{Backend, BackendConfig, Operation, Request, Response, SdkError, StorageExt};
use serde_json::{json, Map, Value};

/// The backend of one mount.
struct KvEcho {
    mount_point: String,
    options: BTreeMap<String, String>,
}

fn factory(config: BackendConfig) -> Result<Arc<dyn Backend>, SdkError> {
    eprintln!("kv-echo: serving mount {}", config.mount_point);
    Ok(Arc::new(KvEcho {
        mount_point: config.mount_point,
        options: config.options,
    }))
}

/// The storage key of a `kv/...` path (`kv` itself is the folder `kv/`).
fn kv_key(path: &str) -> Option<String> {
    match path {
        "kv" | "kv/" => Some("kv/".into()),
        p if p.starts_with("kv/") => Some(p.to_string()),
        _ => None,
    }
}

impl KvEcho {
    async fn kv(&self, req: &Request, key: String) -> Result<Response, SdkError> {
        match req.operation {
            Operation::Read => {
                let bytes = req.storage.get(&key).await?.ok_or(SdkError::NotFound)?;
                let mut data: Map<String, Value> = serde_json::from_slice(&bytes)?;
                data.insert("_size".into(), json!(bytes.len()));
                Ok(Response::data(data))
            }
            Operation::Create | Operation::Update => {
                if key.ends_with('/') {
                    return Err(SdkError::bad("missing path"));
                }
                if req.data.is_empty() {
                    return Err(SdkError::bad("no data provided"));
                }
                req.storage.put_json(&key, &req.data).await?;
                Ok(Response::empty())
            }
            Operation::Delete => {
                req.storage.delete(&key).await?;
                Ok(Response::empty())
            }
            Operation::List => {
                let prefix = if key.ends_with('/') {
                    key
                } else {
                    format!("{key}/")
                };
                Response::list(req.storage.list(&prefix).await?)
            }
            Operation::Patch => Err(SdkError::UnsupportedOperation),
        }
    }
}

#[async_trait]
impl Backend for KvEcho {
    async fn handle_request(&self, req: &mut Request) -> Result<Response, SdkError> {
        match (req.path.as_str(), req.operation) {
            ("pid", Operation::Read) => Ok(Response::json(json!({ "pid": std::process::id() }))),
            ("info", Operation::Read) => {
                // Names only: the values may be credentials.
                let mut env_keys: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                env_keys.sort();
                Ok(Response::json(json!({
                    "mount_point": self.mount_point,
                    "options": self.options,
                    "env_keys": env_keys,
                })))
            }
            ("sleep", Operation::Create | Operation::Update) => {
                let ms = req.get_i64("ms")?.unwrap_or(1000).clamp(0, 30_000) as u64;
                if let Some(marker) = req.get_str("marker") {
                    req.storage
                        .put_json(
                            &format!("kv/{marker}"),
                            &json!({ "pid": std::process::id() }),
                        )
                        .await?;
                }
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Response::json(json!({ "slept_ms": ms })))
            }
            (path, _) => match kv_key(path) {
                Some(key) => self.kv(req, key).await,
                None => Err(SdkError::UnsupportedPath),
            },
        }
    }

    async fn existence_check(&self, req: &Request) -> Result<Option<bool>, SdkError> {
        match kv_key(&req.path) {
            Some(key) if !key.ends_with('/') => Ok(Some(req.storage.get(&key).await?.is_some())),
            _ => Ok(None),
        }
    }
}

fn main() -> ExitCode {
    match coffer_plugin_host::serve_factory(factory) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv-echo: {e}");
            ExitCode::FAILURE
        }
    }
}

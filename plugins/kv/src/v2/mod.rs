//! KV version 2: versioned secrets with metadata, check-and-set, soft delete, undelete,
//! destroy and per-secret settings, over the layout described in [`crate::layout`].
//!
//! Routes (relative to the mount):
//!
//! | path                | operations                               |
//! |---------------------|------------------------------------------|
//! | `config`            | read, write                              |
//! | `data/<path>`       | read (`?version=`), write, patch, delete |
//! | `metadata/<path>`   | read, write, patch, delete               |
//! | `metadata/[folder/]`| list                                     |
//! | `delete/<path>`     | write `{versions}` (soft delete)         |
//! | `undelete/<path>`   | write `{versions}`                       |
//! | `destroy/<path>`    | write `{versions}` (permanent)           |
//! | `subkeys/<path>`    | read (`?version=`, `?depth=`)            |
//!
//! Anything else (a v1-style path on a v2 mount) answers like Vault: status 404, no
//! data, and the warning "Invalid path for a versioned K/V secrets engine. …" naming the
//! `vault kv` sub-command to use.
//!
//! Every mutation of one secret runs under a per-path lock (striped) and lands in storage
//! as one `commit`, so a write (new version + metadata + pruned versions) is one Raft
//! entry and is never half-applied. Reads take the same lock shared, so they never see
//! metadata pointing at a version another request is pruning.

mod data;
mod metadata;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use coffer_sdk::storage::json_op;
use coffer_sdk::{Backend, Operation, Request, Response, SdkError, Storage, StorageExt, StorageOp};
use tokio::sync::{Mutex, RwLock};

use crate::layout::{meta_key, version_key, KeyMetadata, MountConfig, VersionRecord, CONFIG_KEY};
use crate::upgrade;

/// Number of lock stripes per mount (paths hash onto them).
const LOCK_STRIPES: usize = 64;

/// Which endpoint a request path addresses; the payload is the secret path after the
/// endpoint prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route<'a> {
    Config,
    Data(&'a str),
    Metadata(&'a str),
    Delete(&'a str),
    Undelete(&'a str),
    Destroy(&'a str),
    Subkeys(&'a str),
    Invalid,
}

fn route(path: &str) -> Route<'_> {
    if path == "config" {
        return Route::Config;
    }
    let Some((head, rest)) = path.split_once('/') else {
        return if path == "metadata" {
            Route::Metadata("")
        } else {
            Route::Invalid
        };
    };
    match head {
        "data" => Route::Data(rest),
        "metadata" => Route::Metadata(rest),
        "delete" => Route::Delete(rest),
        "undelete" => Route::Undelete(rest),
        "destroy" => Route::Destroy(rest),
        "subkeys" => Route::Subkeys(rest),
        _ => Route::Invalid,
    }
}

/// Vault's answer to a path that is not a v2 endpoint: 404 with a warning, no error.
fn invalid_path(operation: Operation) -> Response {
    let verb = match operation {
        Operation::Read => "get",
        Operation::Create | Operation::Update => "put",
        Operation::Patch => "patch",
        Operation::Delete => "delete",
        Operation::List => "list",
    };
    Response {
        status: Some(404),
        warnings: vec![format!(
            "Invalid path for a versioned K/V secrets engine. See the API docs for the \
             appropriate API endpoints to use. If using the Vault CLI, use 'vault kv {verb}' \
             for this operation."
        )],
        ..Default::default()
    }
}

/// The KV v2 backend of one mount.
pub struct KvV2 {
    /// Set once the mount's storage is known to be in v2 layout.
    upgraded: AtomicBool,
    /// Serialises the upgrade check on first use.
    upgrade_lock: Mutex<()>,
    /// Per-path locks, striped.
    locks: [RwLock<()>; LOCK_STRIPES],
}

impl Default for KvV2 {
    fn default() -> Self {
        KvV2 {
            upgraded: AtomicBool::new(false),
            upgrade_lock: Mutex::new(()),
            locks: std::array::from_fn(|_| RwLock::new(())),
        }
    }
}

impl KvV2 {
    /// A backend for a mount whose storage may still hold v1 data.
    pub fn new() -> Self {
        KvV2::default()
    }

    /// The lock guarding one secret path.
    fn lock(&self, path: &str) -> &RwLock<()> {
        let mut hasher = DefaultHasher::new();
        path.hash(&mut hasher);
        &self.locks[(hasher.finish() % LOCK_STRIPES as u64) as usize]
    }

    /// Move v1 data into the v2 layout before serving the first request (idempotent; the
    /// marker in storage makes later checks cheap, the flag makes them free).
    async fn ensure_upgraded(&self, storage: &dyn Storage) -> Result<(), SdkError> {
        if self.upgraded.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.upgrade_lock.lock().await;
        if self.upgraded.load(Ordering::Acquire) {
            return Ok(());
        }
        upgrade::run(storage).await?;
        self.upgraded.store(true, Ordering::Release);
        Ok(())
    }
}

/// The mount configuration (defaults when never written).
async fn load_config(storage: &dyn Storage) -> Result<MountConfig, SdkError> {
    Ok(storage.get_json(CONFIG_KEY).await?.unwrap_or_default())
}

/// A secret's metadata, if the secret exists.
async fn load_meta(storage: &dyn Storage, path: &str) -> Result<Option<KeyMetadata>, SdkError> {
    storage.get_json(&meta_key(path)).await
}

/// The data of a version the metadata says is live.
async fn load_version(
    storage: &dyn Storage,
    path: &str,
    version: u64,
) -> Result<VersionRecord, SdkError> {
    storage
        .get_json(&version_key(path, version))
        .await?
        .ok_or_else(|| SdkError::Internal(format!("could not find data of version {version}")))
}

/// The op that stores a secret's metadata.
fn put_meta(path: &str, meta: &KeyMetadata) -> Result<StorageOp, SdkError> {
    json_op(&meta_key(path), meta)
}

#[async_trait]
impl Backend for KvV2 {
    async fn handle_request(&self, req: &mut Request) -> Result<Response, SdkError> {
        let req: &Request = req;
        let storage = req.storage.as_ref();
        self.ensure_upgraded(storage).await?;
        let op = req.operation;
        let write = matches!(op, Operation::Create | Operation::Update);
        match route(&req.path) {
            Route::Config => match op {
                Operation::Read => metadata::read_config(storage).await,
                _ if write => metadata::write_config(storage, req).await,
                _ => Err(SdkError::UnsupportedOperation),
            },
            Route::Data(path) => match op {
                Operation::Read => self.read_data(storage, req, path).await,
                _ if write => self.write_data(storage, req, path).await,
                Operation::Patch => self.patch_data(storage, req, path).await,
                Operation::Delete => self.delete_latest(storage, path).await,
                _ => Err(SdkError::UnsupportedOperation),
            },
            Route::Metadata(path) => match op {
                Operation::List => metadata::list(storage, path).await,
                Operation::Read => metadata::read(storage, path).await,
                _ if write => self.write_metadata(storage, req, path).await,
                Operation::Patch => self.patch_metadata(storage, req, path).await,
                Operation::Delete => self.delete_metadata(storage, path).await,
                _ => Err(SdkError::UnsupportedOperation),
            },
            Route::Delete(path) if write => self.delete_versions(storage, req, path).await,
            Route::Undelete(path) if write => self.undelete_versions(storage, req, path).await,
            Route::Destroy(path) if write => self.destroy_versions(storage, req, path).await,
            Route::Subkeys(path) if op == Operation::Read => {
                self.read_subkeys(storage, req, path).await
            }
            Route::Delete(_) | Route::Undelete(_) | Route::Destroy(_) | Route::Subkeys(_) => {
                Err(SdkError::UnsupportedOperation)
            }
            Route::Invalid => Ok(invalid_path(op)),
        }
    }

    async fn existence_check(&self, req: &Request) -> Result<Option<bool>, SdkError> {
        let storage = req.storage.as_ref();
        let path = match route(&req.path) {
            Route::Data(path) | Route::Metadata(path) => path,
            _ => return Ok(None),
        };
        self.ensure_upgraded(storage).await?;
        if crate::params::secret_path(path).is_err() {
            return Ok(Some(false));
        }
        Ok(Some(load_meta(storage, path).await?.is_some()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let cases = [
            ("config", Route::Config),
            ("data/a/b", Route::Data("a/b")),
            ("data/", Route::Data("")),
            ("data", Route::Invalid),
            ("metadata", Route::Metadata("")),
            ("metadata/", Route::Metadata("")),
            ("metadata/app/", Route::Metadata("app/")),
            ("delete/x", Route::Delete("x")),
            ("undelete/x", Route::Undelete("x")),
            ("destroy/x", Route::Destroy("x")),
            ("subkeys/x", Route::Subkeys("x")),
            ("foo", Route::Invalid),
            ("foo/bar", Route::Invalid),
            ("configx", Route::Invalid),
            ("", Route::Invalid),
        ];
        for (path, want) in cases {
            assert_eq!(route(path), want, "{path}");
        }
    }
}

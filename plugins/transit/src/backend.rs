//! `TransitBackend`: request routing, the in-memory key-ring cache, serialised writes,
//! replication invalidation and automatic rotation.
//!
//! Reads of a key ring go to the cache first and to storage only on a miss; a miss
//! fills the cache unless a write or an invalidation happened meanwhile (a generation
//! counter guards against caching a stale record). Writers hold one async mutex per
//! mount, build a new `KeyPolicy` from the current one, commit it, then swap it into
//! the cache; a failed commit drops the cached entry so the next read goes to storage.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use chrono::Utc;
use coffer_sdk::{Backend, Operation, Request, Response, SdkError, Storage};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::paths;
use crate::policy::{KeyPolicy, POLICY_PREFIX};

/// Storage key of the mount-wide key settings (`disable_upsert`).
pub const CONFIG_KEYS: &str = "config/keys";

/// Mount-wide settings at `config/keys`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysConfig {
    /// Refuse to create keys implicitly on `encrypt`.
    #[serde(default)]
    pub disable_upsert: bool,
}

#[derive(Default)]
struct Cache {
    policies: HashMap<String, Arc<KeyPolicy>>,
    keys_config: Option<KeysConfig>,
    /// Bumped by every write and invalidation.
    generation: u64,
}

/// The transit engine of one mount.
pub struct TransitBackend {
    storage: Arc<dyn Storage>,
    cache: RwLock<Cache>,
    writes: tokio::sync::Mutex<()>,
}

/// The storage key of key ring `name`.
pub fn policy_key(name: &str) -> String {
    format!("{POLICY_PREFIX}{name}")
}

/// Vault's `framework.GenericNameRegex`: `\w(([\w-.@]+)?\w)?` with ASCII `\w`.
pub fn valid_name(name: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            word(*first)
                && word(*last)
                && bytes
                    .iter()
                    .all(|c| word(*c) || matches!(c, b'-' | b'.' | b'@'))
        }
        _ => false,
    }
}

impl TransitBackend {
    /// A backend over the mount's storage view (used by `periodic`; requests bring
    /// their own view of the same storage).
    pub fn new(storage: Arc<dyn Storage>) -> TransitBackend {
        TransitBackend {
            storage,
            cache: RwLock::new(Cache::default()),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    fn read_cache(&self) -> RwLockReadGuard<'_, Cache> {
        self.cache
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_cache(&self) -> RwLockWriteGuard<'_, Cache> {
        self.cache
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of key rings in the cache (tests and diagnostics).
    pub fn cached_policies(&self) -> usize {
        self.read_cache().policies.len()
    }

    /// The key ring `name`: from the cache, else from storage (then cached).
    pub async fn policy(
        &self,
        storage: &dyn Storage,
        name: &str,
    ) -> Result<Option<Arc<KeyPolicy>>, SdkError> {
        let generation = {
            let cache = self.read_cache();
            if let Some(policy) = cache.policies.get(name) {
                return Ok(Some(policy.clone()));
            }
            cache.generation
        };
        let Some(bytes) = storage.get(&policy_key(name)).await? else {
            return Ok(None);
        };
        let bytes = Zeroizing::new(bytes);
        let mut policy = KeyPolicy::from_storage(&bytes)?;
        policy.name = name.to_string();
        let policy = Arc::new(policy);
        let mut cache = self.write_cache();
        if cache.generation == generation {
            cache.policies.insert(name.to_string(), policy.clone());
        }
        Ok(Some(policy))
    }

    /// Serialise writers (key creation, rotation, configuration, restore, deletion).
    pub async fn lock_writes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Commit `policy` and make it the cached version. Call with the write lock held.
    pub async fn store(
        &self,
        storage: &dyn Storage,
        policy: KeyPolicy,
    ) -> Result<Arc<KeyPolicy>, SdkError> {
        let key = policy_key(&policy.name);
        let bytes = policy.to_storage()?;
        let result = storage.put(&key, bytes).await;
        let mut cache = self.write_cache();
        cache.generation += 1;
        match result {
            Ok(()) => {
                let policy = Arc::new(policy);
                cache.policies.insert(policy.name.clone(), policy.clone());
                Ok(policy)
            }
            Err(err) => {
                cache.policies.remove(&policy.name);
                Err(err)
            }
        }
    }

    /// Delete key ring `name`. Call with the write lock held.
    pub async fn remove(&self, storage: &dyn Storage, name: &str) -> Result<(), SdkError> {
        let result = storage.delete(&policy_key(name)).await;
        let mut cache = self.write_cache();
        cache.generation += 1;
        cache.policies.remove(name);
        result
    }

    /// The mount's `config/keys`.
    pub async fn keys_config(&self, storage: &dyn Storage) -> Result<KeysConfig, SdkError> {
        let generation = {
            let cache = self.read_cache();
            if let Some(config) = cache.keys_config {
                return Ok(config);
            }
            cache.generation
        };
        let config = match storage.get(CONFIG_KEYS).await? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                SdkError::Internal(format!("stored keys config does not decode: {e}"))
            })?,
            None => KeysConfig::default(),
        };
        let mut cache = self.write_cache();
        if cache.generation == generation {
            cache.keys_config = Some(config);
        }
        Ok(config)
    }

    /// Store `config/keys`. Call with the write lock held.
    pub async fn store_keys_config(
        &self,
        storage: &dyn Storage,
        config: KeysConfig,
    ) -> Result<(), SdkError> {
        let result = storage.put(CONFIG_KEYS, serde_json::to_vec(&config)?).await;
        let mut cache = self.write_cache();
        cache.generation += 1;
        cache.keys_config = result.is_ok().then_some(config);
        result
    }

    /// Rotate every key whose `auto_rotate_period` has passed since its latest version.
    pub async fn rotate_due_keys(&self, storage: &dyn Storage) -> Result<usize, SdkError> {
        let mut rotated = 0;
        for name in storage.list(POLICY_PREFIX).await? {
            if name.ends_with('/') {
                continue;
            }
            let Some(policy) = self.policy(storage, &name).await? else {
                continue;
            };
            if !rotation_due(&policy) {
                continue;
            }
            let _guard = self.lock_writes().await;
            let Some(current) = self.policy(storage, &name).await? else {
                continue;
            };
            if !rotation_due(&current) {
                continue;
            }
            let mut next = (*current).clone();
            next.rotate()?;
            self.store(storage, next).await?;
            rotated += 1;
        }
        Ok(rotated)
    }
}

fn rotation_due(policy: &KeyPolicy) -> bool {
    if policy.auto_rotate_period == 0 {
        return false;
    }
    let Ok(latest) = policy.latest() else {
        return false;
    };
    let age = Utc::now().signed_duration_since(latest.creation_time);
    age.num_seconds() >= i64::try_from(policy.auto_rotate_period).unwrap_or(i64::MAX)
}

/// The endpoints, by path shape.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    ListKeys,
    Key(&'a str),
    KeyConfig(&'a str),
    Rotate(&'a str),
    Trim(&'a str),
    ConfigKeys,
    Encrypt(&'a str),
    Decrypt(&'a str),
    Rewrap(&'a str),
    Datakey(&'a str, &'a str),
    Hmac(&'a str, Option<&'a str>),
    Sign(&'a str, Option<&'a str>),
    Verify(&'a str, Option<&'a str>),
    Hash(Option<&'a str>),
    Random(Option<&'a str>, Option<&'a str>),
    Export(&'a str, &'a str, Option<&'a str>),
    Backup(&'a str),
    Restore(Option<&'a str>),
}

fn route(path: &str) -> Option<Route<'_>> {
    let segments: Vec<&str> = path.split('/').collect();
    let name = |s: &str| valid_name(s);
    let route = match segments.as_slice() {
        ["keys"] | ["keys", ""] => Route::ListKeys,
        ["keys", n] => Route::Key(n),
        ["keys", n, "config"] => Route::KeyConfig(n),
        ["keys", n, "rotate"] => Route::Rotate(n),
        ["keys", n, "trim"] => Route::Trim(n),
        ["config", "keys"] => Route::ConfigKeys,
        ["encrypt", n] => Route::Encrypt(n),
        ["decrypt", n] => Route::Decrypt(n),
        ["rewrap", n] => Route::Rewrap(n),
        ["datakey", kind, n] if name(kind) => Route::Datakey(kind, n),
        ["hmac", n] => Route::Hmac(n, None),
        ["hmac", n, alg] if name(alg) => Route::Hmac(n, Some(alg)),
        ["sign", n] => Route::Sign(n, None),
        ["sign", n, alg] if name(alg) => Route::Sign(n, Some(alg)),
        ["verify", n] => Route::Verify(n, None),
        ["verify", n, alg] if name(alg) => Route::Verify(n, Some(alg)),
        ["hash"] => Route::Hash(None),
        ["hash", alg] if name(alg) => Route::Hash(Some(alg)),
        ["random"] => Route::Random(None, None),
        ["random", a] if name(a) => Route::Random(Some(a), None),
        ["random", a, b] if name(a) && name(b) => Route::Random(Some(a), Some(b)),
        ["export", kind, n] if name(kind) => Route::Export(kind, n, None),
        ["export", kind, n, v] if name(kind) && name(v) => Route::Export(kind, n, Some(v)),
        ["backup", n] => Route::Backup(n),
        ["restore"] => Route::Restore(None),
        ["restore", n] => Route::Restore(Some(n)),
        _ => return None,
    };
    let key_name = match &route {
        Route::Key(n)
        | Route::KeyConfig(n)
        | Route::Rotate(n)
        | Route::Trim(n)
        | Route::Encrypt(n)
        | Route::Decrypt(n)
        | Route::Rewrap(n)
        | Route::Datakey(_, n)
        | Route::Hmac(n, _)
        | Route::Sign(n, _)
        | Route::Verify(n, _)
        | Route::Export(_, n, _)
        | Route::Backup(n)
        | Route::Restore(Some(n)) => Some(*n),
        _ => None,
    };
    match key_name {
        Some(n) if !valid_name(n) => None,
        _ => Some(route),
    }
}

#[async_trait]
impl Backend for TransitBackend {
    async fn handle_request(&self, req: &mut Request) -> Result<Response, SdkError> {
        let req: &Request = req;
        let route = route(&req.path).ok_or(SdkError::UnsupportedPath)?;
        let write = matches!(req.operation, Operation::Create | Operation::Update);
        let read = req.operation == Operation::Read;
        match route {
            Route::ListKeys if req.operation == Operation::List => paths::keys::list(req).await,
            Route::Key(name) => match req.operation {
                Operation::Read => paths::keys::read(self, req, name).await,
                Operation::Create | Operation::Update => paths::keys::create(self, req, name).await,
                Operation::Delete => paths::keys::delete(self, req, name).await,
                _ => Err(SdkError::UnsupportedOperation),
            },
            Route::KeyConfig(name) if write => paths::keys::configure(self, req, name).await,
            Route::Rotate(name) if write => paths::keys::rotate(self, req, name).await,
            Route::Trim(name) if write => paths::keys::trim(self, req, name).await,
            Route::ConfigKeys if read => paths::keys::read_keys_config(self, req).await,
            Route::ConfigKeys if write => paths::keys::write_keys_config(self, req).await,
            Route::Encrypt(name) if write => paths::crypt::encrypt(self, req, name).await,
            Route::Decrypt(name) if write => paths::crypt::decrypt(self, req, name).await,
            Route::Rewrap(name) if write => paths::crypt::rewrap(self, req, name).await,
            Route::Datakey(kind, name) if write => {
                paths::crypt::datakey(self, req, kind, name).await
            }
            Route::Hmac(name, alg) if write => paths::sign::hmac(self, req, name, alg).await,
            Route::Sign(name, alg) if write => paths::sign::sign(self, req, name, alg).await,
            Route::Verify(name, alg) if write => paths::sign::verify(self, req, name, alg).await,
            Route::Hash(alg) if write => paths::tools::hash(req, alg),
            Route::Random(a, b) if write => paths::tools::random(req, a, b),
            Route::Export(kind, name, version) if read => {
                paths::export::export(self, req, kind, name, version).await
            }
            Route::Backup(name) if read => paths::export::backup(self, req, name).await,
            Route::Restore(name) if write => paths::export::restore(self, req, name).await,
            _ => Err(SdkError::UnsupportedOperation),
        }
    }

    async fn existence_check(&self, req: &Request) -> Result<Option<bool>, SdkError> {
        match route(&req.path) {
            Some(Route::Encrypt(name)) => Ok(Some(
                self.policy(req.storage.as_ref(), name).await?.is_some(),
            )),
            _ => Ok(None),
        }
    }

    async fn periodic(&self) -> Result<(), SdkError> {
        let storage = self.storage.clone();
        self.rotate_due_keys(storage.as_ref()).await.map(|_| ())
    }

    fn invalidate(&self, key: &str) {
        let mut cache = self.write_cache();
        cache.generation += 1;
        if key == CONFIG_KEYS || key.ends_with(&format!("/{CONFIG_KEYS}")) {
            cache.keys_config = None;
            return;
        }
        if let Some((before, name)) = key.rsplit_once(POLICY_PREFIX) {
            if (before.is_empty() || before.ends_with('/')) && !name.contains('/') {
                cache.policies.remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_vaults_regex() {
        for good in ["a", "key", "my-key.v2@x", "_x_", "A9"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a/b", "a b", "ké", ".a", "a@"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn routes() {
        assert_eq!(route("keys/"), Some(Route::ListKeys));
        assert_eq!(route("keys/k1"), Some(Route::Key("k1")));
        assert_eq!(route("keys/k1/rotate"), Some(Route::Rotate("k1")));
        assert_eq!(route("keys/-bad"), None);
        assert_eq!(
            route("hmac/k/sha2-512"),
            Some(Route::Hmac("k", Some("sha2-512")))
        );
        assert_eq!(
            route("random/platform/16"),
            Some(Route::Random(Some("platform"), Some("16")))
        );
        assert_eq!(
            route("export/encryption-key/k/latest"),
            Some(Route::Export("encryption-key", "k", Some("latest")))
        );
        assert_eq!(route("restore"), Some(Route::Restore(None)));
        assert_eq!(route("nope/x"), None);
        assert_eq!(route("encrypt/k/extra"), None);
    }
}

//! The token store: service tokens stored by a salted hash, never in the clear.
//!
//! Layout (all through the barrier, so encrypted at rest):
//! - `sys/token/salt`                     the per-cluster HMAC salt
//! - `sys/token/id/<hmac(token)>`         the [`TokenEntry`]
//! - `sys/token/accessor/<hmac(accessor)>`  the token's hash (for `*-accessor` calls)
//! - `sys/token/parent/<parent hash>/<child hash>`  the parent/child tree
//!
//! Removing a token hands the secret leases it created (indexed by `leases`) to the
//! expiry timer, which revokes them through their backends.
//!
//! Lookups go through an in-memory cache keyed by the salted hash, so a token seen
//! before is checked without a storage read or a decrypt; the cache is invalidated by
//! the apply listener when the entry changes on any node.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::store::LogicalStore;
use crate::CoreError;

/// Storage prefix of token entries.
pub const TOKEN_ID_PREFIX: &str = "sys/token/id/";
/// Storage prefix of the accessor index.
pub const ACCESSOR_PREFIX: &str = "sys/token/accessor/";
/// Storage prefix of the parent/child index.
pub const PARENT_PREFIX: &str = "sys/token/parent/";
/// Storage key of the salt.
pub const SALT_PATH: &str = "sys/token/salt";

/// Batch tokens start with this (Vault's `hvb.`).
pub const BATCH_PREFIX: &str = "hvb.";
/// The AAD batch tokens are sealed with.
const BATCH_AAD: &str = "sys/token/batch";

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` random base62 characters (rejection sampling, no modulo bias).
pub fn random_base62(n: usize) -> String {
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut buf = [0u8; 64];
        if ring::rand::SecureRandom::fill(&rng, &mut buf).is_err() {
            continue;
        }
        for b in buf {
            if b < 248 && out.len() < n {
                out.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// A new service token: `hvs.` + 24 base62 characters.
pub fn new_service_token() -> String {
    format!("hvs.{}", random_base62(24))
}

/// A stored token (the token itself is not stored, only its salted hash as the key).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TokenEntry {
    /// Salted hash of the token (the storage key).
    pub id_hash: String,
    /// The accessor (not secret: it can look up and revoke, not use, the token).
    pub accessor: String,
    /// Attached policies (sorted, deduplicated).
    pub policies: Vec<String>,
    /// Salted hash of the parent token; empty for an orphan.
    pub parent: String,
    /// Creation path (`auth/token/create`, `auth/userpass/login/bob`, ...).
    pub path: String,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// Display name.
    pub display_name: String,
    /// Remaining uses (0 = unlimited).
    pub num_uses: i64,
    /// Unix seconds of creation.
    pub creation_time: i64,
    /// TTL in seconds at creation/last renewal (0 = never expires, root tokens).
    pub ttl: i64,
    /// Unix seconds of expiry (0 = never).
    pub expire_time: i64,
    /// Explicit max TTL in seconds (0 = none).
    pub explicit_max_ttl: i64,
    /// Period in seconds (0 = not periodic).
    pub period: i64,
    /// Whether it can be renewed.
    pub renewable: bool,
    /// `service` or `batch`.
    pub token_type: String,
    /// Entity id (empty: none).
    pub entity_id: String,
    /// Whether it has no parent.
    pub orphan: bool,
    /// Role it was created against, if any.
    pub role: String,
    /// CIDRs the token may be used from (empty = anywhere).
    #[serde(default)]
    pub bound_cidrs: Vec<String>,
    /// UUID of the auth mount that issued it (for renewal through its backend).
    #[serde(default)]
    pub mount_uuid: String,
    /// The auth backend's private data for renewals (never shown to clients).
    #[serde(default)]
    pub internal: serde_json::Map<String, serde_json::Value>,
}

impl TokenEntry {
    /// Whether the token has the root policy.
    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }

    /// Whether `addr` may use this token (its bound CIDRs, if any).
    pub fn allowed_from(&self, addr: Option<&str>) -> bool {
        self.bound_cidrs.is_empty() || coffer_sdk::cidr::remote_allowed(addr, &self.bound_cidrs)
    }

    /// Whether it has expired at `now` (unix seconds).
    pub fn expired(&self, now: i64) -> bool {
        self.expire_time != 0 && now >= self.expire_time
    }
}

/// The token store.
pub struct TokenStore {
    store: Arc<LogicalStore>,
    salt: hmac::Key,
    cache: RwLock<HashMap<String, Arc<TokenEntry>>>,
    expiration: Arc<crate::leases::Expiration>,
}

impl TokenStore {
    /// Load (or on first unseal, create) the salt.
    pub async fn load(
        store: Arc<LogicalStore>,
        expiration: Arc<crate::leases::Expiration>,
    ) -> Result<Arc<TokenStore>, CoreError> {
        let salt = match store.get(SALT_PATH)? {
            Some(bytes) => bytes,
            None => {
                let salt = crate::random_bytes(32);
                store.put(SALT_PATH, salt.clone()).await?;
                salt
            }
        };
        Ok(Arc::new(TokenStore {
            store,
            salt: hmac::Key::new(hmac::HMAC_SHA256, &salt),
            cache: RwLock::new(HashMap::new()),
            expiration,
        }))
    }

    /// The salted hash of a token or accessor.
    pub fn hash(&self, value: &str) -> String {
        hex::encode(hmac::sign(&self.salt, value.as_bytes()).as_ref())
    }

    /// Drop the cached entry for a storage key that changed (apply listener).
    pub fn invalidate_key(&self, key: &str) {
        if let Some(hash) = key.strip_prefix(TOKEN_ID_PREFIX) {
            if let Ok(mut cache) = self.cache.write() {
                cache.remove(hash);
            }
        }
    }

    /// Look a token up by its hash (cache first).
    pub fn lookup_hash(&self, hash: &str) -> Result<Option<Arc<TokenEntry>>, CoreError> {
        if let Some(entry) = self.cache.read().ok().and_then(|c| c.get(hash).cloned()) {
            return Ok(Some(entry));
        }
        let entry: Option<TokenEntry> = self.store.get_json(&format!("{TOKEN_ID_PREFIX}{hash}"))?;
        Ok(entry.map(|e| {
            let e = Arc::new(e);
            if let Ok(mut cache) = self.cache.write() {
                cache.insert(hash.to_string(), e.clone());
            }
            e
        }))
    }

    /// Look a token up; expired tokens are not returned.
    pub fn lookup(&self, token: &str) -> Result<Option<Arc<TokenEntry>>, CoreError> {
        if token.is_empty() || token.len() > 4096 {
            return Ok(None);
        }
        if let Some(blob) = token.strip_prefix(BATCH_PREFIX) {
            return self.lookup_batch(token, blob);
        }
        let now = crate::now_unix();
        Ok(self
            .lookup_hash(&self.hash(token))?
            .filter(|e| !e.expired(now)))
    }

    fn lookup_batch(&self, token: &str, blob: &str) -> Result<Option<Arc<TokenEntry>>, CoreError> {
        use base64::Engine;
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(blob) else {
            return Ok(None);
        };
        let Some(plain) = self.store.open_value(BATCH_AAD, &bytes) else {
            return Ok(None);
        };
        let Ok(mut entry) = serde_json::from_slice::<TokenEntry>(&plain) else {
            return Ok(None);
        };
        entry.id_hash = self.hash(token);
        if entry.expired(crate::now_unix()) {
            return Ok(None);
        }
        // A batch token dies with its parent.
        if !entry.parent.is_empty() && self.lookup_hash(&entry.parent)?.is_none() {
            return Ok(None);
        }
        Ok(Some(Arc::new(entry)))
    }

    /// Mint a batch token: the entry itself, encrypted under the keyring; never stored.
    pub fn create_batch(&self, mut entry: TokenEntry) -> Result<(String, TokenEntry), CoreError> {
        use base64::Engine;
        entry.token_type = "batch".into();
        entry.accessor.clear();
        entry.renewable = false;
        entry.num_uses = 0;
        if entry.creation_time == 0 {
            entry.creation_time = crate::now_unix();
        }
        entry.policies.sort();
        entry.policies.dedup();
        let plain = serde_json::to_vec(&entry).map_err(|e| CoreError::Internal(e.to_string()))?;
        let sealed = self.store.seal_value(BATCH_AAD, &plain)?;
        let token = format!(
            "{BATCH_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)
        );
        entry.id_hash = self.hash(&token);
        Ok((token, entry))
    }

    /// Store a new token entry; returns it with its hash and accessor filled in.
    pub async fn create(
        &self,
        token: &str,
        mut entry: TokenEntry,
    ) -> Result<TokenEntry, CoreError> {
        entry.id_hash = self.hash(token);
        if entry.accessor.is_empty() {
            entry.accessor = random_base62(24);
        }
        if entry.creation_time == 0 {
            entry.creation_time = crate::now_unix();
        }
        if entry.token_type.is_empty() {
            entry.token_type = "service".into();
        }
        entry.policies.sort();
        entry.policies.dedup();
        let mut ops = vec![
            crate::store::json_put(&format!("{TOKEN_ID_PREFIX}{}", entry.id_hash), &entry)?,
            coffer_barrier::barrier::LogicalOp::Put {
                key: format!("{ACCESSOR_PREFIX}{}", self.hash(&entry.accessor)),
                value: entry.id_hash.clone().into_bytes(),
            },
        ];
        if !entry.parent.is_empty() {
            ops.push(coffer_barrier::barrier::LogicalOp::Put {
                key: format!("{PARENT_PREFIX}{}/{}", entry.parent, entry.id_hash),
                value: Vec::new(),
            });
        }
        let lease_id = crate::leases::token_lease_id(&entry.path, &entry.id_hash);
        if entry.expire_time != 0 {
            ops.push(crate::store::json_put(
                &format!("{}{lease_id}", crate::leases::LEASE_PREFIX),
                &crate::leases::LeaseIndex {
                    kind: crate::leases::KIND_TOKEN.into(),
                    token_hash: entry.id_hash.clone(),
                    ..Default::default()
                },
            )?);
        }
        self.store.commit(ops).await?;
        self.expiration.schedule(&lease_id, entry.expire_time);
        Ok(entry)
    }

    /// Remove a token entry, its indexes, its cubbyhole and any answer it wraps
    /// (children are the caller's business).
    pub async fn remove(&self, entry: &TokenEntry) -> Result<(), CoreError> {
        let mut ops = vec![
            coffer_barrier::barrier::LogicalOp::Delete {
                key: format!("{}{}", crate::wrapping::WRAP_PREFIX, entry.id_hash),
            },
            coffer_barrier::barrier::LogicalOp::Delete {
                key: format!(
                    "{}{}",
                    crate::leases::LEASE_PREFIX,
                    crate::leases::token_lease_id(&entry.path, &entry.id_hash)
                ),
            },
            coffer_barrier::barrier::LogicalOp::Delete {
                key: format!("{TOKEN_ID_PREFIX}{}", entry.id_hash),
            },
            coffer_barrier::barrier::LogicalOp::Delete {
                key: format!("{ACCESSOR_PREFIX}{}", self.hash(&entry.accessor)),
            },
        ];
        if !entry.parent.is_empty() {
            ops.push(coffer_barrier::barrier::LogicalOp::Delete {
                key: format!("{PARENT_PREFIX}{}/{}", entry.parent, entry.id_hash),
            });
        }
        for key in self
            .store
            .list_recursive(&format!("cubbyhole/{}/", entry.id_hash))?
        {
            ops.push(coffer_barrier::barrier::LogicalOp::Delete { key });
        }
        self.store.commit(ops).await?;
        if let Ok(mut cache) = self.cache.write() {
            cache.remove(&entry.id_hash);
        }
        self.expire_secret_leases(&entry.id_hash)?;
        Ok(())
    }

    /// The secret leases a removed token created are due now: the expiry timer revokes
    /// them through their backends (Vault's `RevokeByToken`). Durable without a write:
    /// after a restart the loader sees the token gone and schedules them again.
    fn expire_secret_leases(&self, token_hash: &str) -> Result<(), CoreError> {
        let prefix = format!("{}{token_hash}/", crate::leases::TOKEN_INDEX_PREFIX);
        let now = crate::now_unix();
        for key in self.store.list(&prefix)? {
            if let Some(id) = self.store.get(&format!("{prefix}{key}"))? {
                if let Ok(id) = String::from_utf8(id) {
                    self.expiration.schedule(&id, now);
                }
            }
        }
        Ok(())
    }

    /// Look a token up by accessor.
    pub fn lookup_accessor(&self, accessor: &str) -> Result<Option<Arc<TokenEntry>>, CoreError> {
        if accessor.is_empty() || accessor.len() > 512 {
            return Ok(None);
        }
        let Some(hash) = self
            .store
            .get(&format!("{ACCESSOR_PREFIX}{}", self.hash(accessor)))?
        else {
            return Ok(None);
        };
        let hash = String::from_utf8(hash)
            .map_err(|_| CoreError::Internal("accessor index is corrupt".into()))?;
        let now = crate::now_unix();
        Ok(self.lookup_hash(&hash)?.filter(|e| !e.expired(now)))
    }

    /// Revoke a token and, recursively, all its children (one batch per token).
    pub async fn revoke_tree(&self, root: &TokenEntry) -> Result<(), CoreError> {
        let mut stack = vec![root.clone()];
        let mut order = Vec::new();
        while let Some(entry) = stack.pop() {
            for child in self
                .store
                .list(&format!("{PARENT_PREFIX}{}/", entry.id_hash))?
            {
                if let Some(c) = self.lookup_hash(&child)? {
                    stack.push((*c).clone());
                }
            }
            order.push(entry);
        }
        // Children first, so a crash half-way never leaves an orphaned subtree.
        for entry in order.iter().rev() {
            self.remove(entry).await?;
        }
        Ok(())
    }

    /// Revoke only this token; its children become orphans.
    pub async fn revoke_orphan(&self, entry: &TokenEntry) -> Result<(), CoreError> {
        for child in self
            .store
            .list(&format!("{PARENT_PREFIX}{}/", entry.id_hash))?
        {
            if let Some(c) = self.lookup_hash(&child)? {
                let mut c = (*c).clone();
                c.parent.clear();
                c.orphan = true;
                self.store
                    .commit(vec![
                        crate::store::json_put(&format!("{TOKEN_ID_PREFIX}{}", c.id_hash), &c)?,
                        coffer_barrier::barrier::LogicalOp::Delete {
                            key: format!("{PARENT_PREFIX}{}/{}", entry.id_hash, c.id_hash),
                        },
                    ])
                    .await?;
                self.invalidate_key(&format!("{TOKEN_ID_PREFIX}{}", c.id_hash));
            }
        }
        self.remove(entry).await
    }

    /// Replace a stored entry (renewal, use counts).
    pub async fn update(&self, entry: &TokenEntry) -> Result<(), CoreError> {
        self.store
            .put_json(&format!("{TOKEN_ID_PREFIX}{}", entry.id_hash), entry)
            .await?;
        self.expiration.schedule(
            &crate::leases::token_lease_id(&entry.path, &entry.id_hash),
            entry.expire_time,
        );
        if let Ok(mut cache) = self.cache.write() {
            cache.insert(entry.id_hash.clone(), Arc::new(entry.clone()));
        }
        Ok(())
    }

    /// Every accessor (for `LIST auth/token/accessors`): the stored index keys are
    /// hashes, so the accessors are read from the entries.
    pub fn accessors(&self) -> Result<Vec<String>, CoreError> {
        let mut out = Vec::new();
        for hash in self.store.list(TOKEN_ID_PREFIX)? {
            if let Some(e) = self.lookup_hash(&hash)? {
                out.push(e.accessor.clone());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Create a root token (init, generate-root, dev mode with a chosen id).
    pub async fn create_root(&self, token: &str) -> Result<TokenEntry, CoreError> {
        self.create(
            token,
            TokenEntry {
                policies: vec!["root".into()],
                path: "auth/token/root".into(),
                display_name: "root".into(),
                orphan: true,
                ..Default::default()
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_format() {
        let t = new_service_token();
        assert!(t.starts_with("hvs."));
        assert_eq!(t.len(), 28);
        assert!(t[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(t, new_service_token());
    }
}

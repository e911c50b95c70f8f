//! The `Backend` trait every secret engine and auth method implements, and the
//! `Factory` the catalog uses to build one per mount.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::request::Request;
use crate::response::Response;
use crate::storage::Storage;
use crate::SdkError;

/// Whether a backend is a secret engine or an auth method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Mounted under `sys/mounts`, paths `<mount>/...`.
    Secret,
    /// Mounted under `sys/auth`, paths `auth/<mount>/...`.
    Credential,
}

/// Paths with special handling, as patterns relative to the mount (`*` suffix = prefix).
#[derive(Clone, Debug, Default)]
pub struct SpecialPaths {
    /// Reachable without a token (login paths).
    pub unauthenticated: Vec<String>,
    /// Require `sudo` (root-protected).
    pub root: Vec<String>,
}

impl SpecialPaths {
    /// Whether `path` matches one of `patterns`.
    pub fn matches(patterns: &[String], path: &str) -> bool {
        patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => p == path,
        })
    }
}

/// What a factory gets to build a backend for one mount.
#[derive(Clone)]
pub struct BackendConfig {
    /// The mount path with trailing `/`.
    pub mount_point: String,
    /// The mount's `options` map (e.g. `version` for KV).
    pub options: BTreeMap<String, String>,
    /// The mount's storage view (the same one requests carry).
    pub storage: Arc<dyn Storage>,
}

/// A secret engine or auth method.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Handle one request.
    async fn handle_request(&self, req: &mut Request) -> Result<Response, SdkError>;

    /// Whether the item at `req.path` exists, for paths where create and update differ
    /// (policy-wise). `None` means "no existence check": writes count as update.
    async fn existence_check(&self, _req: &Request) -> Result<Option<bool>, SdkError> {
        Ok(None)
    }

    /// Unauthenticated and root-protected paths.
    fn special_paths(&self) -> SpecialPaths {
        SpecialPaths::default()
    }

    /// Secret engine or auth method.
    fn kind(&self) -> BackendKind {
        BackendKind::Secret
    }

    /// Called about once a minute on the active node (tidy, rotation, expiry).
    async fn periodic(&self) -> Result<(), SdkError> {
        Ok(())
    }

    /// A key under this mount changed through replication (drop caches for it).
    fn invalidate(&self, _key: &str) {}

    /// The mount is being removed (its data is deleted by the core afterwards).
    async fn cleanup(&self) -> Result<(), SdkError> {
        Ok(())
    }

    /// Renew a lease this backend issued; the default refuses. `req.lease` describes the
    /// lease (issue time, current TTL, the increment asked for), `internal` is the data
    /// the backend attached to it. Answer with a `secret` to extend it (its `ttl` and
    /// `max_ttl` are clamped by the core as at issue), or an error to refuse.
    async fn renew(
        &self,
        _req: &mut Request,
        _internal: &serde_json::Value,
    ) -> Result<Response, SdkError> {
        Err(SdkError::bad("lease is not renewable"))
    }

    /// Revoke a lease this backend issued; the default does nothing (static secrets).
    /// An error keeps the lease: the core retries with backoff and finally marks it
    /// irrevocable (only `revoke-force` drops it then).
    async fn revoke(
        &self,
        _req: &mut Request,
        _internal: &serde_json::Value,
    ) -> Result<(), SdkError> {
        Ok(())
    }
}

/// Builds a backend for a mount.
pub type Factory = fn(BackendConfig) -> Result<Arc<dyn Backend>, SdkError>;

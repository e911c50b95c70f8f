//! KV version 1: an unversioned pass-through store. Every secret is one JSON map at its
//! plain path in the mount's storage; a write replaces it whole.
//!
//! Vault compatibility:
//! - Read answers `data` = the stored map and always a non-renewable lease whose TTL is
//!   the map's `ttl` (or legacy `lease`) field when it parses as a duration, else the
//!   mount's default lease TTL (Vault shows this as the CLI's `refresh_interval`). No
//!   lease is actually created: the core leaves `lease_id` empty for non-renewable KV
//!   secrets, exactly as Vault does; `lease_duration` is only advisory.
//! - A write with an empty body is refused (400 "missing data fields"), as Vault does.
//! - LIST answers the direct children (`{"keys": [...]}`, folders with a trailing `/`), 404
//!   when there are none.
//! - Paths below `_kv2/` are reserved for the v2 layout (see [`crate::layout`]) and
//!   refused with a 400; the root listing hides that folder.

use async_trait::async_trait;
use coffer_sdk::{duration, Backend, Operation, Request, Response, SdkError, SecretLease, Storage};
use serde_json::{Map, Value};

use crate::layout::V2_ROOT;
use crate::params;

/// The KV v1 backend.
#[derive(Debug, Default)]
pub struct KvV1;

/// Refuse paths inside the reserved v2 subtree.
fn check_not_reserved(path: &str) -> Result<(), SdkError> {
    let reserved = V2_ROOT.trim_end_matches('/');
    if path == reserved || path.starts_with(V2_ROOT) {
        return Err(SdkError::bad(format!(
            "path {path:?} is reserved by the K/V secrets engine"
        )));
    }
    Ok(())
}

/// The advisory lease TTL of a v1 secret: its `ttl` (else `lease`) field if that parses.
fn advisory_ttl(data: &Map<String, Value>) -> Option<std::time::Duration> {
    let raw = data.get("ttl").or_else(|| data.get("lease"))?;
    duration::duration_from_json(raw).ok()
}

impl KvV1 {
    async fn read(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
    ) -> Result<Response, SdkError> {
        let Some(bytes) = storage.get(path).await? else {
            return Err(SdkError::NotFound);
        };
        let data: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|e| {
            SdkError::Internal(format!("stored secret at {path:?} does not decode: {e}"))
        })?;
        let ttl = advisory_ttl(&data).unwrap_or(req.mount_ttl.default_lease_ttl);
        let mut resp = Response::data(data);
        resp.secret = Some(SecretLease {
            ttl,
            renewable: false,
            ..Default::default()
        });
        Ok(resp)
    }

    async fn write(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
    ) -> Result<Response, SdkError> {
        if req.data.is_empty() {
            return Err(SdkError::bad("missing data fields"));
        }
        storage.put(path, serde_json::to_vec(&req.data)?).await?;
        Ok(Response::empty())
    }

    async fn list(&self, storage: &dyn Storage, raw: &str) -> Result<Response, SdkError> {
        let folder = params::folder_path(raw)?;
        check_not_reserved(&folder)?;
        let mut keys = storage.list(&folder).await?;
        if folder.is_empty() {
            keys.retain(|k| k != V2_ROOT);
        }
        Response::list(keys)
    }
}

#[async_trait]
impl Backend for KvV1 {
    async fn handle_request(&self, req: &mut Request) -> Result<Response, SdkError> {
        let req: &Request = req;
        let storage = req.storage.as_ref();
        if req.operation == Operation::List {
            return self.list(storage, &req.path).await;
        }
        let path = params::secret_path(&req.path)?;
        check_not_reserved(path)?;
        match req.operation {
            Operation::Read => self.read(storage, req, path).await,
            Operation::Create | Operation::Update => self.write(storage, req, path).await,
            Operation::Delete => {
                storage.delete(path).await?;
                Ok(Response::empty())
            }
            Operation::Patch | Operation::List => Err(SdkError::UnsupportedOperation),
        }
    }

    async fn existence_check(&self, req: &Request) -> Result<Option<bool>, SdkError> {
        let Ok(path) = params::secret_path(&req.path) else {
            return Ok(Some(false));
        };
        if check_not_reserved(path).is_err() {
            return Ok(Some(false));
        }
        Ok(Some(req.storage.get(path).await?.is_some()))
    }
}

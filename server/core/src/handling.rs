//! `handle_request`: the pipeline every enveloped API call takes.
//!
//! sealed? -> 503; path sanity; token -> ACL; route to the handler; envelope fields.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coffer_sdk::{Caller, MountTtl, Operation, RawBody, SpecialPaths};
use serde_json::{Map, Value};

use crate::mounts::Mounted;
use crate::token::TokenEntry;
use crate::{Core, CoreError, Unsealed};

/// An API request after HTTP decoding.
#[derive(Clone, Debug)]
pub struct LogicalRequest {
    /// The operation (from the verb and `?list=true`).
    pub operation: Operation,
    /// The path after `/v1/`, without a leading slash.
    pub path: String,
    /// The client token, if any.
    pub token: Option<String>,
    /// JSON body (or query parameters for GET).
    pub data: Map<String, Value>,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// `X-Vault-Wrap-TTL`, if asked.
    pub wrap_ttl: Option<Duration>,
    /// Client address.
    pub remote_addr: Option<String>,
}

/// What the HTTP layer renders into Vault's envelope.
#[derive(Clone, Debug, Default)]
pub struct LogicalResponse {
    /// Request id.
    pub request_id: String,
    /// HTTP status (200, 204, or an override such as 404-with-data).
    pub status: u16,
    /// `data`.
    pub data: Option<Map<String, Value>>,
    /// `warnings`.
    pub warnings: Vec<String>,
    /// `lease_id`.
    pub lease_id: String,
    /// `renewable`.
    pub renewable: bool,
    /// `lease_duration` in seconds.
    pub lease_duration: u64,
    /// `auth` block.
    pub auth: Option<Value>,
    /// `wrap_info` block.
    pub wrap_info: Option<Value>,
    /// A raw body instead of the envelope.
    pub raw: Option<RawBody>,
    /// Copy `data`'s fields to the top level too (Vault does for some sys paths).
    pub copy_data_to_top: bool,
    /// Raft index to report in `X-Vault-Index` (0 = none).
    pub index: u64,
}

impl LogicalResponse {
    /// 200 with `data` (anything but an object becomes an empty `data` object).
    pub fn ok(data: Value) -> Self {
        LogicalResponse {
            status: 200,
            data: Some(match data {
                Value::Object(m) => m,
                _ => Map::new(),
            }),
            ..Default::default()
        }
    }

    /// 204, reporting the Raft index of the write in `X-Vault-Index` (0 = none).
    pub fn no_content(index: u64) -> Self {
        LogicalResponse {
            status: 204,
            index,
            ..Default::default()
        }
    }
}

/// Reject paths that could escape their mount or confuse routing.
pub fn sanitize_path(path: &str) -> Result<String, CoreError> {
    let trimmed = path.trim_start_matches('/');
    if trimmed.split('/').any(|seg| seg == ".." || seg == ".")
        || trimmed.contains('\0')
        || trimmed.contains("//")
    {
        return Err(CoreError::BadRequest(format!(
            "invalid request path {path:?}"
        )));
    }
    Ok(trimmed.to_string())
}

enum Target {
    Sys,
    Token,
    Mount(Arc<Mounted>, String),
}

/// `sys/` paths reachable without a token.
fn sys_unauthenticated(path: &str) -> bool {
    path == "sys/internal/ui/mounts"
        || path.starts_with("sys/internal/ui/mounts/")
        || path == "sys/wrapping/lookup"
        || path == "sys/storage/raft/bootstrap/challenge"
        || path == "sys/storage/raft/bootstrap/answer"
}

fn acl_operation(op: Operation) -> coffer_policies::Operation {
    match op {
        Operation::Read => coffer_policies::Operation::Read,
        Operation::Create => coffer_policies::Operation::Create,
        Operation::Update => coffer_policies::Operation::Update,
        Operation::Patch => coffer_policies::Operation::Patch,
        Operation::Delete => coffer_policies::Operation::Delete,
        Operation::List => coffer_policies::Operation::List,
    }
}

impl Core {
    /// Handle one enveloped API request.
    pub async fn handle_request(
        &self,
        mut req: LogicalRequest,
    ) -> Result<LogicalResponse, CoreError> {
        let request_id = crate::new_request_id();
        req.path = sanitize_path(&req.path)?;
        let state = self.unsealed()?;
        let target = if req.path == "sys" || req.path.starts_with("sys/") {
            Target::Sys
        } else if req.path == "auth/token" || req.path.starts_with("auth/token/") {
            Target::Token
        } else {
            let router = state.router()?;
            match router.route(&req.path) {
                Some((m, rest)) if m.backend.is_some() || m.entry.kind == "cubbyhole" => {
                    Target::Mount(m, rest)
                }
                _ => {
                    return Err(self.standby_miss(CoreError::NotFound(format!(
                        "no handler for route \"{}\". route entry not found.",
                        req.path
                    ))))
                }
            }
        };
        let unauthenticated = match &target {
            Target::Sys => sys_unauthenticated(&req.path),
            Target::Token => false,
            Target::Mount(m, rest) => m
                .backend
                .as_ref()
                .is_some_and(|b| SpecialPaths::matches(&b.special_paths().unauthenticated, rest)),
        };
        let token = req.token.clone().unwrap_or_default();
        let entry = match state.tokens.lookup(&token)? {
            Some(e) if !e.allowed_from(req.remote_addr.as_deref()) => {
                return Err(CoreError::PermissionDenied)
            }
            Some(e) => Some(e),
            None if unauthenticated => None,
            // A token created a moment ago on the active node may not be applied here.
            None => return Err(self.standby_miss(CoreError::PermissionDenied)),
        };
        // Create vs update, from the backend's existence check. The probe is the request
        // the backend is then handed (one copy of the body, not two).
        let mut prepared = None;
        if req.operation == Operation::Update {
            if let Target::Mount(m, rest) = &target {
                if let Some(backend) = &m.backend {
                    let mut probe = self.sdk_request(&req, m, rest, entry.as_deref(), &request_id);
                    if backend.existence_check(&probe).await? == Some(false) {
                        req.operation = Operation::Create;
                        probe.operation = Operation::Create;
                    }
                    prepared = Some(probe);
                }
            }
        }
        if !unauthenticated {
            let entry = entry.as_deref().ok_or(CoreError::PermissionDenied)?;
            let root_path = match &target {
                Target::Mount(m, rest) => m
                    .backend
                    .as_ref()
                    .is_some_and(|b| SpecialPaths::matches(&b.special_paths().root, rest)),
                _ => crate::sys::is_root_path(&req.path),
            };
            self.authorize(&state, entry, &req, acl_operation(req.operation), root_path)?;
            self.use_token(&state, entry, &req.path).await?;
        }
        let mount_type = match &target {
            Target::Sys => "system".to_string(),
            Target::Token => "token".to_string(),
            Target::Mount(m, _) => m.entry.kind.clone(),
        };
        let no_policies = Vec::new();
        let record = crate::audit::AuditRecord {
            id: &request_id,
            operation: req.operation,
            path: &req.path,
            client_token: if entry.is_some() { &token } else { "" },
            token_hash: entry.as_deref().map(|e| e.id_hash.as_str()).unwrap_or(""),
            accessor: entry.as_deref().map(|e| e.accessor.as_str()).unwrap_or(""),
            display_name: entry
                .as_deref()
                .map(|e| e.display_name.as_str())
                .unwrap_or(""),
            policies: entry
                .as_deref()
                .map(|e| &e.policies)
                .unwrap_or(&no_policies),
            data: &req.data,
            remote_address: req.remote_addr.as_deref().unwrap_or(""),
            mount_type: &mount_type,
        };
        let audited = state.audit.log_request(&record)?;
        let result = match &target {
            Target::Sys => self.handle_sys(&state, &req, entry.as_deref()).await,
            Target::Token => match entry.as_deref() {
                Some(caller) => self.handle_token(&state, &req, caller, &token).await,
                None => Err(CoreError::PermissionDenied),
            },
            Target::Mount(m, rest) => {
                let sdk_req = match prepared.take() {
                    Some(r) => r,
                    None => self.sdk_request(&req, m, rest, entry.as_deref(), &request_id),
                };
                self.handle_mount(&state, &req, m, sdk_req, entry.as_deref())
                    .await
            }
        };
        state.audit.log_response(&record, audited, &result)?;
        let mut resp = result?;
        let wrappable = resp.data.is_some() || resp.auth.is_some();
        if let Some(ttl) = req.wrap_ttl {
            if wrappable && req.path != "sys/wrapping/lookup" && req.path != "sys/wrapping/rewrap" {
                resp = self.wrap_response(&state, &req.path, ttl, resp).await?;
            }
        }
        resp.request_id = request_id;
        if resp.index == 0
            && matches!(
                req.operation,
                Operation::Update | Operation::Create | Operation::Delete | Operation::Patch
            )
        {
            resp.index = self.cluster.applied_index();
        }
        Ok(resp)
    }

    /// Count down `num_uses`; the last use revokes the token.
    async fn use_token(
        &self,
        state: &Unsealed,
        entry: &TokenEntry,
        path: &str,
    ) -> Result<(), CoreError> {
        if entry.num_uses <= 0 {
            return Ok(());
        }
        // A wrapping token's single use is spent by the unwrap itself, which revokes it
        // after reading the wrapped answer.
        if crate::wrapping::is_wrapping_token(entry)
            && (path == "sys/wrapping/unwrap" || path == "sys/wrapping/rewrap")
        {
            return Ok(());
        }
        if entry.num_uses == 1 {
            state.tokens.revoke_tree(entry).await
        } else {
            let mut e = entry.clone();
            e.num_uses -= 1;
            state.tokens.update(&e).await
        }
    }

    /// The mount's default and max lease TTL, the system's where the mount sets none.
    pub(crate) fn mount_ttl(&self, m: &Mounted) -> MountTtl {
        let sys = self.config();
        let pick = |v: u64, d: Duration| if v == 0 { d } else { Duration::from_secs(v) };
        MountTtl {
            default_lease_ttl: pick(m.entry.config.default_lease_ttl, sys.default_lease_ttl),
            max_lease_ttl: pick(m.entry.config.max_lease_ttl, sys.max_lease_ttl),
        }
    }

    fn sdk_request(
        &self,
        req: &LogicalRequest,
        m: &Mounted,
        rest: &str,
        entry: Option<&TokenEntry>,
        id: &str,
    ) -> coffer_sdk::Request {
        coffer_sdk::Request {
            id: id.to_string(),
            operation: req.operation,
            path: rest.to_string(),
            mount_point: m.route_path(),
            data: req.data.clone(),
            query: req.query.clone(),
            storage: m.storage.clone(),
            caller: entry.map(|e| Caller {
                accessor: e.accessor.clone(),
                token_id_hash: e.id_hash.clone(),
                policies: e.policies.clone(),
                display_name: e.display_name.clone(),
                metadata: e.meta.clone(),
                entity_id: e.entity_id.clone(),
            }),
            mount_ttl: self.mount_ttl(m),
            remote_addr: req.remote_addr.clone(),
            lease: None,
        }
    }

    async fn handle_mount(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        m: &Arc<Mounted>,
        mut sdk_req: coffer_sdk::Request,
        entry: Option<&TokenEntry>,
    ) -> Result<LogicalResponse, CoreError> {
        let resp = match &m.backend {
            Some(backend) => backend.handle_request(&mut sdk_req).await?,
            None => {
                // cubbyhole: a private KV space per token, keyed by the token's hash.
                let caller = entry.ok_or(CoreError::PermissionDenied)?;
                let storage: Arc<dyn coffer_sdk::Storage> =
                    Arc::new(crate::store::PrefixedStorage::new(
                        state.store.clone(),
                        format!("cubbyhole/{}/", caller.id_hash),
                    ));
                sdk_req.storage = storage;
                crate::cubbyhole::handle(&mut sdk_req).await?
            }
        };
        self.finish_response(state, req, m, entry, resp).await
    }

    async fn finish_response(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        m: &Mounted,
        caller: Option<&TokenEntry>,
        resp: coffer_sdk::Response,
    ) -> Result<LogicalResponse, CoreError> {
        let mut out = LogicalResponse {
            status: resp.status.unwrap_or(
                if resp.data.is_some() || resp.auth.is_some() || !resp.warnings.is_empty() {
                    200
                } else {
                    204
                },
            ),
            data: resp.data,
            warnings: resp.warnings,
            raw: resp.raw,
            ..Default::default()
        };
        if let Some(secret) = resp.secret {
            self.register_secret(state, req, m, caller, secret, &mut out)
                .await?;
        }
        if let Some(login) = resp.auth {
            let (token, entry) = self.issue_login_token(state, req, m, login).await?;
            out.auth = Some(crate::token_api::auth_json(&token, &entry));
            if out.status == 204 {
                out.status = 200;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_rejects_traversal() {
        for bad in ["secret/../sys/seal", "a/./b", "a//b", "..", "x/.."] {
            assert!(sanitize_path(bad).is_err(), "{bad}");
        }
        assert_eq!(sanitize_path("/secret/foo").unwrap(), "secret/foo");
        assert_eq!(sanitize_path("secret/foo/").unwrap(), "secret/foo/");
    }
}

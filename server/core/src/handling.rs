//! `handle_request`: the pipeline every enveloped API call takes.
//!
//! sealed? -> 503; path sanity; token -> ACL; route to the handler; envelope fields.

use std::collections::BTreeMap;
use std::time::Duration;

use coffer_sdk::{Operation, RawBody};
use serde_json::{json, Map, Value};

use crate::{Core, CoreError};

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
    fn with_data(data: Map<String, Value>) -> Self {
        LogicalResponse {
            status: 200,
            data: Some(data),
            ..Default::default()
        }
    }

    fn no_content() -> Self {
        LogicalResponse {
            status: 204,
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

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl Core {
    /// Handle one enveloped API request.
    pub async fn handle_request(
        &self,
        mut req: LogicalRequest,
    ) -> Result<LogicalResponse, CoreError> {
        let request_id = crate::new_uuid();
        req.path = sanitize_path(&req.path)?;
        let state = self.unsealed()?;
        let token = req.token.as_deref().unwrap_or_default();
        let entry = state
            .tokens
            .lookup(token)?
            .ok_or(CoreError::PermissionDenied)?;
        let is_root = entry.is_root();
        let mut resp = match (req.path.as_str(), req.operation) {
            ("sys/key-status", Operation::Read) => {
                require(is_root)?;
                let status = self.barrier.key_status()?;
                let mut r = LogicalResponse::with_data(object(json!({
                    "term": status.term,
                    "install_time": status.install_time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    "encryptions": status.encryptions,
                })));
                r.copy_data_to_top = true;
                r
            }
            ("sys/rotate", Operation::Update | Operation::Create) => {
                require(is_root)?;
                let term = self.barrier.rotate().await?;
                tracing::info!(term, "installed new encryption key");
                LogicalResponse::no_content()
            }
            ("sys/seal", Operation::Update | Operation::Create) => {
                require(is_root)?;
                self.seal_now().await?;
                LogicalResponse::no_content()
            }
            ("auth/token/lookup-self", Operation::Read) => {
                LogicalResponse::with_data(object(json!({
                    "accessor": entry.accessor,
                    "policies": entry.policies,
                    "display_name": entry.display_name,
                    "path": entry.path,
                    "meta": entry.meta,
                    "num_uses": entry.num_uses,
                    "orphan": entry.orphan,
                    "ttl": 0,
                    "creation_time": entry.creation_time,
                    "type": entry.token_type,
                })))
            }
            _ => {
                return Err(CoreError::NotFound(format!(
                    "no handler for route \"{}\". route entry not found.",
                    req.path
                )))
            }
        };
        resp.request_id = request_id;
        if matches!(
            req.operation,
            Operation::Update | Operation::Create | Operation::Delete | Operation::Patch
        ) {
            resp.index = self.cluster.applied_index();
        }
        Ok(resp)
    }
}

fn require(allowed: bool) -> Result<(), CoreError> {
    if allowed {
        Ok(())
    } else {
        Err(CoreError::PermissionDenied)
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

//! A request as a backend sees it: the operation, the path inside the mount, the body,
//! and who is asking.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::storage::Storage;
use crate::SdkError;

/// Vault's logical operations. HTTP verbs map onto these in the HTTP layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// GET.
    Read,
    /// PUT/POST on a path that does not exist yet (per the existence check).
    Create,
    /// PUT/POST on an existing path (or a path with no existence check).
    Update,
    /// PATCH (JSON merge patch).
    Patch,
    /// DELETE.
    Delete,
    /// LIST, or GET with `?list=true`.
    List,
}

impl Operation {
    /// Vault's name for the operation (used in audit logs and errors).
    pub fn as_str(&self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
            Operation::List => "list",
        }
    }
}

/// Facts about the caller's token a backend may need (cubbyhole, token-aware paths).
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The token's accessor (empty for unauthenticated requests).
    pub accessor: String,
    /// A stable, non-secret identifier of the token (for per-token storage such as
    /// cubbyhole); never the token itself.
    pub token_id_hash: String,
    /// Policies attached to the token.
    pub policies: Vec<String>,
    /// Display name of the token.
    pub display_name: String,
    /// Metadata of the token.
    pub metadata: BTreeMap<String, String>,
    /// Entity id (empty when none).
    pub entity_id: String,
}

/// TTL limits of the mount serving the request.
#[derive(Clone, Copy, Debug)]
pub struct MountTtl {
    /// The mount's default lease TTL (system default if unset).
    pub default_lease_ttl: Duration,
    /// The mount's max lease TTL (system max if unset).
    pub max_lease_ttl: Duration,
}

impl Default for MountTtl {
    fn default() -> Self {
        MountTtl {
            default_lease_ttl: Duration::from_secs(32 * 24 * 3600),
            max_lease_ttl: Duration::from_secs(32 * 24 * 3600),
        }
    }
}

/// A request routed to a backend.
#[derive(Clone)]
pub struct Request {
    /// Unique id of the request (also in the response and audit log).
    pub id: String,
    /// What is being done.
    pub operation: Operation,
    /// The path inside the mount (no leading `/`, mount prefix stripped).
    pub path: String,
    /// The mount path, with trailing `/` (e.g. `secret/`).
    pub mount_point: String,
    /// The JSON body (or query parameters for reads), if any.
    pub data: Map<String, Value>,
    /// Raw query parameters.
    pub query: BTreeMap<String, String>,
    /// The mount's storage view.
    pub storage: Arc<dyn Storage>,
    /// The caller, when authenticated.
    pub caller: Option<Caller>,
    /// The mount's lease TTL limits.
    pub mount_ttl: MountTtl,
    /// Remote address of the client, if known (for CIDR bindings).
    pub remote_addr: Option<String>,
    /// The lease a `renew` or `revoke` call is about; `None` on ordinary requests.
    pub lease: Option<LeaseInfo>,
}

/// What a backend's `renew` and `revoke` learn about the lease (Vault's `req.Secret`
/// lease options). The backend's own data for the lease is the `internal` argument.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease id (`<mount><path>/<random>`).
    pub lease_id: String,
    /// Unix seconds when the lease was issued (max TTLs count from here).
    pub issue_time: i64,
    /// Unix seconds when the lease expires now (before this renewal).
    pub expire_time: i64,
    /// The TTL granted at issue or at the last renewal.
    pub ttl: Duration,
    /// On renew: the increment the client asked for (zero = none asked).
    pub increment: Duration,
}

impl Request {
    /// A string field of the body.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(Value::as_str)
    }

    /// A required string field; 400 naming the field when missing or not a string.
    pub fn require_str(&self, key: &str) -> Result<&str, SdkError> {
        match self.data.get(key) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(SdkError::bad(format!("field {key:?} must be a string"))),
            None => Err(SdkError::bad(format!("missing required field {key:?}"))),
        }
    }

    /// An optional integer field that Vault also accepts as a numeric string.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, SdkError> {
        match self.data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => crate::fields::as_i64(v)
                .map(Some)
                .ok_or_else(|| SdkError::bad(format!("field {key:?} must be an integer"))),
        }
    }

    /// An optional boolean field (also "true"/"false" strings, as Vault accepts).
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, SdkError> {
        match self.data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => crate::fields::as_bool(v)
                .map(Some)
                .ok_or_else(|| SdkError::bad(format!("field {key:?} must be a boolean"))),
        }
    }

    /// An optional duration field (seconds or a duration string).
    pub fn get_duration(&self, key: &str) -> Result<Option<Duration>, SdkError> {
        match self.data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(v) => crate::duration::duration_from_json(v)
                .map(Some)
                .map_err(|e| SdkError::bad(format!("field {key:?}: {e}"))),
        }
    }

    /// An optional list of strings (a JSON array, or a comma-separated string, as Vault).
    pub fn get_str_list(&self, key: &str) -> Result<Option<Vec<String>>, SdkError> {
        match self.data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => crate::fields::as_str_list(v)
                .map(Some)
                .ok_or_else(|| SdkError::bad(format!("field {key:?} must be a list of strings"))),
        }
    }
}

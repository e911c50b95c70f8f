//! What a backend answers: data, an optional lease-bearing secret, an optional auth
//! block (for logins), warnings, and for a few paths a raw HTTP body.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

/// A lease-bearing secret: the core registers a lease for it and fills `lease_id`
/// (except on `kv` mounts, whose `ttl` is only advisory, as in Vault).
///
/// In a `renew` answer it carries the backend's decision: `ttl` is used when the client
/// asked for no increment, `max_ttl` caps the lease (counted from its issue time), and
/// `internal`, when not empty, replaces the stored internal data.
#[derive(Clone, Debug, Default)]
pub struct SecretLease {
    /// Lease TTL (zero = the mount's default).
    pub ttl: Duration,
    /// Max lease lifetime from issue (zero = the mount's max).
    pub max_ttl: Duration,
    /// Whether the lease may be renewed.
    pub renewable: bool,
    /// Data the backend gets back on renew/revoke (not shown to the client).
    pub internal: Map<String, Value>,
}

/// The auth block of a login: the core turns it into a token.
#[derive(Clone, Debug, Default)]
pub struct LoginAuth {
    /// Policies for the new token.
    pub policies: Vec<String>,
    /// Token metadata (shown in lookups).
    pub metadata: BTreeMap<String, String>,
    /// Display name (prefixed by the mount name by the core, as Vault does).
    pub display_name: String,
    /// Requested TTL (zero = mount default).
    pub ttl: Duration,
    /// Requested max TTL (zero = mount max).
    pub max_ttl: Duration,
    /// Periodic token period (zero = not periodic).
    pub period: Duration,
    /// Use limit (zero = unlimited).
    pub num_uses: u64,
    /// Whether the token may be renewed.
    pub renewable: bool,
    /// Do not attach the `default` policy.
    pub no_default_policy: bool,
    /// `service` (default) or `batch`.
    pub token_type: String,
    /// Bound CIDRs for the token.
    pub bound_cidrs: Vec<String>,
    /// Data the backend gets back on renew (e.g. the user name).
    pub internal: Map<String, Value>,
}

/// A raw HTTP answer (snapshots, `sys/health`-like bare JSON, plugin pass-through).
#[derive(Clone, Debug)]
pub struct RawBody {
    /// HTTP status.
    pub status: u16,
    /// Content-Type.
    pub content_type: String,
    /// Bytes of the body.
    pub body: Vec<u8>,
}

/// A backend's answer.
#[derive(Clone, Debug, Default)]
pub struct Response {
    /// The `data` object (None = `null`, which with no other content means 204).
    pub data: Option<Map<String, Value>>,
    /// Present when the data is a leased secret.
    pub secret: Option<SecretLease>,
    /// Present on login.
    pub auth: Option<LoginAuth>,
    /// Warnings for the envelope.
    pub warnings: Vec<String>,
    /// HTTP status override (e.g. 404 with data for a deleted KV version).
    pub status: Option<u16>,
    /// A raw body instead of the envelope.
    pub raw: Option<RawBody>,
}

impl Response {
    /// A response with this `data`.
    pub fn data(data: Map<String, Value>) -> Self {
        Response {
            data: Some(data),
            ..Default::default()
        }
    }

    /// A response built from a JSON object value (anything else becomes `{}`).
    pub fn json(value: Value) -> Self {
        match value {
            Value::Object(map) => Response::data(map),
            _ => Response::data(Map::new()),
        }
    }

    /// A 204 (no content).
    pub fn empty() -> Self {
        Response::default()
    }

    /// Add a warning.
    pub fn with_warning(mut self, warning: impl Into<String>) -> Self {
        self.warnings.push(warning.into());
        self
    }

    /// A LIST answer: `{"keys": [...]}`, or 404 when there are none (as Vault).
    pub fn list(keys: Vec<String>) -> Result<Self, crate::SdkError> {
        if keys.is_empty() {
            return Err(crate::SdkError::NotFound);
        }
        let mut map = Map::new();
        map.insert(
            "keys".into(),
            Value::Array(keys.into_iter().map(Value::String).collect()),
        );
        Ok(Response::data(map))
    }
}

//! The messages of protocol 1.x (see `plugins/PROTOCOL.md`) and their conversions to and
//! from the sdk's `Request`, `Response` and `SdkError`.
//!
//! Every message is a JSON object with a `type`. Messages that expect an answer carry an
//! `id`; the host numbers its calls and the plugin numbers its storage calls, each side
//! from 1, so the two id spaces never meet. Unknown fields are ignored (a later minor
//! version may add some); an unknown `type` is a protocol error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use coffer_sdk::{
    is_zero, BackendKind, Caller, LeaseInfo, MountTtl, Operation, RawBody, Request, Response,
    SdkError, SecretLease, SpecialPaths, Storage, StorageOp,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The major version this build speaks; a peer with another major is refused.
pub const PROTOCOL_MAJOR: u32 = 1;
/// The minor version this build speaks (additions only).
pub const PROTOCOL_MINOR: u32 = 1;

/// This build's protocol version as sent in `hello` (`"1.1"`).
pub fn protocol_version() -> String {
    format!("{PROTOCOL_MAJOR}.{PROTOCOL_MINOR}")
}

/// Check the version a peer announced: `"<major>.<minor>"` with our major. Returns the
/// peer's (major, minor), or why it is refused.
pub fn check_peer_version(announced: &str) -> Result<(u32, u32), String> {
    let parsed = announced
        .split_once('.')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    match parsed {
        Some((major, minor)) if major == PROTOCOL_MAJOR => Ok((major, minor)),
        Some((major, _)) => Err(format!(
            "peer speaks plugin protocol {announced} (major {major}); this side speaks {}",
            protocol_version()
        )),
        None => Err(format!(
            "peer announced an unparsable plugin protocol version {announced:?}"
        )),
    }
}

/// Messages from the host (the server) to the plugin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// First message: the host's version and the mount the plugin serves.
    Hello {
        /// `"<major>.<minor>"`.
        protocol: String,
        /// The mount path with trailing `/`.
        mount_point: String,
        /// The mount's options.
        #[serde(default)]
        options: BTreeMap<String, String>,
    },
    /// Handle a request (`Backend::handle_request`); answered by a `response` whose `ok`
    /// is a [`WireResponse`].
    Request {
        /// Call id.
        id: u64,
        /// The request.
        request: WireRequest,
    },
    /// `Backend::existence_check`; `ok` is `{"exists": true|false|null}`.
    ExistenceCheck {
        /// Call id.
        id: u64,
        /// The request.
        request: WireRequest,
    },
    /// `Backend::renew`; `ok` is a [`WireResponse`].
    Renew {
        /// Call id.
        id: u64,
        /// The request.
        request: WireRequest,
        /// The lease's internal data.
        #[serde(default)]
        internal: Value,
    },
    /// `Backend::revoke`; `ok` is `{}`.
    Revoke {
        /// Call id.
        id: u64,
        /// The request.
        request: WireRequest,
        /// The lease's internal data.
        #[serde(default)]
        internal: Value,
    },
    /// `Backend::periodic`; `ok` is `{}`.
    Periodic {
        /// Call id.
        id: u64,
    },
    /// `Backend::cleanup` (the mount is being removed); `ok` is `{}`.
    Cleanup {
        /// Call id.
        id: u64,
    },
    /// `Backend::invalidate`: a key of the mount changed through replication. No answer.
    Invalidate {
        /// The key, relative to the mount.
        key: String,
    },
    /// The answer to one of the plugin's storage calls.
    StorageResult {
        /// The plugin's call id.
        id: u64,
        /// Success payload (absent when `error` is present).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ok: Option<Value>,
        /// Failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<WireError>,
    },
}

/// Messages from the plugin to the host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PluginMessage {
    /// The answer to the host's `hello`: the plugin's version and fixed facts.
    Hello {
        /// `"<major>.<minor>"`.
        protocol: String,
        /// Secret engine (`"secret"`) or auth method (`"credential"`).
        #[serde(default)]
        kind: WireKind,
        /// Unauthenticated and root-protected paths.
        #[serde(default)]
        special_paths: WireSpecialPaths,
    },
    /// The plugin cannot serve (unknown major, its factory failed); it exits after this.
    Refused {
        /// The plugin's version.
        protocol: String,
        /// Why (shown to the operator).
        message: String,
    },
    /// The answer to a host call.
    Response {
        /// The host's call id.
        id: u64,
        /// Success payload (absent when `error` is present).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ok: Option<Value>,
        /// Failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<WireError>,
    },
    /// Read a key of the mount's storage; `ok` is `{"value": base64|null}`.
    StorageGet {
        /// Call id.
        id: u64,
        /// Key relative to the mount.
        key: String,
    },
    /// List direct children of a prefix; `ok` is `{"keys": [...]}`.
    StorageList {
        /// Call id.
        id: u64,
        /// Prefix relative to the mount.
        prefix: String,
    },
    /// Apply puts and deletes atomically (one Raft entry); `ok` is `{}`.
    StorageCommit {
        /// Call id.
        id: u64,
        /// The batch.
        ops: Vec<WireStorageOp>,
    },
}

/// A result carried by `response` / `storage_result`: an error when `error` is present,
/// otherwise `ok` (absent means `null`).
pub fn into_result(ok: Option<Value>, error: Option<WireError>) -> Result<Value, SdkError> {
    match error {
        Some(e) => Err(e.into_sdk()),
        None => Ok(ok.unwrap_or(Value::Null)),
    }
}

/// Split a result into the `ok` / `error` fields.
pub fn from_result(result: Result<Value, SdkError>) -> (Option<Value>, Option<WireError>) {
    match result {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(WireError::from_sdk(&e))),
    }
}

/// The backend kind on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireKind {
    /// A secret engine.
    #[default]
    Secret,
    /// An auth method.
    Credential,
}

impl From<BackendKind> for WireKind {
    fn from(kind: BackendKind) -> Self {
        match kind {
            BackendKind::Secret => WireKind::Secret,
            BackendKind::Credential => WireKind::Credential,
        }
    }
}

/// `SpecialPaths` on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSpecialPaths {
    /// Reachable without a token.
    #[serde(default)]
    pub unauthenticated: Vec<String>,
    /// Require `sudo`.
    #[serde(default)]
    pub root: Vec<String>,
}

impl From<SpecialPaths> for WireSpecialPaths {
    fn from(p: SpecialPaths) -> Self {
        WireSpecialPaths {
            unauthenticated: p.unauthenticated,
            root: p.root,
        }
    }
}

impl From<WireSpecialPaths> for SpecialPaths {
    fn from(p: WireSpecialPaths) -> Self {
        SpecialPaths {
            unauthenticated: p.unauthenticated,
            root: p.root,
        }
    }
}

/// The operation on the wire (Vault's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireOperation {
    /// GET.
    Read,
    /// Write of a new item.
    Create,
    /// Write of an existing item.
    Update,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// LIST.
    List,
}

impl From<Operation> for WireOperation {
    fn from(op: Operation) -> Self {
        match op {
            Operation::Read => WireOperation::Read,
            Operation::Create => WireOperation::Create,
            Operation::Update => WireOperation::Update,
            Operation::Patch => WireOperation::Patch,
            Operation::Delete => WireOperation::Delete,
            Operation::List => WireOperation::List,
        }
    }
}

impl From<WireOperation> for Operation {
    fn from(op: WireOperation) -> Self {
        match op {
            WireOperation::Read => Operation::Read,
            WireOperation::Create => Operation::Create,
            WireOperation::Update => Operation::Update,
            WireOperation::Patch => Operation::Patch,
            WireOperation::Delete => Operation::Delete,
            WireOperation::List => Operation::List,
        }
    }
}

/// `Caller` on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCaller {
    /// Token accessor.
    #[serde(default)]
    pub accessor: String,
    /// Stable, non-secret id of the token.
    #[serde(default)]
    pub token_id_hash: String,
    /// Policies.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// Token metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Entity id.
    #[serde(default)]
    pub entity_id: String,
}

/// The mount's TTL limits, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMountTtl {
    /// Default lease TTL (seconds).
    pub default_lease_ttl: u64,
    /// Max lease TTL (seconds).
    pub max_lease_ttl: u64,
}

impl Default for WireMountTtl {
    fn default() -> Self {
        let d = MountTtl::default();
        WireMountTtl {
            default_lease_ttl: d.default_lease_ttl.as_secs(),
            max_lease_ttl: d.max_lease_ttl.as_secs(),
        }
    }
}

/// The sdk `Request` without its storage handle (the plugin gets a proxy instead).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireRequest {
    /// Request id.
    pub id: String,
    /// Operation.
    pub operation: WireOperation,
    /// Path inside the mount.
    pub path: String,
    /// Mount path with trailing `/`.
    pub mount_point: String,
    /// Body (or query parameters for reads).
    #[serde(default)]
    pub data: Map<String, Value>,
    /// Raw query parameters.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// The caller, when authenticated.
    #[serde(default)]
    pub caller: Option<WireCaller>,
    /// TTL limits of the mount.
    #[serde(default)]
    pub mount_ttl: WireMountTtl,
    /// Client address.
    #[serde(default)]
    pub remote_addr: Option<String>,
    /// The lease of a `renew` or `revoke` call (protocol 1.1; absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<WireLease>,
}

/// A lease as a `renew`/`revoke` call describes it (protocol 1.1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireLease {
    /// The lease id.
    pub lease_id: String,
    /// Unix seconds of issue.
    #[serde(default)]
    pub issue_time: i64,
    /// Unix seconds of the current expiry.
    #[serde(default)]
    pub expire_time: i64,
    /// TTL granted at issue or last renewal (seconds).
    #[serde(default)]
    pub ttl: u64,
    /// Increment asked for on renew (seconds; 0 = none).
    #[serde(default)]
    pub increment: u64,
}

impl WireLease {
    fn from_sdk(l: &LeaseInfo) -> WireLease {
        WireLease {
            lease_id: l.lease_id.clone(),
            issue_time: l.issue_time,
            expire_time: l.expire_time,
            ttl: l.ttl.as_secs(),
            increment: l.increment.as_secs(),
        }
    }

    fn into_sdk(self) -> LeaseInfo {
        LeaseInfo {
            lease_id: self.lease_id,
            issue_time: self.issue_time,
            expire_time: self.expire_time,
            ttl: Duration::from_secs(self.ttl),
            increment: Duration::from_secs(self.increment),
        }
    }
}

impl WireRequest {
    /// The wire form of an sdk request.
    pub fn from_sdk(req: &Request) -> WireRequest {
        WireRequest {
            id: req.id.clone(),
            operation: req.operation.into(),
            path: req.path.clone(),
            mount_point: req.mount_point.clone(),
            data: req.data.clone(),
            query: req.query.clone(),
            caller: req.caller.as_ref().map(|c| WireCaller {
                accessor: c.accessor.clone(),
                token_id_hash: c.token_id_hash.clone(),
                policies: c.policies.clone(),
                display_name: c.display_name.clone(),
                metadata: c.metadata.clone(),
                entity_id: c.entity_id.clone(),
            }),
            mount_ttl: WireMountTtl {
                default_lease_ttl: req.mount_ttl.default_lease_ttl.as_secs(),
                max_lease_ttl: req.mount_ttl.max_lease_ttl.as_secs(),
            },
            remote_addr: req.remote_addr.clone(),
            lease: req.lease.as_ref().map(WireLease::from_sdk),
        }
    }

    /// An sdk request over `storage`.
    pub fn into_sdk(self, storage: Arc<dyn Storage>) -> Request {
        Request {
            id: self.id,
            operation: self.operation.into(),
            path: self.path,
            mount_point: self.mount_point,
            data: self.data,
            query: self.query,
            storage,
            caller: self.caller.map(|c| Caller {
                accessor: c.accessor,
                token_id_hash: c.token_id_hash,
                policies: c.policies,
                display_name: c.display_name,
                metadata: c.metadata,
                entity_id: c.entity_id,
            }),
            mount_ttl: MountTtl {
                default_lease_ttl: Duration::from_secs(self.mount_ttl.default_lease_ttl),
                max_lease_ttl: Duration::from_secs(self.mount_ttl.max_lease_ttl),
            },
            remote_addr: self.remote_addr,
            lease: self.lease.map(WireLease::into_sdk),
        }
    }
}

/// A leased secret on the wire.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WireSecret {
    /// Lease TTL in seconds (0 = mount default).
    #[serde(default)]
    pub ttl: u64,
    /// Max lease lifetime from issue in seconds (0 = mount max; protocol 1.1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ttl: u64,
    /// Renewable.
    #[serde(default)]
    pub renewable: bool,
    /// Data given back on renew/revoke.
    #[serde(default)]
    pub internal: Map<String, Value>,
}

/// A raw HTTP body on the wire (`body` in base64).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRaw {
    /// HTTP status.
    pub status: u16,
    /// Content-Type.
    pub content_type: String,
    /// Base64 of the body.
    pub body: String,
}

/// The sdk `Response` on the wire (no `auth`: protocol 1 carries secret engines only).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WireResponse {
    /// `data` (null = none).
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
    /// A leased secret.
    #[serde(default)]
    pub secret: Option<WireSecret>,
    /// Warnings.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// HTTP status override.
    #[serde(default)]
    pub status: Option<u16>,
    /// Raw body instead of the envelope.
    #[serde(default)]
    pub raw: Option<WireRaw>,
}

fn valid_status(status: u16) -> Result<u16, SdkError> {
    if (100..=599).contains(&status) {
        Ok(status)
    } else {
        Err(SdkError::Internal(format!(
            "plugin answered with an invalid HTTP status {status}"
        )))
    }
}

impl WireResponse {
    /// The wire form of an sdk response; a login `auth` block cannot travel (an error
    /// instead of silently dropping it).
    pub fn from_sdk(resp: Response) -> Result<WireResponse, SdkError> {
        if resp.auth.is_some() {
            return Err(SdkError::Internal(
                "plugin protocol 1 carries secret engines only; a response with auth cannot be sent"
                    .into(),
            ));
        }
        Ok(WireResponse {
            data: resp.data,
            secret: resp.secret.map(|s| WireSecret {
                ttl: s.ttl.as_secs(),
                max_ttl: s.max_ttl.as_secs(),
                renewable: s.renewable,
                internal: s.internal,
            }),
            warnings: resp.warnings,
            status: resp.status,
            raw: resp.raw.map(|r| WireRaw {
                status: r.status,
                content_type: r.content_type,
                body: base64::engine::general_purpose::STANDARD.encode(r.body),
            }),
        })
    }

    /// The sdk response, checking what a plugin may not get wrong (statuses, base64).
    pub fn into_sdk(self) -> Result<Response, SdkError> {
        let raw = match self.raw {
            Some(r) => Some(RawBody {
                status: valid_status(r.status)?,
                content_type: r.content_type,
                body: base64::engine::general_purpose::STANDARD
                    .decode(r.body.as_bytes())
                    .map_err(|e| SdkError::Internal(format!("plugin raw body: {e}")))?,
            }),
            None => None,
        };
        Ok(Response {
            data: self.data,
            secret: self.secret.map(|s| SecretLease {
                ttl: Duration::from_secs(s.ttl),
                max_ttl: Duration::from_secs(s.max_ttl),
                renewable: s.renewable,
                internal: s.internal,
            }),
            auth: None,
            warnings: self.warnings,
            status: self.status.map(valid_status).transpose()?,
            raw,
        })
    }
}

/// `SdkError` on the wire: the variant as `kind`, its message, and the status for
/// `coded`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// `bad_request`, `permission_denied`, `not_found`, `unsupported_path`,
    /// `unsupported_operation`, `conflict`, `sealed`, `coded`, `storage`, `internal`.
    pub kind: String,
    /// The message (empty for the variants without one).
    #[serde(default)]
    pub message: String,
    /// HTTP status (used by `coded` and unknown kinds).
    #[serde(default)]
    pub status: Option<u16>,
}

impl WireError {
    /// The wire form of an sdk error.
    pub fn from_sdk(err: &SdkError) -> WireError {
        let (kind, message) = match err {
            SdkError::BadRequest(m) => ("bad_request", m.clone()),
            SdkError::PermissionDenied => ("permission_denied", String::new()),
            SdkError::NotFound => ("not_found", String::new()),
            SdkError::UnsupportedPath => ("unsupported_path", String::new()),
            SdkError::UnsupportedOperation => ("unsupported_operation", String::new()),
            SdkError::Conflict(m) => ("conflict", m.clone()),
            SdkError::Sealed => ("sealed", String::new()),
            SdkError::Coded { message, .. } => ("coded", message.clone()),
            SdkError::Storage(m) => ("storage", m.clone()),
            SdkError::Internal(m) => ("internal", m.clone()),
        };
        WireError {
            kind: kind.into(),
            message,
            status: Some(err.status()),
        }
    }

    /// The sdk error. A status outside 400..=599 becomes 500: a plugin cannot turn an
    /// error into a success.
    pub fn into_sdk(self) -> SdkError {
        match self.kind.as_str() {
            "bad_request" => SdkError::BadRequest(self.message),
            "permission_denied" => SdkError::PermissionDenied,
            "not_found" => SdkError::NotFound,
            "unsupported_path" => SdkError::UnsupportedPath,
            "unsupported_operation" => SdkError::UnsupportedOperation,
            "conflict" => SdkError::Conflict(self.message),
            "sealed" => SdkError::Sealed,
            "storage" => SdkError::Storage(self.message),
            "internal" => SdkError::Internal(self.message),
            _ => SdkError::Coded {
                status: self
                    .status
                    .filter(|s| (400..=599).contains(s))
                    .unwrap_or(500),
                message: self.message,
            },
        }
    }
}

/// One op of a storage commit; `value` is base64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WireStorageOp {
    /// Create or replace.
    Put {
        /// Key relative to the mount.
        key: String,
        /// Base64 of the value.
        value: String,
    },
    /// Remove.
    Delete {
        /// Key relative to the mount.
        key: String,
    },
}

impl WireStorageOp {
    /// The wire form of an sdk op.
    pub fn from_sdk(op: StorageOp) -> WireStorageOp {
        match op {
            StorageOp::Put { key, value } => WireStorageOp::Put {
                key,
                value: base64::engine::general_purpose::STANDARD.encode(value),
            },
            StorageOp::Delete { key } => WireStorageOp::Delete { key },
        }
    }

    /// The sdk op (400 when the base64 is bad).
    pub fn into_sdk(self) -> Result<StorageOp, SdkError> {
        Ok(match self {
            WireStorageOp::Put { key, value } => StorageOp::Put {
                value: decode_b64(&value)?,
                key,
            },
            WireStorageOp::Delete { key } => StorageOp::Delete { key },
        })
    }
}

/// Base64 (standard alphabet, padded) of bytes.
pub fn encode_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decode standard base64; 400 when malformed.
pub fn decode_b64(text: &str) -> Result<Vec<u8>, SdkError> {
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| SdkError::bad(format!("invalid base64 in plugin message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_with_another_major_are_refused() {
        assert_eq!(check_peer_version("1.0"), Ok((1, 0)));
        assert_eq!(check_peer_version("1.9"), Ok((1, 9)));
        for bad in ["2.0", "0.9", "1", "", "one.zero", "1.x", "-1.0"] {
            assert!(check_peer_version(bad).is_err(), "{bad}");
        }
        assert!(check_peer_version("2.0").unwrap_err().contains("major 2"));
    }

    #[test]
    fn every_sdk_error_survives_the_wire() {
        let all = [
            SdkError::bad("nope"),
            SdkError::PermissionDenied,
            SdkError::NotFound,
            SdkError::UnsupportedPath,
            SdkError::UnsupportedOperation,
            SdkError::Conflict("cas".into()),
            SdkError::Sealed,
            SdkError::Coded {
                status: 429,
                message: "slow down".into(),
            },
            SdkError::Storage("disk".into()),
            SdkError::Internal("bug".into()),
        ];
        for e in all {
            let wire: WireError =
                serde_json::from_value(serde_json::to_value(WireError::from_sdk(&e)).unwrap())
                    .unwrap();
            assert_eq!(wire.into_sdk(), e);
        }
    }

    #[test]
    fn a_plugin_cannot_turn_an_error_into_a_success() {
        let e = WireError {
            kind: "coded".into(),
            message: "ok?".into(),
            status: Some(200),
        };
        assert_eq!(e.into_sdk().status(), 500);
        let e = WireError {
            kind: "from-the-future".into(),
            message: "x".into(),
            status: Some(418),
        };
        assert_eq!(e.into_sdk().status(), 418);
        let bad = WireResponse {
            status: Some(1000),
            ..Default::default()
        };
        assert!(bad.into_sdk().is_err());
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let storage = coffer_sdk::testing::MemStorage::new();
        let mut data = Map::new();
        data.insert("k".into(), json!("v"));
        let req = Request {
            id: "req-1".into(),
            operation: Operation::Patch,
            path: "a/b".into(),
            mount_point: "echo/".into(),
            data,
            query: [("version".to_string(), "2".to_string())].into(),
            storage: storage.clone(),
            caller: Some(Caller {
                accessor: "acc".into(),
                token_id_hash: "h".into(),
                policies: vec!["default".into()],
                display_name: "token".into(),
                metadata: [("m".to_string(), "1".to_string())].into(),
                entity_id: String::new(),
            }),
            mount_ttl: MountTtl {
                default_lease_ttl: Duration::from_secs(60),
                max_lease_ttl: Duration::from_secs(120),
            },
            remote_addr: Some("127.0.0.1".into()),
            lease: Some(LeaseInfo {
                lease_id: "echo/a/b/xyz".into(),
                issue_time: 100,
                expire_time: 160,
                ttl: Duration::from_secs(60),
                increment: Duration::from_secs(30),
            }),
        };
        let wire = WireRequest::from_sdk(&req);
        let text = serde_json::to_string(&HostMessage::Request {
            id: 7,
            request: wire.clone(),
        })
        .unwrap();
        assert!(text.contains("\"type\":\"request\""), "{text}");
        assert!(text.contains("\"operation\":\"patch\""), "{text}");
        let back: HostMessage = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back,
            HostMessage::Request {
                id: 7,
                request: wire.clone()
            }
        );
        let again = wire.into_sdk(storage);
        assert_eq!(again.path, "a/b");
        assert_eq!(again.operation, Operation::Patch);
        assert_eq!(again.mount_ttl.max_lease_ttl, Duration::from_secs(120));
        assert_eq!(again.lease, req.lease);
        assert_eq!(again.caller.unwrap().policies, vec!["default".to_string()]);
        // A 1.0 peer sends no lease: the field is optional.
        let old = r#"{"id":"r","operation":"read","path":"p","mount_point":"m/"}"#;
        let old: WireRequest = serde_json::from_str(old).unwrap();
        assert_eq!(old.lease, None);

        let resp = Response {
            data: Some(Map::new()),
            secret: Some(SecretLease {
                ttl: Duration::from_secs(30),
                max_ttl: Duration::from_secs(90),
                renewable: true,
                internal: Map::new(),
            }),
            warnings: vec!["w".into()],
            status: Some(404),
            raw: Some(RawBody {
                status: 200,
                content_type: "application/octet-stream".into(),
                body: vec![0, 1, 2, 255],
            }),
            ..Default::default()
        };
        let back = WireResponse::from_sdk(resp).unwrap().into_sdk().unwrap();
        assert_eq!(back.status, Some(404));
        assert_eq!(back.raw.unwrap().body, vec![0, 1, 2, 255]);
        let secret = back.secret.unwrap();
        assert_eq!(secret.ttl, Duration::from_secs(30));
        assert_eq!(secret.max_ttl, Duration::from_secs(90));
    }

    #[test]
    fn storage_ops_carry_binary_values() {
        let op = StorageOp::Put {
            key: "k".into(),
            value: vec![0, 159, 146, 150],
        };
        let wire = WireStorageOp::from_sdk(op.clone());
        let text = serde_json::to_string(&wire).unwrap();
        assert!(text.contains("\"op\":\"put\""), "{text}");
        let back: WireStorageOp = serde_json::from_str(&text).unwrap();
        assert_eq!(back.into_sdk().unwrap(), op);
        let bad = WireStorageOp::Put {
            key: "k".into(),
            value: "***".into(),
        };
        assert_eq!(bad.into_sdk().unwrap_err().status(), 400);
    }

    #[test]
    fn results_split_on_the_error_field() {
        assert_eq!(into_result(None, None), Ok(Value::Null));
        assert_eq!(
            into_result(Some(json!({"a": 1})), None),
            Ok(json!({"a": 1}))
        );
        let (ok, err) = from_result(Err(SdkError::NotFound));
        assert_eq!(into_result(ok, err), Err(SdkError::NotFound));
        let msg: PluginMessage =
            serde_json::from_str(r#"{"type":"response","id":3,"error":{"kind":"not_found"}}"#)
                .unwrap();
        assert_eq!(
            msg,
            PluginMessage::Response {
                id: 3,
                ok: None,
                error: Some(WireError {
                    kind: "not_found".into(),
                    message: String::new(),
                    status: None
                })
            }
        );
    }
}

//! Server configuration in Vault's format, HCL or JSON, as `coffer server -config` reads it.
//!
//! Operators reuse their Vault config files, so this module accepts what Vault accepts:
//! `storage "raft" { ... }` (or the legacy `backend` key), `storage "inmem" {}`,
//! any number of `listener "tcp" { ... }` blocks, `seal "<kind>" { ... }`, the top-level
//! addresses, lease TTLs and flags, in HCL or in Vault's JSON forms.
//!
//! Both formats are first read into a generic [`serde_json::Value`] (HCL through
//! `hcl-rs`, whose JSON-spec conversion turns `listener "tcp" {}` into
//! `{"listener": {"tcp": {...}}}` and repeated blocks into arrays) and then walked by hand,
//! so that:
//!
//! - every malformed value is a [`ConfigError`] that names the key (`listener.tcp.tls_disable`,
//!   `default_lease_ttl`, ...) and the problem; the server refuses to start on it;
//! - every key Vault knows but coffer does not implement is parsed without error and reported
//!   as a warning naming the key ("... is not supported by coffer and is ignored");
//! - every unknown key (a typo) is a warning naming the key, like Vault's
//!   "unknown or unsupported field";
//! - a key set twice in a JSON object (serde_json would keep the last silently) is a warning;
//!   in HCL it is a syntax error (hcl-rs is HCL2, which forbids it).
//!
//! Nothing is silently ignored.
//!
//! Several `-config` files (or a directory of `*.hcl`/`*.json` files) are merged the way
//! Vault merges them: later files win for single values, listeners accumulate, and the
//! "storage is required" check runs on the merged result ([`load_files`]). For `-dev`,
//! [`ServerConfig::dev`] gives the defaults and [`load_files_onto`] layers files over them.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_sdk::duration::duration_from_json;
use serde_json::{Map, Value};

/// The listen address of a `listener "tcp"` block that does not set `address` (Vault's).
pub const DEFAULT_LISTENER_ADDRESS: &str = "127.0.0.1:8200";

/// Vault's default and maximum lease TTL when the configuration leaves them unset (or 0):
/// 768h, i.e. 32 days.
pub const VAULT_DEFAULT_LEASE_TTL: Duration = Duration::from_secs(768 * 3600);

/// A parsed configuration plus the warnings the operator should see (unsupported and
/// unknown keys, keys set twice, TLS settings on a plain-text listener, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: ServerConfig,
    pub warnings: Vec<String>,
}

/// Why a configuration could not be loaded. The server must refuse to start on any of these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The text is not valid HCL or JSON.
    #[error("invalid {format}: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    /// A key holds a value of the wrong type, a malformed value, or a combination Vault (or
    /// coffer) rejects. `key` is the dotted path, e.g. `listener.tcp.tls_cert_file`.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    /// An error inside a particular configuration file.
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<ConfigError>,
    },
}

impl ConfigError {
    /// The dotted key the error is about, if it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::InFile { error, .. } => error.key(),
            _ => None,
        }
    }

    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    fn in_file(self, path: &Path) -> Self {
        ConfigError::InFile {
            path: path.to_path_buf(),
            error: Box::new(self),
        }
    }
}

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `storage "raft" {}` / `storage "inmem" {}` (or the legacy `backend` key).
    pub storage: StorageConfig,
    /// Every `listener "tcp" {}` block, in file order.
    pub listeners: Vec<TcpListener>,
    /// `seal "<kind>" {}`; `None` means Shamir.
    pub seal: Option<SealConfig>,
    pub api_addr: Option<String>,
    pub cluster_addr: Option<String>,
    pub cluster_name: Option<String>,
    /// As written; `Some(0)` means "Vault's default". See [`Self::effective_default_lease_ttl`].
    pub default_lease_ttl: Option<Duration>,
    /// As written; `Some(0)` means "Vault's default". See [`Self::effective_max_lease_ttl`].
    pub max_lease_ttl: Option<Duration>,
    pub disable_mlock: bool,
    pub ui: bool,
    pub disable_cache: bool,
    /// Normalised to one of `trace`, `debug`, `info`, `warn`, `error`.
    pub log_level: Option<String>,
    /// `standard` or `json`.
    pub log_format: Option<String>,
    pub pid_file: Option<PathBuf>,
    pub plugin_directory: Option<PathBuf>,
}

/// Where the server keeps its data.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageConfig {
    Raft(RaftStorage),
    Inmem,
}

impl StorageConfig {
    /// The storage type as written in the config (`raft`, `inmem`).
    pub fn kind(&self) -> &'static str {
        match self {
            StorageConfig::Raft(_) => "raft",
            StorageConfig::Inmem => "inmem",
        }
    }
}

/// `storage "raft" { ... }`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RaftStorage {
    /// Directory of the Raft log and state machine (required).
    pub path: PathBuf,
    pub node_id: Option<String>,
    pub performance_multiplier: Option<u32>,
    /// `retry_join { ... }` blocks, in file order. Entries that only use `auto_join`
    /// (cloud auto-discovery, unsupported) are dropped with a warning.
    pub retry_join: Vec<RetryJoin>,
    pub autopilot_reconcile_interval: Option<Duration>,
    pub autopilot_update_interval: Option<Duration>,
}

/// One `retry_join { ... }` block of raft storage.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RetryJoin {
    /// `https://host:8200` (a URL with an http or https scheme).
    pub leader_api_addr: String,
    pub leader_ca_cert_file: Option<PathBuf>,
    pub leader_client_cert_file: Option<PathBuf>,
    pub leader_client_key_file: Option<PathBuf>,
    pub leader_tls_servername: Option<String>,
}

/// TLS protocol floor of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum TlsVersion {
    #[default]
    Tls12,
    Tls13,
}

/// One `listener "tcp" { ... }` block.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpListener {
    pub address: String,
    pub cluster_address: Option<String>,
    pub tls_disable: bool,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_client_ca_file: Option<PathBuf>,
    pub tls_require_and_verify_client_cert: bool,
    pub tls_disable_client_certs: bool,
    /// Vault's default is tls12.
    pub tls_min_version: TlsVersion,
}

impl Default for TcpListener {
    fn default() -> Self {
        TcpListener {
            address: DEFAULT_LISTENER_ADDRESS.to_string(),
            cluster_address: None,
            tls_disable: false,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            tls_require_and_verify_client_cert: false,
            tls_disable_client_certs: false,
            tls_min_version: TlsVersion::Tls12,
        }
    }
}

/// `seal "<kind>" { ... }`: the kind and its options, scalars rendered as strings
/// (`true` -> `"true"`, `5` -> `"5"`). Which kinds work is the server's decision.
#[derive(Clone, PartialEq)]
pub struct SealConfig {
    pub kind: String,
    pub options: BTreeMap<String, String>,
}

impl fmt::Debug for SealConfig {
    /// Seal options carry credentials (`token`, `secret_key`, `client_secret`, ...): they are
    /// redacted so a config dump never puts them in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Options<'a>(&'a BTreeMap<String, String>);
        impl fmt::Debug for Options<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut map = f.debug_map();
                for (key, value) in self.0 {
                    if is_sensitive_option(key) {
                        map.entry(key, &"<redacted>");
                    } else {
                        map.entry(key, value);
                    }
                }
                map.finish()
            }
        }
        f.debug_struct("SealConfig")
            .field("kind", &self.kind)
            .field("options", &Options(&self.options))
            .finish()
    }
}

fn is_sensitive_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "pin",
        "credential",
        "access_key",
    ]
    .iter()
    .any(|word| key.contains(word))
}

impl ServerConfig {
    /// The configuration of `coffer server -dev`, as Vault's dev mode: in-memory storage,
    /// one plain-text listener on 127.0.0.1:8200, mlock off, UI on.
    pub fn dev() -> ServerConfig {
        ServerConfig {
            storage: StorageConfig::Inmem,
            listeners: vec![TcpListener {
                address: DEFAULT_LISTENER_ADDRESS.to_string(),
                tls_disable: true,
                ..TcpListener::default()
            }],
            seal: None,
            api_addr: None,
            cluster_addr: None,
            cluster_name: None,
            default_lease_ttl: None,
            max_lease_ttl: None,
            disable_mlock: true,
            ui: true,
            disable_cache: false,
            log_level: None,
            log_format: None,
            pid_file: None,
            plugin_directory: None,
        }
    }

    /// Merge two complete configurations, `other` taking precedence (Vault: later wins).
    ///
    /// `storage` is `other`'s; listeners accumulate (`self`'s first); every optional value
    /// `other` sets replaces `self`'s; boolean flags are on if either side turns them on.
    /// A complete config cannot say whether a `false` was written or defaulted, so a later
    /// file cannot switch a flag *off* here; [`load_files`] merges files before defaults are
    /// applied and has Vault's exact semantics, so prefer it for several `-config` files.
    pub fn merge(self, other: ServerConfig) -> ServerConfig {
        let mut listeners = self.listeners;
        listeners.extend(other.listeners);
        ServerConfig {
            storage: other.storage,
            listeners,
            seal: other.seal.or(self.seal),
            api_addr: other.api_addr.or(self.api_addr),
            cluster_addr: other.cluster_addr.or(self.cluster_addr),
            cluster_name: other.cluster_name.or(self.cluster_name),
            default_lease_ttl: other.default_lease_ttl.or(self.default_lease_ttl),
            max_lease_ttl: other.max_lease_ttl.or(self.max_lease_ttl),
            disable_mlock: self.disable_mlock || other.disable_mlock,
            ui: self.ui || other.ui,
            disable_cache: self.disable_cache || other.disable_cache,
            log_level: other.log_level.or(self.log_level),
            log_format: other.log_format.or(self.log_format),
            pid_file: other.pid_file.or(self.pid_file),
            plugin_directory: other.plugin_directory.or(self.plugin_directory),
        }
    }

    /// The system default lease TTL: the configured one, or Vault's 768h when unset or 0.
    pub fn effective_default_lease_ttl(&self) -> Duration {
        nonzero_or_default(self.default_lease_ttl)
    }

    /// The system maximum lease TTL: the configured one, or Vault's 768h when unset or 0.
    pub fn effective_max_lease_ttl(&self) -> Duration {
        nonzero_or_default(self.max_lease_ttl)
    }
}

fn nonzero_or_default(ttl: Option<Duration>) -> Duration {
    match ttl {
        Some(ttl) if !ttl.is_zero() => ttl,
        _ => VAULT_DEFAULT_LEASE_TTL,
    }
}

// ---------------------------------------------------------------------------------------
// Entry points

/// Load one configuration file (JSON if the extension is `.json`, else HCL; an HCL file whose
/// content is JSON is accepted too) or, like Vault, a directory of `*.hcl` / `*.json` files.
/// Warnings are prefixed with the file they come from.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigError> {
    load_files(&[path])
}

/// Load and merge several `-config` paths (files or directories) in order, later values
/// winning, listeners accumulating; then validate the merged result (storage required, ...).
pub fn load_files<P: AsRef<Path>>(paths: &[P]) -> Result<Loaded, ConfigError> {
    load_into(Partial::default(), paths)
}

/// `-dev` with `-config`: layer the files over `base` (normally [`ServerConfig::dev`]), so a
/// file need not name storage; file values win, listeners accumulate.
pub fn load_files_onto<P: AsRef<Path>>(
    base: ServerConfig,
    paths: &[P],
) -> Result<Loaded, ConfigError> {
    load_into(Partial::from(base), paths)
}

/// Parse HCL configuration text (text that is a JSON object is parsed as JSON).
pub fn parse_hcl(text: &str) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let partial = parse_hcl_partial(text, &mut warnings)?;
    finish(partial, warnings)
}

/// Parse JSON configuration text.
pub fn parse_json(text: &str) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    let partial = parse_json_partial(text, &mut warnings)?;
    finish(partial, warnings)
}

fn load_into<P: AsRef<Path>>(mut merged: Partial, paths: &[P]) -> Result<Loaded, ConfigError> {
    let mut warnings = Vec::new();
    for path in paths {
        let files = expand_path(path.as_ref())?;
        if files.is_empty() {
            warnings.push(format!(
                "{}: directory contains no .hcl or .json configuration files",
                path.as_ref().display()
            ));
        }
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|error| ConfigError::Io {
                path: file.clone(),
                error,
            })?;
            let mut file_warnings = Vec::new();
            let partial = if has_extension(&file, "json") {
                parse_json_partial(&text, &mut file_warnings)
            } else {
                parse_hcl_partial(&text, &mut file_warnings)
            }
            .map_err(|e| e.in_file(&file))?;
            warnings.extend(
                file_warnings
                    .into_iter()
                    .map(|w| format!("{}: {w}", file.display())),
            );
            merged = merged.merge(partial);
        }
    }
    finish(merged, warnings)
}

/// A directory stands for its `*.hcl` and `*.json` files in name order (Vault's
/// `LoadConfigDir`); a file stands for itself.
fn expand_path(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let io_err = |error| ConfigError::Io {
        path: path.to_path_buf(),
        error,
    };
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let file = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden
            && file.is_file()
            && (has_extension(&file, "hcl") || has_extension(&file, "json"))
        {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case(ext))
}

fn parse_hcl_partial(text: &str, warnings: &mut Vec<String>) -> Result<Partial, ConfigError> {
    if text.trim_start().starts_with('{') {
        // Vault's HCL parser accepts JSON, and a body cannot start with `{` in HCL.
        return parse_json_partial(text, warnings);
    }
    let body = hcl::parse(text).map_err(|e| ConfigError::Syntax {
        format: "HCL",
        message: e.to_string().trim().to_string(),
    })?;
    check_hcl_body(&body, "", warnings)?;
    let value = serde_json::to_value(hcl::Value::from(body)).map_err(|e| ConfigError::Syntax {
        format: "HCL",
        message: e.to_string(),
    })?;
    parse_root(&value, warnings)
}

fn parse_json_partial(text: &str, warnings: &mut Vec<String>) -> Result<Partial, ConfigError> {
    let duplicates = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde::de::DeserializeSeed::deserialize(
        DupSeed {
            duplicates: &duplicates,
            path: String::new(),
        },
        &mut de,
    )
    .and_then(|value| de.end().map(|()| value))
    .map_err(|e| ConfigError::Syntax {
        format: "JSON",
        message: e.to_string(),
    })?;
    for key in duplicates.into_inner() {
        warnings.push(duplicate_warning(&key));
    }
    parse_root(&value, warnings)
}

fn duplicate_warning(key: &str) -> String {
    format!("{key:?} is set more than once; the last value is used")
}

// ---------------------------------------------------------------------------------------
// HCL pre-checks: duplicates and expressions, which the JSON-spec conversion would hide.

/// Reject HCL2 expressions (Vault's config language is literal values only, and hcl-rs would
/// otherwise turn `api_addr = foo` into the string `"${foo}"`) and report a name used both as
/// an attribute and as a block, which the JSON-spec conversion resolves silently. (An
/// attribute set twice in one body is already a syntax error in hcl-rs.)
fn check_hcl_body(
    body: &hcl::Body,
    prefix: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let mut attributes = BTreeSet::new();
    for attr in body.attributes() {
        attributes.insert(attr.key());
        check_literal(attr.expr(), &join(prefix, attr.key()))?;
    }
    for block in body.blocks() {
        if attributes.contains(block.identifier()) {
            warnings.push(format!(
                "{:?} is set both as an attribute and as a block; the block is used",
                join(prefix, block.identifier())
            ));
        }
        let mut path = join(prefix, block.identifier());
        for label in block.labels() {
            path = join(&path, label.as_str());
        }
        check_hcl_body(block.body(), &path, warnings)?;
    }
    Ok(())
}

fn check_literal(expr: &hcl::Expression, key: &str) -> Result<(), ConfigError> {
    use hcl::Expression as E;
    match expr {
        E::Null | E::Bool(_) | E::Number(_) | E::String(_) | E::TemplateExpr(_) => Ok(()),
        E::Array(items) => items.iter().try_for_each(|item| check_literal(item, key)),
        E::Object(object) => object
            .iter()
            .try_for_each(|(k, v)| check_literal(v, &join(key, &k.to_string()))),
        E::Parenthesis(inner) => check_literal(inner, key),
        _ => Err(ConfigError::invalid(
            key,
            "expected a literal value (a quoted string, number or boolean); HCL expressions \
             such as variables, function calls and operators are not supported",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// JSON with duplicate-key detection (serde_json keeps the last value silently).

struct DupSeed<'a> {
    duplicates: &'a RefCell<Vec<String>>,
    path: String,
}

impl<'de> serde::de::DeserializeSeed<'de> for DupSeed<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DupSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(DupSeed {
            duplicates: self.duplicates,
            path: self.path.clone(),
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = join(&self.path, &key);
            let value = map.next_value_seed(DupSeed {
                duplicates: self.duplicates,
                path: path.clone(),
            })?;
            if object.insert(key, value).is_some() {
                self.duplicates.borrow_mut().push(path);
            }
        }
        Ok(Value::Object(object))
    }
}

// ---------------------------------------------------------------------------------------
// The walk over the generic value.

/// Top-level keys Vault knows that coffer does not implement: parsed, warned about, ignored.
const UNSUPPORTED_TOP_LEVEL: &[&str] = &[
    "ha_storage",
    "ha_backend",
    "service_registration",
    "telemetry",
    "entropy",
    "license_path",
    "raw_storage_endpoint",
    "introspection_endpoint",
    "disable_clustering",
    "cache_size",
    "disable_performance_standby",
    "enable_response_header_hostname",
    "enable_response_header_raft_node_id",
    "user_lockout",
    "replication",
    "sentinel",
    "hsm",
    "kms_library",
    "plugin_file_uid",
    "plugin_file_permissions",
    "plugin_tmpdir",
    "disable_sealwrap",
    "disable_printable_check",
    "disable_sentinel_trace",
    "disable_indexing",
    "enable_post_unseal_trace",
    "post_unseal_trace_directory",
    "default_max_request_duration",
    "log_file",
    "log_rotate_duration",
    "log_rotate_bytes",
    "log_rotate_max_files",
    "log_requests_level",
    "detect_deadlocks",
    "imprecise_lease_role_tracking",
    "experiments",
    "administrative_namespace_path",
    "enable_multiseal",
    "cluster_cipher_suites",
    "pkcs11",
    "unsafe_allow_api_audit_creation",
    "allow_audit_log_prefixing",
    "disable_autocompletion",
    "observation_system",
    "reporting",
    "api_addr_unsafe",
];

/// Keys of Vault's tcp listener that coffer does not implement.
const UNSUPPORTED_LISTENER: &[&str] = &[
    "purpose",
    "role",
    "proxy_protocol_behavior",
    "proxy_protocol_authorized_addrs",
    "x_forwarded_for_authorized_addrs",
    "x_forwarded_for_hop_skips",
    "x_forwarded_for_reject_not_authorized",
    "x_forwarded_for_reject_not_present",
    "x_forwarded_for_client_cert_header",
    "x_forwarded_for_client_cert_header_decoder",
    "tls_max_version",
    "tls_cipher_suites",
    "tls_prefer_server_cipher_suites",
    "tls_client_ca_file_reload",
    "http_read_header_timeout",
    "http_read_timeout",
    "http_write_timeout",
    "http_idle_timeout",
    "max_request_size",
    "max_request_duration",
    "require_request_header",
    "telemetry",
    "profiling",
    "inflight_requests_logging",
    "custom_response_headers",
    "agent_api",
    "chroot_namespace",
    "redact_addresses",
    "redact_cluster_name",
    "redact_version",
    "disable_replication_status_endpoints",
    "disable_request_limiter",
    "cors",
];

/// Keys of Vault's raft storage that coffer does not implement.
const UNSUPPORTED_RAFT: &[&str] = &[
    "trailing_logs",
    "snapshot_threshold",
    "snapshot_interval",
    "max_entry_size",
    "max_batch_entries",
    "max_batch_size",
    "autopilot_upgrade_version",
    "autopilot_redundancy_zone",
    "raft_wal",
    "raft_log_verifier_enabled",
    "raft_log_verification_interval",
    "max_mount_and_namespace_table_entry_size",
    "retry_join_as_non_voter",
    "non_voter",
    "kms_library",
];

/// Vault storage types, to tell "Vault has it, coffer does not" from a typo.
const VAULT_STORAGE_TYPES: &[&str] = &[
    "aerospike",
    "alicloudoss",
    "azure",
    "cassandra",
    "cockroachdb",
    "consul",
    "couchdb",
    "dynamodb",
    "etcd",
    "file",
    "foundationdb",
    "gcs",
    "manta",
    "mssql",
    "mysql",
    "oci",
    "postgresql",
    "s3",
    "spanner",
    "swift",
    "zookeeper",
];

/// A configuration fragment as one file states it: everything optional, so files can be
/// merged (Vault: later wins) before the required-key checks run.
#[derive(Debug, Default)]
struct Partial {
    storage: Option<StorageConfig>,
    listeners: Vec<TcpListener>,
    seals: Vec<SealConfig>,
    api_addr: Option<String>,
    cluster_addr: Option<String>,
    cluster_name: Option<String>,
    default_lease_ttl: Option<Duration>,
    max_lease_ttl: Option<Duration>,
    disable_mlock: Option<bool>,
    ui: Option<bool>,
    disable_cache: Option<bool>,
    log_level: Option<String>,
    log_format: Option<String>,
    pid_file: Option<PathBuf>,
    plugin_directory: Option<PathBuf>,
}

impl From<ServerConfig> for Partial {
    fn from(c: ServerConfig) -> Partial {
        Partial {
            storage: Some(c.storage),
            listeners: c.listeners,
            seals: c.seal.into_iter().collect(),
            api_addr: c.api_addr,
            cluster_addr: c.cluster_addr,
            cluster_name: c.cluster_name,
            default_lease_ttl: c.default_lease_ttl,
            max_lease_ttl: c.max_lease_ttl,
            disable_mlock: Some(c.disable_mlock),
            ui: Some(c.ui),
            disable_cache: Some(c.disable_cache),
            log_level: c.log_level,
            log_format: c.log_format,
            pid_file: c.pid_file,
            plugin_directory: c.plugin_directory,
        }
    }
}

impl Partial {
    /// Vault's `Config.Merge`: `later` wins where it says something; lists accumulate.
    fn merge(self, later: Partial) -> Partial {
        let mut listeners = self.listeners;
        listeners.extend(later.listeners);
        let mut seals = self.seals;
        seals.extend(later.seals);
        Partial {
            storage: later.storage.or(self.storage),
            listeners,
            seals,
            api_addr: later.api_addr.or(self.api_addr),
            cluster_addr: later.cluster_addr.or(self.cluster_addr),
            cluster_name: later.cluster_name.or(self.cluster_name),
            default_lease_ttl: later.default_lease_ttl.or(self.default_lease_ttl),
            max_lease_ttl: later.max_lease_ttl.or(self.max_lease_ttl),
            disable_mlock: later.disable_mlock.or(self.disable_mlock),
            ui: later.ui.or(self.ui),
            disable_cache: later.disable_cache.or(self.disable_cache),
            log_level: later.log_level.or(self.log_level),
            log_format: later.log_format.or(self.log_format),
            pid_file: later.pid_file.or(self.pid_file),
            plugin_directory: later.plugin_directory.or(self.plugin_directory),
        }
    }
}

/// Whole-configuration checks, run once on the merged result.
fn finish(p: Partial, warnings: Vec<String>) -> Result<Loaded, ConfigError> {
    let storage = p.storage.ok_or_else(|| {
        ConfigError::invalid(
            "storage",
            "a storage block is required, e.g. storage \"raft\" { path = \"/var/lib/coffer\" } \
             (supported types: raft, inmem)",
        )
    })?;
    if p.listeners.is_empty() {
        return Err(ConfigError::invalid(
            "listener",
            "at least one listener \"tcp\" { ... } block is required",
        ));
    }
    let mut addresses = BTreeSet::new();
    for listener in &p.listeners {
        if !addresses.insert(listener.address.as_str()) {
            return Err(ConfigError::invalid(
                "listener.tcp.address",
                format!("{:?} is used by more than one listener", listener.address),
            ));
        }
    }
    if p.seals.len() > 1 {
        let kinds: Vec<&str> = p.seals.iter().map(|s| s.kind.as_str()).collect();
        return Err(ConfigError::invalid(
            "seal",
            format!(
                "only one seal block is supported by coffer, found {} ({}); seal migration \
                 and multiple seals are not supported",
                kinds.len(),
                kinds.join(", ")
            ),
        ));
    }
    let config = ServerConfig {
        storage,
        listeners: p.listeners,
        seal: p.seals.into_iter().next(),
        api_addr: p.api_addr,
        cluster_addr: p.cluster_addr,
        cluster_name: p.cluster_name,
        default_lease_ttl: p.default_lease_ttl,
        max_lease_ttl: p.max_lease_ttl,
        disable_mlock: p.disable_mlock.unwrap_or(false),
        ui: p.ui.unwrap_or(false),
        disable_cache: p.disable_cache.unwrap_or(false),
        log_level: p.log_level,
        log_format: p.log_format,
        pid_file: p.pid_file,
        plugin_directory: p.plugin_directory,
    };
    // Vault's CreateCore: unset or 0 means 768h, and default must not exceed max.
    let default_ttl = config.effective_default_lease_ttl();
    let max_ttl = config.effective_max_lease_ttl();
    if default_ttl > max_ttl {
        let default_note = if matches!(config.default_lease_ttl, Some(d) if !d.is_zero()) {
            ""
        } else {
            ", Vault's default when unset"
        };
        return Err(ConfigError::invalid(
            "default_lease_ttl",
            format!(
                "default_lease_ttl ({}s{default_note}) is larger than max_lease_ttl ({}s)",
                default_ttl.as_secs(),
                max_ttl.as_secs()
            ),
        ));
    }
    Ok(Loaded { config, warnings })
}

fn parse_root(root: &Value, warnings: &mut Vec<String>) -> Result<Partial, ConfigError> {
    let Value::Object(obj) = root else {
        return Err(ConfigError::invalid(
            "(root)",
            format!(
                "the configuration must be an object, got {}",
                type_name(root)
            ),
        ));
    };
    let mut p = Partial::default();
    match (obj.get("storage"), obj.get("backend")) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "backend",
                "both \"storage\" and its legacy alias \"backend\" are set; use only \"storage\"",
            ))
        }
        (Some(v), None) => p.storage = Some(parse_storage("storage", v, warnings)?),
        (None, Some(v)) => p.storage = Some(parse_storage("backend", v, warnings)?),
        (None, None) => {}
    }
    for (key, value) in obj {
        match key.as_str() {
            "storage" | "backend" => {}
            "listener" => p.listeners = parse_listeners(value, warnings)?,
            "seal" => p.seals = parse_seals(value)?,
            "api_addr" => p.api_addr = Some(url_string(value, key)?),
            "cluster_addr" => p.cluster_addr = Some(url_string(value, key)?),
            "cluster_name" => p.cluster_name = Some(nonempty_string(value, key)?),
            "default_lease_ttl" => p.default_lease_ttl = Some(duration(value, key)?),
            "max_lease_ttl" => p.max_lease_ttl = Some(duration(value, key)?),
            "disable_mlock" => p.disable_mlock = Some(boolean(value, key)?),
            "ui" => p.ui = Some(boolean(value, key)?),
            "disable_cache" => p.disable_cache = Some(boolean(value, key)?),
            "log_level" => p.log_level = Some(log_level(value, key)?),
            "log_format" => p.log_format = Some(log_format(value, key)?),
            "pid_file" => p.pid_file = Some(path_buf(value, key)?),
            "plugin_directory" => p.plugin_directory = Some(path_buf(value, key)?),
            k if UNSUPPORTED_TOP_LEVEL.contains(&k) => warnings.push(unsupported(k, "")),
            k => warnings.push(unknown(k, "")),
        }
    }
    Ok(p)
}

fn unsupported(key: &str, context: &str) -> String {
    format!("{key:?} is not supported by coffer and is ignored{context}")
}

fn unknown(key: &str, context: &str) -> String {
    format!("unknown or unsupported field {key:?} in configuration{context}; it is ignored")
}

// ---- storage

fn parse_storage(
    key: &str,
    value: &Value,
    warnings: &mut Vec<String>,
) -> Result<StorageConfig, ConfigError> {
    let blocks = labelled_blocks(value, key)?;
    let (kind, body) = match blocks.as_slice() {
        [] => {
            return Err(ConfigError::invalid(
                key,
                format!("expected a block such as {key} \"raft\" {{ ... }}"),
            ))
        }
        [one] => *one,
        many => {
            let kinds: Vec<&str> = many.iter().map(|(kind, _)| *kind).collect();
            return Err(ConfigError::invalid(
                key,
                format!(
                    "only one {key} block is allowed, found {} ({})",
                    many.len(),
                    kinds.join(", ")
                ),
            ));
        }
    };
    let prefix = join(key, kind);
    match kind {
        "raft" => Ok(StorageConfig::Raft(parse_raft(&prefix, body, warnings)?)),
        "inmem" => {
            for (k, v) in body {
                if !is_type_key(k, v, kind) {
                    warnings.push(unknown(&join(&prefix, k), ""));
                }
            }
            Ok(StorageConfig::Inmem)
        }
        other => {
            let what = if VAULT_STORAGE_TYPES.contains(&other) {
                "is a Vault storage type that coffer does not support"
            } else {
                "is not a known storage type"
            };
            Err(ConfigError::invalid(
                prefix,
                format!(
                    "{key} type {other:?} {what}; supported storage types are \"raft\" and \
                     \"inmem\""
                ),
            ))
        }
    }
}

fn parse_raft(
    prefix: &str,
    body: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<RaftStorage, ConfigError> {
    let mut raft = RaftStorage::default();
    let mut path = None;
    for (k, v) in body {
        let key = join(prefix, k);
        match k.as_str() {
            "path" => path = Some(path_buf(v, &key)?),
            "node_id" => raft.node_id = Some(nonempty_string(v, &key)?),
            "performance_multiplier" => raft.performance_multiplier = Some(uint32(v, &key)?),
            "autopilot_reconcile_interval" => {
                raft.autopilot_reconcile_interval = Some(duration(v, &key)?)
            }
            "autopilot_update_interval" => {
                raft.autopilot_update_interval = Some(duration(v, &key)?)
            }
            "retry_join" => {
                let blocks = unlabelled_blocks(v, &key)?;
                let total = blocks.len();
                for (index, block) in blocks.into_iter().enumerate() {
                    let context = if total > 1 {
                        format!(" (retry_join block {} of {total})", index + 1)
                    } else {
                        String::new()
                    };
                    if let Some(entry) = parse_retry_join(&key, block, &context, warnings)? {
                        raft.retry_join.push(entry);
                    }
                }
            }
            _ if is_type_key(k, v, "raft") => {}
            other if UNSUPPORTED_RAFT.contains(&other) => warnings.push(unsupported(&key, "")),
            _ => warnings.push(unknown(&key, "")),
        }
    }
    raft.path = path.ok_or_else(|| {
        ConfigError::invalid(
            join(prefix, "path"),
            "required: the directory where the Raft log and data are kept",
        )
    })?;
    Ok(raft)
}

fn parse_retry_join(
    prefix: &str,
    body: &Map<String, Value>,
    context: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<RetryJoin>, ConfigError> {
    let mut entry = RetryJoin::default();
    let mut leader = None;
    let mut auto_join = None;
    for (k, v) in body {
        let key = join(prefix, k);
        match k.as_str() {
            "leader_api_addr" => leader = Some(ctx(context, url_string(v, &key))?),
            "leader_ca_cert_file" => {
                entry.leader_ca_cert_file = Some(ctx(context, path_buf(v, &key))?)
            }
            "leader_client_cert_file" => {
                entry.leader_client_cert_file = Some(ctx(context, path_buf(v, &key))?)
            }
            "leader_client_key_file" => {
                entry.leader_client_key_file = Some(ctx(context, path_buf(v, &key))?)
            }
            "leader_tls_servername" => {
                entry.leader_tls_servername = Some(ctx(context, nonempty_string(v, &key))?)
            }
            "auto_join" => {
                auto_join = Some(ctx(context, nonempty_string(v, &key))?);
                warnings.push(format!(
                    "{key:?} (cloud auto-discovery) is not supported by coffer and is \
                     ignored{context}; list the peers with leader_api_addr instead"
                ));
            }
            "auto_join_scheme" | "auto_join_port" => {
                ctx(context, string(v, &key))?;
                warnings.push(unsupported(&key, context));
            }
            "leader_ca_cert" | "leader_client_cert" | "leader_client_key" => {
                ctx(context, string(v, &key))?;
                warnings.push(format!(
                    "{key:?} (inline PEM) is not supported by coffer and is ignored{context}; \
                     use {k}_file instead"
                ));
            }
            _ => warnings.push(unknown(&key, context)),
        }
    }
    match (leader, auto_join) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            prefix,
            format!("only one of leader_api_addr and auto_join may be set{context}"),
        )),
        (None, None) => Err(ConfigError::invalid(
            join(prefix, "leader_api_addr"),
            format!(
                "required: each retry_join block needs leader_api_addr (or Vault's auto_join, \
                 which coffer does not support){context}"
            ),
        )),
        (None, Some(_)) => {
            warnings.push(format!(
                "{prefix:?}: a block with only auto_join has no peer coffer can use; the \
                 block is ignored{context}"
            ));
            Ok(None)
        }
        (Some(leader), None) => {
            entry.leader_api_addr = leader;
            Ok(Some(entry))
        }
    }
}

/// Append "(listener 2 of 3, ...)"-style context to an error's message.
fn ctx<T>(context: &str, result: Result<T, ConfigError>) -> Result<T, ConfigError> {
    result.map_err(|e| add_context(e, context))
}

fn add_context(e: ConfigError, context: &str) -> ConfigError {
    match e {
        ConfigError::Invalid { key, message } => ConfigError::Invalid {
            key,
            message: format!("{message}{context}"),
        },
        other => other,
    }
}

// ---- listeners

fn parse_listeners(
    value: &Value,
    warnings: &mut Vec<String>,
) -> Result<Vec<TcpListener>, ConfigError> {
    let blocks = labelled_blocks(value, "listener")?;
    let total = blocks.len();
    let mut listeners = Vec::with_capacity(total);
    for (index, (kind, body)) in blocks.into_iter().enumerate() {
        if kind != "tcp" {
            return Err(ConfigError::invalid(
                join("listener", kind),
                format!(
                    "listener type {kind:?} is not supported by coffer; only \"tcp\" listeners \
                     are"
                ),
            ));
        }
        listeners.push(parse_tcp_listener(body, index, total, warnings)?);
    }
    Ok(listeners)
}

fn parse_tcp_listener(
    body: &Map<String, Value>,
    index: usize,
    total: usize,
    warnings: &mut Vec<String>,
) -> Result<TcpListener, ConfigError> {
    let address_for_context = match body.get("address") {
        Some(Value::String(s)) => s.clone(),
        _ => DEFAULT_LISTENER_ADDRESS.to_string(),
    };
    let context = if total > 1 {
        format!(
            " (listener {} of {total}, address {address_for_context:?})",
            index + 1
        )
    } else {
        format!(" (listener address {address_for_context:?})")
    };
    let mut l = TcpListener::default();
    for (k, v) in body {
        let key = join("listener.tcp", k);
        match k.as_str() {
            "address" => l.address = ctx(&context, nonempty_string(v, &key))?,
            "cluster_address" => l.cluster_address = Some(ctx(&context, nonempty_string(v, &key))?),
            "tls_disable" => l.tls_disable = ctx(&context, boolean(v, &key))?,
            "tls_cert_file" => l.tls_cert_file = Some(ctx(&context, path_buf(v, &key))?),
            "tls_key_file" => l.tls_key_file = Some(ctx(&context, path_buf(v, &key))?),
            "tls_client_ca_file" => l.tls_client_ca_file = Some(ctx(&context, path_buf(v, &key))?),
            "tls_require_and_verify_client_cert" => {
                l.tls_require_and_verify_client_cert = ctx(&context, boolean(v, &key))?
            }
            "tls_disable_client_certs" => {
                l.tls_disable_client_certs = ctx(&context, boolean(v, &key))?
            }
            "tls_min_version" => l.tls_min_version = ctx(&context, tls_version(v, &key))?,
            _ if is_type_key(k, v, "tcp") => {}
            other if UNSUPPORTED_LISTENER.contains(&other) => {
                warnings.push(unsupported(&key, &context))
            }
            _ => warnings.push(unknown(&key, &context)),
        }
    }
    if l.tls_disable {
        let set: Vec<&str> = [
            ("tls_cert_file", l.tls_cert_file.is_some()),
            ("tls_key_file", l.tls_key_file.is_some()),
            ("tls_client_ca_file", l.tls_client_ca_file.is_some()),
            (
                "tls_require_and_verify_client_cert",
                l.tls_require_and_verify_client_cert,
            ),
        ]
        .into_iter()
        .filter_map(|(name, is_set)| is_set.then_some(name))
        .collect();
        if !set.is_empty() {
            warnings.push(format!(
                "\"listener.tcp.tls_disable\" is true, so {} {} ignored{context}",
                set.join(", "),
                if set.len() == 1 { "is" } else { "are" }
            ));
        }
    } else {
        for (name, present) in [
            ("tls_cert_file", l.tls_cert_file.is_some()),
            ("tls_key_file", l.tls_key_file.is_some()),
        ] {
            if !present {
                return Err(ConfigError::invalid(
                    join("listener.tcp", name),
                    format!("required unless tls_disable = true; TLS is on by default{context}"),
                ));
            }
        }
        if l.tls_require_and_verify_client_cert && l.tls_disable_client_certs {
            return Err(ConfigError::invalid(
                "listener.tcp.tls_disable_client_certs",
                format!(
                    "tls_disable_client_certs and tls_require_and_verify_client_cert are \
                     mutually exclusive{context}"
                ),
            ));
        }
    }
    Ok(l)
}

fn tls_version(value: &Value, key: &str) -> Result<TlsVersion, ConfigError> {
    let text = string(value, key)?;
    match text.trim().to_ascii_lowercase().as_str() {
        "tls12" => Ok(TlsVersion::Tls12),
        "tls13" => Ok(TlsVersion::Tls13),
        "tls10" | "tls11" => Err(ConfigError::invalid(
            key,
            format!("{text:?} is not supported by coffer; use \"tls12\" or \"tls13\""),
        )),
        _ => Err(ConfigError::invalid(
            key,
            format!("invalid TLS version {text:?}; expected \"tls12\" or \"tls13\""),
        )),
    }
}

// ---- seals

fn parse_seals(value: &Value) -> Result<Vec<SealConfig>, ConfigError> {
    let mut seals = Vec::new();
    for (kind, body) in labelled_blocks(value, "seal")? {
        let mut options = BTreeMap::new();
        for (k, v) in body {
            if is_type_key(k, v, kind) {
                continue;
            }
            let key = join(&join("seal", kind), k);
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    // No value in the message: seal options hold credentials.
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "expected a string, number or boolean, got {}",
                            type_name(other)
                        ),
                    ));
                }
            };
            options.insert(k.clone(), text);
        }
        seals.push(SealConfig {
            kind: kind.to_string(),
            options,
        });
    }
    Ok(seals)
}

// ---------------------------------------------------------------------------------------
// Block shapes

/// A block's label (`tcp` in `listener "tcp" {}`) and body.
type LabelledBlock<'a> = (&'a str, &'a Map<String, Value>);

/// `key "label" { body }` in every shape HCL's JSON-spec conversion and Vault's JSON produce:
/// `{"label": {..}}`, `{"label": [{..}, {..}]}`, `[{"label": {..}}, ...]`, and the typed form
/// `{"type": "label", ...}` / `[{"type": "label", ...}]`. Returns (label, body) in order.
fn labelled_blocks<'a>(value: &'a Value, key: &str) -> Result<Vec<LabelledBlock<'a>>, ConfigError> {
    let mut out = Vec::new();
    collect_labelled(value, key, &mut out)?;
    Ok(out)
}

fn collect_labelled<'a>(
    value: &'a Value,
    key: &str,
    out: &mut Vec<LabelledBlock<'a>>,
) -> Result<(), ConfigError> {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(kind)) = map.get("type") {
                out.push((kind.as_str(), map));
                return Ok(());
            }
            for (label, body) in map {
                match body {
                    Value::Object(body) => out.push((label.as_str(), body)),
                    Value::Array(items) => {
                        for item in items {
                            match item {
                                Value::Object(body) => out.push((label.as_str(), body)),
                                other => return Err(not_a_block(&join(key, label), other)),
                            }
                        }
                    }
                    other => return Err(not_a_block(&join(key, label), other)),
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| collect_labelled(item, key, out)),
        other => Err(ConfigError::invalid(
            key,
            format!(
                "expected {key} \"<type>\" {{ ... }} block(s), got {}",
                type_name(other)
            ),
        )),
    }
}

fn not_a_block(key: &str, value: &Value) -> ConfigError {
    ConfigError::invalid(
        key,
        format!("expected a block ({{ ... }}), got {}", type_name(value)),
    )
}

/// `key { body }`, possibly repeated: an object or an array of objects.
fn unlabelled_blocks<'a>(
    value: &'a Value,
    key: &str,
) -> Result<Vec<&'a Map<String, Value>>, ConfigError> {
    match value {
        Value::Object(map) => Ok(vec![map]),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Object(map) => Ok(map),
                other => Err(not_a_block(key, other)),
            })
            .collect(),
        other => Err(not_a_block(key, other)),
    }
}

/// The `type = "<label>"` key of the typed block form, which is not an option.
fn is_type_key(key: &str, value: &Value, label: &str) -> bool {
    key == "type" && value.as_str() == Some(label)
}

// ---------------------------------------------------------------------------------------
// Scalars

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A string; a number is accepted and rendered (HCL1, which Vault uses, does the same).
fn string(value: &Value, key: &str) -> Result<String, ConfigError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(ConfigError::invalid(
            key,
            format!("expected a string, got {}", type_name(other)),
        )),
    }
}

fn nonempty_string(value: &Value, key: &str) -> Result<String, ConfigError> {
    let text = string(value, key)?;
    if text.trim().is_empty() {
        return Err(ConfigError::invalid(key, "must not be empty"));
    }
    Ok(text)
}

fn path_buf(value: &Value, key: &str) -> Result<PathBuf, ConfigError> {
    nonempty_string(value, key).map(PathBuf::from)
}

/// An address with an http(s) scheme, as Vault requires for api_addr, cluster_addr and
/// leader_api_addr.
fn url_string(value: &Value, key: &str) -> Result<String, ConfigError> {
    let text = nonempty_string(value, key)?;
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(text),
        _ => Err(ConfigError::invalid(
            key,
            format!(
                "{text:?} is not a valid address: expected a URL with a scheme, e.g. \
                 \"https://10.0.0.1:8200\""
            ),
        )),
    }
}

/// Vault is lax with booleans: true/false, 1/0, and the strings Go's `strconv.ParseBool`
/// accepts ("true", "1", "t", "TRUE", "false", "0", "f", ...).
fn boolean(value: &Value, key: &str) -> Result<bool, ConfigError> {
    let bad = |shown: String| {
        ConfigError::invalid(
            key,
            format!("invalid boolean {shown}: expected true or false (or \"true\"/\"false\", 1/0)"),
        )
    };
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => match n.as_u64() {
            Some(1) => Ok(true),
            Some(0) => Ok(false),
            _ => Err(bad(n.to_string())),
        },
        Value::String(s) => match s.trim() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(bad(format!("{s:?}"))),
        },
        other => Err(ConfigError::invalid(
            key,
            format!("expected a boolean, got {}", type_name(other)),
        )),
    }
}

/// A non-negative integer that fits in u32; a numeric string is accepted (Vault keeps
/// storage options as strings).
fn uint32(value: &Value, key: &str) -> Result<u32, ConfigError> {
    let parsed = match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.trim().parse::<u32>().ok(),
        other => {
            return Err(ConfigError::invalid(
                key,
                format!("expected a non-negative integer, got {}", type_name(other)),
            ))
        }
    };
    parsed.ok_or_else(|| {
        ConfigError::invalid(
            key,
            format!("invalid value {value}: expected a non-negative integer"),
        )
    })
}

/// A Vault duration: integer seconds or a string such as "768h", "1h30m", "7d".
fn duration(value: &Value, key: &str) -> Result<Duration, ConfigError> {
    duration_from_json(value).map_err(|_| {
        ConfigError::invalid(
            key,
            format!(
                "invalid duration {value}: expected seconds (e.g. 3600) or a duration string \
                 (e.g. \"768h\", \"1h30m\")"
            ),
        )
    })
}

fn log_level(value: &Value, key: &str) -> Result<String, ConfigError> {
    let text = string(value, key)?;
    let level = match text.trim().to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" | "notice" => "info",
        "warn" | "warning" => "warn",
        "err" | "error" => "error",
        _ => {
            return Err(ConfigError::invalid(
                key,
                format!("invalid log level {text:?}: expected trace, debug, info, warn or error"),
            ))
        }
    };
    Ok(level.to_string())
}

fn log_format(value: &Value, key: &str) -> Result<String, ConfigError> {
    let text = string(value, key)?;
    match text.trim().to_ascii_lowercase().as_str() {
        "standard" => Ok("standard".to_string()),
        "json" => Ok("json".to_string()),
        _ => Err(ConfigError::invalid(
            key,
            format!("invalid log format {text:?}: expected \"standard\" or \"json\""),
        )),
    }
}

#[cfg(test)]
mod tests;

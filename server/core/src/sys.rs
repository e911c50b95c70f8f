//! The enveloped `sys/` API served by the core itself: mounts and auth tables,
//! policies, capabilities, key status and rotation, seal, and the UI mount lookup.

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_policies::AclRequest;
use coffer_sdk::{fields, Operation};
use serde_json::{json, Map, Value};

use crate::handling::{LogicalRequest, LogicalResponse};
use crate::mounts::{self, normalize_mount_path, MountConfig, MountEntry, Mounted, Table};
use crate::token::TokenEntry;
use crate::{Core, CoreError, Unsealed};

/// `sys/` paths that need `sudo` on top of the ACL's allow (Vault's root paths).
pub const ROOT_PATHS: &[&str] = &[
    "sys/auth/*",
    "sys/remount",
    "sys/audit",
    "sys/audit/*",
    "sys/raw",
    "sys/raw/*",
    "sys/rotate",
    "sys/seal",
    "sys/step-down",
    "sys/plugins/catalog/*",
    "sys/revoke-prefix/*",
    "sys/revoke-force/*",
    "sys/leases/revoke-prefix/*",
    "sys/leases/revoke-force/*",
    "sys/leases/lookup/*",
    "sys/storage/raft/snapshot",
    "sys/storage/raft/remove-peer",
    "auth/token/create-orphan",
    "auth/token/revoke-orphan",
    "auth/token/accessors/",
    "auth/token/tidy",
    "auth/token/root",
];

/// Whether `path` is root-protected.
pub fn is_root_path(path: &str) -> bool {
    ROOT_PATHS.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => path == *p,
    })
}

fn ok_top(data: Value) -> LogicalResponse {
    let mut r = LogicalResponse::ok(data);
    r.copy_data_to_top = true;
    r
}

fn unsupported() -> CoreError {
    CoreError::Backend(coffer_sdk::SdkError::UnsupportedOperation)
}

fn ttl_field(data: &Map<String, Value>, key: &str) -> Result<Option<u64>, CoreError> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() || s == "system" => Ok(Some(0)),
        Some(v) => coffer_sdk::duration::duration_from_json(v)
            .map(|d| Some(d.as_secs()))
            .map_err(|e| CoreError::BadRequest(format!("{key}: {e}"))),
    }
}

fn string_map(v: Option<&Value>, key: &str) -> Result<BTreeMap<String, String>, CoreError> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(CoreError::BadRequest(format!("{key}.{k} must be a string"))),
                };
                out.insert(k.clone(), s);
            }
        }
        Some(_) => return Err(CoreError::BadRequest(format!("{key} must be an object"))),
    }
    Ok(out)
}

/// The JSON Vault shows for one mount.
pub fn mount_json(entry: &MountEntry) -> Value {
    let options = if entry.options.is_empty() {
        Value::Null
    } else {
        json!(entry.options)
    };
    json!({
        "type": entry.kind,
        "description": entry.description,
        "accessor": entry.accessor,
        "uuid": entry.uuid,
        "local": entry.local,
        "seal_wrap": entry.seal_wrap,
        "external_entropy_access": false,
        "options": options,
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
        "config": {
            "default_lease_ttl": entry.config.default_lease_ttl,
            "max_lease_ttl": entry.config.max_lease_ttl,
            "force_no_cache": entry.config.force_no_cache,
        },
    })
}

impl Core {
    /// Serve a `sys/` path (the request is already authorised).
    pub(crate) async fn handle_sys(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        token: Option<&TokenEntry>,
    ) -> Result<LogicalResponse, CoreError> {
        let path = req.path.strip_prefix("sys/").unwrap_or_default();
        let op = req.operation;
        let write = matches!(op, Operation::Update | Operation::Create);
        match path {
            "key-status" if op == Operation::Read => {
                let status = self.barrier.key_status()?;
                Ok(ok_top(json!({
                    "term": status.term,
                    "install_time": status.install_time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    "encryptions": status.encryptions,
                })))
            }
            "rotate" if write => {
                let term = self.barrier.rotate().await?;
                tracing::info!(term, "installed new encryption key");
                Ok(LogicalResponse::no_content(self.cluster.applied_index()))
            }
            "seal" if write => {
                self.seal_now().await?;
                Ok(LogicalResponse::no_content(0))
            }
            "mounts" | "auth" if op == Operation::Read => {
                let table = if path == "mounts" {
                    Table::Secret
                } else {
                    Table::Auth
                };
                let mut map = Map::new();
                for m in state.router()?.entries(table) {
                    map.insert(m.entry.path.clone(), mount_json(&m.entry));
                }
                Ok(ok_top(Value::Object(map)))
            }
            "remount" | "mounts/remount" if write => {
                let from = req
                    .data
                    .get("from")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let to = req
                    .data
                    .get("to")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let index = self.remount(state, from, to).await?;
                Ok(LogicalResponse::no_content(index))
            }
            "policy" if matches!(op, Operation::Read | Operation::List) => {
                let names = state.policies.list()?;
                Ok(ok_top(json!({ "policies": names, "keys": names })))
            }
            "policies/acl" | "policies/acl/" if matches!(op, Operation::Read | Operation::List) => {
                Ok(ok_top(json!({ "keys": state.policies.list()? })))
            }
            "capabilities-self" | "capabilities" | "capabilities-accessor" if write => {
                self.capabilities(state, path, req, token)
            }
            "audit" if op == Operation::Read => {
                let mut map = Map::new();
                for row in state.audit.table() {
                    map.insert(
                        row.path.clone(),
                        json!({
                            "type": row.kind,
                            "description": row.description,
                            "options": row.options,
                            "local": row.local,
                            "path": row.path,
                        }),
                    );
                }
                Ok(ok_top(Value::Object(map)))
            }
            "internal/ui/mounts" if op == Operation::Read => {
                let mut secret = Map::new();
                let mut auth = Map::new();
                for m in state.router()?.entries(Table::Secret) {
                    secret.insert(m.entry.path.clone(), mount_json(&m.entry));
                }
                for m in state.router()?.entries(Table::Auth) {
                    auth.insert(m.entry.path.clone(), mount_json(&m.entry));
                }
                Ok(LogicalResponse::ok(
                    json!({ "secret": secret, "auth": auth }),
                ))
            }
            _ => {
                if let Some(op) = path.strip_prefix("leases/") {
                    return self.handle_leases(state, req, op).await;
                }
                if path == "renew"
                    || path == "revoke"
                    || path.starts_with("renew/")
                    || path.starts_with("revoke/")
                    || path.starts_with("revoke-prefix/")
                    || path.starts_with("revoke-force/")
                {
                    return self.handle_leases(state, req, path).await;
                }
                if path.starts_with("wrapping/") {
                    return self.handle_wrapping(state, req, token).await;
                }
                if let Some(resp) = self.handle_cluster_sys(state, path, req).await? {
                    return Ok(resp);
                }
                if let Some(name) = path.strip_prefix("policies/acl/") {
                    return self.policy_op(state, name, req, false).await;
                }
                if let Some(name) = path.strip_prefix("policy/") {
                    return self.policy_op(state, name, req, true).await;
                }
                if let Some(rest) = path.strip_prefix("internal/ui/mounts/") {
                    return self.ui_mount(state, rest);
                }
                if let Some(rest) = path.strip_prefix("audit-hash/") {
                    let device = state
                        .audit
                        .device(&normalize_mount_path(rest)?)
                        .ok_or_else(|| {
                            CoreError::BadRequest(format!("unknown audit backend {rest}"))
                        })?;
                    let input = req
                        .data
                        .get("input")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            CoreError::BadRequest("the \"input\" parameter is required".into())
                        })?;
                    return Ok(ok_top(json!({ "hash": device.hash(input) })));
                }
                if let Some(rest) = path.strip_prefix("audit/") {
                    let device_path = normalize_mount_path(rest)?;
                    return match op {
                        Operation::Update | Operation::Create => {
                            let kind = req
                                .data
                                .get("type")
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            let description = req
                                .data
                                .get("description")
                                .and_then(Value::as_str)
                                .unwrap_or_default();
                            let options = string_map(req.data.get("options"), "options")?;
                            let index = crate::audit::enable(
                                &state.store,
                                &state.audit,
                                &device_path,
                                kind,
                                description,
                                options,
                            )
                            .await?;
                            Ok(LogicalResponse::no_content(index))
                        }
                        Operation::Delete => {
                            let index =
                                crate::audit::disable(&state.store, &state.audit, &device_path)
                                    .await?;
                            Ok(LogicalResponse::no_content(index))
                        }
                        _ => Err(unsupported()),
                    };
                }
                if path == "plugins/catalog" || path.starts_with("plugins/catalog/") {
                    let rest = path.trim_start_matches("plugins/catalog");
                    return self.plugin_catalog(state, rest, req).await;
                }
                for (prefix, table) in [("mounts/", Table::Secret), ("auth/", Table::Auth)] {
                    if let Some(rest) = path.strip_prefix(prefix) {
                        return self.mount_op(state, table, rest, req).await;
                    }
                }
                Err(CoreError::NotFound(format!(
                    "no handler for route \"{}\". route entry not found.",
                    req.path
                )))
            }
        }
    }

    async fn policy_op(
        &self,
        state: &Arc<Unsealed>,
        name: &str,
        req: &LogicalRequest,
        legacy: bool,
    ) -> Result<LogicalResponse, CoreError> {
        match req.operation {
            Operation::Read => {
                let name = crate::policy_store::normalize_name(name)?;
                let text = state
                    .policies
                    .text(&name)?
                    .ok_or_else(|| CoreError::NotFound(String::new()))?;
                Ok(if legacy {
                    ok_top(json!({ "name": name, "rules": text }))
                } else {
                    ok_top(json!({ "name": name, "policy": text }))
                })
            }
            Operation::Update | Operation::Create => {
                let field = if legacy && req.data.contains_key("rules") {
                    "rules"
                } else {
                    "policy"
                };
                let text = match req.data.get(field) {
                    Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
                    Some(Value::String(_)) | None => {
                        return Err(CoreError::BadRequest(
                            "'policy' parameter not supplied or empty".into(),
                        ))
                    }
                    Some(_) => {
                        return Err(CoreError::BadRequest("'policy' must be a string".into()))
                    }
                };
                let text = decode_maybe_base64(&text);
                let index = state.policies.put(name, &text).await?;
                Ok(LogicalResponse::no_content(index))
            }
            Operation::Delete => {
                let index = state.policies.delete(name).await?;
                Ok(LogicalResponse::no_content(index))
            }
            _ => Err(unsupported()),
        }
    }

    fn capabilities(
        &self,
        state: &Arc<Unsealed>,
        which: &str,
        req: &LogicalRequest,
        caller: Option<&TokenEntry>,
    ) -> Result<LogicalResponse, CoreError> {
        let mut paths: Vec<String> = match req.data.get("paths") {
            Some(v) => fields::as_str_list(v)
                .ok_or_else(|| CoreError::BadRequest("paths must be a list of strings".into()))?,
            None => Vec::new(),
        };
        if let Some(p) = req.data.get("path").and_then(Value::as_str) {
            paths.push(p.to_string());
        }
        if paths.is_empty() {
            return Err(CoreError::BadRequest("missing paths".into()));
        }
        let subject: Arc<TokenEntry> = match which {
            "capabilities-self" => Arc::new(caller.cloned().ok_or(CoreError::PermissionDenied)?),
            "capabilities" => {
                let token = req
                    .data
                    .get("token")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                state
                    .tokens
                    .lookup(token)?
                    .ok_or_else(|| CoreError::BadRequest("invalid token".into()))?
            }
            _ => {
                let accessor = req
                    .data
                    .get("accessor")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                state
                    .tokens
                    .lookup_accessor(accessor)?
                    .ok_or_else(|| CoreError::BadRequest("invalid accessor".into()))?
            }
        };
        let acl = state.policies.acl(&subject.policies)?;
        let mut data = Map::new();
        let mut all = Vec::new();
        for path in &paths {
            let path = path.trim_start_matches('/');
            let caps: Vec<&str> = if acl.is_root() {
                vec!["root"]
            } else {
                acl.capability_names(path)
            };
            let mut caps = if caps.is_empty() { vec!["deny"] } else { caps };
            caps.sort_unstable();
            all.extend(caps.iter().map(|s| s.to_string()));
            data.insert(path.to_string(), json!(caps));
        }
        all.sort();
        all.dedup();
        data.insert("capabilities".into(), json!(all));
        Ok(ok_top(Value::Object(data)))
    }

    fn ui_mount(&self, state: &Arc<Unsealed>, path: &str) -> Result<LogicalResponse, CoreError> {
        let router = state.router()?;
        let (m, _) = router
            .route(path)
            .or_else(|| router.route(&format!("auth/{path}")))
            .ok_or_else(|| {
                self.standby_miss(CoreError::BadRequest(format!(
                    "no matching mount for path {path:?}"
                )))
            })?;
        let mut v = mount_json(&m.entry);
        if let Value::Object(map) = &mut v {
            map.insert("path".into(), Value::String(m.entry.path.clone()));
        }
        Ok(LogicalResponse::ok(v))
    }

    async fn mount_op(
        &self,
        state: &Arc<Unsealed>,
        table: Table,
        rest: &str,
        req: &LogicalRequest,
    ) -> Result<LogicalResponse, CoreError> {
        let (path, tune) = match rest.strip_suffix("/tune") {
            Some(p) => (p, true),
            None => (rest, false),
        };
        let path = normalize_mount_path(path)?;
        match (req.operation, tune) {
            (Operation::Read, _) => {
                let router = state.router()?;
                let m = router
                    .entries(table)
                    .into_iter()
                    .find(|m| m.entry.path == path)
                    .ok_or_else(|| {
                        CoreError::BadRequest(format!("cannot fetch sysview for path {path:?}"))
                    })?;
                if tune {
                    let ttl = self.mount_ttl(&m);
                    let mut data = json!({
                        "description": m.entry.description,
                        "default_lease_ttl": ttl.default_lease_ttl.as_secs(),
                        "max_lease_ttl": ttl.max_lease_ttl.as_secs(),
                        "force_no_cache": m.entry.config.force_no_cache,
                    });
                    if !m.entry.options.is_empty() {
                        data["options"] = json!(m.entry.options);
                    }
                    Ok(ok_top(data))
                } else {
                    Ok(ok_top(mount_json(&m.entry)))
                }
            }
            (Operation::Update | Operation::Create, true) => {
                let index = self.tune(state, table, &path, &req.data).await?;
                Ok(LogicalResponse::no_content(index))
            }
            (Operation::Update | Operation::Create, false) => {
                let kind = req
                    .data
                    .get("type")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        CoreError::BadRequest("backend type must be specified as a string".into())
                    })?
                    .to_string();
                let config_value = req.data.get("config").cloned().unwrap_or(Value::Null);
                let config_map = match &config_value {
                    Value::Object(m) => m.clone(),
                    Value::Null => Map::new(),
                    _ => return Err(CoreError::BadRequest("config must be an object".into())),
                };
                let mut options = string_map(req.data.get("options"), "options")?;
                let kind = if kind == "generic" {
                    "kv".to_string()
                } else {
                    kind
                };
                if kind == "kv-v2" {
                    options.insert("version".into(), "2".into());
                }
                let kind = if kind == "kv-v2" {
                    "kv".to_string()
                } else {
                    kind
                };
                let entry = MountEntry {
                    path: path.clone(),
                    kind,
                    description: req
                        .data
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    accessor: String::new(),
                    uuid: String::new(),
                    config: MountConfig {
                        default_lease_ttl: ttl_field(&config_map, "default_lease_ttl")?
                            .unwrap_or(0),
                        max_lease_ttl: ttl_field(&config_map, "max_lease_ttl")?.unwrap_or(0),
                        force_no_cache: config_map
                            .get("force_no_cache")
                            .and_then(fields::as_bool)
                            .unwrap_or(false),
                    },
                    options,
                    local: req
                        .data
                        .get("local")
                        .and_then(fields::as_bool)
                        .unwrap_or(false),
                    seal_wrap: req
                        .data
                        .get("seal_wrap")
                        .and_then(fields::as_bool)
                        .unwrap_or(false),
                };
                let index = self.mount(state, table, entry).await?;
                Ok(LogicalResponse::no_content(index))
            }
            (Operation::Delete, false) => {
                let index = self.unmount(state, table, &path).await?;
                Ok(LogicalResponse::no_content(index))
            }
            _ => Err(unsupported()),
        }
    }

    /// Add a mount to a table.
    pub async fn mount(
        &self,
        state: &Arc<Unsealed>,
        table: Table,
        mut entry: MountEntry,
    ) -> Result<u64, CoreError> {
        let _guard = state.mount_lock.lock().await;
        let route = format!("{}{}", table.route_prefix(), entry.path);
        let reserved = ["sys/", "auth/", "cubbyhole/", "identity/"];
        if table == Table::Secret && reserved.iter().any(|r| route.starts_with(r)) {
            return Err(CoreError::BadRequest(format!(
                "cannot mount under reserved path {:?}",
                entry.path
            )));
        }
        if table == Table::Auth && entry.path == "token/" {
            return Err(CoreError::BadRequest(
                "token credential backend cannot be instantiated".into(),
            ));
        }
        let mut rows = mounts::load_table(&state.store, table)?;
        for row in &rows {
            if row.path.starts_with(&entry.path) || entry.path.starts_with(&row.path) {
                return Err(CoreError::BadRequest(format!(
                    "path is already in use at {}",
                    row.path
                )));
            }
        }
        entry.uuid = crate::new_uuid();
        entry.accessor = mounts::new_accessor(&entry.kind);
        // Validates the type and options before anything is written; an external plugin
        // is started (checksum, handshake) and kept for the router built below.
        let validated = mounts::instantiate(&state.store, &self.catalog, table, entry.clone())?;
        self.catalog.start_external(&validated.entry.uuid).await?;
        rows.push(entry);
        let index = state.store.put_json(table.storage_key(), &rows).await?;
        state.reload_router(&self.catalog)?;
        Ok(index)
    }

    /// Remove a mount and all its data.
    pub async fn unmount(
        &self,
        state: &Arc<Unsealed>,
        table: Table,
        path: &str,
    ) -> Result<u64, CoreError> {
        let _guard = state.mount_lock.lock().await;
        let mut rows = mounts::load_table(&state.store, table)?;
        let Some(pos) = rows.iter().position(|r| r.path == path) else {
            return Ok(self.cluster.applied_index());
        };
        if table == Table::Secret && mounts::BUILTIN_SECRET_TYPES.contains(&rows[pos].kind.as_str())
        {
            return Err(CoreError::BadRequest(format!("cannot unmount {path:?}")));
        }
        if table == Table::Auth && rows[pos].kind == "token" {
            return Err(CoreError::BadRequest(
                "token credential backend cannot be disabled".into(),
            ));
        }
        let entry = rows.remove(pos);
        let mounted = state.router()?.by_uuid(&entry.uuid).cloned();
        // Vault: revoke the mount's leases through its backend first; if one fails the
        // mount stays (nothing is deleted, no lease is dropped).
        if let Some(m) = &mounted {
            self.revoke_mount_leases(state, m).await?;
        }
        let index = state.store.put_json(table.storage_key(), &rows).await?;
        state.reload_router(&self.catalog)?;
        if let Some(m) = mounted {
            // Leases issued while the first pass ran (the mount was still routable).
            if let Err(e) = self.revoke_mount_leases(state, &m).await {
                tracing::warn!(mount = %entry.path, error = %e, "leases issued during unmount were not all revoked; they stay for retry");
            }
            if let Some(b) = &m.backend {
                if let Err(e) = b.cleanup().await {
                    tracing::warn!(mount = %entry.path, error = %e, "backend cleanup failed");
                }
            }
        }
        // Delete the data in bounded batches (one Raft entry each).
        let prefix = entry.storage_prefix(table);
        let keys = state.store.list_recursive(&prefix)?;
        for chunk in keys.chunks(512) {
            let ops = chunk
                .iter()
                .map(|k| coffer_barrier::barrier::LogicalOp::Delete { key: k.clone() })
                .collect();
            state.store.commit(ops).await?;
        }
        Ok(index)
    }

    async fn tune(
        &self,
        state: &Arc<Unsealed>,
        table: Table,
        path: &str,
        data: &Map<String, Value>,
    ) -> Result<u64, CoreError> {
        let _guard = state.mount_lock.lock().await;
        let mut rows = mounts::load_table(&state.store, table)?;
        let row = rows
            .iter_mut()
            .find(|r| r.path == path)
            .ok_or_else(|| CoreError::BadRequest(format!("no mount at {path:?}")))?;
        if let Some(v) = ttl_field(data, "default_lease_ttl")? {
            row.config.default_lease_ttl = v;
        }
        if let Some(v) = ttl_field(data, "max_lease_ttl")? {
            row.config.max_lease_ttl = v;
        }
        if row.config.max_lease_ttl != 0 && row.config.default_lease_ttl > row.config.max_lease_ttl
        {
            return Err(CoreError::BadRequest(
                "default_lease_ttl cannot exceed max_lease_ttl".into(),
            ));
        }
        if let Some(d) = data.get("description").and_then(Value::as_str) {
            row.description = d.to_string();
        }
        let options = string_map(data.get("options"), "options")?;
        for (k, v) in options {
            if k == "version" && row.kind == "kv" {
                let old = row
                    .options
                    .get("version")
                    .cloned()
                    .unwrap_or_else(|| "1".into());
                if v != "1" && v != "2" {
                    return Err(CoreError::BadRequest(format!("invalid kv version {v:?}")));
                }
                if old == "2" && v == "1" {
                    return Err(CoreError::BadRequest(
                        "cannot downgrade a versioned kv mount".into(),
                    ));
                }
            }
            row.options.insert(k, v);
        }
        let row = row.clone();
        mounts::instantiate(&state.store, &self.catalog, table, row)?;
        let index = state.store.put_json(table.storage_key(), &rows).await?;
        state.reload_router(&self.catalog)?;
        Ok(index)
    }

    async fn remount(&self, state: &Arc<Unsealed>, from: &str, to: &str) -> Result<u64, CoreError> {
        let (table, from_path, to_path) =
            match (from.strip_prefix("auth/"), to.strip_prefix("auth/")) {
                (Some(f), Some(t)) => (
                    Table::Auth,
                    normalize_mount_path(f)?,
                    normalize_mount_path(t)?,
                ),
                (None, None) => (
                    Table::Secret,
                    normalize_mount_path(from)?,
                    normalize_mount_path(to)?,
                ),
                _ => {
                    return Err(CoreError::BadRequest(
                        "cannot remount between secret engines and auth methods".into(),
                    ))
                }
            };
        let _guard = state.mount_lock.lock().await;
        let mut rows = mounts::load_table(&state.store, table)?;
        if rows
            .iter()
            .any(|r| r.path.starts_with(&to_path) || to_path.starts_with(&r.path))
        {
            return Err(CoreError::BadRequest(format!(
                "path already in use at {to_path}"
            )));
        }
        let row = rows
            .iter_mut()
            .find(|r| r.path == from_path)
            .ok_or_else(|| CoreError::BadRequest(format!("no matching mount at {from_path:?}")))?;
        if mounts::BUILTIN_SECRET_TYPES.contains(&row.kind.as_str()) || row.kind == "token" {
            return Err(CoreError::BadRequest(format!(
                "cannot remount {from_path:?}"
            )));
        }
        // Vault revokes the old path's leases (their ids name it); refuse if one fails.
        if let Some(m) = state.router()?.by_uuid(&row.uuid).cloned() {
            self.revoke_mount_leases(state, &m).await?;
        }
        row.path = to_path;
        let index = state.store.put_json(table.storage_key(), &rows).await?;
        state.reload_router(&self.catalog)?;
        Ok(index)
    }

    /// The ACL decision for a request (root paths need sudo).
    pub(crate) fn authorize(
        &self,
        state: &Unsealed,
        entry: &TokenEntry,
        req: &LogicalRequest,
        op: coffer_policies::Operation,
        root_path: bool,
    ) -> Result<(), CoreError> {
        let acl = state.policies.acl(&entry.policies)?;
        let mut acl_req = AclRequest::new(&req.path, op);
        if !req.data.is_empty() && !matches!(req.operation, Operation::Read | Operation::List) {
            acl_req = acl_req.with_params(&req.data);
        }
        if let Some(ttl) = req.wrap_ttl {
            acl_req = acl_req.with_wrap_ttl(ttl.as_secs());
        }
        let decision = acl.allow(&acl_req);
        if !decision.allowed || (root_path && !decision.root_privs) {
            tracing::debug!(path = %req.path, reason = ?decision.reason, "permission denied");
            return Err(CoreError::PermissionDenied);
        }
        Ok(())
    }
}

/// Vault accepts a policy body that is base64-encoded HCL/JSON.
fn decode_maybe_base64(text: &str) -> String {
    use base64::Engine;
    let trimmed = text.trim();
    if trimmed.contains('{') || trimmed.contains('"') {
        return text.to_string();
    }
    base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| text.to_string())
}

/// Default rows of a fresh mount table.
pub fn default_tables() -> (Vec<MountEntry>, Vec<MountEntry>) {
    let row = |path: &str, kind: &str, description: &str| MountEntry {
        path: path.into(),
        kind: kind.into(),
        description: description.into(),
        accessor: mounts::new_accessor(kind),
        uuid: crate::new_uuid(),
        config: MountConfig::default(),
        options: BTreeMap::new(),
        local: false,
        seal_wrap: false,
    };
    (
        vec![
            row(
                "cubbyhole/",
                "cubbyhole",
                "per-token private secret storage",
            ),
            row("identity/", "identity", "identity store"),
            row(
                "sys/",
                "system",
                "system endpoints used for control, policy and debugging",
            ),
        ],
        vec![row("token/", "token", "token based credentials")],
    )
}

/// The `Mounted` for a route, for handling.
pub type Route = (Arc<Mounted>, String);

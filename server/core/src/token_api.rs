//! `auth/token/*`: create, look up, renew and revoke service tokens (Vault's token
//! auth method, served by the core because it owns the token store).

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_sdk::{fields, Operation};
use serde_json::{json, Value};

use crate::handling::{LogicalRequest, LogicalResponse};
use crate::token::{new_service_token, TokenEntry};
use crate::{Core, CoreError, Unsealed};

fn rfc3339(unix: i64) -> Value {
    match chrono::DateTime::from_timestamp(unix, 0) {
        Some(t) if unix != 0 => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        _ => Value::Null,
    }
}

/// The `data` of a token lookup.
pub fn lookup_json(entry: &TokenEntry, id: &str) -> Value {
    let now = crate::now_unix();
    let remaining = if entry.expire_time == 0 {
        0
    } else {
        (entry.expire_time - now).max(0)
    };
    json!({
        "accessor": entry.accessor,
        "creation_time": entry.creation_time,
        "creation_ttl": entry.ttl,
        "display_name": entry.display_name,
        "entity_id": entry.entity_id,
        "expire_time": rfc3339(entry.expire_time),
        "explicit_max_ttl": entry.explicit_max_ttl,
        "id": id,
        "issue_time": rfc3339(entry.creation_time),
        "meta": if entry.meta.is_empty() { Value::Null } else { json!(entry.meta) },
        "num_uses": entry.num_uses,
        "orphan": entry.orphan,
        "path": entry.path,
        "period": if entry.period == 0 { Value::Null } else { json!(entry.period) },
        "policies": entry.policies,
        "renewable": entry.renewable,
        "ttl": remaining,
        "type": entry.token_type,
    })
}

/// The `auth` block returned when a token is issued.
pub fn auth_json(token: &str, entry: &TokenEntry) -> Value {
    let token_policies = entry.policies.clone();
    json!({
        "client_token": token,
        "accessor": entry.accessor,
        "policies": token_policies,
        "token_policies": token_policies,
        "identity_policies": Value::Null,
        "metadata": if entry.meta.is_empty() { Value::Null } else { json!(entry.meta) },
        "lease_duration": entry.ttl,
        "renewable": entry.renewable,
        "entity_id": entry.entity_id,
        "token_type": entry.token_type,
        "orphan": entry.orphan,
        "mfa_requirement": Value::Null,
        "num_uses": entry.num_uses,
    })
}

pub(crate) fn secs(req: &LogicalRequest, key: &str) -> Result<i64, CoreError> {
    match req.data.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) if s.is_empty() => Ok(0),
        Some(v) => coffer_sdk::duration::duration_from_json(v)
            .map(|d| d.as_secs() as i64)
            .map_err(|e| CoreError::BadRequest(format!("{key}: {e}"))),
    }
}

fn auth_response(token: &str, entry: &TokenEntry) -> LogicalResponse {
    LogicalResponse {
        status: 200,
        auth: Some(auth_json(token, entry)),
        ..Default::default()
    }
}

impl Core {
    /// Serve `auth/token/...` (already authorised by the pipeline).
    pub(crate) async fn handle_token(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        caller: &TokenEntry,
        caller_token: &str,
    ) -> Result<LogicalResponse, CoreError> {
        let path = req.path.strip_prefix("auth/token/").unwrap_or_default();
        let op = req.operation;
        let write = matches!(op, Operation::Update | Operation::Create);
        let field = |k: &str| {
            req.data
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        match path {
            "create" | "create-orphan" if write => {
                self.create_token(state, req, caller, path == "create-orphan", None)
                    .await
            }
            "roles" | "roles/" => self.handle_token_roles(state, req, "").await,
            "tidy" if write => self.tidy_tokens(state).await,
            "lookup-self" if op == Operation::Read || write => {
                Ok(LogicalResponse::ok(lookup_json(caller, caller_token)))
            }
            "lookup" if write || op == Operation::Read => {
                let token = field("token");
                let entry = state
                    .tokens
                    .lookup(&token)?
                    .ok_or_else(|| CoreError::BadRequest("bad token".into()))?;
                Ok(LogicalResponse::ok(lookup_json(&entry, &token)))
            }
            "lookup-accessor" if write => {
                let entry = state
                    .tokens
                    .lookup_accessor(&field("accessor"))?
                    .ok_or_else(|| CoreError::BadRequest("invalid accessor".into()))?;
                Ok(LogicalResponse::ok(lookup_json(&entry, "")))
            }
            "revoke-self" if write => {
                state.tokens.revoke_tree(caller).await?;
                Ok(LogicalResponse::no_content(self.cluster.applied_index()))
            }
            "revoke" | "revoke-orphan" if write => {
                let token = field("token");
                if let Some(entry) = state.tokens.lookup(&token)? {
                    if path == "revoke-orphan" {
                        state.tokens.revoke_orphan(&entry).await?;
                    } else {
                        state.tokens.revoke_tree(&entry).await?;
                    }
                }
                Ok(LogicalResponse::no_content(self.cluster.applied_index()))
            }
            "revoke-accessor" if write => {
                if let Some(entry) = state.tokens.lookup_accessor(&field("accessor"))? {
                    state.tokens.revoke_tree(&entry).await?;
                }
                Ok(LogicalResponse::no_content(self.cluster.applied_index()))
            }
            "renew-self" if write => self.renew_token(state, req, caller, caller_token).await,
            "renew" if write => {
                let token = field("token");
                let entry = state
                    .tokens
                    .lookup(&token)?
                    .ok_or_else(|| CoreError::BadRequest("bad token".into()))?;
                self.renew_token(state, req, &entry, &token).await
            }
            "renew-accessor" if write => {
                let entry = state
                    .tokens
                    .lookup_accessor(&field("accessor"))?
                    .ok_or_else(|| CoreError::BadRequest("invalid accessor".into()))?;
                let mut resp = self.renew_token(state, req, &entry, "").await?;
                if let Some(Value::Object(a)) = resp.auth.as_mut() {
                    a.insert("client_token".into(), Value::String(String::new()));
                }
                Ok(resp)
            }
            "accessors/" | "accessors" if op == Operation::List => {
                let keys = state.tokens.accessors()?;
                if keys.is_empty() {
                    return Err(CoreError::NotFound(String::new()));
                }
                Ok(LogicalResponse::ok(json!({ "keys": keys })))
            }
            _ => {
                if let Some(name) = path.strip_prefix("roles/") {
                    return self.handle_token_roles(state, req, name).await;
                }
                if let Some(name) = path.strip_prefix("create/").filter(|_| write) {
                    let role = self
                        .token_role(state, name)?
                        .ok_or_else(|| CoreError::BadRequest(format!("unknown role {name}")))?;
                    return self
                        .create_token(state, req, caller, false, Some(role))
                        .await;
                }
                Err(CoreError::NotFound(format!(
                    "no handler for route \"{}\". route entry not found.",
                    req.path
                )))
            }
        }
    }

    /// `auth/token/tidy`: drop index entries whose token is gone.
    async fn tidy_tokens(&self, state: &Arc<Unsealed>) -> Result<LogicalResponse, CoreError> {
        use crate::token::{ACCESSOR_PREFIX, PARENT_PREFIX};
        let mut ops = Vec::new();
        for key in state.store.list(ACCESSOR_PREFIX)? {
            let full = format!("{ACCESSOR_PREFIX}{key}");
            let target = state
                .store
                .get(&full)?
                .and_then(|b| String::from_utf8(b).ok());
            let alive = match target {
                Some(hash) => state.tokens.lookup_hash(&hash)?.is_some(),
                None => false,
            };
            if !alive {
                ops.push(coffer_barrier::barrier::LogicalOp::Delete { key: full });
            }
        }
        for parent in state.store.list(PARENT_PREFIX)? {
            for child in state.store.list(&format!("{PARENT_PREFIX}{parent}"))? {
                if state.tokens.lookup_hash(&child)?.is_none() {
                    ops.push(coffer_barrier::barrier::LogicalOp::Delete {
                        key: format!("{PARENT_PREFIX}{parent}{child}"),
                    });
                }
            }
        }
        let removed = ops.len();
        for chunk in ops.chunks(512) {
            state.store.commit(chunk.to_vec()).await?;
        }
        Ok(LogicalResponse {
            status: 202,
            warnings: vec![format!(
                "tidy operation completed; removed {removed} dangling index entries"
            )],
            ..Default::default()
        })
    }

    async fn create_token(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        parent: &TokenEntry,
        orphan_path: bool,
        role: Option<crate::token_roles::TokenRole>,
    ) -> Result<LogicalResponse, CoreError> {
        let list = |k: &str| -> Result<Option<Vec<String>>, CoreError> {
            match req.data.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => fields::as_str_list(v)
                    .map(Some)
                    .ok_or_else(|| CoreError::BadRequest(format!("{k} must be a list of strings"))),
            }
        };
        let flag = |k: &str| -> Result<Option<bool>, CoreError> {
            match req.data.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => fields::as_bool(v)
                    .map(Some)
                    .ok_or_else(|| CoreError::BadRequest(format!("{k} must be a boolean"))),
            }
        };
        let requested_type = req.data.get("type").and_then(Value::as_str);
        let token_type = match (role.as_ref().map(|r| r.token_type.as_str()), requested_type) {
            (Some("service"), _) => "service",
            (Some("batch"), _) => "batch",
            (Some("default-batch"), None) => "batch",
            (_, Some("batch")) => "batch",
            (_, None | Some("service") | Some("default") | Some("")) => "service",
            (_, Some(other)) => {
                return Err(CoreError::BadRequest(format!(
                    "invalid token type {other:?}"
                )))
            }
        };
        let parent_root = parent.is_root();
        let no_parent = flag("no_parent")?.unwrap_or(false);
        if no_parent && !parent_root && !orphan_path {
            return Err(CoreError::BadRequest(
                "root or sudo privileges required to create orphan token".into(),
            ));
        }
        let orphan = orphan_path || no_parent || role.as_ref().is_some_and(|r| r.orphan);
        let custom_id = req
            .data
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        if custom_id.is_some() && !parent_root {
            return Err(CoreError::BadRequest(
                "root or sudo privileges required to specify token id".into(),
            ));
        }
        let no_default = flag("no_default_policy")?.unwrap_or(false);
        let mut policies = match list("policies")? {
            Some(p) => p
                .into_iter()
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
            None => match &role {
                Some(r) if !r.allowed_policies.is_empty() => r.allowed_policies.clone(),
                _ => parent.policies.clone(),
            },
        };
        if let Some(r) = &role {
            if let Some(bad) = policies.iter().find(|p| r.disallowed_policies.contains(p)) {
                return Err(CoreError::BadRequest(format!(
                    "token policies ({bad}) must not be in the role's disallowed policies"
                )));
            }
            if !r.allowed_policies.is_empty() {
                if let Some(bad) = policies
                    .iter()
                    .find(|p| *p != "default" && !r.allowed_policies.contains(p))
                {
                    return Err(CoreError::BadRequest(format!(
                        "token policies ({bad}) must be subset of the role's allowed policies"
                    )));
                }
            }
        }
        let role_allows = role
            .as_ref()
            .is_some_and(|r| !r.allowed_policies.is_empty());
        if !parent_root && !role_allows {
            let allowed: Vec<&String> = parent.policies.iter().collect();
            if let Some(bad) = policies
                .iter()
                .find(|p| *p != "default" && !allowed.contains(p))
            {
                return Err(CoreError::BadRequest(format!(
                    "child policies must be subset of parent policies: {bad} is not"
                )));
            }
        }
        if no_default {
            policies.retain(|p| p != "default");
        } else if !policies.iter().any(|p| p == "root" || p == "default") {
            policies.push("default".into());
        }
        if policies.is_empty() {
            policies.push("default".into());
        }
        let is_root_token = policies.iter().any(|p| p == "root");
        let ttl = secs(req, "ttl")?;
        let mut explicit_max = secs(req, "explicit_max_ttl")?;
        let mut period = secs(req, "period")?;
        if let Some(r) = &role {
            if r.token_period > 0 {
                period = r.token_period;
            }
            if r.token_explicit_max_ttl > 0
                && (explicit_max == 0 || explicit_max > r.token_explicit_max_ttl)
            {
                explicit_max = r.token_explicit_max_ttl;
            }
        }
        let num_uses = req
            .data
            .get("num_uses")
            .map(|v| {
                fields::as_i64(v).filter(|n| *n >= 0).ok_or_else(|| {
                    CoreError::BadRequest("num_uses must be a non-negative integer".into())
                })
            })
            .transpose()?
            .unwrap_or(0);
        let sys_default = self.config.default_lease_ttl.as_secs() as i64;
        let sys_max = self.config.max_lease_ttl.as_secs() as i64;
        let mut effective = if period > 0 {
            period
        } else if ttl > 0 {
            ttl.min(sys_max)
        } else if is_root_token {
            0
        } else {
            sys_default
        };
        if explicit_max > 0 && (effective == 0 || effective > explicit_max) {
            effective = explicit_max;
        }
        // A child never outlives a parent that expires.
        if parent.expire_time != 0 {
            let left = parent.expire_time - crate::now_unix();
            if effective == 0 || effective > left {
                effective = left.max(1);
            }
        }
        let now = crate::now_unix();
        let mut meta = BTreeMap::new();
        if let Some(m) = req.data.get("meta") {
            match m {
                Value::Object(obj) => {
                    for (k, v) in obj {
                        let v = v.as_str().ok_or_else(|| {
                            CoreError::BadRequest("meta values must be strings".into())
                        })?;
                        meta.insert(k.clone(), v.to_string());
                    }
                }
                Value::Null => {}
                _ => {
                    return Err(CoreError::BadRequest(
                        "meta must be a map of strings".into(),
                    ))
                }
            }
        }
        let display = req
            .data
            .get("display_name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let display_name = if display.is_empty() {
            "token".to_string()
        } else {
            format!("token-{display}")
        };
        let entry = TokenEntry {
            policies,
            parent: if orphan {
                String::new()
            } else {
                parent.id_hash.clone()
            },
            path: match &role {
                Some(r) if r.path_suffix.is_empty() => format!("auth/token/create/{}", r.name),
                Some(r) => format!("auth/token/create/{}/{}", r.name, r.path_suffix),
                None if orphan_path => "auth/token/create-orphan".into(),
                None => "auth/token/create".into(),
            },
            meta,
            display_name,
            num_uses,
            creation_time: now,
            ttl: effective,
            expire_time: if effective == 0 { 0 } else { now + effective },
            explicit_max_ttl: explicit_max,
            period,
            renewable: flag("renewable")?.unwrap_or(role.as_ref().is_none_or(|r| r.renewable))
                && effective != 0,
            token_type: "service".into(),
            orphan,
            ..Default::default()
        };
        if token_type == "batch" {
            if is_root_token {
                return Err(CoreError::BadRequest(
                    "batch tokens cannot be root tokens".into(),
                ));
            }
            if num_uses > 0 || period > 0 || custom_id.is_some() {
                return Err(CoreError::BadRequest(
                    "batch tokens cannot have num_uses, a period or a custom id".into(),
                ));
            }
            let (token, entry) = state.tokens.create_batch(entry)?;
            return Ok(auth_response(&token, &entry));
        }
        let token = custom_id
            .map(String::from)
            .unwrap_or_else(new_service_token);
        if state.tokens.lookup(&token)?.is_some() {
            return Err(CoreError::BadRequest(
                "token with this ID already exists".into(),
            ));
        }
        let entry = state.tokens.create(&token, entry).await?;
        let mut resp = auth_response(&token, &entry);
        resp.index = self.cluster.applied_index();
        Ok(resp)
    }

    /// Turn an auth method's login answer into a token.
    pub(crate) async fn issue_login_token(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        mount: &crate::mounts::Mounted,
        login: coffer_sdk::LoginAuth,
    ) -> Result<(String, TokenEntry), CoreError> {
        let mut policies: Vec<String> = login
            .policies
            .iter()
            .map(|p| p.trim().to_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        if !login.no_default_policy && !policies.iter().any(|p| p == "default") {
            policies.push("default".into());
        }
        if policies.iter().any(|p| p == "root") {
            return Err(CoreError::BadRequest(
                "auth methods cannot create root tokens".into(),
            ));
        }
        let limits = self.mount_ttl(mount);
        let mount_default = limits.default_lease_ttl.as_secs() as i64;
        let mount_max = limits.max_lease_ttl.as_secs() as i64;
        let period = login.period.as_secs() as i64;
        let mut ttl = if period > 0 {
            period
        } else if login.ttl.is_zero() {
            mount_default
        } else {
            login.ttl.as_secs() as i64
        };
        let max = if login.max_ttl.is_zero() {
            mount_max
        } else {
            (login.max_ttl.as_secs() as i64).min(mount_max)
        };
        ttl = ttl.min(max).max(1);
        let now = crate::now_unix();
        let mount_name = mount.entry.path.trim_end_matches('/').replace('/', "-");
        let entry = TokenEntry {
            policies,
            path: req.path.clone(),
            meta: login.metadata.clone(),
            display_name: if login.display_name.is_empty() {
                mount_name
            } else {
                format!("{mount_name}-{}", login.display_name)
            },
            num_uses: login.num_uses as i64,
            creation_time: now,
            ttl,
            expire_time: now + ttl,
            explicit_max_ttl: if login.max_ttl.is_zero() { 0 } else { max },
            period,
            renewable: login.renewable,
            token_type: "service".into(),
            orphan: true,
            bound_cidrs: login.bound_cidrs.clone(),
            mount_uuid: mount.entry.uuid.clone(),
            internal: login.internal.clone(),
            ..Default::default()
        };
        if login.token_type == "batch" || login.token_type == "default-batch" {
            return state.tokens.create_batch(entry);
        }
        let token = new_service_token();
        let entry = state.tokens.create(&token, entry).await?;
        Ok((token, entry))
    }

    async fn renew_token(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        entry: &TokenEntry,
        token: &str,
    ) -> Result<LogicalResponse, CoreError> {
        let renewed = self.renew_entry(state, req, entry).await?;
        let mut resp = auth_response(token, &renewed);
        resp.index = self.cluster.applied_index();
        Ok(resp)
    }

    /// Extend a token's TTL (by `increment`, its period, or its original TTL), within
    /// the system max and its explicit max; reschedules its lease.
    pub(crate) async fn renew_entry(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        entry: &TokenEntry,
    ) -> Result<TokenEntry, CoreError> {
        if !entry.renewable || entry.expire_time == 0 {
            return Err(CoreError::BadRequest("lease is not renewable".into()));
        }
        let increment = secs(req, "increment")?;
        let now = crate::now_unix();
        let mut period = entry.period;
        let mut base_ttl = entry.ttl;
        if !entry.mount_uuid.is_empty() {
            // Tokens from an auth method renew only if the method agrees (user still
            // exists, policies unchanged), with the TTLs it answers now.
            let router = state.router()?;
            let mount = router.by_uuid(&entry.mount_uuid).cloned().ok_or_else(|| {
                CoreError::BadRequest("the auth method that issued this token is gone".into())
            })?;
            if let Some(backend) = &mount.backend {
                let mut sdk_req = coffer_sdk::Request {
                    id: crate::new_uuid(),
                    operation: coffer_sdk::Operation::Update,
                    path: entry
                        .path
                        .strip_prefix(&mount.route_path())
                        .unwrap_or_default()
                        .to_string(),
                    mount_point: mount.route_path(),
                    data: req.data.clone(),
                    query: Default::default(),
                    storage: mount.storage.clone(),
                    caller: None,
                    mount_ttl: coffer_sdk::MountTtl::default(),
                    remote_addr: req.remote_addr.clone(),
                    lease: None,
                };
                let answer = backend
                    .renew(&mut sdk_req, &Value::Object(entry.internal.clone()))
                    .await?;
                if let Some(auth) = answer.auth {
                    if !auth.period.is_zero() {
                        period = auth.period.as_secs() as i64;
                    }
                    if !auth.ttl.is_zero() {
                        base_ttl = auth.ttl.as_secs() as i64;
                    }
                }
            }
        }
        let mut ttl = if period > 0 {
            period
        } else if increment > 0 {
            increment
        } else {
            base_ttl
        };
        ttl = ttl.min(self.config.max_lease_ttl.as_secs() as i64);
        if entry.explicit_max_ttl > 0 {
            let hard_end = entry.creation_time + entry.explicit_max_ttl;
            ttl = ttl.min((hard_end - now).max(0));
        }
        let mut renewed = entry.clone();
        renewed.ttl = ttl;
        renewed.expire_time = now + ttl;
        state.tokens.update(&renewed).await?;
        Ok(renewed)
    }
}

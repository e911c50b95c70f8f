//! Token roles (`auth/token/roles/:name`): named templates for `auth/token/create/:role`
//! that bound the policies a token may get and fix its orphan/renewable/period/type.

use std::sync::Arc;

use coffer_sdk::{fields, Operation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::handling::{LogicalRequest, LogicalResponse};
use crate::{Core, CoreError, Unsealed};

/// Storage prefix of token roles.
pub const ROLE_PREFIX: &str = "sys/token/role/";

/// A token role.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TokenRole {
    /// Role name.
    pub name: String,
    /// Policies tokens of this role may have (empty = the parent's).
    pub allowed_policies: Vec<String>,
    /// Policies tokens of this role may never have.
    pub disallowed_policies: Vec<String>,
    /// Tokens have no parent.
    pub orphan: bool,
    /// Tokens may be renewed.
    pub renewable: bool,
    /// Period in seconds (0 = none).
    pub token_period: i64,
    /// Explicit max TTL in seconds (0 = none).
    pub token_explicit_max_ttl: i64,
    /// `service`, `batch`, `default-service` or `default-batch`.
    pub token_type: String,
    /// Appended to the creation path.
    pub path_suffix: String,
}

fn list(data: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, CoreError> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => fields::as_str_list(v)
            .map(|l| Some(l.into_iter().map(|s| s.to_lowercase()).collect()))
            .ok_or_else(|| CoreError::BadRequest(format!("{key} must be a list of strings"))),
    }
}

fn flag(data: &Map<String, Value>, key: &str) -> Result<Option<bool>, CoreError> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => fields::as_bool(v)
            .map(Some)
            .ok_or_else(|| CoreError::BadRequest(format!("{key} must be a boolean"))),
    }
}

fn secs(data: &Map<String, Value>, key: &str) -> Result<Option<i64>, CoreError> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => coffer_sdk::duration::duration_from_json(v)
            .map(|d| Some(d.as_secs() as i64))
            .map_err(|e| CoreError::BadRequest(format!("{key}: {e}"))),
    }
}

/// Validate a role name.
fn role_name(name: &str) -> Result<String, CoreError> {
    let name = name.trim().to_lowercase();
    if name.is_empty() || name.contains('/') || name.len() > 256 {
        return Err(CoreError::BadRequest(format!("invalid role name {name:?}")));
    }
    Ok(name)
}

impl Core {
    /// A stored role.
    pub(crate) fn token_role(
        &self,
        state: &Unsealed,
        name: &str,
    ) -> Result<Option<TokenRole>, CoreError> {
        state
            .store
            .get_json(&format!("{ROLE_PREFIX}{}", role_name(name)?))
    }

    /// `auth/token/roles[/:name]`.
    pub(crate) async fn handle_token_roles(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        name: &str,
    ) -> Result<LogicalResponse, CoreError> {
        if name.is_empty() {
            if req.operation != Operation::List && req.operation != Operation::Read {
                return Err(CoreError::Backend(
                    coffer_sdk::SdkError::UnsupportedOperation,
                ));
            }
            let keys = state.store.list(ROLE_PREFIX)?;
            if keys.is_empty() {
                return Err(CoreError::NotFound(String::new()));
            }
            return Ok(LogicalResponse::ok(json!({ "keys": keys })));
        }
        let name = role_name(name)?;
        let key = format!("{ROLE_PREFIX}{name}");
        match req.operation {
            Operation::Read => {
                let role: TokenRole = state
                    .store
                    .get_json(&key)?
                    .ok_or_else(|| CoreError::NotFound(String::new()))?;
                Ok(LogicalResponse::ok(json!({
                        "name": role.name,
                        "allowed_policies": role.allowed_policies,
                        "disallowed_policies": role.disallowed_policies,
                        "orphan": role.orphan,
                        "renewable": role.renewable,
                        "token_period": role.token_period,
                        "token_explicit_max_ttl": role.token_explicit_max_ttl,
                        "token_type": role.token_type,
                        "path_suffix": role.path_suffix,
                })))
            }
            Operation::Create | Operation::Update => {
                let mut role: TokenRole = state.store.get_json(&key)?.unwrap_or(TokenRole {
                    name: name.clone(),
                    renewable: true,
                    token_type: "default-service".into(),
                    ..Default::default()
                });
                let d = &req.data;
                if let Some(v) = list(d, "allowed_policies")? {
                    role.allowed_policies = v;
                }
                if let Some(v) = list(d, "disallowed_policies")? {
                    role.disallowed_policies = v;
                }
                if let Some(v) = flag(d, "orphan")? {
                    role.orphan = v;
                }
                if let Some(v) = flag(d, "renewable")? {
                    role.renewable = v;
                }
                if let Some(v) = secs(d, "token_period")?.or(secs(d, "period")?) {
                    role.token_period = v;
                }
                if let Some(v) = secs(d, "token_explicit_max_ttl")?.or(secs(d, "explicit_max_ttl")?)
                {
                    role.token_explicit_max_ttl = v;
                }
                if let Some(v) = d.get("token_type").and_then(Value::as_str) {
                    if ![
                        "service",
                        "batch",
                        "default-service",
                        "default-batch",
                        "default",
                    ]
                    .contains(&v)
                    {
                        return Err(CoreError::BadRequest(format!("invalid token_type {v:?}")));
                    }
                    role.token_type = v.to_string();
                }
                if let Some(v) = d.get("path_suffix").and_then(Value::as_str) {
                    if v.contains("..") {
                        return Err(CoreError::BadRequest(
                            "path_suffix cannot contain '..'".into(),
                        ));
                    }
                    role.path_suffix = v.trim_matches('/').to_string();
                }
                let index = state.store.put_json(&key, &role).await?;
                Ok(LogicalResponse::no_content(index))
            }
            Operation::Delete => {
                let index = state.store.delete(&key).await?;
                Ok(LogicalResponse::no_content(index))
            }
            _ => Err(CoreError::Backend(
                coffer_sdk::SdkError::UnsupportedOperation,
            )),
        }
    }
}

//! Role handlers: list, read, create/update, delete, and the role id.

use coffer_sdk::storage::json_op;
use coffer_sdk::{Request, Response, SdkError, Storage, StorageExt, StorageOp};
use serde_json::{Map, Value};

use crate::backend::AppRole;
use crate::cidr;
use crate::params::{ignored_fields_warning, MAX_INPUT_LEN};
use crate::store::{self, RoleEntry, RoleIdEntry, SecretIdEntry};
use crate::token;

/// Legacy field names of a role and the token field each maps to.
pub(crate) const ALIASES: &[(&str, &str)] =
    &[("policies", "token_policies"), ("period", "token_period")];

/// Fields a role write understands besides the token fields and aliases.
const ROLE_FIELDS: &[&str] = &[
    "role_id",
    "bind_secret_id",
    "secret_id_bound_cidrs",
    "bound_cidr_list",
    "secret_id_num_uses",
    "secret_id_ttl",
    "local_secret_ids",
];

/// 404 with Vault's message for a role that a sub-path needs.
pub(crate) fn no_such_role(name: &str) -> SdkError {
    SdkError::Coded {
        status: 404,
        message: format!("role {name:?} does not exist"),
    }
}

/// A role id from the body: required to be a non-empty string within Vault's limit.
fn role_id_field(value: &Value) -> Result<String, SdkError> {
    let Value::String(role_id) = value else {
        return Err(SdkError::bad("field \"role_id\" must be a string"));
    };
    if role_id.is_empty() {
        return Err(SdkError::bad(
            "invalid role_id supplied, or failed to generate a role_id",
        ));
    }
    if role_id.len() > MAX_INPUT_LEN {
        return Err(SdkError::bad(format!(
            "role_id is longer than maximum of {MAX_INPUT_LEN} bytes"
        )));
    }
    Ok(role_id.clone())
}

/// Storage ops that write `role` under `name` and point its role id at it, dropping the
/// index entry of `previous_role_id` when that changed. 400 when another role owns the
/// role id.
async fn role_ops(
    app: &AppRole,
    storage: &dyn Storage,
    name: &str,
    role: &RoleEntry,
    previous_role_id: Option<&str>,
) -> Result<Vec<StorageOp>, SdkError> {
    if !role.bind_secret_id
        && role.secret_id_bound_cidrs.is_empty()
        && role.token.token_bound_cidrs.is_empty()
    {
        return Err(SdkError::bad(
            "at least one constraint should be enabled on the role",
        ));
    }
    let hasher = app.hasher_for_write(storage).await?;
    let index_key = store::role_id_key(&hasher.role_id(&role.role_id));
    if let Some(owner) = storage.get_json::<RoleIdEntry>(&index_key).await? {
        if owner.name != name {
            return Err(SdkError::bad("role_id already in use"));
        }
    }
    let mut ops = vec![
        json_op(&store::role_key(name), role)?,
        json_op(
            &index_key,
            &RoleIdEntry {
                name: name.to_string(),
            },
        )?,
    ];
    if let Some(previous) = previous_role_id.filter(|p| *p != role.role_id) {
        ops.push(StorageOp::Delete {
            key: store::role_id_key(&hasher.role_id(previous)),
        });
    }
    Ok(ops)
}

impl AppRole {
    pub(crate) async fn list_roles(&self, req: &Request) -> Result<Response, SdkError> {
        Response::list(req.storage.list(store::ROLE_PREFIX).await?)
    }

    pub(crate) async fn read_role(&self, req: &Request, name: &str) -> Result<Response, SdkError> {
        let role = store::load_role(req.storage.as_ref(), name)
            .await?
            .ok_or(SdkError::NotFound)?;
        let mut data = Map::new();
        data.insert("bind_secret_id".into(), role.bind_secret_id.into());
        data.insert(
            "secret_id_bound_cidrs".into(),
            role.secret_id_bound_cidrs.clone().into(),
        );
        data.insert("secret_id_num_uses".into(), role.secret_id_num_uses.into());
        data.insert("secret_id_ttl".into(), role.secret_id_ttl.into());
        data.insert("local_secret_ids".into(), role.local_secret_ids.into());
        role.token.read_into(&mut data, ALIASES);
        Ok(Response::data(data))
    }

    /// Create or update role `name`; with `must_exist`, a missing role is a 404 (the
    /// per-field sub-paths) instead of being created.
    pub(crate) async fn write_role(
        &self,
        req: &Request,
        name: &str,
        must_exist: bool,
    ) -> Result<Response, SdkError> {
        let storage = req.storage.as_ref();
        let _guard = self.lock().await;
        let existing = store::load_role(storage, name).await?;
        let creating = existing.is_none();
        if creating && must_exist {
            return Err(SdkError::UnsupportedPath);
        }
        let mut role = existing.clone().unwrap_or(RoleEntry {
            bind_secret_id: true,
            ..RoleEntry::default()
        });
        role.token.parse(req, ALIASES)?;
        if let Some(local) = req.get_bool("local_secret_ids")? {
            if !creating {
                return Err(SdkError::bad(
                    "local_secret_ids can only be modified during role creation",
                ));
            }
            role.local_secret_ids = local;
        }
        match req.data.get("role_id") {
            Some(v) if !v.is_null() => role.role_id = role_id_field(v)?,
            _ if creating => role.role_id = uuid::Uuid::new_v4().to_string(),
            _ => {}
        }
        if let Some(bind) = req.get_bool("bind_secret_id")? {
            role.bind_secret_id = bind;
        }
        let cidr_key = ["secret_id_bound_cidrs", "bound_cidr_list"]
            .into_iter()
            .find(|k| req.data.get(*k).is_some_and(|v| !v.is_null()));
        if let Some(key) = cidr_key {
            let blocks = req.get_str_list(key)?.unwrap_or_default();
            role.secret_id_bound_cidrs = cidr::validate_blocks(&blocks)
                .ok_or_else(|| SdkError::bad("invalid CIDR blocks"))?;
        }
        if let Some(uses) = req.get_i64("secret_id_num_uses")? {
            role.secret_id_num_uses = u64::try_from(uses)
                .map_err(|_| SdkError::bad("secret_id_num_uses cannot be negative"))?;
        }
        if let Some(ttl) = req.get_duration("secret_id_ttl")? {
            role.secret_id_ttl = ttl.as_secs();
        }
        let previous = existing.as_ref().map(|r| r.role_id.as_str());
        let ops = role_ops(self, storage, name, &role, previous).await?;
        storage.commit(ops).await?;

        let mut resp = Response::empty();
        if role.token.token_max_ttl > req.mount_ttl.max_lease_ttl.as_secs() {
            resp.warnings.push(
                "token_max_ttl is greater than the backend mount's maximum TTL value; issued \
                 tokens' max TTL value will be truncated"
                    .into(),
            );
        }
        let mut known: Vec<&str> = ROLE_FIELDS.to_vec();
        known.extend(ALIASES.iter().map(|(old, _)| *old));
        known.extend_from_slice(token::FIELDS);
        if let Some(warning) = ignored_fields_warning(req, &known) {
            resp.warnings.push(warning);
        }
        Ok(resp)
    }

    pub(crate) async fn delete_role(
        &self,
        req: &Request,
        name: &str,
    ) -> Result<Response, SdkError> {
        let storage = req.storage.as_ref();
        let _guard = self.lock().await;
        let Some(role) = store::load_role(storage, name).await? else {
            return Ok(Response::empty());
        };
        let mut ops = Vec::new();
        let folder = store::secret_id_folder(name);
        for hmac in storage.list(&folder).await? {
            let key = format!("{folder}{hmac}");
            if let Some(entry) = storage.get_json::<SecretIdEntry>(&key).await? {
                ops.push(StorageOp::Delete {
                    key: store::accessor_key(&entry.secret_id_accessor),
                });
            }
            ops.push(StorageOp::Delete { key });
        }
        if let Some(hasher) = self.hasher(storage).await? {
            ops.push(StorageOp::Delete {
                key: store::role_id_key(&hasher.role_id(&role.role_id)),
            });
        }
        ops.push(StorageOp::Delete {
            key: store::role_key(name),
        });
        storage.commit(ops).await?;
        Ok(Response::empty())
    }

    pub(crate) async fn read_role_id(
        &self,
        req: &Request,
        name: &str,
    ) -> Result<Response, SdkError> {
        let role = store::load_role(req.storage.as_ref(), name)
            .await?
            .ok_or(SdkError::NotFound)?;
        let mut data = Map::new();
        data.insert("role_id".into(), Value::String(role.role_id));
        Ok(Response::data(data))
    }

    pub(crate) async fn write_role_id(
        &self,
        req: &Request,
        name: &str,
    ) -> Result<Response, SdkError> {
        let storage = req.storage.as_ref();
        let role_id = match req.data.get("role_id") {
            None | Some(Value::Null) => return Err(SdkError::bad("missing role_id")),
            Some(v) => role_id_field(v)?,
        };
        let _guard = self.lock().await;
        let mut role = store::load_role(storage, name)
            .await?
            .ok_or_else(|| no_such_role(name))?;
        let previous = std::mem::replace(&mut role.role_id, role_id);
        let ops = role_ops(self, storage, name, &role, Some(&previous)).await?;
        storage.commit(ops).await?;
        let mut resp = Response::empty();
        if let Some(warning) = ignored_fields_warning(req, &["role_id"]) {
            resp.warnings.push(warning);
        }
        Ok(resp)
    }
}

/// One of Vault's per-field role sub-paths (`role/<name>/token-ttl`, …).
pub(crate) struct FieldPath {
    /// The last path segment.
    pub segment: &'static str,
    /// Body fields it accepts, preferred first (the first one names a missing value).
    pub fields: &'static [&'static str],
    /// The value DELETE resets to (`None`: read-only).
    pub reset: Option<fn() -> Value>,
}

fn zero() -> Value {
    Value::from(0)
}

fn empty_list() -> Value {
    Value::Array(Vec::new())
}

fn yes() -> Value {
    Value::Bool(true)
}

/// Vault's per-field role sub-paths.
pub(crate) const FIELD_PATHS: &[FieldPath] = &[
    FieldPath {
        segment: "policies",
        fields: &["token_policies", "policies"],
        reset: Some(empty_list),
    },
    FieldPath {
        segment: "secret-id-num-uses",
        fields: &["secret_id_num_uses"],
        reset: Some(zero),
    },
    FieldPath {
        segment: "secret-id-ttl",
        fields: &["secret_id_ttl"],
        reset: Some(zero),
    },
    FieldPath {
        segment: "token-ttl",
        fields: &["token_ttl"],
        reset: Some(zero),
    },
    FieldPath {
        segment: "token-max-ttl",
        fields: &["token_max_ttl"],
        reset: Some(zero),
    },
    FieldPath {
        segment: "token-num-uses",
        fields: &["token_num_uses"],
        reset: Some(zero),
    },
    FieldPath {
        segment: "period",
        fields: &["token_period", "period"],
        reset: Some(zero),
    },
    FieldPath {
        segment: "bind-secret-id",
        fields: &["bind_secret_id"],
        reset: Some(yes),
    },
    FieldPath {
        segment: "secret-id-bound-cidrs",
        fields: &["secret_id_bound_cidrs"],
        reset: Some(empty_list),
    },
    FieldPath {
        segment: "bound-cidr-list",
        fields: &["bound_cidr_list"],
        reset: Some(empty_list),
    },
    FieldPath {
        segment: "token-bound-cidrs",
        fields: &["token_bound_cidrs"],
        reset: Some(empty_list),
    },
    FieldPath {
        segment: "local-secret-ids",
        fields: &["local_secret_ids"],
        reset: None,
    },
];

impl AppRole {
    /// GET `role/<name>/<field>`: the field as the role read shows it.
    pub(crate) async fn read_role_field(
        &self,
        req: &Request,
        name: &str,
        field: &FieldPath,
    ) -> Result<Response, SdkError> {
        let full = self.read_role(req, name).await?.data.unwrap_or_default();
        let mut data = Map::new();
        let mut resp = Response::empty();
        for key in field.fields {
            // The legacy `bound_cidr_list` shows the blocks under their old name.
            let source = if *key == "bound_cidr_list" {
                resp.warnings.push(
                    "The \"bound_cidr_list\" field is deprecated and will be removed. Please \
                     use \"secret_id_bound_cidrs\" instead."
                        .into(),
                );
                "secret_id_bound_cidrs"
            } else {
                key
            };
            if let Some(value) = full.get(source) {
                data.insert((*key).to_string(), value.clone());
            }
        }
        resp.data = Some(data);
        Ok(resp)
    }

    /// POST `role/<name>/<field>`: change that field only (404 for a missing role).
    pub(crate) async fn write_role_field(
        &self,
        req: &Request,
        name: &str,
        field: &FieldPath,
    ) -> Result<Response, SdkError> {
        if field.reset.is_none() {
            return Err(SdkError::UnsupportedOperation);
        }
        let mut only = req.clone();
        only.data
            .retain(|k, v| field.fields.contains(&k.as_str()) && !v.is_null());
        if only.data.is_empty() {
            return Err(SdkError::bad(format!("missing {}", field.fields[0])));
        }
        let mut resp = self.write_role(&only, name, true).await?;
        if let Some(warning) = ignored_fields_warning(req, field.fields) {
            resp.warnings.push(warning);
        }
        Ok(resp)
    }

    /// DELETE `role/<name>/<field>`: reset that field to its default.
    pub(crate) async fn reset_role_field(
        &self,
        req: &Request,
        name: &str,
        field: &FieldPath,
    ) -> Result<Response, SdkError> {
        let Some(reset) = field.reset else {
            return Err(SdkError::UnsupportedOperation);
        };
        if store::load_role(req.storage.as_ref(), name)
            .await?
            .is_none()
        {
            return Ok(Response::empty());
        }
        let mut only = req.clone();
        only.data = Map::new();
        only.data.insert(field.fields[0].to_string(), reset());
        self.write_role(&only, name, true).await
    }
}

//! Secret-id handlers: generate (random or custom), list by accessor, look up and
//! destroy by secret id or accessor, and tidy.

use std::time::Duration;

use coffer_sdk::storage::json_op;
use coffer_sdk::{Request, Response, SdkError, Storage, StorageExt, StorageOp};
use serde_json::{Map, Value};

use crate::backend::AppRole;
use crate::cidr;
use crate::params::{go_time, ignored_fields_warning, metadata, trimmed_str, MAX_INPUT_LEN};
use crate::role::no_such_role;
use crate::store::{self, AccessorEntry, RoleEntry, SecretIdEntry};

/// Fields a secret-id generation understands.
const GENERATE_FIELDS: &[&str] = &[
    "secret_id",
    "metadata",
    "cidr_list",
    "token_bound_cidrs",
    "num_uses",
    "ttl",
];

/// Most storage ops per commit while tidying.
const TIDY_BATCH: usize = 256;

/// 400 for a role that a secret-id operation names but that does not exist.
fn missing_role(name: &str) -> SdkError {
    SdkError::bad(format!("role {name:?} does not exist"))
}

fn subset_error(role: &[String], secret_id: &[String]) -> SdkError {
    SdkError::bad(format!(
        "failed to verify subset relationship between CIDR blocks on the role {role:?} and \
         CIDR blocks on the secret ID {secret_id:?}"
    ))
}

/// Vault's `deriveSecretIDTTL`: the mount's max lease TTL caps a secret id's lifetime.
fn derive_ttl(ttl: u64, max: Duration) -> u64 {
    if ttl > max.as_secs() {
        max.as_secs()
    } else {
        ttl
    }
}

/// The fields Vault shows for a secret id.
pub(crate) fn lookup_data(entry: &SecretIdEntry) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert(
        "secret_id_accessor".into(),
        entry.secret_id_accessor.clone().into(),
    );
    data.insert("secret_id_num_uses".into(), entry.secret_id_num_uses.into());
    data.insert("secret_id_ttl".into(), entry.secret_id_ttl.into());
    data.insert(
        "creation_time".into(),
        go_time(Some(&entry.creation_time)).into(),
    );
    data.insert(
        "expiration_time".into(),
        go_time(entry.expiration_time.as_ref()).into(),
    );
    data.insert(
        "last_updated_time".into(),
        go_time(Some(&entry.last_updated_time)).into(),
    );
    data.insert(
        "metadata".into(),
        Value::Object(
            entry
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    );
    data.insert("cidr_list".into(), entry.cidr_list.clone().into());
    data.insert(
        "token_bound_cidrs".into(),
        entry.token_bound_cidrs.clone().into(),
    );
    data
}

/// Ops deleting a secret id and its accessor.
pub(crate) fn delete_ops(role_name: &str, entry: &SecretIdEntry) -> Vec<StorageOp> {
    vec![
        StorageOp::Delete {
            key: store::accessor_key(&entry.secret_id_accessor),
        },
        StorageOp::Delete {
            key: store::secret_id_key(role_name, &entry.secret_id_hmac),
        },
    ]
}

/// The secret-id settings of a generation request, checked against the role.
struct Settings {
    cidr_list: Vec<String>,
    token_bound_cidrs: Vec<String>,
    num_uses: u64,
    ttl: u64,
}

fn settings(req: &Request, role: &RoleEntry) -> Result<Settings, SdkError> {
    let cidr_list = req.get_str_list("cidr_list")?.unwrap_or_default();
    let cidr_list = cidr::validate_blocks(&cidr_list)
        .ok_or_else(|| SdkError::bad("failed to validate CIDR blocks"))?;
    if !cidr::is_subset(&cidr_list, &role.secret_id_bound_cidrs) {
        return Err(subset_error(&role.secret_id_bound_cidrs, &cidr_list));
    }
    let token_cidrs = req.get_str_list("token_bound_cidrs")?.unwrap_or_default();
    let token_bound_cidrs = cidr::validate_blocks(&token_cidrs)
        .ok_or_else(|| SdkError::bad("failed to validate token CIDR blocks"))?;
    if !cidr::is_subset(&token_bound_cidrs, &role.token.token_bound_cidrs) {
        return Err(subset_error(
            &role.token.token_bound_cidrs,
            &token_bound_cidrs,
        ));
    }
    let num_uses = match req.get_i64("num_uses")? {
        None => role.secret_id_num_uses,
        Some(n) => {
            let n = u64::try_from(n).map_err(|_| SdkError::bad("num_uses cannot be negative"))?;
            let cap = role.secret_id_num_uses;
            if cap > 0 && (n == 0 || n > cap) {
                return Err(SdkError::bad(
                    "num_uses cannot be higher than the role's secret_id_num_uses",
                ));
            }
            n
        }
    };
    let ttl = match req.get_duration("ttl")? {
        None => role.secret_id_ttl,
        Some(ttl) => {
            let ttl = ttl.as_secs();
            let cap = role.secret_id_ttl;
            if cap > 0 && (ttl == 0 || ttl > cap) {
                return Err(SdkError::bad(
                    "ttl cannot be longer than the role's secret_id_ttl",
                ));
            }
            ttl
        }
    };
    Ok(Settings {
        cidr_list,
        token_bound_cidrs,
        num_uses,
        ttl,
    })
}

impl AppRole {
    /// `role/<name>/secret-id` (`custom` = None) and `role/<name>/custom-secret-id`.
    pub(crate) async fn generate_secret_id(
        &self,
        req: &Request,
        name: &str,
        custom: Option<&str>,
    ) -> Result<Response, SdkError> {
        let storage = req.storage.as_ref();
        let secret_id = match custom {
            Some("") => return Err(SdkError::bad("missing secret_id")),
            Some(s) if s.len() > MAX_INPUT_LEN => {
                return Err(SdkError::bad(format!(
                    "secret_id is longer than maximum of {MAX_INPUT_LEN} bytes"
                )))
            }
            Some(s) => s.to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let _guard = self.lock().await;
        let role = store::load_role(storage, name)
            .await?
            .ok_or_else(|| no_such_role(name))?;
        if !role.bind_secret_id {
            return Err(SdkError::bad("bind_secret_id is not set on the role"));
        }
        let settings = settings(req, &role)?;
        let metadata = metadata(req)?;
        let hasher = self.hasher_for_write(storage).await?;
        let secret_id_hmac = hasher.secret_id(&secret_id);
        if store::load_secret_id(storage, name, &secret_id_hmac)
            .await?
            .is_some()
        {
            return Err(SdkError::bad("SecretID is already registered"));
        }
        let mut accessor = uuid::Uuid::new_v4().to_string();
        while store::load_accessor(storage, &accessor).await?.is_some() {
            accessor = uuid::Uuid::new_v4().to_string();
        }
        let now = self.now();
        let lifetime = derive_ttl(settings.ttl, req.mount_ttl.max_lease_ttl);
        let expiration_time = (lifetime > 0)
            .then(|| i64::try_from(lifetime).ok())
            .flatten()
            .and_then(chrono::Duration::try_seconds)
            .and_then(|d| now.checked_add_signed(d));
        let entry = SecretIdEntry {
            secret_id_hmac: secret_id_hmac.clone(),
            secret_id_accessor: accessor.clone(),
            secret_id_num_uses: settings.num_uses,
            secret_id_ttl: settings.ttl,
            creation_time: now,
            expiration_time,
            last_updated_time: now,
            metadata,
            cidr_list: settings.cidr_list,
            token_bound_cidrs: settings.token_bound_cidrs,
        };
        storage
            .commit(vec![
                json_op(
                    &store::accessor_key(&accessor),
                    &AccessorEntry {
                        role_name: name.to_string(),
                        secret_id_hmac: secret_id_hmac.clone(),
                    },
                )?,
                json_op(&store::secret_id_key(name, &secret_id_hmac), &entry)?,
            ])
            .await?;
        let mut data = Map::new();
        data.insert("secret_id".into(), Value::String(secret_id));
        data.insert("secret_id_accessor".into(), Value::String(accessor));
        data.insert("secret_id_ttl".into(), lifetime.into());
        data.insert("secret_id_num_uses".into(), entry.secret_id_num_uses.into());
        let mut resp = Response::data(data);
        if let Some(warning) = ignored_fields_warning(req, GENERATE_FIELDS) {
            resp.warnings.push(warning);
        }
        Ok(resp)
    }

    /// LIST `role/<name>/secret-id`: the accessors of the role's secret ids.
    pub(crate) async fn list_secret_ids(
        &self,
        req: &Request,
        name: &str,
    ) -> Result<Response, SdkError> {
        let storage = req.storage.as_ref();
        if store::load_role(storage, name).await?.is_none() {
            return Err(missing_role(name));
        }
        let folder = store::secret_id_folder(name);
        let mut accessors = Vec::new();
        for hmac in storage.list(&folder).await? {
            if let Some(entry) = store::load_secret_id(storage, name, &hmac).await? {
                accessors.push(entry.secret_id_accessor);
            }
        }
        accessors.sort();
        Response::list(accessors)
    }

    /// The secret id named by the body's `secret_id`, for lookup and destroy.
    async fn entry_by_secret_id(
        &self,
        req: &Request,
        name: &str,
    ) -> Result<Option<SecretIdEntry>, SdkError> {
        let storage = req.storage.as_ref();
        let secret_id =
            trimmed_str(req, "secret_id")?.ok_or_else(|| SdkError::bad("missing secret_id"))?;
        if store::load_role(storage, name).await?.is_none() {
            return Err(missing_role(name));
        }
        let Some(hasher) = self.hasher(storage).await? else {
            return Ok(None);
        };
        if secret_id.len() > MAX_INPUT_LEN {
            return Ok(None);
        }
        store::load_secret_id(storage, name, &hasher.secret_id(&secret_id)).await
    }

    /// `role/<name>/secret-id/lookup`: the secret id's properties, 204 when unknown.
    pub(crate) async fn lookup_secret_id(
        &self,
        req: &Request,
        name: &str,
    ) -> Result<Response, SdkError> {
        let Some(entry) = self.entry_by_secret_id(req, name).await? else {
            return Ok(Response::empty());
        };
        let storage = req.storage.as_ref();
        if store::load_accessor(storage, &entry.secret_id_accessor)
            .await?
            .is_none()
        {
            // A secret id without its accessor is revoked on sight, as Vault does.
            let _guard = self.lock().await;
            storage.commit(delete_ops(name, &entry)).await?;
            return Err(SdkError::bad("invalid secret id"));
        }
        Ok(Response::data(lookup_data(&entry)))
    }

    /// `role/<name>/secret-id/destroy`: delete the secret id (204 also when unknown).
    pub(crate) async fn destroy_secret_id(
        &self,
        req: &Request,
        name: &str,
    ) -> Result<Response, SdkError> {
        let _guard = self.lock().await;
        if let Some(entry) = self.entry_by_secret_id(req, name).await? {
            req.storage.commit(delete_ops(name, &entry)).await?;
        }
        Ok(Response::empty())
    }

    /// The accessor named by the body's `secret_id_accessor` if it belongs to role
    /// `name`; 404 with Vault's message otherwise.
    async fn accessor_of_role(
        &self,
        req: &Request,
        name: &str,
    ) -> Result<(String, AccessorEntry), SdkError> {
        let storage = req.storage.as_ref();
        let accessor = trimmed_str(req, "secret_id_accessor")?
            .ok_or_else(|| SdkError::bad("missing secret_id_accessor"))?;
        if store::load_role(storage, name).await?.is_none() {
            return Err(missing_role(name));
        }
        match store::load_accessor(storage, &accessor).await? {
            Some(entry) if entry.role_name == name => Ok((accessor, entry)),
            _ => Err(SdkError::Coded {
                status: 404,
                message: format!(
                    "failed to find accessor entry for secret_id_accessor: {accessor:?}"
                ),
            }),
        }
    }

    /// `role/<name>/secret-id-accessor/lookup`.
    pub(crate) async fn lookup_accessor(
        &self,
        req: &Request,
        name: &str,
    ) -> Result<Response, SdkError> {
        let (_, index) = self.accessor_of_role(req, name).await?;
        match store::load_secret_id(req.storage.as_ref(), name, &index.secret_id_hmac).await? {
            Some(entry) => Ok(Response::data(lookup_data(&entry))),
            None => Ok(Response::empty()),
        }
    }

    /// `role/<name>/secret-id-accessor/destroy`.
    pub(crate) async fn destroy_accessor(
        &self,
        req: &Request,
        name: &str,
    ) -> Result<Response, SdkError> {
        let _guard = self.lock().await;
        let (accessor, index) = self.accessor_of_role(req, name).await?;
        req.storage
            .commit(vec![
                StorageOp::Delete {
                    key: store::accessor_key(&accessor),
                },
                StorageOp::Delete {
                    key: store::secret_id_key(name, &index.secret_id_hmac),
                },
            ])
            .await?;
        Ok(Response::empty())
    }

    /// Delete expired secret ids, secret ids without an accessor or a role, and accessors
    /// without a secret id. Runs under the write lock, committing in batches.
    pub(crate) async fn tidy(&self, storage: &dyn Storage) -> Result<(), SdkError> {
        let _guard = self.lock().await;
        let now = self.now();
        let mut ops: Vec<StorageOp> = Vec::new();
        for folder in storage.list(store::SECRET_ID_PREFIX).await? {
            let Some(role_name) = folder.strip_suffix('/') else {
                continue;
            };
            let role_exists = store::load_role(storage, role_name).await?.is_some();
            let prefix = format!("{}{folder}", store::SECRET_ID_PREFIX);
            for hmac in storage.list(&prefix).await? {
                let key = format!("{prefix}{hmac}");
                let entry = match storage.get_json::<SecretIdEntry>(&key).await {
                    Ok(Some(entry)) => entry,
                    Ok(None) => continue,
                    // An entry that does not decode can never log in: drop it.
                    Err(_) => {
                        ops.push(StorageOp::Delete { key });
                        continue;
                    }
                };
                let accessor = store::load_accessor(storage, &entry.secret_id_accessor).await?;
                if !role_exists || entry.expired(now) {
                    ops.extend(delete_ops(role_name, &entry));
                } else if accessor.is_none() {
                    ops.push(StorageOp::Delete { key });
                }
                if ops.len() >= TIDY_BATCH {
                    storage.commit(std::mem::take(&mut ops)).await?;
                }
            }
        }
        for accessor in storage.list(store::ACCESSOR_PREFIX).await? {
            let key = store::accessor_key(&accessor);
            let live = match storage.get_json::<AccessorEntry>(&key).await {
                Ok(Some(index)) => {
                    store::load_secret_id(storage, &index.role_name, &index.secret_id_hmac)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|e| !e.expired(now))
                }
                Ok(None) => true,
                Err(_) => false,
            };
            if !live {
                ops.push(StorageOp::Delete { key });
            }
            if ops.len() >= TIDY_BATCH {
                storage.commit(std::mem::take(&mut ops)).await?;
            }
        }
        if !ops.is_empty() {
            storage.commit(ops).await?;
        }
        Ok(())
    }
}

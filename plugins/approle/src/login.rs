//! Login with a role id (and secret id), and renewal of the tokens it issues.
//!
//! Checks, in order: the role id names a role (through the HMAC index, then a
//! constant-time comparison with the role's own role id); when the role binds secret ids,
//! the secret id exists for that role (constant-time comparison of HMACs), still has its
//! accessor, and has not expired; the secret id's `cidr_list` (still within the role's
//! `secret_id_bound_cidrs`) and the role's `secret_id_bound_cidrs` admit the remote
//! address; finally a use is counted. Counting re-reads the entry under the mount's write
//! lock, so two logins can never both spend the last use; the last use deletes the
//! secret id and its accessor in one commit.
//!
//! Unknown role ids and unknown, foreign or expired secret ids all answer 400 "invalid
//! role or secret ID"; a secret id spent between the first read and the count answers
//! Vault's "invalid secret id". CIDR failures name the source address, as Vault, but
//! only after the credentials checked out.

use std::collections::BTreeMap;

use coffer_sdk::storage::json_op;
use coffer_sdk::{LoginAuth, Request, Response, SdkError, StorageExt};
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::backend::AppRole;
use crate::cidr;
use crate::params::{trimmed_str, MAX_INPUT_LEN};
use crate::secret_id::delete_ops;
use crate::store::{self, RoleEntry, RoleIdEntry, SecretIdEntry};

fn invalid() -> SdkError {
    SdkError::bad("invalid role or secret ID")
}

fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The auth block for a login to `name` with `role` (and the secret id's metadata).
fn login_auth(name: &str, role: &RoleEntry, entry: Option<&SecretIdEntry>) -> LoginAuth {
    let mut auth = role.token.login_auth();
    let mut metadata: BTreeMap<String, String> =
        entry.map(|e| e.metadata.clone()).unwrap_or_default();
    metadata.insert("role_name".into(), name.to_string());
    auth.metadata = metadata;
    auth.internal
        .insert("role_name".into(), Value::String(name.to_string()));
    if let Some(entry) = entry.filter(|e| !e.token_bound_cidrs.is_empty()) {
        auth.bound_cidrs = entry.token_bound_cidrs.clone();
    }
    auth
}

impl AppRole {
    /// `login {role_id, secret_id}`.
    pub(crate) async fn login(&self, req: &Request) -> Result<Response, SdkError> {
        let storage = req.storage.as_ref();
        let role_id =
            trimmed_str(req, "role_id")?.ok_or_else(|| SdkError::bad("missing role_id"))?;
        let secret_id = trimmed_str(req, "secret_id")?;
        let Some(hasher) = self.hasher(storage).await? else {
            return Err(invalid());
        };
        if role_id.len() > MAX_INPUT_LEN {
            return Err(invalid());
        }
        let index: Option<RoleIdEntry> = storage
            .get_json(&store::role_id_key(&hasher.role_id(&role_id)))
            .await?;
        let Some(name) = index.map(|i| i.name) else {
            return Err(invalid());
        };
        let Some(role) = store::load_role(storage, &name).await? else {
            return Err(invalid());
        };
        if !ct_eq(&role.role_id, &role_id) {
            return Err(invalid());
        }
        let remote = req.remote_addr.as_deref();
        let shown_remote = remote.unwrap_or_default();

        let mut entry = None;
        if role.bind_secret_id {
            let secret_id = secret_id.ok_or_else(|| SdkError::bad("missing secret_id"))?;
            if secret_id.len() > MAX_INPUT_LEN {
                return Err(invalid());
            }
            let secret_id_hmac = hasher.secret_id(&secret_id);
            let Some(found) = store::load_secret_id(storage, &name, &secret_id_hmac).await? else {
                return Err(invalid());
            };
            if !ct_eq(&found.secret_id_hmac, &secret_id_hmac) {
                return Err(invalid());
            }
            if store::load_accessor(storage, &found.secret_id_accessor)
                .await?
                .is_none()
            {
                let _guard = self.lock().await;
                storage.commit(delete_ops(&name, &found)).await?;
                return Err(invalid());
            }
            if found.expired(self.now()) {
                return Err(invalid());
            }
            if !cidr::is_subset(&found.cidr_list, &role.secret_id_bound_cidrs) {
                return Err(SdkError::bad(format!(
                    "failed to verify subset relationship between CIDR blocks on the role \
                     {:?} and CIDR blocks on the secret ID {:?}",
                    role.secret_id_bound_cidrs, found.cidr_list
                )));
            }
            if !found.cidr_list.is_empty() && !cidr::remote_allowed(remote, &found.cidr_list) {
                return Err(SdkError::bad(format!(
                    "source address {shown_remote:?} unauthorized through CIDR restrictions \
                     on the secret ID"
                )));
            }
            entry = Some(found);
        }
        if !role.secret_id_bound_cidrs.is_empty()
            && !cidr::remote_allowed(remote, &role.secret_id_bound_cidrs)
        {
            return Err(SdkError::bad(format!(
                "source address {shown_remote:?} unauthorized by CIDR restrictions on the role"
            )));
        }
        if let Some(found) = entry.take() {
            entry = Some(if found.secret_id_num_uses > 0 {
                self.spend_use(req, &name, found).await?
            } else {
                found
            });
        }
        Ok(Response {
            auth: Some(login_auth(&name, &role, entry.as_ref())),
            ..Response::default()
        })
    }

    /// Count one use of a limited secret id, atomically: re-read under the write lock,
    /// then delete it (last use) or write it back decremented.
    async fn spend_use(
        &self,
        req: &Request,
        name: &str,
        seen: SecretIdEntry,
    ) -> Result<SecretIdEntry, SdkError> {
        let storage = req.storage.as_ref();
        let _guard = self.lock().await;
        let now = self.now();
        let current = store::load_secret_id(storage, name, &seen.secret_id_hmac)
            .await?
            .filter(|e| e.secret_id_accessor == seen.secret_id_accessor && !e.expired(now))
            .ok_or_else(|| SdkError::bad("invalid secret id"))?;
        match current.secret_id_num_uses {
            0 => {}
            1 => storage.commit(delete_ops(name, &current)).await?,
            left => {
                let mut updated = current.clone();
                updated.secret_id_num_uses = left - 1;
                updated.last_updated_time = now;
                let key = store::secret_id_key(name, &updated.secret_id_hmac);
                storage.commit(vec![json_op(&key, &updated)?]).await?;
            }
        }
        Ok(current)
    }

    /// Vault's approle renew: the role must still exist; the token gets its current TTL,
    /// max TTL and period.
    pub(crate) async fn renew_login(
        &self,
        req: &Request,
        internal: &Value,
    ) -> Result<Response, SdkError> {
        let name = internal
            .get("role_name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| SdkError::bad("failed to fetch role_name during renewal"))?;
        let role = store::load_role(req.storage.as_ref(), name)
            .await?
            .ok_or_else(|| SdkError::bad(format!("role {name:?} does not exist during renewal")))?;
        Ok(Response {
            auth: Some(login_auth(name, &role, None)),
            ..Response::default()
        })
    }
}

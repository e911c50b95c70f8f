//! `dynamic-creds`: an example external secret engine for Coffer that issues **leased
//! dynamic credentials**, the way Vault's database or AWS engines do. It is an ordinary
//! sdk `Backend` run as its own process with `coffer_plugin_host::serve_factory`; Coffer
//! registers a lease for every credential it returns, calls its `renew` when a client
//! renews the lease and its `revoke` when the lease is revoked or expires, when the token
//! that created it is revoked, or when the mount is disabled.
//!
//! The "external system" whose accounts it manages is its own storage: each issued
//! username has a record whose `status` turns `revoked` when Coffer revokes the lease, so
//! an operator (or a test) can see revocation reach the engine. The password is returned
//! once and never stored.
//!
//! ```text
//! vault write sys/plugins/catalog/secret/dynamic-creds sha256=<hex> command=coffer-plugin-dynamic-creds
//! vault secrets enable -path=dyn dynamic-creds
//! vault write dyn/roles/app ttl=1h max_ttl=24h
//! vault read dyn/creds/app            # username, password, lease_id, lease_duration
//! vault lease renew dyn/creds/app/<id>
//! vault read dyn/users/<username>      # status: active | revoked
//! ```
//!
//! Paths, relative to the mount:
//! - `roles/<name>`: write `{"ttl": "1h", "max_ttl": "24h"}` (both optional: the mount's
//!   defaults), read, delete; LIST `roles/`.
//! - `creds/<role>` (read): a new random username and password with a renewable lease of
//!   the role's TTL, capped by its `max_ttl`.
//! - `users/<username>` (read): `role`, `status` (`active` or `revoked`), `renewals`,
//!   `created`, `revoked_at`, `last_increment` (the increment of the last renewal);
//!   LIST `users/`.
//! - `config` (read, write): `fail_revoke` and `refuse_renew` (booleans) make `revoke`
//!   and `renew` fail, to exercise Coffer's retry, irrevocable and `revoke-force` paths.

use std::io::Read;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use coffer_sdk::{
    Backend, BackendConfig, Operation, Request, Response, SdkError, SecretLease, StorageExt,
};
use serde_json::{json, Map, Value};

/// The backend of one mount (stateless: everything lives in the mount's storage).
struct DynamicCreds;

fn factory(config: BackendConfig) -> Result<Arc<dyn Backend>, SdkError> {
    eprintln!("dynamic-creds: serving mount {}", config.mount_point);
    Ok(Arc::new(DynamicCreds))
}

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` random alphanumeric characters from the kernel's CSPRNG.
fn random_string(n: usize) -> Result<String, SdkError> {
    let mut urandom = std::fs::File::open("/dev/urandom")
        .map_err(|e| SdkError::Internal(format!("opening /dev/urandom: {e}")))?;
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        urandom
            .read_exact(&mut buf)
            .map_err(|e| SdkError::Internal(format!("reading /dev/urandom: {e}")))?;
        for b in buf {
            // 248 = 4 * 62: no modulo bias.
            if b < 248 && out.len() < n {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A name segment: non-empty, no `/`.
fn name(segment: &str) -> Result<&str, SdkError> {
    if segment.is_empty() || segment.contains('/') || segment == "." || segment == ".." {
        return Err(SdkError::bad(format!("invalid name {segment:?}")));
    }
    Ok(segment)
}

fn secs(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

async fn config_flag(req: &Request, flag: &str) -> Result<bool, SdkError> {
    let config: Option<Map<String, Value>> = req.storage.get_json("config").await?;
    Ok(config
        .and_then(|c| c.get(flag).and_then(Value::as_bool))
        .unwrap_or(false))
}

fn internal_str<'a>(internal: &'a Value, key: &str) -> Result<&'a str, SdkError> {
    internal
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| SdkError::bad(format!("lease has no {key}")))
}

impl DynamicCreds {
    async fn role(&self, req: &Request, role: &str) -> Result<Response, SdkError> {
        let key = format!("roles/{role}");
        match req.operation {
            Operation::Create | Operation::Update => {
                let ttl = req.get_duration("ttl")?.unwrap_or_default().as_secs();
                let max_ttl = req.get_duration("max_ttl")?.unwrap_or_default().as_secs();
                if max_ttl != 0 && ttl > max_ttl {
                    return Err(SdkError::bad("ttl cannot exceed max_ttl"));
                }
                req.storage
                    .put_json(&key, &json!({ "ttl": ttl, "max_ttl": max_ttl }))
                    .await?;
                Ok(Response::empty())
            }
            Operation::Read => {
                let role: Value = req
                    .storage
                    .get_json(&key)
                    .await?
                    .ok_or(SdkError::NotFound)?;
                Ok(Response::json(role))
            }
            Operation::Delete => {
                req.storage.delete(&key).await?;
                Ok(Response::empty())
            }
            _ => Err(SdkError::UnsupportedOperation),
        }
    }

    async fn issue(&self, req: &Request, role_name: &str) -> Result<Response, SdkError> {
        if req.operation != Operation::Read {
            return Err(SdkError::UnsupportedOperation);
        }
        let role: Value = req
            .storage
            .get_json(&format!("roles/{role_name}"))
            .await?
            .ok_or_else(|| SdkError::bad(format!("unknown role {role_name:?}")))?;
        let username = format!("v-{role_name}-{}", random_string(10)?.to_lowercase());
        let password = random_string(24)?;
        req.storage
            .put_json(
                &format!("users/{username}"),
                &json!({
                    "role": role_name,
                    "status": "active",
                    "renewals": 0,
                    "created": now(),
                }),
            )
            .await?;
        let mut internal = Map::new();
        internal.insert("username".into(), json!(username));
        internal.insert("role".into(), json!(role_name));
        let mut resp = Response::json(json!({ "username": username, "password": password }));
        resp.secret = Some(SecretLease {
            ttl: Duration::from_secs(secs(role.get("ttl"))),
            max_ttl: Duration::from_secs(secs(role.get("max_ttl"))),
            renewable: true,
            internal,
        });
        Ok(resp)
    }
}

#[async_trait]
impl Backend for DynamicCreds {
    async fn handle_request(&self, req: &mut Request) -> Result<Response, SdkError> {
        let path = req.path.clone();
        match (path.as_str(), req.operation) {
            ("roles" | "roles/", Operation::List) => {
                Response::list(req.storage.list("roles/").await?)
            }
            ("users" | "users/", Operation::List) => {
                Response::list(req.storage.list("users/").await?)
            }
            ("config", Operation::Read) => {
                let config: Option<Value> = req.storage.get_json("config").await?;
                Ok(Response::json(config.unwrap_or_else(|| json!({}))))
            }
            ("config", Operation::Create | Operation::Update) => {
                let config = json!({
                    "fail_revoke": req.get_bool("fail_revoke")?.unwrap_or(false),
                    "refuse_renew": req.get_bool("refuse_renew")?.unwrap_or(false),
                });
                req.storage.put_json("config", &config).await?;
                Ok(Response::empty())
            }
            (p, _) => {
                if let Some(role) = p.strip_prefix("roles/") {
                    return self.role(req, name(role)?).await;
                }
                if let Some(role) = p.strip_prefix("creds/") {
                    return self.issue(req, name(role)?).await;
                }
                if let Some(user) = p.strip_prefix("users/") {
                    if req.operation != Operation::Read {
                        return Err(SdkError::UnsupportedOperation);
                    }
                    let record: Value = req
                        .storage
                        .get_json(&format!("users/{}", name(user)?))
                        .await?
                        .ok_or(SdkError::NotFound)?;
                    return Ok(Response::json(record));
                }
                Err(SdkError::UnsupportedPath)
            }
        }
    }

    async fn existence_check(&self, req: &Request) -> Result<Option<bool>, SdkError> {
        match req.path.strip_prefix("roles/") {
            Some(role) if !role.is_empty() => Ok(Some(
                req.storage.get(&format!("roles/{role}")).await?.is_some(),
            )),
            _ => Ok(None),
        }
    }

    /// Extend a lease while the account is active; the core applies the client's
    /// increment and the max TTL.
    async fn renew(&self, req: &mut Request, internal: &Value) -> Result<Response, SdkError> {
        if config_flag(req, "refuse_renew").await? {
            return Err(SdkError::bad(
                "renewal refused by this engine's configuration",
            ));
        }
        let username = internal_str(internal, "username")?;
        let key = format!("users/{username}");
        let mut record: Map<String, Value> = req
            .storage
            .get_json(&key)
            .await?
            .ok_or_else(|| SdkError::bad("the account no longer exists"))?;
        if record.get("status").and_then(Value::as_str) != Some("active") {
            return Err(SdkError::bad("the account was revoked"));
        }
        let renewals = secs(record.get("renewals")) + 1;
        record.insert("renewals".into(), json!(renewals));
        let increment = req
            .lease
            .as_ref()
            .map(|l| l.increment.as_secs())
            .unwrap_or(0);
        record.insert("last_increment".into(), json!(increment));
        req.storage.put_json(&key, &record).await?;
        // The role's current TTLs (a deleted role: the mount's defaults).
        let role_name = internal_str(internal, "role")?;
        let role: Value = req
            .storage
            .get_json(&format!("roles/{role_name}"))
            .await?
            .unwrap_or_else(|| json!({}));
        let mut resp = Response::empty();
        resp.secret = Some(SecretLease {
            ttl: Duration::from_secs(secs(role.get("ttl"))),
            max_ttl: Duration::from_secs(secs(role.get("max_ttl"))),
            renewable: true,
            internal: Map::new(),
        });
        Ok(resp)
    }

    /// Disable the account; idempotent (an unknown or already revoked account is fine).
    async fn revoke(&self, req: &mut Request, internal: &Value) -> Result<(), SdkError> {
        if config_flag(req, "fail_revoke").await? {
            return Err(SdkError::Coded {
                status: 502,
                message: "the credential store refused the revocation".into(),
            });
        }
        let username = internal_str(internal, "username")?;
        let key = format!("users/{username}");
        let Some(mut record) = req.storage.get_json::<Map<String, Value>>(&key).await? else {
            return Ok(());
        };
        if record.get("status").and_then(Value::as_str) == Some("revoked") {
            return Ok(());
        }
        record.insert("status".into(), json!("revoked"));
        record.insert("revoked_at".into(), json!(now()));
        req.storage.put_json(&key, &record).await?;
        // Account names are not secret; the password never reaches the log.
        eprintln!("dynamic-creds: revoked account {username}");
        Ok(())
    }
}

fn main() -> ExitCode {
    match coffer_plugin_host::serve_factory(factory) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dynamic-creds: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The userpass backend of one mount: routing, the user CRUD handlers, login and renew.
//!
//! | path                        | operations                     |
//! |-----------------------------|--------------------------------|
//! | `users/`                    | list                           |
//! | `users/<name>`              | read, create/update, delete    |
//! | `users/<name>/password`     | update `{password}`            |
//! | `users/<name>/policies`     | update `{token_policies}`      |
//! | `login/<name>`              | update `{password}` (no token) |

use async_trait::async_trait;
use coffer_sdk::{
    Backend, BackendKind, Operation, Request, Response, SdkError, SpecialPaths, Storage, StorageExt,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::cidr;
use crate::params::{ignored_fields_warning, password, valid_name};
use crate::password::{hash_async, verify_async, HashParams, PasswordHash};
use crate::token::{self, equivalent_policies, sanitize_policies, TokenParams};

/// Storage prefix of user entries.
pub const USER_PREFIX: &str = "user/";

/// Legacy field names of a user and the token field each maps to.
const ALIASES: &[(&str, &str)] = &[
    ("policies", "token_policies"),
    ("ttl", "token_ttl"),
    ("max_ttl", "token_max_ttl"),
    ("bound_cidrs", "token_bound_cidrs"),
];

/// Vault's answer to a bad user name or password (the same for both).
const INVALID_CREDENTIALS: &str = "invalid username or password";

/// One user as stored at `user/<name>`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UserEntry {
    /// argon2id PHC string of the password (never the password itself).
    pub password_hash: String,
    /// Settings of the tokens a login issues.
    #[serde(flatten)]
    pub token: TokenParams,
}

/// Which endpoint a path addresses (names already lower-cased).
#[derive(Debug, PartialEq, Eq)]
enum Route {
    List,
    User(String),
    Password(String),
    Policies(String),
    Login(String),
}

fn route(path: &str) -> Option<Route> {
    if path == "users" || path == "users/" {
        return Some(Route::List);
    }
    let segments: Vec<&str> = path.split('/').collect();
    let (head, name, tail) = match segments.as_slice() {
        [head, name] => (*head, *name, None),
        [head, name, tail] => (*head, *name, Some(*tail)),
        _ => return None,
    };
    if !valid_name(name) {
        return None;
    }
    let name = name.to_lowercase();
    match (head, tail) {
        ("users", None) => Some(Route::User(name)),
        ("users", Some("password")) => Some(Route::Password(name)),
        ("users", Some("policies")) => Some(Route::Policies(name)),
        ("login", None) => Some(Route::Login(name)),
        _ => None,
    }
}

fn is_write(op: Operation) -> bool {
    matches!(op, Operation::Create | Operation::Update)
}

async fn load(storage: &dyn Storage, name: &str) -> Result<Option<UserEntry>, SdkError> {
    storage.get_json(&format!("{USER_PREFIX}{name}")).await
}

async fn store(storage: &dyn Storage, name: &str, user: &UserEntry) -> Result<(), SdkError> {
    storage
        .put_json(&format!("{USER_PREFIX}{name}"), user)
        .await
}

fn stored_hash(user: &UserEntry) -> Result<PasswordHash, SdkError> {
    PasswordHash::parse(&user.password_hash)
        .ok_or_else(|| SdkError::Internal("stored password hash does not decode".into()))
}

/// Answer with `resp`, plus Vault's warning for unknown fields.
fn with_ignored(mut resp: Response, req: &Request, known: &[&str]) -> Response {
    if let Some(warning) = ignored_fields_warning(req, known) {
        resp.warnings.push(warning);
    }
    resp
}

/// The userpass auth method of one mount.
pub struct Userpass {
    params: HashParams,
    /// Verified against for unknown users, so their logins cost the same.
    dummy: PasswordHash,
    /// Serialises user writes (read-modify-write of one entry).
    write_lock: Mutex<()>,
}

impl Userpass {
    /// A backend whose new password hashes use `params`.
    pub fn new(params: HashParams) -> Result<Userpass, SdkError> {
        Ok(Userpass {
            params,
            dummy: PasswordHash::dummy(params)?,
            write_lock: Mutex::new(()),
        })
    }

    async fn list(&self, storage: &dyn Storage) -> Result<Response, SdkError> {
        Response::list(storage.list(USER_PREFIX).await?)
    }

    async fn read(&self, storage: &dyn Storage, name: &str) -> Result<Response, SdkError> {
        let user = load(storage, name).await?.ok_or(SdkError::NotFound)?;
        let mut data = Map::new();
        user.token.read_into(&mut data, ALIASES);
        Ok(Response::data(data))
    }

    async fn write(&self, req: &Request, name: &str) -> Result<Response, SdkError> {
        let storage = req.storage.as_ref();
        let new_password = password(req)?;
        let _guard = self.write_lock.lock().await;
        let existing = load(storage, name).await?;
        if existing.is_none() && new_password.is_none() {
            return Err(SdkError::bad("missing password"));
        }
        let mut user = existing.unwrap_or_default();
        user.token.parse(req, ALIASES)?;
        if let Some(pw) = new_password {
            user.password_hash = hash_async(pw, self.params).await?.to_phc();
        }
        store(storage, name, &user).await?;
        let mut known = vec!["password"];
        known.extend(ALIASES.iter().map(|(old, _)| *old));
        known.extend_from_slice(token::FIELDS);
        Ok(with_ignored(Response::empty(), req, &known))
    }

    async fn set_password(&self, req: &Request, name: &str) -> Result<Response, SdkError> {
        let storage = req.storage.as_ref();
        let new_password = password(req)?.ok_or_else(|| SdkError::bad("missing password"))?;
        let _guard = self.write_lock.lock().await;
        let mut user = load(storage, name)
            .await?
            .ok_or_else(|| SdkError::bad("username does not exist"))?;
        user.password_hash = hash_async(new_password, self.params).await?.to_phc();
        store(storage, name, &user).await?;
        Ok(with_ignored(Response::empty(), req, &["password"]))
    }

    async fn set_policies(&self, req: &Request, name: &str) -> Result<Response, SdkError> {
        let storage = req.storage.as_ref();
        let (key, legacy) = if req.data.get("token_policies").is_some_and(|v| !v.is_null()) {
            ("token_policies", false)
        } else if req.data.get("policies").is_some_and(|v| !v.is_null()) {
            ("policies", true)
        } else {
            return Err(SdkError::bad("policies or token_policies must be set"));
        };
        let policies = sanitize_policies(req.get_str_list(key)?.unwrap_or_default());
        let _guard = self.write_lock.lock().await;
        let mut user = load(storage, name)
            .await?
            .ok_or_else(|| SdkError::bad("username does not exist"))?;
        user.token.token_policies = policies;
        if legacy {
            user.token.legacy.insert("policies".into());
        } else {
            user.token.legacy.remove("policies");
        }
        store(storage, name, &user).await?;
        Ok(with_ignored(
            Response::empty(),
            req,
            &["policies", "token_policies"],
        ))
    }

    async fn login(&self, req: &Request, name: &str) -> Result<Response, SdkError> {
        let given = password(req)?.ok_or_else(|| SdkError::bad("missing password"))?;
        // Always pay for one hash, against the user's or the dummy, so timing does not
        // tell whether the user exists.
        let (user, hash) = match load(req.storage.as_ref(), name).await {
            Ok(Some(user)) => {
                let hash = stored_hash(&user)?;
                (Ok(Some(user)), hash)
            }
            other => (other, self.dummy.clone()),
        };
        let matched = verify_async(given, hash).await?;
        let user = user?;
        let Some(user) = user.filter(|_| matched) else {
            return Err(SdkError::bad(INVALID_CREDENTIALS));
        };
        if !user.token.token_bound_cidrs.is_empty()
            && !cidr::remote_allowed(req.remote_addr.as_deref(), &user.token.token_bound_cidrs)
        {
            return Err(SdkError::PermissionDenied);
        }
        Ok(Response {
            auth: Some(login_auth(name, &user)),
            ..Response::default()
        })
    }
}

/// The auth block for `name` logging in (or renewing) as `user`.
fn login_auth(name: &str, user: &UserEntry) -> coffer_sdk::LoginAuth {
    let mut auth = user.token.login_auth();
    auth.metadata.insert("username".into(), name.to_string());
    auth.display_name = name.to_string();
    auth.internal.insert("username".into(), Value::from(name));
    auth.internal.insert(
        "policies".into(),
        Value::from(user.token.token_policies.clone()),
    );
    auth
}

#[async_trait]
impl Backend for Userpass {
    async fn handle_request(&self, req: &mut Request) -> Result<Response, SdkError> {
        let req: &Request = req;
        let route = route(&req.path).ok_or(SdkError::UnsupportedPath)?;
        let op = req.operation;
        match route {
            Route::List if op == Operation::List => self.list(req.storage.as_ref()).await,
            Route::User(name) => match op {
                Operation::Read => self.read(req.storage.as_ref(), &name).await,
                Operation::Create | Operation::Update => self.write(req, &name).await,
                Operation::Delete => {
                    req.storage.delete(&format!("{USER_PREFIX}{name}")).await?;
                    Ok(Response::empty())
                }
                Operation::List | Operation::Patch => Err(SdkError::UnsupportedOperation),
            },
            Route::Password(name) if is_write(op) => self.set_password(req, &name).await,
            Route::Policies(name) if is_write(op) => self.set_policies(req, &name).await,
            Route::Login(name) if is_write(op) => self.login(req, &name).await,
            _ => Err(SdkError::UnsupportedOperation),
        }
    }

    async fn existence_check(&self, req: &Request) -> Result<Option<bool>, SdkError> {
        match route(&req.path) {
            Some(Route::User(name)) => Ok(Some(load(req.storage.as_ref(), &name).await?.is_some())),
            _ => Ok(None),
        }
    }

    fn special_paths(&self) -> SpecialPaths {
        SpecialPaths {
            unauthenticated: vec!["login/*".into()],
            root: Vec::new(),
        }
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Credential
    }

    /// Vault's userpass renew: the user must still exist and still have the policies the
    /// token was issued with (`default` aside); the token then gets the user's current
    /// TTL, max TTL and period.
    async fn renew(&self, req: &mut Request, internal: &Value) -> Result<Response, SdkError> {
        let name = internal
            .get("username")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                req.caller
                    .as_ref()
                    .and_then(|c| c.metadata.get("username").cloned())
            })
            .ok_or_else(|| SdkError::bad("failed to fetch username during renewal"))?;
        let user = load(req.storage.as_ref(), &name).await?.ok_or_else(|| {
            SdkError::bad(format!("user {name:?} no longer exists; not renewing"))
        })?;
        let issued: Option<Vec<String>> = match internal.get("policies") {
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => req.caller.as_ref().map(|c| c.policies.clone()),
        };
        if let Some(issued) = issued {
            if !equivalent_policies(&user.token.token_policies, &issued) {
                return Err(SdkError::bad("policies have changed, not renewing"));
            }
        }
        Ok(Response {
            auth: Some(login_auth(&name, &user)),
            ..Response::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let cases = [
            ("users", Some(Route::List)),
            ("users/", Some(Route::List)),
            ("users/Bob", Some(Route::User("bob".into()))),
            ("users/bob/password", Some(Route::Password("bob".into()))),
            ("users/bob/policies", Some(Route::Policies("bob".into()))),
            ("login/Bob", Some(Route::Login("bob".into()))),
            ("login", None),
            ("login/", None),
            ("users/bob/other", None),
            ("users/-bob", None),
            ("users/bob/password/x", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(route(path), want, "{path}");
        }
    }
}

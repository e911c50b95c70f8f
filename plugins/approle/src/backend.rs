//! The approle backend of one mount: its state (write lock, clock, cached HMAC key),
//! routing, and the [`Backend`] implementation.
//!
//! | path                                        | operations                      |
//! |---------------------------------------------|---------------------------------|
//! | `role/`                                     | list                            |
//! | `role/<name>`                               | read, create/update, delete     |
//! | `role/<name>/role-id`                       | read, update `{role_id}`        |
//! | `role/<name>/<field>` (`token-ttl`, …)      | read, update, delete (reset)    |
//! | `role/<name>/secret-id`                     | update (generate), list         |
//! | `role/<name>/custom-secret-id`              | update `{secret_id, …}`         |
//! | `role/<name>/secret-id/lookup`              | update `{secret_id}`            |
//! | `role/<name>/secret-id/destroy`             | update, delete `{secret_id}`    |
//! | `role/<name>/secret-id-accessor/lookup`     | update `{secret_id_accessor}`   |
//! | `role/<name>/secret-id-accessor/destroy`    | update, delete `{secret_id_accessor}` |
//! | `login`                                     | update `{role_id, secret_id}` (no token) |
//! | `tidy/secret-id`                            | update                          |
//!
//! Every write to the mount's storage (roles, secret ids, use counts, tidy) runs under
//! one per-mount mutex, so a secret id's use count is read, checked and written back
//! atomically, and a role's index entries change together with it (each change is also
//! a single `commit`). Logins with unlimited-use secret ids take no lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coffer_sdk::{
    Backend, BackendKind, Operation, Request, Response, SdkError, SpecialPaths, Storage,
};
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use crate::params::{valid_name, MAX_INPUT_LEN};
use crate::role::FIELD_PATHS;
use crate::store::{self, Hasher};

/// A source of the current time (injectable for tests).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Which endpoint a path addresses (role names already lower-cased).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Roles,
    Role(String),
    RoleId(String),
    SecretId(String),
    CustomSecretId(String),
    SecretIdLookup(String),
    SecretIdDestroy(String),
    AccessorLookup(String),
    AccessorDestroy(String),
    /// A per-field sub-path: the index into `role::FIELD_PATHS`.
    RoleField(String, usize),
    Login,
    Tidy,
}

pub(crate) fn route(path: &str) -> Option<Route> {
    let path = path.strip_suffix('/').unwrap_or(path);
    match path {
        "role" => return Some(Route::Roles),
        "login" => return Some(Route::Login),
        "tidy/secret-id" => return Some(Route::Tidy),
        _ => {}
    }
    let rest = path.strip_prefix("role/")?;
    let (name, tail) = match rest.split_once('/') {
        Some((name, tail)) => (name, Some(tail)),
        None => (rest, None),
    };
    if !valid_name(name) {
        return None;
    }
    let name = name.to_lowercase();
    Some(match tail {
        None => Route::Role(name),
        Some("role-id") => Route::RoleId(name),
        Some("secret-id") => Route::SecretId(name),
        Some("custom-secret-id") => Route::CustomSecretId(name),
        Some("secret-id/lookup") => Route::SecretIdLookup(name),
        Some("secret-id/destroy") => Route::SecretIdDestroy(name),
        Some("secret-id-accessor/lookup") => Route::AccessorLookup(name),
        Some("secret-id-accessor/destroy") => Route::AccessorDestroy(name),
        Some(other) => {
            let index = FIELD_PATHS.iter().position(|f| f.segment == other)?;
            Route::RoleField(name, index)
        }
    })
}

fn role_name(route: &Route) -> Option<&str> {
    match route {
        Route::Role(n)
        | Route::RoleId(n)
        | Route::SecretId(n)
        | Route::CustomSecretId(n)
        | Route::SecretIdLookup(n)
        | Route::SecretIdDestroy(n)
        | Route::AccessorLookup(n)
        | Route::AccessorDestroy(n)
        | Route::RoleField(n, _) => Some(n),
        Route::Roles | Route::Login | Route::Tidy => None,
    }
}

/// The approle auth method of one mount.
pub struct AppRole {
    /// The mount's storage, for `periodic` (requests carry the same view).
    storage: Arc<dyn Storage>,
    clock: Clock,
    /// The mount's HMAC key once known (it never changes after it is made; a restore can
    /// replace it, hence [`Backend::invalidate`]).
    hasher: RwLock<Option<Arc<Hasher>>>,
    /// Serialises every write to the mount's storage.
    write_lock: Mutex<()>,
    /// Set while a tidy runs.
    tidying: AtomicBool,
}

impl AppRole {
    /// A backend over `storage` telling time with `clock`.
    pub fn new(storage: Arc<dyn Storage>, clock: Clock) -> AppRole {
        AppRole {
            storage,
            clock,
            hasher: RwLock::new(None),
            write_lock: Mutex::new(()),
            tidying: AtomicBool::new(false),
        }
    }

    /// The current time.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Take the mount's write lock.
    pub(crate) async fn lock(&self) -> MutexGuard<'_, ()> {
        self.write_lock.lock().await
    }

    /// The HMAC key if one exists (reads never make one).
    pub(crate) async fn hasher(
        &self,
        storage: &dyn Storage,
    ) -> Result<Option<Arc<Hasher>>, SdkError> {
        if let Some(h) = self.cached_hasher() {
            return Ok(Some(h));
        }
        let Some(loaded) = Hasher::load(storage).await? else {
            return Ok(None);
        };
        Ok(Some(self.cache_hasher(loaded)))
    }

    fn cached_hasher(&self) -> Option<Arc<Hasher>> {
        self.hasher.read().ok().and_then(|cached| cached.clone())
    }

    fn cache_hasher(&self, hasher: Hasher) -> Arc<Hasher> {
        let hasher = Arc::new(hasher);
        if let Ok(mut cached) = self.hasher.write() {
            *cached = Some(hasher.clone());
        }
        hasher
    }

    /// The HMAC key, made on first use. Call with the write lock held.
    pub(crate) async fn hasher_for_write(
        &self,
        storage: &dyn Storage,
    ) -> Result<Arc<Hasher>, SdkError> {
        if let Some(h) = self.hasher(storage).await? {
            return Ok(h);
        }
        Ok(self.cache_hasher(Hasher::create(storage).await?))
    }

    /// Run a tidy unless one is already running; `false` when it was.
    pub(crate) async fn tidy_once(&self, storage: &dyn Storage) -> Result<bool, SdkError> {
        if self.tidying.swap(true, Ordering::AcqRel) {
            return Ok(false);
        }
        let result = self.tidy(storage).await;
        self.tidying.store(false, Ordering::Release);
        result.map(|_| true)
    }

    async fn dispatch(&self, req: &Request, route: Route) -> Result<Response, SdkError> {
        use Operation::{Create, Delete, List, Read, Update};
        let op = req.operation;
        let write = matches!(op, Create | Update);
        match (route, op) {
            (Route::Roles, List) => self.list_roles(req).await,
            (Route::Role(name), Read) => self.read_role(req, &name).await,
            (Route::Role(name), Create | Update) => self.write_role(req, &name, false).await,
            (Route::Role(name), Delete) => self.delete_role(req, &name).await,
            (Route::RoleId(name), Read) => self.read_role_id(req, &name).await,
            (Route::RoleId(name), _) if write => self.write_role_id(req, &name).await,
            (Route::SecretId(name), List) => self.list_secret_ids(req, &name).await,
            (Route::SecretId(name), _) if write => self.generate_secret_id(req, &name, None).await,
            (Route::CustomSecretId(name), _) if write => {
                let custom = req.require_str("secret_id").map_err(|_| {
                    SdkError::bad(match req.data.get("secret_id") {
                        None | Some(Value::Null) => "missing secret_id",
                        Some(_) => "field \"secret_id\" must be a string",
                    })
                })?;
                self.generate_secret_id(req, &name, Some(custom)).await
            }
            (Route::SecretIdLookup(name), _) if write => self.lookup_secret_id(req, &name).await,
            (Route::SecretIdDestroy(name), Create | Update | Delete) => {
                self.destroy_secret_id(req, &name).await
            }
            (Route::AccessorLookup(name), _) if write => self.lookup_accessor(req, &name).await,
            (Route::AccessorDestroy(name), Create | Update | Delete) => {
                self.destroy_accessor(req, &name).await
            }
            (Route::RoleField(name, index), _) => {
                let field = FIELD_PATHS.get(index).ok_or(SdkError::UnsupportedPath)?;
                match op {
                    Read => self.read_role_field(req, &name, field).await,
                    Create | Update => self.write_role_field(req, &name, field).await,
                    Delete => self.reset_role_field(req, &name, field).await,
                    _ => Err(SdkError::UnsupportedOperation),
                }
            }
            (Route::Login, _) if write => self.login(req).await,
            (Route::Tidy, _) if write => {
                let started = self.tidy_once(req.storage.as_ref()).await?;
                Ok(if started {
                    Response {
                        status: Some(202),
                        warnings: vec!["Tidy operation successfully started. Any information \
                                        from the operation will be printed to Vault's server \
                                        logs."
                            .into()],
                        ..Response::default()
                    }
                } else {
                    Response::empty().with_warning("Tidy operation already in progress.")
                })
            }
            _ => Err(SdkError::UnsupportedOperation),
        }
    }
}

#[async_trait]
impl Backend for AppRole {
    async fn handle_request(&self, req: &mut Request) -> Result<Response, SdkError> {
        let req: &Request = req;
        let route = route(&req.path).ok_or(SdkError::UnsupportedPath)?;
        if role_name(&route).is_some_and(|n| n.len() > MAX_INPUT_LEN) {
            return Err(SdkError::bad(format!(
                "role_name is longer than maximum of {MAX_INPUT_LEN} bytes"
            )));
        }
        self.dispatch(req, route).await
    }

    async fn existence_check(&self, req: &Request) -> Result<Option<bool>, SdkError> {
        match route(&req.path) {
            Some(Route::Role(name)) => Ok(Some(
                store::load_role(req.storage.as_ref(), &name)
                    .await?
                    .is_some(),
            )),
            _ => Ok(None),
        }
    }

    fn special_paths(&self) -> SpecialPaths {
        SpecialPaths {
            unauthenticated: vec!["login".into()],
            root: Vec::new(),
        }
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Credential
    }

    /// Forget the cached HMAC key when its entry changes underneath (a restore).
    fn invalidate(&self, key: &str) {
        if key == store::SALT_KEY {
            if let Ok(mut cached) = self.hasher.write() {
                *cached = None;
            }
        }
    }

    /// Delete expired secret ids (and dangling index entries), as Vault's periodic tidy.
    async fn periodic(&self) -> Result<(), SdkError> {
        self.tidy_once(self.storage.as_ref()).await.map(|_| ())
    }

    async fn renew(&self, req: &mut Request, internal: &Value) -> Result<Response, SdkError> {
        self.renew_login(req, internal).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |n: &str| n.to_string();
        let cases = [
            ("role", Some(Route::Roles)),
            ("role/", Some(Route::Roles)),
            ("role/Web", Some(Route::Role(r("web")))),
            ("role/web/", Some(Route::Role(r("web")))),
            ("role/web/role-id", Some(Route::RoleId(r("web")))),
            ("role/web/secret-id", Some(Route::SecretId(r("web")))),
            ("role/web/secret-id/", Some(Route::SecretId(r("web")))),
            (
                "role/web/custom-secret-id",
                Some(Route::CustomSecretId(r("web"))),
            ),
            (
                "role/web/secret-id/lookup",
                Some(Route::SecretIdLookup(r("web"))),
            ),
            (
                "role/web/secret-id/destroy/",
                Some(Route::SecretIdDestroy(r("web"))),
            ),
            (
                "role/web/secret-id-accessor/lookup",
                Some(Route::AccessorLookup(r("web"))),
            ),
            (
                "role/web/secret-id-accessor/destroy",
                Some(Route::AccessorDestroy(r("web"))),
            ),
            ("login", Some(Route::Login)),
            ("tidy/secret-id", Some(Route::Tidy)),
            ("role/web/other", None),
            ("role/web/token-ttl", Some(Route::RoleField(r("web"), 3))),
            ("role/-web", None),
            ("role//x", None),
            ("login/x", None),
            ("", None),
        ];
        for (path, want) in cases {
            assert_eq!(route(path), want, "{path}");
        }
    }
}

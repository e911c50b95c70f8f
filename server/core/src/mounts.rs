//! The mount tables (secret engines at `core/mounts`, auth methods at `core/auth`) and
//! the router: longest-prefix match from a request path to a mounted backend.
//!
//! Each mount's data lives under its own storage prefix (`logical/<uuid>/` or
//! `auth/<uuid>/`), so a plugin's storage view cannot name another mount's keys.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use coffer_sdk::{Backend, BackendConfig, Factory};
use serde::{Deserialize, Serialize};

use crate::store::{LogicalStore, PrefixedStorage};
use crate::CoreError;

/// Where the secret-engine table is stored.
pub const MOUNTS_PATH: &str = "core/mounts";
/// Where the auth-method table is stored.
pub const AUTH_PATH: &str = "core/auth";

/// Engine types served by the core itself (not from the catalog).
pub const BUILTIN_SECRET_TYPES: &[&str] = &["system", "cubbyhole", "identity"];

/// Which table a mount belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// `sys/mounts`.
    Secret,
    /// `sys/auth`.
    Auth,
}

impl Table {
    /// Storage key of the table.
    pub fn storage_key(self) -> &'static str {
        match self {
            Table::Secret => MOUNTS_PATH,
            Table::Auth => AUTH_PATH,
        }
    }

    /// Prefix of request paths for this table.
    pub fn route_prefix(self) -> &'static str {
        match self {
            Table::Secret => "",
            Table::Auth => "auth/",
        }
    }

    fn data_prefix(self) -> &'static str {
        match self {
            Table::Secret => "logical/",
            Table::Auth => "auth/",
        }
    }
}

/// Per-mount tunables (seconds; 0 = system default).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountConfig {
    /// Default lease TTL in seconds (0 = system).
    #[serde(default)]
    pub default_lease_ttl: u64,
    /// Max lease TTL in seconds (0 = system).
    #[serde(default)]
    pub max_lease_ttl: u64,
    /// Vault's force_no_cache (reported only).
    #[serde(default)]
    pub force_no_cache: bool,
}

/// One row of a mount table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount path with trailing `/`, relative to the table (`secret/`, `userpass/`).
    pub path: String,
    /// Backend type (`kv`, `transit`, `userpass`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Accessor (`kv_1a2b3c4d`).
    pub accessor: String,
    /// UUID; also names the storage prefix.
    pub uuid: String,
    /// Tunables.
    #[serde(default)]
    pub config: MountConfig,
    /// Backend options (`version` for kv).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Vault's `local` flag (reported only).
    #[serde(default)]
    pub local: bool,
    /// Vault's `seal_wrap` flag (reported only).
    #[serde(default)]
    pub seal_wrap: bool,
}

impl MountEntry {
    /// Where this mount's data lives in logical storage.
    pub fn storage_prefix(&self, table: Table) -> String {
        format!("{}{}/", table.data_prefix(), self.uuid)
    }
}

/// A mounted backend, ready to serve.
pub struct Mounted {
    /// Its table row.
    pub entry: MountEntry,
    /// Which table.
    pub table: Table,
    /// The backend (None for built-in types that the core serves itself).
    pub backend: Option<Arc<dyn Backend>>,
    /// Its storage view.
    pub storage: Arc<dyn coffer_sdk::Storage>,
}

impl Mounted {
    /// The request-path prefix (`secret/`, `auth/userpass/`).
    pub fn route_path(&self) -> String {
        format!("{}{}", self.table.route_prefix(), self.entry.path)
    }
}

/// Factories by type name, registered by the composition root; secret-engine types
/// that are not built in come from `sys/plugins/catalog` and run as their own process.
#[derive(Clone, Default)]
pub struct Catalog {
    secret: HashMap<String, Factory>,
    auth: HashMap<String, Factory>,
    pub(crate) external: crate::plugin_catalog::ExternalPlugins,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Register a secret engine type.
    pub fn secret(mut self, kind: &str, factory: Factory) -> Catalog {
        self.secret.insert(kind.to_string(), factory);
        self
    }

    /// Register an auth method type.
    pub fn auth(mut self, kind: &str, factory: Factory) -> Catalog {
        self.auth.insert(kind.to_string(), factory);
        self
    }

    /// Resolve external plugins' commands inside this directory (`plugin_directory`).
    pub fn plugin_directory(mut self, dir: Option<std::path::PathBuf>) -> Catalog {
        self.external = self.external.with_directory(dir);
        self
    }

    /// The built-in type names of a table, sorted.
    pub fn names(&self, table: Table) -> Vec<String> {
        let map = match table {
            Table::Secret => &self.secret,
            Table::Auth => &self.auth,
        };
        let mut names: Vec<String> = map.keys().cloned().collect();
        names.sort();
        names
    }

    /// Start the external plugin of a just-instantiated mount (no-op for built-ins).
    pub async fn start_external(&self, uuid: &str) -> Result<(), CoreError> {
        self.external.start(uuid).await
    }

    fn factory(&self, table: Table, kind: &str) -> Option<Factory> {
        match table {
            Table::Secret => self.secret.get(kind).copied(),
            Table::Auth => self.auth.get(kind).copied(),
        }
    }
}

/// The router: all mounts of both tables, by route path and by uuid.
#[derive(Default)]
pub struct Router {
    by_route: HashMap<String, Arc<Mounted>>,
    by_uuid: HashMap<String, Arc<Mounted>>,
}

impl Router {
    /// The mount serving `path` (longest prefix) and the path inside it.
    pub fn route(&self, path: &str) -> Option<(Arc<Mounted>, String)> {
        let with_slash;
        let probe: &str = if path.ends_with('/') {
            path
        } else {
            with_slash = format!("{path}/");
            &with_slash
        };
        let mut end = probe.len();
        loop {
            let candidate = &probe[..end];
            if let Some(m) = self.by_route.get(candidate) {
                let rest = path.get(candidate.len()..).unwrap_or("").to_string();
                return Some((m.clone(), rest));
            }
            match probe[..end - 1].rfind('/') {
                Some(i) => end = i + 1,
                None => return None,
            }
        }
    }

    /// Mount by uuid (for cache invalidation).
    pub fn by_uuid(&self, uuid: &str) -> Option<&Arc<Mounted>> {
        self.by_uuid.get(uuid)
    }

    /// All mounts of a table, sorted by path.
    pub fn entries(&self, table: Table) -> Vec<Arc<Mounted>> {
        let mut out: Vec<Arc<Mounted>> = self
            .by_route
            .values()
            .filter(|m| m.table == table)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
        out
    }
}

/// Read a table from storage (empty when missing).
pub fn load_table(store: &LogicalStore, table: Table) -> Result<Vec<MountEntry>, CoreError> {
    Ok(store.get_json(table.storage_key())?.unwrap_or_default())
}

/// Build the router from both tables.
pub fn build_router(store: &Arc<LogicalStore>, catalog: &Catalog) -> Result<Router, CoreError> {
    let mut router = Router::default();
    for table in [Table::Secret, Table::Auth] {
        for entry in load_table(store, table)? {
            let mounted = Arc::new(instantiate(store, catalog, table, entry)?);
            router
                .by_uuid
                .insert(mounted.entry.uuid.clone(), mounted.clone());
            router.by_route.insert(mounted.route_path(), mounted);
        }
    }
    Ok(router)
}

/// Create the backend for one table row.
pub fn instantiate(
    store: &Arc<LogicalStore>,
    catalog: &Catalog,
    table: Table,
    entry: MountEntry,
) -> Result<Mounted, CoreError> {
    let storage: Arc<dyn coffer_sdk::Storage> = Arc::new(PrefixedStorage::new(
        store.clone(),
        entry.storage_prefix(table),
    ));
    let builtin = match table {
        Table::Secret => BUILTIN_SECRET_TYPES.contains(&entry.kind.as_str()),
        Table::Auth => entry.kind == "token",
    };
    let backend = if builtin {
        None
    } else if let Some(factory) = catalog.factory(table, &entry.kind) {
        Some(factory(BackendConfig {
            mount_point: entry.path.clone(),
            options: entry.options.clone(),
            storage: storage.clone(),
        })?)
    } else {
        // Not built in: a plugin registered in sys/plugins/catalog (its own process).
        Some(
            catalog
                .external
                .backend(store, table, &entry, storage.clone())?,
        )
    };
    Ok(Mounted {
        entry,
        table,
        backend,
        storage,
    })
}

/// Vault's checks on a new mount path; returns it with a trailing `/`.
pub fn normalize_mount_path(path: &str) -> Result<String, CoreError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(CoreError::BadRequest("path cannot be empty".into()));
    }
    if trimmed
        .split('/')
        .any(|s| s.is_empty() || s == ".." || s == ".")
    {
        return Err(CoreError::BadRequest(format!(
            "invalid mount path {path:?}"
        )));
    }
    Ok(format!("{trimmed}/"))
}

/// A new accessor for a mount type (`kv_1a2b3c4d`).
pub fn new_accessor(kind: &str) -> String {
    format!(
        "{}_{}",
        kind.replace('-', "_"),
        &hex::encode(crate::random_bytes(4))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounted(route: &str) -> Router {
        let mut r = Router::default();
        for path in route.split(',') {
            let entry = MountEntry {
                path: path.to_string(),
                kind: "system".into(),
                description: String::new(),
                accessor: String::new(),
                uuid: path.to_string(),
                config: MountConfig::default(),
                options: BTreeMap::new(),
                local: false,
                seal_wrap: false,
            };
            let m = Arc::new(Mounted {
                entry,
                table: Table::Secret,
                backend: None,
                storage: coffer_sdk::testing::MemStorage::new(),
            });
            r.by_route.insert(path.to_string(), m);
        }
        r
    }

    #[test]
    fn longest_prefix_wins() {
        let r = mounted("secret/,secret/team/,kv/");
        let cases = [
            ("secret/foo", Some(("secret/", "foo"))),
            ("secret/team/x/y", Some(("secret/team/", "x/y"))),
            ("secret/teamx", Some(("secret/", "teamx"))),
            ("secret", Some(("secret/", ""))),
            ("secret/", Some(("secret/", ""))),
            ("kv/a/b/", Some(("kv/", "a/b/"))),
            ("other/x", None),
            ("secre", None),
        ];
        for (path, want) in cases {
            let got = r.route(path).map(|(m, rest)| (m.entry.path.clone(), rest));
            assert_eq!(
                got,
                want.map(|(a, b)| (a.to_string(), b.to_string())),
                "{path}"
            );
        }
    }

    #[test]
    fn mount_paths_are_checked() {
        assert_eq!(normalize_mount_path("/secret/").unwrap(), "secret/");
        assert_eq!(normalize_mount_path("a/b").unwrap(), "a/b/");
        for bad in ["", "/", "a//b", "../x", "a/../b"] {
            assert!(normalize_mount_path(bad).is_err(), "{bad}");
        }
    }
}

//! External secret-engine plugins in the core.
//!
//! - The catalog API, Vault's shape: `sys/plugins/catalog/secret/:name` PUT (`sha256`,
//!   `command`, `args`, `env`), GET, DELETE; LIST `sys/plugins/catalog/secret`; GET
//!   `sys/plugins/catalog`. Entries are stored through the barrier at
//!   [`CATALOG_PREFIX`]`<name>` (so `env`, which may hold credentials, is encrypted and
//!   never read back).
//! - Resolving a registered command: inside the configured `plugin_directory` (a relative
//!   path that must stay inside it after symlinks), otherwise an absolute path. The
//!   executable's SHA-256 must match the entry at registration, at mount and before every
//!   (re)start of the process.
//! - [`ExternalPlugins`]: the [`ExternalBackend`] of each mount of such a plugin, shared
//!   between router rebuilds (by mount uuid, weakly: the routers own them), so a change
//!   of the mount table does not restart every plugin, and sealing (which drops the
//!   routers) stops them all.
//!
//! Decisions: names of built-in types cannot be registered (no shadowing), and a plugin
//! still mounted cannot be deregistered (the mount would fail to load on unseal).

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use coffer_plugin_host::{ExternalBackend, ExternalConfig, PluginCommand, PluginSource, Timeouts};
use coffer_sdk::{fields, Backend, Operation, SdkError, Storage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::handling::{LogicalRequest, LogicalResponse};
use crate::mounts::{MountEntry, Table, BUILTIN_SECRET_TYPES};
use crate::store::LogicalStore;
use crate::{Core, CoreError, Unsealed};

/// Where secret-plugin catalog entries live in logical storage.
pub const CATALOG_PREFIX: &str = "core/plugin-catalog/secret/";

/// Type names that are not plugins but must not be registered either.
const RESERVED_NAMES: &[&str] = &["generic", "kv-v2", "token", "plugin"];

/// One registered external secret engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginEntry {
    /// The name (the mount `type`).
    pub name: String,
    /// The executable: relative to `plugin_directory`, or absolute without one.
    pub command: String,
    /// Arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment, `KEY=value` each (the plugin gets nothing else).
    #[serde(default)]
    pub env: Vec<String>,
    /// Lowercase hex SHA-256 of the executable.
    pub sha256: String,
}

fn catalog_key(name: &str) -> String {
    format!("{CATALOG_PREFIX}{name}")
}

/// Load a catalog entry.
pub fn load_entry(store: &LogicalStore, name: &str) -> Result<Option<PluginEntry>, CoreError> {
    if !valid_name(name) {
        return Ok(None);
    }
    store.get_json(&catalog_key(name))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The executable a `command` names: inside `directory` when one is configured (no
/// `..`, no escape through symlinks), otherwise an absolute path. Must be a file.
pub fn resolve_command(directory: Option<&Path>, command: &str) -> Result<PathBuf, String> {
    if command.is_empty() {
        return Err("missing command value".into());
    }
    let path = Path::new(command);
    let candidate = match directory {
        Some(dir) => {
            if path.is_absolute()
                || path
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_)))
            {
                return Err(format!(
                    "command {command:?} must be a path inside the plugin directory"
                ));
            }
            let root = dir
                .canonicalize()
                .map_err(|e| format!("plugin directory {} is not usable: {e}", dir.display()))?;
            let full = root
                .join(path)
                .canonicalize()
                .map_err(|e| format!("plugin command {command:?}: {e}"))?;
            if !full.starts_with(&root) {
                return Err(format!(
                    "command {command:?} resolves outside the plugin directory"
                ));
            }
            full
        }
        None => {
            if !path.is_absolute() {
                return Err(format!(
                    "command {command:?} must be an absolute path when no plugin_directory is configured"
                ));
            }
            path.canonicalize()
                .map_err(|e| format!("plugin command {command:?}: {e}"))?
        }
    };
    if !candidate.is_file() {
        return Err(format!("plugin command {command:?} is not a file"));
    }
    Ok(candidate)
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish().as_ref()))
}

/// Resolve an entry's command and check the executable's SHA-256.
fn verify(directory: Option<&Path>, entry: &PluginEntry) -> Result<PathBuf, String> {
    let path = resolve_command(directory, &entry.command)?;
    let actual = sha256_file(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if actual != entry.sha256 {
        return Err(format!(
            "the SHA-256 of {} does not match the catalog entry for plugin {:?} (re-register it after an upgrade)",
            path.display(),
            entry.name
        ));
    }
    Ok(path)
}

fn sdk_error(err: CoreError) -> SdkError {
    match err {
        CoreError::Sealed => SdkError::Sealed,
        CoreError::Backend(e) => e,
        other => SdkError::Storage(other.to_string()),
    }
}

/// The command of one catalog entry, re-read and re-verified before every start.
struct CatalogSource {
    store: Arc<LogicalStore>,
    name: String,
    directory: Option<PathBuf>,
}

impl PluginSource for CatalogSource {
    fn resolve(&self) -> Result<PluginCommand, SdkError> {
        let entry = load_entry(&self.store, &self.name)
            .map_err(sdk_error)?
            .ok_or_else(|| {
                SdkError::bad(format!("plugin not found in the catalog: {}", self.name))
            })?;
        let program = verify(self.directory.as_deref(), &entry).map_err(SdkError::bad)?;
        let env = entry
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(PluginCommand {
            program,
            args: entry.args,
            env,
        })
    }
}

type RunningMap = HashMap<String, (String, Weak<ExternalBackend>)>;

/// The plugin directory and the external backends of the mounts, by mount uuid.
#[derive(Clone, Default)]
pub struct ExternalPlugins {
    directory: Option<PathBuf>,
    running: Arc<Mutex<RunningMap>>,
}

impl ExternalPlugins {
    /// Resolve commands inside `directory` (Vault's `plugin_directory`).
    pub fn with_directory(mut self, directory: Option<PathBuf>) -> ExternalPlugins {
        self.directory = directory;
        self
    }

    /// The backend of a mount whose type is a catalog entry; the running one when the
    /// mount is unchanged (same type, path and options), else a new one (started in the
    /// background). 400 when the type is not in the catalog.
    pub(crate) fn backend(
        &self,
        store: &Arc<LogicalStore>,
        table: Table,
        entry: &MountEntry,
        storage: Arc<dyn Storage>,
    ) -> Result<Arc<dyn Backend>, CoreError> {
        let not_found =
            || CoreError::BadRequest(format!("plugin not found in the catalog: {}", entry.kind));
        if table != Table::Secret || load_entry(store, &entry.kind)?.is_none() {
            return Err(not_found());
        }
        let fingerprint = format!("{}\n{}\n{:?}", entry.kind, entry.path, entry.options);
        let mut running = self
            .running
            .lock()
            .map_err(|_| CoreError::Internal("plugin table lock poisoned".into()))?;
        running.retain(|_, (_, weak)| weak.strong_count() > 0);
        if let Some((fp, weak)) = running.get(&entry.uuid) {
            if *fp == fingerprint {
                if let Some(backend) = weak.upgrade() {
                    return Ok(backend);
                }
            }
        }
        let backend = ExternalBackend::new(
            ExternalConfig {
                name: entry.kind.clone(),
                mount_point: entry.path.clone(),
                options: entry.options.clone(),
                storage,
                timeouts: Timeouts::default(),
            },
            Arc::new(CatalogSource {
                store: store.clone(),
                name: entry.kind.clone(),
                directory: self.directory.clone(),
            }),
        );
        running.insert(entry.uuid.clone(), (fingerprint, Arc::downgrade(&backend)));
        backend.start_in_background();
        Ok(backend)
    }

    /// Start the external plugin of a mount now (a no-op for other mounts), so that a
    /// mount of a plugin that cannot start is refused: 400 for a checksum mismatch or a
    /// refused handshake.
    pub(crate) async fn start(&self, uuid: &str) -> Result<(), CoreError> {
        let backend = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.get(uuid).and_then(|(_, w)| w.upgrade()));
        match backend {
            Some(b) => b.start().await.map_err(CoreError::Backend),
            None => Ok(()),
        }
    }

    /// The running process id of a mount's plugin (diagnostics and tests).
    pub fn pid(&self, uuid: &str) -> Option<u32> {
        self.running
            .lock()
            .ok()?
            .get(uuid)
            .and_then(|(_, w)| w.upgrade())
            .and_then(|b| b.pid())
    }
}

fn string_list(data: &Map<String, Value>, key: &str) -> Result<Vec<String>, CoreError> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => fields::as_str_list(v)
            .ok_or_else(|| CoreError::BadRequest(format!("{key} must be a list of strings"))),
    }
}

impl Core {
    fn builtin_plugin(&self, table: Table, name: &str) -> bool {
        self.catalog.names(table).iter().any(|n| n == name)
            || (table == Table::Secret && BUILTIN_SECRET_TYPES.contains(&name))
            || RESERVED_NAMES.contains(&name)
    }

    fn secret_plugin_names(&self, state: &Unsealed) -> Result<Vec<String>, CoreError> {
        let mut names: BTreeSet<String> = self.catalog.names(Table::Secret).into_iter().collect();
        names.extend(
            state
                .store
                .list(CATALOG_PREFIX)?
                .into_iter()
                .filter(|k| !k.ends_with('/')),
        );
        Ok(names.into_iter().collect())
    }

    /// `sys/plugins/catalog[/<type>[/<name>]]`; `rest` is what follows `plugins/catalog`.
    pub(crate) async fn plugin_catalog(
        &self,
        state: &Arc<Unsealed>,
        rest: &str,
        req: &LogicalRequest,
    ) -> Result<LogicalResponse, CoreError> {
        let rest = rest.trim_matches('/');
        let (kind, name) = rest.split_once('/').unwrap_or((rest, ""));
        let op = req.operation;
        match (kind, name) {
            ("", _) if op == Operation::Read => {
                let secret = self.secret_plugin_names(state)?;
                let auth = self.catalog.names(Table::Auth);
                let mut detailed = Vec::new();
                for name in &auth {
                    detailed.push(json!({"type": "auth", "name": name, "builtin": true,
                        "version": format!("v{}+builtin", crate::VAULT_VERSION),
                        "deprecation_status": "supported"}));
                }
                for name in &secret {
                    detailed.push(match load_entry(&state.store, name)? {
                        Some(e) => json!({"type": "secret", "name": name, "builtin": false,
                            "version": "", "sha256": e.sha256}),
                        None => json!({"type": "secret", "name": name, "builtin": true,
                            "version": format!("v{}+builtin", crate::VAULT_VERSION),
                            "deprecation_status": "supported"}),
                    });
                }
                Ok(LogicalResponse::ok(json!({
                    "secret": secret,
                    "auth": auth,
                    "database": [],
                    "detailed": detailed,
                })))
            }
            ("secret" | "auth" | "database", "")
                if matches!(op, Operation::List | Operation::Read) =>
            {
                let keys = match kind {
                    "secret" => self.secret_plugin_names(state)?,
                    "auth" => self.catalog.names(Table::Auth),
                    _ => Vec::new(),
                };
                Ok(LogicalResponse::ok(json!({ "keys": keys })))
            }
            ("secret", name) if !name.is_empty() => self.catalog_entry_op(state, name, req).await,
            ("auth" | "database", _) => Err(CoreError::BadRequest(format!(
                "coffer runs external plugins of type \"secret\" only, not {kind:?}"
            ))),
            _ => Err(CoreError::NotFound(format!(
                "no handler for route \"{}\". route entry not found.",
                req.path
            ))),
        }
    }

    async fn catalog_entry_op(
        &self,
        state: &Arc<Unsealed>,
        name: &str,
        req: &LogicalRequest,
    ) -> Result<LogicalResponse, CoreError> {
        match req.operation {
            Operation::Read => {
                if self.catalog.names(Table::Secret).iter().any(|n| n == name) {
                    return Ok(LogicalResponse::ok(json!({
                        "name": name, "builtin": true, "command": "", "args": [],
                        "sha256": "", "version": format!("v{}+builtin", crate::VAULT_VERSION),
                    })));
                }
                let entry = load_entry(&state.store, name)?
                    .ok_or_else(|| CoreError::NotFound(String::new()))?;
                // `env` is not shown: it may hold credentials (as Vault).
                Ok(LogicalResponse::ok(json!({
                    "name": entry.name, "builtin": false, "command": entry.command,
                    "args": entry.args, "sha256": entry.sha256, "version": "",
                })))
            }
            Operation::Create | Operation::Update => {
                let entry = self.parse_entry(name, &req.data)?;
                let directory = self.catalog.external.directory.clone();
                let checked = entry.clone();
                tokio::task::spawn_blocking(move || verify(directory.as_deref(), &checked))
                    .await
                    .map_err(|e| CoreError::Internal(e.to_string()))?
                    .map_err(CoreError::BadRequest)?;
                let index = state.store.put_json(&catalog_key(name), &entry).await?;
                tracing::info!(plugin = %name, command = %entry.command, "registered external plugin");
                Ok(LogicalResponse::no_content(index))
            }
            Operation::Delete => {
                if self.builtin_plugin(Table::Secret, name) {
                    return Err(CoreError::BadRequest(format!(
                        "cannot deregister the built-in plugin {name:?}"
                    )));
                }
                if let Some(m) = state
                    .router()?
                    .entries(Table::Secret)
                    .into_iter()
                    .find(|m| m.entry.kind == name)
                {
                    return Err(CoreError::BadRequest(format!(
                        "plugin {name:?} is in use by the mount {:?}; disable it first",
                        m.entry.path
                    )));
                }
                let index = state.store.delete(&catalog_key(name)).await?;
                Ok(LogicalResponse::no_content(index))
            }
            _ => Err(CoreError::Backend(SdkError::UnsupportedOperation)),
        }
    }

    fn parse_entry(&self, name: &str, data: &Map<String, Value>) -> Result<PluginEntry, CoreError> {
        if !valid_name(name) {
            return Err(CoreError::BadRequest(format!(
                "invalid plugin name {name:?}: letters, digits, '-', '_' and '.' only"
            )));
        }
        if self.builtin_plugin(Table::Secret, name) || self.builtin_plugin(Table::Auth, name) {
            return Err(CoreError::BadRequest(format!(
                "{name:?} is the name of a built-in type and cannot be registered"
            )));
        }
        let sha256 = data
            .get("sha256")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if sha256.is_empty() {
            return Err(CoreError::BadRequest("missing SHA-256 value".into()));
        }
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CoreError::BadRequest(
                "sha256 must be the hex-encoded SHA-256 of the plugin executable".into(),
            ));
        }
        let command = data
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if command.is_empty() {
            return Err(CoreError::BadRequest("missing command value".into()));
        }
        let env = string_list(data, "env")?;
        if let Some(bad) = env
            .iter()
            .find(|kv| kv.split_once('=').is_none_or(|(k, _)| k.is_empty()))
        {
            let key = bad.split('=').next().unwrap_or_default();
            return Err(CoreError::BadRequest(format!(
                "env entries must be KEY=value (bad entry for {key:?})"
            )));
        }
        Ok(PluginEntry {
            name: name.to_string(),
            command,
            args: string_list(data, "args")?,
            env,
            sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_stay_inside_the_plugin_directory() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        std::fs::write(plugins.join("p"), b"#!/bin/sh\n").unwrap();
        std::fs::write(dir.path().join("outside"), b"x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("outside"), plugins.join("link")).unwrap();

        let ok = resolve_command(Some(&plugins), "p").unwrap();
        assert!(ok.ends_with("p"));
        for bad in ["../outside", "/bin/sh", "", "missing", "."] {
            assert!(resolve_command(Some(&plugins), bad).is_err(), "{bad}");
        }
        #[cfg(unix)]
        assert!(resolve_command(Some(&plugins), "link")
            .unwrap_err()
            .contains("outside"));
        // Without a directory: absolute paths only.
        assert!(resolve_command(None, "p").is_err());
        let abs = plugins.join("p");
        assert!(resolve_command(None, abs.to_str().unwrap()).is_ok());
    }

    #[test]
    fn the_checksum_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p");
        std::fs::write(&file, b"abc").unwrap();
        let sum = sha256_file(&file).unwrap();
        assert_eq!(
            sum,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut entry = PluginEntry {
            name: "p".into(),
            command: "p".into(),
            args: vec![],
            env: vec![],
            sha256: sum,
        };
        assert!(verify(Some(dir.path()), &entry).is_ok());
        entry.sha256 = "00".repeat(32);
        assert!(verify(Some(dir.path()), &entry)
            .unwrap_err()
            .contains("does not match"));
    }

    #[test]
    fn plugin_names_are_checked() {
        for ok in ["kv-echo", "my_plugin.v2", "a"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-x", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}

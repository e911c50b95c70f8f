//! The core: request handling above the barrier.
//!
//! It owns the seal state (init, unseal progress, rekey, generate-root), and, while
//! unsealed, the token store, policy store, mount table and router. It knows nothing of
//! HTTP, sled or openraft: it sees the barrier, the policies crate, the sdk, and a small
//! [`Cluster`] trait for leadership facts.

pub mod audit;
pub mod cluster_api;
pub mod cubbyhole;
pub mod handling;
pub mod leases;
pub mod mounts;
pub mod plugin_catalog;
pub mod policy_store;
pub mod raft_snapshot;
pub mod seal;
pub mod store;
pub mod sys;
pub mod token;
pub mod token_api;
pub mod token_roles;
pub mod wrapping;

use std::sync::Arc;
use std::time::Duration;

use coffer_barrier::barrier::{Barrier, BarrierError};
use coffer_sdk::SdkError;
use coffer_storage::StorageError;
use tokio::sync::Mutex as AsyncMutex;

pub use handling::{LogicalRequest, LogicalResponse};
pub use seal::{HealthStatus, InitRequest, InitResponse, LeaderStatus, SealStatus};

/// The version reported to clients (they branch on it; see COMPAT.md).
pub const VAULT_VERSION: &str = "1.16.3";

/// Leadership and replication facts the core needs, implemented over Raft by the
/// composition root. Membership, join, snapshots and the rest of HA are in
/// [`cluster_api::ClusterOps`].
pub trait Cluster: cluster_api::ClusterOps + Send + Sync {
    /// Whether this node is the active (leader) node.
    fn is_leader(&self) -> bool;
    /// The leader's API address, if known.
    fn leader_api_addr(&self) -> Option<String>;
    /// The leader's cluster address, if known.
    fn leader_cluster_addr(&self) -> Option<String>;
    /// Raft committed index.
    fn committed_index(&self) -> u64;
    /// Raft applied index on this node.
    fn applied_index(&self) -> u64;
    /// The storage type name for `sys/seal-status` (`raft` or `inmem`).
    fn storage_type(&self) -> String;
}

/// Errors of the core, mapped to HTTP status in one place ([`CoreError::status`]).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Sealed: 503.
    #[error("Vault is sealed")]
    Sealed,
    /// Not initialized: 400 for operations, 501 in health.
    #[error("Vault is not initialized")]
    NotInitialized,
    /// Bad input: 400.
    #[error("{0}")]
    BadRequest(String),
    /// Missing/invalid token or not allowed: 403.
    #[error("permission denied")]
    PermissionDenied,
    /// Unknown path: 404.
    #[error("{0}")]
    NotFound(String),
    /// Standby that cannot serve this: 503/307 decided by the HTTP layer.
    #[error("node is not the active node")]
    Standby { leader: Option<String> },
    /// A backend's error, with its own status.
    #[error(transparent)]
    Backend(#[from] SdkError),
    /// Storage unavailable: 503; other storage failures: 500.
    #[error("{0}")]
    Storage(StorageError),
    /// Anything else: 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            CoreError::Sealed => 503,
            CoreError::NotInitialized | CoreError::BadRequest(_) => 400,
            CoreError::PermissionDenied => 403,
            CoreError::NotFound(_) => 404,
            CoreError::Standby { .. } => 503,
            CoreError::Backend(e) => e.status(),
            CoreError::Storage(StorageError::Unavailable(_) | StorageError::Timeout) => 503,
            CoreError::Storage(_) | CoreError::Internal(_) => 500,
        }
    }

    /// The `errors` array.
    pub fn messages(&self) -> Vec<String> {
        match self {
            CoreError::Backend(e) => e.messages(),
            CoreError::NotFound(m) if m.is_empty() => Vec::new(),
            other => vec![other.to_string()],
        }
    }
}

impl From<BarrierError> for CoreError {
    fn from(err: BarrierError) -> Self {
        match err {
            BarrierError::Sealed => CoreError::Sealed,
            BarrierError::NotInitialized => CoreError::NotInitialized,
            BarrierError::AlreadyInitialized => {
                CoreError::BadRequest("Vault is already initialized".into())
            }
            BarrierError::Invalid(m) => CoreError::BadRequest(m),
            BarrierError::WrongKey => CoreError::BadRequest(err.to_string()),
            BarrierError::Storage(StorageError::NotLeader { leader }) => {
                CoreError::Standby { leader }
            }
            BarrierError::Storage(e) => CoreError::Storage(e),
            BarrierError::Crypto(m) => CoreError::Internal(m),
        }
    }
}

/// Static configuration of the core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// System default lease TTL.
    pub default_lease_ttl: Duration,
    /// System max lease TTL.
    pub max_lease_ttl: Duration,
    /// Cluster name reported in status.
    pub cluster_name: String,
    /// This node's advertised API address.
    pub api_addr: String,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            default_lease_ttl: Duration::from_secs(32 * 24 * 3600),
            max_lease_ttl: Duration::from_secs(32 * 24 * 3600),
            cluster_name: "coffer-cluster".into(),
            api_addr: String::new(),
        }
    }
}

/// State that exists only while unsealed.
pub struct Unsealed {
    /// Logical storage.
    pub store: Arc<store::LogicalStore>,
    /// Tokens.
    pub tokens: Arc<token::TokenStore>,
    /// ACL policies.
    pub policies: Arc<policy_store::PolicyStore>,
    router: std::sync::RwLock<Arc<mounts::Router>>,
    router_stale: std::sync::atomic::AtomicBool,
    /// Serialises mount-table changes.
    pub mount_lock: AsyncMutex<()>,
    /// Audit devices.
    pub audit: audit::AuditBroker,
    /// Lease deadlines.
    pub expiration: Arc<leases::Expiration>,
    audit_stale: std::sync::atomic::AtomicBool,
}

impl Unsealed {
    /// The current router (rebuilt lazily after a replicated mount-table change).
    pub fn router(&self) -> Result<Arc<mounts::Router>, CoreError> {
        self.router
            .read()
            .map(|r| r.clone())
            .map_err(|_| CoreError::Internal("router lock poisoned".into()))
    }

    /// Rebuild the router from the stored tables.
    pub fn reload_router(&self, catalog: &mounts::Catalog) -> Result<(), CoreError> {
        let router = Arc::new(mounts::build_router(&self.store, catalog)?);
        *self
            .router
            .write()
            .map_err(|_| CoreError::Internal("router lock poisoned".into()))? = router;
        Ok(())
    }

    fn invalidate(&self, key: &str) {
        self.tokens.invalidate_key(key);
        self.policies.invalidate_key(key);
        if key == audit::AUDIT_PATH {
            self.audit_stale
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return;
        }
        if key == mounts::MOUNTS_PATH || key == mounts::AUTH_PATH {
            self.router_stale
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return;
        }
        let rest = key
            .strip_prefix("logical/")
            .or_else(|| key.strip_prefix("auth/"));
        if let Some((uuid, inner)) = rest.and_then(|r| r.split_once('/')) {
            if let Ok(router) = self.router() {
                if let Some(backend) = router.by_uuid(uuid).and_then(|m| m.backend.clone()) {
                    backend.invalidate(inner);
                }
            }
        }
    }
}

/// The core.
pub struct Core {
    barrier: Arc<Barrier>,
    cluster: Arc<dyn Cluster>,
    config: CoreConfig,
    catalog: mounts::Catalog,
    seal: seal::SealState,
    unsealed: std::sync::RwLock<Option<Arc<Unsealed>>>,
    /// Serialises unseal/seal transitions.
    transition: AsyncMutex<()>,
    /// High-availability state (pending join, outstanding bootstrap challenges).
    cluster_state: cluster_api::ClusterState,
    /// A weak handle on itself, for background tasks.
    me: std::sync::Weak<Core>,
}

impl Core {
    /// A sealed core over a barrier.
    pub fn new(
        barrier: Arc<Barrier>,
        cluster: Arc<dyn Cluster>,
        config: CoreConfig,
        catalog: mounts::Catalog,
    ) -> Arc<Core> {
        let core = Arc::new_cyclic(|me| Core {
            me: me.clone(),
            barrier,
            cluster,
            config,
            catalog,
            seal: seal::SealState::default(),
            unsealed: std::sync::RwLock::new(None),
            transition: AsyncMutex::new(()),
            cluster_state: Default::default(),
        });
        let weak = Arc::downgrade(&core);
        core.barrier
            .backend()
            .add_apply_listener(Arc::new(move |_index, keys: &[String]| {
                if let Some(core) = weak.upgrade() {
                    core.invalidate(keys);
                }
            }));
        core
    }

    /// The configuration.
    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Leadership facts.
    pub fn cluster(&self) -> &Arc<dyn Cluster> {
        &self.cluster
    }

    /// Whether the barrier is sealed.
    pub fn is_sealed(&self) -> bool {
        self.barrier.is_sealed()
    }

    /// The unsealed state, or `Sealed`.
    pub fn unsealed(&self) -> Result<Arc<Unsealed>, CoreError> {
        let state = self
            .unsealed
            .read()
            .ok()
            .and_then(|g| g.clone())
            .ok_or(CoreError::Sealed)?;
        if state
            .router_stale
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            state.reload_router(&self.catalog)?;
        }
        if state
            .audit_stale
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            state.audit.reload(&state.store)?;
        }
        Ok(state)
    }

    /// Caches to drop after replicated changes (runs on the apply path: cheap only).
    fn invalidate(&self, keys: &[String]) {
        self.keys_replicated(keys);
        let Some(state) = self.unsealed.read().ok().and_then(|g| g.clone()) else {
            return;
        };
        for key in keys {
            state.invalidate(key);
        }
    }

    /// Build the unsealed state after the barrier opened.
    async fn post_unseal(&self) -> Result<(), CoreError> {
        let store = store::LogicalStore::new(self.barrier.clone());
        let expiration = Arc::new(leases::Expiration::default());
        let tokens = token::TokenStore::load(store.clone(), expiration.clone()).await?;
        if store.get(mounts::MOUNTS_PATH)?.is_none() {
            let (secret, auth) = sys::default_tables();
            store
                .commit(vec![
                    store::json_put(mounts::MOUNTS_PATH, &secret)?,
                    store::json_put(mounts::AUTH_PATH, &auth)?,
                ])
                .await?;
        }
        let router = mounts::build_router(&store, &self.catalog)?;
        let audit = audit::AuditBroker::load(&store)?;
        let state = Arc::new(Unsealed {
            policies: policy_store::PolicyStore::new(store.clone()),
            store,
            tokens,
            router: std::sync::RwLock::new(Arc::new(router)),
            router_stale: std::sync::atomic::AtomicBool::new(false),
            mount_lock: AsyncMutex::new(()),
            audit,
            audit_stale: std::sync::atomic::AtomicBool::new(false),
            expiration: expiration.clone(),
        });
        if let Some(me) = self.me.upgrade() {
            leases::spawn_timer(
                Arc::downgrade(&me),
                Arc::downgrade(&state),
                expiration.clone(),
            );
            leases::spawn_loader(Arc::downgrade(&me), Arc::downgrade(&state), expiration);
            spawn_periodic(Arc::downgrade(&me), Arc::downgrade(&state));
        }
        *self
            .unsealed
            .write()
            .map_err(|_| CoreError::Internal("state lock poisoned".into()))? = Some(state);
        Ok(())
    }

    /// Drop the unsealed state and all key material.
    fn pre_seal(&self) {
        if let Ok(mut g) = self.unsealed.write() {
            if let Some(state) = g.take() {
                state.expiration.stop();
            }
        }
        self.barrier.seal();
        self.cluster.set_sealed(true);
    }
}

/// How often backends' `periodic` hooks run on the active node.
const PERIODIC_INTERVAL: Duration = Duration::from_secs(60);

/// Lock a mutex whose data stays valid if a holder panicked (queues, caches).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Call every mounted backend's `periodic` hook about once a minute, on the active node
/// only, until the state it was started for is sealed away.
fn spawn_periodic(core: std::sync::Weak<Core>, state: std::sync::Weak<Unsealed>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(PERIODIC_INTERVAL).await;
            let (Some(core), Some(state)) = (core.upgrade(), state.upgrade()) else {
                return;
            };
            if !core.cluster.is_leader() {
                continue;
            }
            let Ok(router) = state.router() else { continue };
            for table in [mounts::Table::Secret, mounts::Table::Auth] {
                for m in router.entries(table) {
                    if let Some(backend) = &m.backend {
                        if let Err(e) = backend.periodic().await {
                            tracing::warn!(mount = %m.route_path(), error = %e, "periodic hook failed");
                        }
                    }
                }
            }
        }
    });
}

/// `n` random bytes from the system CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The system RNG failing is unrecoverable and never happens on Linux.
    coffer_sdk::random::fill_secret(&mut buf).expect("system RNG failed");
    buf
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A random UUID string (mount accessors, nonces).
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A random (v4) UUID string for a request id, from pooled system-RNG output
/// (`coffer_random::fill_public`: request ids are public, in every answer) instead of the
/// `getrandom` call that `Uuid::new_v4` makes each time.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    // The system RNG failing is unrecoverable and never happens on Linux.
    coffer_sdk::random::fill_public(&mut bytes).expect("system RNG failed");
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut text)
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_distinct_v4_uuids_across_refills() {
        let mut seen = std::collections::HashSet::new();
        // 600 ids use more than two 4 KiB blocks.
        for _ in 0..600 {
            let id = super::new_request_id();
            let parsed = uuid::Uuid::parse_str(&id).expect("a uuid");
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(id, id.to_lowercase());
            assert!(seen.insert(id), "repeated id");
        }
    }
}

//! Leases and expiry (Vault's expiration manager).
//!
//! Two kinds of lease share one index, `sys/expire/id/<lease id>` (through the barrier):
//!
//! - **token leases**: every token with a TTL, `<creation path>/h<token hash>` (Vault's
//!   `auth/token/create/h…` shape), written in the same Raft entry that creates the token;
//! - **secret leases**: a backend that answers with a `secret` (a dynamic credential)
//!   gets a lease `<mount><request path>/<24 random base62>` (Vault's
//!   `database/creds/app/AbC…` shape) holding the mount's uuid, the request path, the
//!   backend's internal data, issue/expiry times and the revocation state. Its entry and
//!   its index under the creating token, `sys/expire/token/<token hash>/<sha256(id)>`,
//!   are one Raft entry. `kv` mounts are the exception: their `ttl` is advisory (Vault).
//!
//! Expiry is driven by timers, not by a scan per request: one task sleeps until the
//! earliest deadline and revokes what is due. A secret lease is revoked through its
//! backend's `revoke`; a failure keeps the lease, records the error, and retries with
//! exponential backoff; after [`MAX_REVOKE_ATTEMPTS`] it is marked irrevocable (lookup
//! shows it) and only `revoke-force` drops it. Revoking a token (or its tree) marks its
//! secret leases due now: the timer revokes them through their backends (Vault's
//! `RevokeByToken`), so a failing backend never blocks token revocation. Disabling or
//! moving a mount revokes its leases first, synchronously, and refuses if one fails.
//!
//! Only the active node revokes. Whenever a node becomes active (first unseal, or a
//! fail-over) a background task loads the whole index into the timer in pages, so a
//! large lease table never holds up unsealing (Vault issue #3860); until it finishes an
//! expired token is still refused because lookups check `expire_time` themselves.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use coffer_barrier::barrier::LogicalOp;
use coffer_sdk::{is_zero, LeaseInfo, MountTtl, SdkError, SecretLease};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::Notify;

use crate::handling::{LogicalRequest, LogicalResponse};
use crate::mounts::Mounted;
use crate::token::TokenEntry;
use crate::{Core, CoreError, Unsealed};

/// Storage prefix of the lease index.
pub const LEASE_PREFIX: &str = "sys/expire/id/";
/// Storage prefix of the per-token index of secret leases.
pub const TOKEN_INDEX_PREFIX: &str = "sys/expire/token/";
/// Failed revocations before a lease is marked irrevocable (Vault's number).
pub const MAX_REVOKE_ATTEMPTS: u32 = 6;
/// First retry delay after a failed revocation; doubles per attempt.
const REVOKE_RETRY_BASE: i64 = 5;
/// Longest retry delay.
const REVOKE_RETRY_MAX: i64 = 600;
/// Lease kind of a token.
pub const KIND_TOKEN: &str = "token";
/// Lease kind of a backend's secret.
pub const KIND_SECRET: &str = "secret";

/// What the index stores for a lease.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LeaseIndex {
    /// [`KIND_TOKEN`] or [`KIND_SECRET`].
    pub kind: String,
    /// Token lease: the token's salted hash. Secret lease: the hash of the token that
    /// created it (empty: none, e.g. an unauthenticated request or an orphan batch
    /// token).
    pub token_hash: String,
    /// Secret lease: uuid of the mount whose backend revokes and renews it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mount_uuid: String,
    /// Secret lease: the request path inside the mount (`creds/app`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Secret lease: the backend's private data (never shown to clients).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub internal: Map<String, Value>,
    /// Unix seconds of issue.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub issue_time: i64,
    /// Unix seconds of expiry (for a secret lease; a token lease reads its token's).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expire_time: i64,
    /// Unix seconds of the last renewal (0 = never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_renewal: i64,
    /// TTL granted at issue or last renewal (seconds).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ttl: u64,
    /// The backend's cap on the lease's lifetime from issue (seconds; 0 = mount max).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ttl: u64,
    /// Whether the lease may be renewed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub renewable: bool,
    /// Failed revocation attempts so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revoke_attempts: u32,
    /// The last revocation error.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revoke_error: String,
    /// Revocation failed [`MAX_REVOKE_ATTEMPTS`] times: no more retries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub irrevocable: bool,
}

impl LeaseIndex {
    fn is_secret(&self) -> bool {
        self.kind == KIND_SECRET
    }
}

/// The lease id of a token.
pub fn token_lease_id(path: &str, token_hash: &str) -> String {
    format!("{}/h{}", path.trim_end_matches('/'), token_hash)
}

/// The lease id of a secret issued at `request_path` (Vault: `path.Join(path, rand)`).
pub fn secret_lease_id(request_path: &str) -> String {
    format!(
        "{}/{}",
        request_path.trim_end_matches('/'),
        crate::token::random_base62(24)
    )
}

/// Where the creating token's index of a secret lease lives.
pub fn token_index_key(token_hash: &str, lease_id: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, lease_id.as_bytes());
    format!(
        "{TOKEN_INDEX_PREFIX}{token_hash}/{}",
        hex::encode(digest.as_ref())
    )
}

/// Delay before retry number `attempts` (1 = after the first failure).
pub fn revoke_backoff(attempts: u32) -> i64 {
    let shift = attempts.saturating_sub(1).min(16);
    (REVOKE_RETRY_BASE << shift).min(REVOKE_RETRY_MAX)
}

/// Vault's `CalculateTTL` for a lease: the TTL to grant at `now`, with a warning when
/// the max TTL capped it. `increment` (renewals) wins over the backend's `ttl`, which
/// wins over the mount default; the max is the backend's (if any) within the mount's,
/// counted from `issue_time`.
pub fn calculate_ttl(
    now: i64,
    issue_time: i64,
    increment: u64,
    backend_ttl: u64,
    backend_max: u64,
    mount: &MountTtl,
) -> Result<(u64, Option<String>), CoreError> {
    let mount_max = mount.max_lease_ttl.as_secs();
    let mount_default = mount.default_lease_ttl.as_secs().min(mount_max);
    let mut ttl = if increment > 0 {
        increment
    } else if backend_ttl > 0 {
        backend_ttl
    } else {
        mount_default
    };
    let max = if backend_max > 0 {
        backend_max.min(mount_max)
    } else {
        mount_max
    };
    let remaining = issue_time.saturating_add(max as i64) - now;
    if remaining <= 0 {
        return Err(CoreError::BadRequest(
            "past the max TTL, cannot renew".into(),
        ));
    }
    let mut warning = None;
    if ttl > remaining as u64 {
        warning = Some(format!(
            "TTL of {ttl}s exceeded the effective max_ttl of {remaining}s; TTL value is capped accordingly"
        ));
        ttl = remaining as u64;
    }
    Ok((ttl, warning))
}

#[derive(Default)]
struct Queue {
    by_time: BTreeSet<(i64, String)>,
    by_id: HashMap<String, i64>,
}

/// Deadlines waiting to fire: one per lease (scheduling again replaces it).
#[derive(Default)]
pub struct Expiration {
    queue: Mutex<Queue>,
    wake: Notify,
    stopped: std::sync::atomic::AtomicBool,
}

impl Expiration {
    /// Schedule `lease_id` to expire at unix second `at` (0 = never), replacing any
    /// earlier deadline of the same lease.
    pub fn schedule(&self, lease_id: &str, at: i64) {
        let Ok(mut q) = self.queue.lock() else {
            return;
        };
        if let Some(old) = q.by_id.remove(lease_id) {
            q.by_time.remove(&(old, lease_id.to_string()));
        }
        if at == 0 {
            return;
        }
        let earliest = q.by_time.first().map(|(t, _)| *t);
        q.by_time.insert((at, lease_id.to_string()));
        q.by_id.insert(lease_id.to_string(), at);
        if earliest.is_none_or(|e| at < e) {
            self.wake.notify_one();
        }
    }

    /// Forget a lease's deadline (it was revoked).
    pub fn unschedule(&self, lease_id: &str) {
        self.schedule(lease_id, 0);
    }

    /// Number of scheduled deadlines (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.queue.lock().map(|q| q.by_id.len()).unwrap_or(0)
    }

    /// Stop the timer task (seal).
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn due(&self, now: i64) -> Vec<String> {
        let Ok(mut q) = self.queue.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some((t, _)) = q.by_time.first() {
            if *t > now {
                break;
            }
            if let Some((_, id)) = q.by_time.pop_first() {
                q.by_id.remove(&id);
                out.push(id);
            }
        }
        out
    }

    fn next_deadline(&self) -> Option<i64> {
        self.queue
            .lock()
            .ok()
            .and_then(|q| q.by_time.first().map(|(t, _)| *t))
    }
}

/// Run the expiry loop until the state is dropped or stopped.
pub fn spawn_timer(core: Weak<Core>, state: Weak<Unsealed>, expiration: Arc<Expiration>) {
    tokio::spawn(async move {
        loop {
            if expiration.is_stopped() {
                return;
            }
            let wait = match expiration.next_deadline() {
                Some(t) => Duration::from_secs((t - crate::now_unix()).clamp(0, 3600) as u64),
                None => Duration::from_secs(3600),
            };
            if !wait.is_zero() {
                let _ = tokio::time::timeout(wait, expiration.wake.notified()).await;
                continue;
            }
            let (Some(core), Some(state)) = (core.upgrade(), state.upgrade()) else {
                return;
            };
            for lease_id in expiration.due(crate::now_unix()) {
                // Only the active node writes; a standby re-checks later.
                if !core.cluster.is_leader() {
                    expiration.schedule(&lease_id, crate::now_unix() + 5);
                    continue;
                }
                if let Err(e) = core.expire(&state, &lease_id).await {
                    tracing::warn!(lease_id = %lease_id, error = %e, "lease expiry failed; retrying");
                    expiration.schedule(&lease_id, crate::now_unix() + 5);
                }
            }
        }
    });
}

/// Load the lease index into the timer whenever this node becomes the active node (at
/// unseal, and after a fail-over: the leases the previous active node created are
/// only in storage), in pages, in the background.
pub fn spawn_loader(core: Weak<Core>, state: Weak<Unsealed>, expiration: Arc<Expiration>) {
    tokio::spawn(async move {
        let mut was_active = false;
        loop {
            if expiration.is_stopped() {
                return;
            }
            let active = match core.upgrade() {
                Some(c) => c.cluster.is_leader(),
                None => return,
            };
            if active && !was_active {
                load_index(&state, &expiration).await;
            }
            was_active = active;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

async fn load_index(state: &Weak<Unsealed>, expiration: &Expiration) {
    let Some(s) = state.upgrade() else { return };
    let keys = match s.store.list_recursive(LEASE_PREFIX) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "loading leases failed");
            return;
        }
    };
    drop(s);
    let total = keys.len();
    for page in keys.chunks(1024) {
        let Some(s) = state.upgrade() else { return };
        let now = crate::now_unix();
        for key in page {
            let lease_id = key.trim_start_matches(LEASE_PREFIX);
            if let Ok(Some(idx)) = s.store.get_json::<LeaseIndex>(key) {
                if let Some(at) = load_deadline(&s, &idx, now) {
                    expiration.schedule(lease_id, at);
                }
            }
        }
        drop(s);
        tokio::task::yield_now().await;
    }
    tracing::info!(leases = total, "leases loaded");
}

/// When a loaded lease is due (None: never, an irrevocable lease).
fn load_deadline(state: &Unsealed, idx: &LeaseIndex, now: i64) -> Option<i64> {
    if !idx.is_secret() {
        // A token lease follows its token; a stale entry is cleared soon.
        let token = state.tokens.lookup_hash(&idx.token_hash).ok().flatten();
        return Some(token.map_or(now, |t| t.expire_time));
    }
    if idx.irrevocable {
        return None;
    }
    // A token that cannot be read counts as gone: the lease is revoked now.
    if owner_gone(state, &idx.token_hash).unwrap_or(true) || idx.revoke_attempts > 0 {
        return Some(now);
    }
    Some(idx.expire_time)
}

/// Whether the token that created a secret lease (by hash; empty: the lease has none)
/// is gone, so the lease is due now whatever its expiry.
fn owner_gone(state: &Unsealed, token_hash: &str) -> Result<bool, CoreError> {
    Ok(!token_hash.is_empty() && state.tokens.lookup_hash(token_hash)?.is_none())
}

fn lease_key(lease_id: &str) -> String {
    format!("{LEASE_PREFIX}{lease_id}")
}

/// The request a backend's `revoke` or `renew` gets for a lease (`increment`: the
/// renewal's requested TTL in seconds; 0 for a revocation).
fn lease_request(
    core: &Core,
    m: &Mounted,
    lease_id: &str,
    idx: &LeaseIndex,
    increment: u64,
) -> coffer_sdk::Request {
    coffer_sdk::Request {
        id: crate::new_uuid(),
        operation: coffer_sdk::Operation::Update,
        path: idx.path.clone(),
        mount_point: m.route_path(),
        data: Map::new(),
        query: Default::default(),
        storage: m.storage.clone(),
        caller: None,
        mount_ttl: core.mount_ttl(m),
        remote_addr: None,
        lease: Some(LeaseInfo {
            lease_id: lease_id.to_string(),
            issue_time: idx.issue_time,
            expire_time: idx.expire_time,
            ttl: Duration::from_secs(idx.ttl),
            increment: Duration::from_secs(increment),
        }),
    }
}

/// How a revocation treats a backend that fails.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Force {
    /// Keep the lease, record the error, retry later.
    No,
    /// Drop the lease anyway (`revoke-force`).
    Yes,
}

impl Core {
    /// Register a lease for the secret a backend answered with, and fill the response's
    /// lease fields. `kv` mounts only report their advisory TTL (Vault does not lease
    /// them). If the lease cannot be stored, the secret is revoked through the backend.
    pub(crate) async fn register_secret(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        m: &Mounted,
        caller: Option<&TokenEntry>,
        secret: SecretLease,
        out: &mut LogicalResponse,
    ) -> Result<(), CoreError> {
        let limits = self.mount_ttl(m);
        let now = crate::now_unix();
        if m.entry.kind == "kv" {
            out.lease_duration = if secret.ttl.is_zero() {
                limits.default_lease_ttl.as_secs()
            } else {
                secret.ttl.as_secs()
            };
            out.renewable = false;
            return Ok(());
        }
        let (mut ttl, warning) = calculate_ttl(
            now,
            now,
            0,
            secret.ttl.as_secs(),
            secret.max_ttl.as_secs(),
            &limits,
        )?;
        out.warnings.extend(warning);
        // A batch token is never stored: its leases belong to its parent and cannot
        // outlive it (Vault).
        let token_hash = match caller {
            Some(t) if t.token_type == "batch" => {
                if t.expire_time != 0 {
                    ttl = ttl.min((t.expire_time - now).max(1) as u64);
                }
                t.parent.clone()
            }
            Some(t) => t.id_hash.clone(),
            None => String::new(),
        };
        let lease_id = secret_lease_id(&req.path);
        let idx = LeaseIndex {
            kind: KIND_SECRET.into(),
            token_hash: token_hash.clone(),
            mount_uuid: m.entry.uuid.clone(),
            path: req
                .path
                .strip_prefix(&m.route_path())
                .unwrap_or_default()
                .to_string(),
            internal: secret.internal,
            issue_time: now,
            expire_time: now + ttl as i64,
            ttl,
            max_ttl: secret.max_ttl.as_secs(),
            renewable: secret.renewable,
            ..Default::default()
        };
        let mut ops = vec![crate::store::json_put(&lease_key(&lease_id), &idx)?];
        if !token_hash.is_empty() {
            ops.push(LogicalOp::Put {
                key: token_index_key(&token_hash, &lease_id),
                value: lease_id.clone().into_bytes(),
            });
        }
        if let Err(e) = state.store.commit(ops).await {
            // Vault: a secret without a lease must not stay valid.
            if let Some(backend) = &m.backend {
                let mut r = lease_request(self, m, &lease_id, &idx, 0);
                if let Err(re) = backend
                    .revoke(&mut r, &Value::Object(idx.internal.clone()))
                    .await
                {
                    tracing::error!(lease_id = %lease_id, error = %re, "revoking a secret whose lease could not be stored failed");
                }
            }
            return Err(e);
        }
        // The creating token may already be gone (its last use was this request).
        let due = if owner_gone(state, &token_hash)? {
            now
        } else {
            idx.expire_time
        };
        state.expiration.schedule(&lease_id, due);
        out.lease_id = lease_id;
        out.lease_duration = ttl;
        out.renewable = idx.renewable;
        Ok(())
    }

    /// Revoke a lease whose time has come (the timer).
    pub(crate) async fn expire(
        &self,
        state: &Arc<Unsealed>,
        lease_id: &str,
    ) -> Result<(), CoreError> {
        let Some(idx) = state.store.get_json::<LeaseIndex>(&lease_key(lease_id))? else {
            return Ok(());
        };
        let now = crate::now_unix();
        // Renewed meanwhile: reschedule.
        let renewed_until = if idx.is_secret() {
            if idx.irrevocable {
                return Ok(());
            }
            (!owner_gone(state, &idx.token_hash)? && idx.expire_time > now)
                .then_some(idx.expire_time)
        } else {
            state
                .tokens
                .lookup_hash(&idx.token_hash)?
                .map(|token| token.expire_time)
                .filter(|&at| at > now)
        };
        if let Some(at) = renewed_until {
            state.expiration.schedule(lease_id, at);
            return Ok(());
        }
        let secret = idx.is_secret();
        match self
            .revoke_index(state, lease_id, idx, Force::No, None)
            .await
        {
            // A secret lease's failure is recorded and rescheduled by revoke_secret
            // itself; a token lease's is retried by the timer.
            Err(e) if secret => {
                tracing::warn!(lease_id = %lease_id, error = %e, "lease revocation failed");
                Ok(())
            }
            result => result,
        }
    }

    /// Revoke a lease read from the index: a secret lease through its backend
    /// ([`Self::revoke_secret`]), a token lease by revoking its token and the token's
    /// children, or by deleting the entry if the token is already gone.
    async fn revoke_index(
        &self,
        state: &Arc<Unsealed>,
        lease_id: &str,
        idx: LeaseIndex,
        force: Force,
        mount: Option<&Mounted>,
    ) -> Result<(), CoreError> {
        if idx.is_secret() {
            return self.revoke_secret(state, lease_id, idx, force, mount).await;
        }
        match state.tokens.lookup_hash(&idx.token_hash)? {
            Some(token) => state.tokens.revoke_tree(&token).await,
            None => state.store.delete(&lease_key(lease_id)).await.map(|_| ()),
        }
    }

    /// Revoke a secret lease through its backend (or `mount`, during an unmount). On
    /// success (or with `force`) the lease and its token index go in one Raft entry; on
    /// failure the error is recorded on the lease, a retry is scheduled with backoff,
    /// and after [`MAX_REVOKE_ATTEMPTS`] the lease is marked irrevocable.
    async fn revoke_secret(
        &self,
        state: &Arc<Unsealed>,
        lease_id: &str,
        mut idx: LeaseIndex,
        force: Force,
        mount: Option<&Mounted>,
    ) -> Result<(), CoreError> {
        let router;
        let m = match mount {
            Some(m) => Some(m),
            None => {
                router = state.router()?;
                router.by_uuid(&idx.mount_uuid).map(|m| m.as_ref())
            }
        };
        let result = match m {
            Some(m) => match &m.backend {
                Some(backend) => {
                    let mut r = lease_request(self, m, lease_id, &idx, 0);
                    backend
                        .revoke(&mut r, &Value::Object(idx.internal.clone()))
                        .await
                }
                None => Ok(()),
            },
            None => Err(SdkError::Internal(
                "the mount that issued this lease is gone".into(),
            )),
        };
        let err = match (result, force) {
            (Ok(()), _) => None,
            (Err(e), Force::Yes) => {
                tracing::warn!(lease_id = %lease_id, error = %e, "backend revocation failed; lease force-removed");
                None
            }
            (Err(e), Force::No) => Some(e),
        };
        let Some(err) = err else {
            let mut ops = vec![LogicalOp::Delete {
                key: lease_key(lease_id),
            }];
            if !idx.token_hash.is_empty() {
                ops.push(LogicalOp::Delete {
                    key: token_index_key(&idx.token_hash, lease_id),
                });
            }
            state.store.commit(ops).await?;
            state.expiration.unschedule(lease_id);
            return Ok(());
        };
        let now = crate::now_unix();
        idx.revoke_attempts = idx.revoke_attempts.saturating_add(1);
        idx.revoke_error = err.to_string();
        idx.expire_time = idx.expire_time.min(now);
        idx.irrevocable = idx.revoke_attempts >= MAX_REVOKE_ATTEMPTS;
        state.store.put_json(&lease_key(lease_id), &idx).await?;
        if idx.irrevocable {
            tracing::error!(lease_id = %lease_id, error = %err, "lease is irrevocable; use revoke-force after fixing the cause");
            state.expiration.unschedule(lease_id);
        } else {
            state
                .expiration
                .schedule(lease_id, now + revoke_backoff(idx.revoke_attempts));
        }
        Err(CoreError::Internal(format!(
            "failed to revoke lease {lease_id}: {err}"
        )))
    }

    /// Revoke one lease now (a token lease revokes the token and its children).
    async fn revoke_lease(
        &self,
        state: &Arc<Unsealed>,
        lease_id: &str,
        force: Force,
        mount: Option<&Mounted>,
    ) -> Result<(), CoreError> {
        match state.store.get_json::<LeaseIndex>(&lease_key(lease_id))? {
            Some(idx) => self.revoke_index(state, lease_id, idx, force, mount).await,
            None => Ok(()),
        }
    }

    /// Revoke every lease under `prefix` (a lease id, or a path prefix: Vault checks
    /// for an exact id first, then treats it as a folder). Every lease is tried; the
    /// first failure is returned.
    async fn revoke_prefix(
        &self,
        state: &Arc<Unsealed>,
        prefix: &str,
        force: Force,
        mount: Option<&Mounted>,
    ) -> Result<(), CoreError> {
        if !prefix.ends_with('/') {
            if let Some(idx) = state.store.get_json::<LeaseIndex>(&lease_key(prefix))? {
                return self.revoke_index(state, prefix, idx, force, mount).await;
            }
        }
        let folder = format!("{}/", prefix.trim_end_matches('/'));
        let keys = state.store.list_recursive(&lease_key(&folder))?;
        let mut first_error = None;
        for key in keys {
            let id = key.trim_start_matches(LEASE_PREFIX);
            if let Err(e) = self.revoke_lease(state, id, force, mount).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Revoke every lease of a mount before it is disabled or moved (Vault's
    /// `RevokePrefix(mount, sync)`): secrets through the mount's backend, tokens it
    /// issued with their children. Fails if a backend refuses; nothing is dropped.
    pub(crate) async fn revoke_mount_leases(
        &self,
        state: &Arc<Unsealed>,
        m: &Mounted,
    ) -> Result<(), CoreError> {
        self.revoke_prefix(state, &m.route_path(), Force::No, Some(m))
            .await
            .map_err(|e| {
                CoreError::BadRequest(format!(
                    "failed to revoke the leases of {:?}: {}",
                    m.route_path(),
                    e.messages().join("; ")
                ))
            })
    }

    /// Renew a secret lease through its backend (Vault's `Renew`).
    async fn renew_secret(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        lease_id: &str,
        mut idx: LeaseIndex,
    ) -> Result<LogicalResponse, CoreError> {
        let now = crate::now_unix();
        if idx.irrevocable || idx.revoke_attempts > 0 || idx.expire_time <= now {
            return Err(CoreError::BadRequest("lease expired".into()));
        }
        if !idx.renewable {
            return Err(CoreError::BadRequest("lease is not renewable".into()));
        }
        let increment = crate::token_api::secs(req, "increment")?.max(0) as u64;
        let router = state.router()?;
        let m = router.by_uuid(&idx.mount_uuid).cloned().ok_or_else(|| {
            CoreError::BadRequest("the mount that issued this lease is gone".into())
        })?;
        let backend = m
            .backend
            .as_ref()
            .ok_or_else(|| CoreError::BadRequest("lease is not renewable".into()))?;
        let mut r = lease_request(self, &m, lease_id, &idx, increment);
        r.remote_addr = req.remote_addr.clone();
        let answer = backend
            .renew(&mut r, &Value::Object(idx.internal.clone()))
            .await?;
        let secret = answer
            .secret
            .ok_or_else(|| CoreError::BadRequest("the backend did not renew the lease".into()))?;
        let max_ttl = if secret.max_ttl.is_zero() {
            idx.max_ttl
        } else {
            secret.max_ttl.as_secs()
        };
        let (ttl, warning) = calculate_ttl(
            now,
            idx.issue_time,
            increment,
            secret.ttl.as_secs(),
            max_ttl,
            &self.mount_ttl(&m),
        )?;
        idx.ttl = ttl;
        idx.max_ttl = max_ttl;
        idx.expire_time = now + ttl as i64;
        idx.last_renewal = now;
        idx.renewable = secret.renewable;
        if !secret.internal.is_empty() {
            idx.internal = secret.internal;
        }
        let index = state.store.put_json(&lease_key(lease_id), &idx).await?;
        state.expiration.schedule(lease_id, idx.expire_time);
        let mut warnings = answer.warnings;
        warnings.extend(warning);
        Ok(LogicalResponse {
            status: 200,
            data: answer.data,
            warnings,
            lease_id: lease_id.to_string(),
            renewable: idx.renewable,
            lease_duration: ttl,
            index,
            ..Default::default()
        })
    }

    /// `sys/leases/*` (and the legacy `sys/renew`, `sys/revoke*`).
    pub(crate) async fn handle_leases(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        op: &str,
    ) -> Result<LogicalResponse, CoreError> {
        // The lease id from the URL (`renew/<id>`, `revoke/<id>`) or the body.
        let lease_id = |url: Option<&str>| -> Result<String, CoreError> {
            url.filter(|s| !s.is_empty())
                .map(String::from)
                .or_else(|| {
                    req.data
                        .get("lease_id")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                })
                .ok_or_else(|| CoreError::BadRequest("lease_id must be specified".into()))
        };
        let not_found = || CoreError::BadRequest("invalid lease".into());
        if let Some(prefix) = op
            .strip_prefix("lookup/")
            .or((op == "lookup/").then_some(""))
        {
            if req.operation == coffer_sdk::Operation::List {
                let keys = state.store.list(&lease_key(prefix))?;
                if keys.is_empty() {
                    return Err(CoreError::NotFound(String::new()));
                }
                return Ok(LogicalResponse::ok(json!({ "keys": keys })));
            }
        }
        let (verb, url_id) = match op.split_once('/') {
            Some((verb, rest)) => (verb, Some(rest)),
            None => (op, None),
        };
        match verb {
            "lookup" if url_id.is_none() => {
                let id = lease_id(None)?;
                let idx: LeaseIndex = state
                    .store
                    .get_json(&lease_key(&id))?
                    .ok_or_else(not_found)?;
                if idx.is_secret() {
                    return Ok(LogicalResponse::ok(lookup_json(&id, &idx)));
                }
                // A token lease shows its token's times (never renewed as a lease).
                let token = state
                    .tokens
                    .lookup_hash(&idx.token_hash)?
                    .ok_or_else(not_found)?;
                let shown = LeaseIndex {
                    issue_time: token.creation_time,
                    expire_time: token.expire_time,
                    renewable: token.renewable,
                    ..Default::default()
                };
                Ok(LogicalResponse::ok(lookup_json(&id, &shown)))
            }
            "renew" => {
                let id = lease_id(url_id)?;
                let idx: LeaseIndex = state
                    .store
                    .get_json(&lease_key(&id))?
                    .ok_or_else(not_found)?;
                if idx.is_secret() {
                    return self.renew_secret(state, req, &id, idx).await;
                }
                let token = state
                    .tokens
                    .lookup_hash(&idx.token_hash)?
                    .ok_or_else(not_found)?;
                let renewed = self.renew_entry(state, req, &token).await?;
                state.expiration.schedule(&id, renewed.expire_time);
                Ok(LogicalResponse {
                    status: 200,
                    lease_id: id,
                    renewable: renewed.renewable,
                    lease_duration: renewed.ttl.max(0) as u64,
                    ..Default::default()
                })
            }
            "revoke" => {
                self.revoke_lease(state, &lease_id(url_id)?, Force::No, None)
                    .await?;
                Ok(LogicalResponse::no_content(self.cluster.applied_index()))
            }
            "revoke-prefix" | "revoke-force" => {
                let prefix = url_id.filter(|p| !p.is_empty()).ok_or_else(|| {
                    CoreError::NotFound(format!(
                        "no handler for route \"{}\". route entry not found.",
                        req.path
                    ))
                })?;
                let force = if verb == "revoke-force" {
                    Force::Yes
                } else {
                    Force::No
                };
                self.revoke_prefix(state, prefix, force, None).await?;
                Ok(LogicalResponse::no_content(self.cluster.applied_index()))
            }
            "tidy" if url_id.is_none() => Ok(LogicalResponse::no_content(0)),
            _ => Err(CoreError::NotFound(format!(
                "no handler for route \"{}\". route entry not found.",
                req.path
            ))),
        }
    }
}

/// `sys/leases/lookup` of a lease: Vault's fields, plus the revocation state when a
/// revocation failed (a secret lease; a token lease passes its token's times).
fn lookup_json(id: &str, idx: &LeaseIndex) -> Value {
    let mut v = json!({
        "id": id,
        "issue_time": rfc3339(idx.issue_time),
        "expire_time": rfc3339(idx.expire_time),
        "last_renewal": rfc3339(idx.last_renewal),
        "renewable": idx.renewable,
        "ttl": (idx.expire_time - crate::now_unix()).max(0),
    });
    if idx.revoke_attempts > 0 {
        v["revoke_attempts"] = json!(idx.revoke_attempts);
        v["revoke_error"] = json!(idx.revoke_error);
        v["irrevocable"] = json!(idx.irrevocable);
    }
    v
}

fn rfc3339(unix: i64) -> Value {
    match chrono::DateTime::from_timestamp(unix, 0) {
        Some(t) if unix != 0 => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_queue_orders_deadlines() {
        let e = Expiration::default();
        e.schedule("b", 20);
        e.schedule("a", 10);
        e.schedule("never", 0);
        e.schedule("c", 30);
        assert_eq!(e.pending(), 3);
        assert_eq!(e.next_deadline(), Some(10));
        assert_eq!(e.due(20), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(e.due(25), Vec::<String>::new());
        assert_eq!(e.pending(), 1);
    }

    #[test]
    fn scheduling_again_replaces_the_deadline() {
        let e = Expiration::default();
        e.schedule("a", 10);
        e.schedule("a", 50);
        assert_eq!(e.pending(), 1);
        assert_eq!(e.due(20), Vec::<String>::new());
        e.schedule("a", 5);
        assert_eq!(e.next_deadline(), Some(5));
        e.unschedule("a");
        assert_eq!(e.pending(), 0);
        assert_eq!(e.due(100), Vec::<String>::new());
    }

    #[test]
    fn token_lease_ids_look_like_vaults() {
        assert_eq!(
            token_lease_id("auth/token/create", "ab12"),
            "auth/token/create/hab12"
        );
        assert_eq!(
            token_lease_id("auth/userpass/login/bob/", "ff"),
            "auth/userpass/login/bob/hff"
        );
    }

    #[test]
    fn secret_lease_ids_look_like_vaults() {
        let id = secret_lease_id("dyn/creds/app");
        let (path, rand) = id.rsplit_once('/').unwrap();
        assert_eq!(path, "dyn/creds/app");
        assert_eq!(rand.len(), 24);
        assert!(rand.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(id, secret_lease_id("dyn/creds/app"));
        assert!(secret_lease_id("dyn/creds/app/").starts_with("dyn/creds/app/"));
        // The token index key is one path segment per lease, whatever the id holds.
        let key = token_index_key("abc", &id);
        assert!(key.starts_with("sys/expire/token/abc/"));
        assert_eq!(key.matches('/').count(), 4);
    }

    fn limits(default: u64, max: u64) -> MountTtl {
        MountTtl {
            default_lease_ttl: Duration::from_secs(default),
            max_lease_ttl: Duration::from_secs(max),
        }
    }

    #[test]
    fn ttl_is_clamped_like_vault() {
        let m = limits(600, 3600);
        // Issue: the backend's ttl, else the mount default.
        assert_eq!(calculate_ttl(1000, 1000, 0, 60, 0, &m).unwrap(), (60, None));
        assert_eq!(calculate_ttl(1000, 1000, 0, 0, 0, &m).unwrap(), (600, None));
        // Above the mount max: capped, with a warning.
        let (ttl, warning) = calculate_ttl(1000, 1000, 0, 7200, 0, &m).unwrap();
        assert_eq!(ttl, 3600);
        assert!(warning.is_some());
        // The backend's max caps below the mount's, never above.
        assert_eq!(calculate_ttl(1000, 1000, 0, 300, 120, &m).unwrap().0, 120);
        assert_eq!(calculate_ttl(1000, 1000, 0, 300, 9999, &m).unwrap().0, 300);
        // Renewal: the increment wins; the max counts from the issue time.
        assert_eq!(calculate_ttl(2000, 1000, 100, 60, 0, &m).unwrap().0, 100);
        assert_eq!(calculate_ttl(4000, 1000, 100, 60, 0, &m).unwrap().0, 100);
        assert_eq!(calculate_ttl(4550, 1000, 100, 60, 0, &m).unwrap().0, 50);
        assert!(calculate_ttl(4600, 1000, 100, 60, 0, &m).is_err());
        // A default above the max is taken as the max.
        assert_eq!(
            calculate_ttl(0, 0, 0, 0, 0, &limits(900, 300)).unwrap().0,
            300
        );
    }

    #[test]
    fn revocation_backs_off_then_gives_up() {
        let delays: Vec<i64> = (1..=MAX_REVOKE_ATTEMPTS).map(revoke_backoff).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 80, 160]);
        assert_eq!(revoke_backoff(40), REVOKE_RETRY_MAX);
        assert!(delays.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn lease_entries_keep_old_token_leases_readable() {
        // A token lease written before secret leases existed.
        let old: LeaseIndex =
            serde_json::from_str(r#"{"kind":"token","token_hash":"ab"}"#).unwrap();
        assert_eq!(old.kind, KIND_TOKEN);
        assert!(!old.is_secret());
        // And a token lease is still stored in that shape.
        let text = serde_json::to_string(&LeaseIndex {
            kind: KIND_TOKEN.into(),
            token_hash: "ab".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(text, r#"{"kind":"token","token_hash":"ab"}"#);
        let secret = LeaseIndex {
            kind: KIND_SECRET.into(),
            revoke_attempts: 2,
            revoke_error: "boom".into(),
            ..Default::default()
        };
        let v = lookup_json("dyn/creds/x/1", &secret);
        assert_eq!(v["revoke_attempts"], 2);
        assert_eq!(v["revoke_error"], "boom");
        assert_eq!(v["irrevocable"], false);
        assert_eq!(v["ttl"], 0);
    }

    #[test]
    fn token_lease_lookup_keeps_vaults_shape() {
        // What the token branch of `sys/leases/lookup` answered before it went through
        // lookup_json: the same bytes, field for field.
        let (id, creation, expire) = ("auth/token/create/hab", 1_700_000_000, 1_700_000_100);
        let shown = LeaseIndex {
            issue_time: creation,
            expire_time: expire,
            renewable: true,
            ..Default::default()
        };
        let before = json!({
            "id": id,
            "issue_time": rfc3339(creation),
            "expire_time": rfc3339(expire),
            "last_renewal": Value::Null,
            "renewable": true,
            "ttl": (expire - crate::now_unix()).max(0),
        });
        let after = lookup_json(id, &shown);
        assert_eq!(after.to_string(), before.to_string());
        assert_eq!(after["issue_time"], "2023-11-14T22:13:20Z");
        assert_eq!(after["last_renewal"], Value::Null);
    }
}

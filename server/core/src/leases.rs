//! Leases and expiry (Vault's expiration manager).
//!
//! Every token with a TTL has a lease, `<creation path>/<token hash>` (Vault's
//! `auth/token/create/h…` shape), indexed at `sys/expire/id/<lease id>` in the same
//! Raft entry that creates the token. Expiry is driven by timers, not by a scan per
//! request: one task sleeps until the earliest deadline and revokes what is due. On
//! unseal the index is loaded by a background task in pages, so a large lease table
//! never holds up unsealing (Vault issue #3860); until it finishes, an expired token is
//! still refused because lookups check `expire_time` themselves.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::handling::{LogicalRequest, LogicalResponse};
use crate::{Core, CoreError, Unsealed};

/// Storage prefix of the lease index.
pub const LEASE_PREFIX: &str = "sys/expire/id/";

/// What the index stores for a lease.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseIndex {
    /// `token` (the only lease kind the built-in engines create).
    pub kind: String,
    /// Salted hash of the token the lease belongs to.
    pub token_hash: String,
}

/// The lease id of a token.
pub fn token_lease_id(path: &str, token_hash: &str) -> String {
    format!("{}/h{}", path.trim_end_matches('/'), token_hash)
}

/// Deadlines waiting to fire.
#[derive(Default)]
pub struct Expiration {
    queue: Mutex<BTreeSet<(i64, String)>>,
    wake: Notify,
    stopped: std::sync::atomic::AtomicBool,
}

impl Expiration {
    /// Schedule `lease_id` to expire at unix second `at` (0 = never).
    pub fn schedule(&self, lease_id: &str, at: i64) {
        if at == 0 {
            return;
        }
        if let Ok(mut q) = self.queue.lock() {
            let earliest = q.first().map(|(t, _)| *t);
            q.insert((at, lease_id.to_string()));
            if earliest.is_none_or(|e| at < e) {
                self.wake.notify_one();
            }
        }
    }

    /// Number of scheduled deadlines (for tests and metrics).
    pub fn pending(&self) -> usize {
        self.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// Stop the timer task (seal).
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn due(&self, now: i64) -> Vec<String> {
        let Ok(mut q) = self.queue.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some((t, _)) = q.first() {
            if *t > now {
                break;
            }
            if let Some((_, id)) = q.pop_first() {
                out.push(id);
            }
        }
        out
    }

    fn next_deadline(&self) -> Option<i64> {
        self.queue
            .lock()
            .ok()
            .and_then(|q| q.first().map(|(t, _)| *t))
    }
}

/// Run the expiry loop until the state is dropped or stopped.
pub fn spawn_timer(core: Weak<Core>, state: Weak<Unsealed>, expiration: Arc<Expiration>) {
    tokio::spawn(async move {
        loop {
            if expiration.stopped.load(std::sync::atomic::Ordering::SeqCst) {
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

/// Load the lease index into the timer in pages, in the background.
pub fn spawn_loader(state: Weak<Unsealed>, expiration: Arc<Expiration>) {
    tokio::spawn(async move {
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
            for key in page {
                let lease_id = key.trim_start_matches(LEASE_PREFIX);
                if let Ok(Some(idx)) = s.store.get_json::<LeaseIndex>(key) {
                    if let Ok(Some(token)) = s.tokens.lookup_hash(&idx.token_hash) {
                        expiration.schedule(lease_id, token.expire_time);
                    } else {
                        // The token is gone: clear the stale index entry soon.
                        expiration.schedule(lease_id, crate::now_unix());
                    }
                }
            }
            drop(s);
            tokio::task::yield_now().await;
        }
        tracing::info!(leases = total, "leases loaded");
    });
}

impl Core {
    /// Revoke a lease whose time has come (or that an operator revokes).
    pub(crate) async fn expire(
        &self,
        state: &Arc<Unsealed>,
        lease_id: &str,
    ) -> Result<(), CoreError> {
        let key = format!("{LEASE_PREFIX}{lease_id}");
        let Some(idx) = state.store.get_json::<LeaseIndex>(&key)? else {
            return Ok(());
        };
        match state.tokens.lookup_hash(&idx.token_hash)? {
            Some(token) if token.expire_time > crate::now_unix() => {
                // Renewed meanwhile: reschedule.
                state.expiration.schedule(lease_id, token.expire_time);
                Ok(())
            }
            Some(token) => state.tokens.revoke_tree(&token).await,
            None => state.store.delete(&key).await.map(|_| ()),
        }
    }

    /// `sys/leases/*` (and the legacy `sys/renew`, `sys/revoke*`).
    pub(crate) async fn handle_leases(
        &self,
        state: &Arc<Unsealed>,
        req: &LogicalRequest,
        op: &str,
    ) -> Result<LogicalResponse, CoreError> {
        let body_id = || -> Result<String, CoreError> {
            req.data
                .get("lease_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .ok_or_else(|| CoreError::BadRequest("lease_id must be specified".into()))
        };
        let not_found = || CoreError::BadRequest("invalid lease".into());
        if let Some(prefix) = op
            .strip_prefix("lookup/")
            .or((op == "lookup/").then_some(""))
        {
            if req.operation == coffer_sdk::Operation::List {
                let keys = state.store.list(&format!("{LEASE_PREFIX}{prefix}"))?;
                if keys.is_empty() {
                    return Err(CoreError::NotFound(String::new()));
                }
                return Ok(data(json!({ "keys": keys })));
            }
        }
        match op {
            "lookup" => {
                let id = body_id()?;
                let idx: LeaseIndex = state
                    .store
                    .get_json(&format!("{LEASE_PREFIX}{id}"))?
                    .ok_or_else(not_found)?;
                let token = state
                    .tokens
                    .lookup_hash(&idx.token_hash)?
                    .ok_or_else(not_found)?;
                let ttl = (token.expire_time - crate::now_unix()).max(0);
                Ok(data(json!({
                    "id": id,
                    "issue_time": rfc3339(token.creation_time),
                    "expire_time": rfc3339(token.expire_time),
                    "last_renewal": Value::Null,
                    "renewable": token.renewable,
                    "ttl": ttl,
                })))
            }
            "renew" => {
                let id = body_id()?;
                let idx: LeaseIndex = state
                    .store
                    .get_json(&format!("{LEASE_PREFIX}{id}"))?
                    .ok_or_else(not_found)?;
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
                self.expire_now(state, &body_id()?).await?;
                Ok(empty(self.cluster.applied_index()))
            }
            "tidy" => Ok(empty(0)),
            _ => {
                if let Some(id) = op.strip_prefix("revoke/").filter(|s| !s.is_empty()) {
                    self.expire_now(state, id).await?;
                    return Ok(empty(self.cluster.applied_index()));
                }
                if let Some(prefix) = op
                    .strip_prefix("revoke-prefix/")
                    .or_else(|| op.strip_prefix("revoke-force/"))
                {
                    for key in state
                        .store
                        .list_recursive(&format!("{LEASE_PREFIX}{prefix}"))?
                    {
                        self.expire_now(state, key.trim_start_matches(LEASE_PREFIX))
                            .await?;
                    }
                    return Ok(empty(self.cluster.applied_index()));
                }
                Err(CoreError::NotFound(format!(
                    "no handler for route \"{}\". route entry not found.",
                    req.path
                )))
            }
        }
    }

    async fn expire_now(&self, state: &Arc<Unsealed>, lease_id: &str) -> Result<(), CoreError> {
        let key = format!("{LEASE_PREFIX}{lease_id}");
        let idx: Option<LeaseIndex> = state.store.get_json(&key)?;
        match idx {
            Some(idx) => match state.tokens.lookup_hash(&idx.token_hash)? {
                Some(token) => state.tokens.revoke_tree(&token).await,
                None => state.store.delete(&key).await.map(|_| ()),
            },
            None => Ok(()),
        }
    }
}

fn rfc3339(unix: i64) -> Value {
    match chrono::DateTime::from_timestamp(unix, 0) {
        Some(t) if unix != 0 => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        _ => Value::Null,
    }
}

fn data(v: Value) -> LogicalResponse {
    LogicalResponse {
        status: 200,
        data: v.as_object().cloned(),
        ..Default::default()
    }
}

fn empty(index: u64) -> LogicalResponse {
    LogicalResponse {
        status: 204,
        index,
        ..Default::default()
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
}

//! The KV secrets engine, speaking Vault's `kv` API (version 1 and version 2) so that
//! the `vault kv` CLI, hvac and vaultrs work against it unchanged.
//!
//! [`factory`] builds the backend for one mount from its `options.version`: `"1"` (also
//! the default, and what the `generic` alias gets) is the unversioned pass-through store
//! ([`v1`]); `"2"` is the versioned store ([`v2`]). A v1 mount tuned to `version=2` is
//! rebuilt by the core over the same storage and upgraded in place on first use
//! ([`upgrade`]).
//!
//! # Storage layout
//!
//! See [`layout`]: v1 secrets live at their plain path; everything of v2 lives under the
//! reserved first segment `_kv2/` (`config`, `upgrade`, `meta/<path>`,
//! `ver/<path>/<n>`), which v1 refuses to write, so the two never collide and the upgrade
//! knows exactly what is v1 data.
//!
//! # Vault-compatibility decisions
//!
//! - v1 read always carries a non-renewable advisory lease: TTL from the secret's `ttl`
//!   (or `lease`) field, else the mount default (no lease id; see [`v1`]). v1 refuses an
//!   empty write (400 "missing data fields"), as Vault.
//! - v2 errors: missing/non-object `data` -> 400 "no data provided"; CAS mismatch -> 400
//!   "check-and-set parameter did not match the current version"; missing CAS when
//!   required -> 400 "check-and-set parameter required for this call"; empty `versions`
//!   -> 400 "no version number provided"; empty secret path -> 400 "missing path".
//! - A deleted or destroyed version reads as 404 with the body (`data: null` plus its
//!   metadata); a missing secret or version is a bare 404. PATCH of a deleted latest
//!   version is 404 with the version metadata as body (as Vault).
//! - `max_versions` in effect: the secret's, else the mount's, else 10 (the documented
//!   rule; recent Vault releases take the larger of secret and mount instead). Pruning
//!   follows Vault's sliding window (`oldest_version` stays 0 until the window first
//!   moves) and happens in the same commit as the write that causes it; lowering
//!   `max_versions` prunes on the next write, as in Vault.
//! - `delete_version_after`: the smaller non-zero of mount and secret schedules
//!   `deletion_time` on new (and undeleted) versions; a negative mount value disables
//!   it; durations are whole seconds and print as Go does (`"0s"`, `"1h0m0s"`).
//! - Times print as Go's RFC3339Nano (`2018-03-22T02:24:06.945319214Z`, trailing zeros
//!   trimmed); unset times are `""`; absent `custom_metadata` is `null`.
//! - `custom_metadata`: at most 64 keys, keys 1..=128 bytes, values 1..=512 bytes, no
//!   control characters (400 otherwise); numbers and booleans are stored as strings.
//! - A v1-style path on a v2 mount answers 404 with Vault's "Invalid path for a
//!   versioned K/V secrets engine…" warning and no data.
//! - No unauthenticated or root-protected paths.

mod json;
pub mod layout;
mod params;
mod upgrade;
pub mod v1;
pub mod v2;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use coffer_sdk::{Backend, BackendConfig, SdkError};

/// Build the KV backend for a mount (a [`coffer_sdk::Factory`]): version 1 unless
/// `options.version` is `"2"`. Any other version is a 400.
pub fn factory(config: BackendConfig) -> Result<Arc<dyn Backend>, SdkError> {
    match config.options.get("version").map(|v| v.trim()) {
        None | Some("") | Some("1") => Ok(Arc::new(v1::KvV1)),
        Some("2") => Ok(Arc::new(v2::KvV2::new())),
        Some(other) => Err(SdkError::bad(format!(
            "invalid kv version {other:?}: must be \"1\" or \"2\""
        ))),
    }
}

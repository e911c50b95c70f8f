//! The userpass auth method, speaking Vault's `auth/userpass` API (`builtin/credential/
//! userpass`) so that `vault login -method=userpass`, hvac and vaultrs work unchanged.
//!
//! [`factory`] builds the backend for one mount ([`backend::Userpass`]); routes are
//! listed there. `login/*` is the only unauthenticated path.
//!
//! # Storage layout
//!
//! One key per user: `user/<name>` holds a JSON [`backend::UserEntry`]: the password's
//! argon2id PHC string (`password_hash`) and the token settings (`token_policies`,
//! `token_ttl`, …, all durations in whole seconds, plus `legacy`, the legacy field names
//! last used). The password itself is never stored, logged or returned.
//!
//! # Password hashing
//!
//! argon2id, version 0x13, 16-byte random salt per hash, 32-byte output, parameters
//! `m=19456` KiB (19 MiB), `t=2`, `p=1` ([`password::DEFAULT_PARAMS`]; the parameters are
//! part of each stored hash, so raising them later keeps old hashes verifiable). A login
//! measured 18.5 ms for a known and 18.9 ms for an unknown user (release build, 2-core
//! AMD EPYC dev machine, 40 interleaved logins each through `handle_request` after a
//! warm-up: the crate's ignored `login_cost` test, `cargo test --release -p
//! coffer-plugin-userpass login_cost -- --ignored --nocapture`). Hashing runs on tokio's
//! blocking pool,
//! at most one job per core at a time across the process. The final comparison is
//! constant-time, and a login for an unknown user verifies against a dummy hash with the
//! same parameters.
//!
//! # Vault-compatibility decisions
//!
//! - User names are lower-cased and must match Vault's `GenericNameRegex`; any other
//!   path is 404.
//! - Unknown user and wrong password both answer 400 "invalid username or password"
//!   after the same amount of hashing. An empty or missing password is 400 "missing
//!   password" (Vault answers that with a 500 on login).
//! - `token_bound_cidrs` (legacy `bound_cidrs`) are checked at login against the
//!   request's remote address; outside (or no address known) is 403, as Vault.
//! - Legacy fields `policies`, `ttl`, `max_ttl`, `bound_cidrs` are accepted; the new
//!   name wins when both are given, and a read shows the legacy name only when it was
//!   the one used (Vault's `UpgradeValue`). Unknown body fields are ignored with
//!   Vault's "Endpoint ignored these unrecognized parameters" warning.
//! - `users/<name>/password` and `users/<name>/policies` on a missing user are 400
//!   "username does not exist" (a 500 in Vault).
//! - `LoginAuth.max_ttl` is the tighter of `token_max_ttl` and
//!   `token_explicit_max_ttl`: the sdk has a single field for both.
//! - Renew re-reads the user: a deleted user is 400 "user … no longer exists; not
//!   renewing" (Vault silently declines), a change of policies (ignoring `default`) is
//!   400 "policies have changed, not renewing" (Vault: 500). The policies the token was
//!   issued with travel in the login's `internal` data (`username`, `policies`).

pub mod backend;
use coffer_sdk::cidr;
mod params;
pub mod password;
pub use coffer_sdk::tokenutil as token;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use coffer_sdk::{Backend, BackendConfig, SdkError};

/// Build the userpass backend for a mount (a [`coffer_sdk::Factory`]).
pub fn factory(_config: BackendConfig) -> Result<Arc<dyn Backend>, SdkError> {
    Ok(Arc::new(backend::Userpass::new(password::DEFAULT_PARAMS)?))
}

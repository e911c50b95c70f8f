//! The approle auth method, speaking Vault's `auth/approle` API (`builtin/credential/
//! approle`) so that `vault write auth/approle/login`, hvac and vaultrs work unchanged.
//!
//! [`factory`] builds the backend for one mount ([`backend::AppRole`]); its routes are
//! listed there, the login checks in [`login`]. `login` is the only unauthenticated path.
//!
//! # Storage layout
//!
//! See [`store`]: `salt` (the mount's random HMAC key), `role/<name>`,
//! `role_id/<hmac(role_id)>` → role name, `secret_id/<name>/<hmac(secret_id)>`, and
//! `accessor/<accessor>` → role name + secret-id HMAC. Secret ids are never stored,
//! logged or shown again after generation; only their HMAC-SHA256 under the mount's key
//! is kept, and login compares HMACs (and role ids) in constant time.
//!
//! # Vault-compatibility decisions
//!
//! - Role names are lower-cased and must match Vault's `GenericNameRegex` (404
//!   otherwise); role names, role ids and secret ids are limited to 4096 bytes.
//! - A role needs at least one constraint (`bind_secret_id`, `secret_id_bound_cidrs` or
//!   `token_bound_cidrs`): 400 "at least one constraint should be enabled on the role".
//!   `bind_secret_id` defaults to true. A role id (a random UUID unless given) is unique
//!   across the mount: 400 "role_id already in use".
//! - Legacy `policies`, `period` and `bound_cidr_list` are accepted (the new names win).
//!   Unknown body fields are ignored with Vault's warning.
//! - Secret-id `metadata` is a JSON object of strings passed as a string (optionally
//!   base64), or `k=v,…` pairs, as Vault's `ParseArbitraryKeyValues`; a JSON object
//!   given directly is accepted too. `num_uses` and `ttl` may not exceed the role's
//!   non-zero `secret_id_num_uses`/`secret_id_ttl`; `cidr_list` and
//!   `token_bound_cidrs` must lie within the role's blocks. A secret id's lifetime is
//!   capped by the mount's max lease TTL; 0 means it never expires.
//! - Login failures: 400 "missing role_id" / "missing secret_id" for absent fields, 400
//!   "invalid role or secret ID" for any unknown, foreign or expired credential (Vault
//!   itself does not check expiry at login, only in tidy: Coffer does both). CIDR
//!   failures are 400 naming the source address, as Vault. Unlike Vault, the CIDR checks
//!   run before a use is counted, so a login from outside the blocks does not burn a
//!   use.
//! - Secret-id lookup of an unknown secret id is 204 (as Vault); accessor lookup or
//!   destroy of an unknown accessor is 404 "failed to find accessor entry for
//!   secret_id_accessor: …". Sub-paths of a missing role are 404 "role … does not exist"
//!   for generation and role-id updates, 400 for list/lookup/destroy (Vault: 500).
//! - `tidy/secret-id` runs synchronously (Vault starts it in the background) and answers
//!   202 with Vault's "Tidy operation successfully started" warning; a tidy already
//!   running answers Vault's "already in progress" warning. `periodic()` runs the same
//!   tidy.
//! - Renew: the role must still exist (400 "role … does not exist during renewal"); the
//!   token gets the role's current TTL, max TTL and period. `internal` is
//!   `{role_name}`; token metadata is the secret id's metadata plus `role_name`.
//! - The per-field role sub-paths (`role/<name>/policies`, `…/token-ttl`, …) read,
//!   update (404 for a missing role, as Vault) and reset (DELETE) one field each.
//! - Not implemented: `local_secret_ids` semantics (the flag is stored and shown only:
//!   Coffer replicates every secret id the same way).

pub mod backend;
use coffer_sdk::cidr;
pub mod login;
mod params;
mod role;
mod secret_id;
pub mod store;
pub use coffer_sdk::tokenutil as token;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use coffer_sdk::{Backend, BackendConfig, SdkError};

/// Build the approle backend for a mount (a [`coffer_sdk::Factory`]).
pub fn factory(config: BackendConfig) -> Result<Arc<dyn Backend>, SdkError> {
    Ok(Arc::new(backend::AppRole::new(
        config.storage,
        Arc::new(chrono::Utc::now),
    )))
}

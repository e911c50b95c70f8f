//! The transit secrets engine: encryption as a service, speaking Vault's Transit API.
//!
//! Key rings ("policies") live one JSON record each at `policy/<name>` in the mount's
//! storage; `config/keys` holds the mount-wide `disable_upsert` switch. Everything the
//! hot paths (`encrypt`, `decrypt`, `rewrap`, `datakey`, `sign`, `verify`, `hmac`) need
//! comes from an in-memory cache of parsed key rings that is filled on first use,
//! replaced on every write, and dropped by [`coffer_sdk::Backend::invalidate`].
//!
//! Key types: `aes128-gcm96`, `aes256-gcm96` (default), `chacha20-poly1305`, `ed25519`,
//! `ecdsa-p256`, `ecdsa-p384`, `hmac`. Vault's RSA types are refused: `ring` cannot
//! generate RSA keys and the `rsa` crate carries RUSTSEC-2023-0071. `ecdsa-p521` is
//! refused too (`ring` has no P-521).
//!
//! Byte-compatible with Vault: ciphertexts (`vault:v<N>:` + base64(nonce || ciphertext
//! || tag)), HKDF-SHA256 key derivation (context as info, empty salt), convergent
//! encryption schemes 1-3 (new keys use 3), signatures (Ed25519 raw; ECDSA ASN.1 DER or
//! JWS `r || s`), HMACs (per-version HMAC keys), and plaintext backups, which restore
//! in either direction between Vault and Coffer.
//!
//! Differences from Vault, all forced by `ring` or chosen for safety:
//! - ECDSA signs with the curve's own hash only (P-256/SHA-256, P-384/SHA-384); a
//!   P-384 key therefore defaults to `sha2-384` where Vault defaults to `sha2-256`.
//!   Verification also accepts the other of the two. `prehashed` is refused for ECDSA
//!   (it is ignored for Ed25519, as in Vault 1.16). SHA-3 and SHA-1 are not offered.
//! - `encrypt` refuses a `nonce` except for restored convergent-scheme-1 keys.
//! - Malformed `batch_input`, bad base64 in `associated_data` and refused backups are
//!   400s (Vault answers some of these with 500).
//! - Key reads of `hmac` keys also list version creation times.
//! - The cache is unbounded (one entry per key ring); Vault's `cache-config` is absent.
//!
//! Module map: [`backend`] routes requests and owns the cache; [`paths`] has one
//! handler module per group of endpoints; [`policy`] is the key ring and [`stored`]
//! its record in storage; [`symmetric`] and [`asym`] do the cryptography on top of
//! [`crypto`] and [`der`]; [`backup`] speaks Vault's plaintext-backup format.

pub mod asym;
pub mod backend;
pub mod backup;
pub mod batch;
pub mod codec;
pub mod crypto;
pub mod der;
pub mod error;
pub mod paths;
pub mod policy;
pub mod secret;
pub mod stored;
pub mod symmetric;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use coffer_sdk::{Backend, BackendConfig, SdkError};

pub use backend::TransitBackend;

/// Vault's message for a ciphertext, signature or HMAC older than
/// `min_decryption_version`.
pub const ERR_TOO_OLD: &str = "ciphertext or signature version is disallowed by policy (too old)";

/// Build a transit backend for one mount.
pub fn factory(config: BackendConfig) -> Result<Arc<dyn Backend>, SdkError> {
    Ok(Arc::new(TransitBackend::new(config.storage)))
}

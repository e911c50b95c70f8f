//! The mount's storage layout and the HMAC that keeps secret ids out of it.
//!
//! | key                               | value                                    |
//! |-----------------------------------|------------------------------------------|
//! | `salt`                            | [`SaltEntry`]: the mount's 32-byte HMAC key |
//! | `role/<name>`                     | [`RoleEntry`]                            |
//! | `role_id/<hmac(role_id)>`         | [`RoleIdEntry`]: the role's name         |
//! | `secret_id/<name>/<hmac(secret_id)>` | [`SecretIdEntry`]                     |
//! | `accessor/<accessor>`             | [`AccessorEntry`]: role and secret-id HMAC |
//!
//! HMACs are HMAC-SHA256 under the mount's key, hex-encoded, over a purpose label and
//! the value (`role_id\0…`, `secret_id\0…`), so the two indexes never collide. The key is
//! made (from the system's CSPRNG) by the first write that needs it and never changes;
//! a secret id itself is never stored, only its HMAC.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use coffer_sdk::{SdkError, Storage, StorageExt};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::token::TokenParams;

/// Key of the mount's HMAC key.
pub const SALT_KEY: &str = "salt";
/// Prefix of roles.
pub const ROLE_PREFIX: &str = "role/";
/// Prefix of the role-id index.
pub const ROLE_ID_PREFIX: &str = "role_id/";
/// Prefix of secret ids (one folder per role).
pub const SECRET_ID_PREFIX: &str = "secret_id/";
/// Prefix of the accessor index.
pub const ACCESSOR_PREFIX: &str = "accessor/";

/// The stored HMAC key.
#[derive(Serialize, Deserialize)]
pub struct SaltEntry {
    /// 32 random bytes, hex.
    pub key: String,
}

/// A role.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RoleEntry {
    /// The role's login identifier (a UUID unless set by the operator).
    pub role_id: String,
    /// Whether a login needs a secret id.
    pub bind_secret_id: bool,
    /// CIDR blocks logins must come from.
    pub secret_id_bound_cidrs: Vec<String>,
    /// Default use limit of new secret ids (0 = unlimited).
    pub secret_id_num_uses: u64,
    /// Default lifetime of new secret ids in seconds (0 = no expiry).
    pub secret_id_ttl: u64,
    /// Recorded for reads only: every secret id of Coffer is replicated the same way.
    pub local_secret_ids: bool,
    /// Settings of the tokens a login issues.
    #[serde(flatten)]
    pub token: TokenParams,
}

/// Index entry from a role id to its role.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoleIdEntry {
    /// The role's name.
    pub name: String,
}

/// A secret id (by HMAC; the secret id itself is never stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretIdEntry {
    /// HMAC of the secret id (also the last segment of its key).
    pub secret_id_hmac: String,
    /// Its accessor: a UUID, safe to list and show.
    pub secret_id_accessor: String,
    /// Logins left (0 = unlimited).
    pub secret_id_num_uses: u64,
    /// Lifetime asked for at creation, in seconds (0 = none).
    pub secret_id_ttl: u64,
    /// When it was made.
    pub creation_time: DateTime<Utc>,
    /// When it stops working (`None` = never).
    pub expiration_time: Option<DateTime<Utc>>,
    /// Last change (creation or a counted use).
    pub last_updated_time: DateTime<Utc>,
    /// Operator metadata, copied into the token's metadata at login.
    pub metadata: BTreeMap<String, String>,
    /// CIDR blocks logins with it must come from.
    pub cidr_list: Vec<String>,
    /// CIDR blocks for its tokens (overrides the role's when set).
    pub token_bound_cidrs: Vec<String>,
}

impl SecretIdEntry {
    /// Whether it has expired at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expiration_time.is_some_and(|at| now >= at)
    }
}

/// Index entry from an accessor to its secret id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessorEntry {
    /// The role the secret id belongs to.
    pub role_name: String,
    /// HMAC of the secret id.
    pub secret_id_hmac: String,
}

/// Key of role `name`.
pub fn role_key(name: &str) -> String {
    format!("{ROLE_PREFIX}{name}")
}

/// Key of the role-id index entry for `role_id_hmac`.
pub fn role_id_key(role_id_hmac: &str) -> String {
    format!("{ROLE_ID_PREFIX}{role_id_hmac}")
}

/// Folder of role `name`'s secret ids.
pub fn secret_id_folder(name: &str) -> String {
    format!("{SECRET_ID_PREFIX}{name}/")
}

/// Key of a secret id of role `name`.
pub fn secret_id_key(name: &str, secret_id_hmac: &str) -> String {
    format!("{SECRET_ID_PREFIX}{name}/{secret_id_hmac}")
}

/// Key of an accessor.
pub fn accessor_key(accessor: &str) -> String {
    format!("{ACCESSOR_PREFIX}{accessor}")
}

/// Whether `accessor` can be a storage key segment we made (a UUID's alphabet).
pub fn accessor_shape_ok(accessor: &str) -> bool {
    !accessor.is_empty()
        && accessor.len() <= 64
        && accessor.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Read a role.
pub async fn load_role(storage: &dyn Storage, name: &str) -> Result<Option<RoleEntry>, SdkError> {
    storage.get_json(&role_key(name)).await
}

/// Read a secret id of role `name`.
pub async fn load_secret_id(
    storage: &dyn Storage,
    name: &str,
    secret_id_hmac: &str,
) -> Result<Option<SecretIdEntry>, SdkError> {
    storage.get_json(&secret_id_key(name, secret_id_hmac)).await
}

/// Read an accessor entry.
pub async fn load_accessor(
    storage: &dyn Storage,
    accessor: &str,
) -> Result<Option<AccessorEntry>, SdkError> {
    if !accessor_shape_ok(accessor) {
        return Ok(None);
    }
    storage.get_json(&accessor_key(accessor)).await
}

/// The mount's HMAC key.
pub struct Hasher {
    key: hmac::Key,
}

impl Hasher {
    fn from_hex(text: &str) -> Result<Hasher, SdkError> {
        let bytes = Zeroizing::new(
            hex::decode(text)
                .map_err(|_| SdkError::Internal("stored salt does not decode".into()))?,
        );
        if bytes.len() < 16 {
            return Err(SdkError::Internal("stored salt is too short".into()));
        }
        Ok(Hasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    /// The stored key, if one was made.
    pub async fn load(storage: &dyn Storage) -> Result<Option<Hasher>, SdkError> {
        match storage.get_json::<SaltEntry>(SALT_KEY).await? {
            Some(entry) => Ok(Some(Hasher::from_hex(&entry.key)?)),
            None => Ok(None),
        }
    }

    /// Make and store a new key (the caller holds the mount's write lock and has checked
    /// there is none).
    pub async fn create(storage: &dyn Storage) -> Result<Hasher, SdkError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(bytes.as_mut())
            .map_err(|_| SdkError::Internal("the system random source failed".into()))?;
        let entry = SaltEntry {
            key: hex::encode(bytes.as_ref()),
        };
        storage.put_json(SALT_KEY, &entry).await?;
        Hasher::from_hex(&entry.key)
    }

    fn mac(&self, label: &str, value: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(label.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        hex::encode(ctx.sign().as_ref())
    }

    /// HMAC of a role id (its index key).
    pub fn role_id(&self, role_id: &str) -> String {
        self.mac("role_id", role_id)
    }

    /// HMAC of a secret id (its storage key).
    pub fn secret_id(&self, secret_id: &str) -> String {
        self.mac("secret_id", secret_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmacs_are_labelled_and_keyed() {
        let a = Hasher::from_hex(&"11".repeat(32)).expect("key");
        let b = Hasher::from_hex(&"22".repeat(32)).expect("key");
        assert_ne!(a.role_id("x"), a.secret_id("x"));
        assert_ne!(a.secret_id("x"), b.secret_id("x"));
        assert_eq!(a.secret_id("x"), a.secret_id("x"));
        assert_eq!(a.secret_id("x").len(), 64);
        assert!(Hasher::from_hex("zz").is_err());
        assert!(Hasher::from_hex("0011").is_err());
    }

    #[test]
    fn accessor_shapes() {
        assert!(accessor_shape_ok("0b6a5d3c-1f2e-4a5b-8c7d-9e0f1a2b3c4d"));
        assert!(!accessor_shape_ok("../role/x"));
        assert!(!accessor_shape_ok(""));
        assert!(!accessor_shape_ok("a/b"));
    }
}

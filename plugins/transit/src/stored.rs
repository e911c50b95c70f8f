//! The JSON record a key ring is stored as at `policy/<name>`: every version, key
//! bytes in base64, the type as Vault's name. Loading re-checks every version (sizes,
//! Ed25519/ECDSA consistency) and the policy invariants.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use coffer_sdk::{is_zero, SdkError};
use serde::{Deserialize, Serialize};

use crate::codec::b64;
use crate::policy::{KeyPolicy, KeyType, KeyVersion, Stamp};
use crate::secret::SecretBytes;

/// One version as stored.
#[derive(Serialize, Deserialize)]
struct StoredVersion {
    key: SecretBytes,
    hmac_key: SecretBytes,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    public_key: String,
    creation_time: DateTime<Utc>,
    #[serde(default)]
    convergent_version: u32,
}

/// The JSON record at `policy/<name>`: the whole key ring, key bytes in base64.
#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    name: String,
    #[serde(rename = "type")]
    key_type: String,
    derived: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    convergent_encryption: bool,
    exportable: bool,
    allow_plaintext_backup: bool,
    deletion_allowed: bool,
    min_decryption_version: u32,
    min_encryption_version: u32,
    min_available_version: u32,
    latest_version: u32,
    auto_rotate_period: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    key_size: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup_info: Option<Stamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restore_info: Option<Stamp>,
    versions: BTreeMap<u32, StoredVersion>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl KeyPolicy {
    /// The stored JSON record.
    pub fn to_storage(&self) -> Result<Vec<u8>, SdkError> {
        let versions = self
            .versions
            .iter()
            .map(|(number, v)| {
                let public_key = if v.public_key.is_empty() {
                    String::new()
                } else {
                    b64(&v.public_key)
                };
                let stored = StoredVersion {
                    key: v.key.clone(),
                    hmac_key: v.hmac_key.clone(),
                    public_key,
                    creation_time: v.creation_time,
                    convergent_version: v.convergent_version,
                };
                (*number, stored)
            })
            .collect();
        let stored = StoredPolicy {
            name: self.name.clone(),
            key_type: self.key_type.as_str().to_string(),
            derived: self.derived,
            convergent_encryption: self.convergent,
            exportable: self.exportable,
            allow_plaintext_backup: self.allow_plaintext_backup,
            deletion_allowed: self.deletion_allowed,
            min_decryption_version: self.min_decryption_version,
            min_encryption_version: self.min_encryption_version,
            min_available_version: self.min_available_version,
            latest_version: self.latest_version,
            auto_rotate_period: self.auto_rotate_period,
            key_size: self.key_size,
            backup_info: self.backup_info.clone(),
            restore_info: self.restore_info.clone(),
            versions,
        };
        Ok(serde_json::to_vec(&stored)?)
    }

    /// Parse and check a stored record.
    pub fn from_storage(bytes: &[u8]) -> Result<KeyPolicy, SdkError> {
        let stored: StoredPolicy = serde_json::from_slice(bytes)
            .map_err(|e| SdkError::Internal(format!("stored key policy does not decode: {e}")))?;
        let key_type = KeyType::parse(&stored.key_type).map_err(SdkError::Internal)?;
        let mut policy = KeyPolicy {
            name: stored.name,
            key_type,
            derived: stored.derived,
            convergent: stored.convergent_encryption,
            exportable: stored.exportable,
            allow_plaintext_backup: stored.allow_plaintext_backup,
            deletion_allowed: stored.deletion_allowed,
            min_decryption_version: stored.min_decryption_version,
            min_encryption_version: stored.min_encryption_version,
            min_available_version: stored.min_available_version,
            latest_version: stored.latest_version,
            auto_rotate_period: stored.auto_rotate_period,
            key_size: stored.key_size,
            backup_info: stored.backup_info,
            restore_info: stored.restore_info,
            versions: BTreeMap::new(),
        };
        for (number, v) in stored.versions {
            let public_key = if v.public_key.is_empty() {
                Vec::new()
            } else {
                crate::codec::b64_decode(&v.public_key)
                    .map_err(SdkError::Internal)?
                    .to_vec()
            };
            let version = KeyVersion::assemble(
                &policy,
                v.key,
                v.hmac_key,
                public_key,
                v.creation_time,
                v.convergent_version,
            )
            .map_err(|e| SdkError::Internal(format!("stored key version {number}: {e}")))?;
            policy.versions.insert(number, Arc::new(version));
        }
        policy.check_consistency().map_err(SdkError::Internal)?;
        Ok(policy)
    }
}

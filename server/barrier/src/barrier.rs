//! The security barrier: Vault's key hierarchy over the replicated store.
//!
//! ```text
//!   unseal key (Shamir shares)  --encrypts-->  root key      @ core/root-key
//!   root key                    --encrypts-->  keyring       @ core/keyring
//!   keyring term N              --encrypts-->  every other key (path bound as AAD)
//!   seal configuration (plaintext, needed while sealed)      @ core/seal-config
//! ```
//!
//! A sealed barrier holds no key material. Every logical write goes through
//! [`Backend::commit`], i.e. through Raft; every node picks up a rotated keyring when it
//! applies the entry that wrote it (the apply listener marks the keyring stale).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use coffer_storage::{Backend, Op, StorageError};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keyring::{decrypt_with_key, encrypt_with_key, generate_key, Key, Keyring};
use crate::shamir;

/// Where the plaintext seal configuration lives.
pub const SEAL_CONFIG_PATH: &str = "core/seal-config";
/// Where the root key lives, encrypted under the unseal key.
pub const ROOT_KEY_PATH: &str = "core/root-key";
/// Where the keyring lives, encrypted under the root key.
pub const KEYRING_PATH: &str = "core/keyring";

/// The seal configuration (Vault's `SealConfig`), stored in plaintext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealConfig {
    /// Seal type; `shamir`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Number of key shares.
    pub secret_shares: u8,
    /// Shares needed to reconstruct the unseal key.
    pub secret_threshold: u8,
    /// Random id of this barrier (cluster identity for snapshot checks).
    #[serde(default)]
    pub barrier_id: String,
}

/// Errors of the barrier. None carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    /// The barrier is sealed.
    #[error("Vault is sealed")]
    Sealed,
    /// No seal configuration yet.
    #[error("Vault is not initialized")]
    NotInitialized,
    /// `initialize` on an initialized barrier.
    #[error("Vault is already initialized")]
    AlreadyInitialized,
    /// Bad share/threshold parameters or a malformed key share.
    #[error("{0}")]
    Invalid(String),
    /// The reconstructed key does not open the root key.
    #[error("unable to unseal: the key shares do not reconstruct the unseal key")]
    WrongKey,
    /// A stored value failed to decrypt or decode.
    #[error("barrier: {0}")]
    Crypto(String),
    /// The layer below failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// `sys/key-status`.
#[derive(Clone, Debug)]
pub struct KeyStatus {
    /// Active term.
    pub term: u32,
    /// When the active term was installed.
    pub install_time: DateTime<Utc>,
    /// Encryptions performed with the active keyring on this node.
    pub encryptions: u64,
}

/// The barrier over a replicated backend.
pub struct Barrier {
    backend: Arc<dyn Backend>,
    keyring: RwLock<Option<Arc<Keyring>>>,
    keyring_stale: Arc<AtomicBool>,
}

fn reserved(path: &str) -> bool {
    path == SEAL_CONFIG_PATH || path == ROOT_KEY_PATH || path == KEYRING_PATH
}

impl Barrier {
    /// A sealed barrier over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Arc<Barrier> {
        let stale = Arc::new(AtomicBool::new(false));
        let flag = stale.clone();
        backend.add_apply_listener(Arc::new(move |_index, keys: &[String]| {
            if keys.iter().any(|k| k == KEYRING_PATH || k == ROOT_KEY_PATH) {
                flag.store(true, Ordering::SeqCst);
            }
        }));
        Arc::new(Barrier {
            backend,
            keyring: RwLock::new(None),
            keyring_stale: stale,
        })
    }

    /// The backend below (for cluster status; never for logical data).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The stored seal configuration, if initialized.
    pub fn seal_config(&self) -> Result<Option<SealConfig>, BarrierError> {
        match self.backend.get(SEAL_CONFIG_PATH)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| BarrierError::Crypto(format!("seal config does not decode: {e}"))),
            None => Ok(None),
        }
    }

    /// Whether a seal configuration exists.
    pub fn is_initialized(&self) -> Result<bool, BarrierError> {
        Ok(self.backend.get(SEAL_CONFIG_PATH)?.is_some())
    }

    /// Whether the keyring is unloaded.
    pub fn is_sealed(&self) -> bool {
        self.keyring.read().map(|k| k.is_none()).unwrap_or(true)
    }

    /// Create the key hierarchy and store it. Returns the unseal key and its shares
    /// (the key itself is the only share when `shares == 1`). The barrier stays sealed.
    pub async fn initialize(
        &self,
        shares: u8,
        threshold: u8,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<Zeroizing<Vec<u8>>>), BarrierError> {
        validate_split(shares, threshold)?;
        if self.is_initialized()? {
            return Err(BarrierError::AlreadyInitialized);
        }
        let unseal_key = generate_key().map_err(crypto)?;
        let root_key = generate_key().map_err(crypto)?;
        let keyring = Keyring::new(root_key.clone()).map_err(crypto)?;
        let key_shares = split_key(unseal_key.as_bytes(), shares, threshold)?;
        let config = SealConfig {
            kind: "shamir".into(),
            secret_shares: shares,
            secret_threshold: threshold,
            barrier_id: hex::encode(&generate_key().map_err(crypto)?.as_bytes()[..16]),
        };
        let ops = vec![
            Op::Put {
                key: SEAL_CONFIG_PATH.into(),
                value: serde_json::to_vec(&config).map_err(crypto)?,
            },
            Op::Put {
                key: ROOT_KEY_PATH.into(),
                value: seal_blob(&unseal_key, ROOT_KEY_PATH, root_key.as_bytes())?,
            },
            Op::Put {
                key: KEYRING_PATH.into(),
                value: seal_blob(&root_key, KEYRING_PATH, &keyring.to_bytes())?,
            },
        ];
        self.backend.commit(ops).await?;
        Ok((Zeroizing::new(unseal_key.as_bytes().to_vec()), key_shares))
    }

    /// Check an unseal key against the stored root key; returns the root key.
    fn open_root_key(&self, unseal_key: &[u8]) -> Result<Key, BarrierError> {
        let key = Key::from_slice(unseal_key)
            .map_err(|_| BarrierError::Invalid("unseal key has the wrong length".into()))?;
        let blob = self
            .backend
            .get(ROOT_KEY_PATH)?
            .ok_or(BarrierError::NotInitialized)?;
        let plain =
            decrypt_with_key(&key, ROOT_KEY_PATH, &blob).map_err(|_| BarrierError::WrongKey)?;
        Key::from_slice(&plain)
            .map_err(|_| BarrierError::Crypto("stored root key has the wrong length".into()))
    }

    /// Whether `unseal_key` is the current unseal key (for rekey and generate-root).
    pub fn verify_unseal_key(&self, unseal_key: &[u8]) -> Result<(), BarrierError> {
        self.open_root_key(unseal_key).map(|_| ())
    }

    fn load_keyring(&self, root_key: &Key) -> Result<Keyring, BarrierError> {
        let blob = self
            .backend
            .get(KEYRING_PATH)?
            .ok_or(BarrierError::NotInitialized)?;
        let plain = decrypt_with_key(root_key, KEYRING_PATH, &blob)
            .map_err(|_| BarrierError::Crypto("keyring does not decrypt".into()))?;
        Keyring::from_bytes(&plain).map_err(crypto)
    }

    /// Unseal with the reconstructed unseal key.
    pub fn unseal(&self, unseal_key: &[u8]) -> Result<(), BarrierError> {
        let root = self.open_root_key(unseal_key)?;
        let keyring = self.load_keyring(&root)?;
        self.keyring_stale.store(false, Ordering::SeqCst);
        *self.keyring.write().map_err(|_| poisoned())? = Some(Arc::new(keyring));
        Ok(())
    }

    /// Drop all key material.
    pub fn seal(&self) {
        if let Ok(mut guard) = self.keyring.write() {
            *guard = None;
        }
    }

    /// The current keyring, reloading it if replication changed it.
    fn current(&self) -> Result<Arc<Keyring>, BarrierError> {
        let keyring = self
            .keyring
            .read()
            .map_err(|_| poisoned())?
            .clone()
            .ok_or(BarrierError::Sealed)?;
        if !self.keyring_stale.swap(false, Ordering::SeqCst) {
            return Ok(keyring);
        }
        let fresh = Arc::new(self.load_keyring(keyring.root_key())?);
        let mut guard = self.keyring.write().map_err(|_| poisoned())?;
        if guard.is_none() {
            return Err(BarrierError::Sealed);
        }
        *guard = Some(fresh.clone());
        Ok(fresh)
    }

    /// Read and decrypt a logical key.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, BarrierError> {
        let keyring = self.current()?;
        if reserved(path) {
            return Err(BarrierError::Invalid(format!("{path} is reserved")));
        }
        match self.backend.get(path)? {
            Some(blob) => keyring
                .decrypt(path, &blob)
                .map(Some)
                .map_err(|e| BarrierError::Crypto(format!("{path}: {e}"))),
            None => Ok(None),
        }
    }

    /// Encrypt a value that is not stored (batch tokens): same format, `path` as AAD.
    pub fn encrypt_value(&self, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, BarrierError> {
        self.current()?.encrypt(path, plaintext).map_err(crypto)
    }

    /// Decrypt a value made by [`Barrier::encrypt_value`].
    pub fn decrypt_value(&self, path: &str, ciphertext: &[u8]) -> Result<Vec<u8>, BarrierError> {
        self.current()?
            .decrypt(path, ciphertext)
            .map_err(|_| BarrierError::Invalid("value does not decrypt".into()))
    }

    /// List a logical prefix (keys are not secret; values are never read).
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, BarrierError> {
        self.current()?;
        Ok(self.backend.list(prefix)?)
    }

    /// Encrypt and commit a batch atomically; returns the Raft index.
    pub async fn commit(&self, ops: Vec<LogicalOp>) -> Result<u64, BarrierError> {
        let keyring = self.current()?;
        let mut physical = Vec::with_capacity(ops.len());
        for op in ops {
            if reserved(op.key()) {
                return Err(BarrierError::Invalid(format!("{} is reserved", op.key())));
            }
            physical.push(match op {
                LogicalOp::Put { key, value } => {
                    let value = keyring.encrypt(&key, &value).map_err(crypto)?;
                    Op::Put { key, value }
                }
                LogicalOp::Delete { key } => Op::Delete { key },
            });
        }
        Ok(self.backend.commit(physical).await?)
    }

    /// Add a keyring term; new writes use it, old terms stay readable.
    pub async fn rotate(&self) -> Result<u32, BarrierError> {
        let keyring = self.current()?;
        let rotated = keyring.rotate().map_err(crypto)?;
        let blob = seal_blob(keyring.root_key(), KEYRING_PATH, &rotated.to_bytes())?;
        self.backend
            .commit(vec![Op::Put {
                key: KEYRING_PATH.into(),
                value: blob,
            }])
            .await?;
        let term = rotated.active_term();
        *self.keyring.write().map_err(|_| poisoned())? = Some(Arc::new(rotated));
        self.keyring_stale.store(false, Ordering::SeqCst);
        Ok(term)
    }

    /// `sys/key-status`.
    pub fn key_status(&self) -> Result<KeyStatus, BarrierError> {
        let keyring = self.current()?;
        let term = keyring.active_term();
        let install_time = keyring
            .term_info(term)
            .map(|t| t.install_time)
            .unwrap_or_else(Utc::now);
        Ok(KeyStatus {
            term,
            install_time,
            encryptions: keyring.encryptions(),
        })
    }

    /// Replace the unseal key: the root key is re-encrypted under a fresh unseal key,
    /// split into new shares. Old shares stop working. Requires the current unseal key.
    pub async fn rekey(
        &self,
        current_unseal_key: &[u8],
        shares: u8,
        threshold: u8,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, BarrierError> {
        validate_split(shares, threshold)?;
        let root = self.open_root_key(current_unseal_key)?;
        let mut config = self.seal_config()?.ok_or(BarrierError::NotInitialized)?;
        let new_key = generate_key().map_err(crypto)?;
        let key_shares = split_key(new_key.as_bytes(), shares, threshold)?;
        config.secret_shares = shares;
        config.secret_threshold = threshold;
        self.backend
            .commit(vec![
                Op::Put {
                    key: SEAL_CONFIG_PATH.into(),
                    value: serde_json::to_vec(&config).map_err(crypto)?,
                },
                Op::Put {
                    key: ROOT_KEY_PATH.into(),
                    value: seal_blob(&new_key, ROOT_KEY_PATH, root.as_bytes())?,
                },
            ])
            .await?;
        Ok(key_shares)
    }
}

/// A logical (plaintext, above-the-barrier) storage op.
#[derive(Clone, Debug)]
pub enum LogicalOp {
    /// Encrypt and store.
    Put { key: String, value: Vec<u8> },
    /// Remove.
    Delete { key: String },
}

impl LogicalOp {
    /// The key touched.
    pub fn key(&self) -> &str {
        match self {
            LogicalOp::Put { key, .. } | LogicalOp::Delete { key } => key,
        }
    }
}

fn poisoned() -> BarrierError {
    BarrierError::Crypto("keyring lock poisoned".into())
}

fn seal_blob(key: &Key, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, BarrierError> {
    encrypt_with_key(key, path, plaintext).map_err(crypto)
}

fn crypto(err: impl std::fmt::Display) -> BarrierError {
    BarrierError::Crypto(err.to_string())
}

/// Vault's rules: 1..=255 shares, 1 <= threshold <= shares, threshold >= 2 if shares > 1.
pub fn validate_split(shares: u8, threshold: u8) -> Result<(), BarrierError> {
    if shares == 0 {
        return Err(BarrierError::Invalid(
            "secret shares must be at least one".into(),
        ));
    }
    if threshold == 0 {
        return Err(BarrierError::Invalid(
            "secret threshold must be at least one".into(),
        ));
    }
    if threshold > shares {
        return Err(BarrierError::Invalid(
            "secret threshold cannot be larger than secret shares".into(),
        ));
    }
    if shares > 1 && threshold < 2 {
        return Err(BarrierError::Invalid(
            "secret threshold must be at least two if secret shares is greater than one".into(),
        ));
    }
    Ok(())
}

fn split_key(
    key: &[u8],
    shares: u8,
    threshold: u8,
) -> Result<Vec<Zeroizing<Vec<u8>>>, BarrierError> {
    if shares == 1 {
        return Ok(vec![Zeroizing::new(key.to_vec())]);
    }
    shamir::split(key, shares as usize, threshold as usize)
        .map_err(|e| BarrierError::Invalid(e.to_string()))
}

/// Reconstruct the unseal key from decoded shares (the share is the key when the
/// threshold is one).
pub fn combine_shares(shares: &[Zeroizing<Vec<u8>>]) -> Result<Zeroizing<Vec<u8>>, BarrierError> {
    if shares.len() == 1 {
        return Ok(shares[0].clone());
    }
    let refs: Vec<&[u8]> = shares.iter().map(|s| s.as_slice()).collect();
    shamir::combine(&refs).map_err(|e| BarrierError::Invalid(e.to_string()))
}

//! The key policy: a named key ring (every version of one key), its settings, and the
//! answer `GET keys/:name` gives. Its stored form is in [`crate::stored`].
//!
//! The rules follow Vault's `keysutil.Policy`: versions start at 1,
//! `min_decryption_version >= 1`, `min_encryption_version` is 0 (latest) or at least
//! `min_decryption_version`, and trimming removes versions below
//! `min_available_version`. Every version carries its own 32-byte HMAC key (used by the
//! `hmac` endpoint for non-HMAC key types), as in Vault.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use coffer_sdk::SdkError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::asym::{self, Curve, EcdsaKey, Ed25519Key};
use crate::codec::b64;
use crate::crypto::{self, AeadKey, AeadKind};
use crate::secret::SecretBytes;

/// The convergent-encryption scheme new keys use (Vault's current: nonce from an HMAC
/// of the plaintext under a key derived together with the encryption key).
pub const CURRENT_CONVERGENT_VERSION: u32 = 3;
/// HMAC key sizes Vault accepts, in bytes.
pub const HMAC_MIN_KEY_SIZE: u32 = 32;
/// See [`HMAC_MIN_KEY_SIZE`].
pub const HMAC_MAX_KEY_SIZE: u32 = 512;
/// Storage prefix of key policies.
pub const POLICY_PREFIX: &str = "policy/";

/// The key types Coffer's transit engine supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// AES-128-GCM with 96-bit nonces.
    Aes128Gcm96,
    /// AES-256-GCM with 96-bit nonces (the default).
    Aes256Gcm96,
    /// ChaCha20-Poly1305.
    ChaCha20Poly1305,
    /// Ed25519 signatures.
    Ed25519,
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// An HMAC-only key of `key_size` bytes.
    Hmac,
}

impl KeyType {
    /// Parse a Vault type name. Types Vault has but Coffer does not get their own message.
    pub fn parse(name: &str) -> Result<KeyType, String> {
        Ok(match name {
            "aes128-gcm96" => KeyType::Aes128Gcm96,
            "aes256-gcm96" => KeyType::Aes256Gcm96,
            "chacha20-poly1305" => KeyType::ChaCha20Poly1305,
            "ed25519" => KeyType::Ed25519,
            "ecdsa-p256" => KeyType::EcdsaP256,
            "ecdsa-p384" => KeyType::EcdsaP384,
            "hmac" => KeyType::Hmac,
            "rsa-2048" | "rsa-3072" | "rsa-4096" | "ecdsa-p521" | "managed_key" | "aes128-cmac"
            | "aes192-cmac" | "aes256-cmac" | "xchacha20-poly1305" => {
                return Err(format!("key type {name} is not supported by Coffer"))
            }
            other => return Err(format!("unknown key type {other}")),
        })
    }

    /// Vault's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Aes128Gcm96 => "aes128-gcm96",
            KeyType::Aes256Gcm96 => "aes256-gcm96",
            KeyType::ChaCha20Poly1305 => "chacha20-poly1305",
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Hmac => "hmac",
        }
    }

    /// The AEAD of a symmetric encryption type.
    pub fn aead(self) -> Option<AeadKind> {
        match self {
            KeyType::Aes128Gcm96 => Some(AeadKind::Aes128Gcm),
            KeyType::Aes256Gcm96 => Some(AeadKind::Aes256Gcm),
            KeyType::ChaCha20Poly1305 => Some(AeadKind::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// The curve of an ECDSA type.
    pub fn curve(self) -> Option<Curve> {
        match self {
            KeyType::EcdsaP256 => Some(Curve::P256),
            KeyType::EcdsaP384 => Some(Curve::P384),
            _ => None,
        }
    }

    /// Whether `encrypt`/`datakey` work with this type.
    pub fn supports_encryption(self) -> bool {
        self.aead().is_some()
    }

    /// Whether `sign`/`verify` (with a signature) work with this type.
    pub fn supports_signing(self) -> bool {
        matches!(
            self,
            KeyType::Ed25519 | KeyType::EcdsaP256 | KeyType::EcdsaP384
        )
    }

    /// Whether `derived` keys are possible.
    pub fn supports_derivation(self) -> bool {
        self.aead().is_some() || self == KeyType::Ed25519
    }

    /// Whether the type is asymmetric (key read shows public keys).
    pub fn is_asymmetric(self) -> bool {
        self.supports_signing()
    }
}

/// When something happened to a key (backup or restore) and at which latest version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// When.
    pub time: DateTime<Utc>,
    /// `latest_version` at that time.
    pub version: u32,
}

/// One version of a key.
pub struct KeyVersion {
    /// AES/ChaCha/HMAC key; Ed25519 `seed || public`; ECDSA private scalar.
    pub key: SecretBytes,
    /// The version's HMAC key (the `hmac` endpoint; for `hmac` keys it equals `key`).
    pub hmac_key: SecretBytes,
    /// Ed25519 public key or ECDSA uncompressed point; empty for symmetric types.
    pub public_key: Vec<u8>,
    /// Creation time.
    pub creation_time: DateTime<Utc>,
    /// Convergent scheme (1, 2 or 3) for convergent keys, else 0.
    pub convergent_version: u32,
    /// The parsed key, ready for use (not stored).
    pub material: Material,
}

impl std::fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVersion")
            .field("creation_time", &self.creation_time)
            .field("convergent_version", &self.convergent_version)
            .finish_non_exhaustive()
    }
}

/// A version's key, parsed once when the policy is loaded.
#[derive(Debug)]
pub enum Material {
    /// Nothing pre-built (HMAC keys, derived symmetric keys).
    None,
    /// A keyed AEAD (non-derived symmetric keys).
    Aead(AeadKey),
    /// An Ed25519 key pair.
    Ed25519(Ed25519Key),
    /// An ECDSA key pair.
    Ecdsa(EcdsaKey),
}

impl KeyVersion {
    /// A fresh version for a policy with these settings.
    fn generate(settings: &KeyPolicy) -> Result<KeyVersion, SdkError> {
        let hmac_key = crypto::random_secret(32)?;
        let (key, public_key) = match settings.key_type {
            KeyType::Hmac => {
                let key = crypto::random_secret(settings.key_size as usize)?;
                (key, Vec::new())
            }
            KeyType::Ed25519 => {
                let key = Ed25519Key::generate()?;
                (key.private().clone(), key.public_key().to_vec())
            }
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => {
                let curve = settings.key_type.curve().unwrap_or(Curve::P256);
                let key = EcdsaKey::generate(curve)?;
                (key.scalar().clone(), key.point().to_vec())
            }
            symmetric => {
                let len = symmetric.aead().map_or(32, AeadKind::key_len);
                (crypto::random_secret(len)?, Vec::new())
            }
        };
        let convergent_version = if settings.convergent {
            CURRENT_CONVERGENT_VERSION
        } else {
            0
        };
        KeyVersion::assemble(
            settings,
            key,
            hmac_key,
            public_key,
            Utc::now(),
            convergent_version,
        )
        .map_err(SdkError::Internal)
    }

    /// Check the parts against the policy's type and build the ready-to-use material.
    pub fn assemble(
        settings: &KeyPolicy,
        key: SecretBytes,
        hmac_key: SecretBytes,
        public_key: Vec<u8>,
        creation_time: DateTime<Utc>,
        convergent_version: u32,
    ) -> Result<KeyVersion, String> {
        let key_type = settings.key_type;
        if key_type != KeyType::Hmac && hmac_key.is_empty() {
            return Err("key version has no HMAC key".into());
        }
        if settings.convergent != (convergent_version != 0) || convergent_version > 3 {
            return Err("inconsistent convergent encryption version".into());
        }
        let (material, public_key) = match key_type {
            KeyType::Hmac => {
                let size = key.len();
                if size < HMAC_MIN_KEY_SIZE as usize || size > HMAC_MAX_KEY_SIZE as usize {
                    return Err(format!("invalid HMAC key size {size}"));
                }
                (Material::None, Vec::new())
            }
            KeyType::Ed25519 => {
                let pair = Ed25519Key::from_private(&key)?;
                let public = pair.public_key().to_vec();
                (Material::Ed25519(pair), public)
            }
            KeyType::EcdsaP256 | KeyType::EcdsaP384 => {
                let curve = key_type.curve().unwrap_or(Curve::P256);
                let pair = EcdsaKey::from_parts(curve, key.clone(), public_key)?;
                let public = pair.point().to_vec();
                (Material::Ecdsa(pair), public)
            }
            symmetric => {
                let kind = symmetric.aead().ok_or("unsupported key type")?;
                if key.len() != kind.key_len() {
                    return Err(format!(
                        "invalid key size {} bytes for key type {}",
                        key.len(),
                        key_type.as_str()
                    ));
                }
                let material = if settings.derived {
                    Material::None
                } else {
                    Material::Aead(AeadKey::new(kind, key.expose()).map_err(|e| e.to_string())?)
                };
                (material, Vec::new())
            }
        };
        let hmac_key = if key_type == KeyType::Hmac {
            key.clone()
        } else {
            hmac_key
        };
        Ok(KeyVersion {
            key,
            hmac_key,
            public_key,
            creation_time,
            convergent_version,
            material,
        })
    }
}

/// Settings of a new key (`POST keys/:name`, or an upsert on `encrypt`).
#[derive(Clone, Debug)]
pub struct NewKey {
    /// The type.
    pub key_type: KeyType,
    /// Per-request key derivation from a context.
    pub derived: bool,
    /// Deterministic encryption (requires `derived`).
    pub convergent: bool,
    /// Key material may be exported.
    pub exportable: bool,
    /// Plaintext backups allowed.
    pub allow_plaintext_backup: bool,
    /// Automatic rotation period in seconds (0 = off).
    pub auto_rotate_period: u64,
    /// HMAC key size in bytes (0 = default 32; only for `hmac`).
    pub key_size: u32,
}

impl NewKey {
    /// Vault's checks on a new key's settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.auto_rotate_period != 0 && self.auto_rotate_period < 3600 {
            return Err("auto rotate period must be 0 to disable or at least an hour".into());
        }
        if self.convergent && !self.derived {
            return Err("convergent encryption requires derivation to be enabled".into());
        }
        let name = self.key_type.as_str();
        match self.key_type {
            KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::Hmac
                if self.derived || self.convergent =>
            {
                return Err(format!(
                    "key derivation and convergent encryption not supported for keys of type {name}"
                ))
            }
            KeyType::Ed25519 if self.convergent => {
                return Err("convergent encryption not supported for keys of type ed25519".into())
            }
            _ => {}
        }
        if self.key_size != 0 {
            if self.key_type != KeyType::Hmac {
                return Err(format!("key_size is not valid for algorithm {name}"));
            }
            if self.key_size < HMAC_MIN_KEY_SIZE || self.key_size > HMAC_MAX_KEY_SIZE {
                return Err(format!("invalid key_size {}", self.key_size));
            }
        }
        Ok(())
    }
}

/// A named key ring, immutable once shared; writers clone, change and store a new one.
#[derive(Clone, Debug)]
pub struct KeyPolicy {
    /// The key's name.
    pub name: String,
    /// The type.
    pub key_type: KeyType,
    /// Derived keys need a context on every operation.
    pub derived: bool,
    /// Convergent (deterministic) encryption.
    pub convergent: bool,
    /// Export allowed (cannot be unset).
    pub exportable: bool,
    /// Plaintext backup allowed (cannot be unset).
    pub allow_plaintext_backup: bool,
    /// `DELETE keys/:name` allowed.
    pub deletion_allowed: bool,
    /// Oldest version that may decrypt/verify (>= 1).
    pub min_decryption_version: u32,
    /// Oldest version that may encrypt/sign (0 = any up to latest).
    pub min_encryption_version: u32,
    /// Versions below this were trimmed (0 = never trimmed).
    pub min_available_version: u32,
    /// Newest version.
    pub latest_version: u32,
    /// Automatic rotation period in seconds (0 = off).
    pub auto_rotate_period: u64,
    /// HMAC key size in bytes (`hmac` keys only, else 0).
    pub key_size: u32,
    /// The last plaintext backup.
    pub backup_info: Option<Stamp>,
    /// The restore this key came from.
    pub restore_info: Option<Stamp>,
    /// Every available version.
    pub versions: BTreeMap<u32, Arc<KeyVersion>>,
}

impl KeyPolicy {
    /// A new key ring with version 1.
    pub fn create(name: &str, new: &NewKey) -> Result<KeyPolicy, SdkError> {
        new.validate().map_err(SdkError::BadRequest)?;
        let key_size = match (new.key_type, new.key_size) {
            (KeyType::Hmac, 0) => HMAC_MIN_KEY_SIZE,
            (KeyType::Hmac, size) => size,
            _ => 0,
        };
        let mut policy = KeyPolicy {
            name: name.to_string(),
            key_type: new.key_type,
            derived: new.derived,
            convergent: new.convergent,
            exportable: new.exportable,
            allow_plaintext_backup: new.allow_plaintext_backup,
            deletion_allowed: false,
            min_decryption_version: 1,
            min_encryption_version: 0,
            min_available_version: 0,
            latest_version: 0,
            auto_rotate_period: new.auto_rotate_period,
            key_size,
            backup_info: None,
            restore_info: None,
            versions: BTreeMap::new(),
        };
        policy.rotate()?;
        Ok(policy)
    }

    /// Add a new latest version.
    pub fn rotate(&mut self) -> Result<(), SdkError> {
        let version = KeyVersion::generate(self)?;
        let next = self
            .latest_version
            .checked_add(1)
            .ok_or_else(|| SdkError::bad("key version limit reached"))?;
        self.versions.insert(next, Arc::new(version));
        self.latest_version = next;
        if self.min_decryption_version == 0 {
            self.min_decryption_version = 1;
        }
        Ok(())
    }

    /// Version `version`, or Vault's "no such key version".
    pub fn version(&self, version: u32) -> Result<&Arc<KeyVersion>, String> {
        self.versions
            .get(&version)
            .ok_or_else(|| "no such key version".to_string())
    }

    /// The newest version.
    pub fn latest(&self) -> Result<&Arc<KeyVersion>, String> {
        self.version(self.latest_version)
    }

    /// Drop versions below `min_available_version` (after a trim).
    pub fn drop_trimmed(&mut self) {
        let keep = self.min_available_version;
        self.versions.retain(|v, _| *v >= keep);
    }

    /// The version an encryption asks for (0 = latest), checked as Vault checks it.
    pub fn encryption_version(&self, requested: i64) -> Result<u32, String> {
        match requested {
            0 => Ok(self.latest_version),
            v if v < 0 => Err("requested version for encryption is negative".into()),
            v if v > i64::from(self.latest_version) => {
                Err("requested version for encryption is higher than the latest key version".into())
            }
            v if v < i64::from(self.min_encryption_version) => Err(
                "requested version for encryption is less than the minimum encryption key version"
                    .into(),
            ),
            v => u32::try_from(v).map_err(|_| "invalid key version".to_string()),
        }
    }

    /// The version a signature asks for (0 = latest), checked as Vault checks it.
    pub fn signing_version(&self, requested: i64) -> Result<u32, String> {
        match requested {
            0 => Ok(self.latest_version),
            v if v < 0 => Err("requested version for signing is negative".into()),
            v if v > i64::from(self.latest_version) => {
                Err("requested version for signing is higher than the latest key version".into())
            }
            v if self.min_encryption_version > 0 && v < i64::from(self.min_encryption_version) => {
                Err(
                    "requested version for signing is less than the minimum encryption key version"
                        .into(),
                )
            }
            v => u32::try_from(v).map_err(|_| "invalid key version".to_string()),
        }
    }

    /// Whether a ciphertext/signature of `version` may be opened, with Vault's messages
    /// (`noun` is "ciphertext" or "signature").
    pub fn check_decryption_version(&self, version: i64, noun: &str) -> Result<u32, String> {
        if version > i64::from(self.latest_version) {
            return Err(format!("invalid {noun}: version is too new"));
        }
        if version < i64::from(self.min_decryption_version) {
            return Err(crate::ERR_TOO_OLD.into());
        }
        u32::try_from(version).map_err(|_| format!("invalid {noun}: version is too new"))
    }

    /// The context check Vault makes for derived keys.
    pub fn require_context(&self, context: &[u8]) -> Result<(), String> {
        if self.derived && context.is_empty() {
            return Err("missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key".into());
        }
        Ok(())
    }

    /// The Ed25519 key for `version` (derived from `context` for derived keys).
    pub fn ed25519_key<'v>(
        &self,
        version: &'v KeyVersion,
        context: &[u8],
    ) -> Result<EdKeyRef<'v>, OpFail> {
        if self.derived {
            self.require_context(context)?;
            let seed = crypto::hkdf_sha256(version.key.expose(), context, 32)?;
            let key = Ed25519Key::from_seed(seed.expose())
                .map_err(|e| OpFail::Internal(SdkError::Internal(e)))?;
            return Ok(EdKeyRef::Derived(Box::new(key)));
        }
        match &version.material {
            Material::Ed25519(key) => Ok(EdKeyRef::Stored(key)),
            _ => Err(OpFail::Internal(SdkError::Internal(
                "key material missing".into(),
            ))),
        }
    }

    /// The answer to `GET keys/:name` (Vault's `formatKeyPolicy`). `context` selects the
    /// derived public keys of a derived Ed25519 key.
    pub fn describe(&self, context: Option<&[u8]>) -> Result<Map<String, Value>, SdkError> {
        let t = self.key_type;
        let mut data = Map::new();
        data.insert("name".into(), json!(self.name));
        data.insert("type".into(), json!(t.as_str()));
        data.insert("derived".into(), json!(self.derived));
        data.insert("deletion_allowed".into(), json!(self.deletion_allowed));
        data.insert(
            "min_available_version".into(),
            json!(self.min_available_version),
        );
        data.insert(
            "min_decryption_version".into(),
            json!(self.min_decryption_version),
        );
        data.insert(
            "min_encryption_version".into(),
            json!(self.min_encryption_version),
        );
        data.insert("latest_version".into(), json!(self.latest_version));
        data.insert("exportable".into(), json!(self.exportable));
        data.insert(
            "allow_plaintext_backup".into(),
            json!(self.allow_plaintext_backup),
        );
        data.insert("supports_encryption".into(), json!(t.supports_encryption()));
        data.insert("supports_decryption".into(), json!(t.supports_encryption()));
        data.insert("supports_signing".into(), json!(t.supports_signing()));
        data.insert("supports_derivation".into(), json!(t.supports_derivation()));
        data.insert("auto_rotate_period".into(), json!(self.auto_rotate_period));
        data.insert("imported_key".into(), json!(false));
        if self.key_size != 0 {
            data.insert("key_size".into(), json!(self.key_size));
        }
        for (field, stamp) in [
            ("backup_info", &self.backup_info),
            ("restore_info", &self.restore_info),
        ] {
            if let Some(stamp) = stamp {
                data.insert(
                    field.into(),
                    json!({"time": rfc3339(&stamp.time), "version": stamp.version}),
                );
            }
        }
        if self.derived {
            data.insert("kdf".into(), json!("hkdf_sha256"));
            data.insert("convergent_encryption".into(), json!(self.convergent));
            if self.convergent {
                // Vault reports the policy-level scheme, which is -1 ("kept per
                // version") for every key created since scheme 3.
                let scheme = self
                    .versions
                    .get(&self.latest_version)
                    .map_or(CURRENT_CONVERGENT_VERSION, |v| v.convergent_version);
                let shown = if scheme >= CURRENT_CONVERGENT_VERSION {
                    -1
                } else {
                    i64::from(scheme)
                };
                data.insert("convergent_encryption_version".into(), json!(shown));
            }
        }
        let mut keys = Map::new();
        for (number, version) in &self.versions {
            let entry = if t.is_asymmetric() {
                let (name, public_key) = match t.curve() {
                    Some(curve) => (
                        curve.name(),
                        asym::ecdsa_public_pem(curve, &version.public_key),
                    ),
                    None => ("ed25519", self.ed25519_public_for_read(version, context)?),
                };
                json!({
                    "name": name,
                    "public_key": public_key,
                    "creation_time": rfc3339(&version.creation_time),
                    "certificate_chain": "",
                })
            } else {
                json!(version.creation_time.timestamp())
            };
            keys.insert(number.to_string(), entry);
        }
        data.insert("keys".into(), Value::Object(keys));
        Ok(data)
    }

    fn ed25519_public_for_read(
        &self,
        version: &KeyVersion,
        context: Option<&[u8]>,
    ) -> Result<String, SdkError> {
        if !self.derived {
            return Ok(b64(&version.public_key));
        }
        match context.filter(|c| !c.is_empty()) {
            None => Ok(String::new()),
            Some(context) => match self.ed25519_key(version, context) {
                Ok(key) => Ok(b64(key.get().public_key())),
                Err(OpFail::User(message)) => Err(SdkError::BadRequest(message)),
                Err(OpFail::Internal(err)) => Err(err),
            },
        }
    }
}

/// An Ed25519 key for one operation: the stored one, or one derived from a context.
pub enum EdKeyRef<'a> {
    /// The version's own key.
    Stored(&'a Ed25519Key),
    /// A key derived for this request.
    Derived(Box<Ed25519Key>),
}

impl EdKeyRef<'_> {
    /// The key.
    pub fn get(&self) -> &Ed25519Key {
        match self {
            EdKeyRef::Stored(key) => key,
            EdKeyRef::Derived(key) => key,
        }
    }
}

/// A failure inside a policy operation: user (400) or internal (500).
pub type OpFail = crate::error::OpError;

/// RFC 3339 with as many fractional digits as needed (Go's `RFC3339Nano`).
pub fn rfc3339(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl KeyPolicy {
    /// The invariants every policy keeps (also applied to restored backups).
    pub fn check_consistency(&self) -> Result<(), String> {
        let latest = self.latest_version;
        if latest == 0 {
            return Err("key has no versions".into());
        }
        if self.min_decryption_version == 0 || self.min_decryption_version > latest {
            return Err("min_decryption_version out of range".into());
        }
        if self.min_encryption_version > latest
            || (self.min_encryption_version > 0
                && self.min_encryption_version < self.min_decryption_version)
        {
            return Err("min_encryption_version out of range".into());
        }
        if self.min_available_version > self.min_decryption_version {
            return Err("min_available_version out of range".into());
        }
        let first = self.min_available_version.max(1);
        let expected: Vec<u32> = (first..=latest).collect();
        let present: Vec<u32> = self.versions.keys().copied().collect();
        if present != expected {
            return Err(format!(
                "key versions {first}..={latest} are not all present"
            ));
        }
        let options = NewKey {
            key_type: self.key_type,
            derived: self.derived,
            convergent: self.convergent,
            exportable: self.exportable,
            allow_plaintext_backup: self.allow_plaintext_backup,
            auto_rotate_period: self.auto_rotate_period,
            key_size: if self.key_type == KeyType::Hmac {
                self.key_size
            } else {
                0
            },
        };
        if self.key_type == KeyType::Hmac && self.key_size == 0 {
            return Err("HMAC key without a key size".into());
        }
        options.validate()
    }
}

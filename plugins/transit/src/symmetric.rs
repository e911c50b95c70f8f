//! Encrypt and decrypt with a symmetric key policy, byte-compatible with Vault:
//! `vault:v<N>:` + base64(`nonce(12) || ciphertext || tag(16)`).
//!
//! Derived keys: the encryption key is HKDF-SHA256(version key, info = context). For
//! convergent encryption the nonce is not random: scheme 3 (what new keys use) takes
//! the first 12 bytes of HMAC-SHA256 over the plaintext, keyed with 32 more bytes of
//! the same HKDF output; scheme 2 (restored keys) keys that HMAC with the context;
//! scheme 1 (restored keys) takes the caller's nonce and does not store it in the
//! ciphertext.

use zeroize::Zeroizing;

use crate::codec::{self, b64, split_versioned, ValueKind};
use crate::crypto::{self, AeadKey, HashAlg, NONCE_LEN};
use crate::error::OpError;
use crate::policy::{KeyPolicy, KeyVersion, Material};
use crate::secret::SecretBytes;

/// What one encryption needs besides the plaintext.
#[derive(Clone, Copy, Default)]
pub struct SealParams<'a> {
    /// Requested key version (0 = latest).
    pub key_version: i64,
    /// Derivation context (derived keys).
    pub context: &'a [u8],
    /// Caller nonce (convergent scheme 1 only).
    pub nonce: &'a [u8],
    /// AEAD associated data.
    pub associated_data: &'a [u8],
}

/// What one decryption needs besides the ciphertext.
#[derive(Clone, Copy, Default)]
pub struct OpenParams<'a> {
    /// Derivation context (derived keys).
    pub context: &'a [u8],
    /// Caller nonce (convergent scheme 1 only).
    pub nonce: &'a [u8],
    /// AEAD associated data.
    pub associated_data: &'a [u8],
}

/// The cipher for one version: the cached one, or one derived for this request
/// (with the convergent HMAC key when scheme 3 needs it).
struct VersionCipher<'a> {
    cached: Option<&'a AeadKey>,
    derived: Option<AeadKey>,
    nonce_key: Option<SecretBytes>,
}

impl VersionCipher<'_> {
    fn get(&self) -> Result<&AeadKey, OpError> {
        self.cached.or(self.derived.as_ref()).ok_or_else(|| {
            OpError::Internal(coffer_sdk::SdkError::Internal(
                "key material missing".into(),
            ))
        })
    }
}

fn cipher_for<'a>(
    policy: &KeyPolicy,
    version: &'a KeyVersion,
    context: &[u8],
    with_nonce_key: bool,
) -> Result<VersionCipher<'a>, OpError> {
    let kind = policy
        .key_type
        .aead()
        .ok_or_else(|| OpError::user("key type does not support encryption"))?;
    if !policy.derived {
        return match &version.material {
            Material::Aead(key) => Ok(VersionCipher {
                cached: Some(key),
                derived: None,
                nonce_key: None,
            }),
            _ => Err(OpError::Internal(coffer_sdk::SdkError::Internal(
                "key material missing".into(),
            ))),
        };
    }
    policy.require_context(context)?;
    let enc_len = kind.key_len();
    let extra = if with_nonce_key { 32 } else { 0 };
    let okm = crypto::hkdf_sha256(version.key.expose(), context, enc_len + extra)?;
    let (enc, rest) = okm.expose().split_at(enc_len);
    Ok(VersionCipher {
        cached: None,
        derived: Some(AeadKey::new(kind, enc)?),
        nonce_key: with_nonce_key.then(|| SecretBytes::copy_from(rest)),
    })
}

/// Encrypt `plaintext`; returns the `vault:vN:` ciphertext and the version used.
pub fn encrypt(
    policy: &KeyPolicy,
    plaintext: &[u8],
    params: SealParams<'_>,
) -> Result<(String, u32), OpError> {
    if !policy.key_type.supports_encryption() {
        return Err(OpError::user(format!(
            "message encryption not supported for key type {}",
            policy.key_type.as_str()
        )));
    }
    let number = policy.encryption_version(params.key_version)?;
    let version = policy.version(number)?;
    let scheme = version.convergent_version;
    if !params.nonce.is_empty() && scheme != 1 {
        return Err(OpError::user("nonce provided when not allowed"));
    }
    let cipher = cipher_for(policy, version, params.context, scheme >= 3)?;
    let mut nonce = [0u8; NONCE_LEN];
    match scheme {
        0 => crypto::fill_nonce(&mut nonce)?,
        1 => {
            if params.nonce.len() != NONCE_LEN {
                return Err(OpError::user(format!(
                    "base64-decoded nonce must be {NONCE_LEN} bytes long when using convergent encryption with this key"
                )));
            }
            nonce.copy_from_slice(params.nonce);
        }
        2 => nonce.copy_from_slice(&HashAlg::Sha256.hmac(params.context, plaintext)[..NONCE_LEN]),
        _ => {
            let key = cipher.nonce_key.as_ref().ok_or_else(|| {
                OpError::Internal(coffer_sdk::SdkError::Internal(
                    "convergent key missing".into(),
                ))
            })?;
            nonce.copy_from_slice(&HashAlg::Sha256.hmac(key.expose(), plaintext)[..NONCE_LEN]);
        }
    }
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + crypto::TAG_LEN);
    if scheme != 1 {
        out.extend_from_slice(&nonce);
    }
    cipher
        .get()?
        .seal_append(&nonce, params.associated_data, plaintext, &mut out)?;
    Ok((codec::versioned(number, &b64(&out)), number))
}

/// Decrypt a `vault:vN:` ciphertext.
pub fn decrypt(
    policy: &KeyPolicy,
    ciphertext: &str,
    params: OpenParams<'_>,
) -> Result<Zeroizing<Vec<u8>>, OpError> {
    if !policy.key_type.supports_encryption() {
        return Err(OpError::user(format!(
            "message decryption not supported for key type {}",
            policy.key_type.as_str()
        )));
    }
    let (number, body) = split_versioned(ciphertext, ValueKind::Ciphertext)?;
    // Vault's compatibility rule: keys once started at version 0.
    let number = if number == 0 { 1 } else { number };
    let number = policy.check_decryption_version(number, "ciphertext")?;
    let version = policy.version(number)?;
    let scheme = version.convergent_version;
    if scheme == 1 && params.nonce.is_empty() {
        return Err(OpError::user("invalid convergent nonce supplied"));
    }
    let blob = codec::b64_decode(body)
        .map_err(|_| OpError::user("invalid ciphertext: could not decode base64"))?;
    let cipher = cipher_for(policy, version, params.context, false)?;
    let (nonce, sealed) = if scheme == 1 {
        (params.nonce, blob.as_slice())
    } else {
        if blob.len() < NONCE_LEN {
            return Err(OpError::user("invalid ciphertext length"));
        }
        blob.split_at(NONCE_LEN)
    };
    cipher
        .get()?
        .open(nonce, params.associated_data, sealed)
        .map_err(OpError::User)
}

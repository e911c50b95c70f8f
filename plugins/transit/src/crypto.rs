//! Symmetric primitives: randomness, HKDF-SHA256 key derivation, the AEADs with
//! Vault's ciphertext layout (`nonce(12) || ciphertext || tag(16)`), hashes and HMACs.
//!
//! AES-GCM comes from `aes-gcm` (its key schedule is wiped on drop); ChaCha20-Poly1305,
//! HKDF, HMAC-SHA2-{256,384,512} and the RNG from `ring`; SHA-224 (which `ring` lacks)
//! from `sha2`.

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use coffer_sdk::SdkError;
use sha2::Digest;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

/// Nonce length of every AEAD here (96 bits).
pub const NONCE_LEN: usize = 12;
/// Tag length of every AEAD here (128 bits).
pub const TAG_LEN: usize = 16;

/// Fill `buf` from the system CSPRNG.
pub fn fill_random(buf: &mut [u8]) -> Result<(), SdkError> {
    coffer_sdk::random::fill_secret(buf).map_err(random_failed)
}

fn random_failed(e: coffer_sdk::random::RandomError) -> SdkError {
    SdkError::Internal(e.to_string())
}

/// Fill a nonce (public, must never repeat) from pooled system-CSPRNG output (see
/// `coffer_sdk::random`) instead of one `getrandom` call per encryption (13% of a
/// transit encrypt's CPU). Keys and other secrets use [`random_secret`], straight from the
/// system RNG.
pub fn fill_nonce(buf: &mut [u8]) -> Result<(), SdkError> {
    coffer_sdk::random::fill_public(buf).map_err(random_failed)
}

/// `n` random bytes, in a buffer wiped on drop.
pub fn random_secret(n: usize) -> Result<SecretBytes, SdkError> {
    let mut buf = vec![0u8; n];
    fill_random(&mut buf)?;
    Ok(SecretBytes::new(buf))
}

struct OutputLen(usize);

impl ring::hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 with an empty salt and `info` as the info string: Vault's
/// `hkdf.New(sha256.New, key, nil, context)` (a nil salt is a zero-filled salt, which
/// HMAC treats exactly like an empty key).
pub fn hkdf_sha256(ikm: &[u8], info: &[u8], len: usize) -> Result<SecretBytes, SdkError> {
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(ikm);
    let info = [info];
    let okm = prk
        .expand(&info, OutputLen(len))
        .map_err(|_| SdkError::Internal("key derivation output too long".into()))?;
    let mut out = vec![0u8; len];
    okm.fill(&mut out)
        .map_err(|_| SdkError::Internal("key derivation failed".into()))?;
    Ok(SecretBytes::new(out))
}

/// Constant-time equality.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The SHA-2 functions transit offers for `hash`, `hmac` and signing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    /// sha2-224
    Sha224,
    /// sha2-256
    Sha256,
    /// sha2-384
    Sha384,
    /// sha2-512
    Sha512,
}

impl HashAlg {
    /// Vault's names (`sha2-256`, ...). SHA-3 is not offered.
    pub fn parse(name: &str) -> Option<HashAlg> {
        match name {
            "sha2-224" => Some(HashAlg::Sha224),
            "sha2-256" => Some(HashAlg::Sha256),
            "sha2-384" => Some(HashAlg::Sha384),
            "sha2-512" => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// Vault's name.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha224 => "sha2-224",
            HashAlg::Sha256 => "sha2-256",
            HashAlg::Sha384 => "sha2-384",
            HashAlg::Sha512 => "sha2-512",
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha224 => sha2::Sha224::digest(data).to_vec(),
            HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC of `data` under `key`.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            HashAlg::Sha224 => return hmac_sha224(key, data).to_vec(),
            HashAlg::Sha256 => ring::hmac::HMAC_SHA256,
            HashAlg::Sha384 => ring::hmac::HMAC_SHA384,
            HashAlg::Sha512 => ring::hmac::HMAC_SHA512,
        };
        let key = ring::hmac::Key::new(algorithm, key);
        ring::hmac::sign(&key, data).as_ref().to_vec()
    }
}

/// RFC 2104 HMAC over SHA-224 (block size 64), which `ring` does not provide.
fn hmac_sha224(key: &[u8], data: &[u8]) -> [u8; 28] {
    const BLOCK: usize = 64;
    let mut block_key = Zeroizing::new([0u8; BLOCK]);
    if key.len() > BLOCK {
        let hashed = sha2::Sha224::digest(key);
        block_key[..hashed.len()].copy_from_slice(&hashed);
    } else {
        block_key[..key.len()].copy_from_slice(key);
    }
    let mut ipad = Zeroizing::new([0x36u8; BLOCK]);
    let mut opad = Zeroizing::new([0x5cu8; BLOCK]);
    for i in 0..BLOCK {
        ipad[i] ^= block_key[i];
        opad[i] ^= block_key[i];
    }
    let inner = sha2::Sha224::new()
        .chain_update(ipad.as_slice())
        .chain_update(data)
        .finalize();
    let outer = sha2::Sha224::new()
        .chain_update(opad.as_slice())
        .chain_update(inner)
        .finalize();
    let mut out = [0u8; 28];
    out.copy_from_slice(&outer);
    out
}

/// Which AEAD a symmetric key drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AeadKind {
    /// AES-128-GCM, 16-byte keys.
    Aes128Gcm,
    /// AES-256-GCM, 32-byte keys.
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 8439), 32-byte keys.
    ChaCha20Poly1305,
}

impl AeadKind {
    /// Key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            AeadKind::Aes128Gcm => 16,
            AeadKind::Aes256Gcm | AeadKind::ChaCha20Poly1305 => 32,
        }
    }

    /// The message Go's AEAD returns when a tag does not verify (Vault passes it on).
    fn open_error(self) -> &'static str {
        match self {
            AeadKind::Aes128Gcm | AeadKind::Aes256Gcm => "cipher: message authentication failed",
            AeadKind::ChaCha20Poly1305 => "chacha20poly1305: message authentication failed",
        }
    }
}

/// A keyed AEAD, ready to seal and open.
pub enum AeadKey {
    /// AES-128-GCM (key schedule zeroized on drop by `aes-gcm`).
    Aes128(Box<Aes128Gcm>),
    /// AES-256-GCM (key schedule zeroized on drop by `aes-gcm`).
    Aes256(Box<Aes256Gcm>),
    /// ChaCha20-Poly1305: the key is kept wiped-on-drop and a `ring` key is built per
    /// call (its set-up is a copy, and `ring` does not zeroize its own copy).
    ChaCha(SecretBytes),
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey([redacted])")
    }
}

impl AeadKey {
    /// Key `kind` with `key` (whose length must be `kind.key_len()`).
    pub fn new(kind: AeadKind, key: &[u8]) -> Result<AeadKey, SdkError> {
        let bad_len = || SdkError::Internal("encryption key has the wrong length".into());
        if key.len() != kind.key_len() {
            return Err(bad_len());
        }
        Ok(match kind {
            AeadKind::Aes128Gcm => AeadKey::Aes128(Box::new(
                Aes128Gcm::new_from_slice(key).map_err(|_| bad_len())?,
            )),
            AeadKind::Aes256Gcm => AeadKey::Aes256(Box::new(
                Aes256Gcm::new_from_slice(key).map_err(|_| bad_len())?,
            )),
            AeadKind::ChaCha20Poly1305 => AeadKey::ChaCha(SecretBytes::copy_from(key)),
        })
    }

    fn kind(&self) -> AeadKind {
        match self {
            AeadKey::Aes128(_) => AeadKind::Aes128Gcm,
            AeadKey::Aes256(_) => AeadKind::Aes256Gcm,
            AeadKey::ChaCha(_) => AeadKind::ChaCha20Poly1305,
        }
    }

    /// Encrypt `plaintext` under `nonce`, appending `ciphertext || tag` to `out`.
    pub fn seal_append(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SdkError> {
        let failed = || SdkError::Internal("encryption failed".into());
        let start = out.len();
        out.extend_from_slice(plaintext);
        let buf = &mut out[start..];
        let tag: Vec<u8> = match self {
            AeadKey::Aes128(cipher) => {
                let nonce = Nonce::<Aes128Gcm>::try_from(&nonce[..]).map_err(|_| failed())?;
                cipher
                    .encrypt_inout_detached(&nonce, aad, InOutBuf::from(buf))
                    .map_err(|_| failed())?
                    .to_vec()
            }
            AeadKey::Aes256(cipher) => {
                let nonce = Nonce::<Aes256Gcm>::try_from(&nonce[..]).map_err(|_| failed())?;
                cipher
                    .encrypt_inout_detached(&nonce, aad, InOutBuf::from(buf))
                    .map_err(|_| failed())?
                    .to_vec()
            }
            AeadKey::ChaCha(key) => {
                let key = chacha_key(key)?;
                key.seal_in_place_separate_tag(
                    ring::aead::Nonce::assume_unique_for_key(*nonce),
                    ring::aead::Aad::from(aad),
                    buf,
                )
                .map_err(|_| failed())?
                .as_ref()
                .to_vec()
            }
        };
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Decrypt `ciphertext || tag` under `nonce`. The error is the user-facing message.
    pub fn open(
        &self,
        nonce: &[u8],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, String> {
        let auth_failed = || self.kind().open_error().to_string();
        if sealed.len() < TAG_LEN || nonce.len() != NONCE_LEN {
            return Err(auth_failed());
        }
        let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        let mut buf = Zeroizing::new(body.to_vec());
        match self {
            AeadKey::Aes128(cipher) => {
                let nonce = Nonce::<Aes128Gcm>::try_from(nonce).map_err(|_| auth_failed())?;
                let tag = Tag::<Aes128Gcm>::try_from(tag).map_err(|_| auth_failed())?;
                cipher
                    .decrypt_inout_detached(&nonce, aad, InOutBuf::from(buf.as_mut_slice()), &tag)
                    .map_err(|_| auth_failed())?;
            }
            AeadKey::Aes256(cipher) => {
                let nonce = Nonce::<Aes256Gcm>::try_from(nonce).map_err(|_| auth_failed())?;
                let tag = Tag::<Aes256Gcm>::try_from(tag).map_err(|_| auth_failed())?;
                cipher
                    .decrypt_inout_detached(&nonce, aad, InOutBuf::from(buf.as_mut_slice()), &tag)
                    .map_err(|_| auth_failed())?;
            }
            AeadKey::ChaCha(key) => {
                let key = chacha_key(key).map_err(|_| auth_failed())?;
                let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce)
                    .map_err(|_| auth_failed())?;
                buf.extend_from_slice(tag);
                let len = key
                    .open_in_place(nonce, ring::aead::Aad::from(aad), buf.as_mut_slice())
                    .map_err(|_| auth_failed())?
                    .len();
                buf.truncate(len);
            }
        }
        Ok(buf)
    }
}

fn chacha_key(key: &SecretBytes) -> Result<ring::aead::LessSafeKey, SdkError> {
    ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, key.expose())
        .map(ring::aead::LessSafeKey::new)
        .map_err(|_| SdkError::Internal("encryption key has the wrong length".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn nonces_never_repeat_across_pool_refills() {
        let mut seen = std::collections::HashSet::new();
        // 1000 nonces of 12 bytes span three 4 KiB blocks.
        for _ in 0..1000 {
            let mut nonce = [0u8; NONCE_LEN];
            fill_nonce(&mut nonce).unwrap();
            assert!(seen.insert(nonce), "repeated nonce");
        }
    }

    #[test]
    fn hmac_sha224_rfc4231() {
        // RFC 4231 test case 2.
        let mac = HashAlg::Sha224.hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44"
        );
        // Test case 6: a key longer than the block.
        let key = [0xaau8; 131];
        let mac = HashAlg::Sha224.hmac(
            &key,
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex(&mac),
            "95e9a0db962095adaebe9b2d6f0dbce2d499f112f2d2b7273fa6870e"
        );
        let mac256 = HashAlg::Sha256.hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac256),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn digests() {
        assert_eq!(
            hex(&HashAlg::Sha224.digest(b"abc")),
            "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"
        );
        assert_eq!(HashAlg::Sha384.digest(b"").len(), 48);
        assert_eq!(HashAlg::parse("sha3-256"), None);
    }

    #[test]
    fn hkdf_rfc5869_case3() {
        // RFC 5869 test case 3: SHA-256, empty salt and info.
        let ikm = [0x0bu8; 22];
        let okm = hkdf_sha256(&ikm, b"", 42).unwrap();
        assert_eq!(
            hex(okm.expose()),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
    }

    #[test]
    fn aead_round_trips_and_rejects_tampering() {
        for kind in [
            AeadKind::Aes128Gcm,
            AeadKind::Aes256Gcm,
            AeadKind::ChaCha20Poly1305,
        ] {
            let key = AeadKey::new(kind, &vec![7u8; kind.key_len()]).unwrap();
            let nonce = [1u8; NONCE_LEN];
            let mut out = Vec::new();
            key.seal_append(&nonce, b"aad", b"hello", &mut out).unwrap();
            assert_eq!(out.len(), 5 + TAG_LEN);
            assert_eq!(key.open(&nonce, b"aad", &out).unwrap().as_slice(), b"hello");
            assert!(key.open(&nonce, b"other", &out).is_err());
            out[0] ^= 1;
            assert!(key.open(&nonce, b"aad", &out).is_err());
            assert!(key.open(&nonce, b"aad", &out[..3]).is_err());
            assert!(AeadKey::new(kind, &[0u8; 5]).is_err());
        }
    }
}

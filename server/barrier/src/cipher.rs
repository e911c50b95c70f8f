//! The barrier ciphertext format (Vault's `AESGCMBarrier` layout).
//!
//! ```text
//! term (u32 big-endian) | version (1 byte) | nonce (12 random bytes) | AES-256-GCM ciphertext | tag (16 bytes)
//! ```
//!
//! - Version 2 ([`VERSION_PATH_AAD`]) authenticates the storage path as associated data,
//!   so a value copied to another path does not decrypt. [`encrypt`] always writes it.
//! - Version 1 ([`VERSION_NO_AAD`]) has no associated data; [`decrypt`] accepts it.
//!
//! [`encrypt`] and [`decrypt`] take a raw key; [`encrypt_with`] and [`decrypt_with`] take
//! an AES-256-GCM instance built from it once (its key schedule, zeroized on drop), which
//! the keyring keeps per term so a request does not expand the key again.
//!
//! Nonces come from pooled system-RNG output (`coffer_random::fill_public`): random,
//! never handed out twice, without a `getrandom` call per encryption.
//!
//! The term only selects the key (see the keyring); it is not authenticated here: a blob
//! whose term was altered decrypts with the key the caller chose, or, through the
//! keyring, selects another key and fails authentication. Errors never contain key,
//! plaintext or ciphertext bytes.

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use thiserror::Error;
use zeroize::Zeroize;

/// Length of an AES-256 key.
pub const KEY_LEN: usize = 32;
/// Length of the term prefix.
pub const TERM_LEN: usize = 4;
/// Length of the random GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the GCM tag.
pub const TAG_LEN: usize = 16;
/// Length of the header: term, version byte, nonce.
pub const HEADER_LEN: usize = TERM_LEN + 1 + NONCE_LEN;
/// The shortest valid ciphertext (empty plaintext).
pub const MIN_LEN: usize = HEADER_LEN + TAG_LEN;
/// Version byte of blobs without associated data.
pub const VERSION_NO_AAD: u8 = 1;
/// Version byte of blobs that bind the storage path as associated data.
pub const VERSION_PATH_AAD: u8 = 2;

/// Errors of the barrier cipher. They carry no secret material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CipherError {
    /// The input is shorter than a header plus a tag.
    #[error("ciphertext too short: {len} bytes, at least {MIN_LEN} required")]
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// The version byte is neither 1 nor 2.
    #[error("unsupported ciphertext version {0}")]
    UnsupportedVersion(u8),
    /// Authentication failed: wrong key, wrong path, or tampered data.
    #[error("message authentication failed")]
    Authentication,
    /// The plaintext exceeds the AES-GCM limit.
    #[error("plaintext too long for AES-GCM")]
    TooLong,
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Random,
}

/// Encrypts `plaintext` for storage at `path` under `key`, tagged with `term`
/// (always version 2, path as associated data, fresh random nonce).
pub fn encrypt(
    key: &[u8; KEY_LEN],
    term: u32,
    path: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, CipherError> {
    encrypt_with(&new_cipher(key), term, path, plaintext)
}

/// The AES-256-GCM instance for `key` (for [`encrypt_with`] and [`decrypt_with`]).
pub fn new_cipher(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

/// [`encrypt`] with a cipher built by [`new_cipher`].
pub fn encrypt_with(
    cipher: &Aes256Gcm,
    term: u32,
    path: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, CipherError> {
    let mut nonce = [0u8; NONCE_LEN];
    coffer_random::fill_public(&mut nonce).map_err(|_| CipherError::Random)?;

    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&term.to_be_bytes());
    out.push(VERSION_PATH_AAD);
    out.extend_from_slice(&nonce);
    out.resize(HEADER_LEN + plaintext.len(), 0);

    let buffer = match InOutBuf::new(plaintext, &mut out[HEADER_LEN..]) {
        Ok(buffer) => buffer,
        Err(_) => return Err(CipherError::TooLong),
    };
    match cipher.encrypt_inout_detached((&nonce).into(), path.as_bytes(), buffer) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(out)
        }
        Err(_) => {
            out.zeroize();
            Err(CipherError::TooLong)
        }
    }
}

/// Checks the header and returns `(term, version)`.
fn parse_header(ciphertext: &[u8]) -> Result<(u32, u8), CipherError> {
    if ciphertext.len() < MIN_LEN {
        return Err(CipherError::TooShort {
            len: ciphertext.len(),
        });
    }
    let term = u32::from_be_bytes([ciphertext[0], ciphertext[1], ciphertext[2], ciphertext[3]]);
    let version = ciphertext[TERM_LEN];
    match version {
        VERSION_NO_AAD | VERSION_PATH_AAD => Ok((term, version)),
        other => Err(CipherError::UnsupportedVersion(other)),
    }
}

/// Returns the key term a ciphertext was written with, after checking its length and
/// version byte.
pub fn term_of(ciphertext: &[u8]) -> Result<u32, CipherError> {
    parse_header(ciphertext).map(|(term, _)| term)
}

/// Decrypts a blob written by [`encrypt`] (or a version-1 blob) stored at `path`.
///
/// The term in the header is not checked: the caller picked `key` for it.
pub fn decrypt(key: &[u8; KEY_LEN], path: &str, ciphertext: &[u8]) -> Result<Vec<u8>, CipherError> {
    decrypt_with(&new_cipher(key), path, ciphertext)
}

/// [`decrypt`] with a cipher built by [`new_cipher`].
pub fn decrypt_with(
    cipher: &Aes256Gcm,
    path: &str,
    ciphertext: &[u8],
) -> Result<Vec<u8>, CipherError> {
    let (_, version) = parse_header(ciphertext)?;
    let aad: &[u8] = if version == VERSION_PATH_AAD {
        path.as_bytes()
    } else {
        &[]
    };
    let nonce: &[u8; NONCE_LEN] =
        ciphertext[TERM_LEN + 1..HEADER_LEN]
            .try_into()
            .map_err(|_| CipherError::TooShort {
                len: ciphertext.len(),
            })?;
    let (body, tag) = ciphertext[HEADER_LEN..].split_at(ciphertext.len() - HEADER_LEN - TAG_LEN);
    let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| CipherError::TooShort {
        len: ciphertext.len(),
    })?;

    let mut out = vec![0u8; body.len()];
    let buffer = InOutBuf::new(body, &mut out).map_err(|_| CipherError::Authentication)?;
    match cipher.decrypt_inout_detached(nonce.into(), aad, buffer, tag.into()) {
        Ok(()) => Ok(out),
        Err(_) => {
            // aes-gcm checks the tag before decrypting, but do not rely on it.
            out.zeroize();
            Err(CipherError::Authentication)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::{Aead, Payload};
    use aes_gcm::Nonce;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [7u8; 32];

    #[test]
    fn round_trip() {
        for plaintext in [&b""[..], b"x", &[0xabu8; 1000][..]] {
            let ct = encrypt(&KEY, 9, "secret/foo", plaintext).unwrap();
            assert_eq!(ct.len(), MIN_LEN + plaintext.len());
            assert_eq!(term_of(&ct).unwrap(), 9);
            assert_eq!(ct[4], VERSION_PATH_AAD);
            assert_eq!(decrypt(&KEY, "secret/foo", &ct).unwrap(), plaintext);
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let a = encrypt(&KEY, 1, "p", b"same").unwrap();
        let b = encrypt(&KEY, 1, "p", b"same").unwrap();
        assert_ne!(a[5..17], b[5..17]);
        assert_ne!(a, b);
    }

    #[test]
    fn moved_value_fails() {
        let ct = encrypt(&KEY, 1, "secret/foo", b"value").unwrap();
        assert_eq!(
            decrypt(&KEY, "secret/bar", &ct),
            Err(CipherError::Authentication)
        );
        assert_eq!(decrypt(&KEY, "", &ct), Err(CipherError::Authentication));
    }

    #[test]
    fn wrong_key_fails() {
        let ct = encrypt(&KEY, 1, "p", b"value").unwrap();
        assert_eq!(
            decrypt(&[8u8; 32], "p", &ct),
            Err(CipherError::Authentication)
        );
    }

    #[test]
    fn tampering_fails() {
        let ct = encrypt(&KEY, 1, "secret/foo", b"some plaintext").unwrap();
        // Every byte after the term (which only selects the key) is authenticated.
        for i in TERM_LEN..ct.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = ct.clone();
                bad[i] ^= flip;
                assert!(
                    decrypt(&KEY, "secret/foo", &bad).is_err(),
                    "byte {i} flipped by {flip:#x} was accepted"
                );
            }
        }
        let mut longer = ct.clone();
        longer.push(0);
        assert!(decrypt(&KEY, "secret/foo", &longer).is_err());
    }

    #[test]
    fn truncated_input_fails() {
        let ct = encrypt(&KEY, 1, "p", b"value").unwrap();
        for len in 0..ct.len() {
            let err = decrypt(&KEY, "p", &ct[..len]).unwrap_err();
            if len < MIN_LEN {
                assert_eq!(err, CipherError::TooShort { len });
                assert_eq!(term_of(&ct[..len]), Err(CipherError::TooShort { len }));
            } else {
                assert_eq!(err, CipherError::Authentication);
            }
        }
    }

    #[test]
    fn unknown_version_fails() {
        let mut ct = encrypt(&KEY, 1, "p", b"value").unwrap();
        ct[4] = 3;
        assert_eq!(
            decrypt(&KEY, "p", &ct),
            Err(CipherError::UnsupportedVersion(3))
        );
        assert_eq!(term_of(&ct), Err(CipherError::UnsupportedVersion(3)));
    }

    #[test]
    fn errors_do_not_leak() {
        let ct = encrypt(&KEY, 1, "p", b"PLAINTEXT-MARKER").unwrap();
        let err = decrypt(&[1u8; 32], "p", &ct).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("PLAINTEXT"));
        assert!(!text.contains("7, 7"));
    }

    /// Our output decrypts with a plain aes-gcm call that follows the documented layout.
    #[test]
    fn layout_matches_plain_aes_gcm() {
        let ct = encrypt(&KEY, 0x0102_0304, "core/keyring", b"known answer").unwrap();
        assert_eq!(&ct[..5], &[1, 2, 3, 4, 2]);
        let cipher = Aes256Gcm::new_from_slice(&KEY).unwrap();
        let nonce = Nonce::try_from(&ct[5..17]).unwrap();
        let plain = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &ct[17..],
                    aad: b"core/keyring",
                },
            )
            .unwrap();
        assert_eq!(plain, b"known answer");
    }

    /// A blob built by ring with a fixed nonce, in the documented layout, decrypts.
    #[test]
    fn ring_built_blob_decrypts() {
        use ring::aead::{Aad, LessSafeKey, Nonce as RingNonce, UnboundKey, AES_256_GCM};
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).unwrap());
        let nonce = [0x11u8; 12];
        for (version, aad) in [
            (VERSION_PATH_AAD, &b"sys/x"[..]),
            (VERSION_NO_AAD, &b""[..]),
        ] {
            let mut body = b"from ring".to_vec();
            key.seal_in_place_append_tag(
                RingNonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .unwrap();
            let mut blob = 5u32.to_be_bytes().to_vec();
            blob.push(version);
            blob.extend_from_slice(&nonce);
            blob.extend_from_slice(&body);
            assert_eq!(term_of(&blob).unwrap(), 5);
            assert_eq!(decrypt(&KEY, "sys/x", &blob).unwrap(), b"from ring");
        }
    }

    /// Version 1 with the AES-256-GCM test case 15 of the GCM specification
    /// (McGrew & Viega), which has no associated data.
    #[test]
    fn version1_known_answer() {
        let key: [u8; 32] =
            hex::decode("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
                .unwrap()
                .try_into()
                .unwrap();
        let iv = hex::decode("cafebabefacedbaddecaf888").unwrap();
        let plaintext = hex::decode(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
             1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
        )
        .unwrap();
        let ciphertext = hex::decode(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
             8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
        )
        .unwrap();
        let tag = hex::decode("b094dac5d93471bdec1a502270e3cc6c").unwrap();
        let mut blob = vec![0, 0, 0, 1, VERSION_NO_AAD];
        blob.extend_from_slice(&iv);
        blob.extend_from_slice(&ciphertext);
        blob.extend_from_slice(&tag);
        // Version 1 ignores the path.
        assert_eq!(decrypt(&key, "any/path", &blob).unwrap(), plaintext);
        // The same bytes labelled version 2 bind the path and fail.
        blob[4] = VERSION_PATH_AAD;
        assert_eq!(
            decrypt(&key, "any/path", &blob),
            Err(CipherError::Authentication)
        );
    }

    proptest! {
        #[test]
        fn round_trip_any(term: u32, path in ".{0,40}", plaintext in proptest::collection::vec(any::<u8>(), 0..300)) {
            let ct = encrypt(&KEY, term, &path, &plaintext).unwrap();
            prop_assert_eq!(term_of(&ct).unwrap(), term);
            prop_assert_eq!(decrypt(&KEY, &path, &ct).unwrap(), plaintext);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = term_of(&data);
            prop_assert!(decrypt(&KEY, "p", &data).is_err());
        }
    }
}

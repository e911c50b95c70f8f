//! Vault's key hierarchy below the seal: the root key encrypts the keyring, and the
//! keyring's terms encrypt data.
//!
//! A [`Keyring`] holds the root key and one data key per term. New data is encrypted with
//! the active term (the newest after [`Keyring::rotate`]); older terms stay so that data
//! written before a rotation remains readable, the term being read from the ciphertext
//! header (see [`crate::cipher`]). Keyrings are immutable apart from the encryption
//! counter: rotation and root-key changes return a new keyring.
//!
//! Storing a keyring: [`Keyring::to_bytes`] gives JSON in the spirit of Vault's keyring
//! (`{"RootKey":"<base64>","ActiveTerm":2,"Encryptions":7,"Keys":[{"Term":1,"Value":
//! "<base64>","InstallTime":"<RFC 3339>"},...]}`), which the caller encrypts under the
//! root key with [`encrypt_with_key`]; [`Keyring::from_bytes`] reads it back. The root key
//! itself is encrypted under the unseal key the same way. Blobs encrypted directly under a
//! raw key carry the term [`RAW_KEY_TERM`] (0); keyring terms start at 1.
//!
//! Key bytes live only in [`Key`], a boxed array that is zeroized on drop and never moves
//! in memory; serialization buffers holding key material are zeroized too. No `Debug`
//! output or error message contains key bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::Aes256Gcm;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::cipher::{self, CipherError, KEY_LEN};

/// The term written into blobs encrypted directly under a raw key (root key, unseal key).
pub const RAW_KEY_TERM: u32 = 0;

/// Errors of the keyring. They carry no key or plaintext bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyringError {
    /// Encryption or decryption failed.
    #[error(transparent)]
    Cipher(#[from] CipherError),
    /// The ciphertext names a term this keyring does not hold.
    #[error("unknown key term {0}")]
    UnknownTerm(u32),
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Random,
    /// Rotation would overflow the u32 term counter.
    #[error("key terms exhausted")]
    TermsExhausted,
    /// Key material of the wrong length.
    #[error("invalid key length {0}, expected {KEY_LEN}")]
    InvalidKeyLength(usize),
    /// A stored keyring could not be decoded. The message is ours, never input bytes.
    #[error("malformed keyring: {0}")]
    Malformed(String),
}

/// A 256-bit key. The bytes sit in one heap allocation (moving a `Key` moves a pointer,
/// not the bytes) and are zeroized on drop. `Debug` is redacted.
pub struct Key(Box<[u8; KEY_LEN]>);

impl Key {
    /// Copies a key from a slice, which must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Key, KeyringError> {
        if bytes.len() != KEY_LEN {
            return Err(KeyringError::InvalidKeyLength(bytes.len()));
        }
        let mut key = Key(Box::new([0u8; KEY_LEN]));
        key.0.copy_from_slice(bytes);
        Ok(key)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Clone for Key {
    fn clone(&self) -> Self {
        let mut key = Key(Box::new([0u8; KEY_LEN]));
        key.0.copy_from_slice(&self.0[..]);
        key
    }
}

impl Zeroize for Key {
    fn zeroize(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Generates a fresh random key from the OS CSPRNG (`coffer_random::fill_secret`).
pub fn generate_key() -> Result<Key, KeyringError> {
    let mut key = Key(Box::new([0u8; KEY_LEN]));
    coffer_random::fill_secret(&mut key.0[..]).map_err(|_| KeyringError::Random)?;
    Ok(key)
}

/// Encrypts a blob directly under a raw key with term [`RAW_KEY_TERM`], e.g. the root
/// key under the unseal key at `core/root-key`, or the keyring under the root key.
pub fn encrypt_with_key(key: &Key, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyringError> {
    Ok(cipher::encrypt(
        key.as_bytes(),
        RAW_KEY_TERM,
        path,
        plaintext,
    )?)
}

/// Decrypts a blob written by [`encrypt_with_key`]; the plaintext is zeroized on drop.
pub fn decrypt_with_key(
    key: &Key,
    path: &str,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    Ok(Zeroizing::new(cipher::decrypt(
        key.as_bytes(),
        path,
        ciphertext,
    )?))
}

/// One term of a keyring: its data key and when it was installed.
pub struct TermInfo {
    key: Key,
    /// The AES-256-GCM instance of `key` (its expanded key schedule; zeroized on drop).
    cipher: Aes256Gcm,
    /// When this term was created (by [`Keyring::new`] or [`Keyring::rotate`]).
    pub install_time: DateTime<Utc>,
}

impl TermInfo {
    fn new(key: Key, install_time: DateTime<Utc>) -> TermInfo {
        TermInfo {
            cipher: cipher::new_cipher(key.as_bytes()),
            key,
            install_time,
        }
    }

    /// When this term was created (by [`Keyring::new`] or [`Keyring::rotate`]).
    pub fn install_time(&self) -> DateTime<Utc> {
        self.install_time
    }

    fn duplicate(&self) -> TermInfo {
        TermInfo::new(self.key.clone(), self.install_time)
    }
}

// The key material is the `Key` and the cipher's key schedule, which both zeroize
// themselves on drop (aes-gcm's `zeroize` feature).
impl ZeroizeOnDrop for TermInfo {}

impl fmt::Debug for TermInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TermInfo")
            .field("key", &self.key)
            .field("install_time", &self.install_time)
            .finish()
    }
}

/// The root key plus the data-encryption terms. See the module documentation.
pub struct Keyring {
    root_key: Key,
    terms: BTreeMap<u32, TermInfo>,
    active_term: u32,
    encryptions: AtomicU64,
}

// All key material is held in `Key`s (root key and the terms' keys), which zeroize
// themselves on drop.
impl ZeroizeOnDrop for Keyring {}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("root_key", &self.root_key)
            .field("active_term", &self.active_term)
            .field("terms", &self.terms.keys().collect::<Vec<_>>())
            .field("encryptions", &self.encryptions())
            .finish()
    }
}

impl Keyring {
    /// A keyring with `root_key` and a single term 1 holding a fresh random key.
    pub fn new(root_key: Key) -> Result<Keyring, KeyringError> {
        let mut terms = BTreeMap::new();
        terms.insert(1, TermInfo::new(generate_key()?, Utc::now()));
        Ok(Keyring {
            root_key,
            terms,
            active_term: 1,
            encryptions: AtomicU64::new(0),
        })
    }

    /// A new keyring whose active term is `max term + 1` with a fresh key; all older
    /// terms are kept so existing data stays readable. The encryption counter restarts.
    pub fn rotate(&self) -> Result<Keyring, KeyringError> {
        let newest = self.terms.keys().next_back().copied().unwrap_or(0);
        let term = newest
            .max(self.active_term)
            .checked_add(1)
            .ok_or(KeyringError::TermsExhausted)?;
        let mut terms = self.duplicate_terms();
        terms.insert(term, TermInfo::new(generate_key()?, Utc::now()));
        Ok(Keyring {
            root_key: self.root_key.clone(),
            terms,
            active_term: term,
            encryptions: AtomicU64::new(0),
        })
    }

    /// The same terms and counter under a different root key (`sys/rotate/root`).
    pub fn with_root_key(&self, new_root: Key) -> Keyring {
        Keyring {
            root_key: new_root,
            terms: self.duplicate_terms(),
            active_term: self.active_term,
            encryptions: AtomicU64::new(self.encryptions()),
        }
    }

    fn duplicate_terms(&self) -> BTreeMap<u32, TermInfo> {
        self.terms
            .iter()
            .map(|(&term, info)| (term, info.duplicate()))
            .collect()
    }

    /// The root key, which the seal encrypts and which encrypts the stored keyring.
    pub fn root_key(&self) -> &Key {
        &self.root_key
    }

    /// The term used for new encryptions.
    pub fn active_term(&self) -> u32 {
        self.active_term
    }

    /// The key and install time of `term`, if this keyring holds it.
    pub fn term_info(&self, term: u32) -> Option<&TermInfo> {
        self.terms.get(&term)
    }

    /// The install time of `term`, if this keyring holds it.
    pub fn install_time(&self, term: u32) -> Option<DateTime<Utc>> {
        self.terms.get(&term).map(TermInfo::install_time)
    }

    /// All terms held, ascending.
    pub fn terms(&self) -> impl Iterator<Item = u32> + '_ {
        self.terms.keys().copied()
    }

    /// Successful encryptions with the active term (`encryptions` of `sys/key-status`).
    pub fn encryptions(&self) -> u64 {
        self.encryptions.load(Ordering::Relaxed)
    }

    /// Encrypts `plaintext` for storage at `path` with the active term.
    pub fn encrypt(&self, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let info = self
            .terms
            .get(&self.active_term)
            .ok_or(KeyringError::UnknownTerm(self.active_term))?;
        let out = cipher::encrypt_with(&info.cipher, self.active_term, path, plaintext)?;
        self.encryptions.fetch_add(1, Ordering::Relaxed);
        Ok(out)
    }

    /// Decrypts a value stored at `path` with the term named in its header.
    pub fn decrypt(&self, path: &str, ciphertext: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let term = cipher::term_of(ciphertext)?;
        let info = self
            .terms
            .get(&term)
            .ok_or(KeyringError::UnknownTerm(term))?;
        Ok(cipher::decrypt_with(&info.cipher, path, ciphertext)?)
    }

    /// Serializes the keyring (keys included) as JSON. The caller encrypts the result
    /// under the root key before storing it. The buffer is allocated once at its final
    /// size and zeroized on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let encryptions = self.encryptions();
        let mut len = 0usize;
        self.write_json(encryptions, &mut |chunk| len += chunk.len());
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        self.write_json(encryptions, &mut |chunk| out.extend_from_slice(chunk));
        out
    }

    /// Writes the JSON form in pieces. Every string written is base64 or RFC 3339, so no
    /// escaping is needed.
    fn write_json(&self, encryptions: u64, sink: &mut dyn FnMut(&[u8])) {
        let root = Zeroizing::new(STANDARD.encode(self.root_key.as_bytes()));
        sink(b"{\"RootKey\":\"");
        sink(root.as_bytes());
        sink(b"\",\"ActiveTerm\":");
        sink(self.active_term.to_string().as_bytes());
        sink(b",\"Encryptions\":");
        sink(encryptions.to_string().as_bytes());
        sink(b",\"Keys\":[");
        for (i, (term, info)) in self.terms.iter().enumerate() {
            if i > 0 {
                sink(b",");
            }
            let value = Zeroizing::new(STANDARD.encode(info.key.as_bytes()));
            sink(b"{\"Term\":");
            sink(term.to_string().as_bytes());
            sink(b",\"Value\":\"");
            sink(value.as_bytes());
            sink(b"\",\"InstallTime\":\"");
            sink(
                info.install_time
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true)
                    .as_bytes(),
            );
            sink(b"\"}");
        }
        sink(b"]}");
    }

    /// Reads a keyring written by [`Keyring::to_bytes`]. Requires at least one term, no
    /// term 0, no duplicate terms, and the active term among the terms.
    pub fn from_bytes(bytes: &[u8]) -> Result<Keyring, KeyringError> {
        // Key strings are borrowed from `bytes`, so no unzeroized copies are made.
        // serde_json's messages may quote input, so only its category and position are kept.
        let encoded: EncodedKeyring<'_> = serde_json::from_slice(bytes).map_err(|e| {
            KeyringError::Malformed(format!(
                "{:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let root_key = decode_key(encoded.root_key, "root key")?;
        if encoded.keys.is_empty() {
            return Err(KeyringError::Malformed("no key terms".into()));
        }
        let mut terms = BTreeMap::new();
        for entry in &encoded.keys {
            if entry.term == RAW_KEY_TERM {
                return Err(KeyringError::Malformed("term 0 is reserved".into()));
            }
            let key = decode_key(entry.value, "term key")?;
            let info = TermInfo::new(key, entry.install_time);
            if terms.insert(entry.term, info).is_some() {
                return Err(KeyringError::Malformed(format!(
                    "duplicate term {}",
                    entry.term
                )));
            }
        }
        if !terms.contains_key(&encoded.active_term) {
            return Err(KeyringError::Malformed(format!(
                "active term {} is not in the keyring",
                encoded.active_term
            )));
        }
        Ok(Keyring {
            root_key,
            terms,
            active_term: encoded.active_term,
            encryptions: AtomicU64::new(encoded.encryptions),
        })
    }
}

#[derive(Deserialize)]
struct EncodedKeyring<'a> {
    #[serde(rename = "RootKey", borrow)]
    root_key: &'a str,
    #[serde(rename = "ActiveTerm")]
    active_term: u32,
    #[serde(rename = "Encryptions", default)]
    encryptions: u64,
    #[serde(rename = "Keys", borrow)]
    keys: Vec<EncodedTerm<'a>>,
}

#[derive(Deserialize)]
struct EncodedTerm<'a> {
    #[serde(rename = "Term")]
    term: u32,
    #[serde(rename = "Value", borrow)]
    value: &'a str,
    #[serde(rename = "InstallTime")]
    install_time: DateTime<Utc>,
}

/// Decodes a base64 key into a [`Key`] through a zeroized scratch buffer.
fn decode_key(encoded: &str, what: &str) -> Result<Key, KeyringError> {
    // 48 bytes covers the decoded-length estimate of a 44-character (32-byte) key; longer
    // input is rejected by decode_slice without writing past the buffer.
    let mut scratch = Zeroizing::new([0u8; 48]);
    let len = STANDARD
        .decode_slice(encoded.as_bytes(), &mut scratch[..])
        .map_err(|_| KeyringError::Malformed(format!("invalid base64 in {what}")))?;
    if len != KEY_LEN {
        return Err(KeyringError::Malformed(format!(
            "{what} is {len} bytes, expected {KEY_LEN}"
        )));
    }
    Key::from_slice(&scratch[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        Keyring::new(generate_key().unwrap()).unwrap()
    }

    #[test]
    fn new_keyring_has_term_one() {
        let kr = keyring();
        assert_eq!(kr.active_term(), 1);
        assert_eq!(kr.terms().collect::<Vec<_>>(), vec![1]);
        assert!(kr.install_time(1).unwrap() <= Utc::now());
        assert!(kr.term_info(2).is_none());
        assert_eq!(kr.encryptions(), 0);
    }

    #[test]
    fn generated_keys_differ() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), &[0u8; 32]);
    }

    #[test]
    fn encrypt_decrypt_counts() {
        let kr = keyring();
        let ct = kr.encrypt("secret/a", b"value").unwrap();
        assert_eq!(cipher::term_of(&ct).unwrap(), 1);
        assert_eq!(kr.decrypt("secret/a", &ct).unwrap(), b"value");
        kr.encrypt("secret/b", b"value").unwrap();
        assert_eq!(kr.encryptions(), 2);
        assert!(kr.decrypt("secret/b", &ct).is_err());
    }

    #[test]
    fn rotate_keeps_old_terms_readable() {
        let kr1 = keyring();
        let old = kr1.encrypt("p", b"old").unwrap();
        let kr2 = kr1.rotate().unwrap();
        let kr3 = kr2.rotate().unwrap();
        assert_eq!(kr3.active_term(), 3);
        assert_eq!(kr3.terms().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(kr3.encryptions(), 0);
        assert_eq!(kr3.root_key().as_bytes(), kr1.root_key().as_bytes());
        assert_eq!(kr3.install_time(1), kr1.install_time(1));
        let new = kr3.encrypt("p", b"new").unwrap();
        assert_eq!(cipher::term_of(&new).unwrap(), 3);
        assert_eq!(kr3.decrypt("p", &old).unwrap(), b"old");
        assert_eq!(kr3.decrypt("p", &new).unwrap(), b"new");
        // The old keyring does not know the new term.
        assert_eq!(kr1.decrypt("p", &new), Err(KeyringError::UnknownTerm(3)));
    }

    #[test]
    fn unknown_term_fails() {
        let kr = keyring();
        let mut ct = kr.encrypt("p", b"v").unwrap();
        ct[..4].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(kr.decrypt("p", &ct), Err(KeyringError::UnknownTerm(7)));
        ct[..4].copy_from_slice(&RAW_KEY_TERM.to_be_bytes());
        assert_eq!(kr.decrypt("p", &ct), Err(KeyringError::UnknownTerm(0)));
        assert_eq!(
            kr.decrypt("p", b"short"),
            Err(KeyringError::Cipher(CipherError::TooShort { len: 5 }))
        );
    }

    #[test]
    fn tampering_any_byte_fails() {
        let kr = keyring().rotate().unwrap();
        let ct = kr.encrypt("secret/x", b"payload").unwrap();
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x01;
            assert!(kr.decrypt("secret/x", &bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn with_root_key_keeps_terms() {
        let kr = keyring().rotate().unwrap();
        let ct = kr.encrypt("p", b"v").unwrap();
        let new_root = generate_key().unwrap();
        let new_root_bytes = *new_root.as_bytes();
        let kr2 = kr.with_root_key(new_root);
        assert_eq!(kr2.root_key().as_bytes(), &new_root_bytes);
        assert_eq!(kr2.active_term(), 2);
        assert_eq!(kr2.encryptions(), 1);
        assert_eq!(kr2.decrypt("p", &ct).unwrap(), b"v");
    }

    #[test]
    fn serialization_round_trip() {
        let kr = keyring().rotate().unwrap().rotate().unwrap();
        let ct1 = kr.encrypt("a", b"one").unwrap();
        kr.encrypt("b", b"two").unwrap();
        let bytes = kr.to_bytes();
        assert_eq!(bytes.len(), bytes.capacity());
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["ActiveTerm"], 3);
        assert_eq!(json["Keys"].as_array().unwrap().len(), 3);

        let back = Keyring::from_bytes(&bytes).unwrap();
        assert_eq!(back.active_term(), 3);
        assert_eq!(back.encryptions(), 2);
        assert_eq!(back.root_key().as_bytes(), kr.root_key().as_bytes());
        for term in kr.terms() {
            assert_eq!(back.install_time(term), kr.install_time(term));
            assert_eq!(
                back.term_info(term).unwrap().key.as_bytes(),
                kr.term_info(term).unwrap().key.as_bytes()
            );
        }
        assert_eq!(back.decrypt("a", &ct1).unwrap(), b"one");
        let ct2 = back.encrypt("c", b"three").unwrap();
        assert_eq!(kr.decrypt("c", &ct2).unwrap(), b"three");
        // Serialization is stable.
        assert_eq!(*Keyring::from_bytes(&bytes).unwrap().to_bytes(), *bytes);
    }

    #[test]
    fn stored_keyring_under_root_key() {
        let kr = keyring();
        let unseal = generate_key().unwrap();
        let sealed_root =
            encrypt_with_key(&unseal, "core/root-key", kr.root_key().as_bytes()).unwrap();
        assert_eq!(cipher::term_of(&sealed_root).unwrap(), RAW_KEY_TERM);
        let stored = encrypt_with_key(kr.root_key(), "core/keyring", &kr.to_bytes()).unwrap();

        let root =
            Key::from_slice(&decrypt_with_key(&unseal, "core/root-key", &sealed_root).unwrap())
                .unwrap();
        let plain = decrypt_with_key(&root, "core/keyring", &stored).unwrap();
        let back = Keyring::from_bytes(&plain).unwrap();
        assert_eq!(back.root_key().as_bytes(), kr.root_key().as_bytes());
        assert!(decrypt_with_key(&unseal, "core/keyring", &stored).is_err());
    }

    fn malformed(bytes: &[u8]) -> String {
        match Keyring::from_bytes(bytes) {
            Err(KeyringError::Malformed(msg)) => msg,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn from_bytes_rejects_bad_input() {
        let k = STANDARD.encode([9u8; 32]);
        let t = "2024-01-02T03:04:05Z";
        let ok = format!(
            r#"{{"RootKey":"{k}","ActiveTerm":1,"Keys":[{{"Term":1,"Value":"{k}","InstallTime":"{t}"}}]}}"#
        );
        let kr = Keyring::from_bytes(ok.as_bytes()).unwrap();
        assert_eq!(kr.encryptions(), 0);

        malformed(b"");
        malformed(b"not json");
        malformed(b"{}");
        malformed(ok.replace("\"Keys\"", "\"Nope\"").as_bytes());
        let no_keys = format!(r#"{{"RootKey":"{k}","ActiveTerm":1,"Keys":[]}}"#);
        assert!(malformed(no_keys.as_bytes()).contains("no key terms"));
        let short = STANDARD.encode([9u8; 31]);
        assert!(malformed(ok.replacen(&k, &short, 1).as_bytes()).contains("root key"));
        let long = STANDARD.encode([9u8; 40]);
        assert!(malformed(ok.replace(&k, &long).as_bytes()).contains("root key"));
        assert!(malformed(ok.replacen(&k, "!!!!", 1).as_bytes()).contains("base64"));
        let zero = ok.replace("\"Term\":1", "\"Term\":0");
        assert!(malformed(zero.as_bytes()).contains("reserved"));
        let active = ok.replace("\"ActiveTerm\":1", "\"ActiveTerm\":2");
        assert!(malformed(active.as_bytes()).contains("active term 2"));
        let dup = format!(
            r#"{{"RootKey":"{k}","ActiveTerm":1,"Keys":[{{"Term":1,"Value":"{k}","InstallTime":"{t}"}},{{"Term":1,"Value":"{k}","InstallTime":"{t}"}}]}}"#
        );
        assert!(malformed(dup.as_bytes()).contains("duplicate term 1"));
        malformed(ok.replace(t, "yesterday").as_bytes());
    }

    #[test]
    fn errors_and_debug_do_not_leak_keys() {
        let secret = [0x5au8; 32];
        let k = STANDARD.encode(secret);
        // A type error on a key string: serde_json's own message would quote it.
        let escaped = format!(
            r#"{{"RootKey":"\u0041{k}","ActiveTerm":1,"Keys":[{{"Term":1,"Value":"{k}","InstallTime":"x"}}]}}"#
        );
        let wrong_type = format!(r#"{{"RootKey":"{k}","ActiveTerm":"{k}","Keys":[]}}"#);
        for input in [escaped, wrong_type] {
            let err = Keyring::from_bytes(input.as_bytes()).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains(&k[..20]), "{text}");
        }

        let kr = Keyring::new(Key::from_slice(&secret).unwrap()).unwrap();
        let debug = format!("{kr:?} {:?} {:?}", kr.term_info(1).unwrap(), kr.root_key());
        assert!(debug.contains("redacted"));
        for key in [kr.root_key(), &kr.term_info(1).unwrap().key] {
            let bytes = key.as_bytes();
            assert!(!debug.contains(&STANDARD.encode(bytes)));
            assert!(!debug.contains(&hex::encode(bytes)));
            assert!(!debug.contains(&format!("{:?}", &bytes[..4])));
        }
    }

    #[test]
    fn key_handling() {
        assert_eq!(
            Key::from_slice(&[1u8; 31]).unwrap_err(),
            KeyringError::InvalidKeyLength(31)
        );
        let mut key = Key::from_slice(&[1u8; 32]).unwrap();
        let copy = key.clone();
        key.zeroize();
        assert_eq!(key.as_bytes(), &[0u8; 32]);
        assert_eq!(copy.as_bytes(), &[1u8; 32]);

        fn zeroize_on_drop<T: ZeroizeOnDrop>() {}
        zeroize_on_drop::<Key>();
        zeroize_on_drop::<TermInfo>();
        zeroize_on_drop::<Keyring>();
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Keyring>();
    }

    #[test]
    fn rotate_at_term_limit_fails() {
        let k = STANDARD.encode([3u8; 32]);
        let json = format!(
            r#"{{"RootKey":"{k}","ActiveTerm":4294967295,"Keys":[{{"Term":4294967295,"Value":"{k}","InstallTime":"2024-01-01T00:00:00Z"}}]}}"#
        );
        let kr = Keyring::from_bytes(json.as_bytes()).unwrap();
        assert_eq!(kr.rotate().unwrap_err(), KeyringError::TermsExhausted);
    }
}

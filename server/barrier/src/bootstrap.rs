//! The joining side of Vault's Raft bootstrap challenge.
//!
//! The active node encrypts a random challenge under its keyring and hands out, with it,
//! the stored (still encrypted) root key and keyring blobs. Only a node that holds the
//! unseal key (reconstructed from the operators' shares) can open the chain
//! `unseal key -> root key -> keyring -> challenge` and answer; the same keyring then
//! opens the cluster credentials the active node returns. Nothing here does I/O.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::barrier::{BarrierError, KEYRING_PATH, ROOT_KEY_PATH};
use crate::keyring::{decrypt_with_key, Key, Keyring};

/// Open the keyring from the stored blobs with the unseal key. A wrong unseal key is
/// [`BarrierError::WrongKey`].
pub fn open_keyring(
    unseal_key: &[u8],
    root_key_blob: &[u8],
    keyring_blob: &[u8],
) -> Result<Keyring, BarrierError> {
    let key = Key::from_slice(unseal_key)
        .map_err(|_| BarrierError::Invalid("unseal key has the wrong length".into()))?;
    let root = Zeroizing::new(
        decrypt_with_key(&key, ROOT_KEY_PATH, root_key_blob).map_err(|_| BarrierError::WrongKey)?,
    );
    let root = Key::from_slice(&root)
        .map_err(|_| BarrierError::Crypto("the root key has the wrong length".into()))?;
    let plain = Zeroizing::new(
        decrypt_with_key(&root, KEYRING_PATH, keyring_blob)
            .map_err(|_| BarrierError::Crypto("the keyring does not decrypt".into()))?,
    );
    Keyring::from_bytes(&plain).map_err(|e| BarrierError::Crypto(e.to_string()))
}

/// Constant-time equality of a challenge and its answer.
pub fn answers_match(expected: &[u8], given: &[u8]) -> bool {
    expected.len() == given.len() && bool::from(expected.ct_eq(given))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::{encrypt_with_key, generate_key};

    #[test]
    fn only_the_unseal_key_opens_the_chain() {
        let unseal = generate_key().expect("key");
        let root = generate_key().expect("key");
        let keyring = Keyring::new(root.clone()).expect("keyring");
        let root_blob = encrypt_with_key(&unseal, ROOT_KEY_PATH, root.as_bytes()).expect("seal");
        let ring_blob = encrypt_with_key(&root, KEYRING_PATH, &keyring.to_bytes()).expect("seal");
        let challenge = keyring
            .encrypt("core/raft/bootstrap-challenge", b"nonce")
            .expect("encrypt");

        let opened = open_keyring(unseal.as_bytes(), &root_blob, &ring_blob).expect("open");
        assert_eq!(
            opened
                .decrypt("core/raft/bootstrap-challenge", &challenge)
                .expect("decrypt"),
            b"nonce"
        );
        let other = generate_key().expect("key");
        assert!(matches!(
            open_keyring(other.as_bytes(), &root_blob, &ring_blob),
            Err(BarrierError::WrongKey)
        ));
        assert!(answers_match(b"abc", b"abc"));
        assert!(!answers_match(b"abc", b"abd"));
        assert!(!answers_match(b"abc", b"ab"));
    }
}

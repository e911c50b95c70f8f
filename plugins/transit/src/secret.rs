//! `SecretBytes`: key material that is wiped when dropped, stored as base64 in JSON,
//! and never shown by `Debug`.

use std::fmt;

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Bytes of key material (or another secret): zeroized on drop, redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Take ownership of `bytes` (the caller's buffer is moved, not copied).
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// Copy `bytes` into a new secret.
    pub fn copy_from(bytes: &[u8]) -> Self {
        SecretBytes::new(bytes.to_vec())
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Standard base64 (what Vault uses for key material in JSON), in a wiped buffer.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.expose()))
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.0.len())
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(SecretBytes::new)
            .map_err(|_| serde::de::Error::custom("key material is not valid base64"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_json_is_base64() {
        let secret = SecretBytes::copy_from(b"very secret");
        let shown = format!("{secret:?}");
        assert!(!shown.contains("very"), "{shown}");
        let json = serde_json::to_string(&secret).unwrap();
        assert_eq!(json, "\"dmVyeSBzZWNyZXQ=\"");
        let back: SecretBytes = serde_json::from_str(&json).unwrap();
        assert_eq!(back, secret);
        assert!(serde_json::from_str::<SecretBytes>("\"!!\"").is_err());
    }
}

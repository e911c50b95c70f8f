//! Asymmetric keys on `ring`: Ed25519 and ECDSA P-256/P-384 generation, signing and
//! verification, and the public-key formats Vault shows.
//!
//! Key material is held as Vault holds it: Ed25519 as the 64-byte `seed || public key`,
//! ECDSA as the private scalar plus the uncompressed public point. The parsed `ring`
//! key pairs are cached next to it (`ring` does not zeroize its internal copy on drop).

use coffer_sdk::SdkError;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::crypto::HashAlg;
use crate::der;
use crate::secret::SecretBytes;

/// The NIST curves transit supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// P-256 (secp256r1).
    P256,
    /// P-384 (secp384r1).
    P384,
}

impl Curve {
    /// Bytes in one coordinate or in the scalar.
    pub fn coord_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// Go's curve name, which Vault shows as the key's `name`.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    /// The DER-encoded named-curve OID.
    pub fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => der::OID_P256,
            Curve::P384 => der::OID_P384,
        }
    }

    /// The only hash `ring` signs with on this curve.
    pub fn signing_hash(self) -> HashAlg {
        match self {
            Curve::P256 => HashAlg::Sha256,
            Curve::P384 => HashAlg::Sha384,
        }
    }

    fn signing_alg(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        }
    }

    /// The `ring` verifier for this curve and hash, if `ring` has one.
    fn verify_alg(self, hash: HashAlg) -> Option<&'static signature::EcdsaVerificationAlgorithm> {
        match (self, hash) {
            (Curve::P256, HashAlg::Sha256) => Some(&signature::ECDSA_P256_SHA256_ASN1),
            (Curve::P256, HashAlg::Sha384) => Some(&signature::ECDSA_P256_SHA384_ASN1),
            (Curve::P384, HashAlg::Sha256) => Some(&signature::ECDSA_P384_SHA256_ASN1),
            (Curve::P384, HashAlg::Sha384) => Some(&signature::ECDSA_P384_SHA384_ASN1),
            _ => None,
        }
    }

    /// Whether verification with `hash` is available on this curve.
    pub fn can_verify(self, hash: HashAlg) -> bool {
        self.verify_alg(hash).is_some()
    }
}

/// An ECDSA private key.
pub struct EcdsaKey {
    curve: Curve,
    scalar: SecretBytes,
    point: Vec<u8>,
    pair: EcdsaKeyPair,
}

impl std::fmt::Debug for EcdsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcdsaKey({:?}, [redacted])", self.curve)
    }
}

impl EcdsaKey {
    /// A fresh key on `curve`.
    pub fn generate(curve: Curve) -> Result<EcdsaKey, SdkError> {
        let rng = SystemRandom::new();
        let failed = || SdkError::Internal("ECDSA key generation failed".into());
        let doc = EcdsaKeyPair::generate_pkcs8(curve.signing_alg(), &rng).map_err(|_| failed())?;
        let scalar = der::ec_scalar_from_pkcs8(doc.as_ref()).ok_or_else(failed)?;
        let pair = EcdsaKeyPair::from_pkcs8(curve.signing_alg(), doc.as_ref(), &rng)
            .map_err(|_| failed())?;
        let point = pair.public_key().as_ref().to_vec();
        Ok(EcdsaKey {
            curve,
            scalar: SecretBytes::copy_from(scalar),
            point,
            pair,
        })
    }

    /// A key from its scalar and uncompressed public point; `ring` checks they match.
    pub fn from_parts(
        curve: Curve,
        scalar: SecretBytes,
        point: Vec<u8>,
    ) -> Result<EcdsaKey, String> {
        if scalar.len() != curve.coord_len() || point.len() != 1 + 2 * curve.coord_len() {
            return Err(format!("malformed {} key", curve.name()));
        }
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            curve.signing_alg(),
            scalar.expose(),
            &point,
            &SystemRandom::new(),
        )
        .map_err(|_| format!("inconsistent {} key", curve.name()))?;
        Ok(EcdsaKey {
            curve,
            scalar,
            point,
            pair,
        })
    }

    /// The curve.
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The private scalar (big-endian, fixed length).
    pub fn scalar(&self) -> &SecretBytes {
        &self.scalar
    }

    /// The uncompressed public point `04 || X || Y`.
    pub fn point(&self) -> &[u8] {
        &self.point
    }

    /// Sign `message` (hashed with the curve's hash); fixed-size `r || s`.
    pub fn sign_fixed(&self, message: &[u8]) -> Result<Vec<u8>, SdkError> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .map(|sig| sig.as_ref().to_vec())
            .map_err(|_| SdkError::Internal("ECDSA signing failed".into()))
    }
}

/// Verify a DER ECDSA signature over `message` hashed with `hash`.
pub fn ecdsa_verify(
    curve: Curve,
    point: &[u8],
    hash: HashAlg,
    message: &[u8],
    der_sig: &[u8],
) -> bool {
    match curve.verify_alg(hash) {
        Some(alg) => UnparsedPublicKey::new(alg, point)
            .verify(message, der_sig)
            .is_ok(),
        None => false,
    }
}

/// The PEM SubjectPublicKeyInfo Vault shows for an ECDSA key (with trailing newline).
pub fn ecdsa_public_pem(curve: Curve, point: &[u8]) -> String {
    der::pem("PUBLIC KEY", &der::ec_spki(curve.oid(), point))
}

/// An Ed25519 private key, held as Go holds it: `seed || public key` (64 bytes).
pub struct Ed25519Key {
    private: SecretBytes,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed25519Key([redacted])")
    }
}

impl Ed25519Key {
    /// A fresh key.
    pub fn generate() -> Result<Ed25519Key, SdkError> {
        let seed = crate::crypto::random_secret(32)?;
        Ed25519Key::from_seed(seed.expose())
            .map_err(|_| SdkError::Internal("Ed25519 key generation failed".into()))
    }

    /// The key for a 32-byte seed (how derived Ed25519 keys are made).
    pub fn from_seed(seed: &[u8]) -> Result<Ed25519Key, String> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| "malformed ed25519 seed".to_string())?;
        let mut private = Vec::with_capacity(64);
        private.extend_from_slice(seed);
        private.extend_from_slice(pair.public_key().as_ref());
        Ok(Ed25519Key {
            private: SecretBytes::new(private),
            pair,
        })
    }

    /// The key from Go's 64-byte form; the public half must match the seed.
    pub fn from_private(private: &SecretBytes) -> Result<Ed25519Key, String> {
        if private.len() != 64 {
            return Err("malformed ed25519 key".into());
        }
        let (seed, public) = private.expose().split_at(32);
        let key = Ed25519Key::from_seed(seed)?;
        if key.public_key() != public {
            return Err("inconsistent ed25519 key".into());
        }
        Ok(key)
    }

    /// `seed || public key`.
    pub fn private(&self) -> &SecretBytes {
        &self.private
    }

    /// The 32-byte seed.
    pub fn seed(&self) -> &[u8] {
        &self.private.expose()[..32]
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// Sign `message` (PureEdDSA, no pre-hash).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// Verify an Ed25519 signature.
pub fn ed25519_verify(public_key: &[u8], message: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(message, sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_sign_verify_both_encodings() {
        for curve in [Curve::P256, Curve::P384] {
            let key = EcdsaKey::generate(curve).unwrap();
            let fixed = key.sign_fixed(b"msg").unwrap();
            assert_eq!(fixed.len(), 2 * curve.coord_len());
            let der_sig = der::ecdsa_fixed_to_der(&fixed);
            let hash = curve.signing_hash();
            assert!(ecdsa_verify(curve, key.point(), hash, b"msg", &der_sig));
            assert!(!ecdsa_verify(curve, key.point(), hash, b"other", &der_sig));
            let again =
                EcdsaKey::from_parts(curve, key.scalar().clone(), key.point().to_vec()).unwrap();
            assert_eq!(again.point(), key.point());
            let other = EcdsaKey::generate(curve).unwrap();
            assert!(
                EcdsaKey::from_parts(curve, key.scalar().clone(), other.point().to_vec()).is_err()
            );
        }
    }

    #[test]
    fn ed25519_forms() {
        let key = Ed25519Key::generate().unwrap();
        let sig = key.sign(b"m");
        assert!(ed25519_verify(key.public_key(), b"m", &sig));
        let again = Ed25519Key::from_private(key.private()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        let mut bad = key.private().expose().to_vec();
        bad[40] ^= 1;
        assert!(Ed25519Key::from_private(&SecretBytes::new(bad)).is_err());
        assert!(format!("{key:?}").contains("redacted"));
    }
}

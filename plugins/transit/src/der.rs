//! Just enough DER and PEM for transit's asymmetric keys: reading the private scalar
//! out of the PKCS#8 document `ring` generates, writing SubjectPublicKeyInfo, SEC1
//! `EC PRIVATE KEY` and PKCS#8 the way Go's `crypto/x509` does, and converting an
//! ECDSA signature from fixed `r || s` to ASN.1 DER.

use base64::Engine;

/// OID 1.2.840.10045.2.1 (id-ecPublicKey), DER-encoded with its tag.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// OID 1.2.840.10045.3.1.7 (prime256v1 / P-256).
pub const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// OID 1.3.132.0.34 (secp384r1 / P-384).
pub const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// OID 1.3.101.112 (Ed25519).
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const BIT_STRING: u8 = 0x03;

/// One TLV: `(tag, contents, rest)`. Definite lengths up to 4 bytes; `None` if malformed.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match read_tlv(input)? {
        (t, contents, rest) if t == tag => Some((contents, rest)),
        _ => None,
    }
}

/// The private scalar from a PKCS#8 v1 `PrivateKeyInfo` wrapping a SEC1 `ECPrivateKey`
/// (what `ring::signature::EcdsaKeyPair::generate_pkcs8` produces).
pub fn ec_scalar_from_pkcs8(pkcs8: &[u8]) -> Option<&[u8]> {
    let (info, _) = expect(pkcs8, SEQUENCE)?;
    let (_version, rest) = expect(info, INTEGER)?;
    let (_algorithm, rest) = expect(rest, SEQUENCE)?;
    let (private_key, _) = expect(rest, OCTET_STRING)?;
    let (ec_private_key, _) = expect(private_key, SEQUENCE)?;
    let (_ec_version, rest) = expect(ec_private_key, INTEGER)?;
    let (scalar, _) = expect(rest, OCTET_STRING)?;
    Some(scalar)
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// A TLV with `tag` around `contents`.
fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    push_len(&mut out, contents.len());
    out.extend_from_slice(contents);
    out
}

fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// A non-negative INTEGER from unsigned big-endian bytes (minimal, as `encoding/asn1`).
fn unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let trimmed = &bytes[skip..];
    let mut contents = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        contents.push(0);
    }
    contents.extend_from_slice(trimmed);
    tlv(INTEGER, &contents)
}

fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut contents = Vec::with_capacity(bytes.len() + 1);
    contents.push(0);
    contents.extend_from_slice(bytes);
    tlv(BIT_STRING, &contents)
}

/// ECDSA signature `r || s` (two equal halves) as DER `SEQUENCE { INTEGER r, INTEGER s }`.
pub fn ecdsa_fixed_to_der(fixed: &[u8]) -> Vec<u8> {
    let (r, s) = fixed.split_at(fixed.len() / 2);
    sequence(&[&unsigned_integer(r), &unsigned_integer(s)])
}

/// SubjectPublicKeyInfo of an EC point (uncompressed SEC1) on the curve `curve_oid`.
pub fn ec_spki(curve_oid: &[u8], point: &[u8]) -> Vec<u8> {
    sequence(&[
        &sequence(&[OID_EC_PUBLIC_KEY, curve_oid]),
        &bit_string(point),
    ])
}

/// SubjectPublicKeyInfo of an Ed25519 public key.
pub fn ed25519_spki(public_key: &[u8]) -> Vec<u8> {
    sequence(&[&sequence(&[OID_ED25519]), &bit_string(public_key)])
}

/// SEC1 `ECPrivateKey` with the curve parameters (Go's `x509.MarshalECPrivateKey`).
pub fn ec_sec1(curve_oid: &[u8], scalar: &[u8], point: &[u8]) -> Vec<u8> {
    sequence(&[
        &tlv(INTEGER, &[1]),
        &tlv(OCTET_STRING, scalar),
        &tlv(0xa0, curve_oid),
        &tlv(0xa1, &bit_string(point)),
    ])
}

/// PKCS#8 `PrivateKeyInfo` of an EC key (Go's `x509.MarshalPKCS8PrivateKey`).
pub fn ec_pkcs8(curve_oid: &[u8], scalar: &[u8], point: &[u8]) -> Vec<u8> {
    let inner = sequence(&[
        &tlv(INTEGER, &[1]),
        &tlv(OCTET_STRING, scalar),
        &tlv(0xa1, &bit_string(point)),
    ]);
    sequence(&[
        &tlv(INTEGER, &[0]),
        &sequence(&[OID_EC_PUBLIC_KEY, curve_oid]),
        &tlv(OCTET_STRING, &inner),
    ])
}

/// PKCS#8 `PrivateKeyInfo` of an Ed25519 seed (RFC 8410).
pub fn ed25519_pkcs8(seed: &[u8]) -> Vec<u8> {
    sequence(&[
        &tlv(INTEGER, &[0]),
        &sequence(&[OID_ED25519]),
        &tlv(OCTET_STRING, &tlv(OCTET_STRING, seed)),
    ])
}

/// PEM with 64-character lines and a trailing newline (Go's `pem.EncodeToMemory`).
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal() {
        assert_eq!(unsigned_integer(&[0, 0, 5]), vec![0x02, 0x01, 0x05]);
        assert_eq!(unsigned_integer(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(unsigned_integer(&[0, 0]), vec![0x02, 0x01, 0x00]);
    }

    #[test]
    fn long_lengths_round_trip() {
        let big = vec![7u8; 300];
        let encoded = tlv(OCTET_STRING, &big);
        assert_eq!(&encoded[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (tag, contents, rest) = read_tlv(&encoded).unwrap();
        assert_eq!((tag, contents.len(), rest.len()), (OCTET_STRING, 300, 0));
        assert!(read_tlv(&encoded[..100]).is_none());
        assert!(read_tlv(&[0x04, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(read_tlv(&[]).is_none());
    }

    #[test]
    fn reads_ring_pkcs8() {
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let scalar = ec_scalar_from_pkcs8(doc.as_ref()).unwrap();
        assert_eq!(scalar.len(), 32);
        assert!(ec_scalar_from_pkcs8(&doc.as_ref()[..20]).is_none());
    }

    #[test]
    fn pem_lines() {
        let text = pem("PUBLIC KEY", &[1u8; 100]);
        assert!(text.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(text.ends_with("-----END PUBLIC KEY-----\n"));
        assert!(text.lines().all(|l| l.len() <= 64));
    }
}

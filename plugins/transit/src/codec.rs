//! Encodings at the API edge: base64 the way Go's `encoding/base64` reads it, the
//! `vault:v<N>:` version prefix of ciphertexts, signatures and HMACs, and lenient
//! request-field access (body first, then query parameters) like Vault's `FieldData`.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::{DecodeError, Engine};
use coffer_sdk::{Request, SdkError};
use serde_json::Value;
use zeroize::Zeroizing;

/// The prefix every versioned value starts with (Vault's default version template).
pub const VERSION_PREFIX: &str = "vault:v";

/// Go's `base64.StdEncoding`: padding required, non-zero trailing bits tolerated.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Go's `base64.RawURLEncoding` (JWS signatures): URL alphabet, no padding.
const GO_RAW_URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// Standard base64 with padding.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Standard base64 into a buffer that is wiped on drop (plaintexts, data keys).
pub fn b64_secret(bytes: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(STANDARD.encode(bytes))
}

/// URL-safe base64 without padding (JWS).
pub fn b64_raw_url(bytes: &[u8]) -> String {
    GO_RAW_URL.encode(bytes)
}

/// Decode standard base64 as Go does (CR and LF are skipped). The error text is Go's,
/// which is what Vault puts in its error messages.
pub fn b64_decode(input: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let cleaned: Zeroizing<Vec<u8>> = Zeroizing::new(
        input
            .bytes()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect(),
    );
    GO_STD
        .decode(cleaned.as_slice())
        .map(Zeroizing::new)
        .map_err(|e| go_error(&e, cleaned.len()))
}

/// Decode URL-safe base64 without padding (JWS signatures).
pub fn b64_raw_url_decode(input: &str) -> Result<Vec<u8>, String> {
    GO_RAW_URL
        .decode(input.as_bytes())
        .map_err(|e| go_error(&e, input.len()))
}

fn go_error(err: &DecodeError, len: usize) -> String {
    let offset = match err {
        DecodeError::InvalidByte(offset, _) | DecodeError::InvalidLastSymbol(offset, _) => *offset,
        DecodeError::InvalidLength(_) | DecodeError::InvalidPadding => len,
    };
    format!("illegal base64 data at input byte {offset}")
}

/// What a versioned value is, for error messages ("ciphertext", "signature", "HMAC").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// `vault:vN:` + base64(nonce || ciphertext || tag).
    Ciphertext,
    /// `vault:vN:` + base64 signature.
    Signature,
    /// `vault:vN:` + base64 HMAC.
    Hmac,
}

impl ValueKind {
    fn noun(self) -> &'static str {
        match self {
            ValueKind::Ciphertext => "ciphertext",
            ValueKind::Signature => "signature",
            ValueKind::Hmac => "HMAC",
        }
    }
}

/// Split `vault:v<N>:<body>` into the version and the body, with Vault's messages.
pub fn split_versioned(value: &str, kind: ValueKind) -> Result<(i64, &str), String> {
    let noun = kind.noun();
    let Some(rest) = value.strip_prefix(VERSION_PREFIX) else {
        return Err(match kind {
            ValueKind::Hmac => "invalid HMAC to verify: no prefix".to_string(),
            _ => format!("invalid {noun}: no prefix"),
        });
    };
    let Some((version, body)) = rest.split_once(':') else {
        return Err(format!("invalid {noun}: wrong number of fields"));
    };
    let version: i64 = version
        .parse()
        .map_err(|_| format!("invalid {noun}: version number could not be decoded"))?;
    Ok((version, body))
}

/// `vault:v<N>:` + body.
pub fn versioned(version: u32, body: &str) -> String {
    format!("{VERSION_PREFIX}{version}:{body}")
}

/// Field access over a request: the body first, then query parameters (for reads).
pub struct Fields<'a> {
    req: &'a Request,
}

impl<'a> Fields<'a> {
    /// Fields of `req`.
    pub fn new(req: &'a Request) -> Self {
        Fields { req }
    }

    /// Whether the field was given at all (even as an empty string).
    pub fn has(&self, key: &str) -> bool {
        matches!(self.req.data.get(key), Some(v) if !v.is_null())
            || self.req.query.contains_key(key)
    }

    /// The raw JSON value of a body field.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.req.data.get(key).filter(|v| !v.is_null())
    }

    /// An optional string; numbers and booleans are taken as their text, as Vault's
    /// weak decoding does.
    pub fn string(&self, key: &str) -> Result<Option<String>, SdkError> {
        match self.raw(key) {
            Some(value) => value_as_string(value)
                .map(Some)
                .ok_or_else(|| SdkError::bad(format!("field {key:?} must be a string"))),
            None => Ok(self.req.query.get(key).cloned()),
        }
    }

    /// A string, or `""` when absent (Vault's default for string fields).
    pub fn string_or_empty(&self, key: &str) -> Result<String, SdkError> {
        Ok(self.string(key)?.unwrap_or_default())
    }

    /// An optional integer (a number or a numeric string).
    pub fn int(&self, key: &str) -> Result<Option<i64>, SdkError> {
        match self.raw(key) {
            Some(value) => coffer_sdk::fields::as_i64(value)
                .map(Some)
                .ok_or_else(|| SdkError::bad(format!("field {key:?} must be an integer"))),
            None => match self.req.query.get(key) {
                Some(text) => text
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| SdkError::bad(format!("field {key:?} must be an integer"))),
                None => Ok(None),
            },
        }
    }

    /// An optional boolean (also "true"/"false" strings).
    pub fn bool(&self, key: &str) -> Result<Option<bool>, SdkError> {
        let from_query = || self.req.query.get(key).map(|t| Value::String(t.clone()));
        match self.raw(key).cloned().or_else(from_query) {
            Some(value) => coffer_sdk::fields::as_bool(&value)
                .map(Some)
                .ok_or_else(|| SdkError::bad(format!("field {key:?} must be a boolean"))),
            None => Ok(None),
        }
    }

    /// An optional duration in whole seconds (an integer or a duration string).
    pub fn duration_secs(&self, key: &str) -> Result<Option<u64>, SdkError> {
        if let Some(value) = self.raw(key) {
            if matches!(value, Value::String(s) if s.is_empty()) {
                return Ok(None);
            }
            return coffer_sdk::duration::duration_from_json(value)
                .map(|d| Some(d.as_secs()))
                .map_err(|e| SdkError::bad(format!("field {key:?}: {e}")));
        }
        match self.req.query.get(key) {
            Some(text) if !text.is_empty() => coffer_sdk::duration::parse_duration(text)
                .map(|d| Some(d.as_secs()))
                .map_err(|e| SdkError::bad(format!("field {key:?}: {e}"))),
            _ => Ok(None),
        }
    }
}

/// A JSON scalar as text (strings as is, numbers and booleans printed).
pub fn value_as_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_like_go() {
        assert_eq!(b64_decode("aGVsbG8=").unwrap().as_slice(), b"hello");
        assert_eq!(b64_decode("aGVs\nbG8=").unwrap().as_slice(), b"hello");
        assert_eq!(b64_decode("").unwrap().len(), 0);
        assert_eq!(
            b64_decode("aGV$bG8=").unwrap_err(),
            "illegal base64 data at input byte 3"
        );
        assert!(
            b64_decode("aGVsbG8").is_err(),
            "Go's StdEncoding wants padding"
        );
        assert_eq!(
            b64_raw_url_decode(&b64_raw_url(b"\xff\xfe")).unwrap(),
            b"\xff\xfe"
        );
    }

    #[test]
    fn versioned_values() {
        assert_eq!(
            split_versioned("vault:v12:abc", ValueKind::Ciphertext),
            Ok((12, "abc"))
        );
        assert_eq!(
            split_versioned("vault:v1:a:b", ValueKind::Ciphertext),
            Ok((1, "a:b"))
        );
        assert_eq!(
            split_versioned("v1:abc", ValueKind::Ciphertext).unwrap_err(),
            "invalid ciphertext: no prefix"
        );
        assert_eq!(
            split_versioned("vault:v1", ValueKind::Signature).unwrap_err(),
            "invalid signature: wrong number of fields"
        );
        assert_eq!(
            split_versioned("vault:vx:abc", ValueKind::Hmac).unwrap_err(),
            "invalid HMAC: version number could not be decoded"
        );
        assert_eq!(versioned(3, "zz"), "vault:v3:zz");
    }
}

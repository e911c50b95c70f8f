//! Vault's plaintext key backup format, both ways: base64 of the JSON
//! `{"policy": <keysutil.Policy>, "archived_keys": {"keys": [<KeyEntry>...]}}`.
//!
//! A backup taken from Vault restores here, and one taken here restores in Vault, for
//! every key type Coffer supports. Go writes ECDSA coordinates as JSON integers of up
//! to 384 bits, which `serde_json` cannot hold as numbers, so the text is rewritten
//! (integers under `ec_x`/`ec_y`/`ec_d` become strings on the way in and back on the
//! way out) by a small tokenizer that knows where JSON strings are.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};

use crate::asym;
use crate::codec::{b64, b64_decode};
use crate::policy::{rfc3339, KeyPolicy, KeyType, KeyVersion, Stamp};
use crate::secret::SecretBytes;

const BIG_INT_KEYS: &[&str] = &["ec_x", "ec_y", "ec_d"];
/// Vault's default version template (`vault:v{{version}}:`).
const DEFAULT_TEMPLATE: &str = "vault:v{{version}}:";

/// Vault's `KeyType` integers.
fn vault_type_code(key_type: KeyType) -> i64 {
    match key_type {
        KeyType::Aes256Gcm96 => 0,
        KeyType::EcdsaP256 => 1,
        KeyType::Ed25519 => 2,
        KeyType::ChaCha20Poly1305 => 5,
        KeyType::EcdsaP384 => 6,
        KeyType::Aes128Gcm96 => 8,
        KeyType::Hmac => 11,
    }
}

fn key_type_from_code(code: i64) -> Result<KeyType, String> {
    Ok(match code {
        0 => KeyType::Aes256Gcm96,
        1 => KeyType::EcdsaP256,
        2 => KeyType::Ed25519,
        5 => KeyType::ChaCha20Poly1305,
        6 => KeyType::EcdsaP384,
        8 => KeyType::Aes128Gcm96,
        11 => KeyType::Hmac,
        3 | 4 | 9 => return Err("RSA keys are not supported by Coffer".into()),
        7 => return Err("ecdsa-p521 keys are not supported by Coffer".into()),
        10 => return Err("managed keys are not supported by Coffer".into()),
        other => return Err(format!("unknown key type {other}")),
    })
}

/// Rewrite the values of `ec_x`/`ec_y`/`ec_d`: integers to strings (`quote`) or
/// digit strings to integers (`!quote`). Everything else is copied as is.
fn rewrite_big_ints(text: &str, quote: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 64);
    let mut i = 0;
    let mut last_string: Option<(usize, usize)> = None;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' {
            let start = i;
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(bytes.len());
            let token = &text[start..i];
            let digits = token
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
            let after_big_key = matches!(last_string, Some((s, e)) if is_big_key(text, s, e));
            if let (false, true, Some(digits)) = (quote, after_big_key, digits) {
                out.push_str(digits);
                last_string = None;
            } else {
                out.push_str(token);
                last_string = Some((start, i));
            }
            continue;
        }
        if c == b':' {
            out.push(':');
            i += 1;
            if !quote {
                continue;
            }
            let key_is_big = matches!(last_string, Some((s, e)) if is_big_key(text, s, e));
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                out.push(char::from(bytes[i]));
                i += 1;
            }
            let digits_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if key_is_big && i > digits_start {
                out.push('"');
                out.push_str(&text[digits_start..i]);
                out.push('"');
            } else {
                out.push_str(&text[digits_start..i]);
            }
            last_string = None;
            continue;
        }
        if !c.is_ascii_whitespace() {
            last_string = None;
        }
        // Copy one whole UTF-8 character.
        let len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + len]);
        i += len;
    }
    out
}

/// Whether the string token `text[start..end]` (quotes included) names an EC integer.
fn is_big_key(text: &str, start: usize, end: usize) -> bool {
    text.get(start..end)
        .and_then(|t| t.strip_prefix('"'))
        .and_then(|t| t.strip_suffix('"'))
        .is_some_and(|name| BIG_INT_KEYS.contains(&name))
}

/// Big-endian unsigned bytes to decimal.
fn to_decimal(bytes: &[u8]) -> String {
    let mut number: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut digits = Vec::new();
    while !number.is_empty() {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 10) as u8;
            remainder = value % 10;
        }
        digits.push(b'0' + remainder as u8);
        let zeros = number.iter().take_while(|b| **b == 0).count();
        number.drain(..zeros);
    }
    if digits.is_empty() {
        return "0".into();
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// Decimal to big-endian bytes of exactly `len` bytes (`None` if it does not fit).
fn from_decimal(text: &str, len: usize) -> Option<Vec<u8>> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut number = vec![0u8; len];
    for digit in text.bytes() {
        let mut carry = u32::from(digit - b'0');
        for byte in number.iter_mut().rev() {
            let value = u32::from(*byte) * 10 + carry;
            *byte = (value & 0xff) as u8;
            carry = value >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(number)
}

fn go_time(time: &DateTime<Utc>) -> Value {
    json!(rfc3339(time))
}

fn entry_json(policy: &KeyPolicy, version: &KeyVersion) -> Value {
    let mut entry = Map::new();
    let (key, big) = match policy.key_type.curve() {
        Some(curve) => {
            let n = curve.coord_len();
            let point = &version.public_key;
            let (x, y) = point
                .get(1..)
                .unwrap_or_default()
                .split_at(n.min(point.len().saturating_sub(1)));
            (
                Value::Null,
                Some([
                    to_decimal(x),
                    to_decimal(y),
                    to_decimal(version.key.expose()),
                ]),
            )
        }
        None => (json!(version.key.to_base64().as_str()), None),
    };
    entry.insert("key".into(), key);
    entry.insert(
        "hmac_key".into(),
        json!(version.hmac_key.to_base64().as_str()),
    );
    entry.insert("time".into(), go_time(&version.creation_time));
    for (i, name) in BIG_INT_KEYS.iter().enumerate() {
        let value = big.as_ref().map_or(Value::Null, |b| json!(b[i]));
        entry.insert((*name).into(), value);
    }
    entry.insert("rsa_key".into(), Value::Null);
    entry.insert("rsa_public_key".into(), Value::Null);
    let public_key = match policy.key_type.curve() {
        Some(curve) => asym::ecdsa_public_pem(curve, &version.public_key),
        None if policy.key_type == KeyType::Ed25519 => b64(&version.public_key),
        None => String::new(),
    };
    entry.insert("public_key".into(), json!(public_key));
    entry.insert(
        "convergent_version".into(),
        json!(version.convergent_version),
    );
    entry.insert(
        "creation_time".into(),
        json!(version.creation_time.timestamp()),
    );
    Value::Object(entry)
}

fn empty_entry() -> Value {
    json!({
        "key": null, "hmac_key": null, "time": "0001-01-01T00:00:00Z",
        "ec_x": null, "ec_y": null, "ec_d": null, "rsa_key": null, "rsa_public_key": null,
        "public_key": "", "convergent_version": 0, "creation_time": 0
    })
}

fn stamp_json(stamp: &Option<Stamp>) -> Value {
    match stamp {
        Some(s) => json!({"time": rfc3339(&s.time), "version": s.version}),
        None => Value::Null,
    }
}

/// The base64 backup blob of `policy`, in Vault's format.
pub fn encode(policy: &KeyPolicy) -> String {
    let keys: Map<String, Value> = policy
        .versions
        .range(policy.min_decryption_version..)
        .map(|(n, v)| (n.to_string(), entry_json(policy, v)))
        .collect();
    let archive: Vec<Value> = (policy.min_available_version..=policy.latest_version)
        .map(|n| match policy.versions.get(&n) {
            Some(v) => entry_json(policy, v),
            None => empty_entry(),
        })
        .collect();
    let mut body = json!({
        "name": policy.name,
        "keys": keys,
        "derived": policy.derived,
        "kdf": 1,
        "convergent_encryption": policy.convergent,
        "exportable": policy.exportable,
        "min_decryption_version": policy.min_decryption_version,
        "min_encryption_version": policy.min_encryption_version,
        "latest_version": policy.latest_version,
        "archive_version": policy.latest_version,
        "archive_min_version": policy.min_available_version,
        "min_available_version": policy.min_available_version,
        "deletion_allowed": policy.deletion_allowed,
        "convergent_version": -1,
        "type": vault_type_code(policy.key_type),
        "backup_info": stamp_json(&policy.backup_info),
        "restore_info": stamp_json(&policy.restore_info),
        "allow_plaintext_backup": policy.allow_plaintext_backup,
        "version_template": "",
        "storage_prefix": "",
        "auto_rotate_period": policy.auto_rotate_period.saturating_mul(1_000_000_000),
        "Imported": false,
        "AllowImportedKeyRotation": false,
    });
    if policy.key_size != 0 {
        body["key_size"] = json!(policy.key_size);
    }
    let document = json!({"policy": body, "archived_keys": {"keys": archive}});
    let text = zeroize::Zeroizing::new(rewrite_big_ints(&document.to_string(), false));
    b64(text.as_bytes())
}

fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

fn int(object: &Map<String, Value>, key: &str) -> Result<i64, String> {
    match field(object, key) {
        None => Ok(0),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| format!("field {key} is not an integer")),
    }
}

fn version_number(object: &Map<String, Value>, key: &str) -> Result<u32, String> {
    u32::try_from(int(object, key)?).map_err(|_| format!("field {key} is out of range"))
}

fn flag(object: &Map<String, Value>, key: &str) -> bool {
    field(object, key).and_then(Value::as_bool).unwrap_or(false)
}

fn bytes(object: &Map<String, Value>, key: &str) -> Result<SecretBytes, String> {
    match field(object, key) {
        None => Ok(SecretBytes::default()),
        Some(Value::String(s)) => b64_decode(s)
            .map(|b| SecretBytes::copy_from(&b))
            .map_err(|_| format!("field {key} is not base64")),
        Some(_) => Err(format!("field {key} is not a string")),
    }
}

fn time(object: &Map<String, Value>) -> DateTime<Utc> {
    let parsed = field(object, "time")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| t.timestamp() > 0);
    parsed
        .or_else(|| {
            field(object, "creation_time")
                .and_then(Value::as_i64)
                .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
        })
        .unwrap_or_else(Utc::now)
}

fn stamp(object: &Map<String, Value>, key: &str) -> Option<Stamp> {
    let inner = field(object, key)?.as_object()?;
    let time = DateTime::parse_from_rfc3339(field(inner, "time")?.as_str()?).ok()?;
    Some(Stamp {
        time: time.with_timezone(&Utc),
        version: u32::try_from(int(inner, "version").ok()?).ok()?,
    })
}

/// Parse a backup blob (Vault's format) into a checked key ring.
pub fn decode(blob: &str) -> Result<KeyPolicy, String> {
    let raw = b64_decode(blob.trim()).map_err(|e| format!("invalid backup: {e}"))?;
    let text =
        std::str::from_utf8(&raw).map_err(|_| "invalid backup: not UTF-8 JSON".to_string())?;
    let rewritten = zeroize::Zeroizing::new(rewrite_big_ints(text, true));
    let document: Value =
        serde_json::from_str(&rewritten).map_err(|e| format!("invalid backup: {e}"))?;
    let parse = || -> Result<KeyPolicy, String> {
        let p = document
            .get("policy")
            .and_then(Value::as_object)
            .ok_or("missing policy")?;
        let key_type = key_type_from_code(int(p, "type")?)?;
        let derived = flag(p, "derived");
        if derived && int(p, "kdf")? != 1 {
            return Err("the legacy hmac-sha256-counter key derivation is not supported".into());
        }
        let template = field(p, "version_template")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !template.is_empty() && template != DEFAULT_TEMPLATE {
            return Err("custom version templates are not supported".into());
        }
        let mut policy = KeyPolicy {
            name: field(p, "name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            key_type,
            derived,
            convergent: flag(p, "convergent_encryption"),
            exportable: flag(p, "exportable"),
            allow_plaintext_backup: flag(p, "allow_plaintext_backup"),
            deletion_allowed: flag(p, "deletion_allowed"),
            min_decryption_version: version_number(p, "min_decryption_version")?.max(1),
            min_encryption_version: version_number(p, "min_encryption_version")?,
            min_available_version: version_number(p, "min_available_version")?,
            latest_version: version_number(p, "latest_version")?,
            auto_rotate_period: u64::try_from(int(p, "auto_rotate_period")?)
                .map_err(|_| "negative auto_rotate_period")?
                / 1_000_000_000,
            key_size: if key_type == KeyType::Hmac {
                version_number(p, "key_size")?
            } else {
                0
            },
            backup_info: stamp(p, "backup_info"),
            restore_info: stamp(p, "restore_info"),
            versions: BTreeMap::new(),
        };
        let policy_convergent = int(p, "convergent_version")?;
        let mut entries: BTreeMap<u32, &Map<String, Value>> = BTreeMap::new();
        let archived = document
            .get("archived_keys")
            .and_then(|a| a.get("keys"))
            .and_then(Value::as_array);
        for (index, entry) in archived.into_iter().flatten().enumerate() {
            let number = u32::try_from(index)
                .ok()
                .and_then(|i| i.checked_add(policy.min_available_version));
            if let (Some(number), Some(entry)) = (number, entry.as_object()) {
                let has_key = field(entry, "key").is_some() || field(entry, "ec_d").is_some();
                if number >= 1 && has_key {
                    entries.insert(number, entry);
                }
            }
        }
        if let Some(keys) = field(p, "keys").and_then(Value::as_object) {
            for (number, entry) in keys {
                let number: u32 = number.parse().map_err(|_| "bad key version number")?;
                entries.insert(number, entry.as_object().ok_or("bad key entry")?);
            }
        }
        let first = policy.min_available_version.max(1);
        if first > policy.latest_version {
            return Err("min_available_version is above latest_version".into());
        }
        for (number, entry) in entries.range(first..=policy.latest_version) {
            let version = parse_entry(&policy, entry, policy_convergent)
                .map_err(|e| format!("key version {number}: {e}"))?;
            policy.versions.insert(*number, Arc::new(version));
        }
        if policy.key_type == KeyType::Hmac && policy.key_size == 0 {
            // Older Vault policies did not record it: take the newest key's size.
            let size = policy
                .versions
                .values()
                .next_back()
                .map_or(0, |v| v.key.len());
            policy.key_size = u32::try_from(size).unwrap_or(0);
        }
        policy.check_consistency()?;
        Ok(policy)
    };
    parse().map_err(|e| format!("invalid backup: {e}"))
}

fn parse_entry(
    policy: &KeyPolicy,
    entry: &Map<String, Value>,
    policy_convergent: i64,
) -> Result<KeyVersion, String> {
    let (key, public_key) = match policy.key_type.curve() {
        Some(curve) => {
            let n = curve.coord_len();
            let big = |key: &str| -> Result<Vec<u8>, String> {
                let text = field(entry, key)
                    .and_then(Value::as_str)
                    .ok_or("missing EC key")?;
                from_decimal(text, n).ok_or_else(|| "malformed EC key".to_string())
            };
            let mut point = vec![4u8];
            point.extend_from_slice(&big("ec_x")?);
            point.extend_from_slice(&big("ec_y")?);
            (SecretBytes::new(big("ec_d")?), point)
        }
        None => (bytes(entry, "key")?, Vec::new()),
    };
    let hmac_key = bytes(entry, "hmac_key")?;
    let convergent_version = if policy.convergent {
        let own = int(entry, "convergent_version")?;
        let effective = if own != 0 {
            own
        } else if policy_convergent == 0 {
            1
        } else {
            policy_convergent
        };
        u32::try_from(effective).map_err(|_| "bad convergent version")?
    } else {
        0
    };
    KeyVersion::assemble(
        policy,
        key,
        hmac_key,
        public_key,
        time(entry),
        convergent_version,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_round_trip() {
        assert_eq!(to_decimal(&[]), "0");
        assert_eq!(to_decimal(&[0x01, 0x00]), "256");
        assert_eq!(from_decimal("256", 2), Some(vec![1, 0]));
        assert_eq!(from_decimal("65536", 2), None);
        assert_eq!(from_decimal("12a", 4), None);
        let bytes: Vec<u8> = (1..=48).collect();
        assert_eq!(from_decimal(&to_decimal(&bytes), 48), Some(bytes));
    }

    #[test]
    fn big_ints_are_rewritten_only_where_they_belong() {
        let text = r#"{"name":"ec_x","ec_x": 123456789012345678901234567890,"a":"\"ec_d\":5","ec_d":7,"n":42}"#;
        let quoted = rewrite_big_ints(text, true);
        assert_eq!(
            quoted,
            r#"{"name":"ec_x","ec_x": "123456789012345678901234567890","a":"\"ec_d\":5","ec_d":"7","n":42}"#
        );
        assert_eq!(rewrite_big_ints(&quoted, false), text);
        assert_eq!(rewrite_big_ints("{\"é\":\"ü\"}", true), "{\"é\":\"ü\"}");
        // Truncated input never panics.
        for cut in 0..text.len() {
            if text.is_char_boundary(cut) {
                let _ = rewrite_big_ints(&text[..cut], true);
                let _ = rewrite_big_ints(&text[..cut], false);
            }
        }
    }
}

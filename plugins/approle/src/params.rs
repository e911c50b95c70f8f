//! Request helpers shared by the handlers: Vault's name rule, the "unrecognized
//! parameters" warning, string fields, secret-id metadata and Go-style time output.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use coffer_sdk::{Request, SdkError};
use serde_json::Value;

/// Longest role name, role id or secret id accepted (Vault's HMAC input limit).
pub const MAX_INPUT_LEN: usize = 4096;

/// Vault's `GenericNameRegex`: word characters, `-` and `.`, starting and ending with a
/// word character (`\w(([\w-.]+)?\w)?`, ASCII). A path whose name breaks it is no route.
pub fn valid_name(name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return false;
    };
    word(first) && word(last) && name.chars().all(|c| word(c) || c == '-' || c == '.')
}

/// Vault's warning for body fields an endpoint does not know, if there are any.
pub fn ignored_fields_warning(req: &Request, known: &[&str]) -> Option<String> {
    let unknown: Vec<&str> = req
        .data
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if unknown.is_empty() {
        None
    } else {
        Some(format!(
            "Endpoint ignored these unrecognized parameters: [{}]",
            unknown.join(" ")
        ))
    }
}

/// An optional string field, trimmed; `None` when absent, null or blank; 400 when it is
/// not a string.
pub fn trimmed_str(req: &Request, key: &str) -> Result<Option<String>, SdkError> {
    match req.data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            Ok((!s.is_empty()).then(|| s.to_string()))
        }
        Some(_) => Err(SdkError::bad(format!("field {key:?} must be a string"))),
    }
}

fn metadata_error(detail: impl std::fmt::Display) -> SdkError {
    SdkError::bad(format!("failed to parse metadata: {detail}"))
}

/// `key=value,key2=value2` (Vault's `ParseKeyValues`).
fn key_values(input: &str) -> Result<BTreeMap<String, String>, SdkError> {
    let mut out = BTreeMap::new();
    for pair in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut shards = pair.split('=');
        let (Some(key), Some(value), None) = (shards.next(), shards.next(), shards.next()) else {
            return Err(metadata_error("invalid <key,value> format"));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() {
            return Err(metadata_error(format!(
                "invalid <key,value> pair: key: {key:?} value: {value:?}"
            )));
        }
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

/// The `metadata` of a secret id, as Vault's `ParseArbitraryKeyValues` reads it: a JSON
/// object of strings given as a string (optionally base64-encoded), or `k=v,k2=v2`. A
/// JSON object given directly is accepted too. Values must be non-empty strings.
pub fn metadata(req: &Request) -> Result<BTreeMap<String, String>, SdkError> {
    let map = match req.data.get("metadata") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(object)) => object
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(metadata_error(format!(
                    "value of key {k:?} is not a string"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::String(text)) => {
            let text = text.trim();
            let decoded = STANDARD
                .decode(text)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let as_json = |s: &str| serde_json::from_str::<BTreeMap<String, String>>(s).ok();
            match decoded
                .as_deref()
                .and_then(as_json)
                .or_else(|| as_json(text))
            {
                Some(map) => map,
                None if text.starts_with('{') => {
                    return Err(metadata_error("expected a JSON object of strings"))
                }
                None => key_values(text)?,
            }
        }
        Some(_) => return Err(SdkError::bad("field \"metadata\" must be a string")),
    };
    if let Some((key, _)) = map.iter().find(|(k, v)| !k.is_empty() && v.is_empty()) {
        return Err(metadata_error(format!("invalid value for key {key:?}")));
    }
    Ok(map)
}

/// A time as Go's `time.Time` marshals to JSON (RFC 3339, nanoseconds without trailing
/// zeros); `None` is Go's zero time.
pub fn go_time(time: Option<&DateTime<Utc>>) -> String {
    let Some(time) = time else {
        return "0001-01-01T00:00:00Z".to_string();
    };
    let text = time.to_rfc3339_opts(SecondsFormat::Nanos, true);
    match text.split_once('.') {
        Some((head, frac)) => {
            let digits = frac.trim_end_matches('Z').trim_end_matches('0');
            if digits.is_empty() {
                format!("{head}Z")
            } else {
                format!("{head}.{digits}Z")
            }
        }
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use coffer_sdk::testing::{request, MemStorage};
    use coffer_sdk::Operation;
    use serde_json::json;

    fn meta(value: Value) -> Result<BTreeMap<String, String>, SdkError> {
        metadata(&request(
            MemStorage::new(),
            Operation::Update,
            "x",
            json!({ "metadata": value }),
        ))
    }

    #[test]
    fn metadata_forms() {
        let want: BTreeMap<String, String> = [
            ("a".to_string(), "1".to_string()),
            ("b".into(), "x y".into()),
        ]
        .into();
        assert_eq!(
            meta(json!(r#"{"a":"1","b":"x y"}"#)).ok(),
            Some(want.clone())
        );
        assert_eq!(
            meta(json!(STANDARD.encode(r#"{"a":"1","b":"x y"}"#))).ok(),
            Some(want.clone())
        );
        assert_eq!(meta(json!("a=1, b = x y")).ok(), Some(want.clone()));
        assert_eq!(meta(json!({"a": "1", "b": "x y"})).ok(), Some(want));
        assert_eq!(meta(json!("")).ok(), Some(BTreeMap::new()));
        assert_eq!(meta(Value::Null).ok(), Some(BTreeMap::new()));
        for bad in [
            json!(r#"{"a": 1}"#),
            json!("a"),
            json!("a=b=c"),
            json!("=b"),
            json!({"a": 1}),
            json!(r#"{"a": ""}"#),
            json!(5),
            json!(["a=b"]),
        ] {
            assert_eq!(meta(bad.clone()).map_err(|e| e.status()), Err(400), "{bad}");
        }
    }

    #[test]
    fn go_times() {
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
        let t = Utc
            .with_ymd_and_hms(2024, 5, 6, 7, 8, 9)
            .single()
            .expect("time");
        assert_eq!(go_time(Some(&t)), "2024-05-06T07:08:09Z");
        let t = t + chrono::Duration::nanoseconds(120_000_000);
        assert_eq!(go_time(Some(&t)), "2024-05-06T07:08:09.12Z");
    }

    #[test]
    fn names() {
        assert!(valid_name("my-role.v2_x"));
        assert!(!valid_name("my role") && !valid_name("-x") && !valid_name(""));
    }
}

//! Parsing and validation of request fields, with Vault's lenient coercions (numbers as
//! strings, comma-separated lists) and its error messages. Every malformed field is a
//! 400 naming the field; nothing here panics on any input.

use std::collections::BTreeMap;

use coffer_sdk::{duration, fields, Request, SdkError};
use serde_json::{Map, Value};

/// Most keys `custom_metadata` may hold (Vault's limit).
pub const MAX_CUSTOM_METADATA_KEYS: usize = 64;
/// Longest `custom_metadata` key, in bytes (Vault's limit).
pub const MAX_CUSTOM_METADATA_KEY_LEN: usize = 128;
/// Longest `custom_metadata` value, in bytes (Vault's limit).
pub const MAX_CUSTOM_METADATA_VALUE_LEN: usize = 512;
const CUSTOM_METADATA_ERROR: &str = "custom_metadata validation failed";

/// A field from the body, else from the query string (reads carry `?version=` there).
fn param(req: &Request, key: &str) -> Option<Value> {
    match req.data.get(key) {
        None | Some(Value::Null) => req.query.get(key).map(|s| Value::String(s.clone())),
        Some(v) => Some(v.clone()),
    }
}

fn invalid_path(raw: &str) -> SdkError {
    SdkError::bad(format!("invalid path {raw:?}"))
}

/// Whether every segment of `path` is a usable name (no empty, `.` or `..` segment, no
/// NUL).
fn segments_ok(path: &str) -> bool {
    !path.contains('\0')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// A secret path: non-empty, no trailing `/`, no empty, `.` or `..` segment.
pub fn secret_path(raw: &str) -> Result<&str, SdkError> {
    if raw.is_empty() {
        return Err(SdkError::bad("missing path"));
    }
    if !segments_ok(raw) {
        return Err(invalid_path(raw));
    }
    Ok(raw)
}

/// A folder to list: `""` for the root, otherwise the path with exactly one trailing `/`.
pub fn folder_path(raw: &str) -> Result<String, SdkError> {
    let trimmed = raw.strip_suffix('/').unwrap_or(raw);
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if !segments_ok(trimmed) {
        return Err(invalid_path(raw));
    }
    Ok(format!("{trimmed}/"))
}

/// The `data` object of a v2 write or patch; 400 "no data provided" when missing or not
/// an object (as Vault).
pub fn data_object(req: &Request) -> Result<&Map<String, Value>, SdkError> {
    match req.data.get("data") {
        Some(Value::Object(map)) => Ok(map),
        _ => Err(SdkError::bad("no data provided")),
    }
}

/// `options.cas` of a v2 write or patch, if given.
pub fn cas(req: &Request) -> Result<Option<u64>, SdkError> {
    let options = match req.data.get("options") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(options)) => options,
        Some(_) => return Err(SdkError::bad("field \"options\" must be an object")),
    };
    match options.get("cas") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => fields::as_i64(v)
            .and_then(|n| u64::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| SdkError::bad("error parsing check-and-set parameter")),
    }
}

/// The `version` parameter of a read; 0 (also for absent or non-positive, as Vault)
/// means latest.
pub fn version_param(req: &Request) -> Result<u64, SdkError> {
    Ok(int_param(req, "version")?.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

/// The `depth` parameter of a subkeys read; 0 (or absent) means unlimited.
pub fn depth_param(req: &Request) -> Result<u64, SdkError> {
    match int_param(req, "depth")? {
        None => Ok(0),
        Some(n) => u64::try_from(n)
            .map_err(|_| SdkError::bad("field \"depth\" must be a non-negative integer")),
    }
}

/// An integer parameter from the body or query (numeric strings accepted); an empty
/// string counts as absent.
fn int_param(req: &Request, key: &str) -> Result<Option<i64>, SdkError> {
    match param(req, key) {
        None => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => fields::as_i64(&v)
            .map(Some)
            .ok_or_else(|| SdkError::bad(format!("field {key:?} must be an integer"))),
    }
}

/// The `versions` of delete/undelete/destroy: a JSON array of integers, a single
/// integer, or a comma-separated string (Vault's `TypeCommaIntSlice`). Missing or empty
/// is a 400.
pub fn versions(req: &Request) -> Result<Vec<u64>, SdkError> {
    let bad = || SdkError::bad("field \"versions\" must be a list of non-negative integers");
    let one = |v: &Value| {
        fields::as_i64(v)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(bad)
    };
    let list = match req.data.get("versions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(one).collect::<Result<_, _>>()?,
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<u64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?,
        Some(v @ Value::Number(_)) => vec![one(v)?],
        Some(_) => return Err(bad()),
    };
    if list.is_empty() {
        return Err(SdkError::bad("no version number provided"));
    }
    Ok(list)
}

/// An optional `u32` field (`max_versions`).
pub fn u32_field(req: &Request, key: &str) -> Result<Option<u32>, SdkError> {
    match req.data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => fields::as_i64(v)
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| SdkError::bad(format!("field {key:?} must be a non-negative integer"))),
    }
}

/// An optional duration field in whole seconds (seconds, or a duration string such as
/// `"3h25m19s"`; fractions are truncated like Vault's `TypeDurationSecond`). A leading
/// `-` is accepted only when `allow_negative` (the mount config's "disabled").
pub fn secs_field(req: &Request, key: &str, allow_negative: bool) -> Result<Option<i64>, SdkError> {
    let value = match req.data.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(v) => v,
    };
    let secs = signed_secs(value)
        .ok_or_else(|| SdkError::bad(format!("field {key:?} must be a duration")))?;
    if secs < 0 && !allow_negative {
        return Err(SdkError::bad(format!("field {key:?} must not be negative")));
    }
    Ok(Some(secs))
}

fn signed_secs(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < i64::MAX as f64)
                .map(|f| f.trunc() as i64)
        }),
        Value::String(s) => {
            let text = s.trim();
            let (negative, body) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            let secs = i64::try_from(duration::parse_duration(body).ok()?.as_secs()).ok()?;
            Some(if negative { -secs } else { secs })
        }
        _ => None,
    }
}

/// Parse `custom_metadata` (an object of strings; numbers and booleans are turned into
/// strings, as Vault's weak decoding does). With `allow_null` (PATCH), a `null` value is
/// kept as `None`, meaning "remove this key".
pub fn custom_metadata(
    value: &Value,
    allow_null: bool,
) -> Result<BTreeMap<String, Option<String>>, SdkError> {
    let Value::Object(map) = value else {
        return Err(SdkError::bad(format!(
            "{CUSTOM_METADATA_ERROR}: custom_metadata must be an object"
        )));
    };
    map.iter()
        .map(|(k, v)| {
            let parsed = match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                Value::Null if allow_null => None,
                _ => {
                    return Err(SdkError::bad(format!(
                        "{CUSTOM_METADATA_ERROR}: value for key {k:?} must be a string"
                    )))
                }
            };
            Ok((k.clone(), parsed))
        })
        .collect()
}

/// Vault's limits on `custom_metadata`: at most 64 keys; every key 1..=128 bytes, every
/// value 1..=512 bytes, neither with control characters. All violations are reported.
pub fn validate_custom_metadata(map: &BTreeMap<String, String>) -> Result<(), SdkError> {
    if map.len() > MAX_CUSTOM_METADATA_KEYS {
        return Err(SdkError::bad(format!(
            "{CUSTOM_METADATA_ERROR}: payload must contain at most \
             {MAX_CUSTOM_METADATA_KEYS} keys, provided {}",
            map.len()
        )));
    }
    let mut errors = Vec::new();
    for (key, value) in map {
        if key.is_empty() || key.len() > MAX_CUSTOM_METADATA_KEY_LEN {
            errors.push(format!(
                "length of key {key:?} is {} but must be 0 < len(key) <= \
                 {MAX_CUSTOM_METADATA_KEY_LEN}",
                key.len()
            ));
        }
        if value.is_empty() || value.len() > MAX_CUSTOM_METADATA_VALUE_LEN {
            errors.push(format!(
                "length of value for key {key:?} is {} but must be 0 < len(value) <= \
                 {MAX_CUSTOM_METADATA_VALUE_LEN}",
                value.len()
            ));
        }
        if key.chars().any(char::is_control) {
            errors.push(format!("key {key:?} contains unprintable characters"));
        }
        if value.chars().any(char::is_control) {
            errors.push(format!(
                "value for key {key:?} contains unprintable characters"
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SdkError::bad(format!(
            "{CUSTOM_METADATA_ERROR}: {}",
            errors.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_sdk::testing::{request, MemStorage};
    use coffer_sdk::Operation;
    use serde_json::json;

    fn req(body: Value) -> Request {
        request(MemStorage::new(), Operation::Update, "x", body)
    }

    #[test]
    fn paths() {
        for ok in ["a", "a/b", "a b/c-d_e"] {
            assert_eq!(secret_path(ok), Ok(ok));
        }
        for bad in ["", "a/", "/a", "a//b", "a/./b", "a/..", "a\0b"] {
            assert!(secret_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(folder_path("").as_deref(), Ok(""));
        assert_eq!(folder_path("/").as_deref(), Ok(""));
        assert_eq!(folder_path("a/b").as_deref(), Ok("a/b/"));
        assert_eq!(folder_path("a/b/").as_deref(), Ok("a/b/"));
        assert!(folder_path("a//").is_err());
    }

    #[test]
    fn versions_forms() {
        let cases: &[(Value, Option<&[u64]>)] = &[
            (json!({"versions": [1, 2]}), Some(&[1, 2])),
            (json!({"versions": ["3", 4]}), Some(&[3, 4])),
            (json!({"versions": "1, 5"}), Some(&[1, 5])),
            (json!({"versions": 7}), Some(&[7])),
            (json!({"versions": []}), None),
            (json!({}), None),
            (json!({"versions": "abc"}), None),
            (json!({"versions": [true]}), None),
            (json!({"versions": [-1]}), None),
            (json!({"versions": {"a": 1}}), None),
        ];
        for (body, want) in cases {
            let got = versions(&req(body.clone()));
            match want {
                Some(list) => assert_eq!(got.as_deref(), Ok(*list), "{body}"),
                None => assert_eq!(got.map_err(|e| e.status()), Err(400), "{body}"),
            }
        }
    }

    #[test]
    fn cas_forms() {
        assert_eq!(cas(&req(json!({}))), Ok(None));
        assert_eq!(cas(&req(json!({"options": {}}))), Ok(None));
        assert_eq!(cas(&req(json!({"options": {"cas": 2}}))), Ok(Some(2)));
        assert_eq!(cas(&req(json!({"options": {"cas": "0"}}))), Ok(Some(0)));
        for bad in [
            json!({"options": {"cas": "x"}}),
            json!({"options": {"cas": -1}}),
            json!({"options": {"cas": [1]}}),
            json!({"options": "cas=1"}),
        ] {
            assert_eq!(
                cas(&req(bad.clone())).map_err(|e| e.status()),
                Err(400),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations() {
        let get = |v: Value, neg| secs_field(&req(json!({ "d": v })), "d", neg);
        assert_eq!(get(json!("3h25m19s"), false), Ok(Some(12_319)));
        assert_eq!(get(json!(30), false), Ok(Some(30)));
        assert_eq!(get(json!("1.9s"), false), Ok(Some(1)));
        assert_eq!(get(json!(""), false), Ok(None));
        assert_eq!(get(json!("-1s"), true), Ok(Some(-1)));
        assert!(get(json!("-1s"), false).is_err());
        assert!(get(json!("soon"), true).is_err());
        assert!(get(json!(true), true).is_err());
    }

    #[test]
    fn custom_metadata_limits() {
        let ok: BTreeMap<String, String> = [("owner".to_string(), "ops".to_string())].into();
        assert!(validate_custom_metadata(&ok).is_ok());
        let too_many: BTreeMap<String, String> = (0..65)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let long_key: BTreeMap<String, String> = [("k".repeat(129), "v".to_string())].into();
        let long_value: BTreeMap<String, String> = [("k".to_string(), "v".repeat(513))].into();
        let empty_value: BTreeMap<String, String> = [("k".to_string(), String::new())].into();
        let control: BTreeMap<String, String> = [("k\n".to_string(), "v".to_string())].into();
        for bad in [too_many, long_key, long_value, empty_value, control] {
            assert_eq!(
                validate_custom_metadata(&bad).map_err(|e| e.status()),
                Err(400)
            );
        }
        let edge: BTreeMap<String, String> = [("k".repeat(128), "v".repeat(512))].into();
        assert!(validate_custom_metadata(&edge).is_ok());
    }
}

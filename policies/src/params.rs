//! Request-parameter values against `allowed_parameters` / `denied_parameters` value
//! lists, as Vault's `valueInAllowedParameterList` / `valueInDeniedParameterList` do.
//!
//! - An empty list matches every value.
//! - A string element is a glob: `*` at the start and/or end matches any suffix /
//!   prefix / substring (`strutil.GlobbedStringsMatch`); otherwise, and for a lone
//!   `*`, it must be equal.
//! - Other elements compare by value and type: numbers numerically (`1` = `1.0`),
//!   booleans, `null`, lists and objects element-wise. (Vault compares its decoded JSON
//!   with `reflect.DeepEqual`, where a request number never equals a policy number;
//!   comparing numbers by value is what a policy author means.)
//! - A list value is allowed when the whole list equals an element, or when EVERY
//!   element is allowed; it is denied when the whole list or ANY element is denied.
//! - A non-empty string is also read as a comma-separated list (Vault assumes it may
//!   be a `TypeCommaStringSlice` field such as `policies="a,b"`), with the same
//!   every/any rule on its trimmed pieces.
//!
//! Two deliberate departures from Vault, both stricter: a string with a comma is
//! matched whole only by an element equal to it, never by a glob (in Vault,
//! `policies = ["ci-*"]` lets `"ci-x,admin"` through because the whole string starts
//! with `ci-`); and the empty string is not relaxed into an empty list (which Vault
//! lets through any allow list).

use serde_json::Value;

/// True if `value` passes an `allowed_parameters` list.
pub(crate) fn allowed(value: &Value, list: &[Value]) -> bool {
    if list.is_empty() {
        return true;
    }
    match value {
        Value::String(s) if s.contains(',') => {
            list.iter()
                .any(|element| element.as_str() == Some(s.as_str()))
                || comma_pieces(s).all(|piece| in_list_str(piece, list))
        }
        Value::String(s) if !s.is_empty() => in_list_str(s, list) || in_list_str(s.trim(), list),
        Value::Array(items) => in_list(value, list) || items.iter().all(|item| in_list(item, list)),
        _ => in_list(value, list),
    }
}

/// True if `value` is caught by a `denied_parameters` list.
pub(crate) fn denied(value: &Value, list: &[Value]) -> bool {
    if list.is_empty() || in_list(value, list) {
        return true;
    }
    match value {
        Value::Array(items) => items.iter().any(|item| in_list(item, list)),
        Value::String(s) if !s.is_empty() => comma_pieces(s).any(|piece| in_list_str(piece, list)),
        _ => false,
    }
}

fn comma_pieces(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim)
}

/// Vault's `valueInParameterList`: does any element of `list` match `value`?
fn in_list(value: &Value, list: &[Value]) -> bool {
    match value {
        Value::String(s) => in_list_str(s, list),
        _ => list.iter().any(|element| equal(element, value)),
    }
}

fn in_list_str(value: &str, list: &[Value]) -> bool {
    list.iter()
        .any(|element| matches!(element, Value::String(pattern) if glob_match(pattern, value)))
}

/// Vault's `strutil.GlobbedStringsMatch`.
fn glob_match(pattern: &str, value: &str) -> bool {
    if pattern.len() < 2 {
        return pattern == value;
    }
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(_), Some(_)) => value.contains(&pattern[1..pattern.len() - 1]),
        (Some(suffix), None) => value.ends_with(suffix),
        (None, Some(prefix)) => value.starts_with(prefix),
        (None, None) => pattern == value,
    }
}

/// Typed equality, numbers by value.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                x.as_f64() == y.as_f64()
            } else {
                x.as_i64() == y.as_i64() && x.as_u64() == y.as_u64()
            }
        }
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| equal(x, y))
        }
        (Value::Object(xs), Value::Object(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .all(|(k, x)| ys.get(k).is_some_and(|y| equal(x, y)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(v: Value) -> Vec<Value> {
        match v {
            Value::Array(items) => items,
            other => panic!("not a list: {other}"),
        }
    }

    #[test]
    fn glob_forms() {
        let cases = [
            // A lone `*` is not a glob in Vault (shorter than two bytes): literal.
            ("*", "anything", false),
            ("*", "*", true),
            ("**", "anything", true),
            ("a", "a", true),
            ("a", "b", false),
            ("foo-*", "foo-bar", true),
            ("foo-*", "bar-foo", false),
            ("*-bar", "foo-bar", true),
            ("*-bar", "foo-baz", false),
            ("*mid*", "a-mid-b", true),
            ("*mid*", "a-mad-b", false),
            ("a*b", "a*b", true),
            ("a*b", "axb", false),
        ];
        for (pattern, value, expected) in cases {
            assert_eq!(glob_match(pattern, value), expected, "{pattern} vs {value}");
        }
    }

    #[test]
    fn allowed_values() {
        let cases = [
            (json!("x"), json!([]), true),
            (json!("x"), json!(["x", "y"]), true),
            (json!("z"), json!(["x", "y"]), false),
            (json!(5), json!([5]), true),
            (json!(5), json!([5.0]), true),
            (json!(5), json!(["5"]), false),
            (json!("5"), json!([5]), false),
            (json!(true), json!([true]), true),
            (json!(false), json!([true]), false),
            (json!(null), json!([null]), true),
            (json!(null), json!(["x"]), false),
            (json!(["x", "y"]), json!(["x", "y"]), true),
            (json!(["x", "z"]), json!(["x", "y"]), false),
            (json!(["x", "y"]), json!([["x", "y"]]), true),
            (json!([]), json!(["x"]), true),
            (json!("x,y"), json!(["x", "y"]), true),
            (json!("x, z"), json!(["x", "y"]), false),
            (json!(""), json!(["x"]), false),
            (json!({"a": 1}), json!([{"a": 1.0}]), true),
            (json!(["dev-1", "dev-2"]), json!(["dev-*"]), true),
            (json!(" x "), json!(["x"]), true),
            // A glob never matches across a comma (stricter than Vault).
            (json!("ci-build,admin"), json!(["ci-*"]), false),
            (json!("ci-build, ci-test"), json!(["ci-*"]), true),
            (json!("a,b"), json!(["a,b"]), true),
            (json!("a,b"), json!(["a,*"]), false),
        ];
        for (value, allowed_list, expected) in cases {
            assert_eq!(
                allowed(&value, &list(allowed_list.clone())),
                expected,
                "{value} in {allowed_list}"
            );
        }
    }

    #[test]
    fn denied_values() {
        let cases = [
            (json!("x"), json!([]), true),
            (json!("x"), json!(["x"]), true),
            (json!("y"), json!(["x"]), false),
            (json!(["y", "x"]), json!(["x"]), true),
            (json!(["y", "z"]), json!(["x"]), false),
            (json!("default,root"), json!(["root"]), true),
            (json!("default"), json!(["root"]), false),
            (json!(1), json!([2]), false),
        ];
        for (value, denied_list, expected) in cases {
            assert_eq!(
                denied(&value, &list(denied_list.clone())),
                expected,
                "{value} in {denied_list}"
            );
        }
    }
}

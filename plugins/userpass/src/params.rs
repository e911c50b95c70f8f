//! Request helpers shared by the handlers: Vault's name rule for path segments, the
//! "unrecognized parameters" warning, and typed access to the `password` field.

use coffer_sdk::{Request, SdkError};
use serde_json::Value;
use zeroize::Zeroizing;

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

/// The `password` field: `None` when absent; 400 "missing password" when empty (as
/// Vault), 400 when not a string. The copy is zeroized on drop.
pub fn password(req: &Request) -> Result<Option<Zeroizing<String>>, SdkError> {
    match req.data.get("password") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(SdkError::bad("missing password")),
        Some(Value::String(s)) => Ok(Some(Zeroizing::new(s.clone()))),
        Some(_) => Err(SdkError::bad("field \"password\" must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "alice", "a.b-c_d", "A1", "_x_"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", ".a", "a.", "a/b", "a b", "é", "a\0"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}

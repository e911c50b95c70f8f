//! Path-pattern routing helpers for backends.
//!
//! A pattern is literal segments plus captures: `{name}` matches exactly one non-empty
//! segment, `{name*}` matches the non-empty remainder (slashes included). Example:
//! `keys/{name}/rotate`, `data/{path*}`.

use std::collections::BTreeMap;

/// Captures from a matched pattern.
pub type Captures = BTreeMap<String, String>;

/// Match `path` against `pattern`; `Some(captures)` on a match.
pub fn match_path(pattern: &str, path: &str) -> Option<Captures> {
    let mut caps = Captures::new();
    let mut rest = path;
    let segments: Vec<&str> = pattern.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix("*}")) {
            if !last || rest.is_empty() {
                return None;
            }
            caps.insert(name.to_string(), rest.to_string());
            return Some(caps);
        }
        let (head, tail) = match rest.find('/') {
            Some(idx) => (&rest[..idx], Some(&rest[idx + 1..])),
            None => (rest, None),
        };
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if head.is_empty() {
                return None;
            }
            caps.insert(name.to_string(), head.to_string());
        } else if *seg != head {
            return None;
        }
        match (last, tail) {
            (true, None) => return Some(caps),
            (true, Some(_)) | (false, None) => return None,
            (false, Some(t)) => rest = t,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        type Case<'a> = (&'a str, &'a str, Option<&'a [(&'a str, &'a str)]>);
        let cases: &[Case] = &[
            ("config", "config", Some(&[])),
            ("config", "configx", None),
            ("keys/{name}", "keys/k1", Some(&[("name", "k1")])),
            ("keys/{name}", "keys/k1/rotate", None),
            ("keys/{name}", "keys/", None),
            (
                "keys/{name}/rotate",
                "keys/k1/rotate",
                Some(&[("name", "k1")]),
            ),
            ("data/{path*}", "data/a/b/c", Some(&[("path", "a/b/c")])),
            ("data/{path*}", "data/", None),
            ("data/{path*}", "data", None),
            (
                "hmac/{name}/{alg}",
                "hmac/k/sha2-512",
                Some(&[("name", "k"), ("alg", "sha2-512")]),
            ),
        ];
        for (pattern, path, expected) in cases {
            let got = match_path(pattern, path);
            let want = expected.map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Captures>()
            });
            assert_eq!(got, want, "{pattern} vs {path}");
        }
    }
}

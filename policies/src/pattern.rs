//! Path patterns: validation, classification (exact, prefix glob, segment wildcard)
//! and the priority order between glob rules.
//!
//! Classification follows Vault's `parsePaths`: a pattern has segment wildcards if it
//! is `+`, starts with `+/` or contains `/+`; otherwise a trailing `*` makes it a
//! prefix rule; otherwise it is exact. When matching, only a whole `+` segment is a
//! wildcard (a `+` inside a segment is a literal character, as in Vault).

use std::cmp::Ordering;

/// Why a pattern is not valid.
pub(crate) fn validate(pattern: &str) -> Result<(), &'static str> {
    if pattern.contains("+*") {
        return Err("'+*' is forbidden");
    }
    if let Some(pos) = pattern.find('*') {
        if pos != pattern.len() - 1 {
            return Err("'*' is only allowed as the last character");
        }
    }
    Ok(())
}

/// How a (valid) pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    /// Matches exactly this path.
    Exact(&'a str),
    /// Matches every path that starts with this prefix (the pattern minus its `*`).
    Prefix(&'a str),
    /// Has `+` segments (and possibly a trailing `*`): the whole pattern.
    Segment(&'a str),
}

pub(crate) fn classify(pattern: &str) -> Kind<'_> {
    let has_segment_wildcards =
        pattern == "+" || pattern.starts_with("+/") || pattern.contains("/+");
    if has_segment_wildcards {
        Kind::Segment(pattern)
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        Kind::Prefix(prefix)
    } else {
        Kind::Exact(pattern)
    }
}

/// The sort key Vault uses to pick one glob rule among several that match. A greater
/// `Priority` wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Priority {
    /// Byte offset of the first `+` (segment rules) or of the `*` (prefix rules).
    pub first_wildcard: usize,
    /// Ends in `*`.
    pub is_prefix: bool,
    /// Number of `+` segments.
    pub wildcards: usize,
    /// The pattern without its trailing `*`.
    pub text: String,
}

impl Priority {
    /// The priority of a prefix rule (`prefix` is the pattern without its `*`).
    pub(crate) fn of_prefix(prefix: &str) -> Priority {
        Priority {
            first_wildcard: prefix.len(),
            is_prefix: true,
            wildcards: 0,
            text: prefix.to_string(),
        }
    }

    /// The priority of a segment-wildcard rule (the whole pattern, `*` included).
    pub(crate) fn of_segment(pattern: &str) -> Priority {
        let (body, is_prefix) = match pattern.strip_suffix('*') {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        Priority {
            // Vault takes the first `+` character, even one inside a segment.
            first_wildcard: pattern.find('+').unwrap_or(pattern.len()),
            is_prefix,
            wildcards: body.split('/').filter(|part| *part == "+").count(),
            text: body.to_string(),
        }
    }
}

impl Ord for Priority {
    /// `a < b` means `a` has LOWER priority, checking in order: the first wildcard
    /// comes earlier; `a` ends in `*` and `b` does not; `a` has more `+` segments; `a`
    /// is shorter; `a` is lexicographically smaller.
    fn cmp(&self, other: &Priority) -> Ordering {
        self.first_wildcard
            .cmp(&other.first_wildcard)
            .then_with(|| other.is_prefix.cmp(&self.is_prefix))
            .then_with(|| other.wildcards.cmp(&self.wildcards))
            .then_with(|| self.text.len().cmp(&other.text.len()))
            .then_with(|| self.text.cmp(&other.text))
    }
}

impl PartialOrd for Priority {
    fn partial_cmp(&self, other: &Priority) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A glob rule found for a path: its index in the ACL's rules and its priority.
#[derive(Debug, Clone)]
pub(crate) struct Ranked {
    pub rule: usize,
    pub priority: Priority,
}

impl Ranked {
    /// The higher-priority of two optional candidates.
    pub(crate) fn best<'a>(a: Option<&'a Ranked>, b: Option<&'a Ranked>) -> Option<&'a Ranked> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.priority > a.priority { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify("secret/foo"), Kind::Exact("secret/foo"));
        assert_eq!(classify("secret/*"), Kind::Prefix("secret/"));
        assert_eq!(classify("*"), Kind::Prefix(""));
        assert_eq!(classify("secret/a+b"), Kind::Exact("secret/a+b"));
        assert_eq!(classify("+"), Kind::Segment("+"));
        assert_eq!(classify("+/x"), Kind::Segment("+/x"));
        assert_eq!(classify("a/+/b*"), Kind::Segment("a/+/b*"));
        // Vault's test: `/+` anywhere, even before other characters.
        assert_eq!(classify("a/+b"), Kind::Segment("a/+b"));
    }

    #[test]
    fn validation() {
        assert_eq!(validate("a/*"), Ok(()));
        assert_eq!(validate("a/+/b"), Ok(()));
        assert!(validate("a/*/b").is_err());
        assert!(validate("a/**").is_err());
        assert!(validate("a/+*").is_err());
    }

    #[test]
    fn priority_order() {
        let p = |pattern: &str| match classify(pattern) {
            Kind::Segment(pattern) => Priority::of_segment(pattern),
            Kind::Prefix(prefix) => Priority::of_prefix(prefix),
            Kind::Exact(_) => panic!("exact"),
        };
        // Each pair is (lower, higher).
        let pairs = [
            ("foo/+", "foo/a*"),
            ("foo/+/bar/baz", "foo/bar/+/baz"),
            ("foo/+/ba*", "foo/+/bar"),
            ("foo/*", "foo/+"),
            ("foo/+/+/baz", "foo/+/bar/baz"),
            ("foo/+/bar/b*", "foo/+/bar/ba*"),
            ("a/+/x", "a/+/y"),
        ];
        for (lower, higher) in pairs {
            assert!(p(lower) < p(higher), "{lower} should be below {higher}");
        }
    }
}

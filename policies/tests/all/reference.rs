//! Property test: the compiled `Acl` agrees with a naive reference evaluator on random
//! policies and paths.
//!
//! The reference shares no code with the crate: it merges rules per pattern in a
//! `BTreeMap`, matches a pattern by turning it into a character-level matcher (`+` =
//! any run of non-`/`, trailing `*` = anything), and picks among matching glob rules by
//! sorting them with the precedence written out as a tuple.

use coffer_policies::{parse, Acl, AclRequest, Capabilities, Operation, Policy};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Every capability, by name, for building policy text.
const CAPABILITIES: [(&str, Capabilities); 8] = [
    ("deny", Capabilities::DENY),
    ("create", Capabilities::CREATE),
    ("read", Capabilities::READ),
    ("update", Capabilities::UPDATE),
    ("delete", Capabilities::DELETE),
    ("list", Capabilities::LIST),
    ("sudo", Capabilities::SUDO),
    ("patch", Capabilities::PATCH),
];

fn pattern_strategy() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        3 => Just("a"),
        3 => Just("b"),
        2 => Just("ab"),
        3 => Just("+"),
    ];
    // Three one-character segments: equal lengths make the later tie-breaks (number
    // of `+`, length, lexicographic order) decide often.
    let short = prop::collection::vec(prop_oneof![Just("a"), Just("+")], 3..=3);
    let segments = prop_oneof![
        3 => prop::collection::vec(segment, 1..4),
        1 => short,
    ];
    (segments, 0..3u8).prop_map(|(segments, glob)| {
        let mut pattern = segments.join("/");
        match glob {
            // `+*` is forbidden; glob a `+` segment through a following `/`.
            1 if pattern.ends_with('+') => pattern.push_str("/*"),
            1 => pattern.push('*'),
            2 => pattern.push_str("/*"),
            _ => {}
        }
        pattern
    })
}

fn capability_names_strategy() -> impl Strategy<Value = Vec<&'static str>> {
    // Deny rarely, so that grants are common enough to be interesting.
    (prop::bits::u8::between(1, 8), 0..10u8).prop_map(|(bits, deny_roll)| {
        let mut names: Vec<&'static str> = CAPABILITIES[1..]
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, (name, _))| *name)
            .collect();
        if deny_roll == 0 {
            names.push("deny");
        }
        names
    })
}

type PolicySpec = Vec<(String, Vec<&'static str>)>;

fn policies_strategy() -> impl Strategy<Value = Vec<PolicySpec>> {
    let rule = (pattern_strategy(), capability_names_strategy());
    prop::collection::vec(prop::collection::vec(rule, 1..8), 1..4)
}

fn path_strategy() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        4 => Just("a"),
        4 => Just("b"),
        3 => Just("ab"),
        2 => Just("abc"),
        2 => Just("ba"),
        1 => Just(""),
    ];
    (prop::collection::vec(segment, 1..5), any::<bool>()).prop_map(|(segments, trailing)| {
        let mut path = segments.join("/");
        if trailing {
            path.push('/');
        }
        path
    })
}

fn hcl(spec: &PolicySpec) -> String {
    spec.iter()
        .map(|(pattern, names)| {
            let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
            format!(
                "path \"{pattern}\" {{\n  capabilities = [{}]\n}}\n",
                quoted.join(", ")
            )
        })
        .collect()
}

fn json(spec: &PolicySpec) -> String {
    let blocks: Vec<serde_json::Value> = spec
        .iter()
        .map(|(pattern, names)| serde_json::json!({ pattern.as_str(): { "capabilities": names } }))
        .collect();
    serde_json::json!({ "path": blocks }).to_string()
}

/// The reference: all rules of all policies, merged per pattern.
struct Reference {
    rules: BTreeMap<String, Capabilities>,
}

impl Reference {
    fn new(specs: &[PolicySpec]) -> Reference {
        let mut rules: BTreeMap<String, Capabilities> = BTreeMap::new();
        for (pattern, names) in specs.iter().flatten() {
            let caps = names
                .iter()
                .map(|n| {
                    CAPABILITIES
                        .iter()
                        .find(|(name, _)| name == n)
                        .map(|(_, c)| *c)
                        .unwrap_or_default()
                })
                .fold(Capabilities::NONE, |a, b| a | b);
            let merged = rules.entry(pattern.clone()).or_default();
            *merged = if merged.is_deny() || caps.is_deny() {
                Capabilities::DENY
            } else {
                *merged | caps
            };
        }
        Reference { rules }
    }

    fn is_glob(pattern: &str) -> bool {
        pattern.ends_with('*') || pattern.split('/').any(|s| s == "+")
    }

    /// Character-level match: `+` segment = `[^/]*`, trailing `*` = `.*`.
    fn matches(pattern: &str, path: &str) -> bool {
        fn go(pattern: &[u8], path: &[u8]) -> bool {
            match pattern.split_first() {
                None => path.is_empty(),
                Some((b'*', _)) => true,
                Some((b'+', rest)) => {
                    let run = path.iter().take_while(|&&c| c != b'/').count();
                    (0..=run).any(|taken| go(rest, &path[taken..]))
                }
                Some((c, rest)) => path.first() == Some(c) && go(rest, &path[1..]),
            }
        }
        go(pattern.as_bytes(), path.as_bytes())
    }

    /// Precedence as written in the spec: later first wildcard, not ending in `*`,
    /// fewer `+` segments, longer, lexicographically greater => higher.
    fn priority(pattern: &str) -> (usize, bool, std::cmp::Reverse<usize>, usize, String) {
        (
            pattern.find(['+', '*']).unwrap_or(pattern.len()),
            !pattern.ends_with('*'),
            std::cmp::Reverse(pattern.split('/').filter(|s| *s == "+").count()),
            pattern.len(),
            pattern.to_string(),
        )
    }

    fn exact(&self, path: &str) -> Option<Capabilities> {
        self.rules
            .iter()
            .find(|(pattern, _)| !Self::is_glob(pattern) && *pattern == path)
            .map(|(_, caps)| *caps)
    }

    fn best_glob(&self, path: &str) -> Option<Capabilities> {
        let mut matching: Vec<(&String, &Capabilities)> = self
            .rules
            .iter()
            .filter(|(pattern, _)| Self::is_glob(pattern) && Self::matches(pattern, path))
            .collect();
        matching.sort_by_key(|(pattern, _)| Self::priority(pattern));
        matching.last().map(|(_, caps)| **caps)
    }

    /// The capabilities governing `path`; `list` adds the LIST trailing-slash fallbacks.
    /// Leading `/` are not part of a request path.
    fn lookup(&self, path: &str, list: bool) -> Capabilities {
        let path = path.trim_start_matches('/');
        let trimmed = path.strip_suffix('/').filter(|_| list);
        self.exact(path)
            .or_else(|| trimmed.and_then(|t| self.exact(t)))
            .or_else(|| trimmed.and_then(|t| self.best_glob(t)))
            .or_else(|| self.best_glob(path))
            .unwrap_or_default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn acl_agrees_with_reference(
        specs in policies_strategy(),
        paths in prop::collection::vec(path_strategy(), 1..24),
    ) {
        let policies: Vec<Policy> = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| parse(&format!("p{i}"), &hcl(spec)))
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let acl = Acl::new(&policies);
        let reference = Reference::new(&specs);

        for path in &paths {
            let expected = reference.lookup(path, true);
            prop_assert_eq!(acl.capabilities(path), expected, "capabilities({})", path);
            prop_assert_eq!(acl.capability_names(path), expected.to_strings());

            for op in [Operation::Read, Operation::Update, Operation::List] {
                let caps = reference.lookup(path, op == Operation::List);
                let decision = acl.allow(&AclRequest::new(path, op));
                prop_assert_eq!(
                    decision.allowed,
                    !caps.is_deny() && caps.contains(op.capability()),
                    "{:?} {}", op, path
                );
                prop_assert_eq!(decision.root_privs, caps.contains(Capabilities::SUDO), "sudo {}", path);
            }
        }
    }

    #[test]
    fn json_and_hcl_parse_alike(specs in policies_strategy()) {
        for spec in &specs {
            let from_hcl = parse("p", &hcl(spec)).map(|p| p.paths);
            let from_json = parse("p", &json(spec)).map(|p| p.paths);
            prop_assert!(from_hcl.is_ok(), "{:?}", from_hcl);
            prop_assert_eq!(from_hcl, from_json);
        }
    }
}

#[test]
fn reference_matcher_sanity() {
    let cases = [
        ("a/+/b", "a/x/b", true),
        ("a/+/b", "a/x/y/b", false),
        ("a/+/b*", "a/x/bc/d", true),
        ("a*", "a", true),
        ("a*", "b", false),
        ("+", "", true),
        ("+/*", "a", false),
    ];
    for (pattern, path, expected) in cases {
        assert_eq!(
            Reference::matches(pattern, path),
            expected,
            "{pattern} vs {path}"
        );
    }
}

//! The compiled ACL: policies merged per pattern, indexed for lookup, and evaluated
//! with Vault's precedence (`vault/acl.go`).
//!
//! ```text
//!   policies ──merge by pattern──▶ rules ──classify──▶ exact:   HashMap<path, rule>
//!   (union of capabilities,                            prefix:  radix tree, longest prefix
//!    deny wins, params merged,                         segment: trie over path segments
//!    lesser wrapping TTLs)
//!
//!   lookup(path): exact hit ─▶ that rule
//!                 else the higher-priority of the longest matching prefix rule and
//!                 the best `+` rule found by walking the segment trie
//! ```

use crate::capabilities::{Capabilities, Operation};
use crate::params;
use crate::pattern::{self, Kind, Priority, Ranked};
use crate::policy::{PathRule, Policy};
use crate::radix::PrefixTree;
use crate::segments::SegmentTree;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// A set of policies compiled for evaluation. Cheap to share (`Send + Sync`); build
/// it once per token's policy set. `Acl::default()` has no rules: it denies everything.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    root: bool,
    /// Merged rules, one per distinct pattern.
    rules: Vec<PathRule>,
    exact: HashMap<String, usize>,
    prefix: PrefixTree<Ranked>,
    segment: SegmentTree,
}

/// A request to check against an [`Acl`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AclRequest<'a> {
    /// The request path after `/v1/` (leading `/` are ignored).
    pub path: &'a str,
    /// What the request does.
    pub operation: Operation,
    /// The request body's fields, if any.
    pub params: Option<&'a Map<String, Value>>,
    /// The response-wrapping TTL the request asked for, in seconds (`X-Vault-Wrap-TTL`).
    pub wrap_ttl: Option<u64>,
}

impl<'a> AclRequest<'a> {
    /// A request without parameters or wrapping.
    pub fn new(path: &'a str, operation: Operation) -> AclRequest<'a> {
        AclRequest {
            path,
            operation,
            params: None,
            wrap_ttl: None,
        }
    }

    /// The same request with these body fields.
    pub fn with_params(self, params: &'a Map<String, Value>) -> AclRequest<'a> {
        AclRequest {
            params: Some(params),
            ..self
        }
    }

    /// The same request, asking for response wrapping with this TTL (seconds).
    pub fn with_wrap_ttl(self, seconds: u64) -> AclRequest<'a> {
        AclRequest {
            wrap_ttl: Some(seconds),
            ..self
        }
    }
}

/// The outcome of [`Acl::allow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclDecision {
    /// The request may proceed.
    pub allowed: bool,
    /// The matching rule grants `sudo` (or the ACL is root): needed, on top of
    /// `allowed`, for root-protected paths. Set even when `allowed` is false, as Vault
    /// does.
    pub root_privs: bool,
    /// Why the request was denied (for logs and audit, not for the client, which only
    /// ever sees "permission denied"). `None` when allowed.
    pub reason: Option<String>,
}

impl AclDecision {
    fn allow(root_privs: bool) -> AclDecision {
        AclDecision {
            allowed: true,
            root_privs,
            reason: None,
        }
    }

    fn deny(root_privs: bool, reason: String) -> AclDecision {
        AclDecision {
            allowed: false,
            root_privs,
            reason: Some(reason),
        }
    }
}

impl Acl {
    /// Compile `policies` into one ACL. Rules with the same pattern merge as in
    /// Vault's `NewACL`; rules with different patterns never merge. Names play no
    /// part: a root token's ACL is [`Acl::root`].
    pub fn new<'p, I>(policies: I) -> Acl
    where
        I: IntoIterator<Item = &'p Policy>,
    {
        let mut by_pattern: HashMap<String, usize> = HashMap::new();
        let mut rules: Vec<PathRule> = Vec::new();
        for rule in policies.into_iter().flat_map(|p| &p.paths) {
            match by_pattern.get(&rule.path) {
                Some(&i) => merge(&mut rules[i], rule),
                None => {
                    by_pattern.insert(rule.path.clone(), rules.len());
                    rules.push(normalized(rule));
                }
            }
        }
        for rule in &mut rules {
            // Vault looks required parameters up lower-cased.
            let mut required: Vec<String> = rule
                .required_parameters
                .iter()
                .map(|p| p.to_lowercase())
                .collect();
            required.sort();
            required.dedup();
            rule.required_parameters = required;
        }

        let mut acl = Acl {
            rules,
            ..Acl::default()
        };
        for (i, rule) in acl.rules.iter().enumerate() {
            match pattern::classify(&rule.path) {
                Kind::Exact(path) => {
                    acl.exact.insert(path.to_string(), i);
                }
                Kind::Prefix(prefix) => acl.prefix.insert(
                    prefix,
                    Ranked {
                        rule: i,
                        priority: Priority::of_prefix(prefix),
                    },
                ),
                Kind::Segment(pattern) => acl.segment.insert(pattern, i),
            }
        }
        acl
    }

    /// The ACL of the root policy: every operation on every path, with sudo.
    pub fn root() -> Acl {
        Acl {
            root: true,
            ..Acl::default()
        }
    }

    /// True for [`Acl::root`].
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// The capabilities on `path`, as `sys/capabilities` computes them (Vault looks
    /// them up as for a LIST, so `foo/` also finds an exact rule for `foo`). A root
    /// ACL has [`Capabilities::ALL`]; [`Acl::capability_names`] reports it as `root`.
    pub fn capabilities(&self, path: &str) -> Capabilities {
        if self.root {
            return Capabilities::ALL;
        }
        self.lookup(trim_leading_slashes(path), true)
            .map_or(Capabilities::NONE, |rule| rule.capabilities)
    }

    /// What `sys/capabilities` returns for `path`: `["root"]` for a root ACL, else the
    /// capability names in Vault's order (`["deny"]` when nothing is granted).
    pub fn capability_names(&self, path: &str) -> Vec<&'static str> {
        if self.root {
            return vec![crate::ROOT_POLICY];
        }
        self.capabilities(path).to_strings()
    }

    /// Decide a request, as Vault's `ACL.AllowOperation`.
    pub fn allow(&self, request: &AclRequest<'_>) -> AclDecision {
        if self.root {
            return AclDecision::allow(true);
        }
        let path = trim_leading_slashes(request.path);
        let operation = request.operation;
        let Some(rule) = self.lookup(path, operation == Operation::List) else {
            return AclDecision::deny(false, format!("no policy grants anything on {path:?}"));
        };
        let root_privs = rule.capabilities.contains(Capabilities::SUDO);
        if !rule.capabilities.allows(operation) {
            let reason = if rule.capabilities.is_deny() {
                format!("{path:?} is denied by the rule for {:?}", rule.path)
            } else {
                format!(
                    "the rule for {:?} does not grant {}",
                    rule.path,
                    operation.name()
                )
            };
            return AclDecision::deny(root_privs, reason);
        }
        if let Err(reason) = check_wrapping(rule, request.wrap_ttl) {
            return AclDecision::deny(root_privs, reason);
        }
        if operation.checks_parameters() {
            if let Err(reason) = check_parameters(rule, request.params) {
                return AclDecision::deny(root_privs, reason);
            }
        }
        AclDecision::allow(root_privs)
    }

    /// The rule that governs `path`. `list` adds Vault's LIST fallbacks: a trailing `/`
    /// is also tried without it (first as an exact rule, then as a glob).
    fn lookup(&self, path: &str, list: bool) -> Option<&PathRule> {
        if let Some(&i) = self.exact.get(path) {
            return Some(&self.rules[i]);
        }
        if list {
            if let Some(trimmed) = path.strip_suffix('/') {
                if let Some(&i) = self.exact.get(trimmed) {
                    return Some(&self.rules[i]);
                }
                if let Some(rule) = self.glob_lookup(trimmed) {
                    return Some(rule);
                }
            }
        }
        self.glob_lookup(path)
    }

    /// The highest-priority prefix or segment rule matching `path`.
    fn glob_lookup(&self, path: &str) -> Option<&PathRule> {
        let best = Ranked::best(
            self.prefix.longest_prefix(path),
            self.segment.best_match(path),
        );
        best.map(|ranked| &self.rules[ranked.rule])
    }
}

fn trim_leading_slashes(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// A rule as first inserted: a `deny` rule keeps nothing but `deny`.
fn normalized(rule: &PathRule) -> PathRule {
    if rule.capabilities.is_deny() {
        PathRule {
            path: rule.path.clone(),
            capabilities: Capabilities::DENY,
            ..PathRule::default()
        }
    } else {
        rule.clone()
    }
}

/// Fold `new` into `existing` (same pattern), as Vault's `NewACL` does.
fn merge(existing: &mut PathRule, new: &PathRule) {
    if existing.capabilities.is_deny() {
        return;
    }
    if new.capabilities.is_deny() {
        *existing = normalized(new);
        return;
    }
    existing.capabilities |= new.capabilities;
    // Vault prefers the lesser of two set bounds, for both min and max.
    existing.max_wrapping_ttl = lesser_set(existing.max_wrapping_ttl, new.max_wrapping_ttl);
    existing.min_wrapping_ttl = lesser_set(existing.min_wrapping_ttl, new.min_wrapping_ttl);
    merge_parameters(&mut existing.allowed_parameters, &new.allowed_parameters);
    merge_parameters(&mut existing.denied_parameters, &new.denied_parameters);
    for p in &new.required_parameters {
        if !existing.required_parameters.contains(p) {
            existing.required_parameters.push(p.clone());
        }
    }
}

fn lesser_set(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Union of value lists per key; an empty list (any value) absorbs the others. A
/// rule without the map takes the other's map whole: as in Vault, merging a rule that
/// restricts parameters into one that does not yields the restriction.
fn merge_parameters(
    existing: &mut BTreeMap<String, Vec<Value>>,
    new: &BTreeMap<String, Vec<Value>>,
) {
    for (key, values) in new {
        match existing.get_mut(key) {
            Some(current) if current.is_empty() => {}
            Some(current) if values.is_empty() => current.clear(),
            Some(current) => current.extend(values.iter().cloned()),
            None => {
                existing.insert(key.clone(), values.clone());
            }
        }
    }
}

fn check_wrapping(rule: &PathRule, wrap_ttl: Option<u64>) -> Result<(), String> {
    let requested = wrap_ttl.map(Duration::from_secs);
    if let Some(max) = rule.max_wrapping_ttl {
        match requested {
            None => {
                return Err(format!(
                    "the rule for {:?} requires response wrapping",
                    rule.path
                ))
            }
            Some(ttl) if ttl > max => {
                return Err(format!(
                    "wrapping TTL {}s is above the rule's max_wrapping_ttl {:?}",
                    ttl.as_secs(),
                    max
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(min) = rule.min_wrapping_ttl {
        match requested {
            None => {
                return Err(format!(
                    "the rule for {:?} requires response wrapping",
                    rule.path
                ))
            }
            Some(ttl) if ttl < min => {
                return Err(format!(
                    "wrapping TTL {}s is below the rule's min_wrapping_ttl {:?}",
                    ttl.as_secs(),
                    min
                ))
            }
            Some(_) => {}
        }
    }
    // Merging can leave max < min (each block was checked alone when parsed); Vault
    // then denies every request, which the two checks above already do.
    Ok(())
}

fn check_parameters(rule: &PathRule, params: Option<&Map<String, Value>>) -> Result<(), String> {
    let params = params.filter(|p| !p.is_empty());
    for required in &rule.required_parameters {
        if !params.is_some_and(|p| p.contains_key(required)) {
            return Err(format!("required parameter {required:?} is missing"));
        }
    }
    let Some(params) = params else {
        return Ok(());
    };
    if !rule.denied_parameters.is_empty() {
        if rule.denied_parameters.contains_key("*") {
            return Err(format!(
                "the rule for {:?} denies all parameters",
                rule.path
            ));
        }
        for (key, value) in params {
            if let Some(denied) = rule.denied_parameters.get(lower(key).as_ref()) {
                if params::denied(value, denied) {
                    return Err(format!("parameter {key:?} is denied"));
                }
            }
        }
    }
    if rule.allowed_parameters.is_empty() {
        return Ok(());
    }
    let allow_all = rule.allowed_parameters.contains_key("*");
    if allow_all && rule.allowed_parameters.len() == 1 {
        return Ok(());
    }
    for (key, value) in params {
        match rule.allowed_parameters.get(lower(key).as_ref()) {
            None if !allow_all => return Err(format!("parameter {key:?} is not allowed")),
            Some(allowed) if !params::allowed(value, allowed) => {
                return Err(format!("this value of parameter {key:?} is not allowed"))
            }
            _ => {}
        }
    }
    Ok(())
}

fn lower(key: &str) -> Cow<'_, str> {
    if key.chars().any(char::is_uppercase) {
        Cow::Owned(key.to_lowercase())
    } else {
        Cow::Borrowed(key)
    }
}

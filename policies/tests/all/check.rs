//! The one `check` helper every table row goes through (plus the small builders the
//! rows use), so the API can change without rewriting the cases.

use coffer_policies::{parse, Acl, AclRequest, Operation, Policy};
use serde_json::{Map, Value};

/// What a row expects from `Acl::allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Allowed, no sudo.
    Allow,
    /// Allowed, and the rule grants sudo.
    AllowSudo,
    /// Denied, no sudo.
    Deny,
    /// Denied, though the rule grants sudo (root_privs is reported anyway).
    DenySudo,
}

/// One request to check.
pub struct Row {
    path: &'static str,
    op: Operation,
    params: Option<Value>,
    wrap_ttl: Option<u64>,
}

pub fn req(path: &'static str, op: Operation) -> Row {
    Row {
        path,
        op,
        params: None,
        wrap_ttl: None,
    }
}

impl Row {
    pub fn params(self, params: Value) -> Row {
        Row {
            params: Some(params),
            ..self
        }
    }

    pub fn wrap(self, seconds: u64) -> Row {
        Row {
            wrap_ttl: Some(seconds),
            ..self
        }
    }
}

pub fn compile(policies: &[&str]) -> Acl {
    let parsed: Vec<Policy> = policies
        .iter()
        .enumerate()
        .map(|(i, text)| {
            parse(&format!("p{i}"), text).unwrap_or_else(|e| panic!("policy {i}: {e}\n{text}"))
        })
        .collect();
    Acl::new(&parsed)
}

/// The one helper every row goes through. Returns a description of the mismatch.
pub fn check_acl(acl: &Acl, row: &Row, expected: Expect) -> Result<(), String> {
    let params: Option<Map<String, Value>> = row.params.as_ref().map(|p| match p {
        Value::Object(map) => map.clone(),
        other => panic!("params must be an object: {other}"),
    });
    let mut request = AclRequest::new(row.path, row.op);
    if let Some(params) = &params {
        request = request.with_params(params);
    }
    if let Some(ttl) = row.wrap_ttl {
        request = request.with_wrap_ttl(ttl);
    }
    let decision = acl.allow(&request);
    let got = match (decision.allowed, decision.root_privs) {
        (true, false) => Expect::Allow,
        (true, true) => Expect::AllowSudo,
        (false, false) => Expect::Deny,
        (false, true) => Expect::DenySudo,
    };
    if decision.allowed != decision.reason.is_none() {
        return Err(format!(
            "reason {:?} inconsistent with allowed={}",
            decision.reason, decision.allowed
        ));
    }
    if got == expected {
        Ok(())
    } else {
        Err(format!(
            "{:?} {} params={:?} wrap={:?}: expected {expected:?}, got {got:?} ({:?})",
            row.op, row.path, row.params, row.wrap_ttl, decision.reason
        ))
    }
}

pub fn check(policies: &[&str], row: Row, expected: Expect) -> Result<(), String> {
    check_acl(&compile(policies), &row, expected)
}

/// Run every case; report every failure at once.
pub fn run(cases: Vec<(&str, Result<(), String>)>) {
    let failures: Vec<String> = cases
        .into_iter()
        .filter_map(|(name, result)| result.err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

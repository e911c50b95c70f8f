//! The token settings every Vault auth method shares (`token_policies`, `token_ttl`, …;
//! Vault's `sdk/helper/tokenutil`): parsing with Vault's rules and legacy aliases, the
//! fields a read shows, and the [`LoginAuth`] a login hands to the core.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::{LoginAuth, Request, SdkError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cidr;

/// The request fields [`TokenParams::parse`] reads (legacy aliases not included).
pub const FIELDS: &[&str] = &[
    "token_policies",
    "token_ttl",
    "token_max_ttl",
    "token_explicit_max_ttl",
    "token_period",
    "token_num_uses",
    "token_bound_cidrs",
    "token_no_default_policy",
    "token_type",
];

/// Token settings of a user or role. Durations are whole seconds; zero means "not set"
/// (the mount's default applies).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenParams {
    /// Policies of issued tokens (sanitised: lower-case, sorted, no duplicates).
    pub token_policies: Vec<String>,
    /// Initial TTL of issued tokens.
    pub token_ttl: u64,
    /// Maximum lifetime of issued tokens (renewals stop there).
    pub token_max_ttl: u64,
    /// Hard cap on the lifetime of issued tokens.
    pub token_explicit_max_ttl: u64,
    /// Period of issued (periodic) tokens.
    pub token_period: u64,
    /// Use limit of issued tokens (0 = unlimited).
    pub token_num_uses: u64,
    /// CIDR blocks issued tokens may be used from.
    pub token_bound_cidrs: Vec<String>,
    /// Do not attach the `default` policy.
    pub token_no_default_policy: bool,
    /// `default`, `service`, `batch`, `default-service` or `default-batch`.
    pub token_type: String,
    /// Legacy names (`policies`, `ttl`, …) whose value was last set through the old name;
    /// a read shows them beside the new name, as Vault does.
    pub legacy: BTreeSet<String>,
}

/// Whether `key` is in the body with a non-null value.
fn present(req: &Request, key: &str) -> bool {
    req.data.get(key).is_some_and(|v| !v.is_null())
}

/// Vault's policy sanitising: trimmed, lower-case, no empties, sorted, de-duplicated;
/// `root` anywhere means just `root`.
pub fn sanitize_policies(policies: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = policies
        .into_iter()
        .map(|p| p.trim().to_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    if out.iter().any(|p| p == "root") {
        return vec!["root".into()];
    }
    out.sort();
    out.dedup();
    out
}

/// Vault's `EquivalentPolicies`: the same set once `default` is ignored on both sides.
pub fn equivalent_policies(a: &[String], b: &[String]) -> bool {
    let set = |list: &[String]| -> BTreeSet<String> {
        list.iter()
            .map(|p| p.trim().to_lowercase())
            .filter(|p| !p.is_empty() && p != "default")
            .collect()
    };
    set(a) == set(b)
}

fn secs(req: &Request, key: &str) -> Result<Option<u64>, SdkError> {
    Ok(req.get_duration(key)?.map(|d| d.as_secs()))
}

impl TokenParams {
    /// Apply the token fields present in `req`. `aliases` lists `(legacy, new)` names: a
    /// legacy name counts only when the new one is absent (Vault's `UpgradeValue`).
    /// Validates like Vault's `ParseTokenFields`; nothing is changed on error.
    pub fn parse(&mut self, req: &Request, aliases: &[(&str, &str)]) -> Result<(), SdkError> {
        let mut next = self.clone();
        // Which key supplies each new field, recording legacy use.
        let mut source = |new: &'static str| -> Option<String> {
            let old = aliases.iter().find(|(_, n)| *n == new).map(|(o, _)| *o);
            if present(req, new) {
                if let Some(old) = old {
                    next.legacy.remove(old);
                }
                return Some(new.to_string());
            }
            let old = old.filter(|o| present(req, o))?;
            next.legacy.insert(old.to_string());
            Some(old.to_string())
        };
        let policies_key = source("token_policies");
        let ttl_key = source("token_ttl");
        let max_ttl_key = source("token_max_ttl");
        let period_key = source("token_period");
        let cidrs_key = source("token_bound_cidrs");
        let explicit_key = source("token_explicit_max_ttl");
        let num_uses_key = source("token_num_uses");

        if let Some(key) = policies_key {
            next.token_policies = sanitize_policies(req.get_str_list(&key)?.unwrap_or_default());
        }
        if let Some(key) = ttl_key {
            next.token_ttl = secs(req, &key)?.unwrap_or(0);
        }
        if let Some(key) = max_ttl_key {
            next.token_max_ttl = secs(req, &key)?.unwrap_or(0);
        }
        if let Some(key) = explicit_key {
            next.token_explicit_max_ttl = secs(req, &key)?.unwrap_or(0);
        }
        if let Some(key) = period_key {
            next.token_period = secs(req, &key)?.unwrap_or(0);
        }
        if let Some(key) = num_uses_key {
            let uses = req.get_i64(&key)?.unwrap_or(0);
            next.token_num_uses = u64::try_from(uses)
                .map_err(|_| SdkError::bad("'token_num_uses' cannot be negative"))?;
        }
        if let Some(key) = cidrs_key {
            let items = req.get_str_list(&key)?.unwrap_or_default();
            next.token_bound_cidrs = cidr::parse_list(&key, &items)?;
        }
        if let Some(flag) = req.get_bool("token_no_default_policy")? {
            next.token_no_default_policy = flag;
        }
        match req.data.get("token_type") {
            None | Some(Value::Null) => {}
            Some(Value::String(kind)) => {
                next.token_type = match kind.trim() {
                    "" | "default" => "default".into(),
                    k @ ("service" | "batch" | "default-service" | "default-batch") => k.into(),
                    other => {
                        return Err(SdkError::bad(format!(
                            "invalid 'token_type' value {other:?}"
                        )))
                    }
                };
            }
            Some(_) => return Err(SdkError::bad("field \"token_type\" must be a string")),
        }
        next.validate()?;
        *self = next;
        Ok(())
    }

    fn is_batch(&self) -> bool {
        matches!(self.token_type.as_str(), "batch" | "default-batch")
    }

    fn validate(&self) -> Result<(), SdkError> {
        if self.is_batch() && self.token_period != 0 {
            return Err(SdkError::bad(
                "'token_type' cannot be 'batch' or 'default_batch' when set to generate \
                 periodic tokens",
            ));
        }
        if self.is_batch() && self.token_num_uses != 0 {
            return Err(SdkError::bad(
                "'token_type' cannot be 'batch' or 'default_batch' when set to generate \
                 tokens with limited use count",
            ));
        }
        if self.token_ttl > 0 && self.token_max_ttl > 0 && self.token_ttl > self.token_max_ttl {
            return Err(SdkError::bad(
                "'token_ttl' cannot be greater than 'token_max_ttl'",
            ));
        }
        Ok(())
    }

    /// The `token_*` fields of a read, plus each legacy name that was set through its old
    /// name (`aliases` as for [`TokenParams::parse`]).
    pub fn read_into(&self, out: &mut Map<String, Value>, aliases: &[(&str, &str)]) {
        let token_type = if self.token_type.is_empty() {
            "default"
        } else {
            self.token_type.as_str()
        };
        let fields = [
            ("token_policies", Value::from(self.token_policies.clone())),
            ("token_ttl", Value::from(self.token_ttl)),
            ("token_max_ttl", Value::from(self.token_max_ttl)),
            (
                "token_explicit_max_ttl",
                Value::from(self.token_explicit_max_ttl),
            ),
            ("token_period", Value::from(self.token_period)),
            ("token_num_uses", Value::from(self.token_num_uses)),
            (
                "token_bound_cidrs",
                Value::from(self.token_bound_cidrs.clone()),
            ),
            (
                "token_no_default_policy",
                Value::from(self.token_no_default_policy),
            ),
            ("token_type", Value::from(token_type)),
        ];
        for (key, value) in fields {
            out.insert(key.into(), value);
        }
        for (old, new) in aliases {
            if self.legacy.contains(*old) {
                if let Some(value) = out.get(*new).cloned() {
                    out.insert((*old).into(), value);
                }
            }
        }
    }

    /// The auth block of a login with these settings (Vault's `PopulateTokenAuth`):
    /// renewable, with `max_ttl` the tighter of `token_max_ttl` and
    /// `token_explicit_max_ttl`.
    pub fn login_auth(&self) -> LoginAuth {
        let max_ttl = match (self.token_max_ttl, self.token_explicit_max_ttl) {
            (0, e) => e,
            (m, 0) => m,
            (m, e) => m.min(e),
        };
        LoginAuth {
            policies: self.token_policies.clone(),
            ttl: Duration::from_secs(self.token_ttl),
            max_ttl: Duration::from_secs(max_ttl),
            period: Duration::from_secs(self.token_period),
            num_uses: self.token_num_uses,
            renewable: true,
            no_default_policy: self.token_no_default_policy,
            token_type: if self.is_batch() { "batch" } else { "service" }.into(),
            bound_cidrs: self.token_bound_cidrs.clone(),
            ..LoginAuth::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_sanitised_like_vault() {
        let cases: &[(&[&str], &[&str])] = &[
            (&[" B", "a", "b", ""], &["a", "b"]),
            (&["dev", "ROOT"], &["root"]),
            (&[], &[]),
        ];
        for (input, want) in cases {
            let got = sanitize_policies(input.iter().map(|s| s.to_string()).collect());
            assert_eq!(got, want.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(equivalent_policies(&v(&["a", "default"]), &v(&["a"])));
        assert!(equivalent_policies(&v(&[]), &v(&["default"])));
        assert!(!equivalent_policies(&v(&["a"]), &v(&["a", "b"])));
    }
}

//! Parsing ACL policies from HCL or JSON into [`Policy`] values.
//!
//! Both syntaxes are first brought to the HCL JSON-spec shape
//! (`{"path": {"<pattern>": {...} | [{...}, ...]}}`; hcl-rs produces it for HCL, and
//! it is what Vault's JSON policies look like), then one walker validates it. Keys,
//! legacy `policy = "read"` blocks, `deny` handling and the wrapping-TTL bound check
//! follow Vault's `parsePaths`.

use crate::capabilities::Capabilities;
use crate::duration::parse_ttl;
use crate::pattern;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The name of the built-in policy that allows everything. It has no text: ask for
/// [`crate::Acl::root`] instead of parsing it; [`parse`] refuses the name.
pub const ROOT_POLICY: &str = "root";

/// A parsed, validated ACL policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Lower-cased, trimmed name.
    pub name: String,
    /// The text it was parsed from, as given (what `sys/policies/acl/:name` returns).
    pub raw: String,
    /// The `path` blocks, sorted by pattern (blocks for one pattern in the order
    /// written). A pattern may appear more than once; the blocks merge when the policy
    /// is compiled into an [`crate::Acl`], where order makes no difference.
    pub paths: Vec<PathRule>,
}

/// One `path "<pattern>" { ... }` block.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PathRule {
    /// The pattern, without a leading `/`: exact (`secret/foo`), prefix (`secret/*`)
    /// or with `+` segments (`secret/+/config`).
    pub path: String,
    /// What the block grants. A block with `deny` holds exactly [`Capabilities::DENY`]
    /// and no parameter or TTL constraints (as in Vault).
    pub capabilities: Capabilities,
    /// Parameter name (lower-cased) -> allowed values; an empty list allows any value;
    /// the `*` key allows every parameter not listed.
    pub allowed_parameters: BTreeMap<String, Vec<Value>>,
    /// Parameter name (lower-cased) -> denied values; an empty list denies the
    /// parameter outright; a `*` key denies every parameter.
    pub denied_parameters: BTreeMap<String, Vec<Value>>,
    /// Parameters a request must carry.
    pub required_parameters: Vec<String>,
    /// Requests must ask for response wrapping with at least this TTL.
    pub min_wrapping_ttl: Option<Duration>,
    /// Requests must ask for response wrapping with at most this TTL.
    pub max_wrapping_ttl: Option<Duration>,
}

/// Why a policy did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy name is blank.
    #[error("policy name is empty")]
    EmptyName,
    /// The name belongs to a built-in policy that cannot be defined by text.
    #[error("cannot define the {0:?} policy: the name is reserved")]
    ReservedName(String),
    /// The policy text is blank.
    #[error("policy text is empty")]
    Empty,
    /// Not valid HCL.
    #[error("failed to parse policy as HCL: {0}")]
    Hcl(String),
    /// Not valid JSON (the text starts with `{`).
    #[error("failed to parse policy as JSON: {0}")]
    Json(String),
    /// Valid syntax, but not the shape of a policy.
    #[error("failed to parse policy: {0}")]
    Structure(String),
    /// A key Vault's policy language does not have.
    #[error("path {path:?}: invalid key {key:?}")]
    UnknownKey {
        /// The pattern of the block.
        path: String,
        /// The offending key.
        key: String,
    },
    /// A Vault Enterprise key (`mfa_methods`, `control_group`): refused rather than
    /// ignored, since ignoring it would grant more than the author meant.
    #[error("path {path:?}: {key:?} is a Vault Enterprise feature that Coffer does not support")]
    Unsupported {
        /// The pattern of the block.
        path: String,
        /// The offending key.
        key: String,
    },
    /// A capability name that does not exist.
    #[error("path {path:?}: invalid capability {capability:?}")]
    UnknownCapability {
        /// The pattern of the block.
        path: String,
        /// The offending name.
        capability: String,
    },
    /// A legacy `policy = "..."` value other than deny, read, write, sudo.
    #[error("path {path:?}: invalid policy {policy:?} (expected deny, read, write or sudo)")]
    UnknownLegacyPolicy {
        /// The pattern of the block.
        path: String,
        /// The offending value.
        policy: String,
    },
    /// A misplaced wildcard in the pattern.
    #[error("path {path:?}: invalid use of wildcards: {reason}")]
    InvalidPattern {
        /// The pattern.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A field with a value of the wrong type or form.
    #[error("path {path:?}: {field}: {message}")]
    InvalidValue {
        /// The pattern of the block.
        path: String,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// `max_wrapping_ttl` below `min_wrapping_ttl`.
    #[error("path {path:?}: max_wrapping_ttl cannot be less than min_wrapping_ttl")]
    WrappingTtlBounds {
        /// The pattern of the block.
        path: String,
    },
}

/// Parse a policy named `name` from HCL, or JSON if the text starts with `{`.
pub fn parse(name: &str, text: &str) -> Result<Policy, PolicyError> {
    let name = name.trim().to_lowercase();
    if name.is_empty() {
        return Err(PolicyError::EmptyName);
    }
    if name == ROOT_POLICY {
        return Err(PolicyError::ReservedName(name));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(PolicyError::Empty);
    }
    let document: Value = if trimmed.starts_with('{') {
        serde_json::from_str(trimmed).map_err(|e| PolicyError::Json(e.to_string()))?
    } else {
        hcl::from_str(text).map_err(|e| PolicyError::Hcl(e.to_string()))?
    };
    let Value::Object(top) = document else {
        return Err(PolicyError::Structure(
            "does not contain a root object".into(),
        ));
    };
    let mut paths = Vec::new();
    for (key, value) in &top {
        match key.as_str() {
            "path" => collect_blocks(value, &mut paths)?,
            // Vault accepts (and ignores) a name inside the text; the store's name wins.
            "name" => {}
            other => {
                return Err(PolicyError::Structure(format!(
                    "invalid key {other:?} (expected \"path\" blocks)"
                )))
            }
        }
    }
    // Deterministic whatever map order serde_json is built with.
    paths.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Policy {
        name,
        raw: text.to_string(),
        paths,
    })
}

/// `path` is a map from pattern to one body or a list of bodies; HCL1-style JSON may
/// also wrap such maps in a list.
fn collect_blocks(value: &Value, out: &mut Vec<PathRule>) -> Result<(), PolicyError> {
    match value {
        Value::Object(blocks) => {
            for (pattern, body) in blocks {
                match body {
                    Value::Object(body) => out.push(parse_rule(pattern, body)?),
                    Value::Array(bodies) => {
                        for body in bodies {
                            let Value::Object(body) = body else {
                                return Err(not_a_block(pattern));
                            };
                            out.push(parse_rule(pattern, body)?);
                        }
                    }
                    _ => return Err(not_a_block(pattern)),
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|item| collect_blocks(item, out)),
        _ => Err(PolicyError::Structure(
            "\"path\" must be a block: path \"<pattern>\" { ... }".into(),
        )),
    }
}

fn not_a_block(pattern: &str) -> PolicyError {
    PolicyError::Structure(format!("path {pattern:?} must be a block"))
}

fn parse_rule(label: &str, body: &Map<String, Value>) -> Result<PathRule, PolicyError> {
    let path = label.strip_prefix('/').unwrap_or(label).to_string();
    if let Err(reason) = pattern::validate(&path) {
        return Err(PolicyError::InvalidPattern { path, reason });
    }
    let invalid = |field: &'static str, message: String| PolicyError::InvalidValue {
        path: path.clone(),
        field,
        message,
    };

    let mut rule = PathRule {
        path: path.clone(),
        ..PathRule::default()
    };
    let mut names: Vec<String> = Vec::new();
    for (key, value) in body {
        match key.as_str() {
            "comment" => {}
            "capabilities" => {
                names.extend(string_list(value).map_err(|m| invalid("capabilities", m))?)
            }
            "policy" => {
                let Value::String(policy) = value else {
                    return Err(invalid(
                        "policy",
                        format!("expected a string, found {value}"),
                    ));
                };
                let legacy: &[&str] = match policy.as_str() {
                    "deny" => &["deny"],
                    "read" => &["read", "list"],
                    "write" => &["create", "read", "update", "delete", "list"],
                    "sudo" => &["create", "read", "update", "delete", "list", "sudo"],
                    _ => {
                        return Err(PolicyError::UnknownLegacyPolicy {
                            path,
                            policy: policy.clone(),
                        })
                    }
                };
                names.extend(legacy.iter().map(|n| n.to_string()));
            }
            "allowed_parameters" => {
                rule.allowed_parameters =
                    parameter_map(value).map_err(|m| invalid("allowed_parameters", m))?;
            }
            "denied_parameters" => {
                rule.denied_parameters =
                    parameter_map(value).map_err(|m| invalid("denied_parameters", m))?;
            }
            "required_parameters" => {
                let required = string_list(value).map_err(|m| invalid("required_parameters", m))?;
                if let Some(bad) = required.iter().find(|p| p.contains('*')) {
                    return Err(invalid(
                        "required_parameters",
                        format!("parameter key {bad:?}: wildcard is not permitted here"),
                    ));
                }
                rule.required_parameters = required;
            }
            "min_wrapping_ttl" => {
                rule.min_wrapping_ttl =
                    parse_ttl(value).map_err(|m| invalid("min_wrapping_ttl", m))?;
            }
            "max_wrapping_ttl" => {
                rule.max_wrapping_ttl =
                    parse_ttl(value).map_err(|m| invalid("max_wrapping_ttl", m))?;
            }
            "mfa_methods" | "control_group" => {
                return Err(PolicyError::Unsupported {
                    path,
                    key: key.clone(),
                })
            }
            _ => {
                return Err(PolicyError::UnknownKey {
                    path,
                    key: key.clone(),
                })
            }
        }
    }

    for name in &names {
        match Capabilities::from_name(name) {
            Some(capability) => rule.capabilities |= capability,
            None => {
                return Err(PolicyError::UnknownCapability {
                    path,
                    capability: name.clone(),
                })
            }
        }
    }
    if let (Some(min), Some(max)) = (rule.min_wrapping_ttl, rule.max_wrapping_ttl) {
        if max < min {
            return Err(PolicyError::WrappingTtlBounds { path });
        }
    }
    if rule.capabilities.is_deny() {
        // Vault stops reading a block at `deny`: nothing else in it takes effect.
        return Ok(PathRule {
            path,
            capabilities: Capabilities::DENY,
            ..PathRule::default()
        });
    }
    Ok(rule)
}

fn string_list(value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!("expected a list of strings, found {value}"));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!("expected a list of strings, found {other}")),
        })
        .collect()
}

/// `{ "name" = [values...] }`, keys lower-cased; `*` only as a whole key.
fn parameter_map(value: &Value) -> Result<BTreeMap<String, Vec<Value>>, String> {
    let Value::Object(entries) = value else {
        return Err(format!(
            "expected a map of parameter name to list of values, found {value}"
        ));
    };
    let mut out = BTreeMap::new();
    for (key, values) in entries {
        if key.contains('*') && key != "*" {
            return Err(format!(
                "parameter key {key:?} cannot contain non-tail wildcards"
            ));
        }
        let Value::Array(values) = values else {
            return Err(format!(
                "parameter {key:?}: expected a list of values, found {values}"
            ));
        };
        out.insert(key.to_lowercase(), values.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn only_rule(text: &str) -> PathRule {
        let policy = parse("t", text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(policy.paths.len(), 1, "{text}");
        policy.paths.into_iter().next().unwrap_or_default()
    }

    #[test]
    fn parses_every_field_from_hcl() {
        let rule = only_rule(
            r#"
            path "/secret/data/*" {
              capabilities = ["read", "list", "patch"]
              allowed_parameters = {
                "Key" = ["v1", "v2"]
                "*"   = []
              }
              denied_parameters = { "bad" = [] }
              required_parameters = ["a"]
              min_wrapping_ttl = "1m"
              max_wrapping_ttl = 90
              comment = "ignored"
            }"#,
        );
        assert_eq!(rule.path, "secret/data/*");
        assert_eq!(
            rule.capabilities,
            Capabilities::READ | Capabilities::LIST | Capabilities::PATCH
        );
        assert_eq!(
            rule.allowed_parameters.get("key"),
            Some(&vec![json!("v1"), json!("v2")])
        );
        assert_eq!(rule.allowed_parameters.get("*"), Some(&vec![]));
        assert_eq!(rule.denied_parameters.get("bad"), Some(&vec![]));
        assert_eq!(rule.required_parameters, ["a"]);
        assert_eq!(rule.min_wrapping_ttl, Some(Duration::from_secs(60)));
        assert_eq!(rule.max_wrapping_ttl, Some(Duration::from_secs(90)));
    }

    #[test]
    fn json_and_hcl_agree() {
        let hcl = parse(
            "p",
            r#"path "a/+/b" {
                 capabilities = ["update"]
                 allowed_parameters = { "x" = [1, true, "s"] }
               }"#,
        );
        let json = parse(
            "p",
            r#"{"path": {"a/+/b": {"capabilities": ["update"],
                "allowed_parameters": {"x": [1, true, "s"]}}}}"#,
        );
        let (hcl, json) = (hcl.map(|p| p.paths), json.map(|p| p.paths));
        assert_eq!(hcl, json);
        assert!(hcl.is_ok());
    }

    #[test]
    fn repeated_blocks_are_kept() {
        let policy = parse(
            "p",
            r#"
            path "a" { capabilities = ["read"] }
            path "b" { capabilities = ["list"] }
            path "a" { capabilities = ["update"] }
            "#,
        );
        let patterns: Vec<(String, Capabilities)> = policy
            .map(|p| {
                p.paths
                    .into_iter()
                    .map(|r| (r.path, r.capabilities))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(patterns.len(), 3);
        assert!(patterns.contains(&("a".into(), Capabilities::READ)));
        assert!(patterns.contains(&("a".into(), Capabilities::UPDATE)));
        assert!(patterns.contains(&("b".into(), Capabilities::LIST)));
    }

    #[test]
    fn legacy_policy_key_maps_like_vault() {
        let cases = [
            ("deny", Capabilities::DENY),
            ("read", Capabilities::READ | Capabilities::LIST),
            (
                "write",
                Capabilities::CREATE
                    | Capabilities::READ
                    | Capabilities::UPDATE
                    | Capabilities::DELETE
                    | Capabilities::LIST,
            ),
            (
                "sudo",
                Capabilities::CREATE
                    | Capabilities::READ
                    | Capabilities::UPDATE
                    | Capabilities::DELETE
                    | Capabilities::LIST
                    | Capabilities::SUDO,
            ),
        ];
        for (legacy, expected) in cases {
            let rule = only_rule(&format!("path \"x\" {{\n policy = \"{legacy}\"\n}}"));
            assert_eq!(rule.capabilities, expected, "{legacy}");
        }
        // Combined with capabilities: the union, as Vault appends.
        let rule = only_rule("path \"x\" {\n policy = \"read\"\n capabilities = [\"patch\"]\n}");
        assert_eq!(
            rule.capabilities,
            Capabilities::READ | Capabilities::LIST | Capabilities::PATCH
        );
    }

    #[test]
    fn deny_drops_everything_else() {
        let rule = only_rule(
            r#"path "x" {
                 capabilities = ["read", "deny", "sudo"]
                 allowed_parameters = { "a" = [] }
                 min_wrapping_ttl = "1h"
               }"#,
        );
        assert_eq!(rule.capabilities, Capabilities::DENY);
        assert!(rule.allowed_parameters.is_empty());
        assert_eq!(rule.min_wrapping_ttl, None);
    }

    #[test]
    fn names_are_lower_cased_and_root_is_reserved() {
        let policy = parse("  My-Policy ", r#"path "x" { capabilities = ["read"] }"#);
        assert_eq!(policy.map(|p| p.name), Ok("my-policy".to_string()));
        assert_eq!(
            parse("Root", r#"path "x" { capabilities = ["read"] }"#),
            Err(PolicyError::ReservedName("root".into()))
        );
        assert_eq!(parse(" ", "path \"x\" {}"), Err(PolicyError::EmptyName));
    }

    #[test]
    fn comment_only_policy_has_no_rules() {
        let policy = parse("p", "# nothing here yet\n");
        assert_eq!(policy.map(|p| p.paths.len()), Ok(0));
    }

    #[test]
    fn errors_are_specific() {
        type Check = fn(&PolicyError) -> bool;
        let cases: [(&str, Check); 22] = [
            ("", |e| *e == PolicyError::Empty),
            ("  \n\t ", |e| *e == PolicyError::Empty),
            ("path \"x\" { capabilities = [\"read\"] ", |e| {
                matches!(e, PolicyError::Hcl(_))
            }),
            ("{\"path\": ", |e| matches!(e, PolicyError::Json(_))),
            ("{\"path\": 5}", |e| matches!(e, PolicyError::Structure(_))),
            ("[1]", |e| matches!(e, PolicyError::Hcl(_))),
            ("\"just a string\"", |e| matches!(e, PolicyError::Hcl(_))),
            ("foo = 1", |e| matches!(e, PolicyError::Structure(_))),
            ("path \"x\" { capabilities = [\"reed\"] }", |e| {
                *e == PolicyError::UnknownCapability {
                    path: "x".into(),
                    capability: "reed".into(),
                }
            }),
            ("path \"x\" { capabilities = [\"root\"] }", |e| {
                matches!(e, PolicyError::UnknownCapability { .. })
            }),
            ("path \"x\" { capabilities = [\"READ\"] }", |e| {
                matches!(e, PolicyError::UnknownCapability { .. })
            }),
            ("path \"x\" { capabilities = \"read\" }", |e| {
                matches!(
                    e,
                    PolicyError::InvalidValue {
                        field: "capabilities",
                        ..
                    }
                )
            }),
            ("path \"x\" { policy = \"admin\" }", |e| {
                matches!(e, PolicyError::UnknownLegacyPolicy { .. })
            }),
            ("path \"a/*/b\" { capabilities = [\"read\"] }", |e| {
                matches!(e, PolicyError::InvalidPattern { .. })
            }),
            ("path \"a/+*\" { capabilities = [\"read\"] }", |e| {
                matches!(e, PolicyError::InvalidPattern { .. })
            }),
            (
                "path \"x\" { capability = [\"read\"] }",
                |e| matches!(e, PolicyError::UnknownKey { key, .. } if key == "capability"),
            ),
            (
                "path \"x\" \"y\" { capabilities = [\"read\"] }",
                |e| matches!(e, PolicyError::UnknownKey { key, .. } if key == "y"),
            ),
            ("path \"x\" { mfa_methods = [\"m\"] }", |e| {
                matches!(e, PolicyError::Unsupported { .. })
            }),
            ("path \"x\" { min_wrapping_ttl = \"soon\" }", |e| {
                matches!(
                    e,
                    PolicyError::InvalidValue {
                        field: "min_wrapping_ttl",
                        ..
                    }
                )
            }),
            (
                "path \"x\" {\n min_wrapping_ttl = \"2m\"\n max_wrapping_ttl = \"1m\"\n}",
                |e| matches!(e, PolicyError::WrappingTtlBounds { .. }),
            ),
            ("path \"x\" { allowed_parameters = { \"a*\" = [] } }", |e| {
                matches!(
                    e,
                    PolicyError::InvalidValue {
                        field: "allowed_parameters",
                        ..
                    }
                )
            }),
            (
                "path \"x\" { denied_parameters = { \"a\" = \"b\" } }",
                |e| {
                    matches!(
                        e,
                        PolicyError::InvalidValue {
                            field: "denied_parameters",
                            ..
                        }
                    )
                },
            ),
        ];
        for (text, check) in cases {
            match parse("p", text) {
                Ok(policy) => panic!("{text:?} parsed: {policy:?}"),
                Err(error) => assert!(check(&error), "{text:?} gave {error:?}"),
            }
        }
    }

    #[test]
    fn error_messages_name_the_path_and_value() {
        let error = parse("p", "path \"secret/x\" { capabilities = [\"reed\"] }");
        assert_eq!(
            error.map_err(|e| e.to_string()),
            Err("path \"secret/x\": invalid capability \"reed\"".to_string())
        );
    }
}

//! The built-in `default` policy, attached to every token unless it is created with
//! `no_default_policy`. The rules are those of Vault 1.16's `default` policy, so a
//! client that works with Vault's defaults works here.
//!
//! Two of its paths carry Vault's identity templating (`{{identity.entity.id}}`).
//! Coffer does not render templates, so those rules only ever match their literal
//! path, which no real request has: they grant nothing until templating exists.

use crate::policy::{parse, Policy};

/// The name of the built-in default policy.
pub const DEFAULT_POLICY_NAME: &str = "default";

/// The text of the built-in `default` policy (what `sys/policies/acl/default` returns
/// before an operator edits it).
pub const DEFAULT_POLICY_TEXT: &str = r#"# Tokens may look up their own properties.
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Tokens may renew themselves.
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Tokens may revoke themselves.
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Tokens may ask what they can do on a path.
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Tokens may read their own identity entity, by id or by name (templated).
path "identity/entity/id/{{identity.entity.id}}" {
    capabilities = ["read"]
}
path "identity/entity/name/{{identity.entity.name}}" {
    capabilities = ["read"]
}

# The UI reads the ACL that results from all of a token's policies.
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Renew a lease given its lease_id in the body (old path and current path).
path "sys/renew" {
    capabilities = ["update"]
}
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Look up a lease: needs the lease id, reveals nothing secret.
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Every token owns its cubbyhole.
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Response wrapping: wrap values, look up and unwrap wrapping tokens.
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# General-purpose hashing.
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}

# Check on a control group request, given its accessor.
path "sys/control-group/request" {
    capabilities = ["update"]
}

# Call the authorization endpoint of any OIDC provider.
path "identity/oidc/provider/+/authorize" {
    capabilities = ["read", "update"]
}
"#;

/// The built-in `default` policy, parsed.
pub fn default_policy() -> Policy {
    match parse(DEFAULT_POLICY_NAME, DEFAULT_POLICY_TEXT) {
        Ok(policy) => policy,
        // The text is a constant; the unit test below parses it.
        Err(error) => unreachable!("the built-in default policy does not parse: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_parses() {
        let policy = default_policy();
        assert_eq!(policy.name, "default");
        let mut patterns: Vec<&str> = policy.paths.iter().map(|r| r.path.as_str()).collect();
        patterns.sort_unstable();
        let mut expected = [
            "auth/token/lookup-self",
            "auth/token/renew-self",
            "auth/token/revoke-self",
            "sys/capabilities-self",
            "identity/entity/id/{{identity.entity.id}}",
            "identity/entity/name/{{identity.entity.name}}",
            "sys/internal/ui/resultant-acl",
            "sys/renew",
            "sys/leases/renew",
            "sys/leases/lookup",
            "cubbyhole/*",
            "sys/wrapping/wrap",
            "sys/wrapping/lookup",
            "sys/wrapping/unwrap",
            "sys/tools/hash",
            "sys/tools/hash/*",
            "sys/control-group/request",
            "identity/oidc/provider/+/authorize",
        ];
        expected.sort_unstable();
        assert_eq!(patterns, expected);
    }
}

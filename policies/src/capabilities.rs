//! Capabilities (what a policy rule grants on a path) and operations (what a request
//! asks for).
//!
//! `Capabilities` is a small bit set. The bit values are Vault's (`deny` = 1, `create`
//! = 2, ... `patch` = 128), so a bitmap logged by Vault reads the same here. `deny`
//! is special: a rule that carries it grants nothing, whatever else it lists.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};

/// A set of ACL capabilities.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u16);

/// Every capability with its name, in bit order (used by parsing and `Debug`).
const NAMED: [(Capabilities, &str); 8] = [
    (Capabilities::DENY, "deny"),
    (Capabilities::CREATE, "create"),
    (Capabilities::READ, "read"),
    (Capabilities::UPDATE, "update"),
    (Capabilities::DELETE, "delete"),
    (Capabilities::LIST, "list"),
    (Capabilities::SUDO, "sudo"),
    (Capabilities::PATCH, "patch"),
];

/// The order in which Vault reports capabilities (`sys/capabilities`).
const REPORT_ORDER: [(Capabilities, &str); 7] = [
    (Capabilities::SUDO, "sudo"),
    (Capabilities::READ, "read"),
    (Capabilities::LIST, "list"),
    (Capabilities::UPDATE, "update"),
    (Capabilities::DELETE, "delete"),
    (Capabilities::CREATE, "create"),
    (Capabilities::PATCH, "patch"),
];

impl Capabilities {
    /// No capability at all (a path nobody granted anything on).
    pub const NONE: Capabilities = Capabilities(0);
    /// Explicit deny: overrides every other capability on the same pattern.
    pub const DENY: Capabilities = Capabilities(1);
    /// Write to a path that does not exist yet.
    pub const CREATE: Capabilities = Capabilities(1 << 1);
    /// Read a path.
    pub const READ: Capabilities = Capabilities(1 << 2);
    /// Write to a path that exists.
    pub const UPDATE: Capabilities = Capabilities(1 << 3);
    /// Delete a path.
    pub const DELETE: Capabilities = Capabilities(1 << 4);
    /// List the keys under a path.
    pub const LIST: Capabilities = Capabilities(1 << 5);
    /// Root-protected endpoints (the request also needs the operation's capability).
    pub const SUDO: Capabilities = Capabilities(1 << 6);
    /// JSON merge-patch a path.
    pub const PATCH: Capabilities = Capabilities(1 << 7);
    /// Every granting capability (everything but `deny`): what the root policy has.
    pub const ALL: Capabilities = Capabilities(0b1111_1110);

    /// The raw bitmap, with Vault's bit values.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// True if every capability in `other` is in `self`.
    pub const fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if no capability is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True if `deny` is set.
    pub const fn is_deny(self) -> bool {
        self.0 & Self::DENY.0 != 0
    }

    /// The capability spelled `name` in a policy (`"read"`, `"deny"`, ...).
    pub fn from_name(name: &str) -> Option<Capabilities> {
        NAMED.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
    }

    /// True if this set grants `operation`. `deny` grants nothing.
    pub const fn allows(self, operation: Operation) -> bool {
        !self.is_deny() && self.contains(operation.capability())
    }

    /// The names Vault reports for this set, in Vault's order (`sudo, read, list,
    /// update, delete, create, patch`). A set with `deny`, or an empty one, is
    /// reported as `["deny"]`, as Vault does.
    pub fn to_strings(self) -> Vec<&'static str> {
        if self.is_deny() {
            return vec!["deny"];
        }
        let names: Vec<&'static str> = REPORT_ORDER
            .iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            vec!["deny"]
        } else {
            names
        }
    }
}

impl BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 | rhs.0)
    }
}

impl BitOrAssign for Capabilities {
    fn bitor_assign(&mut self, rhs: Capabilities) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for Capabilities {
    type Output = Capabilities;
    fn bitand(self, rhs: Capabilities) -> Capabilities {
        Capabilities(self.0 & rhs.0)
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = NAMED
            .iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, n)| *n)
            .collect();
        write!(f, "Capabilities({})", names.join("|"))
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_strings().join(", "))
    }
}

/// Serialises as Vault reports it: a list of names (`["read", "list"]`).
impl serde::Serialize for Capabilities {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.to_strings())
    }
}

/// What a request does to a path, for the ACL check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Write to a path that does not exist yet.
    Create,
    /// Read a path.
    Read,
    /// Write to a path that exists.
    Update,
    /// JSON merge-patch a path.
    Patch,
    /// Delete a path.
    Delete,
    /// List the keys under a path.
    List,
}

impl Operation {
    /// The capability this operation needs.
    pub const fn capability(self) -> Capabilities {
        match self {
            Operation::Create => Capabilities::CREATE,
            Operation::Read => Capabilities::READ,
            Operation::Update => Capabilities::UPDATE,
            Operation::Patch => Capabilities::PATCH,
            Operation::Delete => Capabilities::DELETE,
            Operation::List => Capabilities::LIST,
        }
    }

    /// Whether Vault checks request parameters for this operation (it does for
    /// create, read, update and patch; never for delete and list).
    pub(crate) const fn checks_parameters(self) -> bool {
        matches!(
            self,
            Operation::Create | Operation::Read | Operation::Update | Operation::Patch
        )
    }

    /// The capability's name, as used in denial reasons.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Read => "read",
            Operation::Update => "update",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
            Operation::List => "list",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_strings_uses_vaults_order() {
        let all = Capabilities::ALL;
        assert_eq!(
            all.to_strings(),
            ["sudo", "read", "list", "update", "delete", "create", "patch"]
        );
        assert_eq!(
            (Capabilities::LIST | Capabilities::READ).to_strings(),
            ["read", "list"]
        );
    }

    #[test]
    fn deny_and_empty_report_as_deny() {
        assert_eq!(Capabilities::NONE.to_strings(), ["deny"]);
        assert_eq!(
            (Capabilities::DENY | Capabilities::SUDO).to_strings(),
            ["deny"]
        );
    }

    #[test]
    fn bits_match_vault() {
        let expected = [
            ("deny", 1),
            ("create", 2),
            ("read", 4),
            ("update", 8),
            ("delete", 16),
            ("list", 32),
            ("sudo", 64),
            ("patch", 128),
        ];
        for (name, bits) in expected {
            assert_eq!(Capabilities::from_name(name).map(|c| c.bits()), Some(bits));
        }
        assert_eq!(Capabilities::from_name("root"), None);
        assert_eq!(Capabilities::from_name("READ"), None);
    }

    #[test]
    fn deny_grants_no_operation() {
        let caps = Capabilities::DENY | Capabilities::READ;
        assert!(!caps.allows(Operation::Read));
        assert!(Capabilities::READ.allows(Operation::Read));
        assert!(!Capabilities::READ.allows(Operation::List));
    }

    #[test]
    fn serialises_as_vault_names() {
        let json = serde_json::to_string(&(Capabilities::UPDATE | Capabilities::SUDO)).unwrap();
        assert_eq!(json, r#"["sudo","update"]"#);
        assert_eq!(
            format!("{:?}", Capabilities::READ | Capabilities::DENY),
            "Capabilities(deny|read)"
        );
    }
}

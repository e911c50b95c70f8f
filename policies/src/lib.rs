//! Coffer's ACL policy language, as Vault implements it: parse policies (HCL or
//! JSON), compile a token's policies into an [`Acl`], and decide requests.
//!
//! ```text
//!   text ──parse()──▶ Policy ─┐
//!   text ──parse()──▶ Policy ─┼──Acl::new()──▶ Acl ──allow(&AclRequest)──▶ AclDecision
//!   default_policy() ─────────┘                    └─capabilities(path)──▶ Capabilities
//! ```
//!
//! API boundary: core calls this crate with paths, operations and request fields; the
//! crate knows nothing about HTTP, storage or tokens. Architecture invariant: it does
//! no I/O (no files, clock or network) and holds no state beyond its values, so
//! every function is pure and property-tested against a naive reference evaluator.
//!
//! Evaluation follows `vault/acl.go`: default deny; `deny` beats everything; an exact
//! rule beats any glob; among matching globs (`*` suffix, `+` segments) the one of
//! highest priority wins (see [`Acl`]); rules for the same pattern in several
//! policies merge, different patterns never do.

mod acl;
mod capabilities;
mod default_policy;
mod duration;
mod params;
mod pattern;
mod policy;
mod radix;
mod segments;

pub use acl::{Acl, AclDecision, AclRequest};
pub use capabilities::{Capabilities, Operation};
pub use default_policy::{default_policy, DEFAULT_POLICY_NAME, DEFAULT_POLICY_TEXT};
pub use policy::{parse, PathRule, Policy, PolicyError, ROOT_POLICY};

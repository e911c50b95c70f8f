//! The plugin boundary: everything a secret engine or auth method may depend on.
//!
//! A plugin crate depends on this crate alone. It sees requests ([`Request`]), answers
//! [`Response`]s, and reads and writes through a [`Storage`] view already scoped to its
//! mount (plaintext above the barrier); it cannot reach the barrier, the token store, or
//! another mount's data. Errors are one enum, [`SdkError`], which knows its HTTP status.

pub mod backend;
pub mod cidr;
pub mod duration;
pub mod error;
pub mod fields;
pub mod path;
pub mod request;
pub mod response;
pub mod storage;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod tokenutil;

/// Pooled random bytes for nonces and ids (see the `coffer-random` crate).
pub use coffer_random as random;

pub use backend::{Backend, BackendConfig, BackendKind, Factory, SpecialPaths};
pub use error::SdkError;
pub use request::{Caller, LeaseInfo, MountTtl, Operation, Request};
pub use response::{LoginAuth, RawBody, Response, SecretLease};
pub use storage::{Storage, StorageExt, StorageOp};

/// Whether `v` is its type's default (zero): for serde's `skip_serializing_if`, so a
/// zero field stays out of a stored or wire record.
pub fn is_zero<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

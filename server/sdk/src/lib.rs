//! The plugin boundary: everything a secret engine or auth method may depend on.
//!
//! A plugin crate depends on this crate alone. It sees requests, answers responses, and
//! reads and writes through a storage view already scoped to its mount (plaintext above
//! the barrier); it cannot reach the barrier, the token store, or another mount's data.

pub mod duration;

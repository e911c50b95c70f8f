//! The barrier: the cryptographic seal between Coffer's logic and its storage.
//!
//! Everything written below this crate is ciphertext, except the seal configuration.
//! `cipher` is the byte format, `keyring` the key hierarchy's keys, `shamir` the
//! unseal-key splitting, `unseal` share collection, `barrier` ties them to the
//! replicated store, and `bootstrap` is the joining side of the Raft join challenge.

pub mod barrier;
pub mod bootstrap;
pub mod cipher;
pub mod keyring;
pub mod shamir;
pub mod unseal;

#[cfg(test)]
mod tests;

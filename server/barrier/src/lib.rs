//! The barrier: the cryptographic seal between Coffer's logic and its storage.
//!
//! Everything written below this crate is ciphertext, except the seal configuration.

pub mod cipher;
pub mod keyring;
pub mod shamir;

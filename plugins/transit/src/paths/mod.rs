//! Endpoint handlers, one module per group: key management, symmetric encryption,
//! signing and HMACs, export/backup/restore, and the keyless tools.

pub mod crypt;
pub mod export;
pub mod keys;
pub mod sign;
pub mod tools;

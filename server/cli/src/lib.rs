//! The `coffer` binary's library half: the server composition root (`server`), Vault's
//! config format (`config`), and the command-line entry point (`cli`).
//!
//! Integration tests run this same entry point as a separate process.

pub mod cli;
pub mod config;
pub mod logging;
pub mod server;

pub use cli::main_entry;

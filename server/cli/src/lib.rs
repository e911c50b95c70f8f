//! The `coffer` binary's library half: the server composition root (`server`), Vault's
//! config format (`config`), and the command-line entry point (`cli`).
//! The operator CLI (`commands`) talks to a server over HTTP(S) only, through
//! `client`, reading `input` and printing `output` the way the `vault` CLI does.
//!
//! Integration tests run this same entry point as a separate process.

pub mod cli;
pub mod client;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod input;
pub mod logging;
pub mod output;
pub mod server;

pub use cli::main_entry;

//! The `coffer` binary's library half: server composition root and operator CLI.

pub mod config;

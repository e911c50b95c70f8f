//! External secret-engine plugins: both ends of Coffer's plugin protocol (version
//! [`wire::PROTOCOL_MAJOR`].[`wire::PROTOCOL_MINOR`], specified in `plugins/PROTOCOL.md`).
//!
//! - The server side is [`ExternalBackend`]: an sdk [`coffer_sdk::Backend`] that runs the
//!   plugin as a child process, speaks to it over its stdin/stdout, serves its storage
//!   calls from the mount's own `Storage` view (so the plugin sees only its prefix, only
//!   plaintext above the barrier, and each of its commits is one Raft entry), restarts
//!   it when it dies and bounds every call with a timeout. The core builds one per mount
//!   of a catalog-registered plugin; it checks the executable through a
//!   [`PluginSource`] before every start.
//! - The plugin side is [`serve`] (or [`serve_factory`]): a plugin binary implements
//!   `Backend` with the normal sdk and calls it from `main`.
//!
//! The wire format is newline-delimited JSON ([`frame`]) carrying the messages of
//! [`wire`]. This crate depends on the sdk only (plus tokio and serde); the core depends
//! on it, never the other way.

pub mod frame;
pub mod wire;

mod conn;
mod host;
mod serve;

#[cfg(test)]
mod tests;

pub use host::{ExternalBackend, ExternalConfig, PluginCommand, PluginSource, Timeouts};
pub use serve::{run, serve, serve_factory, Init, PluginError};

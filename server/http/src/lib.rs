//! The HTTP API: Vault's `/v1/...` routes on actix-web, TLS with rustls (ring provider).
//!
//! This crate turns HTTP into [`coffer_core::LogicalRequest`]s and core answers back
//! into Vault's JSON envelope (or bare JSON for the `sys/` paths that use it). It owns
//! the request-size limit, JSON decoding errors, the token headers, `Cache-Control`,
//! and the mapping from errors to `{"errors": [...]}`.

pub mod envelope;
pub mod forward;
pub mod raft_routes;
pub mod routes;
pub mod tls;

use std::sync::Arc;

use coffer_core::Core;

pub use routes::configure;

/// Request body limit, as Vault's default `max_request_size` (32 MiB).
pub const MAX_REQUEST_SIZE: usize = 32 * 1024 * 1024;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The core all requests go to.
    pub core: Arc<Core>,
    /// Replays requests a standby cannot serve on the active node (`None`: redirect).
    pub forwarder: Option<forward::SharedForwarder>,
    /// Set on the cluster listener only: requests forwarded by (mutually authenticated)
    /// standbys may name the original client address.
    pub trusted_forwarding: bool,
}

impl AppState {
    /// The API state of a node that never forwards (single node, tests).
    pub fn new(core: Arc<Core>) -> AppState {
        AppState {
            core,
            forwarder: None,
            trusted_forwarding: false,
        }
    }
}

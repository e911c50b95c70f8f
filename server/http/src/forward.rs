//! What a standby does with the requests it cannot serve, and consistent reads.
//!
//! * **Forwarding.** On an unsealed standby every request with a writing method (PUT,
//!   POST, PATCH, DELETE) is replayed on the active node (the composition root's
//!   [`Forwarder`] sends it over the cluster port's mutual TLS) and the active node's
//!   answer is returned as is, headers included (`X-Vault-Index` among them). Reads are
//!   served locally; a read that turns out to need the leader (the core answers
//!   `Standby`: e.g. autopilot state, or a token whose use count must be written) is
//!   forwarded the same way. Nothing was committed on the standby in that case, so the
//!   replay is safe. `sys/init`, `sys/unseal` and `sys/storage/raft/join` are always
//!   local. A forwarded request carries [`FORWARDED_HEADER`] and is never forwarded
//!   again.
//! * **Redirects.** With `X-Vault-No-Request-Forwarding`, without a forwarder, or when the
//!   active node cannot be reached at all (the request was not sent), a standby answers
//!   `307` with `Location` at the active node's `api_addr` (same path and query). If the
//!   active node is unknown it answers 503.
//! * **Consistency.** A request with `X-Vault-Index: N` waits (up to [`INDEX_WAIT`]) until
//!   this node has applied index N. If it still has not, the request is forwarded when it
//!   says `X-Vault-Inconsistent: forward-active-node`, and refused with 412 otherwise.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{HeaderName, HeaderValue, LOCATION};
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};

use crate::envelope::error_response;
use crate::AppState;

/// Set on a request a standby forwards to the active node.
pub const FORWARDED_HEADER: &str = "x-coffer-forwarded";
/// The client's address, carried by a forwarded request.
pub const CLIENT_ADDR_HEADER: &str = "x-forwarded-for";
/// Ask a standby to redirect instead of forwarding.
pub const NO_FORWARDING_HEADER: &str = "x-vault-no-request-forwarding";
/// The Raft index a client needs this node to have applied.
pub const INDEX_HEADER: &str = "x-vault-index";
/// What to do when the index is not applied in time.
pub const INCONSISTENT_HEADER: &str = "x-vault-inconsistent";
/// How long a request waits for its `X-Vault-Index`.
pub const INDEX_WAIT: Duration = Duration::from_secs(2);

/// Headers that belong to one connection and are not replayed.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
];

/// A request to replay on the active node.
#[derive(Clone, Debug)]
pub struct ForwardRequest {
    /// The HTTP method.
    pub method: String,
    /// `/v1/...` with the query string.
    pub path_and_query: String,
    /// End-to-end headers (hop-by-hop ones removed), plus [`FORWARDED_HEADER`] and the
    /// client address.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body as received.
    pub body: Vec<u8>,
}

/// The active node's answer.
#[derive(Clone, Debug)]
pub struct ForwardResponse {
    /// HTTP status.
    pub status: u16,
    /// End-to-end headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The request never reached the active node (no leader known, connection refused):
    /// redirecting the client is safe.
    #[error("the active node could not be reached: {0}")]
    NotSent(String),
    /// It may have reached it (timeout mid-way, broken connection): the outcome is
    /// unknown and the client must not be told to simply retry elsewhere.
    #[error("forwarding to the active node failed: {0}")]
    Failed(String),
}

/// Replays requests on the active node (implemented by the composition root over the
/// cluster transport).
#[async_trait::async_trait]
pub trait Forwarder: Send + Sync {
    /// Send `req` to the current active node.
    async fn forward(&self, req: ForwardRequest) -> Result<ForwardResponse, ForwardError>;
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Whether a request may be replayed elsewhere (it was not itself forwarded).
fn forwarded(req: &HttpRequest) -> bool {
    req.headers().contains_key(FORWARDED_HEADER)
}

fn is_read(method: &Method) -> bool {
    matches!(method.as_str(), "GET" | "HEAD" | "LIST")
}

/// Writes every node handles itself.
fn always_local(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "sys/init" | "sys/unseal" | "sys/storage/raft/join" | "sys/seal-status" | "sys/health"
    )
}

/// The client's address: the peer, or (on the cluster port only, where the peer is a
/// mutually authenticated node) the address a forwarding standby reported.
pub fn client_addr(req: &HttpRequest, state: &AppState) -> Option<String> {
    if state.trusted_forwarding && forwarded(req) {
        if let Some(addr) = header(req, CLIENT_ADDR_HEADER) {
            return Some(addr.to_string());
        }
    }
    req.peer_addr().map(|a| a.ip().to_string())
}

/// Before the request is handled here: wait for its index, or forward it. `None` means
/// "handle it locally".
pub async fn before_local(
    req: &HttpRequest,
    method: &Method,
    path: &str,
    body: &[u8],
    state: &AppState,
) -> Option<HttpResponse> {
    let core = &state.core;
    if core.is_sealed() || always_local(path) {
        return None;
    }
    if let Some(index) = header(req, INDEX_HEADER).and_then(|v| v.trim().parse::<u64>().ok()) {
        if !core.cluster().wait_for_index(index, INDEX_WAIT).await {
            let forward_ok = header(req, INCONSISTENT_HEADER)
                .is_some_and(|v| v.eq_ignore_ascii_case("forward-active-node"));
            if forward_ok && !core.cluster().is_leader() && !forwarded(req) {
                return Some(forward_or_redirect(req, method, path, body, state).await);
            }
            return Some(error_response(
                412,
                vec![format!(
                    "required index {index} is not yet applied on this node (applied: {})",
                    core.cluster().applied_index()
                )],
            ));
        }
    }
    if is_read(method) || forwarded(req) || core.cluster().is_leader() {
        return None;
    }
    Some(forward_or_redirect(req, method, path, body, state).await)
}

/// The core said `Standby` for a request handled here: forward it (or redirect).
pub async fn standby_fallback(
    req: &HttpRequest,
    method: &Method,
    path: &str,
    body: &[u8],
    state: &AppState,
) -> Option<HttpResponse> {
    if forwarded(req) {
        return None;
    }
    Some(forward_or_redirect(req, method, path, body, state).await)
}

fn path_and_query(req: &HttpRequest, path: &str) -> String {
    match req.query_string() {
        "" => format!("/v1/{path}"),
        q => format!("/v1/{path}?{q}"),
    }
}

/// Forward to the active node, or answer 307 / 503 (see the module docs).
async fn forward_or_redirect(
    req: &HttpRequest,
    method: &Method,
    path: &str,
    body: &[u8],
    state: &AppState,
) -> HttpResponse {
    let redirect = || redirect(req, path, state);
    if req.headers().contains_key(NO_FORWARDING_HEADER) {
        return redirect();
    }
    let Some(forwarder) = &state.forwarder else {
        return redirect();
    };
    let mut headers: Vec<(String, Vec<u8>)> = req
        .headers()
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
        .filter(|(name, _)| name.as_str() != FORWARDED_HEADER)
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect();
    headers.push((FORWARDED_HEADER.into(), b"1".to_vec()));
    if let Some(addr) = client_addr(req, state) {
        headers.retain(|(n, _)| n != CLIENT_ADDR_HEADER);
        headers.push((CLIENT_ADDR_HEADER.into(), addr.into_bytes()));
    }
    let fwd = ForwardRequest {
        method: method.as_str().to_string(),
        path_and_query: path_and_query(req, path),
        headers,
        body: body.to_vec(),
    };
    match forwarder.forward(fwd).await {
        Ok(resp) => {
            let mut builder = HttpResponse::build(
                actix_web::http::StatusCode::from_u16(resp.status)
                    .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY),
            );
            for (name, value) in resp.headers {
                if HOP_BY_HOP.contains(&name.as_str()) {
                    continue;
                }
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_bytes(&value),
                ) {
                    builder.append_header((n, v));
                }
            }
            builder.body(resp.body)
        }
        Err(ForwardError::NotSent(why)) => {
            tracing::info!("request forwarding failed before sending ({why}); redirecting");
            redirect()
        }
        Err(e) => {
            tracing::warn!("{e}");
            error_response(503, vec![e.to_string()])
        }
    }
}

/// 307 to the active node's API address, or 503 when no active node is known.
fn redirect(req: &HttpRequest, path: &str, state: &AppState) -> HttpResponse {
    let cluster = state.core.cluster();
    let own = &state.core.config().api_addr;
    match cluster.leader_api_addr() {
        Some(leader) if !cluster.is_leader() && leader != *own && !leader.is_empty() => {
            let location = format!(
                "{}{}",
                leader.trim_end_matches('/'),
                path_and_query(req, path)
            );
            HttpResponse::TemporaryRedirect()
                .insert_header((LOCATION, location))
                .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
                .finish()
        }
        _ => error_response(
            503,
            vec!["local node not active but active cluster node not found".into()],
        ),
    }
}

/// A shared forwarder handle.
pub type SharedForwarder = Arc<dyn Forwarder>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_setup_paths_are_pinned_locally() {
        for p in [
            "sys/init",
            "sys/unseal",
            "sys/storage/raft/join",
            "sys/health/",
        ] {
            assert!(always_local(p), "{p}");
        }
        for p in [
            "sys/seal",
            "secret/data/x",
            "sys/step-down",
            "sys/rekey/init",
        ] {
            assert!(!always_local(p), "{p}");
        }
        assert!(is_read(&Method::GET));
        assert!(is_read(&Method::from_bytes(b"LIST").expect("method")));
        assert!(!is_read(&Method::PATCH));
    }
}

//! The Raft endpoints that do not fit the enveloped pipeline: `sys/storage/raft/join`
//! (bare JSON, on a new node that has no tokens yet) and the snapshot restore
//! (`POST sys/storage/raft/snapshot[-force]`, whose body is the binary snapshot file).

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};
use coffer_core::cluster_api::JoinRequest;

use crate::envelope::{bare, core_error, error_response};
use crate::AppState;

/// Serve `path` if it is one of these endpoints.
pub async fn handle(
    req: &HttpRequest,
    method: &Method,
    path: &str,
    body: &[u8],
    state: &AppState,
    token: Option<String>,
) -> Option<HttpResponse> {
    let is_put = method == Method::PUT || method == Method::POST;
    let resp = match path.trim_end_matches('/') {
        "sys/storage/raft/join" if is_put => {
            let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
                b"{}"
            } else {
                body
            };
            match serde_json::from_slice::<JoinRequest>(text) {
                Ok(join) => match state.core.raft_join(join).await {
                    Ok(v) => bare(200, &v),
                    Err(e) => core_error(&e),
                },
                Err(e) => error_response(400, vec![format!("failed to parse JSON input: {e}")]),
            }
        }
        "sys/storage/raft/join" => error_response(405, vec!["unsupported operation".into()]),
        p @ ("sys/storage/raft/snapshot" | "sys/storage/raft/snapshot-force") if is_put => {
            let force = p.ends_with("-force");
            match state
                .core
                .snapshot_restore(token.as_deref(), body, force)
                .await
            {
                Ok(index) => {
                    let mut resp = HttpResponse::NoContent();
                    resp.insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"));
                    if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
                        resp.insert_header((HeaderName::from_static("x-vault-index"), v));
                    }
                    resp.finish()
                }
                Err(coffer_core::CoreError::Standby { .. }) => {
                    return crate::forward::standby_fallback(req, method, path, body, state).await
                }
                Err(e) => core_error(&e),
            }
        }
        _ => return None,
    };
    Some(resp)
}

//! Route table: the bare-JSON `sys/` endpoints and the catch-all that feeds the core.

use std::collections::BTreeMap;

use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};
use coffer_core::seal::{HealthState, InitRequest};
use coffer_core::{CoreError, LogicalRequest};
use coffer_sdk::Operation;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::envelope::{bare, core_error, error_response, no_content, render};
use crate::{AppState, MAX_REQUEST_SIZE};

/// Register Coffer's routes on an actix `App`.
///
/// Everything under `/v1/` goes to one handler, installed as the default service and
/// matched by prefix: a `/v1/{tail:.*}` resource would run actix-router's regex engine on
/// every request (5% of a KV read's CPU), for a match a `strip_prefix` does.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.default_service(web::to(dispatch));
}

/// The path after `/v1/` (percent-decoded as actix-router does for path parameters), or
/// `None` outside `/v1/`.
fn api_path(req: &HttpRequest) -> Option<&str> {
    req.match_info().as_str().strip_prefix("/v1/")
}

/// Read the whole body, enforcing the size limit.
async fn read_body(mut payload: web::Payload) -> Result<Vec<u8>, HttpResponse> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| error_response(400, vec![format!("failed to read request body: {e}")]))?;
        if body.len() + chunk.len() > MAX_REQUEST_SIZE {
            return Err(error_response(
                413,
                vec![format!(
                    "request body too large: the limit is {MAX_REQUEST_SIZE} bytes"
                )],
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Decode a JSON object body; empty means `{}`.
fn parse_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("failed to parse JSON input: the body must be a JSON object".into()),
        Err(e) => Err(format!("failed to parse JSON input: {e}")),
    }
}

/// Decode a typed body for a bare endpoint.
fn parse_typed<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, BadBody> {
    let text: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text).map_err(|e| BadBody(format!("failed to parse JSON input: {e}")))
}

/// A body that did not decode: rendered as a 400 in Vault's envelope.
struct BadBody(String);

impl BadBody {
    fn response(self) -> HttpResponse {
        error_response(400, vec![self.0])
    }
}

fn query_map(req: &HttpRequest) -> BTreeMap<String, String> {
    web::Query::<BTreeMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

fn token_of(req: &HttpRequest) -> Option<String> {
    if let Some(t) = req
        .headers()
        .get("x-vault-token")
        .and_then(|v| v.to_str().ok())
    {
        return Some(t.trim().to_string());
    }
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string())
}

fn result<T: serde::Serialize>(r: Result<T, CoreError>) -> HttpResponse {
    match r {
        Ok(body) => bare(200, &body),
        Err(e) => core_error(&e),
    }
}

/// Every `/v1/...` request (anything else is 404): forwarding, the raft and bare `sys/`
/// routes, then the core pipeline.
async fn dispatch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let Some(path) = api_path(&req).map(str::to_string) else {
        return error_response(404, vec!["no handler for route".into()]);
    };
    let body = match read_body(payload).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let method = req.method().clone();
    if let Some(resp) = crate::forward::before_local(&req, &method, &path, &body, &state).await {
        return resp;
    }
    if let Some(resp) =
        crate::raft_routes::handle(&req, &method, &path, &body, &state, token_of(&req)).await
    {
        return resp;
    }
    if let Some(resp) = bare_sys(&req, &method, &path, &body, &state).await {
        return resp;
    }
    logical(&req, method, path, &body, &state).await
}

#[derive(Deserialize)]
struct UnsealBody {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    reset: bool,
}

#[derive(Deserialize)]
struct RekeyInitBody {
    #[serde(default)]
    secret_shares: u32,
    #[serde(default)]
    secret_threshold: u32,
    #[serde(default)]
    require_verification: bool,
    #[serde(default)]
    pgp_keys: Option<Vec<String>>,
    #[serde(default)]
    backup: bool,
}

#[derive(Deserialize)]
struct KeyNonceBody {
    #[serde(default)]
    key: String,
    #[serde(default)]
    nonce: String,
}

#[derive(Deserialize)]
struct GenerateRootBody {
    #[serde(default)]
    otp: Option<String>,
    #[serde(default)]
    pgp_key: Option<String>,
}

fn method_not_allowed() -> HttpResponse {
    error_response(405, vec!["unsupported operation".into()])
}

/// The `sys/` endpoints that answer bare JSON and mostly need no token.
async fn bare_sys(
    req: &HttpRequest,
    method: &Method,
    path: &str,
    body: &[u8],
    state: &AppState,
) -> Option<HttpResponse> {
    let core = &state.core;
    let is_get = method == Method::GET;
    let is_put = method == Method::PUT || method == Method::POST;
    let resp = match path.trim_end_matches('/') {
        "sys/init" if is_get => result(
            core.is_initialized()
                .map(|i| serde_json::json!({ "initialized": i })),
        ),
        "sys/init" if is_put => match parse_typed::<InitRequest>(body) {
            Ok(init) => result(core.init(init).await),
            Err(bad) => bad.response(),
        },
        "sys/init" => method_not_allowed(),
        "sys/seal-status" if is_get => result(core.seal_status()),
        "sys/seal-status" => method_not_allowed(),
        "sys/unseal" if is_put => match parse_typed::<UnsealBody>(body) {
            Ok(b) => result(core.unseal(b.key.as_deref(), b.reset).await),
            Err(bad) => bad.response(),
        },
        "sys/unseal" => method_not_allowed(),
        "sys/health" if is_get || method == Method::HEAD => health(req, method, state),
        "sys/health" => method_not_allowed(),
        "sys/leader" if is_get => result(core.leader()),
        "sys/rekey/init" if is_get => result(core.rekey_status()),
        "sys/rekey/init" if is_put => match parse_typed::<RekeyInitBody>(body) {
            Ok(b) if b.pgp_keys.as_ref().is_some_and(|k| !k.is_empty()) || b.backup => {
                error_response(
                    400,
                    vec!["PGP-encrypted key shares are not supported by coffer".into()],
                )
            }
            Ok(b) => {
                result(core.rekey_init(b.secret_shares, b.secret_threshold, b.require_verification))
            }
            Err(bad) => bad.response(),
        },
        "sys/rekey/init" if method == Method::DELETE => match core.rekey_cancel() {
            Ok(()) => no_content(),
            Err(e) => core_error(&e),
        },
        "sys/rekey/update" if is_put => match parse_typed::<KeyNonceBody>(body) {
            Ok(b) => result(core.rekey_update(&b.key, &b.nonce).await),
            Err(bad) => bad.response(),
        },
        "sys/generate-root/attempt" if is_get => result(core.generate_root_status()),
        "sys/generate-root/attempt" if is_put => match parse_typed::<GenerateRootBody>(body) {
            Ok(b) => result(core.generate_root_init(b.otp.as_deref(), b.pgp_key.as_deref())),
            Err(bad) => bad.response(),
        },
        "sys/generate-root/attempt" if method == Method::DELETE => {
            match core.generate_root_cancel() {
                Ok(()) => no_content(),
                Err(e) => core_error(&e),
            }
        }
        "sys/generate-root/update" if is_put => match parse_typed::<KeyNonceBody>(body) {
            Ok(b) => result(core.generate_root_update(&b.key, &b.nonce).await),
            Err(bad) => bad.response(),
        },
        _ => return None,
    };
    Some(resp)
}

/// `sys/health` with Vault's code-override query parameters.
fn health(req: &HttpRequest, method: &Method, state: &AppState) -> HttpResponse {
    let query = query_map(req);
    let code = |name: &str, default: u16| -> Result<u16, BadBody> {
        match query.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| BadBody(format!("bad code for {name}: {v:?}"))),
        }
    };
    let flag = |name: &str| {
        query
            .get(name)
            .map(|v| v.is_empty() || v == "true" || v == "1")
            .unwrap_or(false)
    };
    let (health_state, body) = match state.core.health() {
        Ok(x) => x,
        Err(e) => return core_error(&e),
    };
    let status = match health_state {
        HealthState::Active => code("activecode", 200),
        HealthState::Standby if flag("standbyok") => code("activecode", 200),
        HealthState::Standby => code("standbycode", 429),
        HealthState::Sealed => code("sealedcode", 503),
        HealthState::Uninitialized => code("uninitcode", 501),
    };
    let status = match status {
        Ok(s) => s,
        Err(bad) => return bad.response(),
    };
    if method == Method::HEAD {
        return HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::OK),
        )
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .finish();
    }
    bare(status, &body)
}

fn operation_of(method: &Method, query: &BTreeMap<String, String>) -> Option<Operation> {
    let list_flag = query
        .get("list")
        .is_some_and(|v| v == "true" || v == "1" || v.is_empty());
    Some(match method.as_str() {
        "GET" | "HEAD" if list_flag => Operation::List,
        "GET" | "HEAD" => Operation::Read,
        "LIST" => Operation::List,
        "PUT" | "POST" => Operation::Update,
        "DELETE" => Operation::Delete,
        "PATCH" => Operation::Patch,
        _ => return None,
    })
}

async fn logical(
    req: &HttpRequest,
    method: Method,
    mut path: String,
    body: &[u8],
    state: &AppState,
) -> HttpResponse {
    let query = query_map(req);
    let Some(operation) = operation_of(&method, &query) else {
        return method_not_allowed();
    };
    if operation == Operation::Patch {
        let ct = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !ct.starts_with("application/merge-patch+json") {
            return error_response(
                415,
                vec![format!(
                    "PATCH requires Content-Type application/merge-patch+json, got {ct:?}"
                )],
            );
        }
    }
    let data = if matches!(operation, Operation::Read | Operation::List) {
        let mut map = Map::new();
        for (k, v) in &query {
            if k != "list" {
                map.insert(k.clone(), Value::String(v.clone()));
            }
        }
        map
    } else {
        match parse_object(body) {
            Ok(m) => m,
            Err(msg) => return error_response(400, vec![msg]),
        }
    };
    if operation == Operation::List && !path.ends_with('/') {
        path.push('/');
    }
    let wrap_ttl = match req
        .headers()
        .get("x-vault-wrap-ttl")
        .and_then(|v| v.to_str().ok())
    {
        None => None,
        Some(v) => match coffer_sdk::duration::parse_duration(v) {
            Ok(d) => Some(d),
            Err(e) => return error_response(400, vec![format!("invalid X-Vault-Wrap-TTL: {e}")]),
        },
    };
    let request = LogicalRequest {
        operation,
        path,
        token: token_of(req),
        data,
        query,
        wrap_ttl,
        remote_addr: crate::forward::client_addr(req, state),
    };
    let original_path = request.path.clone();
    match state.core.handle_request(request).await {
        Ok(resp) => render(resp),
        Err(e @ CoreError::Standby { .. }) => {
            crate::forward::standby_fallback(req, &method, &original_path, body, state)
                .await
                .unwrap_or_else(|| core_error(&e))
        }
        Err(e) => core_error(&e),
    }
}

//! Rendering answers: Vault's response envelope, bare JSON, and the error envelope.

use actix_web::http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use coffer_core::{CoreError, LogicalResponse};
use serde::Serialize;
use serde_json::{json, Map, Value};

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn base(code: u16) -> actix_web::HttpResponseBuilder {
    let mut b = HttpResponse::build(status(code));
    b.insert_header((CACHE_CONTROL, "no-store"));
    b
}

/// `{"errors": [...]}` with the given status.
pub fn error_response(code: u16, messages: Vec<String>) -> HttpResponse {
    base(code)
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(json!({ "errors": messages }).to_string())
}

/// An error from the core, rendered with its status.
pub fn core_error(err: &CoreError) -> HttpResponse {
    let code = err.status();
    if code >= 500 {
        tracing::warn!(status = code, error = %err, "request failed");
    }
    error_response(code, err.messages())
}

/// Bare JSON (the `sys/` endpoints that do not use the envelope).
pub fn bare<T: Serialize>(code: u16, body: &T) -> HttpResponse {
    match serde_json::to_string(body) {
        Ok(text) => base(code)
            .insert_header((CONTENT_TYPE, "application/json"))
            .body(text),
        Err(e) => error_response(500, vec![format!("failed to encode response: {e}")]),
    }
}

/// A 204.
pub fn no_content() -> HttpResponse {
    base(204).finish()
}

/// Render a core answer as Vault's envelope (or 204, or a raw body).
pub fn render(resp: LogicalResponse) -> HttpResponse {
    let mut builder = base(resp.status);
    if resp.index > 0 {
        if let Ok(v) = HeaderValue::from_str(&resp.index.to_string()) {
            builder.insert_header((HeaderName::from_static("x-vault-index"), v));
        }
    }
    if let Some(raw) = resp.raw {
        return builder
            .status(status(raw.status))
            .insert_header((CONTENT_TYPE, raw.content_type))
            .body(raw.body);
    }
    let empty = resp.data.is_none()
        && resp.auth.is_none()
        && resp.wrap_info.is_none()
        && resp.warnings.is_empty()
        && resp.lease_id.is_empty();
    if empty && resp.status == 204 {
        return builder.status(StatusCode::NO_CONTENT).finish();
    }
    let code = if resp.status == 204 { 200 } else { resp.status };
    let mut body = Map::new();
    if resp.copy_data_to_top {
        if let Some(data) = &resp.data {
            for (k, v) in data {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    body.insert("request_id".into(), Value::String(resp.request_id));
    body.insert("lease_id".into(), Value::String(resp.lease_id));
    body.insert("renewable".into(), Value::Bool(resp.renewable));
    body.insert("lease_duration".into(), json!(resp.lease_duration));
    body.insert(
        "data".into(),
        resp.data.map(Value::Object).unwrap_or(Value::Null),
    );
    body.insert("wrap_info".into(), resp.wrap_info.unwrap_or(Value::Null));
    body.insert(
        "warnings".into(),
        if resp.warnings.is_empty() {
            Value::Null
        } else {
            json!(resp.warnings)
        },
    );
    body.insert("auth".into(), resp.auth.unwrap_or(Value::Null));
    body.insert("mount_type".into(), Value::String(String::new()));
    builder
        .status(status(code))
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(Value::Object(body).to_string())
}

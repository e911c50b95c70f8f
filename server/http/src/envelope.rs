//! Rendering answers: Vault's response envelope, bare JSON, and the error envelope.

use actix_web::http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use coffer_core::{CoreError, LogicalResponse};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::json;

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
    match serde_json::to_vec(&Envelope(&resp)) {
        Ok(body) => builder
            .status(status(code))
            .insert_header((CONTENT_TYPE, "application/json"))
            .body(body),
        Err(e) => error_response(500, vec![format!("failed to encode response: {e}")]),
    }
}

/// The envelope's own keys (a `copy_data_to_top` field of the same name loses to them;
/// the CLI strips them to find such copied data).
pub const ENVELOPE_KEYS: [&str; 9] = [
    "request_id",
    "lease_id",
    "renewable",
    "lease_duration",
    "data",
    "wrap_info",
    "warnings",
    "auth",
    "mount_type",
];

/// Vault's envelope, serialised straight from the response (no intermediate `Value`
/// tree, no clones of `data`).
struct Envelope<'a>(&'a LogicalResponse);

impl Serialize for Envelope<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let resp = self.0;
        let mut map = serializer.serialize_map(None)?;
        if resp.copy_data_to_top {
            if let Some(data) = &resp.data {
                for (k, v) in data {
                    if !ENVELOPE_KEYS.contains(&k.as_str()) {
                        map.serialize_entry(k, v)?;
                    }
                }
            }
        }
        map.serialize_entry("request_id", &resp.request_id)?;
        map.serialize_entry("lease_id", &resp.lease_id)?;
        map.serialize_entry("renewable", &resp.renewable)?;
        map.serialize_entry("lease_duration", &resp.lease_duration)?;
        map.serialize_entry("data", &resp.data)?;
        map.serialize_entry("wrap_info", &resp.wrap_info)?;
        let warnings = (!resp.warnings.is_empty()).then_some(&resp.warnings);
        map.serialize_entry("warnings", &warnings)?;
        map.serialize_entry("auth", &resp.auth)?;
        map.serialize_entry("mount_type", "")?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    #[test]
    fn envelope_matches_vaults_shape() {
        let mut data = Map::new();
        data.insert("value".into(), json!("x"));
        data.insert("request_id".into(), json!("shadowed"));
        let resp = LogicalResponse {
            request_id: "id-1".into(),
            status: 200,
            data: Some(data),
            lease_duration: 60,
            ..Default::default()
        };
        let v: Value =
            serde_json::from_slice(&serde_json::to_vec(&Envelope(&resp)).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({
                "request_id": "id-1", "lease_id": "", "renewable": false, "lease_duration": 60,
                "data": {"value": "x", "request_id": "shadowed"}, "wrap_info": null,
                "warnings": null, "auth": null, "mount_type": ""
            })
        );
        let top = LogicalResponse {
            copy_data_to_top: true,
            warnings: vec!["w".into()],
            ..resp
        };
        let text = serde_json::to_string(&Envelope(&top)).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["value"], "x");
        assert_eq!(v["request_id"], "id-1");
        assert_eq!(v["warnings"], json!(["w"]));
        // The shadowed data field is only inside `data`, not repeated at the top.
        assert_eq!(
            text.matches("\"request_id\":\"shadowed\"").count(),
            1,
            "{text}"
        );
    }
}

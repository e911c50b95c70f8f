//! Keyless tools: `hash(/:algorithm)` and `random(/:source)(/:bytes)`.

use coffer_sdk::{Request, Response, SdkError};
use serde_json::json;

use crate::codec::{b64, b64_decode, Fields};
use crate::crypto::{self, HashAlg};

/// Most bytes `random` hands out at once (Vault's limit).
const MAX_RANDOM_BYTES: i64 = 128 * 1024;

fn encode(bytes: &[u8], format: &str) -> Result<String, SdkError> {
    match format {
        "hex" => Ok(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        "base64" => Ok(b64(bytes)),
        other => Err(SdkError::bad(format!(
            "unsupported encoding format {other:?}; must be \"hex\" or \"base64\""
        ))),
    }
}

/// `POST hash(/:algorithm) {input, algorithm, format}` -> `{sum}`.
pub fn hash(req: &Request, url_alg: Option<&str>) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let input = fields.string_or_empty("input")?;
    let format = fields
        .string("format")?
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "hex".into());
    let name = match url_alg {
        Some(alg) => alg.to_string(),
        None => fields
            .string("algorithm")?
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| "sha2-256".into()),
    };
    let input = b64_decode(&input)
        .map_err(|e| SdkError::bad(format!("unable to decode input as base64: {e}")))?;
    if format != "hex" && format != "base64" {
        return Err(SdkError::bad(format!(
            "unsupported encoding format {format}; must be \"hex\" or \"base64\""
        )));
    }
    let algorithm = HashAlg::parse(&name)
        .ok_or_else(|| SdkError::bad(format!("unsupported algorithm {name}")))?;
    let sum = encode(&algorithm.digest(&input), &format)?;
    Ok(Response::json(json!({ "sum": sum })))
}

/// `POST random(/:source)(/:bytes) {bytes, format, source}` -> `{random_bytes}`.
/// Every source (`platform`, `seal`, `all`) reads the system CSPRNG.
pub fn random(
    req: &Request,
    first: Option<&str>,
    second: Option<&str>,
) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let is_source = |s: &str| matches!(s, "platform" | "seal" | "all");
    let parse_bytes = |s: &str| {
        s.parse::<i64>()
            .map_err(|e| SdkError::bad(format!("error parsing url-set byte count: {e}")))
    };
    let body_bytes = || -> Result<i64, SdkError> { Ok(fields.int("bytes")?.unwrap_or(32)) };
    let (source, bytes) = match (first, second) {
        (None, _) => (fields.string_or_empty("source")?, body_bytes()?),
        (Some(s), None) if is_source(s) => (s.to_string(), body_bytes()?),
        (Some(count), None) => (String::new(), parse_bytes(count)?),
        (Some(s), Some(count)) => (s.to_string(), parse_bytes(count)?),
    };
    if bytes < 1 {
        return Err(SdkError::bad("\"bytes\" cannot be less than 1"));
    }
    if bytes > MAX_RANDOM_BYTES {
        return Err(SdkError::bad(format!(
            "\"bytes\" should be less than {MAX_RANDOM_BYTES}"
        )));
    }
    let format = fields
        .string("format")?
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| "base64".into());
    if format != "hex" && format != "base64" {
        return Err(SdkError::bad(format!(
            "unsupported encoding format {format:?}; must be \"hex\" or \"base64\""
        )));
    }
    if !(source.is_empty() || is_source(&source)) {
        return Err(SdkError::bad(format!(
            "unsupported entropy source {source:?}; must be \"platform\" or \"seal\", or \"all\""
        )));
    }
    let len = usize::try_from(bytes).map_err(|_| SdkError::bad("invalid byte count"))?;
    let random = crypto::random_secret(len)?;
    let encoded = encode(random.expose(), &format)?;
    Ok(Response::json(json!({ "random_bytes": encoded })))
}

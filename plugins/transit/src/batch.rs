//! `batch_input` handling shared by the endpoints: reading items (or turning the
//! top-level fields into a single item), typed item fields, and Vault's rule for the
//! HTTP status of a batch with failed items.

use coffer_sdk::{Response, SdkError};
use serde_json::{Map, Value};

use crate::codec::{value_as_string, Fields};

/// One input item.
pub type Item = Map<String, Value>;

/// The items of `batch_input`, or `None` when the request is not a batch.
pub fn items(fields: &Fields<'_>) -> Result<Option<Vec<Item>>, SdkError> {
    let Some(raw) = fields.raw("batch_input") else {
        return Ok(None);
    };
    let Value::Array(list) = raw else {
        return Err(SdkError::bad(
            "failed to parse batch input: batch_input must be a list of objects",
        ));
    };
    if list.is_empty() {
        return Err(SdkError::bad("missing batch input to process"));
    }
    list.iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(map) => Ok(map.clone()),
            _ => Err(SdkError::bad(format!(
                "failed to parse batch input: [{i}] expected a map"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A single item built from the request's top-level `keys` (string fields) and
/// `int_keys` (integer fields).
pub fn single(fields: &Fields<'_>, keys: &[&str], int_keys: &[&str]) -> Result<Item, SdkError> {
    let mut item = Item::new();
    for key in keys {
        if let Some(value) = fields.string(key)? {
            item.insert((*key).to_string(), Value::String(value));
        }
    }
    for key in int_keys {
        if let Some(value) = fields.int(key)? {
            item.insert((*key).to_string(), Value::from(value));
        }
    }
    Ok(item)
}

/// A string field of item `index`; a wrong type fails the whole request, as in Vault.
pub fn item_str(item: &Item, key: &str, index: usize) -> Result<Option<String>, SdkError> {
    match item.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => value_as_string(other).map(Some).ok_or_else(|| {
            SdkError::bad(format!(
                "failed to parse batch input: '[{index}].{key}' expected type 'string'"
            ))
        }),
    }
}

/// An integer field of item `index` (a number or a numeric string).
pub fn item_int(item: &Item, key: &str, index: usize) -> Result<i64, SdkError> {
    match item.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(value) => coffer_sdk::fields::as_i64(value).ok_or_else(|| {
            SdkError::bad(format!(
                "failed to parse batch input: '[{index}].{key}' expected type 'int'"
            ))
        }),
    }
}

/// How a batch went.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Some item succeeded.
    pub successes: bool,
    /// Some item failed on bad input.
    pub user_errors: bool,
    /// Some item failed on our side.
    pub internal_errors: bool,
}

/// Vault's status for an `encrypt`/`decrypt` batch: 400 if any item had bad input,
/// else 500 if any failed internally, else 200; `partial_failure_response_code`
/// replaces the error status when at least one item succeeded.
pub fn apply_status(
    mut response: Response,
    outcome: Outcome,
    fields: &Fields<'_>,
) -> Result<Response, SdkError> {
    if !outcome.user_errors && !outcome.internal_errors {
        return Ok(response);
    }
    let mut status: u16 = if outcome.user_errors { 400 } else { 500 };
    if outcome.successes {
        if let Some(code) = fields.int("partial_failure_response_code")? {
            match u16::try_from(code) {
                Ok(code) if (1..=599).contains(&code) => status = code,
                _ => {
                    response.warnings.push(format!(
                        "invalid HTTP response code override from partial_failure_response_code, reverting to {status}"
                    ));
                }
            }
        }
    }
    response.status = Some(status);
    Ok(response)
}

//! `encrypt/:name`, `decrypt/:name`, `rewrap/:name` and `datakey/:kind/:name`.
//!
//! Each accepts either top-level fields or `batch_input`; a batch answers one result
//! per item, in order, with `reference` echoed back. Like Vault, a failed item makes
//! an `encrypt`/`decrypt` batch answer 400 (the results are still in the body;
//! `partial_failure_response_code` overrides when some item succeeded), while a
//! `rewrap` batch answers 200.

use std::sync::Arc;

use coffer_sdk::{Operation, Request, Response, SdkError};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::backend::TransitBackend;
use crate::batch::{self, item_int, item_str, Item, Outcome};
use crate::codec::{b64_decode, b64_secret, Fields};
use crate::crypto;
use crate::error::OpError;
use crate::policy::{KeyPolicy, KeyType, NewKey};
use crate::symmetric::{self, OpenParams, SealParams};

const KEY_NOT_FOUND: &str = "encryption key not found";

/// Base64 of an optional field; empty stays empty.
fn decode_optional(value: &str) -> Result<Zeroizing<Vec<u8>>, OpError> {
    if value.is_empty() {
        return Ok(Zeroizing::new(Vec::new()));
    }
    b64_decode(value).map_err(OpError::User)
}

/// The decoded inputs of one item.
struct Input {
    data: Zeroizing<Vec<u8>>,
    ciphertext: String,
    context: Zeroizing<Vec<u8>>,
    nonce: Zeroizing<Vec<u8>>,
    associated_data: Zeroizing<Vec<u8>>,
    key_version: i64,
}

/// Which of an item's fields an endpoint reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Encrypt,
    Decrypt,
    Rewrap,
}

/// Items and whether the request was a batch.
fn request_items(fields: &Fields<'_>, mode: Mode) -> Result<(Vec<Item>, bool), SdkError> {
    if let Some(items) = batch::items(fields)? {
        return Ok((items, true));
    }
    let item = batch::single(
        fields,
        &[
            "plaintext",
            "ciphertext",
            "context",
            "nonce",
            "associated_data",
        ],
        &["key_version"],
    )?;
    match mode {
        Mode::Encrypt if !item.contains_key("plaintext") => {
            Err(SdkError::bad("missing plaintext to encrypt"))
        }
        Mode::Decrypt | Mode::Rewrap
            if item
                .get("ciphertext")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty() =>
        {
            Err(SdkError::bad("missing ciphertext to decrypt"))
        }
        _ => Ok((vec![item], false)),
    }
}

/// Parse every item. Type errors and mixed context use fail the request; bad base64
/// fails only its item. Also returns whether items carry a context, and references.
#[allow(clippy::type_complexity)]
fn parse_items(
    items: &[Item],
    mode: Mode,
    is_batch: bool,
) -> Result<(Vec<Result<Input, OpError>>, bool, Vec<String>), SdkError> {
    let context_set = item_str(&items[0], "context", 0)?.is_some_and(|c| !c.is_empty());
    let mut inputs = Vec::with_capacity(items.len());
    let mut references = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let context = item_str(item, "context", i)?.unwrap_or_default();
        if context.is_empty() == context_set {
            return Err(SdkError::bad(
                "context should be set either in all the request blocks or in none",
            ));
        }
        let plaintext = item_str(item, "plaintext", i)?;
        let ciphertext = item_str(item, "ciphertext", i)?.unwrap_or_default();
        if is_batch && mode == Mode::Encrypt && plaintext.is_none() {
            return Err(SdkError::bad(format!(
                "failed to parse batch input: '[{i}].plaintext' missing plaintext to encrypt"
            )));
        }
        let nonce = item_str(item, "nonce", i)?.unwrap_or_default();
        let associated_data = item_str(item, "associated_data", i)?.unwrap_or_default();
        let key_version = item_int(item, "key_version", i)?;
        references.push(item_str(item, "reference", i)?.unwrap_or_default());
        let parsed = (|| {
            if mode != Mode::Encrypt && ciphertext.is_empty() {
                return Err(OpError::user("missing ciphertext to decrypt"));
            }
            Ok(Input {
                data: match &plaintext {
                    Some(p) if mode == Mode::Encrypt => b64_decode(p).map_err(OpError::User)?,
                    _ => Zeroizing::new(Vec::new()),
                },
                ciphertext: ciphertext.clone(),
                context: decode_optional(&context)?,
                nonce: decode_optional(&nonce)?,
                associated_data: decode_optional(&associated_data)?,
                key_version,
            })
        })();
        inputs.push(parsed);
    }
    Ok((inputs, context_set, references))
}

/// Vault's upsert: `encrypt` on a missing key creates it when the request is a create
/// (the existence check said the key is absent, so the token needed `create`).
async fn upsert(
    b: &TransitBackend,
    req: &Request,
    fields: &Fields<'_>,
    name: &str,
    context_set: bool,
) -> Result<(Arc<KeyPolicy>, Option<&'static str>), SdkError> {
    let storage = req.storage.as_ref();
    if req.operation != Operation::Create || b.keys_config(storage).await?.disable_upsert {
        return Err(SdkError::bad(KEY_NOT_FOUND));
    }
    let convergent = fields.bool("convergent_encryption")?.unwrap_or(false);
    if convergent && !context_set {
        return Err(SdkError::bad(
            "convergent encryption requires derivation to be enabled, so context is required",
        ));
    }
    let type_name = fields.string("type")?.filter(|t| !t.is_empty());
    let key_type = match type_name.as_deref().unwrap_or("aes256-gcm96") {
        "aes128-gcm96" => KeyType::Aes128Gcm96,
        "aes256-gcm96" => KeyType::Aes256Gcm96,
        "chacha20-poly1305" => KeyType::ChaCha20Poly1305,
        t @ ("ecdsa-p256" | "ecdsa-p384" | "ecdsa-p521") => {
            return Err(SdkError::bad(format!(
                "key type {t} not supported for this operation"
            )))
        }
        other => return Err(SdkError::bad(format!("unknown key type {other}"))),
    };
    let new = NewKey {
        key_type,
        derived: context_set,
        convergent,
        exportable: false,
        allow_plaintext_backup: false,
        auto_rotate_period: 0,
        key_size: 0,
    };
    let _guard = b.lock_writes().await;
    if let Some(existing) = b.policy(storage, name).await? {
        return Ok((
            existing,
            Some("Attempted creation of the key during the encrypt operation, but it was created beforehand"),
        ));
    }
    let policy = b.store(storage, KeyPolicy::create(name, &new)?).await?;
    Ok((policy, None))
}

fn track(outcome: &mut Outcome, result: &Result<impl Sized, OpError>) {
    match result {
        Ok(_) => outcome.successes = true,
        Err(e) if e.is_internal() => outcome.internal_errors = true,
        Err(_) => outcome.user_errors = true,
    }
}

fn ciphertext_item(result: &Result<(String, u32), OpError>, reference: String) -> Value {
    let mut item = Map::new();
    match result {
        Ok((ciphertext, version)) => {
            item.insert("ciphertext".into(), json!(ciphertext));
            item.insert("key_version".into(), json!(version));
        }
        Err(e) => {
            item.insert("error".into(), json!(e.message()));
        }
    }
    item.insert("reference".into(), json!(reference));
    Value::Object(item)
}

/// `POST encrypt/:name`.
pub async fn encrypt(b: &TransitBackend, req: &Request, name: &str) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let (items, is_batch) = request_items(&fields, Mode::Encrypt)?;
    let (inputs, context_set, references) = parse_items(&items, Mode::Encrypt, is_batch)?;
    let (policy, warning) = match b.policy(req.storage.as_ref(), name).await? {
        Some(policy) => (policy, None),
        None => upsert(b, req, &fields, name, context_set).await?,
    };
    let results: Vec<Result<(String, u32), OpError>> = inputs
        .into_iter()
        .map(|input| {
            let input = input?;
            symmetric::encrypt(
                &policy,
                &input.data,
                SealParams {
                    key_version: input.key_version,
                    context: &input.context,
                    nonce: &input.nonce,
                    associated_data: &input.associated_data,
                },
            )
        })
        .collect();
    let mut response = if is_batch {
        let mut outcome = Outcome::default();
        let mut out = Vec::with_capacity(results.len());
        for (result, reference) in results.iter().zip(references) {
            track(&mut outcome, result);
            out.push(ciphertext_item(result, reference));
        }
        let response = Response::json(json!({ "batch_results": out }));
        batch::apply_status(response, outcome, &fields)?
    } else {
        let (ciphertext, version) = results
            .into_iter()
            .next()
            .ok_or_else(|| SdkError::Internal("no result".into()))??;
        Response::json(json!({"ciphertext": ciphertext, "key_version": version}))
    };
    if let Some(warning) = warning {
        response.warnings.push(warning.to_string());
    }
    Ok(response)
}

async fn existing(
    b: &TransitBackend,
    req: &Request,
    name: &str,
) -> Result<Arc<KeyPolicy>, SdkError> {
    b.policy(req.storage.as_ref(), name)
        .await?
        .ok_or_else(|| SdkError::bad(KEY_NOT_FOUND))
}

/// `POST decrypt/:name`.
pub async fn decrypt(b: &TransitBackend, req: &Request, name: &str) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let (items, is_batch) = request_items(&fields, Mode::Decrypt)?;
    let (inputs, _, references) = parse_items(&items, Mode::Decrypt, is_batch)?;
    let policy = existing(b, req, name).await?;
    let results: Vec<Result<Zeroizing<String>, OpError>> = inputs
        .into_iter()
        .map(|input| {
            let input = input?;
            let plaintext = symmetric::decrypt(
                &policy,
                &input.ciphertext,
                OpenParams {
                    context: &input.context,
                    nonce: &input.nonce,
                    associated_data: &input.associated_data,
                },
            )?;
            Ok(b64_secret(&plaintext))
        })
        .collect();
    if !is_batch {
        let plaintext = results
            .into_iter()
            .next()
            .ok_or_else(|| SdkError::Internal("no result".into()))??;
        return Ok(Response::json(json!({"plaintext": plaintext.as_str()})));
    }
    let mut outcome = Outcome::default();
    let mut out = Vec::with_capacity(results.len());
    for (result, reference) in results.iter().zip(references) {
        track(&mut outcome, result);
        let mut item = Map::new();
        match result {
            Ok(plaintext) => item.insert("plaintext".into(), json!(plaintext.as_str())),
            Err(e) => {
                item.insert("plaintext".into(), json!(""));
                item.insert("error".into(), json!(e.message()))
            }
        };
        item.insert("reference".into(), json!(reference));
        out.push(Value::Object(item));
    }
    batch::apply_status(
        Response::json(json!({ "batch_results": out })),
        outcome,
        &fields,
    )
}

/// `POST rewrap/:name`: decrypt and encrypt again with the latest (or given) version.
pub async fn rewrap(b: &TransitBackend, req: &Request, name: &str) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let (items, is_batch) = request_items(&fields, Mode::Rewrap)?;
    let (inputs, _, references) = parse_items(&items, Mode::Rewrap, is_batch)?;
    let policy = existing(b, req, name).await?;
    let results: Vec<Result<(String, u32), OpError>> = inputs
        .into_iter()
        .map(|input| {
            let input = input?;
            let plaintext = symmetric::decrypt(
                &policy,
                &input.ciphertext,
                OpenParams {
                    context: &input.context,
                    nonce: &input.nonce,
                    associated_data: &input.associated_data,
                },
            )?;
            // A caller nonce only makes sense if the target version is convergent v1.
            let target = policy.encryption_version(input.key_version)?;
            let target_scheme = policy.version(target)?.convergent_version;
            let nonce: &[u8] = if target_scheme == 1 {
                &input.nonce
            } else {
                &[]
            };
            symmetric::encrypt(
                &policy,
                &plaintext,
                SealParams {
                    key_version: input.key_version,
                    context: &input.context,
                    nonce,
                    associated_data: &input.associated_data,
                },
            )
        })
        .collect();
    if !is_batch {
        let (ciphertext, version) = results
            .into_iter()
            .next()
            .ok_or_else(|| SdkError::Internal("no result".into()))??;
        return Ok(Response::json(
            json!({"ciphertext": ciphertext, "key_version": version}),
        ));
    }
    let out: Vec<Value> = results
        .iter()
        .zip(references)
        .map(|(result, reference)| ciphertext_item(result, reference))
        .collect();
    Ok(Response::json(json!({ "batch_results": out })))
}

/// `POST datakey/(plaintext|wrapped)/:name {bits, context, nonce, key_version}`: a new
/// random key encrypted under the named key (and, for `plaintext`, also in the clear).
pub async fn datakey(
    b: &TransitBackend,
    req: &Request,
    kind: &str,
    name: &str,
) -> Result<Response, SdkError> {
    let include_plaintext = match kind {
        "plaintext" => true,
        "wrapped" => false,
        _ => {
            return Err(SdkError::bad(
                "Invalid path, must be 'plaintext' or 'wrapped'",
            ))
        }
    };
    let fields = Fields::new(req);
    let context = decode_optional(&fields.string_or_empty("context")?)
        .map_err(|_| SdkError::bad("failed to base64-decode context"))?;
    let nonce = decode_optional(&fields.string_or_empty("nonce")?)
        .map_err(|_| SdkError::bad("failed to base64-decode nonce"))?;
    let associated_data = decode_optional(&fields.string_or_empty("associated_data")?)?;
    let key_version = fields.int("key_version")?.unwrap_or(0);
    let policy = existing(b, req, name).await?;
    let len = match fields.int("bits")?.unwrap_or(256) {
        128 => 16,
        256 => 32,
        512 => 64,
        _ => return Err(SdkError::bad("invalid bits value")),
    };
    let data_key = crypto::random_secret(len)?;
    let (ciphertext, version) = symmetric::encrypt(
        &policy,
        data_key.expose(),
        SealParams {
            key_version,
            context: &context,
            nonce: &nonce,
            associated_data: &associated_data,
        },
    )?;
    let mut data = Map::new();
    data.insert("ciphertext".into(), json!(ciphertext));
    data.insert("key_version".into(), json!(version));
    if include_plaintext {
        data.insert("plaintext".into(), json!(data_key.to_base64().as_str()));
    }
    Ok(Response::data(data))
}

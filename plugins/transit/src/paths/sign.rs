//! `hmac/:name(/:algorithm)`, `sign/:name(/:hash_algorithm)` and
//! `verify/:name(/:hash_algorithm)` (which checks a `signature` or an `hmac`).
//!
//! Batches of these answer 200 with per-item errors, as Vault does.
//!
//! Signing differs from Vault where `ring` forces it: ECDSA signs with the curve's own
//! hash only (P-256/SHA-256, P-384/SHA-384; other hashes are a 400, and a P-384 key
//! defaults to sha2-384 where Vault defaults to sha2-256), verification also accepts
//! the other of SHA-256/SHA-384, and `prehashed` input is refused for ECDSA (it is
//! ignored for Ed25519, as in Vault 1.16).

use std::sync::Arc;

use coffer_sdk::{Request, Response, SdkError};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use crate::asym::{self, Curve};
use crate::backend::TransitBackend;
use crate::batch::{self, item_str, Item};
use crate::codec::{self, b64, b64_decode, split_versioned, Fields, ValueKind};
use crate::crypto::{ct_eq, HashAlg};
use crate::der;
use crate::error::OpError;
use crate::policy::{KeyPolicy, KeyType, Material};

/// Names Vault's `HashTypeMap` knows (validated even where the hash is unused).
const KNOWN_HASHES: &[&str] = &[
    "none", "sha1", "sha2-224", "sha2-256", "sha2-384", "sha2-512", "sha3-224", "sha3-256",
    "sha3-384", "sha3-512",
];

fn items_or_single(fields: &Fields<'_>, keys: &[&str]) -> Result<(Vec<Item>, bool), SdkError> {
    match batch::items(fields)? {
        Some(items) => Ok((items, true)),
        None => Ok((vec![batch::single(fields, keys, &[])?], false)),
    }
}

/// The algorithm from the URL, else the body field(s), else `sha2-256`.
fn algorithm_name(
    fields: &Fields<'_>,
    url: Option<&str>,
    keys: &[&str],
) -> Result<Option<String>, SdkError> {
    if let Some(alg) = url {
        return Ok(Some(alg.to_string()));
    }
    for key in keys {
        if let Some(alg) = fields.string(key)?.filter(|a| !a.is_empty()) {
            return Ok(Some(alg));
        }
    }
    Ok(None)
}

fn references(items: &[Item]) -> Result<Vec<String>, SdkError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| Ok(item_str(item, "reference", i)?.unwrap_or_default()))
        .collect()
}

/// Turn per-item results into the response: the single value, or `batch_results`.
fn respond(
    results: Vec<Result<Map<String, Value>, OpError>>,
    items: &[Item],
    is_batch: bool,
) -> Result<Response, SdkError> {
    if !is_batch {
        let data = results
            .into_iter()
            .next()
            .ok_or_else(|| SdkError::Internal("no result".into()))??;
        return Ok(Response::data(data));
    }
    let refs = references(items)?;
    let out: Vec<Value> = results
        .into_iter()
        .zip(refs)
        .map(|(result, reference)| {
            let mut item = match result {
                Ok(data) => data,
                Err(e) => {
                    let mut m = Map::new();
                    m.insert("error".into(), json!(e.message()));
                    m
                }
            };
            item.insert("reference".into(), json!(reference));
            Value::Object(item)
        })
        .collect();
    Ok(Response::json(json!({ "batch_results": out })))
}

fn decode_input(item: &Item, index: usize, missing: &str) -> Result<Zeroizing<Vec<u8>>, OpError> {
    let raw = item_str(item, "input", index)?.ok_or_else(|| OpError::user(missing))?;
    b64_decode(&raw).map_err(|e| OpError::user(format!("unable to decode input as base64: {e}")))
}

async fn policy_or(
    b: &TransitBackend,
    req: &Request,
    name: &str,
    message: &str,
) -> Result<Arc<KeyPolicy>, SdkError> {
    b.policy(req.storage.as_ref(), name)
        .await?
        .ok_or_else(|| SdkError::bad(message))
}

/// Vault's `Policy.HMACKey` version rules.
fn hmac_key_for(policy: &KeyPolicy, version: i64) -> Result<(u32, &[u8]), String> {
    if version < 0 {
        return Err("key version does not exist (cannot be negative)".into());
    }
    if version > i64::from(policy.latest_version) {
        return Err(format!(
            "key version does not exist; latest key version is {}",
            policy.latest_version
        ));
    }
    let number = u32::try_from(version).map_err(|_| "no such key version".to_string())?;
    Ok((number, policy.version(number)?.hmac_key.expose()))
}

fn hmac_algorithm(fields: &Fields<'_>, url: Option<&str>) -> Result<HashAlg, SdkError> {
    let name = algorithm_name(fields, url, &["algorithm"])?.unwrap_or_else(|| "sha2-256".into());
    HashAlg::parse(&name).ok_or_else(|| SdkError::bad(format!("unsupported algorithm {name}")))
}

/// `POST hmac/:name(/:algorithm) {input, key_version, algorithm, batch_input}`.
pub async fn hmac(
    b: &TransitBackend,
    req: &Request,
    name: &str,
    url_alg: Option<&str>,
) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let policy = policy_or(b, req, name, "encryption key not found").await?;
    let requested = fields.int("key_version")?.unwrap_or(0);
    let version = match requested {
        0 => i64::from(policy.latest_version),
        v if v != i64::from(policy.latest_version)
            && policy.min_encryption_version > 0
            && v < i64::from(policy.min_encryption_version) =>
        {
            return Err(SdkError::bad(
                "cannot generate HMAC: version is too old (disallowed by policy)",
            ))
        }
        v => v,
    };
    let (number, key) = hmac_key_for(&policy, version).map_err(SdkError::BadRequest)?;
    let algorithm = hmac_algorithm(&fields, url_alg)?;
    let (items, is_batch) = items_or_single(&fields, &["input"])?;
    if !is_batch && !items[0].contains_key("input") {
        return Err(SdkError::bad("missing input for HMAC"));
    }
    let results = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let input = decode_input(item, i, "missing input for HMAC")?;
            let mac = algorithm.hmac(key, &input);
            let mut data = Map::new();
            data.insert("hmac".into(), json!(codec::versioned(number, &b64(&mac))));
            Ok(data)
        })
        .collect();
    respond(results, &items, is_batch)
}

/// `POST sign/:name(/:hash_algorithm)`.
pub async fn sign(
    b: &TransitBackend,
    req: &Request,
    name: &str,
    url_alg: Option<&str>,
) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let options = SignOptions::parse(&fields, url_alg)?;
    let policy = policy_or(b, req, name, "signing key not found").await?;
    if !policy.key_type.supports_signing() {
        return Err(SdkError::bad(format!(
            "key type {} does not support signing",
            policy.key_type.as_str()
        )));
    }
    options.check_for(policy.key_type, true)?;
    let requested = fields.int("key_version")?.unwrap_or(0);
    let (items, is_batch) = items_or_single(&fields, &["input", "context"])?;
    let results = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let input = match item_str(item, "input", i)? {
                Some(raw) => b64_decode(&raw)
                    .map_err(|e| OpError::user(format!("unable to decode input as base64: {e}")))?,
                None if is_batch => return Err(OpError::user("missing input")),
                None => Zeroizing::new(Vec::new()),
            };
            let context = decode_context(item, i)?;
            sign_one(&policy, &options, requested, &input, &context, is_batch)
        })
        .collect();
    respond(results, &items, is_batch)
}

fn decode_context(item: &Item, index: usize) -> Result<Vec<u8>, OpError> {
    match item_str(item, "context", index)? {
        Some(raw) if !raw.is_empty() => b64_decode(&raw)
            .map(|c| c.to_vec())
            .map_err(|_| OpError::user("failed to base64-decode context")),
        _ => Ok(Vec::new()),
    }
}

fn sign_one(
    policy: &KeyPolicy,
    options: &SignOptions,
    requested: i64,
    input: &[u8],
    context: &[u8],
    is_batch: bool,
) -> Result<Map<String, Value>, OpError> {
    let number = policy.signing_version(requested)?;
    let version = policy.version(number)?;
    let mut data = Map::new();
    let signature = match (&version.material, policy.key_type.curve()) {
        (Material::Ecdsa(key), Some(_)) => {
            let fixed = key.sign_fixed(input)?;
            if options.jws {
                codec::b64_raw_url(&fixed)
            } else {
                b64(&der::ecdsa_fixed_to_der(&fixed))
            }
        }
        (_, None) if policy.key_type == KeyType::Ed25519 => {
            let key = policy.ed25519_key(version, context)?;
            let sig = key.get().sign(input);
            if policy.derived {
                let field = if is_batch { "publickey" } else { "public_key" };
                data.insert(field.into(), json!(b64(key.get().public_key())));
            }
            if options.jws {
                codec::b64_raw_url(&sig)
            } else {
                b64(&sig)
            }
        }
        _ => {
            return Err(OpError::Internal(SdkError::Internal(
                "key material missing".into(),
            )))
        }
    };
    data.insert(
        "signature".into(),
        json!(codec::versioned(number, &signature)),
    );
    data.insert("key_version".into(), json!(number));
    Ok(data)
}

/// Options shared by `sign` and `verify`.
struct SignOptions {
    /// The hash named by the caller, if any.
    hash: Option<String>,
    jws: bool,
    prehashed: bool,
}

impl SignOptions {
    fn parse(fields: &Fields<'_>, url_alg: Option<&str>) -> Result<SignOptions, SdkError> {
        let hash = algorithm_name(fields, url_alg, &["hash_algorithm", "algorithm"])?;
        if let Some(name) = &hash {
            if !KNOWN_HASHES.contains(&name.as_str()) {
                return Err(SdkError::bad(format!("invalid hash algorithm {name:?}")));
            }
        }
        let marshaling = fields
            .string("marshaling_algorithm")?
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "asn1".into());
        let jws = match marshaling.as_str() {
            "asn1" => false,
            "jws" => true,
            other => return Err(SdkError::bad(format!("invalid marshaling type {other:?}"))),
        };
        let prehashed = fields.bool("prehashed")?.unwrap_or(false);
        if hash.as_deref() == Some("none") {
            return Err(SdkError::bad(
                "hash_algorithm=none requires both prehashed=true and signature_algorithm=pkcs1v15",
            ));
        }
        Ok(SignOptions {
            hash,
            jws,
            prehashed,
        })
    }

    /// The hash an ECDSA operation on `curve` uses; `signing` limits it to what `ring`
    /// can sign with.
    fn ecdsa_hash(&self, curve: Curve, signing: bool) -> Result<HashAlg, SdkError> {
        let Some(name) = &self.hash else {
            return Ok(curve.signing_hash());
        };
        let hash = HashAlg::parse(name);
        let supported = match hash {
            Some(h) if signing => h == curve.signing_hash(),
            Some(h) => curve.can_verify(h),
            None => false,
        };
        match hash {
            Some(h) if supported => Ok(h),
            _ => Err(SdkError::bad(format!(
                "hash algorithm {name} is not supported with ECDSA {} by Coffer; use {}",
                curve.name(),
                curve.signing_hash().name()
            ))),
        }
    }

    fn check_for(&self, key_type: KeyType, signing: bool) -> Result<(), SdkError> {
        if let Some(curve) = key_type.curve() {
            if self.prehashed {
                return Err(SdkError::bad(
                    "prehashed input is not supported for ECDSA keys by Coffer",
                ));
            }
            self.ecdsa_hash(curve, signing)?;
        }
        Ok(())
    }
}

/// `POST verify/:name(/:hash_algorithm) {input, signature | hmac, ...}`.
pub async fn verify(
    b: &TransitBackend,
    req: &Request,
    name: &str,
    url_alg: Option<&str>,
) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let (items, is_batch) = items_or_single(&fields, &["input", "signature", "hmac", "context"])?;
    let (mut signatures, mut hmacs, mut missing) = (false, false, false);
    for item in &items {
        if item.contains_key("signature") {
            signatures = true;
        } else if item.contains_key("hmac") {
            hmacs = true;
        } else {
            missing = true;
        }
    }
    let problem = match () {
        _ if !is_batch && signatures && items[0].contains_key("hmac") => {
            Some("provide one of 'signature' or 'hmac'")
        }
        _ if !is_batch && !signatures && !hmacs => {
            Some("neither a 'signature' nor an 'hmac' were given to verify")
        }
        _ if signatures && hmacs => {
            Some("elements of batch_input must all provide 'signature' or all provide 'hmac'")
        }
        _ if missing && signatures => Some("some elements of batch_input are missing 'signature'"),
        _ if missing && hmacs => Some("some elements of batch_input are missing 'hmac'"),
        _ if missing => Some("no batch_input elements have 'signature' or 'hmac'"),
        _ => None,
    };
    if let Some(problem) = problem {
        return Err(SdkError::bad(problem));
    }
    if hmacs {
        return verify_hmacs(b, req, &fields, name, url_alg, &items, is_batch).await;
    }
    let options = SignOptions::parse(&fields, url_alg)?;
    let policy = policy_or(b, req, name, "signature verification key not found").await?;
    if !policy.key_type.supports_signing() {
        return Err(SdkError::bad(format!(
            "key type {} does not support verification",
            policy.key_type.as_str()
        )));
    }
    options.check_for(policy.key_type, false)?;
    let results = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let input = match item_str(item, "input", i)? {
                Some(raw) => b64_decode(&raw)
                    .map_err(|e| OpError::user(format!("unable to decode input as base64: {e}")))?,
                None if is_batch => return Err(OpError::user("missing input")),
                None => Zeroizing::new(Vec::new()),
            };
            let signature = item_str(item, "signature", i)?
                .ok_or_else(|| OpError::user("missing signature"))?;
            let context = decode_context(item, i)?;
            let valid = verify_one(&policy, &options, &input, &signature, &context)?;
            let mut data = Map::new();
            data.insert("valid".into(), json!(valid));
            Ok(data)
        })
        .collect();
    respond(results, &items, is_batch)
}

fn verify_one(
    policy: &KeyPolicy,
    options: &SignOptions,
    input: &[u8],
    signature: &str,
    context: &[u8],
) -> Result<bool, OpError> {
    let (number, body) = split_versioned(signature, ValueKind::Signature)?;
    let number = policy.check_decryption_version(number, "signature")?;
    let sig = if options.jws {
        codec::b64_raw_url_decode(body)
    } else {
        b64_decode(body).map(|s| s.to_vec())
    }
    .map_err(|_| OpError::user("invalid base64 signature value"))?;
    let version = policy.version(number)?;
    match policy.key_type.curve() {
        Some(curve) => {
            let hash = options.ecdsa_hash(curve, false)?;
            let der_sig = if options.jws {
                der::ecdsa_fixed_to_der(&sig)
            } else {
                sig
            };
            Ok(asym::ecdsa_verify(
                curve,
                &version.public_key,
                hash,
                input,
                &der_sig,
            ))
        }
        None => {
            let key = policy.ed25519_key(version, context)?;
            Ok(asym::ed25519_verify(key.get().public_key(), input, &sig))
        }
    }
}

async fn verify_hmacs(
    b: &TransitBackend,
    req: &Request,
    fields: &Fields<'_>,
    name: &str,
    url_alg: Option<&str>,
    items: &[Item],
    is_batch: bool,
) -> Result<Response, SdkError> {
    let policy = policy_or(b, req, name, "encryption key not found").await?;
    let algorithm = hmac_algorithm(fields, url_alg)?;
    let results = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let input = match item_str(item, "input", i)? {
                Some(raw) => b64_decode(&raw)
                    .map_err(|e| OpError::user(format!("unable to decode input as base64: {e}")))?,
                None if is_batch => return Err(OpError::user("missing input")),
                None => Zeroizing::new(Vec::new()),
            };
            let given = item_str(item, "hmac", i)?.ok_or_else(|| OpError::user("missing hmac"))?;
            let (number, body) = split_versioned(&given, ValueKind::Hmac)?;
            let expected = b64_decode(body).map_err(|e| {
                OpError::user(format!("unable to decode verification HMAC as base64: {e}"))
            })?;
            if number > i64::from(policy.latest_version) {
                return Err(OpError::user("invalid HMAC: version is too new"));
            }
            if number < i64::from(policy.min_decryption_version) {
                return Err(OpError::user(
                    "cannot verify HMAC: version is too old (disallowed by policy)",
                ));
            }
            let (_, key) = hmac_key_for(&policy, number)?;
            let mut data = Map::new();
            data.insert(
                "valid".into(),
                json!(ct_eq(&algorithm.hmac(key, &input), &expected)),
            );
            Ok(data)
        })
        .collect();
    respond(results, items, is_batch)
}

//! `export/:key_type/:name(/:version)`, `backup/:name` and `restore(/:name)`.
//!
//! Export formats follow Vault: symmetric and HMAC keys as base64; Ed25519 signing keys
//! as base64 of Go's 64-byte private key; ECDSA signing keys as a SEC1
//! `EC PRIVATE KEY` PEM; `format=der|pem` gives PKCS#8 / SubjectPublicKeyInfo.

use coffer_sdk::{Request, Response, SdkError};
use serde_json::{json, Map, Value};

use crate::asym::Curve;
use crate::backend::{valid_name, TransitBackend};
use crate::backup as backup_format;
use crate::codec::{b64, Fields};
use crate::der;
use crate::policy::{KeyPolicy, KeyVersion, Stamp};

#[derive(Clone, Copy, PartialEq, Eq)]
enum ExportKind {
    Encryption,
    Signing,
    Hmac,
    Public,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Default,
    Raw,
    Der,
    Pem,
}

fn trimmed_pem(label: &str, der_bytes: &[u8]) -> String {
    der::pem(label, der_bytes).trim().to_string()
}

fn encode_der_or_pem(format: Format, label: &str, der_bytes: &[u8]) -> String {
    match format {
        Format::Der => b64(der_bytes),
        _ => trimmed_pem(label, der_bytes),
    }
}

fn export_one(
    policy: &KeyPolicy,
    version: &KeyVersion,
    kind: ExportKind,
    format: Format,
) -> Result<String, SdkError> {
    let symmetric_only = |what: &str| -> Result<(), SdkError> {
        if matches!(format, Format::Der | Format::Pem) {
            return Err(SdkError::bad(format!(
                "unknown format for {what} key; supported values are `` or `raw`"
            )));
        }
        Ok(())
    };
    let ec_formats = || -> Result<(), SdkError> {
        if format == Format::Raw {
            return Err(SdkError::bad(
                "unknown key format for ec key; supported values are ``, `der`, or `pem`",
            ));
        }
        Ok(())
    };
    match kind {
        ExportKind::Hmac => {
            symmetric_only("HMAC")?;
            Ok(version.hmac_key.to_base64().to_string())
        }
        ExportKind::Encryption => {
            symmetric_only("encryption")?;
            Ok(version.key.to_base64().to_string())
        }
        ExportKind::Signing => match policy.key_type.curve() {
            Some(curve) => {
                ec_formats()?;
                let scalar = version.key.expose();
                let point = &version.public_key;
                if format == Format::Default {
                    let sec1 = zeroize::Zeroizing::new(der::ec_sec1(curve.oid(), scalar, point));
                    Ok(trimmed_pem("EC PRIVATE KEY", &sec1))
                } else {
                    let pkcs8 = zeroize::Zeroizing::new(der::ec_pkcs8(curve.oid(), scalar, point));
                    Ok(encode_der_or_pem(format, "PRIVATE KEY", &pkcs8))
                }
            }
            None => match format {
                Format::Default | Format::Raw => Ok(version.key.to_base64().to_string()),
                _ => {
                    let seed = version.key.expose().get(..32).unwrap_or_default();
                    let pkcs8 = zeroize::Zeroizing::new(der::ed25519_pkcs8(seed));
                    Ok(encode_der_or_pem(format, "PRIVATE KEY", &pkcs8))
                }
            },
        },
        ExportKind::Public => match policy.key_type.curve() {
            Some(curve) => {
                ec_formats()?;
                let spki = der::ec_spki(Curve::oid(curve), &version.public_key);
                Ok(encode_der_or_pem(format, "PUBLIC KEY", &spki))
            }
            None => match format {
                Format::Default | Format::Raw => Ok(b64(&version.public_key)),
                _ => Ok(encode_der_or_pem(
                    format,
                    "PUBLIC KEY",
                    &der::ed25519_spki(&version.public_key),
                )),
            },
        },
    }
}

/// `GET export/:key_type/:name(/:version)`.
pub async fn export(
    b: &TransitBackend,
    req: &Request,
    kind: &str,
    name: &str,
    version: Option<&str>,
) -> Result<Response, SdkError> {
    let kind = match kind {
        "encryption-key" => ExportKind::Encryption,
        "signing-key" => ExportKind::Signing,
        "hmac-key" => ExportKind::Hmac,
        "public-key" => ExportKind::Public,
        other => return Err(SdkError::bad(format!("invalid export type: {other}"))),
    };
    let fields = Fields::new(req);
    let format = match fields.string_or_empty("format")?.as_str() {
        "" => Format::Default,
        "raw" => Format::Raw,
        "der" => Format::Der,
        "pem" => Format::Pem,
        other => return Err(SdkError::bad(format!("invalid format: {other}"))),
    };
    let Some(policy) = b.policy(req.storage.as_ref(), name).await? else {
        return Err(SdkError::NotFound);
    };
    if !policy.exportable && kind != ExportKind::Public {
        return Err(SdkError::bad("private key material is not exportable"));
    }
    let t = policy.key_type;
    match kind {
        ExportKind::Encryption if !t.supports_encryption() => {
            return Err(SdkError::bad("encryption not supported for the key"))
        }
        ExportKind::Signing | ExportKind::Public if !t.supports_signing() => {
            return Err(SdkError::bad("signing not supported for the key"))
        }
        _ => {}
    }
    let numbers: Vec<u32> = match version {
        None => policy
            .versions
            .range(policy.min_decryption_version..)
            .map(|(n, _)| *n)
            .collect(),
        Some(v) => {
            let number = if v == "latest" {
                policy.latest_version
            } else {
                v.trim_start_matches('v')
                    .parse()
                    .map_err(|_| SdkError::bad("invalid key version"))?
            };
            if number < policy.min_decryption_version {
                return Err(SdkError::bad(
                    "version for export is below minimum decryption version",
                ));
            }
            vec![number]
        }
    };
    let mut keys = Map::new();
    for number in numbers {
        let entry = policy
            .versions
            .get(&number)
            .ok_or_else(|| SdkError::bad("version does not exist or cannot be found"))?;
        keys.insert(
            number.to_string(),
            json!(export_one(&policy, entry, kind, format)?),
        );
    }
    Ok(Response::json(json!({
        "name": policy.name,
        "type": t.as_str(),
        "keys": Value::Object(keys),
    })))
}

/// `GET backup/:name`: Vault's plaintext backup (needs `exportable` and
/// `allow_plaintext_backup`); records `backup_info` on the key, as Vault does.
pub async fn backup(b: &TransitBackend, req: &Request, name: &str) -> Result<Response, SdkError> {
    let storage = req.storage.as_ref();
    let _guard = b.lock_writes().await;
    let Some(current) = b.policy(storage, name).await? else {
        return Err(SdkError::bad(format!("key {name:?} not found")));
    };
    if !current.exportable {
        return Err(SdkError::bad("exporting is disallowed on the policy"));
    }
    if !current.allow_plaintext_backup {
        return Err(SdkError::bad(
            "plaintext backup is disallowed on the policy",
        ));
    }
    let mut next = (*current).clone();
    next.backup_info = Some(Stamp {
        time: chrono::Utc::now(),
        version: next.latest_version,
    });
    let policy = b.store(storage, next).await?;
    Ok(Response::json(
        json!({ "backup": backup_format::encode(&policy) }),
    ))
}

/// `POST restore(/:name) {backup, force}`: import a backup (from Coffer or Vault).
pub async fn restore(
    b: &TransitBackend,
    req: &Request,
    name: Option<&str>,
) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let blob = fields
        .string("backup")?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SdkError::bad("'backup' must be supplied"))?;
    let force = fields.bool("force")?.unwrap_or(false);
    let mut policy = backup_format::decode(&blob).map_err(SdkError::BadRequest)?;
    if let Some(name) = name {
        policy.name = name.to_string();
    }
    if !valid_name(&policy.name) {
        return Err(SdkError::bad(format!(
            "invalid key name {:?} in backup",
            policy.name
        )));
    }
    policy.restore_info = Some(Stamp {
        time: chrono::Utc::now(),
        version: policy.latest_version,
    });
    let storage = req.storage.as_ref();
    let _guard = b.lock_writes().await;
    if !force && b.policy(storage, &policy.name).await?.is_some() {
        return Err(SdkError::bad(format!(
            "key {:?} already exists",
            policy.name
        )));
    }
    b.store(storage, policy).await?;
    Ok(Response::empty())
}

//! Key management: `keys/` (list), `keys/:name` (create, read, delete),
//! `keys/:name/config`, `keys/:name/rotate`, `keys/:name/trim`, and the mount-wide
//! `config/keys`.

use coffer_sdk::{Request, Response, SdkError};
use serde_json::json;

use crate::backend::{KeysConfig, TransitBackend};
use crate::codec::{b64_decode, Fields};
use crate::policy::{KeyPolicy, KeyType, NewKey, POLICY_PREFIX};

/// `LIST keys/`.
pub async fn list(req: &Request) -> Result<Response, SdkError> {
    let names = req
        .storage
        .list(POLICY_PREFIX)
        .await?
        .into_iter()
        .filter(|n| !n.ends_with('/'))
        .collect();
    Response::list(names)
}

fn describe(policy: &KeyPolicy) -> Result<Response, SdkError> {
    Ok(Response::data(policy.describe(None)?))
}

/// `GET keys/:name` (`context` selects a derived Ed25519 key's public keys).
pub async fn read(b: &TransitBackend, req: &Request, name: &str) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let Some(policy) = b.policy(req.storage.as_ref(), name).await? else {
        return Err(SdkError::NotFound);
    };
    let context = match fields.string("context")? {
        Some(raw) if !raw.is_empty() => {
            Some(b64_decode(&raw).map_err(|_| SdkError::bad("failed to base64-decode context"))?)
        }
        _ => None,
    };
    Ok(Response::data(
        policy.describe(context.as_deref().map(|c| c.as_slice()))?,
    ))
}

/// `POST keys/:name`: create the key (an existing key is left as is, with a warning).
pub async fn create(b: &TransitBackend, req: &Request, name: &str) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let key_type = fields.string("type")?.filter(|t| !t.is_empty());
    let key_type = KeyType::parse(key_type.as_deref().unwrap_or("aes256-gcm96"))
        .map_err(SdkError::BadRequest)?;
    let key_size = fields.int("key_size")?.unwrap_or(0);
    let new = NewKey {
        key_type,
        derived: fields.bool("derived")?.unwrap_or(false),
        convergent: fields.bool("convergent_encryption")?.unwrap_or(false),
        exportable: fields.bool("exportable")?.unwrap_or(false),
        allow_plaintext_backup: fields.bool("allow_plaintext_backup")?.unwrap_or(false),
        auto_rotate_period: fields.duration_secs("auto_rotate_period")?.unwrap_or(0),
        key_size: u32::try_from(key_size)
            .map_err(|_| SdkError::bad(format!("invalid key_size {key_size}")))?,
    };
    new.validate().map_err(SdkError::BadRequest)?;

    let storage = req.storage.as_ref();
    let _guard = b.lock_writes().await;
    if let Some(existing) = b.policy(storage, name).await? {
        return Ok(describe(&existing)?.with_warning(format!("key {name} already existed")));
    }
    let policy = b.store(storage, KeyPolicy::create(name, &new)?).await?;
    describe(&policy)
}

/// `DELETE keys/:name`: only when `deletion_allowed` is set.
pub async fn delete(b: &TransitBackend, req: &Request, name: &str) -> Result<Response, SdkError> {
    let storage = req.storage.as_ref();
    let _guard = b.lock_writes().await;
    let Some(policy) = b.policy(storage, name).await? else {
        return Err(SdkError::bad(format!(
            "error deleting policy {name}: could not delete key; not found"
        )));
    };
    if !policy.deletion_allowed {
        return Err(SdkError::bad(format!(
            "error deleting policy {name}: deletion is not allowed for this key"
        )));
    }
    b.remove(storage, name).await?;
    Ok(Response::empty())
}

fn version_field(fields: &Fields<'_>, key: &str, what: &str) -> Result<Option<u32>, SdkError> {
    match fields.int(key)? {
        None => Ok(None),
        Some(v) if v < 0 => Err(SdkError::bad(format!("{what} version cannot be negative"))),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| SdkError::bad(format!("{what} version out of range"))),
    }
}

/// `POST keys/:name/config`.
pub async fn configure(
    b: &TransitBackend,
    req: &Request,
    name: &str,
) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let storage = req.storage.as_ref();
    let _guard = b.lock_writes().await;
    let Some(current) = b.policy(storage, name).await? else {
        return Err(SdkError::bad(format!(
            "no existing key named {name} could be found"
        )));
    };
    let mut next = (*current).clone();
    let mut warning = None;
    let mut changed = false;

    if let Some(mut min_decryption) =
        version_field(&fields, "min_decryption_version", "min decryption")?
    {
        if min_decryption == 0 {
            min_decryption = 1;
            warning = Some(
                "since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1"
                    .to_string(),
            );
        }
        if min_decryption != next.min_decryption_version {
            if min_decryption > next.latest_version {
                return Err(SdkError::bad(format!(
                    "cannot set min decryption version of {min_decryption}, latest key version is {}",
                    next.latest_version
                )));
            }
            next.min_decryption_version = min_decryption;
            changed = true;
        }
    }
    if let Some(min_encryption) =
        version_field(&fields, "min_encryption_version", "min encryption")?
    {
        if min_encryption != next.min_encryption_version {
            if min_encryption > next.latest_version {
                return Err(SdkError::bad(format!(
                    "cannot set min encryption version of {min_encryption}, latest key version is {}",
                    next.latest_version
                )));
            }
            next.min_encryption_version = min_encryption;
            changed = true;
        }
    }
    if next.min_encryption_version > 0 && next.min_encryption_version < next.min_decryption_version
    {
        return Err(SdkError::bad(format!(
            "cannot set min encryption/decryption values; min encryption version of {} must be greater than or equal to min decryption version of {}",
            next.min_encryption_version, next.min_decryption_version
        )));
    }
    if let Some(allowed) = fields.bool("deletion_allowed")? {
        changed |= allowed != next.deletion_allowed;
        next.deletion_allowed = allowed;
    }
    // These two can be set but never unset.
    if fields.bool("exportable")? == Some(true) && !next.exportable {
        next.exportable = true;
        changed = true;
    }
    if fields.bool("allow_plaintext_backup")? == Some(true) && !next.allow_plaintext_backup {
        next.allow_plaintext_backup = true;
        changed = true;
    }
    if let Some(period) = fields.duration_secs("auto_rotate_period")? {
        if period != 0 && period < 3600 {
            return Err(SdkError::bad(
                "auto rotate period must be 0 to disable or at least an hour",
            ));
        }
        changed |= period != next.auto_rotate_period;
        next.auto_rotate_period = period;
    }

    let policy = if changed {
        if next.min_available_version > next.min_encryption_version {
            return Err(SdkError::bad(
                "min encryption version should not be less than min available version",
            ));
        }
        if next.min_available_version > next.min_decryption_version {
            return Err(SdkError::bad(
                "min decryption version should not be less then min available version",
            ));
        }
        b.store(storage, next).await?
    } else {
        current
    };
    let response = describe(&policy)?;
    Ok(match warning {
        Some(w) => response.with_warning(w),
        None => response,
    })
}

/// `POST keys/:name/rotate`.
pub async fn rotate(b: &TransitBackend, req: &Request, name: &str) -> Result<Response, SdkError> {
    let storage = req.storage.as_ref();
    let _guard = b.lock_writes().await;
    let Some(current) = b.policy(storage, name).await? else {
        return Err(SdkError::bad("key not found"));
    };
    let mut next = (*current).clone();
    next.rotate()?;
    let policy = b.store(storage, next).await?;
    describe(&policy)
}

/// `POST keys/:name/trim {min_available_version}`: delete versions below it for good.
pub async fn trim(b: &TransitBackend, req: &Request, name: &str) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let storage = req.storage.as_ref();
    let _guard = b.lock_writes().await;
    let Some(current) = b.policy(storage, name).await? else {
        return Err(SdkError::bad("invalid key name"));
    };
    let Some(requested) = fields.int("min_available_version")? else {
        return Err(SdkError::bad("missing min_available_version"));
    };
    let p = &current;
    let message = match requested {
        v if v < i64::from(p.min_available_version) => {
            Some("minimum available version cannot be decremented")
        }
        _ if p.min_encryption_version == 0 => Some(
            "minimum available version cannot be set when minimum encryption version is not set",
        ),
        v if v > i64::from(p.min_encryption_version) => {
            Some("minimum available version cannot be greater than minmum encryption version")
        }
        v if v > i64::from(p.min_decryption_version) => {
            Some("minimum available version cannot be greater than minimum decryption version")
        }
        v if v < 0 => Some("minimum available version cannot be negative"),
        0 => Some("minimum available version should be positive"),
        _ => None,
    };
    if let Some(message) = message {
        return Err(SdkError::bad(message));
    }
    let mut next = (**p).clone();
    next.min_available_version = u32::try_from(requested)
        .map_err(|_| SdkError::bad("minimum available version out of range"))?;
    next.drop_trimmed();
    let policy = b.store(storage, next).await?;
    describe(&policy)
}

/// `GET config/keys`.
pub async fn read_keys_config(b: &TransitBackend, req: &Request) -> Result<Response, SdkError> {
    let config = b.keys_config(req.storage.as_ref()).await?;
    Ok(Response::json(
        json!({"disable_upsert": config.disable_upsert}),
    ))
}

/// `POST config/keys {disable_upsert}`.
pub async fn write_keys_config(b: &TransitBackend, req: &Request) -> Result<Response, SdkError> {
    let fields = Fields::new(req);
    let disable_upsert = fields.bool("disable_upsert")?.unwrap_or(false);
    let storage = req.storage.as_ref();
    let _guard = b.lock_writes().await;
    let config = KeysConfig { disable_upsert };
    if b.keys_config(storage).await? != config {
        b.store_keys_config(storage, config).await?;
    }
    Ok(Response::json(json!({"disable_upsert": disable_upsert})))
}

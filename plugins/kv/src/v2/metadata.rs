//! The settings endpoints of KV v2: the mount's `config` and each secret's
//! `metadata/` (read, write, patch, delete, list).

use std::collections::BTreeMap;

use chrono::Utc;
use coffer_sdk::storage::json_op;
use coffer_sdk::{Request, Response, SdkError, Storage, StorageOp};
use serde_json::{json, Map, Value};

use super::{load_config, load_meta, put_meta, KvV2};
use crate::layout::{
    format_duration_secs, format_opt_time, format_time, version_key, KeyMetadata, CONFIG_KEY,
    META_PREFIX,
};
use crate::params;

/// Vault's warning when a secret turns `cas_required` off that the mount requires.
const CAS_OVERRIDE_WARNING: &str =
    "\"cas_required\" set to false, but is mandated by backend config. This value will be ignored.";

/// GET `config`.
pub(super) async fn read_config(storage: &dyn Storage) -> Result<Response, SdkError> {
    let config = load_config(storage).await?;
    Ok(Response::json(json!({
        "cas_required": config.cas_required,
        "delete_version_after": format_duration_secs(config.delete_version_after),
        "max_versions": config.max_versions,
    })))
}

/// POST `config`: only the fields given change. A negative `delete_version_after`
/// disables it for every secret, zero clears it (Vault's semantics).
pub(super) async fn write_config(
    storage: &dyn Storage,
    req: &Request,
) -> Result<Response, SdkError> {
    let max_versions = params::u32_field(req, "max_versions")?;
    let cas_required = req.get_bool("cas_required")?;
    let delete_version_after = params::secs_field(req, "delete_version_after", true)?;
    if max_versions.is_none() && cas_required.is_none() && delete_version_after.is_none() {
        return Ok(Response::empty());
    }
    let mut config = load_config(storage).await?;
    if let Some(max) = max_versions {
        config.max_versions = max;
    }
    if let Some(cas) = cas_required {
        config.cas_required = cas;
    }
    if let Some(secs) = delete_version_after {
        config.delete_version_after = secs.max(-1);
    }
    storage.commit(vec![json_op(CONFIG_KEY, &config)?]).await?;
    Ok(Response::empty())
}

/// LIST `metadata/[folder/]`: the secrets and sub-folders in a folder.
pub(super) async fn list(storage: &dyn Storage, raw: &str) -> Result<Response, SdkError> {
    let folder = params::folder_path(raw)?;
    Response::list(storage.list(&format!("{META_PREFIX}{folder}")).await?)
}

/// GET `metadata/<path>`.
pub(super) async fn read(storage: &dyn Storage, path: &str) -> Result<Response, SdkError> {
    let path = params::secret_path(path)?;
    let meta = load_meta(storage, path).await?.ok_or(SdkError::NotFound)?;
    let versions: Map<String, Value> = meta
        .versions
        .iter()
        .map(|(number, vm)| {
            let entry = json!({
                "created_time": format_time(&vm.created_time),
                "deletion_time": format_opt_time(vm.deletion_time.as_ref()),
                "destroyed": vm.destroyed,
            });
            (number.to_string(), entry)
        })
        .collect();
    Ok(Response::json(json!({
        "cas_required": meta.cas_required,
        "created_time": format_time(&meta.created_time),
        "current_version": meta.current_version,
        "custom_metadata": meta.custom_metadata_json(),
        "delete_version_after": format_duration_secs(meta.delete_version_after),
        "max_versions": meta.max_versions,
        "oldest_version": meta.oldest_version,
        "updated_time": format_time(&meta.updated_time),
        "versions": versions,
    })))
}

/// The settings fields of a metadata write or patch, parsed and validated.
struct MetadataFields {
    max_versions: Option<u32>,
    cas_required: Option<bool>,
    delete_version_after: Option<i64>,
    /// `Some(None)`: an explicit `null` (PATCH: remove all).
    custom_metadata: Option<Option<BTreeMap<String, Option<String>>>>,
}

impl MetadataFields {
    fn parse(req: &Request, patch: bool) -> Result<Self, SdkError> {
        let custom_metadata = match req.data.get("custom_metadata") {
            None => None,
            Some(Value::Null) if patch => Some(None),
            Some(Value::Null) => None,
            Some(value) => Some(Some(params::custom_metadata(value, patch)?)),
        };
        Ok(MetadataFields {
            max_versions: params::u32_field(req, "max_versions")?,
            cas_required: req.get_bool("cas_required")?,
            delete_version_after: params::secs_field(req, "delete_version_after", false)?,
            custom_metadata,
        })
    }

    fn is_empty(&self) -> bool {
        self.max_versions.is_none()
            && self.cas_required.is_none()
            && self.delete_version_after.is_none()
            && self.custom_metadata.is_none()
    }

    /// Apply to `meta`: settings are replaced; `custom_metadata` is replaced by a write
    /// and merge-patched (null removes a key) by a patch. The result is validated.
    fn apply(self, meta: &mut KeyMetadata, patch: bool) -> Result<(), SdkError> {
        if let Some(max) = self.max_versions {
            meta.max_versions = max;
        }
        if let Some(cas) = self.cas_required {
            meta.cas_required = cas;
        }
        if let Some(secs) = self.delete_version_after {
            meta.delete_version_after = secs;
        }
        match self.custom_metadata {
            None => {}
            Some(None) => meta.custom_metadata.clear(),
            Some(Some(entries)) => {
                if !patch {
                    meta.custom_metadata.clear();
                }
                for (key, value) in entries {
                    match value {
                        Some(value) => {
                            meta.custom_metadata.insert(key, value);
                        }
                        None => {
                            meta.custom_metadata.remove(&key);
                        }
                    }
                }
                params::validate_custom_metadata(&meta.custom_metadata)?;
            }
        }
        Ok(())
    }
}

/// The answer to a metadata write or patch: 204, or 200 with Vault's warning when the
/// secret tries to switch off a CAS requirement the mount imposes.
async fn settings_response(
    storage: &dyn Storage,
    fields: &MetadataFields,
) -> Result<Response, SdkError> {
    if fields.cas_required == Some(false) && load_config(storage).await?.cas_required {
        return Ok(Response::empty().with_warning(CAS_OVERRIDE_WARNING));
    }
    Ok(Response::empty())
}

impl KvV2 {
    /// POST/PUT `metadata/<path>`: set a secret's settings, creating its metadata if
    /// needed (no fields at all is a no-op, as Vault).
    pub(super) async fn write_metadata(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
    ) -> Result<Response, SdkError> {
        let path = params::secret_path(path)?;
        let fields = MetadataFields::parse(req, false)?;
        if fields.is_empty() {
            return Ok(Response::empty());
        }
        let response = settings_response(storage, &fields).await?;
        let _guard = self.lock(path).write().await;
        let mut meta = match load_meta(storage, path).await? {
            Some(meta) => meta,
            None => KeyMetadata::new(Utc::now()),
        };
        fields.apply(&mut meta, false)?;
        self.commit_secret(storage, path, vec![put_meta(path, &meta)?])
            .await?;
        Ok(response)
    }

    /// PATCH `metadata/<path>`: merge settings into existing metadata (404 if none).
    pub(super) async fn patch_metadata(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
    ) -> Result<Response, SdkError> {
        let path = params::secret_path(path)?;
        let fields = MetadataFields::parse(req, true)?;
        let response = settings_response(storage, &fields).await?;
        let _guard = self.lock(path).write().await;
        let mut meta = load_meta(storage, path).await?.ok_or(SdkError::NotFound)?;
        fields.apply(&mut meta, true)?;
        self.commit_secret(storage, path, vec![put_meta(path, &meta)?])
            .await?;
        Ok(response)
    }

    /// DELETE `metadata/<path>`: the metadata and every version, in one commit.
    pub(super) async fn delete_metadata(
        &self,
        storage: &dyn Storage,
        path: &str,
    ) -> Result<Response, SdkError> {
        let path = params::secret_path(path)?;
        let _guard = self.lock(path).write().await;
        let Some(meta) = load_meta(storage, path).await? else {
            return Ok(Response::empty());
        };
        let mut ops: Vec<StorageOp> = meta
            .versions
            .keys()
            .map(|v| StorageOp::Delete {
                key: version_key(path, *v),
            })
            .collect();
        ops.push(StorageOp::Delete {
            key: crate::layout::meta_key(path),
        });
        self.commit_secret(storage, path, ops).await?;
        Ok(Response::empty())
    }
}

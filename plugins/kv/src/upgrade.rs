//! The v1 -> v2 upgrade of a mount: when a v1 mount is tuned to `version=2`, the core
//! rebuilds it as a v2 backend over the same storage, and on first use that backend
//! moves every v1 secret into the v2 layout as version 1 of the same path.
//!
//! Every key outside `_kv2/` is v1 data (the v1 engine cannot write inside it). Each
//! secret moves in one atomic commit (put version 1, put metadata, delete the v1 key), so
//! a crash mid-way leaves every secret either fully migrated or untouched, and a rerun
//! only sees what is left. When nothing is left, the marker `_kv2/upgrade` records that
//! the upgrade is done; later starts see the marker and skip the scan. A mount without
//! v1 data (a fresh v2 mount) has nothing to record: its scan is one listing of the
//! storage root, which holds only `_kv2/`, so a read there never causes a write.
//!
//! Unlike Vault, which upgrades in the background and answers 400 "Upgrading from
//! non-versioned to versioned data…" meanwhile, the first request waits for the upgrade
//! (it takes one commit per secret) and then proceeds.

use chrono::Utc;
use coffer_sdk::storage::json_op;
use coffer_sdk::{SdkError, Storage, StorageExt, StorageOp};
use serde_json::{Map, Value};

use crate::layout::{
    meta_key, version_key, KeyMetadata, UpgradeMarker, VersionMeta, VersionRecord, UPGRADE_KEY,
    V2_ROOT,
};

/// Make sure the mount's storage is in v2 layout (idempotent).
pub async fn run(storage: &dyn Storage) -> Result<(), SdkError> {
    if storage.get(UPGRADE_KEY).await?.is_some() {
        return Ok(());
    }
    let keys = v1_keys(storage).await?;
    if keys.is_empty() {
        return Ok(());
    }
    let mut migrated = 0;
    for key in keys {
        if migrate_key(storage, &key).await? {
            migrated += 1;
        }
    }
    if migrated > 0 {
        tracing::info!(migrated, "kv: upgraded v1 secrets to the versioned layout");
    }
    let marker = UpgradeMarker {
        finished_time: Utc::now(),
        migrated,
    };
    storage.commit(vec![json_op(UPGRADE_KEY, &marker)?]).await
}

/// Every key outside the reserved v2 subtree.
async fn v1_keys(storage: &dyn Storage) -> Result<Vec<String>, SdkError> {
    let mut keys = Vec::new();
    for child in storage.list("").await? {
        if child == V2_ROOT {
            continue;
        }
        if child.ends_with('/') {
            keys.extend(storage.list_recursive(&child).await?);
        } else {
            keys.push(child);
        }
    }
    Ok(keys)
}

/// Move one v1 secret to version 1 of the same path, atomically. Returns whether it moved.
///
/// A value that is not a JSON object (v1 never writes one) or a path that already has v2
/// metadata (cannot happen: requests wait for the upgrade) is left where it is, with a
/// warning, rather than dropped.
async fn migrate_key(storage: &dyn Storage, key: &str) -> Result<bool, SdkError> {
    let Some(bytes) = storage.get(key).await? else {
        return Ok(false);
    };
    let Ok(data) = serde_json::from_slice::<Map<String, Value>>(&bytes) else {
        tracing::warn!(
            key,
            "kv upgrade: v1 value is not a JSON object; left in place"
        );
        return Ok(false);
    };
    if storage.get(&meta_key(key)).await?.is_some() {
        tracing::warn!(
            key,
            "kv upgrade: path already has v2 metadata; v1 value left in place"
        );
        return Ok(false);
    }
    let now = Utc::now();
    let mut meta = KeyMetadata::new(now);
    meta.current_version = 1;
    meta.versions.insert(
        1,
        VersionMeta {
            created_time: now,
            deletion_time: None,
            destroyed: false,
        },
    );
    let record = VersionRecord {
        created_time: now,
        data,
    };
    storage
        .commit(vec![
            json_op(&version_key(key, 1), &record)?,
            json_op(&meta_key(key), &meta)?,
            StorageOp::Delete {
                key: key.to_string(),
            },
        ])
        .await?;
    Ok(true)
}

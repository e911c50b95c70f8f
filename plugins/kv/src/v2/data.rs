//! The version endpoints of KV v2: `data/` (read, write, patch, soft-delete latest),
//! `delete/`, `undelete/`, `destroy/` and `subkeys/`.

use chrono::{DateTime, Utc};
use coffer_sdk::storage::json_op;
use coffer_sdk::{Request, Response, SdkError, Storage, StorageOp};
use serde_json::{Map, Value};

use super::{load_meta, load_version, put_meta, KvV2};
use crate::json::{merge_patch, subkeys};
use crate::layout::{
    version_key, KeyMetadata, MountConfig, VersionMeta, VersionRecord, DEFAULT_MAX_VERSIONS,
};
use crate::params;

/// When a version created (or undeleted) at `from` is due to count as deleted: `from`
/// plus the smaller non-zero `delete_version_after` of mount and secret; never when both
/// are unset or the mount disabled it.
pub(super) fn scheduled_deletion(
    config: &MountConfig,
    meta: &KeyMetadata,
    from: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if config.delete_version_after < 0 {
        return None;
    }
    let secs = [config.delete_version_after, meta.delete_version_after]
        .into_iter()
        .filter(|s| *s > 0)
        .min()?;
    from.checked_add_signed(chrono::Duration::try_seconds(secs)?)
}

/// Versions kept per secret: the secret's `max_versions`, else the mount's, else 10.
fn max_versions(config: &MountConfig, meta: &KeyMetadata) -> u64 {
    let max = match (meta.max_versions, config.max_versions) {
        (0, 0) => DEFAULT_MAX_VERSIONS,
        (0, mount) => mount,
        (secret, _) => secret,
    };
    u64::from(max)
}

/// Append version `current_version + 1` holding `data` to `meta`, prune what falls out
/// of the `max_versions` window, and return the new version's number and metadata with
/// the storage ops that make all of it durable (to be applied as one commit).
pub(super) fn append_version(
    path: &str,
    config: &MountConfig,
    meta: &mut KeyMetadata,
    data: Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<(u64, VersionMeta, Vec<StorageOp>), SdkError> {
    let version = meta
        .current_version
        .checked_add(1)
        .ok_or_else(|| SdkError::Internal("version counter overflow".into()))?;
    let vm = VersionMeta {
        created_time: now,
        deletion_time: scheduled_deletion(config, meta, now),
        destroyed: false,
    };
    let record = VersionRecord {
        created_time: now,
        data,
    };
    let mut ops = vec![json_op(&version_key(path, version), &record)?];
    meta.current_version = version;
    meta.updated_time = now;
    meta.versions.insert(version, vm.clone());

    // Vault's sliding window: once `current - oldest` reaches the limit, everything up to
    // `current - max` goes, and `oldest_version` moves past it.
    let max = max_versions(config, meta);
    if meta.current_version.saturating_sub(meta.oldest_version) >= max {
        let last_pruned = meta.current_version - max;
        let pruned: Vec<u64> = meta
            .versions
            .range(..=last_pruned)
            .map(|(v, _)| *v)
            .collect();
        for old in pruned {
            meta.versions.remove(&old);
            ops.push(StorageOp::Delete {
                key: version_key(path, old),
            });
        }
        meta.oldest_version = last_pruned + 1;
    }
    ops.push(put_meta(path, meta)?);
    Ok((version, vm, ops))
}

/// Vault's check-and-set rule: a given `cas` must equal the current version (0 = the
/// secret does not exist yet); without one the write passes unless CAS is required.
fn check_cas(config: &MountConfig, meta: &KeyMetadata, cas: Option<u64>) -> Result<(), SdkError> {
    match cas {
        Some(cas) if cas != meta.current_version => Err(SdkError::Conflict(
            "check-and-set parameter did not match the current version".into(),
        )),
        Some(_) => Ok(()),
        None if config.cas_required || meta.cas_required => Err(SdkError::bad(
            "check-and-set parameter required for this call",
        )),
        None => Ok(()),
    }
}

/// A 404 that still carries a body (deleted or destroyed versions, as Vault).
fn not_found_with(data: Map<String, Value>) -> Response {
    Response {
        data: Some(data),
        status: Some(404),
        ..Default::default()
    }
}

/// The `{<field>: <payload or null>, metadata: {...}}` body of reads.
fn read_body(field: &str, payload: Value, metadata: Map<String, Value>) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert(field.into(), payload);
    body.insert("metadata".into(), Value::Object(metadata));
    body
}

impl KvV2 {
    /// Commit a new version built from `data` and answer with its metadata.
    async fn commit_version(
        &self,
        storage: &dyn Storage,
        path: &str,
        config: &MountConfig,
        mut meta: KeyMetadata,
        data: Map<String, Value>,
    ) -> Result<Response, SdkError> {
        let (version, vm, ops) = append_version(path, config, &mut meta, data, Utc::now())?;
        self.commit_secret(storage, path, ops).await?;
        Ok(Response::data(meta.version_body(version, &vm)))
    }

    /// Read one version's data (`?version=`, default latest) or, for `subkeys/`, its
    /// structure. Deleted or destroyed: 404 with the metadata and a `null` payload.
    async fn read_version(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
        field: &str,
        shape: impl FnOnce(Map<String, Value>) -> Map<String, Value>,
    ) -> Result<Response, SdkError> {
        let path = params::secret_path(path)?;
        let requested = params::version_param(req)?;
        let _guard = self.lock(path).read().await;
        let meta = self
            .cached_meta(storage, path)
            .await?
            .ok_or(SdkError::NotFound)?;
        let version = if requested == 0 {
            meta.current_version
        } else {
            requested
        };
        let vm = meta.versions.get(&version).ok_or(SdkError::NotFound)?;
        let metadata = meta.version_body(version, vm);
        if !vm.is_live(Utc::now()) {
            return Ok(not_found_with(read_body(field, Value::Null, metadata)));
        }
        let data = load_version(storage, path, version).await?;
        let payload = Value::Object(shape(data));
        Ok(Response::data(read_body(field, payload, metadata)))
    }

    /// GET `data/<path>`.
    pub(super) async fn read_data(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
    ) -> Result<Response, SdkError> {
        self.read_version(storage, req, path, "data", |data| data)
            .await
    }

    /// GET `subkeys/<path>`.
    pub(super) async fn read_subkeys(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
    ) -> Result<Response, SdkError> {
        let depth = params::depth_param(req)?;
        self.read_version(storage, req, path, "subkeys", |data| subkeys(&data, depth))
            .await
    }

    /// POST/PUT `data/<path>`: a new version.
    pub(super) async fn write_data(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
    ) -> Result<Response, SdkError> {
        let path = params::secret_path(path)?;
        let data = params::data_object(req)?.clone();
        let cas = params::cas(req)?;
        let _guard = self.lock(path).write().await;
        let config = self.config(storage).await?;
        // From the cache (see the module docs): for a new secret, what the existence
        // check found.
        let meta = match self.cached_meta(storage, path).await? {
            Some(meta) => KeyMetadata::clone(&meta),
            None => KeyMetadata::new(Utc::now()),
        };
        check_cas(&config, &meta, cas)?;
        self.commit_version(storage, path, &config, meta, data)
            .await
    }

    /// PATCH `data/<path>`: merge-patch the latest version into a new one.
    pub(super) async fn patch_data(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
    ) -> Result<Response, SdkError> {
        let path = params::secret_path(path)?;
        let patch = Value::Object(params::data_object(req)?.clone());
        let cas = params::cas(req)?;
        let _guard = self.lock(path).write().await;
        let meta = load_meta(storage, path).await?.ok_or(SdkError::NotFound)?;
        let config = self.config(storage).await?;
        check_cas(&config, &meta, cas)?;
        let latest = meta.current_version;
        let vm = meta.versions.get(&latest).ok_or(SdkError::NotFound)?;
        if !vm.is_live(Utc::now()) {
            return Ok(not_found_with(meta.version_body(latest, vm)));
        }
        let mut merged = Value::Object(load_version(storage, path, latest).await?);
        merge_patch(&mut merged, &patch);
        let Value::Object(merged) = merged else {
            return Err(SdkError::Internal(
                "merge patch of two objects gave a non-object".into(),
            ));
        };
        self.commit_version(storage, path, &config, meta, merged)
            .await
    }

    /// DELETE `data/<path>`: soft-delete the latest version (a no-op when it is already
    /// deleted or destroyed, or the secret does not exist).
    pub(super) async fn delete_latest(
        &self,
        storage: &dyn Storage,
        path: &str,
    ) -> Result<Response, SdkError> {
        let path = params::secret_path(path)?;
        let _guard = self.lock(path).write().await;
        let Some(mut meta) = load_meta(storage, path).await? else {
            return Ok(Response::empty());
        };
        let now = Utc::now();
        let latest = meta.current_version;
        if let Some(vm) = meta.versions.get_mut(&latest).filter(|vm| vm.is_live(now)) {
            vm.deletion_time = Some(now);
            self.commit_secret(storage, path, vec![put_meta(path, &meta)?])
                .await?;
        }
        Ok(Response::empty())
    }

    /// Apply `change` to each listed version that exists, then commit the metadata (and
    /// the data deletes `change` asked for) once, if anything changed. `change` also gets
    /// the deletion time a version revived now would be scheduled for.
    async fn change_versions(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
        mut change: impl FnMut(Option<DateTime<Utc>>, &mut VersionMeta) -> ChangeOutcome,
    ) -> Result<Response, SdkError> {
        let path = params::secret_path(path)?;
        let versions = params::versions(req)?;
        let _guard = self.lock(path).write().await;
        let Some(mut meta) = load_meta(storage, path).await? else {
            return Ok(Response::empty());
        };
        let config = self.config(storage).await?;
        let revived_deletion = scheduled_deletion(&config, &meta, Utc::now());
        let mut changed = false;
        let mut data_deletes = Vec::new();
        for version in versions {
            let Some(vm) = meta.versions.get_mut(&version) else {
                continue;
            };
            match change(revived_deletion, vm) {
                ChangeOutcome::Unchanged => {}
                ChangeOutcome::Changed => changed = true,
                ChangeOutcome::ChangedDropData => {
                    changed = true;
                    data_deletes.push(StorageOp::Delete {
                        key: version_key(path, version),
                    });
                }
            }
        }
        if changed {
            let mut batch = vec![put_meta(path, &meta)?];
            batch.extend(data_deletes);
            self.commit_secret(storage, path, batch).await?;
        }
        Ok(Response::empty())
    }

    /// POST `delete/<path>` `{versions}`: soft-delete those versions.
    pub(super) async fn delete_versions(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
    ) -> Result<Response, SdkError> {
        let now = Utc::now();
        self.change_versions(storage, req, path, |_, vm| {
            if vm.is_live(now) {
                vm.deletion_time = Some(now);
                ChangeOutcome::Changed
            } else {
                ChangeOutcome::Unchanged
            }
        })
        .await
    }

    /// POST `undelete/<path>` `{versions}`: clear the deletion of those versions (not of
    /// destroyed ones); a configured `delete_version_after` schedules a new deletion.
    pub(super) async fn undelete_versions(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
    ) -> Result<Response, SdkError> {
        self.change_versions(storage, req, path, |revived_deletion, vm| {
            if vm.destroyed {
                return ChangeOutcome::Unchanged;
            }
            vm.deletion_time = revived_deletion;
            ChangeOutcome::Changed
        })
        .await
    }

    /// PUT `destroy/<path>` `{versions}`: remove the data of those versions for good and
    /// mark them destroyed (metadata and data deletes in one commit).
    pub(super) async fn destroy_versions(
        &self,
        storage: &dyn Storage,
        req: &Request,
        path: &str,
    ) -> Result<Response, SdkError> {
        self.change_versions(storage, req, path, |_, vm| {
            if vm.destroyed {
                return ChangeOutcome::Unchanged;
            }
            vm.destroyed = true;
            ChangeOutcome::ChangedDropData
        })
        .await
    }
}

/// What a per-version change did.
enum ChangeOutcome {
    Unchanged,
    Changed,
    /// Changed, and the version's data key must go too.
    ChangedDropData,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date")
    }

    #[test]
    fn deletion_schedule_takes_the_smaller_non_zero() {
        let cases = [
            (0, 0, None),
            (60, 0, Some(60)),
            (0, 30, Some(30)),
            (60, 30, Some(30)),
            (30, 60, Some(30)),
            (-1, 30, None),
        ];
        for (mount, secret, want) in cases {
            let config = MountConfig {
                delete_version_after: mount,
                ..Default::default()
            };
            let mut meta = KeyMetadata::new(now());
            meta.delete_version_after = secret;
            let got = scheduled_deletion(&config, &meta, now());
            let want = want.map(|s| now() + chrono::Duration::seconds(s));
            assert_eq!(got, want, "mount {mount} secret {secret}");
        }
    }

    #[test]
    fn window_prunes_oldest_versions() {
        let config = MountConfig {
            max_versions: 3,
            ..Default::default()
        };
        let mut meta = KeyMetadata::new(now());
        let mut deleted = Vec::new();
        for _ in 0..5 {
            let (_, _, ops) =
                append_version("p", &config, &mut meta, Map::new(), now()).expect("append");
            deleted.extend(ops.into_iter().filter_map(|op| match op {
                StorageOp::Delete { key } => Some(key),
                StorageOp::Put { .. } => None,
            }));
        }
        assert_eq!(meta.current_version, 5);
        assert_eq!(meta.versions.keys().copied().collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(meta.oldest_version, 3);
        assert_eq!(deleted, ["_kv2/ver/p/1", "_kv2/ver/p/2"]);
    }
}

//! The Raft state machine: openraft's `RaftStateMachine` over a [`KvStore`].
//!
//! * **Apply**: the ops of every entry in an apply call, plus `last_applied` and the
//!   membership, go into the store as one atomic batch. There is no flush per apply:
//!   after a crash openraft re-applies from the (fsynced) log past `last_applied`. Once
//!   the batch is in, the registered [`ApplyListener`]s hear `(index, changed keys)` for
//!   each entry and the applied index advances (see [`StateMachine::applied_index`]).
//! * **Unknown entries**: an envelope with a format or op this build does not know stops
//!   the state machine with a loud error naming the index, format and op. The entries
//!   before it are applied; that entry and everything after it are never skipped.
//! * **Snapshots**: building takes the apply lock while it copies the store, so the copy
//!   matches `last_applied` exactly. The data is an rmp-serde encoded list of key/value
//!   pairs (values stay opaque ciphertext). Before a snapshot is reported built, the store
//!   is flushed and (file-backed) the snapshot is written to `snapshot/current.snap`
//!   atomically, so the log purge that follows is always behind durable state.
//!   Installing replaces the whole store (first persisting the snapshot file, so an
//!   interrupted install is finished on the next start) and flushes.
//! * **Restore entries** ([`crate::types::OP_RESTORE`], format 2): the store is replaced by
//!   the entry's snapshot payload at that log position; `last_applied` and the membership
//!   stay this cluster's. Listeners hear every key that existed before or after.
//! * **Recovery** on open: if the store is behind the persisted snapshot (sled lost its
//!   last writes in a power loss: it does not fsync) or a replacement was interrupted,
//!   the snapshot is installed again before openraft starts. An interrupted replacement
//!   with no snapshot file (a restore entry, on a node whose log was never purged) empties
//!   the store and lets openraft re-apply the whole log.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use coffer_storage::kv::{KvExport, KvStore};
use coffer_storage::{ApplyListener, Op, StorageError};
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::types::{
    Command, Entry, EnvelopeError, LogId, Node, RaftStorageError, Response, TypeConfig,
    CURRENT_FORMAT,
};

const LAST_APPLIED_KEY: &str = "raft.last_applied";
const MEMBERSHIP_KEY: &str = "raft.membership";
const SNAPSHOT_FILE: &str = "current.snap";
const SNAPSHOT_TMP: &str = "current.snap.tmp";
const SNAPSHOT_MAGIC: &[u8; 8] = b"CFSNAP01";
/// Version of the snapshot data encoding.
const SNAPSHOT_FORMAT: u32 = 1;

type Membership = StoredMembership<u64, Node>;

fn sm_error(verb: ErrorVerb, e: impl std::error::Error + 'static) -> RaftStorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(&e)).into()
}

fn snapshot_error(verb: ErrorVerb, e: impl std::error::Error + 'static) -> RaftStorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

fn io_other(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

#[derive(Serialize, Deserialize)]
struct KvPair {
    key: String,
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
}

/// The snapshot data: every key/value pair of the store.
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    format: u32,
    pairs: Vec<KvPair>,
}

/// What `current.snap` holds.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, Node>,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, Node>,
    data: Arc<Vec<u8>>,
}

struct Applied {
    last_applied: Option<LogId>,
    membership: Membership,
}

struct Shared {
    kv: Arc<dyn KvStore>,
    /// The highest entry format this node applies (below [`CURRENT_FORMAT`] only when a
    /// test makes it stand in for an older build).
    max_format: u32,
    /// Held while a batch is written and while a snapshot copies the store.
    apply_lock: Mutex<Applied>,
    listeners: RwLock<Vec<ApplyListener>>,
    applied_tx: watch::Sender<u64>,
    snapshot_dir: Option<PathBuf>,
    current: Mutex<Option<StoredSnapshot>>,
    snapshot_seq: AtomicU64,
}

/// The state machine (cheap to clone: clones share the same store).
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks half-way through a change.
    l.lock().unwrap_or_else(|e| e.into_inner())
}

fn decode_meta<T: for<'de> Deserialize<'de>>(
    kv: &dyn KvStore,
    key: &str,
) -> Result<Option<T>, StorageError> {
    match kv.get_meta(key)? {
        Some(bytes) => rmp_serde::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Corrupt(format!("state machine metadata {key}: {e}"))),
        None => Ok(None),
    }
}

fn encode_meta<T: Serialize>(v: &T) -> Result<Vec<u8>, RaftStorageError> {
    rmp_serde::to_vec_named(v).map_err(|e| sm_error(ErrorVerb::Write, e))
}

fn applied_index_of(id: Option<LogId>) -> u64 {
    id.map_or(0, |l| l.index)
}

impl StateMachine {
    /// Open the state machine over `kv`. With `snapshot_dir`, snapshots are persisted there
    /// and used to repair a store that fell behind or whose replacement was interrupted.
    pub fn open(
        kv: Arc<dyn KvStore>,
        snapshot_dir: Option<PathBuf>,
    ) -> Result<StateMachine, StorageError> {
        StateMachine::open_with_format(kv, snapshot_dir, CURRENT_FORMAT)
    }

    /// [`StateMachine::open`] for a node that applies entry formats up to `max_format`.
    pub fn open_with_format(
        kv: Arc<dyn KvStore>,
        snapshot_dir: Option<PathBuf>,
        max_format: u32,
    ) -> Result<StateMachine, StorageError> {
        let current = match &snapshot_dir {
            Some(dir) => {
                fs::create_dir_all(dir)
                    .map_err(|e| StorageError::Io(format!("creating {}: {e}", dir.display())))?;
                load_snapshot_file(dir)?
            }
            None => None,
        };
        let mut last_applied: Option<LogId> = decode_meta(kv.as_ref(), LAST_APPLIED_KEY)?;
        let mut membership: Membership =
            decode_meta(kv.as_ref(), MEMBERSHIP_KEY)?.unwrap_or_default();

        let interrupted = kv.replace_interrupted()?;
        if let Some(snap) = &current {
            if interrupted || last_applied < snap.meta.last_log_id {
                tracing::warn!(
                    snapshot = %snap.meta.snapshot_id,
                    store_applied = ?last_applied,
                    interrupted,
                    "state machine is behind its persisted snapshot; installing the snapshot again"
                );
                let payload = decode_payload(&snap.data)?;
                replace_store(kv.as_ref(), payload, &snap.meta)?;
                last_applied = snap.meta.last_log_id;
                membership = snap.meta.last_membership.clone();
            }
        } else if interrupted {
            // Only a restore entry replaces the store on a node without a snapshot file, and
            // such a node never purged its log: start from nothing and re-apply it all.
            tracing::warn!(
                "an interrupted store replacement left the state store incomplete; emptying it \
                 so the whole log is applied again"
            );
            kv.replace_all(KvExport::default())?;
            last_applied = None;
            membership = Membership::default();
        }

        let (applied_tx, _) = watch::channel(applied_index_of(last_applied));
        Ok(StateMachine {
            shared: Arc::new(Shared {
                kv,
                max_format,
                apply_lock: Mutex::new(Applied {
                    last_applied,
                    membership,
                }),
                listeners: RwLock::new(Vec::new()),
                applied_tx,
                snapshot_dir,
                current: Mutex::new(current),
                snapshot_seq: AtomicU64::new(0),
            }),
        })
    }

    /// The store reads are served from.
    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.shared.kv
    }

    /// Register a listener for applied batches.
    pub fn add_listener(&self, l: ApplyListener) {
        self.shared
            .listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(l);
    }

    /// Index of the last applied entry (0 before anything was applied).
    pub fn applied_index(&self) -> u64 {
        *self.shared.applied_tx.borrow()
    }

    /// A receiver that sees every change of the applied index.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.shared.applied_tx.subscribe()
    }

    /// Flush the store to disk.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.shared.kv.flush()
    }

    /// The highest entry format this state machine applies.
    pub fn max_format(&self) -> u32 {
        self.shared.max_format
    }

    /// A consistent copy of every key/value pair (ciphertext) in the snapshot payload
    /// encoding, with the log id it reflects. Applies wait while the store is copied.
    pub fn export_payload(&self) -> Result<(Option<LogId>, Vec<u8>), StorageError> {
        let (last, export) = {
            let state = lock(&self.shared.apply_lock);
            (state.last_applied, self.shared.kv.export()?)
        };
        let payload = SnapshotPayload {
            format: SNAPSHOT_FORMAT,
            pairs: export
                .data
                .into_iter()
                .map(|(key, value)| KvPair { key, value })
                .collect(),
        };
        let data = rmp_serde::to_vec_named(&payload)
            .map_err(|e| StorageError::Io(format!("encoding the snapshot: {e}")))?;
        Ok((last, data))
    }

    /// Replace the store with a restore entry's payload at `log_id`, keeping this cluster's
    /// membership. Returns every key that existed before or exists after.
    fn restore_payload(
        &self,
        state: &mut Applied,
        payload: &[u8],
        log_id: LogId,
        membership: &Membership,
    ) -> Result<Vec<String>, RaftStorageError> {
        let apply_err = |e: StorageError| -> RaftStorageError {
            StorageIOError::new(
                ErrorSubject::Apply(log_id),
                ErrorVerb::Write,
                AnyError::new(&e),
            )
            .into()
        };
        let payload = decode_payload(payload).map_err(apply_err)?;
        let kv = self.shared.kv.as_ref();
        let mut changed: BTreeSet<String> = kv
            .keys_with_prefix("")
            .map_err(apply_err)?
            .into_iter()
            .collect();
        changed.extend(payload.pairs.iter().map(|p| p.key.clone()));
        let last = Some(log_id);
        kv.replace_all(KvExport {
            data: payload
                .pairs
                .into_iter()
                .map(|p| (p.key, p.value))
                .collect(),
            meta: vec![
                (
                    LAST_APPLIED_KEY.to_string(),
                    meta_bytes(&last).map_err(apply_err)?,
                ),
                (
                    MEMBERSHIP_KEY.to_string(),
                    meta_bytes(membership).map_err(apply_err)?,
                ),
            ],
        })
        .map_err(apply_err)?;
        state.last_applied = last;
        state.membership = membership.clone();
        self.shared.applied_tx.send_replace(log_id.index);
        tracing::warn!(
            index = log_id.index,
            keys = changed.len(),
            "restored the state machine from a snapshot"
        );
        Ok(changed.into_iter().collect())
    }

    fn notify(&self, changes: &[(u64, Vec<String>)]) {
        if changes.is_empty() {
            return;
        }
        let listeners = self
            .shared
            .listeners
            .read()
            .unwrap_or_else(|e| e.into_inner());
        for (index, keys) in changes {
            for l in listeners.iter() {
                l(*index, keys);
            }
        }
    }

    /// Write a batch and advance the cached state.
    fn commit_batch(
        &self,
        state: &mut Applied,
        ops: &[Op],
        last_applied: LogId,
        membership: &Membership,
    ) -> Result<(), RaftStorageError> {
        let applied_bytes = encode_meta(&Some(last_applied))?;
        let membership_bytes = encode_meta(membership)?;
        self.shared
            .kv
            .apply(
                ops,
                &[
                    (LAST_APPLIED_KEY, &applied_bytes),
                    (MEMBERSHIP_KEY, &membership_bytes),
                ],
            )
            .map_err(|e| {
                StorageIOError::new(
                    ErrorSubject::Apply(last_applied),
                    ErrorVerb::Write,
                    AnyError::new(&e),
                )
            })?;
        state.last_applied = Some(last_applied);
        state.membership = membership.clone();
        self.shared.applied_tx.send_replace(last_applied.index);
        Ok(())
    }

    /// Persist `snap` as the current snapshot file (atomically), if file-backed.
    fn persist(&self, meta: &SnapshotMeta<u64, Node>, data: &[u8]) -> Result<(), std::io::Error> {
        let Some(dir) = &self.shared.snapshot_dir else {
            return Ok(());
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        let body = rmp_serde::to_vec_named(&file).map_err(io_other)?;
        let mut buf = Vec::with_capacity(body.len() + 12);
        buf.extend_from_slice(SNAPSHOT_MAGIC);
        buf.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        buf.extend_from_slice(&body);
        let tmp = dir.join(SNAPSHOT_TMP);
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
        File::open(dir)?.sync_all()
    }
}

fn load_snapshot_file(dir: &Path) -> Result<Option<StoredSnapshot>, StorageError> {
    let _ = fs::remove_file(dir.join(SNAPSHOT_TMP));
    let buf = match fs::read(dir.join(SNAPSHOT_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::Io(format!("reading the snapshot file: {e}"))),
    };
    if buf.len() < 12 || &buf[..8] != SNAPSHOT_MAGIC {
        return Err(StorageError::Corrupt("snapshot file: bad header".into()));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&buf[8..12]);
    if crc32fast::hash(&buf[12..]) != u32::from_le_bytes(crc) {
        return Err(StorageError::Corrupt(
            "snapshot file: checksum mismatch".into(),
        ));
    }
    let file: SnapshotFile = rmp_serde::from_slice(&buf[12..])
        .map_err(|e| StorageError::Corrupt(format!("snapshot file: {e}")))?;
    Ok(Some(StoredSnapshot {
        meta: file.meta,
        data: Arc::new(file.data),
    }))
}

fn decode_payload(data: &[u8]) -> Result<SnapshotPayload, StorageError> {
    let payload: SnapshotPayload = rmp_serde::from_slice(data)
        .map_err(|e| StorageError::Corrupt(format!("snapshot data: {e}")))?;
    if payload.format != SNAPSHOT_FORMAT {
        return Err(StorageError::Unavailable(format!(
            "snapshot data format {} is not supported (this build knows {SNAPSHOT_FORMAT})",
            payload.format
        )));
    }
    Ok(payload)
}

/// Check that `data` is a snapshot payload this build can install.
pub(crate) fn validate_payload(data: &[u8]) -> Result<(), StorageError> {
    decode_payload(data).map(|_| ())
}

fn meta_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    rmp_serde::to_vec_named(v).map_err(|e| StorageError::Io(format!("encoding metadata: {e}")))
}

/// Replace the store's contents with a snapshot's and flush.
fn replace_store(
    kv: &dyn KvStore,
    payload: SnapshotPayload,
    meta: &SnapshotMeta<u64, Node>,
) -> Result<(), StorageError> {
    kv.replace_all(KvExport {
        data: payload
            .pairs
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect(),
        meta: vec![
            (LAST_APPLIED_KEY.to_string(), meta_bytes(&meta.last_log_id)?),
            (
                MEMBERSHIP_KEY.to_string(),
                meta_bytes(&meta.last_membership)?,
            ),
        ],
    })?;
    kv.flush()
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), RaftStorageError> {
        let st = lock(&self.shared.apply_lock);
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut state = lock(&self.shared.apply_lock);
        let mut ops: Vec<Op> = Vec::new();
        let mut changes: Vec<(u64, Vec<String>)> = Vec::new();
        let mut responses = Vec::new();
        let mut membership = state.membership.clone();
        let mut last: Option<LogId> = None;

        for entry in entries {
            let log_id = entry.log_id;
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(log_id), m);
                }
                EntryPayload::Normal(env) => match env.decode_up_to(self.shared.max_format) {
                    Ok(Command::Batch(batch)) => {
                        changes.push((
                            log_id.index,
                            batch.iter().map(|op| op.key().to_string()).collect(),
                        ));
                        ops.extend(batch);
                    }
                    Ok(Command::Restore(payload)) => {
                        // What came before lands first; the restore replaces it all.
                        if let Some(prev) = last {
                            self.commit_batch(&mut state, &ops, prev, &membership)?;
                            ops.clear();
                        }
                        let keys =
                            self.restore_payload(&mut state, &payload, log_id, &membership)?;
                        changes.push((log_id.index, keys));
                    }
                    Err(e) => {
                        // Keep what came before, then stop: never skip this entry.
                        if let Some(prev) = last {
                            self.commit_batch(&mut state, &ops, prev, &membership)?;
                            drop(state);
                            self.notify(&changes);
                        }
                        let msg = match &e {
                            EnvelopeError::Unsupported { format, op } => {
                                tracing::error!(
                                    index = log_id.index,
                                    format = *format,
                                    op = *op,
                                    "STOPPING: log entry {} has format {format} / op {op}, which this \
                                     build does not understand (it knows format {}); upgrade this \
                                     node. The entry is not skipped: applying stops here.",
                                    log_id.index,
                                    self.shared.max_format,
                                );
                                format!(
                                    "log entry {} has unsupported format {format} / op {op}",
                                    log_id.index
                                )
                            }
                            EnvelopeError::Body(why) => {
                                tracing::error!(
                                    index = log_id.index,
                                    format = env.format,
                                    op = env.op,
                                    "STOPPING: log entry {} (format {}, op {}) does not decode: {why}",
                                    log_id.index,
                                    env.format,
                                    env.op,
                                );
                                format!("log entry {} does not decode: {why}", log_id.index)
                            }
                        };
                        return Err(StorageIOError::new(
                            ErrorSubject::Apply(log_id),
                            ErrorVerb::Write,
                            AnyError::error(msg),
                        )
                        .into());
                    }
                },
            }
            last = Some(log_id);
            responses.push(Response {
                index: log_id.index,
            });
        }

        if let Some(last) = last {
            self.commit_batch(&mut state, &ops, last, &membership)?;
        }
        drop(state);
        self.notify(&changes);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let data = snapshot.into_inner();
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "installing a snapshot");
        let payload = decode_payload(&data).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        let this = self.clone();
        let meta2 = meta.clone();
        let data = Arc::new(data);
        let data2 = data.clone();
        let changed =
            tokio::task::spawn_blocking(move || -> Result<Vec<String>, RaftStorageError> {
                // The file first: if we crash half-way through the replacement, the next
                // start finishes it from there.
                this.persist(&meta2, &data2)
                    .map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
                let mut state = lock(&this.shared.apply_lock);
                let kv = this.shared.kv.as_ref();
                let mut changed: BTreeSet<String> = kv
                    .keys_with_prefix("")
                    .map_err(|e| sm_error(ErrorVerb::Read, e))?
                    .into_iter()
                    .collect();
                changed.extend(payload.pairs.iter().map(|p| p.key.clone()));
                replace_store(kv, payload, &meta2).map_err(|e| sm_error(ErrorVerb::Write, e))?;
                state.last_applied = meta2.last_log_id;
                state.membership = meta2.last_membership.clone();
                this.shared
                    .applied_tx
                    .send_replace(applied_index_of(meta2.last_log_id));
                Ok(changed.into_iter().collect())
            })
            .await
            .map_err(|e| sm_error(ErrorVerb::Write, io_other(e)))??;
        *lock(&self.shared.current) = Some(StoredSnapshot {
            meta: meta.clone(),
            data,
        });
        self.notify(&[(applied_index_of(meta.last_log_id), changed)]);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        Ok(lock(&self.shared.current).as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.as_ref().clone())),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let this = self.clone();
        let (meta, data) = tokio::task::spawn_blocking(move || -> Result<_, RaftStorageError> {
            // A consistent copy: no apply runs while the store is exported.
            let (last_log_id, last_membership, export) = {
                let state = lock(&this.shared.apply_lock);
                let export = this
                    .shared
                    .kv
                    .export()
                    .map_err(|e| sm_error(ErrorVerb::Read, e))?;
                (state.last_applied, state.membership.clone(), export)
            };
            let payload = SnapshotPayload {
                format: SNAPSHOT_FORMAT,
                pairs: export
                    .data
                    .into_iter()
                    .map(|(key, value)| KvPair { key, value })
                    .collect(),
            };
            let data = rmp_serde::to_vec_named(&payload)
                .map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
            let seq = this.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match last_log_id {
                Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
                None => format!("none-{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id,
                last_membership,
                snapshot_id,
            };
            // The log is purged behind this snapshot once we return: make it durable.
            this.shared
                .kv
                .flush()
                .map_err(|e| sm_error(ErrorVerb::Write, e))?;
            this.persist(&meta, &data)
                .map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
            Ok((meta, data))
        })
        .await
        .map_err(|e| snapshot_error(ErrorVerb::Write, io_other(e)))??;
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "built a snapshot");
        let data = Arc::new(data);
        *lock(&self.shared.current) = Some(StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        });
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data.as_ref().clone())),
        })
    }
}

//! The Raft state machine: openraft's `RaftStateMachine` over a [`KvStore`].
//!
//! * **Apply**: the ops of every entry in an apply call, plus `last_applied` and the
//!   membership, go into the store in one apply, atomic for readers, with `last_applied`
//!   written last (see `coffer_storage::SledKv`). There is no flush per apply: after a
//!   crash openraft re-applies from the (fsynced) log past `last_applied`, and applying
//!   an entry's whole-value puts and deletes twice gives the same store. Once
//!   the batch is in, the registered [`ApplyListener`]s hear `(index, changed keys)` for
//!   each entry and the applied index advances (see [`StateMachine::applied_index`]).
//! * **Unknown entries**: an envelope with a format or op this build does not know stops
//!   the state machine with a loud error naming the index, format and op. The entries
//!   before it are applied; that entry and everything after it are never skipped.
//! * **Snapshots** are streamed (see [`crate::snapshot`] for the format) from a
//!   consistent view of the store into `snapshot/build.tmp`, fsync'd, and renamed to
//!   `snapshot/current.snap`; the state is never exported into memory, and applies keep
//!   running while a snapshot is built. The view: the builder reads the store in key
//!   order in chunks, and while it does, every apply first records the value (or absence)
//!   as of the snapshot point of each key it changes *ahead of the builder's cursor*
//!   (keys behind it were read already). The builder uses those pre-images instead of
//!   what it reads, and finally writes the recorded pre-images of keys that disappeared.
//!   The result is exactly the store at the `last_applied` read when the build started.
//!   A replacement of the whole store (install, restore entry) during a build makes the
//!   build start over. Before a snapshot is reported built the store is flushed too, so
//!   the log purge that follows is always behind durable state. Sending a snapshot reads
//!   the file; receiving writes `snapshot/incoming-N.tmp`, which installing checks
//!   (structure and CRC), moves into place, and streams into the store. In-memory nodes
//!   keep the same stream in a buffer.
//! * **Restore entries** ([`crate::types::OP_RESTORE`], format 2): the store is replaced by
//!   the entry's snapshot payload at that log position; `last_applied` and the membership
//!   stay this cluster's. Listeners hear every key that existed before or after.
//! * **Recovery** on open: only the snapshot file's header is read. If the store is
//!   behind the persisted snapshot (sled lost its last writes in a power loss: it does
//!   not fsync) or a replacement was interrupted, the snapshot is installed again (from
//!   the file, streamed) before openraft starts. A `current.snap` in the earlier
//!   one-buffer format (`CFSNAP01`) is rewritten in the streamed format once. An interrupted replacement
//!   with no snapshot file (a restore entry, on a node whose log was never purged) empties
//!   the store and lets openraft re-apply the whole log.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
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
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::watch;

use crate::snapshot::{self, SnapshotData, SnapshotReader, SnapshotWriter};
use crate::types::{
    Command, Entry, EnvelopeError, LogId, Node, RaftStorageError, Response, TypeConfig,
    CURRENT_FORMAT,
};

const LAST_APPLIED_KEY: &str = "raft.last_applied";
const MEMBERSHIP_KEY: &str = "raft.membership";
const SNAPSHOT_FILE: &str = "current.snap";
const BUILD_TMP: &str = "build.tmp";
const CONVERT_TMP: &str = "convert.tmp";
const INCOMING_PREFIX: &str = "incoming-";
/// Magic of the earlier one-buffer snapshot file (converted on open).
const OLD_SNAPSHOT_MAGIC: &[u8; 8] = b"CFSNAP01";
/// Version of the restore payload encoding (`sys/storage/raft/snapshot`, restore entries).
const SNAPSHOT_FORMAT: u32 = 1;
/// Pairs read from the store per step of a snapshot build.
const SCAN_CHUNK: usize = 1024;
/// Write buffer of a snapshot file.
const FILE_BUFFER: usize = 1024 * 1024;

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

fn io_storage(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let ctx = format!("{what} {}", path.display());
    move |e| StorageError::Io(format!("{ctx}: {e}"))
}

#[derive(Serialize, Deserialize)]
struct KvPair {
    key: String,
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
}

#[derive(Serialize)]
struct KvPairRef<'a> {
    key: &'a str,
    #[serde(with = "serde_bytes")]
    value: &'a [u8],
}

/// A restore payload: every key/value pair of a store.
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    format: u32,
    pairs: Vec<KvPair>,
}

/// What a `current.snap` in the earlier format held.
#[derive(Deserialize)]
struct OldSnapshotFile {
    meta: SnapshotMeta<u64, Node>,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

#[derive(Clone)]
enum SnapshotBytes {
    /// `snapshot/current.snap`.
    File(PathBuf),
    /// In-memory nodes.
    Mem(Arc<Vec<u8>>),
}

#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, Node>,
    bytes: SnapshotBytes,
    size: u64,
}

struct Applied {
    last_applied: Option<LogId>,
    membership: Membership,
}

/// What a running snapshot build needs from applies (see the module docs).
#[derive(Default)]
struct Capture {
    /// Every data key up to this one was read by the build already.
    cursor: Option<String>,
    /// Values as of the snapshot point of keys changed since, ahead of the cursor.
    pre: BTreeMap<String, Option<Vec<u8>>>,
    /// The whole store was replaced: the build starts over.
    invalidated: bool,
}

struct Shared {
    kv: Arc<dyn KvStore>,
    /// The highest entry format this node applies (below [`CURRENT_FORMAT`] only when a
    /// test makes it stand in for an older build).
    max_format: u32,
    /// Held while a batch is written, and while a build starts (to read a consistent
    /// `last_applied` and open its capture).
    apply_lock: Mutex<Applied>,
    listeners: RwLock<Vec<ApplyListener>>,
    applied_tx: watch::Sender<u64>,
    snapshot_dir: Option<PathBuf>,
    current: Mutex<Option<StoredSnapshot>>,
    snapshot_seq: AtomicU64,
    incoming_seq: AtomicU64,
    /// The running build's capture, if any.
    capture: Mutex<Option<Capture>>,
    /// One consistent scan at a time.
    build_gate: Mutex<()>,
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

/// Clears the capture when a scan ends, however it ends.
struct CaptureGuard<'a>(&'a Mutex<Option<Capture>>);

impl Drop for CaptureGuard<'_> {
    fn drop(&mut self) {
        *lock(self.0) = None;
    }
}

/// Where a consistent scan writes its pairs.
trait PairSink {
    fn pair(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError>;
}

impl<W: Write> PairSink for SnapshotWriter<W> {
    fn pair(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        SnapshotWriter::pair(self, key, value)
    }
}

/// A restore payload (rmp-serde `SnapshotPayload`) written pair by pair: the pair count
/// is patched in at the end.
struct PayloadSink {
    buf: Vec<u8>,
    count_at: usize,
    count: u32,
}

impl PayloadSink {
    fn new() -> Result<PayloadSink, StorageError> {
        let enc = |e: rmp_serde::encode::Error| StorageError::Io(format!("encoding: {e}"));
        // A map of two: "format" and "pairs" (an array32 whose length is filled in last).
        let mut buf = vec![0x82];
        rmp_serde::encode::write(&mut buf, "format").map_err(enc)?;
        rmp_serde::encode::write(&mut buf, &SNAPSHOT_FORMAT).map_err(enc)?;
        rmp_serde::encode::write(&mut buf, "pairs").map_err(enc)?;
        buf.push(0xdd);
        let count_at = buf.len();
        buf.extend_from_slice(&[0; 4]);
        Ok(PayloadSink {
            buf,
            count_at,
            count: 0,
        })
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_be_bytes());
        self.buf
    }
}

impl PairSink for PayloadSink {
    fn pair(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.count = self
            .count
            .checked_add(1)
            .ok_or_else(|| StorageError::Io("too many pairs for one payload".into()))?;
        rmp_serde::encode::write_named(&mut self.buf, &KvPairRef { key, value })
            .map_err(|e| StorageError::Io(format!("encoding the snapshot: {e}")))
    }
}

/// The destination of a snapshot stream being built.
enum BuildOut {
    File(BufWriter<File>),
    Mem(Vec<u8>),
}

impl Write for BuildOut {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            BuildOut::File(f) => f.write(buf),
            BuildOut::Mem(v) => v.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            BuildOut::File(f) => f.write_all(buf),
            BuildOut::Mem(v) => v.write_all(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            BuildOut::File(f) => f.flush(),
            BuildOut::Mem(_) => Ok(()),
        }
    }
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_storage("syncing", dir))
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
                fs::create_dir_all(dir).map_err(io_storage("creating", dir))?;
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
                if let SnapshotBytes::File(path) = &snap.bytes {
                    snapshot::verify(BufReader::new(
                        File::open(path).map_err(io_storage("opening", path))?,
                    ))?;
                    replace_from_file(kv.as_ref(), path, &snap.meta, |_| {})?;
                }
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
                incoming_seq: AtomicU64::new(0),
                capture: Mutex::new(None),
                build_gate: Mutex::new(()),
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

    /// The last log index and the size in bytes of the current snapshot, if any.
    pub fn snapshot_info(&self) -> Option<(u64, u64)> {
        lock(&self.shared.current)
            .as_ref()
            .map(|s| (applied_index_of(s.meta.last_log_id), s.size))
    }

    /// A consistent copy of every key/value pair (ciphertext) in the restore payload
    /// encoding, with the log id it reflects. Applies keep running while it is read.
    pub fn export_payload(&self) -> Result<(Option<LogId>, Vec<u8>), StorageError> {
        let (sink, last, _) = self.scan_consistent(|_, _| PayloadSink::new())?;
        Ok((last, sink.finish()))
    }

    /// Read every data pair of the store as of one applied state, into the sink `start`
    /// makes for that state, without holding applies back (see the module docs).
    fn scan_consistent<S: PairSink>(
        &self,
        mut start: impl FnMut(Option<LogId>, &Membership) -> Result<S, StorageError>,
    ) -> Result<(S, Option<LogId>, Membership), StorageError> {
        let _gate = lock(&self.shared.build_gate);
        let kv = self.shared.kv.as_ref();
        'build: loop {
            let (last, membership) = {
                let state = lock(&self.shared.apply_lock);
                *lock(&self.shared.capture) = Some(Capture::default());
                (state.last_applied, state.membership.clone())
            };
            let _capture = CaptureGuard(&self.shared.capture);
            let mut sink = start(last, &membership)?;
            let mut after: Option<String> = None;
            loop {
                let chunk = kv.scan_after(after.as_deref(), SCAN_CHUNK)?;
                let done = chunk.len() < SCAN_CHUNK;
                let last_key = chunk.last().map(|(k, _)| k.clone());
                let mut out = Vec::with_capacity(chunk.len());
                let mut rest = BTreeMap::new();
                {
                    let mut cap = lock(&self.shared.capture);
                    let Some(c) = cap.as_mut() else {
                        return Err(StorageError::Io("snapshot capture vanished".into()));
                    };
                    if c.invalidated {
                        tracing::info!("the store was replaced during a snapshot; starting over");
                        continue 'build;
                    }
                    for (k, v) in chunk {
                        match c.pre.remove(&k) {
                            Some(Some(pre)) => out.push((k, pre)),
                            Some(None) => {}
                            None => out.push((k, v)),
                        }
                    }
                    if last_key.is_some() {
                        c.cursor = last_key.clone();
                    }
                    if done {
                        // Keys that were there at the snapshot point and are gone now.
                        rest = std::mem::take(&mut c.pre);
                        *cap = None;
                    }
                }
                for (k, v) in &out {
                    sink.pair(k, v)?;
                }
                if done {
                    for (k, v) in &rest {
                        if let Some(v) = v {
                            sink.pair(k, v)?;
                        }
                    }
                    return Ok((sink, last, membership));
                }
                after = last_key;
            }
        }
    }

    /// A running build must start over (the whole store is being replaced). Called with
    /// the apply lock held.
    fn invalidate_capture(&self) {
        if let Some(c) = lock(&self.shared.capture).as_mut() {
            c.invalidated = true;
            c.pre.clear();
        }
    }

    /// Before `ops` are written: record the snapshot-point values a running build needs.
    /// Called with the apply lock held.
    fn record_pre_images(&self, ops: &[Op]) -> Result<(), StorageError> {
        let mut cap = lock(&self.shared.capture);
        let Some(c) = cap.as_mut() else {
            return Ok(());
        };
        if c.invalidated {
            return Ok(());
        }
        for op in ops {
            let key = op.key();
            if c.cursor.as_deref().is_some_and(|cur| key <= cur) || c.pre.contains_key(key) {
                continue;
            }
            let old = self.shared.kv.get(key)?;
            c.pre.insert(key.to_string(), old);
        }
        Ok(())
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
        self.invalidate_capture();
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
            meta: state_meta(&last, membership).map_err(apply_err)?,
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
        let apply_err = |e: StorageError| -> RaftStorageError {
            StorageIOError::new(
                ErrorSubject::Apply(last_applied),
                ErrorVerb::Write,
                AnyError::new(&e),
            )
            .into()
        };
        let applied_bytes = encode_meta(&Some(last_applied))?;
        // The membership only when it changed; `last_applied` last: it is the commit
        // point (see `KvStore::apply`).
        let membership_bytes = if *membership != state.membership {
            Some(encode_meta(membership)?)
        } else {
            None
        };
        let mut meta: Vec<(&str, &[u8])> = Vec::with_capacity(2);
        if let Some(m) = &membership_bytes {
            meta.push((MEMBERSHIP_KEY, m));
        }
        meta.push((LAST_APPLIED_KEY, &applied_bytes));
        self.record_pre_images(ops).map_err(apply_err)?;
        self.shared.kv.apply(ops, &meta).map_err(apply_err)?;
        state.last_applied = Some(last_applied);
        state.membership = membership.clone();
        self.shared.applied_tx.send_replace(last_applied.index);
        Ok(())
    }

    /// Build a snapshot (blocking: run on the blocking pool).
    fn build_blocking(&self) -> Result<(SnapshotMeta<u64, Node>, SnapshotData), StorageError> {
        let dir = self.shared.snapshot_dir.clone();
        let tmp = dir.as_ref().map(|d| d.join(BUILD_TMP));
        let mut meta_out = None;
        let (writer, _, _) = self.scan_consistent(|last_log_id, membership| {
            let seq = self.shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match last_log_id {
                Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
                None => format!("none-{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id,
                last_membership: membership.clone(),
                snapshot_id,
            };
            let out = match &tmp {
                Some(path) => BuildOut::File(BufWriter::with_capacity(
                    FILE_BUFFER,
                    File::create(path).map_err(io_storage("creating", path))?,
                )),
                None => BuildOut::Mem(Vec::new()),
            };
            let w = SnapshotWriter::new(out, &meta)?;
            meta_out = Some(meta);
            Ok(w)
        })?;
        let meta = meta_out.ok_or_else(|| StorageError::Io("snapshot meta missing".into()))?;
        let count = writer.count();
        let (out, size) = writer.finish()?;
        match (out, dir, tmp) {
            (BuildOut::File(w), Some(dir), Some(tmp)) => {
                let f = w
                    .into_inner()
                    .map_err(|e| StorageError::Io(format!("writing the snapshot: {e}")))?;
                f.sync_all().map_err(io_storage("syncing", &tmp))?;
                drop(f);
                // The log is purged behind this snapshot once we return: make the store
                // durable too.
                self.shared.kv.flush()?;
                let path = dir.join(SNAPSHOT_FILE);
                let mut current = lock(&self.shared.current);
                if current
                    .as_ref()
                    .is_some_and(|c| c.meta.last_log_id >= meta.last_log_id)
                {
                    // An install overtook this build: keep the newer snapshot.
                    let _ = fs::remove_file(&tmp);
                    let c = current.as_ref().map(|c| c.meta.clone()).unwrap_or(meta);
                    let data = open_current(current.as_ref())?;
                    return Ok((c, data));
                }
                fs::rename(&tmp, &path).map_err(io_storage("renaming", &tmp))?;
                sync_dir(&dir)?;
                *current = Some(StoredSnapshot {
                    meta: meta.clone(),
                    bytes: SnapshotBytes::File(path),
                    size,
                });
                tracing::info!(snapshot = %meta.snapshot_id, pairs = count, bytes = size, "built a snapshot");
                let data = open_current(current.as_ref())?;
                drop(current);
                Ok((meta, data))
            }
            (BuildOut::Mem(bytes), _, _) => {
                let bytes = Arc::new(bytes);
                *lock(&self.shared.current) = Some(StoredSnapshot {
                    meta: meta.clone(),
                    bytes: SnapshotBytes::Mem(bytes.clone()),
                    size,
                });
                Ok((meta, SnapshotData::memory(bytes.as_ref().clone())))
            }
            _ => Err(StorageError::Io("snapshot destination mismatch".into())),
        }
    }

    /// Install a verified snapshot file (already at `snapshot/current.snap`) or in-memory
    /// stream into the store (blocking). Returns every key before or after.
    fn install_blocking(
        &self,
        meta: &SnapshotMeta<u64, Node>,
        bytes: &SnapshotBytes,
    ) -> Result<Vec<String>, StorageError> {
        let mut state = lock(&self.shared.apply_lock);
        self.invalidate_capture();
        let kv = self.shared.kv.as_ref();
        let mut changed: BTreeSet<String> = kv.keys_with_prefix("")?.into_iter().collect();
        match bytes {
            SnapshotBytes::File(path) => {
                replace_from_file(kv, path, meta, |k| {
                    changed.insert(k.to_string());
                })?;
            }
            SnapshotBytes::Mem(buf) => {
                let reader = SnapshotReader::open(&buf[..])?;
                let mut pairs = reader.inspect(|p| {
                    if let Ok((k, _)) = p {
                        changed.insert(k.clone());
                    }
                });
                kv.replace_stream(
                    &mut pairs,
                    state_meta(&meta.last_log_id, &meta.last_membership)?,
                )?;
            }
        }
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        self.shared
            .applied_tx
            .send_replace(applied_index_of(meta.last_log_id));
        Ok(changed.into_iter().collect())
    }
}

/// The metadata pairs of a replaced store (a snapshot's state, a restore entry's).
fn state_meta(
    last_applied: &Option<LogId>,
    membership: &Membership,
) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
    Ok(vec![
        (LAST_APPLIED_KEY.to_string(), meta_bytes(last_applied)?),
        (MEMBERSHIP_KEY.to_string(), meta_bytes(membership)?),
    ])
}

/// Replace the store with the snapshot file at `path` (streamed), telling `seen` each key.
fn replace_from_file(
    kv: &dyn KvStore,
    path: &Path,
    meta: &SnapshotMeta<u64, Node>,
    mut seen: impl FnMut(&str),
) -> Result<(), StorageError> {
    let f = File::open(path).map_err(io_storage("opening", path))?;
    let reader = SnapshotReader::open(BufReader::with_capacity(FILE_BUFFER, f))?;
    let mut pairs = reader.inspect(|p| {
        if let Ok((k, _)) = p {
            seen(k);
        }
    });
    // `replace_stream` leaves the store flushed.
    kv.replace_stream(
        &mut pairs,
        state_meta(&meta.last_log_id, &meta.last_membership)?,
    )
}

/// A read handle on the current snapshot (call with the `current` lock held, so the
/// file and its meta match).
fn open_current(current: Option<&StoredSnapshot>) -> Result<SnapshotData, StorageError> {
    match current.map(|c| &c.bytes) {
        Some(SnapshotBytes::File(path)) => {
            let f = File::open(path).map_err(io_storage("opening", path))?;
            Ok(SnapshotData::file(tokio::fs::File::from_std(f)))
        }
        Some(SnapshotBytes::Mem(b)) => Ok(SnapshotData::memory(b.as_ref().clone())),
        None => Err(StorageError::Io("no current snapshot".into())),
    }
}

/// Delete received snapshot files that were never installed.
fn remove_incoming(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for ent in entries.flatten() {
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(INCOMING_PREFIX) && name.ends_with(".tmp") {
            let _ = fs::remove_file(ent.path());
        }
    }
}

fn load_snapshot_file(dir: &Path) -> Result<Option<StoredSnapshot>, StorageError> {
    // Leftovers of interrupted builds, receptions and conversions.
    for ent in fs::read_dir(dir).map_err(io_storage("listing", dir))? {
        let ent = ent.map_err(io_storage("listing", dir))?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") {
            let _ = fs::remove_file(ent.path());
        }
    }
    let path = dir.join(SNAPSHOT_FILE);
    let mut magic = [0u8; 8];
    match File::open(&path) {
        Ok(mut f) => {
            use std::io::Read;
            if f.read_exact(&mut magic).is_err() {
                return Err(StorageError::Corrupt("snapshot file: bad header".into()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_storage("opening", &path)(e)),
    }
    if &magic == OLD_SNAPSHOT_MAGIC {
        convert_old_snapshot(dir, &path)?;
    }
    let meta = snapshot::read_meta(&path)?;
    let size = fs::metadata(&path)
        .map_err(io_storage("reading", &path))?
        .len();
    Ok(Some(StoredSnapshot {
        meta,
        bytes: SnapshotBytes::File(path),
        size,
    }))
}

/// Rewrite a `current.snap` of the earlier one-buffer format in the streamed format.
fn convert_old_snapshot(dir: &Path, path: &Path) -> Result<(), StorageError> {
    let buf = fs::read(path).map_err(io_storage("reading", path))?;
    if buf.len() < 12 {
        return Err(StorageError::Corrupt("snapshot file: bad header".into()));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&buf[8..12]);
    if crc32fast::hash(&buf[12..]) != u32::from_le_bytes(crc) {
        return Err(StorageError::Corrupt(
            "snapshot file: checksum mismatch".into(),
        ));
    }
    let old: OldSnapshotFile = rmp_serde::from_slice(&buf[12..])
        .map_err(|e| StorageError::Corrupt(format!("snapshot file: {e}")))?;
    drop(buf);
    let payload = decode_payload(&old.data)?;
    let tmp = dir.join(CONVERT_TMP);
    let f = File::create(&tmp).map_err(io_storage("creating", &tmp))?;
    let mut w = SnapshotWriter::new(BufWriter::with_capacity(FILE_BUFFER, f), &old.meta)?;
    for p in &payload.pairs {
        w.pair(&p.key, &p.value)?;
    }
    let (w, _) = w.finish()?;
    let f = w
        .into_inner()
        .map_err(|e| StorageError::Io(format!("writing the snapshot: {e}")))?;
    f.sync_all().map_err(io_storage("syncing", &tmp))?;
    fs::rename(&tmp, path).map_err(io_storage("renaming", &tmp))?;
    sync_dir(dir)?;
    tracing::info!(snapshot = %old.meta.snapshot_id, "rewrote the snapshot file in the streamed format");
    Ok(())
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>, RaftStorageError> {
        match &self.shared.snapshot_dir {
            Some(dir) => {
                // One stream is received at a time: a new one means any earlier one was
                // abandoned, so its file goes.
                remove_incoming(dir);
                let n = self.shared.incoming_seq.fetch_add(1, Ordering::Relaxed);
                let path = dir.join(format!("{INCOMING_PREFIX}{n}.tmp"));
                let f = tokio::fs::File::create(&path)
                    .await
                    .map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
                Ok(Box::new(SnapshotData::incoming(f, path)))
            }
            None => Ok(Box::new(SnapshotData::memory(Vec::new()))),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, Node>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), RaftStorageError> {
        let read_err = |e: std::io::Error| snapshot_error(ErrorVerb::Read, e);
        let write_err = |e: std::io::Error| snapshot_error(ErrorVerb::Write, e);
        // Where the received stream is: our own incoming file, or (a handle on some other
        // stream) copied into one.
        let received: SnapshotBytes = match &self.shared.snapshot_dir {
            Some(dir) => match snapshot.incoming_path() {
                Some(p) if p.parent() == Some(dir.as_path()) => {
                    let p = p.to_path_buf();
                    drop(snapshot);
                    SnapshotBytes::File(p)
                }
                _ => {
                    let n = self.shared.incoming_seq.fetch_add(1, Ordering::Relaxed);
                    let path = dir.join(format!("{INCOMING_PREFIX}{n}.tmp"));
                    let mut src = snapshot;
                    src.seek(std::io::SeekFrom::Start(0))
                        .await
                        .map_err(read_err)?;
                    let mut f = tokio::fs::File::create(&path).await.map_err(write_err)?;
                    tokio::io::copy(&mut src, &mut f).await.map_err(write_err)?;
                    tokio::io::AsyncWriteExt::flush(&mut f)
                        .await
                        .map_err(write_err)?;
                    drop(f);
                    SnapshotBytes::File(path)
                }
            },
            None => match snapshot.into_memory() {
                Ok(bytes) => SnapshotBytes::Mem(Arc::new(bytes)),
                Err(mut other) => {
                    other
                        .seek(std::io::SeekFrom::Start(0))
                        .await
                        .map_err(read_err)?;
                    let mut bytes = Vec::new();
                    other.read_to_end(&mut bytes).await.map_err(read_err)?;
                    SnapshotBytes::Mem(Arc::new(bytes))
                }
            },
        };
        let this = self.clone();
        let meta2 = meta.clone();
        let changed = tokio::task::spawn_blocking(move || -> Result<Vec<String>, StorageError> {
            // Check the whole stream before touching anything.
            let (size, embedded) = match &received {
                SnapshotBytes::File(path) => {
                    let f = File::open(path).map_err(io_storage("opening", path))?;
                    f.sync_all().map_err(io_storage("syncing", path))?;
                    let size = f.metadata().map_err(io_storage("reading", path))?.len();
                    let (embedded, _) = snapshot::verify(BufReader::with_capacity(FILE_BUFFER, f))?;
                    (size, embedded)
                }
                SnapshotBytes::Mem(b) => (b.len() as u64, snapshot::verify(&b[..])?.0),
            };
            if embedded.last_log_id != meta2.last_log_id {
                return Err(StorageError::Corrupt(format!(
                    "snapshot data is for {:?}, not {:?}",
                    embedded.last_log_id, meta2.last_log_id
                )));
            }
            tracing::info!(snapshot = %meta2.snapshot_id, bytes = size, "installing a snapshot");
            // The file first: if we crash half-way through the replacement, the next
            // start finishes it from there.
            let bytes = match received {
                SnapshotBytes::File(path) => {
                    let dir = this
                        .shared
                        .snapshot_dir
                        .clone()
                        .ok_or_else(|| StorageError::Io("no snapshot directory".into()))?;
                    let target = dir.join(SNAPSHOT_FILE);
                    let mut current = lock(&this.shared.current);
                    fs::rename(&path, &target).map_err(io_storage("renaming", &path))?;
                    sync_dir(&dir)?;
                    let bytes = SnapshotBytes::File(target);
                    *current = Some(StoredSnapshot {
                        meta: meta2.clone(),
                        bytes: bytes.clone(),
                        size,
                    });
                    bytes
                }
                mem @ SnapshotBytes::Mem(_) => {
                    *lock(&this.shared.current) = Some(StoredSnapshot {
                        meta: meta2.clone(),
                        bytes: mem.clone(),
                        size,
                    });
                    mem
                }
            };
            this.install_blocking(&meta2, &bytes)
        })
        .await
        .map_err(|e| sm_error(ErrorVerb::Write, io_other(e)))?
        .map_err(|e| sm_error(ErrorVerb::Write, e))?;
        self.notify(&[(applied_index_of(meta.last_log_id), changed)]);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        let current = lock(&self.shared.current);
        let Some(c) = current.as_ref() else {
            return Ok(None);
        };
        let data = open_current(Some(c)).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: c.meta.clone(),
            snapshot: Box::new(data),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let this = self.clone();
        let (meta, data) = tokio::task::spawn_blocking(move || this.build_blocking())
            .await
            .map_err(|e| snapshot_error(ErrorVerb::Write, io_other(e)))?
            .map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(data),
        })
    }
}

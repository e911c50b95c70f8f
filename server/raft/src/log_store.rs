//! The Raft log store: openraft's `RaftLogStorage` over a [`coffer_storage::wal::Wal`].
//!
//! Entries are encoded with rmp-serde, one WAL record each. The most recent entries are
//! also kept decoded in memory (at least [`CACHE_MIN_ENTRIES`] below the committed index,
//! and at most about [`CACHE_BYTES`] beyond that), so applying and replicating to
//! followers that keep up never touch the disk; older entries (re-applied after a
//! restart, sent to a lagging follower) are read back from the WAL through the writer
//! thread, so they are read after every append queued before them.
//!
//! **Writes.** The WAL is owned by one writer thread fed through a channel, so blocking
//! file I/O never runs on a tokio worker. `append` queues its entries and returns; the
//! writer writes every append queued by then with one `write` and one `sync_data`, and
//! only then calls each `callback.log_io_completed`. (openraft 0.9's core awaits each
//! append's completion before the next, so one append is one fsync here; concurrent
//! client writes share an entry, and so an fsync, through the node's commit batcher.)
//! Truncate, purge and the vote go through the same queue, so they are ordered after
//! earlier appends, and are awaited. The vote lives in the WAL's atomically replaced meta
//! file; the committed log id in its unsynced hint file.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use coffer_storage::wal::{Wal, WalError, WalRecord};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};
use openraft::{RaftLogId, Vote};
use tokio::sync::oneshot;

use crate::types::{Entry, LogId, RaftStorageError, TypeConfig};

const VOTE_KEY: &str = "raft.vote";

/// Appends merged into one write + sync at most.
const MAX_GROUP: usize = 4096;

/// Decoded entries kept in memory beyond the last [`CACHE_MIN_ENTRIES`] (bytes of entry
/// bodies, roughly).
pub const CACHE_BYTES: usize = 8 * 1024 * 1024;
/// Entries below the committed index that always stay in memory.
pub const CACHE_MIN_ENTRIES: u64 = 256;

/// Sentinel in the committed-index cell for "nothing known committed".
pub(crate) const NO_INDEX: u64 = u64::MAX;

fn io_error(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> RaftStorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn wal_write_error(e: WalError) -> RaftStorageError {
    io_error(ErrorSubject::Logs, ErrorVerb::Write, e)
}

fn decode_error(
    subject: ErrorSubject<u64>,
    e: impl std::error::Error + 'static,
) -> RaftStorageError {
    io_error(subject, ErrorVerb::Read, e)
}

fn encode<T: serde::Serialize>(
    subject: ErrorSubject<u64>,
    v: &T,
) -> Result<Vec<u8>, RaftStorageError> {
    rmp_serde::to_vec_named(v).map_err(|e| io_error(subject, ErrorVerb::Write, e))
}

fn writer_gone() -> WalError {
    WalError::Io {
        context: "talking to the wal writer".into(),
        source: std::io::Error::other("the wal writer thread has stopped"),
    }
}

type Reply = oneshot::Sender<Result<(), WalError>>;

/// Work for the writer thread, executed in queue order.
enum WalCmd {
    Append {
        records: Vec<WalRecord>,
        callback: LogFlushed<TypeConfig>,
    },
    Truncate {
        from: u64,
        reply: Reply,
    },
    Purge {
        upto: u64,
        id: Vec<u8>,
        reply: Reply,
    },
    SetMeta {
        name: &'static str,
        value: Vec<u8>,
        reply: Reply,
    },
    SaveHint {
        value: Vec<u8>,
    },
    Read {
        from: u64,
        to: u64,
        reply: oneshot::Sender<Result<Vec<WalRecord>, WalError>>,
    },
    Stop {
        reply: Reply,
    },
}

fn writer_loop(mut wal: Box<dyn Wal>, rx: mpsc::Receiver<WalCmd>) {
    let mut next: Option<WalCmd> = None;
    loop {
        let cmd = match next.take() {
            Some(c) => c,
            None => match rx.recv() {
                Ok(c) => c,
                Err(_) => return,
            },
        };
        match cmd {
            WalCmd::Append {
                mut records,
                callback,
            } => {
                let mut callbacks = vec![callback];
                while callbacks.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(WalCmd::Append {
                            records: more,
                            callback,
                        }) => {
                            records.extend(more);
                            callbacks.push(callback);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                match wal.append(&records) {
                    Ok(()) => {
                        for cb in callbacks {
                            cb.log_io_completed(Ok(()));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "raft log: append failed");
                        for cb in callbacks {
                            cb.log_io_completed(Err(std::io::Error::other(e.to_string())));
                        }
                    }
                }
            }
            WalCmd::Truncate { from, reply } => {
                let _ = reply.send(wal.truncate(from));
            }
            WalCmd::Purge { upto, id, reply } => {
                let _ = reply.send(wal.purge(upto, &id));
            }
            WalCmd::SetMeta { name, value, reply } => {
                let _ = reply.send(wal.set_meta(name, &value));
            }
            WalCmd::SaveHint { value } => {
                if let Err(e) = wal.save_hint(&value) {
                    // Only a hint: losing it means re-applying from an older point.
                    tracing::warn!(error = %e, "raft log: could not save the committed hint");
                }
            }
            WalCmd::Read { from, to, reply } => {
                let _ = reply.send(wal.read_range(from, to));
            }
            WalCmd::Stop { reply } => {
                drop(wal);
                let _ = reply.send(Ok(()));
                return;
            }
        }
    }
}

/// The in-memory suffix of the log.
#[derive(Default)]
struct Cache {
    map: BTreeMap<u64, Entry>,
    bytes: usize,
}

fn entry_size(e: &Entry) -> usize {
    let body = match &e.payload {
        openraft::EntryPayload::Normal(env) => env.body.len(),
        _ => 0,
    };
    body + 64
}

impl Cache {
    fn insert(&mut self, e: Entry) {
        self.bytes += entry_size(&e);
        if let Some(old) = self.map.insert(e.log_id.index, e) {
            self.bytes = self.bytes.saturating_sub(entry_size(&old));
        }
    }

    /// Drop entries from `from` on.
    fn truncate(&mut self, from: u64) {
        for (_, e) in self.map.split_off(&from) {
            self.bytes = self.bytes.saturating_sub(entry_size(&e));
        }
    }

    /// Drop entries up to `upto`.
    fn purge(&mut self, upto: u64) {
        let keep = self.map.split_off(&upto.saturating_add(1));
        for e in self.map.values() {
            self.bytes = self.bytes.saturating_sub(entry_size(e));
        }
        self.map = keep;
    }

    /// Forget the oldest entries (they are in the WAL, or queued for it ahead of any
    /// read) while over budget, keeping everything above `keep_from`.
    fn evict(&mut self, keep_from: u64) {
        while self.bytes > CACHE_BYTES {
            let Some(entry) = self.map.first_entry() else {
                break;
            };
            if *entry.key() >= keep_from {
                break;
            }
            let e = entry.remove();
            self.bytes = self.bytes.saturating_sub(entry_size(&e));
        }
    }
}

struct Shared {
    tx: mpsc::Sender<WalCmd>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Decoded recent entries (a suffix of the log above the purged log id).
    entries: RwLock<Cache>,
    last_purged: RwLock<Option<LogId>>,
    vote: RwLock<Option<Vote<u64>>>,
    committed_id: RwLock<Option<LogId>>,
    committed: Arc<AtomicU64>,
    /// Encoded bytes appended since the store was opened (drives the snapshot policy).
    appended_bytes: AtomicU64,
}

/// The Raft log store (cheap to clone: clones share the same log).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

impl LogStore {
    /// Load the log from `wal` (the newest [`CACHE_MIN_ENTRIES`] entries into memory,
    /// the purged id, the vote and the committed hint) and start its writer thread. Older
    /// entries stay on disk (opening the WAL checked them) and are read when asked for.
    pub fn open(wal: Box<dyn Wal>) -> Result<LogStore, RaftStorageError> {
        let mut entries = Cache::default();
        let newest = wal
            .last_index()
            .map_or(0, |last| last.saturating_sub(CACHE_MIN_ENTRIES));
        for rec in wal
            .read_range(newest, u64::MAX)
            .map_err(|e| decode_error(ErrorSubject::Logs, e))?
        {
            let entry: Entry = rmp_serde::from_slice(&rec.data)
                .map_err(|e| decode_error(ErrorSubject::LogIndex(rec.index), e))?;
            if entry.log_id.index != rec.index {
                return Err(decode_error(
                    ErrorSubject::LogIndex(rec.index),
                    WalError::Corrupt(format!(
                        "record {} holds the entry for index {}",
                        rec.index, entry.log_id.index
                    )),
                ));
            }
            entries.insert(entry);
        }
        let last_purged = match wal.purged() {
            Some((_, id)) => Some(
                rmp_serde::from_slice::<LogId>(&id)
                    .map_err(|e| decode_error(ErrorSubject::Logs, e))?,
            ),
            None => None,
        };
        let vote = match wal.meta(VOTE_KEY) {
            Some(v) => Some(
                rmp_serde::from_slice::<Vote<u64>>(&v)
                    .map_err(|e| decode_error(ErrorSubject::Vote, e))?,
            ),
            None => None,
        };
        // The hint is unsynced: unreadable means no evidence, not an error.
        let committed_id = wal
            .hint()
            .and_then(|b| rmp_serde::from_slice::<Option<LogId>>(&b).ok())
            .flatten();
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("coffer-raft-wal".into())
            .spawn(move || writer_loop(wal, rx))
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        Ok(LogStore {
            shared: Arc::new(Shared {
                tx,
                writer: Mutex::new(Some(writer)),
                entries: RwLock::new(entries),
                last_purged: RwLock::new(last_purged),
                vote: RwLock::new(vote),
                committed_id: RwLock::new(committed_id),
                committed: Arc::new(AtomicU64::new(NO_INDEX)),
                appended_bytes: AtomicU64::new(0),
            }),
        })
    }

    /// The last committed index this node learned of ([`NO_INDEX`] if none), shared so
    /// the node can report it without asking the Raft core.
    pub(crate) fn committed_cell(&self) -> Arc<AtomicU64> {
        self.shared.committed.clone()
    }

    /// The first index kept in memory (for tests).
    #[cfg(test)]
    pub(crate) fn shared_entries_first(&self) -> u64 {
        read(&self.shared.entries)
            .map
            .keys()
            .next()
            .copied()
            .unwrap_or(0)
    }

    /// Encoded bytes appended since the store was opened.
    pub fn appended_bytes(&self) -> u64 {
        self.shared.appended_bytes.load(Ordering::Relaxed)
    }

    /// Finish every queued WAL write, then stop the writer thread and close the files.
    /// Later writes fail. Call after Raft has shut down.
    pub async fn close(&self) -> Result<(), WalError> {
        let Some(handle) = lock(&self.shared.writer).take() else {
            return Ok(());
        };
        let res = self.request(|reply| WalCmd::Stop { reply }).await;
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        res
    }

    fn send(&self, cmd: WalCmd) -> Result<(), WalError> {
        self.shared.tx.send(cmd).map_err(|_| writer_gone())
    }

    async fn request(&self, make: impl FnOnce(Reply) -> WalCmd) -> Result<(), WalError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| writer_gone())?
    }

    fn last_log_id(&self) -> Option<LogId> {
        let from_entries = read(&self.shared.entries)
            .map
            .values()
            .next_back()
            .map(|e| e.log_id);
        from_entries.or_else(|| *read(&self.shared.last_purged))
    }
}

// The locks guard plain values that are never left half-updated by a panic.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        use std::ops::Bound;
        let (mut cached, first_cached): (Vec<Entry>, Option<u64>) = {
            let cache = read(&self.shared.entries);
            (
                cache
                    .map
                    .range(range.clone())
                    .map(|(_, e)| e.clone())
                    .collect(),
                cache.map.keys().next().copied(),
            )
        };
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        // The cache is a suffix of the log: what lies below it comes from the WAL.
        let disk_to = first_cached.map_or(end, |f| f.min(end));
        if from >= disk_to {
            return Ok(cached);
        }
        let (reply, rx) = oneshot::channel();
        self.send(WalCmd::Read {
            from,
            to: disk_to,
            reply,
        })
        .map_err(|e| decode_error(ErrorSubject::Logs, e))?;
        let records = rx
            .await
            .map_err(|_| decode_error(ErrorSubject::Logs, writer_gone()))?
            .map_err(|e| decode_error(ErrorSubject::Logs, e))?;
        let mut out = Vec::with_capacity(records.len() + cached.len());
        for rec in records {
            let entry: Entry = rmp_serde::from_slice(&rec.data)
                .map_err(|e| decode_error(ErrorSubject::LogIndex(rec.index), e))?;
            out.push(entry);
        }
        out.append(&mut cached);
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        Ok(LogState {
            last_purged_log_id: *read(&self.shared.last_purged),
            last_log_id: self.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), RaftStorageError> {
        let value = encode(ErrorSubject::Vote, vote)?;
        self.request(|reply| WalCmd::SetMeta {
            name: VOTE_KEY,
            value,
            reply,
        })
        .await
        .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        *write(&self.shared.vote) = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, RaftStorageError> {
        Ok(*read(&self.shared.vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        let value = encode(ErrorSubject::Store, &committed)?;
        // Fire and forget: a lost hint only means re-applying from an older point.
        self.send(WalCmd::SaveHint { value })
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        *write(&self.shared.committed_id) = committed;
        self.shared
            .committed
            .store(committed.map_or(NO_INDEX, |c| c.index), Ordering::Release);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        // A hint newer than what the log kept (a torn tail was cut) is no evidence.
        let committed = match (*read(&self.shared.committed_id), self.last_log_id()) {
            (Some(c), Some(last)) if c <= last => Some(c),
            _ => None,
        };
        if let Some(c) = committed {
            self.shared.committed.store(c.index, Ordering::Release);
        }
        Ok(committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Entries at or below the purged log id are already covered by the snapshot the
        // log was purged behind; openraft does not send them, but they must not reorder
        // the log if it ever did.
        let purged = read(&self.shared.last_purged).map(|p| p.index);
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|e| purged.is_none_or(|p| e.log_id.index > p))
            .collect();
        let mut records = Vec::with_capacity(entries.len());
        let mut bytes = 0u64;
        for e in &entries {
            let data = encode(ErrorSubject::Log(*e.get_log_id()), e)?;
            bytes += data.len() as u64;
            records.push(WalRecord {
                index: e.log_id.index,
                data,
            });
        }
        {
            // Readable at once (replication may start before the local sync completes;
            // the leader counts its own copy only once the callback fired).
            let mut cache = write(&self.shared.entries);
            for e in entries {
                cache.insert(e);
            }
        }
        self.shared
            .appended_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        self.send(WalCmd::Append { records, callback })
            .map_err(wal_write_error)?;
        // Queued for the WAL ahead of any read: the oldest committed entries may go.
        let committed = match self.shared.committed.load(Ordering::Acquire) {
            NO_INDEX => 0,
            c => c,
        };
        write(&self.shared.entries).evict(committed.saturating_sub(CACHE_MIN_ENTRIES));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        tracing::debug!(%log_id, "raft log: truncate");
        let from = log_id.index;
        self.request(|reply| WalCmd::Truncate { from, reply })
            .await
            .map_err(wal_write_error)?;
        write(&self.shared.entries).truncate(from);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        tracing::debug!(%log_id, "raft log: purge");
        if read(&self.shared.last_purged).is_some_and(|p| p >= log_id) {
            return Ok(());
        }
        let id = encode(ErrorSubject::Logs, &log_id)?;
        let upto = log_id.index;
        self.request(|reply| WalCmd::Purge { upto, id, reply })
            .await
            .map_err(wal_write_error)?;
        *write(&self.shared.last_purged) = Some(log_id);
        write(&self.shared.entries).purge(upto);
        Ok(())
    }
}

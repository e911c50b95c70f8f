//! The Raft log store: openraft's `RaftLogStorage` over a [`coffer_storage::wal::Wal`].
//!
//! Entries are encoded with rmp-serde, one WAL record each. Every non-purged entry is also
//! kept decoded in memory, so reads (replication, re-apply) never touch the disk; the
//! snapshot policy keeps that set small. `append` reports the I/O complete to openraft
//! only after the WAL synced the batch; while it syncs, new client writes queue up in
//! openraft and form the next batch (group commit). The vote goes to the WAL's
//! atomically replaced meta file; the committed log id to its unsynced hint file.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use coffer_storage::wal::{Wal, WalError, WalRecord};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};
use openraft::{RaftLogId, Vote};

use crate::types::{Entry, LogId, RaftStorageError, TypeConfig};

const VOTE_KEY: &str = "raft.vote";

/// Sentinel in [`LogStore::committed_index`] for "nothing known committed".
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

struct Shared {
    wal: Mutex<Box<dyn Wal>>,
    /// Decoded entries above the purged log id.
    entries: RwLock<BTreeMap<u64, Entry>>,
    last_purged: RwLock<Option<LogId>>,
    vote: RwLock<Option<Vote<u64>>>,
    committed: Arc<AtomicU64>,
}

/// The Raft log store (cheap to clone: clones share the same log).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
}

impl LogStore {
    /// Load the log from `wal`: decode every surviving entry, the purged id and the vote.
    pub fn open(wal: Box<dyn Wal>) -> Result<LogStore, RaftStorageError> {
        let mut entries = BTreeMap::new();
        for rec in wal
            .read_all()
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
            entries.insert(rec.index, entry);
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
        Ok(LogStore {
            shared: Arc::new(Shared {
                wal: Mutex::new(wal),
                entries: RwLock::new(entries),
                last_purged: RwLock::new(last_purged),
                vote: RwLock::new(vote),
                committed: Arc::new(AtomicU64::new(NO_INDEX)),
            }),
        })
    }

    /// The last committed index this node learned of ([`NO_INDEX`] if none), shared so
    /// the node can report it without asking the Raft core.
    pub(crate) fn committed_cell(&self) -> Arc<AtomicU64> {
        self.shared.committed.clone()
    }

    fn last_log_id(&self) -> Option<LogId> {
        let from_entries = read(&self.shared.entries)
            .values()
            .next_back()
            .map(|e| e.log_id);
        from_entries.or_else(|| *read(&self.shared.last_purged))
    }

    /// Run a WAL operation on the blocking pool (it may fsync).
    async fn with_wal<T, F>(&self, f: F) -> Result<T, WalError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Wal) -> Result<T, WalError> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut wal = lock(&shared.wal);
            f(wal.as_mut())
        })
        .await
        .map_err(|e| WalError::Io {
            context: "joining a wal task".into(),
            source: std::io::Error::other(e.to_string()),
        })?
    }
}

// The locks guard plain maps that are never left half-updated by a panic.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
fn lock<T: ?Sized>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        Ok(read(&self.shared.entries)
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
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
        let bytes = encode(ErrorSubject::Vote, vote)?;
        self.with_wal(move |wal| wal.set_meta(VOTE_KEY, &bytes))
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        *write(&self.shared.vote) = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, RaftStorageError> {
        Ok(*read(&self.shared.vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        let bytes = encode(ErrorSubject::Store, &committed)?;
        // A lost hint only means re-applying from an older committed id: no sync.
        lock(&self.shared.wal)
            .save_hint(&bytes)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.shared
            .committed
            .store(committed.map_or(NO_INDEX, |c| c.index), Ordering::Release);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        let Some(bytes) = lock(&self.shared.wal).hint() else {
            return Ok(None);
        };
        // The hint is unsynced: if it is unreadable, or newer than what the log kept
        // (a torn tail was cut), it is no evidence of anything.
        let Ok(committed) = rmp_serde::from_slice::<Option<LogId>>(&bytes) else {
            return Ok(None);
        };
        let committed = match (committed, self.last_log_id()) {
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
        for e in &entries {
            let data = encode(ErrorSubject::Log(*e.get_log_id()), e)?;
            records.push(WalRecord {
                index: e.log_id.index,
                data,
            });
        }
        {
            let mut map = write(&self.shared.entries);
            for e in entries {
                map.insert(e.log_id.index, e);
            }
        }
        match self.with_wal(move |wal| wal.append(&records)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(wal_write_error(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        tracing::debug!(%log_id, "raft log: truncate");
        let index = log_id.index;
        self.with_wal(move |wal| wal.truncate(index))
            .await
            .map_err(wal_write_error)?;
        write(&self.shared.entries).split_off(&index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        tracing::debug!(%log_id, "raft log: purge");
        if read(&self.shared.last_purged).is_some_and(|p| p >= log_id) {
            return Ok(());
        }
        let id = encode(ErrorSubject::Logs, &log_id)?;
        let index = log_id.index;
        self.with_wal(move |wal| wal.purge(index, &id))
            .await
            .map_err(wal_write_error)?;
        *write(&self.shared.last_purged) = Some(log_id);
        let mut map = write(&self.shared.entries);
        *map = map.split_off(&(index + 1));
        Ok(())
    }
}

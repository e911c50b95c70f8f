//! The local key/value store under the Raft state machine.
//!
//! [`KvStore`] is what the state machine writes applied batches into and what reads are
//! served from. Two implementations:
//!
//! * [`SledKv`]: sled 0.34 with a single tree. Data keys are stored as `d` + key and
//!   metadata keys (e.g. `last_applied`, the membership) as `m` + name. An apply
//!   writes the data ops, then the metadata, under a lock that readers take too (see
//!   [`SledKv`] for why not a `sled::Batch`).
//! * [`MemKv`]: two `BTreeMap`s behind a lock, for `storage "inmem"` and dev mode.
//!
//! Values are opaque bytes (ciphertext); keys are Vault-style paths.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

use crate::{Op, StorageError};

/// Metadata key set while [`KvStore::replace_all`] runs; if it is still there after a
/// restart, the replacement was interrupted and the store's contents are not usable.
pub const REPLACE_MARKER: &str = "kv.replace_in_progress";

/// Default sled page cache (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_CAPACITY: u64 = 64 * 1024 * 1024;

const DATA_PREFIX: u8 = b'd';
const META_PREFIX: u8 = b'm';
/// Items per sled batch when bulk-loading, to bound memory.
const LOAD_BATCH: usize = 10_000;

/// Everything in a store: data pairs and metadata pairs, each sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvExport {
    pub data: Vec<(String, Vec<u8>)>,
    pub meta: Vec<(String, Vec<u8>)>,
}

/// A local, ordered key/value store.
pub trait KvStore: Send + Sync + 'static {
    /// The value at `key`.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// All data keys starting with `prefix`, in order.
    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// All data pairs whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError>;

    /// Vault's `List`: the direct children of `prefix` (see [`crate::children_of`]),
    /// skipping over the contents of each sub-directory instead of reading them.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut out: Vec<String> = Vec::new();
        let mut from = prefix.to_string();
        while let Some(key) = self.first_key_from(&from)? {
            let Some(rest) = key.strip_prefix(prefix) else {
                break;
            };
            if rest.is_empty() {
                from = format!("{key}\0");
                continue;
            }
            match rest.find('/') {
                Some(i) => {
                    let dir = &rest[..i];
                    out.push(format!("{dir}/"));
                    // '0' is the byte right after '/': skip the whole sub-directory.
                    from = format!("{prefix}{dir}0");
                }
                None => {
                    out.push(rest.to_string());
                    from = format!("{key}\0");
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The smallest data key `>= from`.
    fn first_key_from(&self, from: &str) -> Result<Option<String>, StorageError>;

    /// A metadata value.
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError>;

    /// Apply `ops`, then set the `meta` values in the order given. Multi-key reads
    /// (`keys_with_prefix`, `scan_prefix`, `scan_after`) see all of it or none. After a
    /// crash the store holds a prefix of that sequence, so the last `meta` pair is the
    /// commit point: when it is there, everything before it is (the caller applies a
    /// half-applied entry again; its ops are whole-value puts and deletes).
    fn apply(&self, ops: &[Op], meta: &[(&str, &[u8])]) -> Result<(), StorageError>;

    /// Up to `limit` data pairs with a key above `after` (from the first key when
    /// `None`), in key order. Snapshots read the store in such chunks.
    fn scan_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError>;

    /// Replace everything with the data pairs `pairs` yields and the metadata `meta`,
    /// reading `pairs` as it goes (a snapshot streamed from a file is never held in
    /// memory). Not atomic on disk: [`REPLACE_MARKER`] is set until it is done (see
    /// [`KvStore::replace_interrupted`]). An error from `pairs` stops the replacement
    /// with the marker still set. A finished replacement is flushed to disk.
    fn replace_stream(
        &self,
        pairs: &mut dyn Iterator<Item = Result<(String, Vec<u8>), StorageError>>,
        meta: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StorageError>;

    /// Replace everything with `with` (see [`KvStore::replace_stream`]).
    fn replace_all(&self, with: KvExport) -> Result<(), StorageError> {
        self.replace_stream(&mut with.data.into_iter().map(Ok), with.meta)
    }

    /// Whether an earlier [`KvStore::replace_all`] did not finish.
    fn replace_interrupted(&self) -> Result<bool, StorageError> {
        Ok(self.get_meta(REPLACE_MARKER)?.is_some())
    }

    /// Push everything written so far to disk (no-op in memory).
    fn flush(&self) -> Result<(), StorageError>;
}

fn sled_err(e: sled::Error) -> StorageError {
    match e {
        sled::Error::Corruption { .. } => StorageError::Corrupt(e.to_string()),
        other => StorageError::Io(other.to_string()),
    }
}

fn data_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA_PREFIX);
    k.extend_from_slice(key.as_bytes());
    k
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.push(META_PREFIX);
    k.extend_from_slice(name.as_bytes());
    k
}

fn decode_key(raw: &[u8]) -> Result<String, StorageError> {
    let body = raw.get(1..).unwrap_or_default();
    String::from_utf8(body.to_vec())
        .map_err(|_| StorageError::Corrupt("a stored key is not UTF-8".into()))
}

/// The sled-backed store.
///
/// An apply writes its ops one by one, then the metadata in order, instead of as one
/// `sled::Batch`: sled 0.34 seals and writes its current log buffer twice for every
/// batch (`pin_log`), each write a job for its I/O thread pool that wakes every idle
/// pool thread, which cost more CPU than the write itself. Atomicity is kept where it
/// matters:
/// - readers: `gate` is held for writing during an apply or a replacement and for
///   reading by every multi-key scan, so no scan sees half of one. A single-key read
///   needs no gate (sled makes each key's update atomic); several separate reads could
///   straddle an apply with a batch as well;
/// - crashes: sled recovers a contiguous prefix of its log, so the last metadata value
///   (`last_applied`, the commit point) never runs ahead of what came before it; a
///   half-applied entry is applied again from the Raft log, and its ops (put or delete
///   of a whole value) give the same result twice.
pub struct SledKv {
    db: sled::Db,
    gate: RwLock<()>,
}

impl SledKv {
    /// Open (or create) the store at `path` with the given page cache size in bytes.
    pub fn open(path: impl AsRef<Path>, cache_capacity: u64) -> Result<SledKv, StorageError> {
        let db = sled::Config::new()
            .path(path.as_ref())
            .cache_capacity(cache_capacity)
            .open()
            .map_err(sled_err)?;
        Ok(SledKv {
            db,
            gate: RwLock::new(()),
        })
    }

    /// [`SledKv::open`] of a store that another `SledKv` of this process used until just
    /// now (tests that reopen a store): sled releases the directory's file lock only when
    /// its background threads let go of their last reference, a moment after the drop,
    /// so this waits up to 10 s while the lock is still held.
    #[cfg(any(test, feature = "testing"))]
    pub fn reopen(path: impl AsRef<Path>, cache_capacity: u64) -> Result<SledKv, StorageError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match SledKv::open(path.as_ref(), cache_capacity) {
                // sled reports a held lock as an `Other` I/O error with this text.
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => return other,
            }
        }
    }

    fn read_gate(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_gate(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|e| e.into_inner())
    }

    fn scan_data(&self, prefix: &str) -> sled::Iter {
        self.db.scan_prefix(data_key(prefix))
    }

    fn clear_and_mark(&self) -> Result<(), StorageError> {
        self.db
            .insert(meta_key(REPLACE_MARKER), &b"1"[..])
            .map_err(sled_err)?;
        let marker = meta_key(REPLACE_MARKER);
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in self.db.iter().keys() {
            let k = item.map_err(sled_err)?;
            if k.as_ref() == marker.as_slice() {
                continue;
            }
            batch.remove(k);
            n += 1;
            if n == LOAD_BATCH {
                self.db
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(sled_err)?;
                n = 0;
            }
        }
        self.db.apply_batch(batch).map_err(sled_err)
    }
}

impl KvStore for SledKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .db
            .get(data_key(key))
            .map_err(sled_err)?
            .map(|v| v.to_vec()))
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let _reading = self.read_gate();
        self.scan_data(prefix)
            .keys()
            .map(|k| decode_key(&k.map_err(sled_err)?))
            .collect()
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let _reading = self.read_gate();
        self.scan_data(prefix)
            .map(|item| {
                let (k, v) = item.map_err(sled_err)?;
                Ok((decode_key(&k)?, v.to_vec()))
            })
            .collect()
    }

    fn first_key_from(&self, from: &str) -> Result<Option<String>, StorageError> {
        let start = data_key(from);
        match self.db.range(start..).next() {
            Some(item) => {
                let (k, _) = item.map_err(sled_err)?;
                if k.first() != Some(&DATA_PREFIX) {
                    return Ok(None);
                }
                Ok(Some(decode_key(&k)?))
            }
            None => Ok(None),
        }
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .db
            .get(meta_key(name))
            .map_err(sled_err)?
            .map(|v| v.to_vec()))
    }

    fn apply(&self, ops: &[Op], meta: &[(&str, &[u8])]) -> Result<(), StorageError> {
        let _writing = self.write_gate();
        for op in ops {
            match op {
                Op::Put { key, value } => self.db.insert(data_key(key), value.as_slice()),
                Op::Delete { key } => self.db.remove(data_key(key)),
            }
            .map_err(sled_err)?;
        }
        for (name, value) in meta {
            self.db.insert(meta_key(name), *value).map_err(sled_err)?;
        }
        Ok(())
    }

    fn scan_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let _reading = self.read_gate();
        use std::ops::Bound;
        let start = match after {
            Some(k) => Bound::Excluded(data_key(k)),
            None => Bound::Included(vec![DATA_PREFIX]),
        };
        let mut out = Vec::with_capacity(limit.min(4096));
        for item in self
            .db
            .range::<Vec<u8>, _>((start, Bound::Excluded(vec![DATA_PREFIX + 1])))
        {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(sled_err)?;
            out.push((decode_key(&k)?, v.to_vec()));
        }
        Ok(out)
    }

    fn replace_stream(
        &self,
        pairs: &mut dyn Iterator<Item = Result<(String, Vec<u8>), StorageError>>,
        meta: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StorageError> {
        // Scans wait for the whole replacement (installs and restores are rare).
        let _writing = self.write_gate();
        self.clear_and_mark()?;
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for pair in pairs {
            let (k, v) = pair?;
            batch.insert(data_key(&k), v);
            n += 1;
            if n == LOAD_BATCH {
                self.db
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(sled_err)?;
                n = 0;
            }
        }
        // The metadata and the marker's removal land together, last.
        for (k, v) in meta {
            if k != REPLACE_MARKER {
                batch.insert(meta_key(&k), v);
            }
        }
        batch.remove(meta_key(REPLACE_MARKER));
        self.db.apply_batch(batch).map_err(sled_err)?;
        self.flush()
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.flush().map_err(sled_err).map(|_| ())
    }
}

#[derive(Default)]
struct MemInner {
    data: BTreeMap<String, Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
}

/// The in-memory store.
#[derive(Default)]
pub struct MemKv {
    inner: RwLock<MemInner>,
}

impl MemKv {
    pub fn new() -> MemKv {
        MemKv::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemInner> {
        // Writers never panic half-way through a change, so a poisoned lock still
        // guards consistent maps.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemInner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl KvStore for MemKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read().data.get(key).cloned())
    }

    fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .read()
            .data
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn scan_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        Ok(self
            .read()
            .data
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn first_key_from(&self, from: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .read()
            .data
            .range(from.to_string()..)
            .next()
            .map(|(k, _)| k.clone()))
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.read().meta.get(name).cloned())
    }

    fn apply(&self, ops: &[Op], meta: &[(&str, &[u8])]) -> Result<(), StorageError> {
        let mut g = self.write();
        for op in ops {
            match op {
                Op::Put { key, value } => {
                    g.data.insert(key.clone(), value.clone());
                }
                Op::Delete { key } => {
                    g.data.remove(key);
                }
            }
        }
        for (name, value) in meta {
            g.meta.insert((*name).to_string(), value.to_vec());
        }
        Ok(())
    }

    fn scan_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        use std::ops::Bound;
        let start = match after {
            Some(k) => Bound::Excluded(k.to_string()),
            None => Bound::Unbounded,
        };
        Ok(self
            .read()
            .data
            .range::<String, _>((start, Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn replace_stream(
        &self,
        pairs: &mut dyn Iterator<Item = Result<(String, Vec<u8>), StorageError>>,
        meta: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StorageError> {
        // Read everything first: in memory the replacement is atomic.
        let data = pairs.collect::<Result<BTreeMap<_, _>, _>>()?;
        let mut g = self.write();
        g.data = data;
        g.meta = meta
            .into_iter()
            .filter(|(k, _)| k != REPLACE_MARKER)
            .collect();
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    /// Every data pair, read in scans of at most `chunk` pairs.
    fn scan_all(kv: &dyn KvStore, chunk: usize) -> Vec<(String, Vec<u8>)> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let part = kv.scan_after(after.as_deref(), chunk).expect("scan");
            assert!(part.len() <= chunk);
            let Some(last) = part.last() else { break };
            after = Some(last.0.clone());
            all.extend(part);
        }
        all
    }

    fn contract(kv: &dyn KvStore) {
        assert_eq!(kv.get("a").expect("get"), None);
        kv.apply(
            &[
                put("a/b", "1"),
                put("a/c/d", "2"),
                put("a/c/e", "3"),
                put("a/f", "4"),
                put("b/x", "5"),
            ],
            &[("last_applied", b"7")],
        )
        .expect("apply");
        assert_eq!(kv.get("a/b").expect("get"), Some(b"1".to_vec()));
        assert_eq!(
            kv.get_meta("last_applied").expect("meta"),
            Some(b"7".to_vec())
        );
        // Metadata is not data.
        assert_eq!(kv.get("last_applied").expect("get"), None);
        assert_eq!(
            kv.keys_with_prefix("a/c/").expect("keys"),
            vec!["a/c/d", "a/c/e"]
        );
        assert_eq!(
            kv.scan_prefix("a/c").expect("scan"),
            vec![
                ("a/c/d".to_string(), b"2".to_vec()),
                ("a/c/e".to_string(), b"3".to_vec())
            ]
        );
        assert_eq!(kv.list("a/").expect("list"), vec!["b", "c/", "f"]);
        assert_eq!(kv.list("").expect("list"), vec!["a/", "b/"]);
        assert!(kv.list("zz/").expect("list").is_empty());

        // Deletes and puts in one batch, with metadata.
        kv.apply(
            &[
                Op::Delete { key: "a/b".into() },
                Op::Delete {
                    key: "missing".into(),
                },
                put("a/b/z", "6"),
            ],
            &[("last_applied", b"8"), ("membership", b"m")],
        )
        .expect("apply");
        assert_eq!(kv.get("a/b").expect("get"), None);
        assert_eq!(kv.list("a/").expect("list"), vec!["b/", "c/", "f"]);

        // Chunked scans cover the data (not the metadata) exactly once, in order.
        let scanned = scan_all(kv, 2);
        assert_eq!(scanned.len(), 5);
        let expected: Vec<(String, Vec<u8>)> = kv
            .keys_with_prefix("")
            .expect("keys")
            .into_iter()
            .map(|k| {
                let v = kv.get(&k).expect("get").expect("present");
                (k, v)
            })
            .collect();
        assert_eq!(scanned, expected);
        assert_eq!(
            kv.get_meta("last_applied").expect("meta"),
            Some(b"8".to_vec())
        );
        assert_eq!(
            kv.get_meta("membership").expect("meta"),
            Some(b"m".to_vec())
        );

        kv.replace_all(KvExport {
            data: vec![("n/1".into(), b"x".to_vec()), ("n/2".into(), b"y".to_vec())],
            meta: vec![("last_applied".into(), b"99".to_vec())],
        })
        .expect("replace");
        assert_eq!(kv.get("a/f").expect("get"), None);
        assert_eq!(kv.keys_with_prefix("").expect("keys"), vec!["n/1", "n/2"]);
        assert_eq!(
            kv.get_meta("last_applied").expect("meta"),
            Some(b"99".to_vec())
        );
        assert_eq!(kv.get_meta("membership").expect("meta"), None);
        assert!(!kv.replace_interrupted().expect("marker"));
        kv.flush().expect("flush");
    }

    #[test]
    fn list_matches_children_of() {
        let kv = MemKv::new();
        let keys = [
            "a", "a/", "a/b", "a/b/c", "a/b-x", "a/b0", "a/bb/c", "a//x", "c/d/e/f",
        ];
        kv.apply(&keys.iter().map(|k| put(k, "v")).collect::<Vec<_>>(), &[])
            .expect("apply");
        for prefix in ["", "a/", "a/b/", "c/", "c/d/", "a//", "nope/"] {
            let expected = crate::children_of(
                prefix,
                keys.iter()
                    .copied()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter(),
            );
            assert_eq!(
                kv.list(prefix).expect("list"),
                expected,
                "prefix {prefix:?}"
            );
        }
    }

    #[test]
    fn mem_contract() {
        contract(&MemKv::new());
    }

    #[test]
    fn sled_contract_and_persistence() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let kv = SledKv::open(dir.path(), DEFAULT_CACHE_CAPACITY).expect("open");
            contract(&kv);
            kv.apply(&[put("after", "1")], &[("last_applied", b"100")])
                .expect("apply");
            kv.flush().expect("flush");
        }
        let kv = SledKv::reopen(dir.path(), DEFAULT_CACHE_CAPACITY).expect("reopen");
        assert_eq!(kv.get("after").expect("get"), Some(b"1".to_vec()));
        assert_eq!(kv.get("n/2").expect("get"), Some(b"y".to_vec()));
        assert_eq!(
            kv.get_meta("last_applied").expect("meta"),
            Some(b"100".to_vec())
        );
    }

    #[test]
    fn sled_interrupted_replace_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let kv = SledKv::open(dir.path(), DEFAULT_CACHE_CAPACITY).expect("open");
            kv.apply(&[put("k", "v")], &[("last_applied", b"1")])
                .expect("apply");
            // What a crash in the middle of replace_all leaves behind.
            kv.clear_and_mark().expect("clear");
            kv.flush().expect("flush");
        }
        let kv = SledKv::reopen(dir.path(), DEFAULT_CACHE_CAPACITY).expect("reopen");
        assert!(kv.replace_interrupted().expect("marker"));
        assert_eq!(kv.get("k").expect("get"), None);
        assert_eq!(kv.get_meta("last_applied").expect("meta"), None);
        kv.replace_all(KvExport {
            data: vec![("k".into(), b"w".to_vec())],
            meta: vec![],
        })
        .expect("replace");
        assert!(!kv.replace_interrupted().expect("marker"));
        assert_eq!(kv.get("k").expect("get"), Some(b"w".to_vec()));
    }

    #[test]
    fn sled_bulk_replace_spans_many_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = SledKv::open(dir.path(), DEFAULT_CACHE_CAPACITY).expect("open");
        let data: Vec<(String, Vec<u8>)> = (0..25_000)
            .map(|i| (format!("k/{i:06}"), vec![(i % 251) as u8; 8]))
            .collect();
        kv.replace_all(KvExport {
            data: data.clone(),
            meta: vec![],
        })
        .expect("replace");
        assert_eq!(scan_all(&kv, 1000), data);
        kv.replace_all(KvExport::default())
            .expect("replace with nothing");
        assert!(kv.keys_with_prefix("").expect("keys").is_empty());
    }
}

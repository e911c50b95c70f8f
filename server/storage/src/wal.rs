//! The Raft log's durable store: a small append-only write-ahead log.
//!
//! sled 0.34 never calls `fsync` (it persists with `sync_file_range`, sled issue #1452),
//! which is not enough for a Raft log: an entry a node acknowledged must survive a power
//! loss. So the log lives in its own files:
//!
//! * **Segments** (`<seq>.seg`, 20 decimal digits) hold records. A segment starts with an
//!   8-byte magic; each record is
//!   `len: u32 LE | crc32: u32 LE | index: u64 LE | batch_start: u64 LE | data`, where
//!   `len` counts everything after the CRC and the CRC covers it. One record is one log
//!   entry; its data is opaque to this module. `batch_start` is the segment offset of the
//!   first record of the append batch the record belongs to.
//! * [`Wal::append`] writes a whole batch with one `write` and calls `sync_data` **once**
//!   per batch (group commit). A segment rolls over to a new file once it is larger than
//!   the configured size (64 MiB by default); a batch never spans two segments.
//! * **Pre-zeroed space.** The active segment is written ahead of its records with zeros,
//!   1 MiB at a time (in the same `sync_data` as the batch that needs the room), and
//!   batches overwrite that space in place. A `sync_data` of a batch then neither changes
//!   the file's size nor allocates blocks, so it flushes the data without a journal
//!   commit: about half the time and CPU of a sync after an append that grows the file
//!   (BENCHMARKS.md). A segment is cut to its records when the log rolls to the next one.
//! * On open the segments are replayed. Zeros from the end of a segment's records to the
//!   end of its file are that pre-zeroed space and stay. A torn or garbage tail in the
//!   **last** segment (a crash in the middle of an append) is truncated away. A bad
//!   record followed by a valid record of a *later* batch (which was only written after
//!   the bad one was synced), or any bad record in an older segment, is corruption and
//!   an error.
//! * [`Wal::truncate`] removes entries from an index on (Raft conflict resolution),
//!   [`Wal::purge`] forgets entries up to an index (deleting whole segments below it) and
//!   records the purged log id durably first.
//! * A small **meta** file (the vote, the purged log id) is replaced atomically: write a
//!   temporary file, `fsync` it, rename it over the old one, `fsync` the directory.
//! * A **hint** file holds a value that may be lost (the committed index): it is
//!   overwritten in place without `fsync` and ignored if its checksum does not match.
//!
//! [`MemWal`] is the in-memory variant with the same contract (for `storage "inmem"` and
//! dev mode); it keeps nothing across a restart.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::StorageError;

/// Magic bytes at the start of every segment file.
const SEGMENT_MAGIC: &[u8; 8] = b"CFWALv01";
/// Magic bytes at the start of the meta file.
const META_MAGIC: &[u8; 8] = b"CFMETA01";
/// Record header: `len` (u32) + `crc` (u32).
const RECORD_HEADER: usize = 8;
/// The index and the batch start that open every record body.
const BODY_HEADER: usize = 16;
/// Largest record body accepted on replay; anything larger is a garbage length.
const MAX_RECORD: usize = 512 * 1024 * 1024;
/// Default segment size before rolling over to a new file.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// Zeros written ahead of the records of the active segment at a time (at most the
/// segment size).
pub const PREZERO_CHUNK: u64 = 1024 * 1024;

const META_FILE: &str = "meta";
const META_TMP: &str = "meta.tmp";
const HINT_FILE: &str = "hint";
const SEGMENT_EXT: &str = "seg";

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("wal I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Stored bytes do not decode.
    #[error("wal corruption: {0}")]
    Corrupt(String),
    /// The caller broke the log's contract (e.g. a non-increasing index).
    #[error("invalid wal operation: {0}")]
    Invalid(String),
    /// An earlier write failed half-way; the log refuses further writes.
    #[error("wal is poisoned by an earlier write failure")]
    Poisoned,
}

impl From<WalError> for StorageError {
    fn from(e: WalError) -> Self {
        match e {
            WalError::Corrupt(m) => StorageError::Corrupt(m),
            other => StorageError::Io(other.to_string()),
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> WalError {
    let context = context.into();
    move |source| WalError::Io { context, source }
}

/// One log record: a log index and its opaque bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalRecord {
    pub index: u64,
    pub data: Vec<u8>,
}

/// The durable log as the Raft log store sees it.
///
/// Indexes are strictly increasing (gaps are allowed). Everything at or below the purged
/// index is gone from the caller's point of view.
pub trait Wal: Send + Sync + 'static {
    /// Every record above the purged index, in index order.
    fn read_all(&self) -> Result<Vec<WalRecord>, WalError>;

    /// The records with `from <= index < to` (above the purged index), in index order,
    /// each checked against its checksum.
    fn read_range(&self, from: u64, to: u64) -> Result<Vec<WalRecord>, WalError>;

    /// Append `records` (strictly increasing, above the last index) durably: when this
    /// returns `Ok`, the batch survives a crash. One sync per call.
    fn append(&mut self, records: &[WalRecord]) -> Result<(), WalError>;

    /// Remove every record with an index `>= from`.
    fn truncate(&mut self, from: u64) -> Result<(), WalError>;

    /// Forget every record with an index `<= upto`, remembering `purged_id` (the caller's
    /// encoding of the purged log id) durably.
    fn purge(&mut self, upto: u64, purged_id: &[u8]) -> Result<(), WalError>;

    /// The last purge: its index and the caller's purged id.
    fn purged(&self) -> Option<(u64, Vec<u8>)>;

    /// A durable named value (e.g. the vote).
    fn meta(&self, name: &str) -> Option<Vec<u8>>;

    /// Store a durable named value; it is on disk when this returns.
    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), WalError>;

    /// Store a value that may be lost in a crash (no sync), e.g. the committed log id.
    fn save_hint(&mut self, value: &[u8]) -> Result<(), WalError>;

    /// The last hint, if it is still readable.
    fn hint(&self) -> Option<Vec<u8>>;

    /// Index of the last record, if any record is above the purged index.
    fn last_index(&self) -> Option<u64>;
}

fn crc_of(index: u64, batch_start: u64, data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(&batch_start.to_le_bytes());
    h.update(data);
    h.finalize()
}

fn encode_record(
    buf: &mut Vec<u8>,
    index: u64,
    batch_start: u64,
    data: &[u8],
) -> Result<(), WalError> {
    let len = BODY_HEADER + data.len();
    if len > MAX_RECORD {
        return Err(WalError::Invalid(format!(
            "record at index {index} is {len} bytes, above the {MAX_RECORD} byte limit"
        )));
    }
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&crc_of(index, batch_start, data).to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(&batch_start.to_le_bytes());
    buf.extend_from_slice(data);
    Ok(())
}

/// What a segment scan found at some offset.
enum Parsed {
    /// A valid record and the offset right after it.
    Record {
        index: u64,
        batch_start: u64,
        data_range: (usize, usize),
        next: usize,
    },
    /// Not a valid record: short, absurd length or checksum mismatch.
    Bad,
}

fn parse_at(buf: &[u8], off: usize) -> Parsed {
    if buf.len().saturating_sub(off) < RECORD_HEADER {
        return Parsed::Bad;
    }
    let mut w = [0u8; 4];
    w.copy_from_slice(&buf[off..off + 4]);
    let len = u32::from_le_bytes(w) as usize;
    w.copy_from_slice(&buf[off + 4..off + 8]);
    let crc = u32::from_le_bytes(w);
    if !(BODY_HEADER..=MAX_RECORD).contains(&len) {
        return Parsed::Bad;
    }
    let body = off + RECORD_HEADER;
    if buf.len() - body < len {
        return Parsed::Bad;
    }
    let mut ix = [0u8; 8];
    ix.copy_from_slice(&buf[body..body + 8]);
    let index = u64::from_le_bytes(ix);
    ix.copy_from_slice(&buf[body + 8..body + 16]);
    let batch_start = u64::from_le_bytes(ix);
    let data = &buf[body + BODY_HEADER..body + len];
    if crc_of(index, batch_start, data) != crc {
        return Parsed::Bad;
    }
    Parsed::Record {
        index,
        batch_start,
        data_range: (body + BODY_HEADER, body + len),
        next: body + len,
    }
}

/// A record's place on disk.
#[derive(Clone, Copy, Debug)]
struct Pos {
    index: u64,
    /// Position of the segment in `FileWal::segments`' sequence numbers.
    seq: u64,
    offset: u64,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    /// Highest index in the segment (including records at or below the purged index).
    last_index: Option<u64>,
}

/// Durable values kept in the meta file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct MetaState {
    purged: Option<(u64, Vec<u8>)>,
    values: BTreeMap<String, Vec<u8>>,
}

impl MetaState {
    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match &self.purged {
            Some((index, id)) => {
                body.push(1);
                body.extend_from_slice(&index.to_le_bytes());
                body.extend_from_slice(&(id.len() as u32).to_le_bytes());
                body.extend_from_slice(id);
            }
            None => body.push(0),
        }
        body.extend_from_slice(&(self.values.len() as u32).to_le_bytes());
        for (k, v) in &self.values {
            body.extend_from_slice(&(k.len() as u32).to_le_bytes());
            body.extend_from_slice(k.as_bytes());
            body.extend_from_slice(&(v.len() as u32).to_le_bytes());
            body.extend_from_slice(v);
        }
        let mut out = Vec::with_capacity(body.len() + 16);
        out.extend_from_slice(META_MAGIC);
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode(buf: &[u8]) -> Result<Self, WalError> {
        let bad = |what: &str| WalError::Corrupt(format!("meta file: {what}"));
        if buf.len() < 12 || &buf[..8] != META_MAGIC {
            return Err(bad("bad magic or too short"));
        }
        let mut w = [0u8; 4];
        w.copy_from_slice(&buf[8..12]);
        let body = &buf[12..];
        if crc32fast::hash(body) != u32::from_le_bytes(w) {
            return Err(bad("checksum mismatch"));
        }
        let mut r = Reader { buf: body, pos: 0 };
        let purged = match r.u8().ok_or_else(|| bad("truncated"))? {
            0 => None,
            1 => {
                let index = r.u64().ok_or_else(|| bad("truncated purged index"))?;
                let n = r.u32().ok_or_else(|| bad("truncated purged id"))? as usize;
                let id = r.bytes(n).ok_or_else(|| bad("truncated purged id"))?;
                Some((index, id.to_vec()))
            }
            _ => return Err(bad("bad purged tag")),
        };
        let count = r.u32().ok_or_else(|| bad("truncated value count"))?;
        let mut values = BTreeMap::new();
        for _ in 0..count {
            let n = r.u32().ok_or_else(|| bad("truncated name"))? as usize;
            let name = r.bytes(n).ok_or_else(|| bad("truncated name"))?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| bad("name is not UTF-8"))?;
            let n = r.u32().ok_or_else(|| bad("truncated value"))? as usize;
            let value = r.bytes(n).ok_or_else(|| bad("truncated value"))?;
            values.insert(name, value.to_vec());
        }
        Ok(MetaState { purged, values })
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        let mut w = [0u8; 4];
        w.copy_from_slice(self.bytes(4)?);
        Some(u32::from_le_bytes(w))
    }
    fn u64(&mut self) -> Option<u64> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.bytes(8)?);
        Some(u64::from_le_bytes(w))
    }
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing directory {}", dir.display())))
}

/// Options of a [`FileWal`].
#[derive(Clone, Debug)]
pub struct FileWalOptions {
    /// Roll to a new segment once the active one is at least this large.
    pub segment_size: u64,
}

impl Default for FileWalOptions {
    fn default() -> Self {
        FileWalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// The file-backed write-ahead log (see the module docs for the format).
#[derive(Debug)]
pub struct FileWal {
    dir: PathBuf,
    opts: FileWalOptions,
    /// Oldest first; the last one is the active segment.
    segments: Vec<Segment>,
    /// The active segment, open for writing.
    active: File,
    /// End of the active segment's records (where the next batch goes).
    active_len: u64,
    /// Length of the active segment's file: past `active_len` it holds only zeros.
    zeroed_to: u64,
    /// Places of the records above the purged index, in index order.
    positions: VecDeque<Pos>,
    meta: MetaState,
    hint: Option<Vec<u8>>,
    /// The hint file, opened on first use and overwritten in place.
    hint_file: Option<File>,
    poisoned: bool,
}

impl FileWal {
    /// Open (or create) the log in `dir`, replaying and checking every segment.
    pub fn open(dir: impl AsRef<Path>, opts: FileWalOptions) -> Result<FileWal, WalError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;

        let meta = match fs::read(dir.join(META_FILE)) {
            Ok(buf) => MetaState::decode(&buf)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => MetaState::default(),
            Err(e) => return Err(io_err("reading the meta file")(e)),
        };
        // A leftover temporary meta file is an interrupted write: the old file still holds.
        match fs::remove_file(dir.join(META_TMP)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing a stale meta.tmp")(e)),
        }
        let hint = read_hint(&dir.join(HINT_FILE));

        let mut seqs = Vec::new();
        for ent in fs::read_dir(&dir).map_err(io_err(format!("listing {}", dir.display())))? {
            let ent = ent.map_err(io_err("listing the wal directory"))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(&format!(".{SEGMENT_EXT}")) else {
                continue;
            };
            let seq: u64 = stem
                .parse()
                .map_err(|_| WalError::Corrupt(format!("unexpected segment file name {name}")))?;
            seqs.push(seq);
        }
        seqs.sort_unstable();

        let purged_index = meta.purged.as_ref().map(|(i, _)| *i);
        let mut segments = Vec::new();
        let mut positions = VecDeque::new();
        let mut last_seen: Option<u64> = None;
        // Where the last segment's records end (its file may go on with zeros).
        let mut active_data_end = None;
        let count = seqs.len();
        for (i, seq) in seqs.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let path = segment_path(&dir, seq);
            let scan = scan_segment(&path, is_last, &mut |index, offset, _data| {
                if let Some(prev) = last_seen {
                    if index <= prev {
                        return Err(WalError::Corrupt(format!(
                            "segment {seq}: index {index} follows index {prev}"
                        )));
                    }
                }
                last_seen = Some(index);
                if purged_index.is_none_or(|p| index > p) {
                    positions.push_back(Pos { index, seq, offset });
                }
                Ok(())
            })?;
            if is_last && !scan.torn {
                active_data_end = Some(scan.data_end);
            }
            if scan.torn {
                let valid_len = scan.data_end;
                tracing::warn!(
                    segment = %path.display(),
                    valid_len,
                    "wal: truncating a torn tail left by a crash"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(format!("opening {}", path.display())))?;
                if valid_len < SEGMENT_MAGIC.len() as u64 {
                    // Even the header was torn: rewrite it.
                    f.set_len(0).map_err(io_err("truncating a torn segment"))?;
                    let mut f = f;
                    f.write_all(SEGMENT_MAGIC)
                        .map_err(io_err("rewriting a segment header"))?;
                    f.sync_data()
                        .map_err(io_err("syncing a repaired segment"))?;
                } else {
                    f.set_len(valid_len)
                        .map_err(io_err("truncating a torn tail"))?;
                    f.sync_data()
                        .map_err(io_err("syncing a repaired segment"))?;
                }
            }
            segments.push(Segment {
                seq,
                path,
                last_index: scan.last_index,
            });
        }

        if segments.is_empty() {
            let seg = create_segment(&dir, 1)?;
            segments.push(seg);
        }
        let active_path = segments
            .last()
            .map(|s| s.path.clone())
            .ok_or_else(|| WalError::Invalid("no active segment".into()))?;
        let mut active = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&active_path)
            .map_err(io_err(format!("opening {}", active_path.display())))?;
        let zeroed_to = active
            .seek(SeekFrom::End(0))
            .map_err(io_err("seeking to the end of the active segment"))?;
        // A repaired segment ends with its records.
        let active_len = active_data_end.unwrap_or(zeroed_to);

        Ok(FileWal {
            dir,
            opts,
            segments,
            active,
            active_len,
            zeroed_to,
            positions,
            meta,
            hint,
            hint_file: None,
            poisoned: false,
        })
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of segment files (for tests and metrics).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn check_poison(&self) -> Result<(), WalError> {
        if self.poisoned {
            Err(WalError::Poisoned)
        } else {
            Ok(())
        }
    }

    fn active_seq(&self) -> u64 {
        self.segments.last().map(|s| s.seq).unwrap_or(0)
    }

    fn roll(&mut self) -> Result<(), WalError> {
        // A sealed segment ends with its last record: cut its zeros away first.
        if self.zeroed_to > self.active_len {
            self.active
                .set_len(self.active_len)
                .and_then(|()| self.active.sync_data())
                .map_err(io_err("cutting a full segment to its records"))?;
            self.zeroed_to = self.active_len;
        }
        let seq = self.active_seq() + 1;
        let seg = create_segment(&self.dir, seq)?;
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg.path)
            .map_err(io_err(format!("opening {}", seg.path.display())))?;
        self.active_len = f
            .seek(SeekFrom::End(0))
            .map_err(io_err("seeking in a new segment"))?;
        self.zeroed_to = self.active_len;
        self.active = f;
        self.segments.push(seg);
        Ok(())
    }

    /// Once the records reach `end` past the pre-zeroed space, write the next chunk of
    /// zeros after them (synced with the batch). Without room for it (a full disk) the
    /// log goes on without: zeros past the records are only a speed-up.
    fn zero_ahead(&mut self, end: u64) {
        if end <= self.zeroed_to {
            return;
        }
        let chunk = PREZERO_CHUNK.min(self.opts.segment_size).max(1);
        let zeros = vec![0u8; chunk as usize];
        self.zeroed_to = match self.active.write_all_at(&zeros, end) {
            Ok(()) => end + chunk,
            Err(e) => {
                tracing::warn!(error = %e, "wal: could not pre-zero the next part of the segment");
                // Whatever part of the zeros was written is past the records and harmless.
                self.active.metadata().map_or(end, |m| m.len().max(end))
            }
        };
    }

    fn write_meta(&mut self, next: MetaState) -> Result<(), WalError> {
        let tmp = self.dir.join(META_TMP);
        let buf = next.encode();
        let mut f = File::create(&tmp).map_err(io_err("creating meta.tmp"))?;
        f.write_all(&buf).map_err(io_err("writing meta.tmp"))?;
        f.sync_all().map_err(io_err("syncing meta.tmp"))?;
        drop(f);
        fs::rename(&tmp, self.dir.join(META_FILE)).map_err(io_err("renaming meta.tmp"))?;
        sync_dir(&self.dir)?;
        self.meta = next;
        Ok(())
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.{SEGMENT_EXT}"))
}

fn create_segment(dir: &Path, seq: u64) -> Result<Segment, WalError> {
    let path = segment_path(dir, seq);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(format!("creating {}", path.display())))?;
    f.write_all(SEGMENT_MAGIC)
        .map_err(io_err("writing a segment header"))?;
    f.sync_data().map_err(io_err("syncing a new segment"))?;
    sync_dir(dir)?;
    Ok(Segment {
        seq,
        path,
        last_index: None,
    })
}

/// Called for each valid record of a segment: `(index, record offset, data)`.
type RecordVisitor<'a> = dyn FnMut(u64, u64, &[u8]) -> Result<(), WalError> + 'a;

struct ScanResult {
    last_index: Option<u64>,
    /// Where the valid records end (zeros or a torn tail may follow).
    data_end: u64,
    /// The tail after `data_end` is torn: the file must be cut there.
    torn: bool,
}

/// Read and check the record at `pos` from its segment file.
fn read_record_at(f: &mut File, pos: &Pos) -> Result<WalRecord, WalError> {
    let bad = |what: &str| {
        WalError::Corrupt(format!("segment {} offset {}: {what}", pos.seq, pos.offset))
    };
    f.seek(SeekFrom::Start(pos.offset))
        .map_err(io_err("seeking in a segment"))?;
    let mut buf = vec![0u8; RECORD_HEADER];
    f.read_exact(&mut buf)
        .map_err(io_err("reading a record header"))?;
    let mut w = [0u8; 4];
    w.copy_from_slice(&buf[..4]);
    let len = u32::from_le_bytes(w) as usize;
    if !(BODY_HEADER..=MAX_RECORD).contains(&len) {
        return Err(bad("bad record length"));
    }
    buf.resize(RECORD_HEADER + len, 0);
    f.read_exact(&mut buf[RECORD_HEADER..])
        .map_err(io_err("reading a record"))?;
    match parse_at(&buf, 0) {
        Parsed::Record {
            index,
            data_range: (from, to),
            ..
        } if index == pos.index => {
            buf.truncate(to);
            buf.drain(..from);
            Ok(WalRecord { index, data: buf })
        }
        _ => Err(bad("record does not match its checksum or index")),
    }
}

/// Read one segment, calling `f(index, record_offset, data)` for each valid record.
fn scan_segment(
    path: &Path,
    is_last: bool,
    f: &mut RecordVisitor<'_>,
) -> Result<ScanResult, WalError> {
    let mut buf = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut buf))
        .map_err(io_err(format!("reading {}", path.display())))?;
    let name = path.display();
    if buf.len() < SEGMENT_MAGIC.len() || &buf[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
        if is_last && SEGMENT_MAGIC.starts_with(&buf[..buf.len().min(SEGMENT_MAGIC.len())]) {
            // Crashed while creating the segment.
            return Ok(ScanResult {
                last_index: None,
                data_end: 0,
                torn: true,
            });
        }
        return Err(WalError::Corrupt(format!("{name}: bad segment header")));
    }
    let mut off = SEGMENT_MAGIC.len();
    let mut last_index = None;
    while off < buf.len() {
        match parse_at(&buf, off) {
            Parsed::Record {
                index,
                data_range,
                next,
                ..
            } => {
                f(index, off as u64, &buf[data_range.0..data_range.1])?;
                last_index = Some(index);
                off = next;
            }
            Parsed::Bad => {
                if buf[off..].iter().all(|b| *b == 0) {
                    // The pre-zeroed space after the records (or a batch none of which
                    // reached the disk): nothing to repair. (A full segment is cut to its
                    // records before the next one is created; zeros left in an older
                    // segment follow records that were all synced before the next segment
                    // got any.)
                    return Ok(ScanResult {
                        last_index,
                        data_end: off as u64,
                        torn: false,
                    });
                }
                if !is_last {
                    return Err(WalError::Corrupt(format!(
                        "{name}: bad record at offset {off} in a sealed segment"
                    )));
                }
                // In the last segment a bad record is a torn tail, unless a valid record of
                // a later batch follows: that batch was written after this one was synced.
                if let Some(at) = later_batch_after(&buf, off) {
                    return Err(WalError::Corrupt(format!(
                        "{name}: bad record at offset {off} followed by a valid record at \
                         offset {at}"
                    )));
                }
                return Ok(ScanResult {
                    last_index,
                    data_end: off as u64,
                    torn: true,
                });
            }
        }
    }
    Ok(ScanResult {
        last_index,
        data_end: buf.len() as u64,
        torn: false,
    })
}

/// The offset of a valid record after `bad` that starts a batch beginning after `bad`.
fn later_batch_after(buf: &[u8], bad: usize) -> Option<usize> {
    (bad + 1..buf.len().saturating_sub(RECORD_HEADER + BODY_HEADER - 1)).find(|&at| {
        matches!(parse_at(buf, at), Parsed::Record { batch_start, .. } if batch_start > bad as u64)
    })
}

fn read_hint(path: &Path) -> Option<Vec<u8>> {
    let buf = fs::read(path).ok()?;
    let mut r = Reader { buf: &buf, pos: 0 };
    let crc = r.u32()?;
    let len = r.u32()? as usize;
    let data = r.bytes(len)?;
    (crc32fast::hash(data) == crc).then(|| data.to_vec())
}

impl Wal for FileWal {
    fn read_all(&self) -> Result<Vec<WalRecord>, WalError> {
        let mut out = Vec::with_capacity(self.positions.len());
        let Some(first) = self.positions.front().map(|p| p.index) else {
            return Ok(out);
        };
        let count = self.segments.len();
        for (i, seg) in self.segments.iter().enumerate() {
            if seg.last_index.is_none_or(|l| l < first) {
                continue;
            }
            scan_segment(&seg.path, i + 1 == count, &mut |index, _off, data| {
                if index >= first {
                    out.push(WalRecord {
                        index,
                        data: data.to_vec(),
                    });
                }
                Ok(())
            })?;
        }
        Ok(out)
    }

    fn read_range(&self, from: u64, to: u64) -> Result<Vec<WalRecord>, WalError> {
        let start = self.positions.partition_point(|p| p.index < from);
        let mut out = Vec::new();
        let mut open: Option<(u64, File)> = None;
        for pos in self.positions.range(start..) {
            if pos.index >= to {
                break;
            }
            if open.as_ref().is_none_or(|(seq, _)| *seq != pos.seq) {
                let path = segment_path(&self.dir, pos.seq);
                let f = File::open(&path).map_err(io_err(format!("opening {}", path.display())))?;
                open = Some((pos.seq, f));
            }
            let Some((_, f)) = open.as_mut() else {
                continue;
            };
            out.push(read_record_at(f, pos)?);
        }
        Ok(out)
    }

    fn append(&mut self, records: &[WalRecord]) -> Result<(), WalError> {
        self.check_poison()?;
        if records.is_empty() {
            return Ok(());
        }
        let mut prev = self
            .last_index()
            .or(self.meta.purged.as_ref().map(|(i, _)| *i));
        // Records on disk at or below the purged index still bound the next index.
        if let Some(l) = self.segments.last().and_then(|s| s.last_index) {
            prev = Some(prev.map_or(l, |p| p.max(l)));
        }
        for r in records {
            if let Some(p) = prev {
                if r.index <= p {
                    return Err(WalError::Invalid(format!(
                        "append of index {} after index {p}",
                        r.index
                    )));
                }
            }
            prev = Some(r.index);
        }
        if self.active_len >= self.opts.segment_size {
            self.roll()?;
        }
        let seq = self.active_seq();
        let mut buf = Vec::with_capacity(
            records
                .iter()
                .map(|r| r.data.len() + RECORD_HEADER + BODY_HEADER)
                .sum(),
        );
        let mut new_pos = Vec::with_capacity(records.len());
        let batch_start = self.active_len;
        for r in records {
            new_pos.push(Pos {
                index: r.index,
                seq,
                offset: batch_start + buf.len() as u64,
            });
            encode_record(&mut buf, r.index, batch_start, &r.data)?;
        }
        let end = batch_start + buf.len() as u64;
        let res = self.active.write_all_at(&buf, batch_start).and_then(|()| {
            self.zero_ahead(end);
            self.active.sync_data()
        });
        if let Err(e) = res {
            self.poisoned = true;
            return Err(io_err("appending to the wal")(e));
        }
        self.active_len += buf.len() as u64;
        self.positions.extend(new_pos);
        if let Some(seg) = self.segments.last_mut() {
            seg.last_index = records.last().map(|r| r.index);
        }
        Ok(())
    }

    fn truncate(&mut self, from: u64) -> Result<(), WalError> {
        self.check_poison()?;
        let cut = self.positions.partition_point(|p| p.index < from);
        let Some(pos) = self.positions.get(cut).copied() else {
            return Ok(());
        };
        // Drop whole segments after the one holding `pos`, newest first.
        while self.segments.last().is_some_and(|s| s.seq > pos.seq) {
            let Some(seg) = self.segments.pop() else {
                break;
            };
            if let Err(e) = fs::remove_file(&seg.path) {
                self.poisoned = true;
                return Err(io_err(format!("removing {}", seg.path.display()))(e));
            }
        }
        let Some(seg) = self.segments.last() else {
            self.poisoned = true;
            return Err(WalError::Invalid(format!(
                "no segment holds index {}",
                pos.index
            )));
        };
        let path = seg.path.clone();
        let res = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .and_then(|mut f| {
                f.set_len(pos.offset)?;
                f.sync_data()?;
                f.seek(SeekFrom::End(0))?;
                Ok(f)
            });
        let f = match res {
            Ok(f) => f,
            Err(e) => {
                self.poisoned = true;
                return Err(io_err(format!("truncating {}", path.display()))(e));
            }
        };
        if let Err(e) = sync_dir(&self.dir) {
            self.poisoned = true;
            return Err(e);
        }
        self.active = f;
        self.active_len = pos.offset;
        self.zeroed_to = pos.offset;
        self.positions.truncate(cut);
        let new_last = self
            .positions
            .back()
            .filter(|p| p.seq == pos.seq)
            .map(|p| p.index);
        if let Some(seg) = self.segments.last_mut() {
            // Records at or below the purged index may remain before the cut; they do not
            // matter for ordering once the purged index bounds appends.
            seg.last_index = new_last;
        }
        Ok(())
    }

    fn purge(&mut self, upto: u64, purged_id: &[u8]) -> Result<(), WalError> {
        self.check_poison()?;
        if self.meta.purged.as_ref().is_some_and(|(i, _)| *i >= upto) {
            // Already purged that far.
            return Ok(());
        }
        // Record the purge first: if we crash before the files go, replay skips them.
        let mut next = self.meta.clone();
        next.purged = Some((upto, purged_id.to_vec()));
        self.write_meta(next)?;
        let keep = self.positions.partition_point(|p| p.index <= upto);
        self.positions.drain(..keep);

        // Delete whole sealed segments whose every record is purged.
        let mut removed = 0;
        while self.segments.len() > 1 {
            let seg = &self.segments[0];
            if seg.last_index.is_some_and(|l| l > upto) {
                break;
            }
            fs::remove_file(&seg.path)
                .map_err(io_err(format!("removing {}", seg.path.display())))?;
            self.segments.remove(0);
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    fn purged(&self) -> Option<(u64, Vec<u8>)> {
        self.meta.purged.clone()
    }

    fn meta(&self, name: &str) -> Option<Vec<u8>> {
        self.meta.values.get(name).cloned()
    }

    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), WalError> {
        self.check_poison()?;
        let mut next = self.meta.clone();
        next.values.insert(name.to_string(), value.to_vec());
        self.write_meta(next)
    }

    fn save_hint(&mut self, value: &[u8]) -> Result<(), WalError> {
        let mut buf = Vec::with_capacity(value.len() + 8);
        buf.extend_from_slice(&crc32fast::hash(value).to_le_bytes());
        buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
        buf.extend_from_slice(value);
        if self.hint_file.is_none() {
            let path = self.dir.join(HINT_FILE);
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err("opening the hint file"))?;
            self.hint_file = Some(f);
        }
        if let Some(f) = self.hint_file.as_mut() {
            f.seek(SeekFrom::Start(0))
                .and_then(|_| f.write_all(&buf))
                .map_err(io_err("writing the hint file"))?;
        }
        self.hint = Some(value.to_vec());
        Ok(())
    }

    fn hint(&self) -> Option<Vec<u8>> {
        self.hint.clone()
    }

    fn last_index(&self) -> Option<u64> {
        self.positions.back().map(|p| p.index)
    }
}

/// The in-memory log: same contract as [`FileWal`], nothing survives the process.
#[derive(Debug, Default)]
pub struct MemWal {
    records: BTreeMap<u64, Vec<u8>>,
    meta: MetaState,
    hint: Option<Vec<u8>>,
}

impl MemWal {
    pub fn new() -> MemWal {
        MemWal::default()
    }
}

impl Wal for MemWal {
    fn read_all(&self) -> Result<Vec<WalRecord>, WalError> {
        Ok(self
            .records
            .iter()
            .map(|(index, data)| WalRecord {
                index: *index,
                data: data.clone(),
            })
            .collect())
    }

    fn read_range(&self, from: u64, to: u64) -> Result<Vec<WalRecord>, WalError> {
        Ok(self
            .records
            .range(from..to.max(from))
            .map(|(index, data)| WalRecord {
                index: *index,
                data: data.clone(),
            })
            .collect())
    }

    fn append(&mut self, records: &[WalRecord]) -> Result<(), WalError> {
        let mut prev = self
            .last_index()
            .max(self.meta.purged.as_ref().map(|(i, _)| *i));
        for r in records {
            if prev.is_some_and(|p| r.index <= p) {
                return Err(WalError::Invalid(format!(
                    "append of index {} after index {prev:?}",
                    r.index
                )));
            }
            prev = Some(r.index);
        }
        for r in records {
            self.records.insert(r.index, r.data.clone());
        }
        Ok(())
    }

    fn truncate(&mut self, from: u64) -> Result<(), WalError> {
        self.records.split_off(&from);
        Ok(())
    }

    fn purge(&mut self, upto: u64, purged_id: &[u8]) -> Result<(), WalError> {
        if self.meta.purged.as_ref().is_some_and(|(i, _)| *i >= upto) {
            return Ok(());
        }
        self.meta.purged = Some((upto, purged_id.to_vec()));
        self.records = match upto.checked_add(1) {
            Some(next) => self.records.split_off(&next),
            None => BTreeMap::new(),
        };
        Ok(())
    }

    fn purged(&self) -> Option<(u64, Vec<u8>)> {
        self.meta.purged.clone()
    }

    fn meta(&self, name: &str) -> Option<Vec<u8>> {
        self.meta.values.get(name).cloned()
    }

    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), WalError> {
        self.meta.values.insert(name.to_string(), value.to_vec());
        Ok(())
    }

    fn save_hint(&mut self, value: &[u8]) -> Result<(), WalError> {
        self.hint = Some(value.to_vec());
        Ok(())
    }

    fn hint(&self) -> Option<Vec<u8>> {
        self.hint.clone()
    }

    fn last_index(&self) -> Option<u64> {
        self.records.keys().next_back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(index: u64, data: &str) -> WalRecord {
        WalRecord {
            index,
            data: data.as_bytes().to_vec(),
        }
    }

    fn indexes(w: &dyn Wal) -> Vec<u64> {
        w.read_all()
            .expect("read_all")
            .iter()
            .map(|r| r.index)
            .collect()
    }

    fn small() -> FileWalOptions {
        FileWalOptions { segment_size: 200 }
    }

    fn active_segment(dir: &Path) -> PathBuf {
        let mut segs: Vec<PathBuf> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == SEGMENT_EXT))
            .collect();
        segs.sort();
        segs.pop().expect("a segment")
    }

    /// Behaviour both implementations share.
    fn contract(w: &mut dyn Wal) {
        assert_eq!(w.last_index(), None);
        w.append(&[rec(1, "a"), rec(2, "b"), rec(3, "c")])
            .expect("append");
        w.append(&[rec(4, "d")]).expect("append");
        assert_eq!(indexes(w), vec![1, 2, 3, 4]);
        assert_eq!(w.read_all().expect("read")[1].data, b"b");
        let all = w.read_all().expect("read");
        let from = all[1].index;
        assert_eq!(
            w.read_range(from, u64::MAX).expect("range"),
            all[1..].to_vec()
        );
        assert_eq!(w.read_range(0, from).expect("range"), all[..1].to_vec());
        assert!(w.read_range(from, from).expect("range").is_empty());
        assert!(matches!(
            w.append(&[rec(4, "again")]),
            Err(WalError::Invalid(_))
        ));

        w.truncate(3).expect("truncate");
        assert_eq!(indexes(w), vec![1, 2]);
        assert_eq!(w.last_index(), Some(2));
        w.append(&[rec(3, "c2")]).expect("append after truncate");
        assert_eq!(w.read_all().expect("read")[2].data, b"c2");
        w.truncate(10).expect("truncate past the end is a no-op");
        assert_eq!(indexes(w), vec![1, 2, 3]);

        w.purge(2, b"id-2").expect("purge");
        assert_eq!(indexes(w), vec![3]);
        assert_eq!(w.purged(), Some((2, b"id-2".to_vec())));
        assert!(matches!(
            w.append(&[rec(3, "dup")]),
            Err(WalError::Invalid(_))
        ));

        // Purging past the end leaves an empty log that continues after the purge.
        w.purge(10, b"id-10").expect("purge past end");
        assert_eq!(indexes(w), Vec::<u64>::new());
        assert_eq!(w.last_index(), None);
        assert!(matches!(
            w.append(&[rec(9, "old")]),
            Err(WalError::Invalid(_))
        ));
        w.append(&[rec(11, "k")]).expect("append after purge");
        assert_eq!(indexes(w), vec![11]);

        w.set_meta("vote", b"v1").expect("meta");
        w.set_meta("vote", b"v2").expect("meta");
        assert_eq!(w.meta("vote"), Some(b"v2".to_vec()));
        assert_eq!(w.meta("other"), None);
        w.save_hint(b"committed-7").expect("hint");
        assert_eq!(w.hint(), Some(b"committed-7".to_vec()));
    }

    #[test]
    fn mem_wal_contract() {
        contract(&mut MemWal::new());
    }

    #[test]
    fn file_wal_contract_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut w = FileWal::open(dir.path(), FileWalOptions::default()).expect("open");
            contract(&mut w);
        }
        let w = FileWal::open(dir.path(), FileWalOptions::default()).expect("reopen");
        assert_eq!(indexes(&w), vec![11]);
        assert_eq!(w.purged(), Some((10, b"id-10".to_vec())));
        assert_eq!(w.meta("vote"), Some(b"v2".to_vec()));
        assert_eq!(w.hint(), Some(b"committed-7".to_vec()));
    }

    #[test]
    fn segments_roll_and_purge_deletes_whole_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = FileWal::open(dir.path(), small()).expect("open");
        for i in 1..=40 {
            w.append(&[rec(i, "0123456789012345678901234567890123456789")])
                .expect("append");
        }
        let before = w.segment_count();
        assert!(before > 5, "expected several segments, got {before}");
        w.purge(25, b"p").expect("purge");
        let after = w.segment_count();
        assert!(
            after < before,
            "purge removed no segment ({before} -> {after})"
        );
        assert_eq!(indexes(&w), (26..=40).collect::<Vec<_>>());

        // Truncate into an older segment: later segments go away.
        w.truncate(30).expect("truncate");
        assert_eq!(indexes(&w), (26..=29).collect::<Vec<_>>());
        w.append(&[rec(30, "new")]).expect("append");
        drop(w);

        let w = FileWal::open(dir.path(), small()).expect("reopen");
        assert_eq!(indexes(&w), (26..=30).collect::<Vec<_>>());
        assert_eq!(
            w.read_all().expect("read").last().map(|r| r.data.clone()),
            Some(b"new".to_vec())
        );
    }

    #[test]
    fn torn_tail_is_truncated_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut w = FileWal::open(dir.path(), FileWalOptions::default()).expect("open");
            w.append(&[rec(1, "one"), rec(2, "two")]).expect("append");
            w.append(&[rec(3, "three"), rec(4, "four")])
                .expect("append");
        }
        let seg = active_segment(dir.path());
        let end = records_end(&seg);
        // Cut the last record in half, as a crash in the middle of a write would.
        let f = OpenOptions::new().write(true).open(&seg).expect("open seg");
        f.set_len(end - 3).expect("set_len");
        drop(f);
        {
            let mut w = FileWal::open(dir.path(), FileWalOptions::default()).expect("reopen torn");
            assert_eq!(indexes(&w), vec![1, 2, 3]);
            // The log is writable again right after the repaired tail.
            w.append(&[rec(4, "four again")]).expect("append");
        }
        let w = FileWal::open(dir.path(), FileWalOptions::default()).expect("reopen");
        assert_eq!(indexes(&w), vec![1, 2, 3, 4]);
        assert_eq!(w.read_all().expect("read")[3].data, b"four again");
        drop(w);

        // The same inside the pre-zeroed space: the last record's end never reached the
        // disk (zeros), the zeros after it did.
        let end = records_end(&seg);
        let len = fs::metadata(&seg).expect("meta").len();
        assert!(len > end, "no pre-zeroed space after the records");
        let f = OpenOptions::new().write(true).open(&seg).expect("open seg");
        f.write_all_at(&[0u8; 3], end - 3).expect("zero the end");
        drop(f);
        let mut w = FileWal::open(dir.path(), FileWalOptions::default()).expect("reopen torn");
        assert_eq!(indexes(&w), vec![1, 2, 3]);
        w.append(&[rec(4, "four, third time")]).expect("append");
        drop(w);
        let w = FileWal::open(dir.path(), FileWalOptions::default()).expect("reopen");
        assert_eq!(indexes(&w), vec![1, 2, 3, 4]);
        assert_eq!(w.read_all().expect("read")[3].data, b"four, third time");
    }

    /// End of the last record of a segment (the last non-zero byte: records end in data
    /// that is not zero in these tests).
    fn records_end(seg: &Path) -> u64 {
        let buf = fs::read(seg).expect("read seg");
        buf.iter().rposition(|b| *b != 0).expect("records") as u64 + 1
    }

    #[test]
    fn the_pre_zeroed_space_is_kept_and_overwritten_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = || FileWalOptions {
            segment_size: 4 * PREZERO_CHUNK,
        };
        let seg = {
            let mut w = FileWal::open(dir.path(), opts()).expect("open");
            w.append(&[rec(1, "one"), rec(2, "two")]).expect("append");
            active_segment(dir.path())
        };
        let len = fs::metadata(&seg).expect("meta").len();
        let end = records_end(&seg);
        assert_eq!(
            len,
            end + PREZERO_CHUNK,
            "one chunk of zeros after the records"
        );
        {
            // Reopened: the zeros are no torn tail; the next batch goes right after the
            // records, into the zeros, and the file does not grow.
            let mut w = FileWal::open(dir.path(), opts()).expect("reopen");
            assert_eq!(indexes(&w), vec![1, 2]);
            w.append(&[rec(3, "three")]).expect("append");
        }
        assert_eq!(fs::metadata(&seg).expect("meta").len(), len);
        assert!(records_end(&seg) > end);
        let mut w = FileWal::open(dir.path(), opts()).expect("reopen");
        assert_eq!(indexes(&w), vec![1, 2, 3]);

        // Past the chunk, the next one is written; at the segment size the log rolls and
        // the full segment is cut to its records.
        let big = "x".repeat(PREZERO_CHUNK as usize / 2);
        for i in 4..=12 {
            w.append(&[rec(i, &big)]).expect("append");
        }
        assert!(w.segment_count() > 1);
        drop(w);
        let first = fs::metadata(&seg).expect("meta").len();
        assert_eq!(first, records_end(&seg), "a sealed segment keeps no zeros");
        let w = FileWal::open(dir.path(), opts()).expect("reopen");
        assert_eq!(indexes(&w), (1..=12).collect::<Vec<_>>());
    }

    #[test]
    fn torn_record_inside_last_batch_is_truncated() {
        // Within one unsynced batch a later page may reach the disk before an earlier one:
        // a bad record followed by a valid record of the same batch is still a torn tail.
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut w = FileWal::open(dir.path(), FileWalOptions::default()).expect("open");
            w.append(&[rec(1, "one")]).expect("append");
            w.append(&[rec(2, "two"), rec(3, "three")]).expect("append");
        }
        let seg = active_segment(dir.path());
        let mut buf = fs::read(&seg).expect("read");
        let second = SEGMENT_MAGIC.len() + RECORD_HEADER + BODY_HEADER + 3;
        buf[second + RECORD_HEADER + BODY_HEADER] ^= 0xff; // flip a byte of record 2's data
        fs::write(&seg, &buf).expect("write");
        let w = FileWal::open(dir.path(), FileWalOptions::default()).expect("reopen");
        assert_eq!(indexes(&w), vec![1]);
    }

    #[test]
    fn bad_checksum_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut w = FileWal::open(dir.path(), FileWalOptions::default()).expect("open");
            w.append(&[rec(1, "one")]).expect("append");
            w.append(&[rec(2, "two")]).expect("append");
            w.append(&[rec(3, "three")]).expect("append");
        }
        let seg = active_segment(dir.path());
        let mut buf = fs::read(&seg).expect("read");
        let first_data = SEGMENT_MAGIC.len() + RECORD_HEADER + BODY_HEADER;
        buf[first_data] ^= 0xff; // record 1's data
        fs::write(&seg, &buf).expect("write");
        match FileWal::open(dir.path(), FileWalOptions::default()) {
            Err(WalError::Corrupt(msg)) => assert!(msg.contains("offset"), "{msg}"),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn bad_record_in_a_sealed_segment_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut w = FileWal::open(dir.path(), small()).expect("open");
            for i in 1..=20 {
                w.append(&[rec(i, "0123456789012345678901234567890123456789")])
                    .expect("append");
            }
            assert!(w.segment_count() > 2);
        }
        let mut segs: Vec<PathBuf> = fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == SEGMENT_EXT))
            .collect();
        segs.sort();
        let first = &segs[0];
        let len = fs::metadata(first).expect("meta").len();
        let f = OpenOptions::new().write(true).open(first).expect("open");
        f.set_len(len - 1).expect("cut");
        drop(f);
        assert!(matches!(
            FileWal::open(dir.path(), small()),
            Err(WalError::Corrupt(_))
        ));
    }

    #[test]
    fn torn_segment_header_is_repaired() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut w = FileWal::open(dir.path(), FileWalOptions::default()).expect("open");
            w.append(&[rec(1, "one")]).expect("append");
        }
        // A crash right after creating the next segment file, before its header was written.
        fs::write(segment_path(dir.path(), 2), &SEGMENT_MAGIC[..3]).expect("write");
        let mut w = FileWal::open(dir.path(), FileWalOptions::default()).expect("reopen");
        assert_eq!(indexes(&w), vec![1]);
        w.append(&[rec(2, "two")]).expect("append");
        drop(w);
        let w = FileWal::open(dir.path(), FileWalOptions::default()).expect("reopen");
        assert_eq!(indexes(&w), vec![1, 2]);
    }

    #[test]
    fn meta_file_is_replaced_atomically_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut w = FileWal::open(dir.path(), FileWalOptions::default()).expect("open");
            w.set_meta("vote", b"term-3").expect("meta");
        }
        // A crash while writing the next version leaves only meta.tmp behind.
        fs::write(dir.path().join(META_TMP), b"half a fi").expect("write tmp");
        {
            let w = FileWal::open(dir.path(), FileWalOptions::default()).expect("reopen");
            assert_eq!(w.meta("vote"), Some(b"term-3".to_vec()));
            assert!(!dir.path().join(META_TMP).exists());
        }
        // A damaged meta file is corruption, never silently an empty vote.
        let mut buf = fs::read(dir.path().join(META_FILE)).expect("read");
        let last = buf.len() - 1;
        buf[last] ^= 1;
        fs::write(dir.path().join(META_FILE), &buf).expect("write");
        assert!(matches!(
            FileWal::open(dir.path(), FileWalOptions::default()),
            Err(WalError::Corrupt(_))
        ));
    }

    #[test]
    fn a_damaged_hint_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut w = FileWal::open(dir.path(), FileWalOptions::default()).expect("open");
            w.save_hint(b"a longer first hint").expect("hint");
            w.save_hint(b"short").expect("hint");
        }
        {
            let w = FileWal::open(dir.path(), FileWalOptions::default()).expect("reopen");
            assert_eq!(w.hint(), Some(b"short".to_vec()));
        }
        let mut buf = fs::read(dir.path().join(HINT_FILE)).expect("read");
        buf[9] ^= 1;
        fs::write(dir.path().join(HINT_FILE), &buf).expect("write");
        let w = FileWal::open(dir.path(), FileWalOptions::default()).expect("reopen");
        assert_eq!(w.hint(), None);
    }

    #[test]
    fn purge_survives_a_crash_before_segments_are_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut w = FileWal::open(dir.path(), FileWalOptions::default()).expect("open");
            w.append(&[rec(1, "a"), rec(2, "b"), rec(3, "c")])
                .expect("append");
            // Single segment: nothing is deleted, the purge lives in the meta file only.
            w.purge(2, b"p2").expect("purge");
        }
        let w = FileWal::open(dir.path(), FileWalOptions::default()).expect("reopen");
        assert_eq!(indexes(&w), vec![3]);
        assert_eq!(w.purged(), Some((2, b"p2".to_vec())));
    }
}

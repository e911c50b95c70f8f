//! Raft snapshot data: the streamed file format and openraft's `SnapshotData` type.
//!
//! A snapshot is written and read as a stream, so neither building, sending, receiving
//! nor installing one holds the state in memory:
//!
//! ```text
//! "CFSNAP02" | meta_len: u32 LE | meta (rmp-serde SnapshotMeta)
//! pair*:  1u8 | key_len: u32 LE | value_len: u32 LE | key (UTF-8) | value (ciphertext)
//! end:    0u8 | count: u64 LE | crc32: u32 LE
//! ```
//!
//! The CRC covers every byte before it (magic included). The embedded meta lets a node
//! learn its snapshot's log id on start by reading the header only; a follower keeps the
//! leader's bytes unchanged (the meta it is told is the embedded one).
//!
//! [`SnapshotData`] is what openraft streams in chunks to followers and what a follower
//! receives into: an open file (file-backed nodes) or a byte buffer (in-memory nodes).

use std::io::{self, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use coffer_storage::StorageError;
use openraft::SnapshotMeta;
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use crate::types::Node;

/// Magic bytes opening a snapshot stream.
pub const MAGIC: &[u8; 8] = b"CFSNAP02";
const TAG_END: u8 = 0;
const TAG_PAIR: u8 = 1;
/// Largest meta block, key and value accepted when reading (anything larger is garbage).
const MAX_META: usize = 16 * 1024 * 1024;
const MAX_KEY: usize = 1024 * 1024;
const MAX_VALUE: usize = 512 * 1024 * 1024;

/// Snapshot metadata of this cluster.
pub type Meta = SnapshotMeta<u64, Node>;

fn corrupt(what: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("snapshot data: {what}"))
}

fn io_error(e: io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        corrupt("truncated")
    } else {
        StorageError::Io(format!("snapshot data: {e}"))
    }
}

/// Writes a snapshot stream: header, then [`SnapshotWriter::pair`] per pair, then
/// [`SnapshotWriter::finish`].
pub struct SnapshotWriter<W: Write> {
    w: W,
    crc: crc32fast::Hasher,
    count: u64,
    bytes: u64,
}

impl<W: Write> SnapshotWriter<W> {
    /// Start a stream for a snapshot described by `meta`.
    pub fn new(w: W, meta: &Meta) -> Result<SnapshotWriter<W>, StorageError> {
        let meta = rmp_serde::to_vec_named(meta)
            .map_err(|e| StorageError::Io(format!("encoding snapshot meta: {e}")))?;
        let mut sw = SnapshotWriter {
            w,
            crc: crc32fast::Hasher::new(),
            count: 0,
            bytes: 0,
        };
        sw.put(MAGIC)?;
        sw.put(&(meta.len() as u32).to_le_bytes())?;
        sw.put(&meta)?;
        Ok(sw)
    }

    fn put(&mut self, buf: &[u8]) -> Result<(), StorageError> {
        self.crc.update(buf);
        self.bytes += buf.len() as u64;
        self.w.write_all(buf).map_err(io_error)
    }

    /// Append one key/value pair.
    pub fn pair(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let mut head = [0u8; 9];
        head[0] = TAG_PAIR;
        head[1..5].copy_from_slice(&(key.len() as u32).to_le_bytes());
        head[5..9].copy_from_slice(&(value.len() as u32).to_le_bytes());
        self.put(&head)?;
        self.put(key.as_bytes())?;
        self.put(value)?;
        self.count += 1;
        Ok(())
    }

    /// Pairs written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Write the trailer and flush; returns the inner writer and the stream's length.
    pub fn finish(mut self) -> Result<(W, u64), StorageError> {
        self.put(&[TAG_END])?;
        self.put(&self.count.to_le_bytes())?;
        let crc = self.crc.clone().finalize();
        self.w.write_all(&crc.to_le_bytes()).map_err(io_error)?;
        self.w.flush().map_err(io_error)?;
        Ok((self.w, self.bytes + 4))
    }
}

/// Reads a snapshot stream: [`SnapshotReader::open`] reads the header, iterating yields
/// the pairs, and the trailer (count and checksum) is checked when the pairs run out:
/// an iterator that ends without an error has read a complete, intact stream.
pub struct SnapshotReader<R: Read> {
    r: R,
    crc: crc32fast::Hasher,
    meta: Meta,
    count: u64,
    done: bool,
}

impl<R: Read> SnapshotReader<R> {
    /// Read the header (magic and meta).
    pub fn open(mut r: R) -> Result<SnapshotReader<R>, StorageError> {
        let mut crc = crc32fast::Hasher::new();
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic).map_err(io_error)?;
        if &magic != MAGIC {
            return Err(corrupt("bad magic"));
        }
        crc.update(&magic);
        let mut len = [0u8; 4];
        r.read_exact(&mut len).map_err(io_error)?;
        crc.update(&len);
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_META {
            return Err(corrupt("meta block too large"));
        }
        let mut meta = vec![0u8; len];
        r.read_exact(&mut meta).map_err(io_error)?;
        crc.update(&meta);
        let meta: Meta = rmp_serde::from_slice(&meta).map_err(|e| corrupt(format!("meta: {e}")))?;
        Ok(SnapshotReader {
            r,
            crc,
            meta,
            count: 0,
            done: false,
        })
    }

    /// The snapshot's metadata.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), StorageError> {
        self.r.read_exact(buf).map_err(io_error)?;
        self.crc.update(buf);
        Ok(())
    }

    /// The next pair, `None` after the (checked) trailer.
    pub fn next_pair(&mut self) -> Result<Option<(String, Vec<u8>)>, StorageError> {
        if self.done {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        self.read(&mut tag)?;
        match tag[0] {
            TAG_PAIR => {
                let mut head = [0u8; 8];
                self.read(&mut head)?;
                let mut w = [0u8; 4];
                w.copy_from_slice(&head[..4]);
                let klen = u32::from_le_bytes(w) as usize;
                w.copy_from_slice(&head[4..]);
                let vlen = u32::from_le_bytes(w) as usize;
                if klen > MAX_KEY || vlen > MAX_VALUE {
                    return Err(corrupt("record too large"));
                }
                let mut key = vec![0u8; klen];
                self.read(&mut key)?;
                let key = String::from_utf8(key).map_err(|_| corrupt("a key is not UTF-8"))?;
                let mut value = vec![0u8; vlen];
                self.read(&mut value)?;
                self.count += 1;
                Ok(Some((key, value)))
            }
            TAG_END => {
                let mut count = [0u8; 8];
                self.read(&mut count)?;
                if u64::from_le_bytes(count) != self.count {
                    return Err(corrupt("pair count mismatch"));
                }
                let mut crc = [0u8; 4];
                self.r.read_exact(&mut crc).map_err(io_error)?;
                if self.crc.clone().finalize() != u32::from_le_bytes(crc) {
                    return Err(corrupt("checksum mismatch"));
                }
                self.done = true;
                Ok(None)
            }
            _ => Err(corrupt("bad record tag")),
        }
    }
}

impl<R: Read> Iterator for SnapshotReader<R> {
    type Item = Result<(String, Vec<u8>), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_pair() {
            Ok(Some(p)) => Some(Ok(p)),
            Ok(None) => None,
            Err(e) => {
                // Stop after the first error.
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Read a whole stream, checking its structure and checksum; returns its meta and count.
pub fn verify(r: impl Read) -> Result<(Meta, u64), StorageError> {
    let mut reader = SnapshotReader::open(r)?;
    while reader.next_pair()?.is_some() {}
    Ok((reader.meta.clone(), reader.count))
}

/// Read only the header of the snapshot file at `path`.
pub fn read_meta(path: &Path) -> Result<Meta, StorageError> {
    let f = std::fs::File::open(path)
        .map_err(|e| StorageError::Io(format!("opening {}: {e}", path.display())))?;
    Ok(SnapshotReader::open(io::BufReader::new(f))?.meta)
}

enum Inner {
    File(tokio::fs::File),
    Mem(Cursor<Vec<u8>>),
}

/// openraft's snapshot data for Coffer: a snapshot stream in a file or in memory.
pub struct SnapshotData {
    inner: Inner,
    /// The file's path, when this is a file the state machine may take over (a
    /// snapshot being received); `None` for read handles and memory.
    incoming: Option<PathBuf>,
}

impl SnapshotData {
    /// A read handle on a snapshot file.
    pub fn file(file: tokio::fs::File) -> SnapshotData {
        SnapshotData {
            inner: Inner::File(file),
            incoming: None,
        }
    }

    /// A file being received into, at `path` (the state machine moves it into place).
    pub fn incoming(file: tokio::fs::File, path: PathBuf) -> SnapshotData {
        SnapshotData {
            inner: Inner::File(file),
            incoming: Some(path),
        }
    }

    /// A snapshot stream in memory (in-memory nodes).
    pub fn memory(bytes: Vec<u8>) -> SnapshotData {
        SnapshotData {
            inner: Inner::Mem(Cursor::new(bytes)),
            incoming: None,
        }
    }

    /// The path of a received file, if this is one.
    pub fn incoming_path(&self) -> Option<&Path> {
        self.incoming.as_deref()
    }

    /// The bytes, if this is an in-memory stream.
    pub fn into_memory(self) -> Result<Vec<u8>, SnapshotData> {
        match self.inner {
            Inner::Mem(c) => Ok(c.into_inner()),
            inner => Err(SnapshotData {
                inner,
                incoming: self.incoming,
            }),
        }
    }
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::File(_) => write!(f, "SnapshotData::File({:?})", self.incoming),
            Inner::Mem(c) => write!(f, "SnapshotData::Mem({} bytes)", c.get_ref().len()),
        }
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::File(f) => Pin::new(f).poll_read(cx, buf),
            Inner::Mem(c) => Pin::new(c).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::File(f) => Pin::new(f).poll_write(cx, buf),
            Inner::Mem(c) => Pin::new(c).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::File(f) => Pin::new(f).poll_flush(cx),
            Inner::Mem(c) => Pin::new(c).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::File(f) => Pin::new(f).poll_shutdown(cx),
            Inner::Mem(c) => Pin::new(c).poll_shutdown(cx),
        }
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        match &mut self.get_mut().inner {
            Inner::File(f) => Pin::new(f).start_seek(position),
            Inner::Mem(c) => Pin::new(c).start_seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match &mut self.get_mut().inner {
            Inner::File(f) => Pin::new(f).poll_complete(cx),
            Inner::Mem(c) => Pin::new(c).poll_complete(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    fn meta() -> Meta {
        Meta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 42)),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-42-0".into(),
        }
    }

    fn stream(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = SnapshotWriter::new(Vec::new(), &meta()).expect("header");
        for (k, v) in pairs {
            w.pair(k, v).expect("pair");
        }
        let (buf, len) = w.finish().expect("finish");
        assert_eq!(buf.len() as u64, len);
        buf
    }

    #[test]
    fn a_stream_round_trips() {
        let buf = stream(&[("a/b", b"\x00\xff"), ("c", b""), ("", b"x")]);
        let r = SnapshotReader::open(&buf[..]).expect("open");
        assert_eq!(r.meta(), &meta());
        let pairs: Vec<_> = r.collect::<Result<_, _>>().expect("pairs");
        assert_eq!(
            pairs,
            vec![
                ("a/b".to_string(), b"\x00\xff".to_vec()),
                ("c".to_string(), vec![]),
                (String::new(), b"x".to_vec()),
            ]
        );
        assert_eq!(verify(&buf[..]).expect("verify").1, 3);
    }

    #[test]
    fn damage_anywhere_is_refused() {
        let buf = stream(&[("key/one", b"value one"), ("key/two", b"value two")]);
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x20;
            assert!(verify(&bad[..]).is_err(), "flip at {i} went unnoticed");
        }
        for cut in 0..buf.len() {
            assert!(verify(&buf[..cut]).is_err(), "cut at {cut} went unnoticed");
        }
    }
}

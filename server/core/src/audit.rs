//! Audit devices (`sys/audit`): one JSON line per request and per response, every
//! string value replaced by `hmac-sha256:<hex>` with a per-device salt, so the log
//! never holds a secret or a token in the clear but a known value can be matched with
//! `sys/audit-hash`.
//!
//! # Cost
//!
//! Each request's entry is built once per device, serialised straight into a byte buffer
//! with strings hashed on the way (no `serde_json::Value` tree, no clone of the request
//! or response data); the `auth` and `request` parts are serialised once and reused in
//! the response line, so the request body is hashed once per device, not twice, and a
//! token's hashed forms and whole `auth` member are cached per device (keyed by the token
//! store's hash of the token), so a token seen before costs no hashing at all.
//!
//! Lines are written with group commit: the first request that queues a line yields once
//! to its runtime, so every request that becomes ready in the same scheduler tick queues
//! its line too, and then writes them all with one `write(2)` from its own thread and
//! acknowledges each with the outcome of its own line. Queues are sharded by thread
//! (threads take the `SHARDS` shards round-robin), so each actix worker gathers its own
//! requests' lines without a hand-off or a cross-thread wake-up as long as there are no
//! more threads than shards; beyond that, threads share a shard and a leader may write
//! and acknowledge another thread's lines. Writes go to the OS, no fsync.
//!
//! # Fail closed
//!
//! With at least one device enabled:
//! - a request is handled only after its request line was written by at least one
//!   device; otherwise it is refused (500) before it is handled;
//! - its answer is returned only after its response line was written by at least one
//!   device; otherwise the client gets a 500 instead of the answer. As with Vault (which
//!   answers `ErrInternalError` when `LogResponse` fails), the operation itself has then
//!   already happened: its request line is in the log, its response line is not.
//! - A failed write fails its lines at once. Every queued line has a writer: the request
//!   that leads a batch writes it when it resumes after its yield or, if it is cancelled
//!   meanwhile (client gone), from its destructor, so no request waits on a batch nobody
//!   writes. A write that blocks in the kernel (e.g. a hung network filesystem or a full
//!   pipe on `stdout`) holds the worker that issued it, as Vault's file device holds its
//!   request; with a local file that does not happen.

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::{IoSlice, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::handling::LogicalResponse;
use crate::store::LogicalStore;
use crate::{lock, CoreError};

/// Where the audit table is stored (through the barrier).
pub const AUDIT_PATH: &str = "core/audit";

/// Queue shards per device (threads pick theirs round-robin).
const SHARDS: usize = 8;

/// `hmac-sha256:` plus 64 hex digits.
const HASHED_LEN: usize = 12 + 64;

/// One row of the audit table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Path with trailing `/`.
    pub path: String,
    /// Device type (`file`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Options (`file_path`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Vault's `local` flag (reported only).
    #[serde(default)]
    pub local: bool,
    /// Base64 HMAC salt of this device.
    pub salt: String,
}

/// What a line's writer reports back.
type Ack = Result<(), String>;

/// A line waiting to be written.
struct Pending {
    line: Vec<u8>,
    done: oneshot::Sender<Ack>,
}

/// One shard of a device's queue.
#[derive(Default)]
struct Shard {
    lines: Vec<Pending>,
    /// A request has taken on writing this shard's queue.
    leader: bool,
}

/// This thread's shard.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// The group-commit writer of one device (see the module docs).
struct GroupWriter {
    /// The sink; held for the duration of one batch, so batches from different shards
    /// never interleave.
    out: Mutex<Box<dyn Write + Send>>,
    shards: [Mutex<Shard>; SHARDS],
}

/// Writes the shard's queue when the request that leads it is done waiting or dropped.
struct FlushOnDrop<'a>(&'a GroupWriter, &'a Mutex<Shard>);

impl Drop for FlushOnDrop<'_> {
    fn drop(&mut self) {
        self.0.flush(self.1);
    }
}

impl GroupWriter {
    fn new(out: Box<dyn Write + Send>) -> GroupWriter {
        GroupWriter {
            out: Mutex::new(out),
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
        }
    }

    /// Write one line (group commit) and return the outcome of that line.
    async fn write(&self, line: Vec<u8>) -> Ack {
        let shard = &self.shards[shard_index()];
        let (done, rx) = oneshot::channel();
        let lead = {
            let mut s = lock(shard);
            s.lines.push(Pending { line, done });
            !std::mem::replace(&mut s.leader, true)
        };
        if lead {
            let _flush = FlushOnDrop(self, shard);
            // Let every request that is ready in this tick queue its line first.
            tokio::task::yield_now().await;
        }
        // The leader of this shard's batch (maybe this request) always writes it.
        rx.await
            .unwrap_or_else(|_| Err("the audit line was dropped unwritten".into()))
    }

    /// Write everything queued in `shard` (also what arrives meanwhile), then give up
    /// the lead.
    fn flush(&self, shard: &Mutex<Shard>) {
        loop {
            let batch = {
                let mut s = lock(shard);
                if s.lines.is_empty() {
                    s.leader = false;
                    return;
                }
                std::mem::take(&mut s.lines)
            };
            let total = batch.iter().map(|p| p.line.len()).sum();
            let (written, error) = {
                let mut out = lock(&self.out);
                let mut slices: Vec<IoSlice<'_>> =
                    batch.iter().map(|p| IoSlice::new(&p.line)).collect();
                write_all_counted(out.as_mut(), &mut slices, total)
            };
            // Each line's outcome: written if the writes reached its end.
            let mut end = 0;
            for p in batch {
                end += p.line.len();
                let ack = match &error {
                    Some(e) if end > written => Err(e.clone()),
                    _ => Ok(()),
                };
                let _ = p.done.send(ack);
            }
        }
    }
}

/// Write all of `slices` (`total` bytes; one `writev` unless the kernel takes less); on
/// failure, how much was written and the error.
fn write_all_counted(
    out: &mut dyn Write,
    mut slices: &mut [IoSlice<'_>],
    total: usize,
) -> (usize, Option<String>) {
    let mut written = 0;
    while written < total {
        match out.write_vectored(slices) {
            Ok(0) => return (written, Some("the audit sink accepts no more data".into())),
            Ok(n) => {
                written += n;
                IoSlice::advance_slices(&mut slices, n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Some(e.to_string())),
        }
    }
    if let Err(e) = out.flush() {
        // Buffered somewhere and not delivered: none of it counts as written.
        return (0, Some(e.to_string()));
    }
    (written, None)
}

enum Sink {
    Writer(Box<GroupWriter>),
    Discard,
}

/// An enabled device.
pub struct Device {
    entry: AuditEntry,
    key: hmac::Key,
    sink: Sink,
    /// Hashed client token and accessor (and the `auth` member) of recently seen
    /// tokens, keyed by the token store's own salted hash of the token (no token in the
    /// clear is kept here).
    token_hashes: RwLock<HashMap<String, Arc<TokenHashes>>>,
}

/// A token's `hmac-sha256:` forms under one device's salt, and its lines' `auth`
/// member built from them.
struct TokenHashes {
    token: String,
    accessor: String,
    auth: Vec<u8>,
}

/// Tokens whose hashed forms a device remembers.
const TOKEN_HASHES_CACHED: usize = 4096;

impl Device {
    fn open(entry: AuditEntry) -> Result<Device, CoreError> {
        if entry.kind != "file" {
            return Err(CoreError::BadRequest(format!(
                "unknown audit backend type: {}",
                entry.kind
            )));
        }
        let path = entry
            .options
            .get("file_path")
            .or_else(|| entry.options.get("path"))
            .cloned()
            .ok_or_else(|| CoreError::BadRequest("file_path is required".into()))?;
        let out: Option<Box<dyn Write + Send>> = match path.as_str() {
            "stdout" => Some(Box::new(std::io::stdout())),
            "discard" => None,
            p => Some(Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| CoreError::BadRequest(format!("audit file {p}: {e}")))?,
            )),
        };
        let sink = match out {
            Some(out) => Sink::Writer(Box::new(GroupWriter::new(out))),
            None => Sink::Discard,
        };
        let salt = base64::engine::general_purpose::STANDARD
            .decode(&entry.salt)
            .map_err(|_| CoreError::Internal("audit salt does not decode".into()))?;
        Ok(Device {
            key: hmac::Key::new(hmac::HMAC_SHA256, &salt),
            entry,
            sink,
            token_hashes: RwLock::new(HashMap::new()),
        })
    }

    /// `hmac-sha256:<hex>` of a value under this device's salt.
    pub fn hash(&self, value: &str) -> String {
        let mut out = [0u8; HASHED_LEN];
        self.hash_into(value, &mut out).to_string()
    }

    /// `value` hashed, or `""` for an empty value.
    fn hash_nonempty(&self, value: &str) -> String {
        if value.is_empty() {
            String::new()
        } else {
            self.hash(value)
        }
    }

    /// The hashed token and accessor of a request (cached by the token's store hash:
    /// the same token always hashes the same way under this device's salt).
    fn token_hashes(&self, rec: &AuditRecord<'_>) -> Arc<TokenHashes> {
        let key = rec.token_hash;
        if !key.is_empty() {
            if let Some(found) = self
                .token_hashes
                .read()
                .ok()
                .and_then(|m| m.get(key).cloned())
            {
                return found;
            }
        }
        let token = self.hash_nonempty(rec.client_token);
        let accessor = self.hash_nonempty(rec.accessor);
        let hashes = Arc::new(TokenHashes {
            auth: auth_member(&token, &accessor, rec),
            token,
            accessor,
        });
        if !key.is_empty() {
            if let Ok(mut map) = self.token_hashes.write() {
                if map.len() >= TOKEN_HASHES_CACHED {
                    map.clear();
                }
                map.insert(key.to_string(), hashes.clone());
            }
        }
        hashes
    }

    /// [`Device::hash`] into a stack buffer.
    fn hash_into<'b>(&self, value: &str, out: &'b mut [u8; HASHED_LEN]) -> &'b str {
        out[..12].copy_from_slice(b"hmac-sha256:");
        let tag = hmac::sign(&self.key, value.as_bytes());
        // 32 bytes into 64 hex digits: the lengths always match.
        let _ = hex::encode_to_slice(tag.as_ref(), &mut out[12..]);
        std::str::from_utf8(&out[..]).unwrap_or_default()
    }

    /// Write a line (for `discard`, accept it at once).
    async fn write(&self, line: Vec<u8>) -> Ack {
        match &self.sink {
            Sink::Writer(w) => w.write(line).await,
            Sink::Discard => Ok(()),
        }
    }
}

/// Append `value` as a JSON string: copied as is when nothing in it needs escaping (the
/// common case), else through serde_json's escaper.
fn push_json_str(out: &mut Vec<u8>, value: &str) {
    if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// Append `"hmac-sha256:<hex>"` of `value` (hex needs no escaping).
fn push_hashed_str(out: &mut Vec<u8>, device: &Device, value: &str) {
    let mut buf = [0u8; HASHED_LEN];
    out.push(b'"');
    out.extend_from_slice(device.hash_into(value, &mut buf).as_bytes());
    out.push(b'"');
}

/// Append a JSON value with every string (at any depth) hashed; keys, numbers,
/// booleans and nulls as they are.
fn push_hashed(out: &mut Vec<u8>, device: &Device, value: &Value) {
    match value {
        Value::String(v) => push_hashed_str(out, device, v),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_hashed(out, device, item);
            }
            out.push(b']');
        }
        Value::Object(map) => push_hashed_map(out, device, map),
        // Null, booleans and numbers: writing into a Vec cannot fail.
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// [`push_hashed`] of an object.
fn push_hashed_map(out: &mut Vec<u8>, device: &Device, map: &Map<String, Value>) {
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, k);
        out.push(b':');
        push_hashed(out, device, v);
    }
    out.push(b'}');
}

/// Append the `response` object of a response line: what the client got, hashed.
fn push_hashed_response(out: &mut Vec<u8>, device: &Device, r: &LogicalResponse) {
    out.push(b'{');
    let mut first = true;
    let mut key = |out: &mut Vec<u8>, name: &[u8]| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        out.extend_from_slice(name);
    };
    if let Some(auth) = &r.auth {
        key(out, b"\"auth\":");
        push_hashed(out, device, auth);
    }
    if let Some(data) = &r.data {
        key(out, b"\"data\":");
        push_hashed_map(out, device, data);
    }
    if !r.warnings.is_empty() {
        key(out, b"\"warnings\":[");
        for (i, w) in r.warnings.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_hashed_str(out, device, w);
        }
        out.push(b']');
    }
    if let Some(wrap) = &r.wrap_info {
        key(out, b"\"wrap_info\":");
        push_hashed(out, device, wrap);
    }
    out.push(b'}');
}

/// What the pipeline knows about a request, for the audit log (plaintext; hashed here).
pub struct AuditRecord<'a> {
    /// Request id.
    pub id: &'a str,
    /// Operation name.
    pub operation: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Client token (hashed before writing).
    pub client_token: &'a str,
    /// The token store's salted hash of the client token (`""` without one): the key
    /// under which a device remembers the token's hashed forms.
    pub token_hash: &'a str,
    /// Token accessor (hashed).
    pub accessor: &'a str,
    /// Token display name (not secret).
    pub display_name: &'a str,
    /// Token policies (not secret).
    pub policies: &'a [String],
    /// Request body.
    pub data: &'a Map<String, Value>,
    /// Client address.
    pub remote_address: &'a str,
    /// Mount type serving the request.
    pub mount_type: &'a str,
}

/// Append a request's `"auth":{..},"request":{..}` members for one device (shared by
/// its request and response lines).
fn push_section(out: &mut Vec<u8>, device: &Device, rec: &AuditRecord<'_>) {
    let hashes = device.token_hashes(rec);
    out.extend_from_slice(&hashes.auth);
    out.extend_from_slice(b",\"request\":{\"client_token\":");
    push_json_str(out, &hashes.token);
    out.extend_from_slice(b",\"client_token_accessor\":");
    push_json_str(out, &hashes.accessor);
    out.extend_from_slice(b",\"data\":");
    if rec.data.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        push_hashed_map(out, device, rec.data);
    }
    out.extend_from_slice(b",\"id\":");
    push_json_str(out, rec.id);
    out.extend_from_slice(b",\"mount_type\":");
    push_json_str(out, rec.mount_type);
    out.extend_from_slice(b",\"namespace\":{\"id\":\"root\"},\"operation\":");
    push_json_str(out, rec.operation);
    out.extend_from_slice(b",\"path\":");
    push_json_str(out, rec.path);
    out.extend_from_slice(b",\"remote_address\":");
    push_json_str(out, rec.remote_address);
    out.push(b'}');
}

/// The `"auth":{..}` member of a token's lines (the token and accessor already hashed;
/// display name and policies never change for a token).
fn auth_member(token: &str, accessor: &str, rec: &AuditRecord<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"\"auth\":{\"accessor\":");
    push_json_str(&mut out, accessor);
    out.extend_from_slice(b",\"client_token\":");
    push_json_str(&mut out, token);
    out.extend_from_slice(b",\"display_name\":");
    push_json_str(&mut out, rec.display_name);
    for name in [&b",\"policies\":"[..], b",\"token_policies\":"] {
        out.extend_from_slice(name);
        out.push(b'[');
        for (i, p) in rec.policies.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_str(&mut out, p);
        }
        out.push(b']');
    }
    out.push(b'}');
    out
}

/// Append the current UTC time as RFC 3339 with nanoseconds (`2024-05-01T12:00:00.123456789Z`,
/// what Vault writes), without going through a formatter.
fn push_now(out: &mut Vec<u8>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    push_time(out, now.as_secs(), now.subsec_nanos());
}

/// [`push_now`] for a given time since the epoch.
fn push_time(out: &mut Vec<u8>, secs: u64, nanos: u32) {
    // Days to a civil date (Howard Hinnant's `civil_from_days`, for days >= 0).
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    // `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`: fixed positions.
    let mut text = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, width: usize, value: u64| {
        let mut v = value;
        for i in (at..at + width).rev() {
            text[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    put(20, 9, u64::from(nanos));
    out.extend_from_slice(&text);
}

/// Start a line in `out`: `{"time":"...","type":"<kind>",` followed by the shared
/// section.
fn push_line_start(out: &mut Vec<u8>, kind: &str, section: &[u8]) {
    out.extend_from_slice(b"{\"time\":\"");
    push_now(out);
    out.extend_from_slice(b"\",\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(section);
}

/// One request's audit state: the devices it was logged to and, per device, the
/// serialised `"auth":{..},"request":{..}` members its response line reuses.
pub struct AuditedRequest {
    sections: Vec<(Arc<Device>, Vec<u8>)>,
}

/// The set of enabled devices.
#[derive(Default)]
pub struct AuditBroker {
    devices: RwLock<Arc<Vec<Arc<Device>>>>,
}

impl AuditBroker {
    /// Open every device in the stored table.
    pub fn load(store: &LogicalStore) -> Result<AuditBroker, CoreError> {
        let broker = AuditBroker::default();
        broker.reload(store)?;
        Ok(broker)
    }

    /// Re-read the table (after a replicated change). A device whose row did not change
    /// is kept as it is (its writer, its cache of hashed tokens); a new or changed row is
    /// opened. A device that fails to open is logged and skipped; the others keep working.
    pub fn reload(&self, store: &LogicalStore) -> Result<(), CoreError> {
        let rows: Vec<AuditEntry> = store.get_json(AUDIT_PATH)?.unwrap_or_default();
        let current = self.snapshot();
        let mut devices = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(same) = current.iter().find(|d| d.entry == row) {
                devices.push(same.clone());
                continue;
            }
            let path = row.path.clone();
            match Device::open(row) {
                Ok(d) => devices.push(Arc::new(d)),
                Err(e) => {
                    tracing::error!(device = %path, error = %e, "audit device could not be opened")
                }
            }
        }
        *self
            .devices
            .write()
            .map_err(|_| CoreError::Internal("audit lock poisoned".into()))? = Arc::new(devices);
        Ok(())
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Device>>> {
        self.devices.read().map(|d| d.clone()).unwrap_or_default()
    }

    /// The device at `path`, if enabled.
    pub fn device(&self, path: &str) -> Option<Arc<Device>> {
        self.snapshot()
            .iter()
            .find(|d| d.entry.path == path)
            .cloned()
    }

    /// `GET sys/audit` rows.
    pub fn table(&self) -> Vec<AuditEntry> {
        self.snapshot().iter().map(|d| d.entry.clone()).collect()
    }

    /// Log a request before it is handled: `Ok(None)` when no device is enabled,
    /// `Ok(Some(_))` (to pass to [`AuditBroker::log_response`]) once at least one device
    /// wrote the line, an error (refuse the request) when none did.
    pub async fn log_request(
        &self,
        rec: &AuditRecord<'_>,
    ) -> Result<Option<AuditedRequest>, CoreError> {
        let devices = self.snapshot();
        if devices.is_empty() {
            return Ok(None);
        }
        let mut sections = Vec::with_capacity(devices.len());
        let mut lines = Vec::with_capacity(devices.len());
        for device in devices.iter() {
            let mut section = Vec::with_capacity(512);
            push_section(&mut section, device, rec);
            let mut line = Vec::with_capacity(section.len() + 64);
            push_line_start(&mut line, "request", &section);
            line.extend_from_slice(b"}\n");
            lines.push((device.clone(), line));
            sections.push((device.clone(), section));
        }
        fan_out(lines, "request").await?;
        Ok(Some(AuditedRequest { sections }))
    }

    /// Log the answer (or the error) of a request to every device enabled now (a device
    /// enabled by this very request gets its response line too, as in Vault); an error
    /// when no device wrote the line. The `auth`/`request` members serialised for the
    /// request line are reused for the devices that wrote it.
    pub async fn log_response(
        &self,
        rec: &AuditRecord<'_>,
        audited: Option<&AuditedRequest>,
        result: &Result<LogicalResponse, CoreError>,
    ) -> Result<(), CoreError> {
        let devices = self.snapshot();
        if devices.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::with_capacity(devices.len());
        for device in devices.iter() {
            let known = audited.and_then(|a| {
                a.sections
                    .iter()
                    .find(|(d, _)| Arc::ptr_eq(d, device))
                    .map(|(_, section)| section.as_slice())
            });
            let fresh;
            let section = match known {
                Some(section) => section,
                None => {
                    let mut s = Vec::with_capacity(512);
                    push_section(&mut s, device, rec);
                    fresh = s;
                    fresh.as_slice()
                }
            };
            let mut line = Vec::with_capacity(section.len() + 1024);
            push_line_start(&mut line, "response", section);
            line.extend_from_slice(b",\"response\":");
            match result {
                Ok(r) => push_hashed_response(&mut line, device, r),
                Err(e) => {
                    line.extend_from_slice(b"null,\"error\":");
                    push_json_str(&mut line, &e.to_string());
                }
            }
            line.extend_from_slice(b"}\n");
            lines.push((device.clone(), line));
        }
        fan_out(lines, "response").await
    }
}

/// Write each line to its device; fine if at least one wrote.
async fn fan_out(lines: Vec<(Arc<Device>, Vec<u8>)>, what: &str) -> Result<(), CoreError> {
    let mut written = 0;
    let outcomes = futures::future::join_all(lines.into_iter().map(|(device, line)| async move {
        let ack = device.write(line).await;
        (device, ack)
    }))
    .await;
    for (device, ack) in outcomes {
        match ack {
            Ok(()) => written += 1,
            Err(e) => {
                tracing::error!(device = %device.entry.path, error = %e, "audit write failed")
            }
        }
    }
    if written == 0 {
        return Err(CoreError::Internal(format!(
            "audit: no audit device could log the {what}; refusing to proceed"
        )));
    }
    Ok(())
}

/// Enable a device: validate by opening it, then store the table.
pub async fn enable(
    store: &LogicalStore,
    broker: &AuditBroker,
    path: &str,
    kind: &str,
    description: &str,
    options: BTreeMap<String, String>,
) -> Result<u64, CoreError> {
    let mut rows: Vec<AuditEntry> = store.get_json(AUDIT_PATH)?.unwrap_or_default();
    if rows.iter().any(|r| r.path == path) {
        return Err(CoreError::BadRequest(format!(
            "path already in use: {path}"
        )));
    }
    let entry = AuditEntry {
        path: path.to_string(),
        kind: kind.to_string(),
        description: description.to_string(),
        options,
        local: false,
        salt: base64::engine::general_purpose::STANDARD.encode(crate::random_bytes(32)),
    };
    Device::open(entry.clone())?;
    rows.push(entry);
    let index = store.put_json(AUDIT_PATH, &rows).await?;
    broker.reload(store)?;
    Ok(index)
}

/// Disable a device.
pub async fn disable(
    store: &LogicalStore,
    broker: &AuditBroker,
    path: &str,
) -> Result<u64, CoreError> {
    let mut rows: Vec<AuditEntry> = store.get_json(AUDIT_PATH)?.unwrap_or_default();
    rows.retain(|r| r.path != path);
    let index = store.put_json(AUDIT_PATH, &rows).await?;
    broker.reload(store)?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::future::Future;

    fn device(path: &str) -> Device {
        Device::open(AuditEntry {
            path: "file/".into(),
            kind: "file".into(),
            description: String::new(),
            options: [("file_path".to_string(), path.to_string())].into(),
            local: false,
            salt: base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        })
        .unwrap()
    }

    fn broker(devices: Vec<Device>) -> AuditBroker {
        let broker = AuditBroker::default();
        *broker.devices.write().unwrap() = Arc::new(devices.into_iter().map(Arc::new).collect());
        broker
    }

    fn record<'a>(data: &'a Map<String, Value>, policies: &'a [String]) -> AuditRecord<'a> {
        AuditRecord {
            id: "req-1",
            operation: "update",
            path: "secret/data/x",
            client_token: "hvs.secret-token",
            token_hash: "store-hash-of-the-token",
            accessor: "accessor-1",
            display_name: "token",
            policies,
            data,
            remote_address: "127.0.0.1",
            mount_type: "kv",
        }
    }

    #[test]
    fn times_print_as_rfc3339_with_nanoseconds() {
        use chrono::TimeZone;
        for (secs, nanos) in [
            (0u64, 0u32),
            (951_782_400, 1),             // 2000-02-29
            (1_709_164_800, 999_999_999), // 2024-02-29
            (4_102_444_799, 123_456_789), // 2099-12-31T23:59:59
            (1_234_567_890, 500),
        ] {
            let mut out = Vec::new();
            push_time(&mut out, secs, nanos);
            let want = chrono::Utc
                .timestamp_opt(secs as i64, nanos)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn hashes_every_string_and_keeps_keys() {
        let d = device("discard");
        let v = json!({"password": "hunter2", "n": 3, "list": ["a", true], "deep": {"k": "v"}});
        let mut direct = Vec::new();
        push_hashed(&mut direct, &d, &v);
        let out: Value = serde_json::from_slice(&direct).unwrap();
        let mut escaped = Vec::new();
        push_json_str(&mut escaped, "a\"b\\c\nd\u{1}é");
        assert_eq!(
            serde_json::from_slice::<String>(&escaped).unwrap(),
            "a\"b\\c\nd\u{1}é"
        );
        assert_eq!(out["password"], d.hash("hunter2"));
        assert_eq!(out["n"], 3);
        assert_eq!(out["list"][0], d.hash("a"));
        assert_eq!(out["list"][1], true);
        assert_eq!(out["deep"]["k"], d.hash("v"));
        assert!(d.hash("x").starts_with("hmac-sha256:"));
        assert_eq!(d.hash("x").len(), HASHED_LEN);
        assert_ne!(d.hash("x"), d.hash("y"));
        // The same value under another salt hashes differently.
        let other = Device::open(AuditEntry {
            salt: base64::engine::general_purpose::STANDARD.encode([8u8; 32]),
            ..d.entry.clone()
        })
        .unwrap();
        assert_ne!(d.hash("x"), other.hash("x"));
    }

    #[tokio::test]
    async fn request_and_response_lines_hash_everything_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.log");
        let broker = broker(vec![device(file.to_str().unwrap())]);
        let mut data = Map::new();
        data.insert("password".into(), json!("hunter2"));
        let policies = vec!["default".to_string()];
        let rec = record(&data, &policies);
        let audited = broker.log_request(&rec).await.unwrap().unwrap();
        let mut answer = Map::new();
        answer.insert("value".into(), json!("s3cret"));
        let resp = Ok(LogicalResponse {
            data: Some(answer),
            warnings: vec!["careful".into()],
            ..Default::default()
        });
        broker
            .log_response(&rec, Some(&audited), &resp)
            .await
            .unwrap();
        broker
            .log_response(&rec, Some(&audited), &Err(CoreError::PermissionDenied))
            .await
            .unwrap();

        let text = std::fs::read_to_string(&file).unwrap();
        for secret in ["hunter2", "s3cret", "hvs.secret-token", "accessor-1"] {
            assert!(!text.contains(secret), "{secret} in clear: {text}");
        }
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        let d = &broker.snapshot()[0];
        let (req, ok, err) = (&lines[0], &lines[1], &lines[2]);
        assert_eq!(req["type"], "request");
        assert!(req["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(req["auth"]["client_token"], d.hash("hvs.secret-token"));
        assert_eq!(req["auth"]["accessor"], d.hash("accessor-1"));
        assert_eq!(req["auth"]["policies"], json!(["default"]));
        assert_eq!(req["auth"]["display_name"], "token");
        assert_eq!(req["request"]["client_token"], d.hash("hvs.secret-token"));
        assert_eq!(
            req["request"]["client_token_accessor"],
            d.hash("accessor-1")
        );
        assert_eq!(req["request"]["data"]["password"], d.hash("hunter2"));
        assert_eq!(req["request"]["path"], "secret/data/x");
        assert_eq!(req["request"]["operation"], "update");
        assert_eq!(req["request"]["id"], "req-1");
        assert_eq!(req["request"]["namespace"]["id"], "root");
        assert_eq!(req.get("response"), None);
        assert_eq!(ok["type"], "response");
        assert_eq!(ok["request"], req["request"]);
        assert_eq!(ok["auth"], req["auth"]);
        assert_eq!(ok["response"]["data"]["value"], d.hash("s3cret"));
        assert_eq!(ok["response"]["warnings"], json!([d.hash("careful")]));
        assert_eq!(ok.get("error"), None);
        assert_eq!(err["response"], Value::Null);
        assert_eq!(err["error"], "permission denied");
    }

    #[tokio::test]
    async fn failing_device_fails_closed() {
        let data = Map::new();
        let rec = record(&data, &[]);
        let full = broker(vec![device("/dev/full")]);
        let err = full.log_request(&rec).await.err().expect("refused");
        assert!(err.to_string().contains("audit"), "{err}");
        // One good device is enough.
        let mixed = broker(vec![device("/dev/full"), device("discard")]);
        let audited = mixed.log_request(&rec).await.unwrap().unwrap();
        mixed
            .log_response(&rec, Some(&audited), &Ok(LogicalResponse::default()))
            .await
            .unwrap();
        // A response line that no device writes is an error too (here a device enabled
        // after the request line: it gets the response line all the same).
        assert!(full
            .log_response(&rec, None, &Ok(LogicalResponse::default()))
            .await
            .is_err());
        // No device: nothing to do.
        assert!(broker(vec![]).log_request(&rec).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_cancelled_batch_leader_still_writes_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.log");
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .unwrap();
        let writer = GroupWriter::new(Box::new(out));
        let mut first = Box::pin(writer.write(b"first\n".to_vec()));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        // It leads the batch and yields once; then its request goes away.
        assert!(first.as_mut().poll(&mut cx).is_pending());
        let mut second = Box::pin(writer.write(b"second\n".to_vec()));
        assert!(second.as_mut().poll(&mut cx).is_pending());
        drop(first);
        // The batch (both lines) was written when the leader was dropped.
        assert_eq!(second.await, Ok(()));
        assert_eq!(writer.write(b"third\n".to_vec()).await, Ok(()));
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "first\nsecond\nthird\n"
        );
    }

    #[tokio::test]
    async fn concurrent_requests_are_written_as_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.log");
        let broker = Arc::new(broker(vec![device(file.to_str().unwrap())]));
        let mut tasks = Vec::new();
        for i in 0..64 {
            let broker = broker.clone();
            tasks.push(tokio::spawn(async move {
                let mut data = Map::new();
                data.insert("i".into(), json!(i));
                let rec = record(&data, &[]);
                let audited = broker.log_request(&rec).await.unwrap().unwrap();
                broker
                    .log_response(&rec, Some(&audited), &Ok(LogicalResponse::default()))
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 128);
        for i in 0..64 {
            let of_i = |kind: &str| {
                lines
                    .iter()
                    .filter(|l| l["type"] == kind && l["request"]["data"]["i"] == i)
                    .count()
            };
            assert_eq!((of_i("request"), of_i("response")), (1, 1), "request {i}");
        }
    }
}

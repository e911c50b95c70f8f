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
//! token's hashed forms and whole `auth` member are cached per thread and device (keyed by
//! the token store's hash of the token), so a token seen before costs no hashing and no
//! shared lock. A response reuses its request's set of devices unless the table changed.
//!
//! Each line is written with one `write(2)` to the device's file, from the request's
//! own thread, under the device's lock (so lines never interleave), as Vault's file
//! device does: no queue, no hand-off to another thread, no task wake-up, and no fsync
//! (the OS writes the page cache back). Measured against a group-commit writer (lines of
//! one scheduler tick gathered and written with one `writev`, each waiting request woken
//! when its batch was written) this costs less CPU per request: an append of one line to
//! a local file takes about a microsecond, less than suspending and resuming a request.
//!
//! # Fail closed
//!
//! With at least one device enabled:
//! - a request is handled only after its request line was written by at least one
//!   device; otherwise it is refused (500) before it is handled. Reads and lists, which
//!   change nothing, are the exception: their request line is built when they arrive
//!   (with that time) and written with their response line in one write, so they fail
//!   (500, no answer) when neither line can be written, and a read cancelled before its
//!   answer still writes its request line;
//! - its answer is returned only after its response line was written by at least one
//!   device; otherwise the client gets a 500 instead of the answer. As with Vault (which
//!   answers `ErrInternalError` when `LogResponse` fails), the operation itself has then
//!   already happened: its request line is in the log, its response line is not.
//! - A failed write fails its line at once. A write that blocks in the kernel (e.g. a
//!   hung network filesystem or a full pipe on `stdout`) holds the worker that issued it,
//!   as Vault's file device holds its request; with a local file that does not happen.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, TryLockError};

use base64::Engine;
use coffer_sdk::Operation;
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::handling::LogicalResponse;
use crate::store::LogicalStore;
use crate::{lock, CoreError};

/// Where the audit table is stored (through the barrier).
pub const AUDIT_PATH: &str = "core/audit";

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

/// `try_lock` attempts before blocking on a held device lock.
const SPINS: usize = 1000;

/// Lock `m`, spinning for a while first: the holder writes one line, which takes about
/// a microsecond, far less than a thread put to sleep and woken again costs.
fn lock_spinning<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    for _ in 0..SPINS {
        match m.try_lock() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
    lock(m)
}

/// The sink of one device: each line is written whole with one `write(2)` (more only if
/// the kernel takes less) while the lock is held, so lines from concurrent requests never
/// interleave. Writes go to the OS, no fsync.
struct LineWriter {
    out: Mutex<Box<dyn Write + Send>>,
}

impl LineWriter {
    /// Write one line; the error if it could not be written whole.
    fn write(&self, line: &[u8]) -> Ack {
        let mut out = lock_spinning(&self.out);
        let mut rest = line;
        while !rest.is_empty() {
            match out.write(rest) {
                Ok(0) => return Err("the audit sink accepts no more data".into()),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        // Buffered somewhere (stdout) and not delivered: the line does not count.
        out.flush().map_err(|e| e.to_string())
    }
}

enum Sink {
    Writer(LineWriter),
    Discard,
}

/// An enabled device.
pub struct Device {
    entry: AuditEntry,
    key: hmac::Key,
    sink: Sink,
    /// Process-unique id: the key of this device's entries in each thread's cache of
    /// hashed tokens ([`TOKEN_HASHES`]).
    id: u64,
    /// `hmac-sha256:<hex>` of the empty string (empty values, such as a KV version's
    /// `deletion_time`, are in most lines; the empty string is no secret).
    empty_hash: [u8; HASHED_LEN],
}

/// A token's `hmac-sha256:` forms under one device's salt, and its lines' `auth`
/// member built from them.
struct TokenHashes {
    token: String,
    accessor: String,
    auth: Vec<u8>,
}

/// Tokens whose hashed forms each thread remembers per device.
const TOKEN_HASHES_CACHED: usize = 1024;

/// Devices whose hashed tokens each thread remembers (more: the cache starts over).
const TOKEN_HASH_DEVICES: usize = 8;

/// Source of [`Device::id`].
static NEXT_DEVICE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Per thread, per device id: the hashed client token and accessor (and the `auth`
    /// member) of recently seen tokens, keyed by the token store's own salted hash of the
    /// token (no token in the clear is kept here). Per thread, so a request reads it
    /// without touching a lock or a reference count that the other workers write too.
    static TOKEN_HASHES: RefCell<HashMap<u64, HashMap<String, TokenHashes>>> =
        RefCell::new(HashMap::new());
}

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
            Some(out) => Sink::Writer(LineWriter {
                out: Mutex::new(out),
            }),
            None => Sink::Discard,
        };
        let salt = base64::engine::general_purpose::STANDARD
            .decode(&entry.salt)
            .map_err(|_| CoreError::Internal("audit salt does not decode".into()))?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &salt);
        let mut empty_hash = [0u8; HASHED_LEN];
        hash_with(&key, "", &mut empty_hash);
        Ok(Device {
            key,
            entry,
            sink,
            id: NEXT_DEVICE_ID.fetch_add(1, Ordering::Relaxed),
            empty_hash,
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

    /// Call `f` with the request's hashed token and accessor and its `auth` member,
    /// from this thread's cache when the token was seen before (keyed by the token's
    /// store hash: the same token always hashes the same way under this device's salt).
    fn with_token_hashes(&self, rec: &AuditRecord<'_>, f: impl FnOnce(&TokenHashes)) {
        let key = rec.token_hash;
        let build = || {
            let token = self.hash_nonempty(rec.client_token);
            let accessor = self.hash_nonempty(rec.accessor);
            TokenHashes {
                auth: auth_member(&token, &accessor, rec),
                token,
                accessor,
            }
        };
        if key.is_empty() {
            return f(&build());
        }
        TOKEN_HASHES.with(|cache| {
            let mut cache = cache.borrow_mut();
            if !cache.contains_key(&self.id) && cache.len() >= TOKEN_HASH_DEVICES {
                cache.clear();
            }
            let mine = cache.entry(self.id).or_default();
            if let Some(found) = mine.get(key) {
                return f(found);
            }
            if mine.len() >= TOKEN_HASHES_CACHED {
                mine.clear();
            }
            f(mine.entry(key.to_string()).or_insert_with(build));
        })
    }

    /// [`Device::hash`] into a stack buffer.
    fn hash_into<'b>(&self, value: &str, out: &'b mut [u8; HASHED_LEN]) -> &'b str {
        if value.is_empty() {
            *out = self.empty_hash;
        } else {
            hash_with(&self.key, value, out);
        }
        std::str::from_utf8(&out[..]).unwrap_or_default()
    }

    /// Write a line (for `discard`, accept it at once).
    fn write(&self, line: &[u8]) -> Ack {
        match &self.sink {
            Sink::Writer(w) => w.write(line),
            Sink::Discard => Ok(()),
        }
    }
}

/// Write `hmac-sha256:<hex>` of `value` under `key` into `out`.
fn hash_with(key: &hmac::Key, value: &str, out: &mut [u8; HASHED_LEN]) {
    out[..12].copy_from_slice(b"hmac-sha256:");
    let tag = hmac::sign(key, value.as_bytes());
    // 32 bytes into 64 hex digits: the lengths always match.
    let _ = hex::encode_to_slice(tag.as_ref(), &mut out[12..]);
}

/// Append `value` as a JSON string: copied as is when nothing in it needs escaping (the
/// common case), else through serde_json's escaper.
fn push_json_str(out: &mut Vec<u8>, value: &str) {
    // Without early exit, so the check is vectorised (the common answer is "no").
    let needs_escape = value.bytes().fold(false, |any, b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
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
    pub operation: Operation,
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
    device.with_token_hashes(rec, |hashes| {
        out.extend_from_slice(&hashes.auth);
        out.extend_from_slice(b",\"request\":{\"client_token\":");
        push_json_str(out, &hashes.token);
        out.extend_from_slice(b",\"client_token_accessor\":");
        push_json_str(out, &hashes.accessor);
    });
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
    push_json_str(out, rec.operation.as_str());
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
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    match coffer_sdk::time::rfc3339_nanos(secs, nanos) {
        Some(text) => out.extend_from_slice(&text),
        // After the year 9999: chrono's formatter.
        None => out.extend_from_slice(
            chrono::DateTime::from_timestamp(secs, nanos)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                .as_bytes(),
        ),
    }
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

/// One request's audit state, per device it was logged to: the serialised
/// `"auth":{..},"request":{..}` members its response line reuses and, for a deferred
/// request line, the line itself (written with the response line, or when the request
/// goes away without one).
pub struct AuditedRequest {
    logged: Vec<Logged>,
    /// The devices enabled when the request arrived, and the broker's generation then:
    /// the response goes to the same set unless the table changed meanwhile.
    devices: Option<Arc<Vec<Arc<Device>>>>,
    generation: u64,
}

struct Logged {
    device: Arc<Device>,
    section: Vec<u8>,
    unwritten: Option<Vec<u8>>,
}

impl Drop for AuditedRequest {
    /// A deferred request line whose request ended without a response line (cancelled:
    /// the client went away) is still written.
    fn drop(&mut self) {
        for l in &mut self.logged {
            if let Some(line) = l.unwritten.take() {
                if let Err(e) = l.device.write(&line) {
                    tracing::error!(device = %l.device.entry.path, error = %e, "audit write failed");
                }
            }
        }
    }
}

/// The set of enabled devices.
#[derive(Default)]
pub struct AuditBroker {
    devices: RwLock<Arc<Vec<Arc<Device>>>>,
    /// Bumped after every change of `devices`: a response whose request saw the same
    /// generation reuses that request's device set instead of taking the lock again
    /// (the lock's counter is a cache line that every worker writes).
    generation: AtomicU64,
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
        self.generation.fetch_add(1, Ordering::AcqRel);
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
    ///
    /// A read's or list's line (they change nothing) is built now, with the request's
    /// time, and written together with the response line in one write: the answer is
    /// still returned only once both lines are written, and a request whose lines cannot
    /// be written still fails.
    pub fn log_request(&self, rec: &AuditRecord<'_>) -> Result<Option<AuditedRequest>, CoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        let devices = self.snapshot();
        if devices.is_empty() {
            return Ok(None);
        }
        let defer = matches!(rec.operation, Operation::Read | Operation::List);
        let mut logged = Vec::with_capacity(devices.len());
        for device in devices.iter() {
            let mut section = Vec::with_capacity(512);
            push_section(&mut section, device, rec);
            // Room for the response line too when it is to follow in the same write (what
            // `log_response` reserves), so the buffer is not reallocated.
            let room = if defer {
                2 * (section.len() + LINE_FRAME) + RESPONSE_ROOM
            } else {
                section.len() + LINE_FRAME
            };
            let mut line = Vec::with_capacity(room);
            push_line_start(&mut line, "request", &section);
            line.extend_from_slice(b"}\n");
            logged.push(Logged {
                device: device.clone(),
                section,
                unwritten: Some(line),
            });
        }
        let mut audited = AuditedRequest {
            logged,
            devices: Some(devices),
            generation,
        };
        if !defer {
            fan_out(
                audited
                    .logged
                    .iter_mut()
                    .filter_map(|l| Some((l.device.clone(), l.unwritten.take()?))),
                "request",
            )?;
        }
        Ok(Some(audited))
    }

    /// Log the answer (or the error) of a request to every device enabled now (a device
    /// enabled by this very request gets its response line too, as in Vault); an error
    /// when no device wrote the line. The `auth`/`request` members serialised for the
    /// request line are reused for the devices that wrote it, and a deferred request
    /// line goes out with the response line.
    pub fn log_response(
        &self,
        rec: &AuditRecord<'_>,
        mut audited: Option<AuditedRequest>,
        result: &Result<LogicalResponse, CoreError>,
    ) -> Result<(), CoreError> {
        let same = audited.as_mut().and_then(|a| {
            (a.generation == self.generation.load(Ordering::Acquire))
                .then(|| a.devices.take())
                .flatten()
        });
        let devices = same.unwrap_or_else(|| self.snapshot());
        if devices.is_empty() {
            return Ok(());
        }
        let mut lines = Vec::with_capacity(devices.len());
        for device in devices.iter() {
            let known = audited
                .as_mut()
                .and_then(|a| a.logged.iter_mut().find(|l| Arc::ptr_eq(&l.device, device)));
            let (mut line, section) = match known {
                Some(l) => (
                    l.unwritten.take().unwrap_or_default(),
                    Cow::Borrowed(l.section.as_slice()),
                ),
                None => {
                    let mut fresh = Vec::with_capacity(512);
                    push_section(&mut fresh, device, rec);
                    (Vec::new(), Cow::Owned(fresh))
                }
            };
            line.reserve(section.len() + LINE_FRAME + RESPONSE_ROOM);
            push_line_start(&mut line, "response", &section);
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
        fan_out(lines, "response")
    }
}

/// Bytes of a line around its shared section: `{"time":"<30>","type":"response",` and
/// the closing `}` and newline.
const LINE_FRAME: usize = 64;

/// Bytes reserved for a response line's answer (`,"response":{..}`); a larger answer
/// grows the buffer.
const RESPONSE_ROOM: usize = 1024;

/// Write each line (or lines) to its device; fine if at least one wrote.
fn fan_out(
    lines: impl IntoIterator<Item = (Arc<Device>, Vec<u8>)>,
    what: &str,
) -> Result<(), CoreError> {
    let mut written = 0;
    for (device, line) in lines {
        match device.write(&line) {
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
            operation: Operation::Update,
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

    #[tokio::test]
    async fn a_device_enabled_during_a_request_logs_its_response_with_its_own_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let (a_file, b_file) = (dir.path().join("a.log"), dir.path().join("b.log"));
        let a = Arc::new(device(a_file.to_str().unwrap()));
        let b = Arc::new(
            Device::open(AuditEntry {
                path: "other/".into(),
                salt: base64::engine::general_purpose::STANDARD.encode([9u8; 32]),
                options: [(
                    "file_path".to_string(),
                    b_file.to_str().unwrap().to_string(),
                )]
                .into(),
                ..a.entry.clone()
            })
            .unwrap(),
        );
        let broker = AuditBroker::default();
        let set = |devices: Vec<Arc<Device>>| {
            // What `reload` does.
            *broker.devices.write().unwrap() = Arc::new(devices);
            broker.generation.fetch_add(1, Ordering::AcqRel);
        };
        set(vec![a.clone()]);
        let data = Map::new();
        let policies = vec!["default".to_string()];
        let rec = record(&data, &policies);
        let audited = broker.log_request(&rec).unwrap();
        set(vec![a.clone(), b.clone()]);
        broker
            .log_response(&rec, audited, &Ok(LogicalResponse::default()))
            .unwrap();
        // A second request: both devices, each token hash under its own salt (each
        // device has its own entries in this thread's cache).
        let audited = broker.log_request(&rec).unwrap();
        broker
            .log_response(&rec, audited, &Ok(LogicalResponse::default()))
            .unwrap();

        let read = |f: &std::path::Path| -> Vec<Value> {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let (a_lines, b_lines) = (read(&a_file), read(&b_file));
        let types = |lines: &[Value]| -> Vec<String> {
            lines
                .iter()
                .map(|l| l["type"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            types(&a_lines),
            ["request", "response", "request", "response"]
        );
        assert_eq!(types(&b_lines), ["response", "request", "response"]);
        assert_ne!(a.hash("hvs.secret-token"), b.hash("hvs.secret-token"));
        for (d, lines) in [(&a, &a_lines), (&b, &b_lines)] {
            for line in lines {
                assert_eq!(line["auth"]["client_token"], d.hash("hvs.secret-token"));
                assert_eq!(
                    line["request"]["client_token_accessor"],
                    d.hash("accessor-1")
                );
            }
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
        // The empty string (precomputed per device) is hashed like any other value.
        let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]), b"");
        assert_eq!(
            d.hash(""),
            format!("hmac-sha256:{}", hex::encode(expected.as_ref()))
        );
        assert_ne!(d.hash(""), other.hash(""));
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
        let audited = broker.log_request(&rec).unwrap().unwrap();
        let mut answer = Map::new();
        answer.insert("value".into(), json!("s3cret"));
        let resp = Ok(LogicalResponse {
            data: Some(answer),
            warnings: vec!["careful".into()],
            ..Default::default()
        });
        broker.log_response(&rec, Some(audited), &resp).unwrap();
        // (Here without the request's state: the members are serialised afresh.)
        broker
            .log_response(&rec, None, &Err(CoreError::PermissionDenied))
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
        let err = full.log_request(&rec).err().expect("refused");
        assert!(err.to_string().contains("audit"), "{err}");
        // One good device is enough.
        let mixed = broker(vec![device("/dev/full"), device("discard")]);
        let audited = mixed.log_request(&rec).unwrap().unwrap();
        mixed
            .log_response(&rec, Some(audited), &Ok(LogicalResponse::default()))
            .unwrap();
        // A response line that no device writes is an error too (here a device enabled
        // after the request line: it gets the response line all the same).
        assert!(full
            .log_response(&rec, None, &Ok(LogicalResponse::default()))
            .is_err());
        // No device: nothing to do.
        assert!(broker(vec![]).log_request(&rec).unwrap().is_none());
    }

    #[test]
    fn a_deferred_request_line_goes_out_with_the_response_or_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.log");
        let broker = broker(vec![device(file.to_str().unwrap())]);
        let data = Map::new();
        let rec = AuditRecord {
            operation: Operation::Read,
            ..record(&data, &[])
        };
        let read = || std::fs::read_to_string(&file).unwrap_or_default();
        let audited = broker.log_request(&rec).unwrap().unwrap();
        assert_eq!(read(), "", "nothing written before the response");
        broker
            .log_response(&rec, Some(audited), &Ok(LogicalResponse::default()))
            .unwrap();
        let text = read();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].to_string())
            .collect();
        assert_eq!(kinds, ["\"request\"", "\"response\""]);
        // A request that goes away without an answer still leaves its request line.
        drop(broker.log_request(&rec).unwrap().unwrap());
        assert_eq!(read().lines().count(), 3);
        // A deferred read whose lines cannot be written fails.
        let full = self::broker(vec![device("/dev/full")]);
        let audited = full.log_request(&rec).unwrap().unwrap();
        assert!(full
            .log_response(&rec, Some(audited), &Ok(LogicalResponse::default()))
            .is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_are_written_as_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.log");
        let broker = Arc::new(broker(vec![device(file.to_str().unwrap())]));
        const ROUNDS: usize = 20;
        let mut tasks = Vec::new();
        for i in 0..64 {
            let broker = broker.clone();
            tasks.push(tokio::spawn(async move {
                let mut data = Map::new();
                data.insert("i".into(), json!(i));
                // Keys are logged in the clear: lines of several KiB, across pages.
                data.insert("k".repeat(3000 + i), json!(1));
                let update = record(&data, &[]);
                let read = AuditRecord {
                    operation: Operation::Read,
                    ..record(&data, &[])
                };
                for round in 0..ROUNDS {
                    // Alternately written at once (an update) and deferred to the
                    // response line (a read).
                    let rec = if round % 2 == 0 { &read } else { &update };
                    let audited = broker.log_request(rec).unwrap().unwrap();
                    broker
                        .log_response(rec, Some(audited), &Ok(LogicalResponse::default()))
                        .unwrap();
                }
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
        assert_eq!(lines.len(), 64 * ROUNDS * 2);
        for i in 0..64 {
            let of_i = |kind: &str| {
                lines
                    .iter()
                    .filter(|l| l["type"] == kind && l["request"]["data"]["i"] == i)
                    .count()
            };
            assert_eq!(
                (of_i("request"), of_i("response")),
                (ROUNDS, ROUNDS),
                "request {i}"
            );
        }
    }
}

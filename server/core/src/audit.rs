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
//! the response line, so the token, its accessor and the request body are hashed once per
//! device, not four times. Lines go to a per-device writer thread that gathers the lines
//! of all concurrent requests into one `write(2)` (group commit) and then acknowledges
//! each waiting request with the outcome of its own line. Writes go to the OS, no fsync.
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
//! - Nothing waits forever: a line not acknowledged within [`WRITE_TIMEOUT`] (a sink
//!   that blocks, e.g. a stuck pipe) counts as not written, and a writer whose queue
//!   holds more than [`MAX_QUEUED_BYTES`] refuses new lines at once.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use base64::Engine;
use ring::hmac;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::handling::LogicalResponse;
use crate::store::LogicalStore;
use crate::CoreError;

/// Where the audit table is stored (through the barrier).
pub const AUDIT_PATH: &str = "core/audit";

/// How long a request waits for its line to be written before it counts as not written.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes a device's writer may have queued; past that, new lines are refused at once.
pub const MAX_QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// `hmac-sha256:` plus 64 hex digits.
const HASHED_LEN: usize = 12 + 64;

/// One row of the audit table.
#[derive(Clone, Debug, Serialize, Deserialize)]
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

/// A line waiting for the writer thread.
struct Pending {
    line: Vec<u8>,
    done: oneshot::Sender<Ack>,
}

#[derive(Default)]
struct Queue {
    lines: Vec<Pending>,
    bytes: usize,
    /// The writer is asleep on the condvar (so a new line must wake it).
    idle: bool,
    /// No more lines are taken (device dropped, or the writer thread ended).
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The group-commit writer of one device: a thread that takes every queued line, writes
/// them with one `write` (more only for short writes) and acknowledges each line.
struct GroupWriter {
    shared: Arc<Shared>,
}

impl GroupWriter {
    fn start(name: &str, out: Box<dyn Write + Send>) -> std::io::Result<GroupWriter> {
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("audit {name}"))
            .spawn(move || run_writer(&thread_shared, out))?;
        Ok(GroupWriter { shared })
    }

    /// Queue a line; the receiver gets the outcome of its write.
    fn submit(&self, line: Vec<u8>) -> Result<oneshot::Receiver<Ack>, String> {
        let (done, rx) = oneshot::channel();
        let mut q = self.shared.lock();
        if q.closed {
            return Err("the audit writer has stopped".into());
        }
        if q.bytes + line.len() > MAX_QUEUED_BYTES {
            return Err("the audit writer is not keeping up (queue full)".into());
        }
        q.bytes += line.len();
        q.lines.push(Pending { line, done });
        if q.idle {
            q.idle = false;
            self.shared.wake.notify_one();
        }
        Ok(rx)
    }
}

impl Drop for GroupWriter {
    fn drop(&mut self) {
        // The thread writes what is queued, then ends.
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// Marks the queue closed and fails whatever is left when the writer thread ends (also
/// by a panic), so no request waits on a writer that is gone.
struct CloseOnExit<'a>(&'a Shared);

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        let mut q = self.0.lock();
        q.closed = true;
        for p in q.lines.drain(..) {
            let _ = p.done.send(Err("the audit writer has stopped".into()));
        }
    }
}

fn run_writer(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let _close = CloseOnExit(shared);
    let mut buf: Vec<u8> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    loop {
        let batch = {
            let mut q = shared.lock();
            while q.lines.is_empty() && !q.closed {
                q.idle = true;
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            q.idle = false;
            if q.lines.is_empty() {
                return;
            }
            q.bytes = 0;
            std::mem::take(&mut q.lines)
        };
        buf.clear();
        ends.clear();
        for p in &batch {
            buf.extend_from_slice(&p.line);
            ends.push(buf.len());
        }
        let (written, error) = write_counted(&mut out, &buf);
        for (p, end) in batch.into_iter().zip(ends.iter()) {
            let ack = match &error {
                Some(e) if *end > written => Err(e.clone()),
                _ => Ok(()),
            };
            let _ = p.done.send(ack);
        }
        if buf.capacity() > 4 * 1024 * 1024 {
            buf = Vec::new();
        }
    }
}

/// Write all of `buf`; on failure, how much was written and the error.
fn write_counted(out: &mut dyn Write, buf: &[u8]) -> (usize, Option<String>) {
    let mut written = 0;
    while written < buf.len() {
        match out.write(&buf[written..]) {
            Ok(0) => return (written, Some("the audit sink accepts no more data".into())),
            Ok(n) => written += n,
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
    Writer(GroupWriter),
    Discard,
}

/// An enabled device.
pub struct Device {
    entry: AuditEntry,
    key: hmac::Key,
    sink: Sink,
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
            Some(out) => Sink::Writer(
                GroupWriter::start(&entry.path, out)
                    .map_err(|e| CoreError::Internal(format!("audit writer thread: {e}")))?,
            ),
            None => Sink::Discard,
        };
        let salt = base64::engine::general_purpose::STANDARD
            .decode(&entry.salt)
            .map_err(|_| CoreError::Internal("audit salt does not decode".into()))?;
        Ok(Device {
            key: hmac::Key::new(hmac::HMAC_SHA256, &salt),
            entry,
            sink,
        })
    }

    /// `hmac-sha256:<hex>` of a value under this device's salt.
    pub fn hash(&self, value: &str) -> String {
        let mut out = [0u8; HASHED_LEN];
        self.hash_into(value, &mut out).to_string()
    }

    /// [`Device::hash`] into a stack buffer.
    fn hash_into<'b>(&self, value: &str, out: &'b mut [u8; HASHED_LEN]) -> &'b str {
        out[..12].copy_from_slice(b"hmac-sha256:");
        let tag = hmac::sign(&self.key, value.as_bytes());
        // 32 bytes into 64 hex digits: the lengths always match.
        let _ = hex::encode_to_slice(tag.as_ref(), &mut out[12..]);
        std::str::from_utf8(&out[..]).unwrap_or_default()
    }

    /// Queue a line (or, for `discard`, accept it at once).
    fn submit(&self, line: Vec<u8>) -> Result<Option<oneshot::Receiver<Ack>>, String> {
        match &self.sink {
            Sink::Writer(w) => w.submit(line).map(Some),
            Sink::Discard => Ok(None),
        }
    }
}

/// A string hashed with a device's salt (empty stays empty, as before).
struct HashedStr<'a>(&'a Device, &'a str);

impl Serialize for HashedStr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.1.is_empty() {
            return s.serialize_str("");
        }
        let mut buf = [0u8; HASHED_LEN];
        s.serialize_str(self.0.hash_into(self.1, &mut buf))
    }
}

/// A JSON value with every string (at any depth) hashed; keys, numbers, booleans and
/// nulls as they are.
struct Hashed<'a>(&'a Device, &'a Value);

impl Serialize for Hashed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.1 {
            Value::String(v) => {
                let mut buf = [0u8; HASHED_LEN];
                s.serialize_str(self.0.hash_into(v, &mut buf))
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Hashed(self.0, item))?;
                }
                seq.end()
            }
            Value::Object(map) => HashedMap(self.0, map).serialize(s),
            other => other.serialize(s),
        }
    }
}

/// An object with every string value hashed.
struct HashedMap<'a>(&'a Device, &'a Map<String, Value>);

impl Serialize for HashedMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.1.len()))?;
        for (k, v) in self.1 {
            map.serialize_entry(k, &Hashed(self.0, v))?;
        }
        map.end()
    }
}

/// The `response` object of a response line: what the client got, hashed.
struct HashedResponse<'a>(&'a Device, &'a LogicalResponse);

impl Serialize for HashedResponse<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (d, r) = (self.0, self.1);
        let mut map = s.serialize_map(None)?;
        if let Some(auth) = &r.auth {
            map.serialize_entry("auth", &Hashed(d, auth))?;
        }
        if let Some(data) = &r.data {
            map.serialize_entry("data", &HashedMap(d, data))?;
        }
        if !r.warnings.is_empty() {
            let warnings: Vec<HashedStr<'_>> = r.warnings.iter().map(|w| HashedStr(d, w)).collect();
            map.serialize_entry("warnings", &warnings)?;
        }
        if let Some(wrap) = &r.wrap_info {
            map.serialize_entry("wrap_info", &Hashed(d, wrap))?;
        }
        map.end()
    }
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

/// The `auth` and `request` members shared by a request's two lines, for one device.
struct Section<'a>(&'a Device, &'a AuditRecord<'a>);

impl Serialize for Section<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (d, rec) = (self.0, self.1);
        let token = HashedStr(d, rec.client_token);
        let accessor = HashedStr(d, rec.accessor);
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry(
            "auth",
            &AuthPart {
                token: &token,
                accessor: &accessor,
                rec,
            },
        )?;
        map.serialize_entry(
            "request",
            &RequestPart {
                token: &token,
                accessor: &accessor,
                device: d,
                rec,
            },
        )?;
        map.end()
    }
}

struct AuthPart<'a> {
    token: &'a HashedStr<'a>,
    accessor: &'a HashedStr<'a>,
    rec: &'a AuditRecord<'a>,
}

impl Serialize for AuthPart<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("accessor", self.accessor)?;
        map.serialize_entry("client_token", self.token)?;
        map.serialize_entry("display_name", self.rec.display_name)?;
        map.serialize_entry("policies", self.rec.policies)?;
        map.serialize_entry("token_policies", self.rec.policies)?;
        map.end()
    }
}

struct RequestPart<'a> {
    token: &'a HashedStr<'a>,
    accessor: &'a HashedStr<'a>,
    device: &'a Device,
    rec: &'a AuditRecord<'a>,
}

#[derive(Serialize)]
struct Namespace {
    id: &'static str,
}

impl Serialize for RequestPart<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rec = self.rec;
        let mut map = s.serialize_map(Some(9))?;
        map.serialize_entry("client_token", self.token)?;
        map.serialize_entry("client_token_accessor", self.accessor)?;
        if rec.data.is_empty() {
            map.serialize_entry("data", &())?;
        } else {
            map.serialize_entry("data", &HashedMap(self.device, rec.data))?;
        }
        map.serialize_entry("id", rec.id)?;
        map.serialize_entry("mount_type", rec.mount_type)?;
        map.serialize_entry("namespace", &Namespace { id: "root" })?;
        map.serialize_entry("operation", rec.operation)?;
        map.serialize_entry("path", rec.path)?;
        map.serialize_entry("remote_address", rec.remote_address)?;
        map.end()
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Start a line: `{"time":"...","type":"<kind>",` followed by the shared section.
fn line_start(kind: &str, section: &[u8], extra: usize) -> Vec<u8> {
    let mut line = Vec::with_capacity(64 + section.len() + extra);
    line.extend_from_slice(b"{\"time\":\"");
    line.extend_from_slice(now_rfc3339().as_bytes());
    line.extend_from_slice(b"\",\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",");
    line.extend_from_slice(section);
    line
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

    /// Re-read the table (after a replicated change). A device that fails to open is
    /// logged and skipped; the others keep working.
    pub fn reload(&self, store: &LogicalStore) -> Result<(), CoreError> {
        let rows: Vec<AuditEntry> = store.get_json(AUDIT_PATH)?.unwrap_or_default();
        let mut devices = Vec::new();
        for row in rows {
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

    /// Whether any device is enabled.
    pub fn enabled(&self) -> bool {
        !self.snapshot().is_empty()
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
            let section = match serde_json::to_vec(&Section(device, rec)) {
                // Keep the members, drop the object's braces.
                Ok(bytes) => bytes[1..bytes.len() - 1].to_vec(),
                Err(e) => {
                    tracing::error!(error = %e, "audit entry does not encode");
                    continue;
                }
            };
            let mut line = line_start("request", &section, 2);
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
        response: Option<&LogicalResponse>,
        error: Option<&str>,
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
                None => match serde_json::to_vec(&Section(device, rec)) {
                    Ok(bytes) => {
                        fresh = bytes;
                        &fresh[1..fresh.len() - 1]
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "audit entry does not encode");
                        continue;
                    }
                },
            };
            let mut line = line_start("response", section, 512);
            let tail = (|| -> serde_json::Result<()> {
                line.extend_from_slice(b",\"response\":");
                match response {
                    Some(r) => serde_json::to_writer(&mut line, &HashedResponse(device, r))?,
                    None => line.extend_from_slice(b"null"),
                }
                if let Some(err) = error {
                    line.extend_from_slice(b",\"error\":");
                    serde_json::to_writer(&mut line, err)?;
                }
                Ok(())
            })();
            if let Err(e) = tail {
                tracing::error!(error = %e, "audit entry does not encode");
                continue;
            }
            line.extend_from_slice(b"}\n");
            lines.push((device.clone(), line));
        }
        fan_out(lines, "response").await
    }
}

/// Hand each line to its device, wait for every outcome; fine if at least one wrote.
async fn fan_out(lines: Vec<(Arc<Device>, Vec<u8>)>, what: &str) -> Result<(), CoreError> {
    let mut waiting = Vec::with_capacity(lines.len());
    let mut written = 0;
    for (device, line) in lines {
        match device.submit(line) {
            Ok(None) => written += 1,
            Ok(Some(rx)) => waiting.push((device, rx)),
            Err(e) => {
                tracing::error!(device = %device.entry.path, error = %e, "audit write failed")
            }
        }
    }
    for (device, rx) in waiting {
        let outcome = match tokio::time::timeout(WRITE_TIMEOUT, rx).await {
            Ok(Ok(ack)) => ack,
            Ok(Err(_)) => Err("the audit writer has stopped".into()),
            Err(_) => Err(format!("not written within {} s", WRITE_TIMEOUT.as_secs())),
        };
        match outcome {
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
            operation: "update",
            path: "secret/data/x",
            client_token: "hvs.secret-token",
            accessor: "accessor-1",
            display_name: "token",
            policies,
            data,
            remote_address: "127.0.0.1",
            mount_type: "kv",
        }
    }

    #[test]
    fn hashes_every_string_and_keeps_keys() {
        let d = device("discard");
        let v = json!({"password": "hunter2", "n": 3, "list": ["a", true], "deep": {"k": "v"}});
        let out: Value =
            serde_json::from_slice(&serde_json::to_vec(&Hashed(&d, &v)).unwrap()).unwrap();
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
        let resp = LogicalResponse {
            data: Some(answer),
            warnings: vec!["careful".into()],
            ..Default::default()
        };
        broker
            .log_response(&rec, Some(&audited), Some(&resp), None)
            .await
            .unwrap();
        broker
            .log_response(&rec, Some(&audited), None, Some("permission denied"))
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
            .log_response(&rec, Some(&audited), None, None)
            .await
            .unwrap();
        // A response line that no device writes is an error too (here a device enabled
        // after the request line: it gets the response line all the same).
        assert!(full.log_response(&rec, None, None, None).await.is_err());
        // No device: nothing to do.
        assert!(broker(vec![]).log_request(&rec).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_stopped_writer_refuses_lines_instead_of_hanging() {
        let d = device("discard");
        let writer = GroupWriter::start("test/", Box::new(std::io::sink())).unwrap();
        // What the writer thread leaves behind when it ends for any reason.
        drop(CloseOnExit(&writer.shared));
        assert!(writer.submit(b"x\n".to_vec()).is_err());
        let dead = Device {
            sink: Sink::Writer(writer),
            ..d
        };
        let data = Map::new();
        let b = broker(vec![dead]);
        assert!(b.log_request(&record(&data, &[])).await.is_err());
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
                    .log_response(&rec, Some(&audited), None, None)
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

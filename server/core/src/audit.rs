//! Audit devices (`sys/audit`): one JSON line per request and per response, every
//! string value replaced by `hmac-sha256:<hex>` with a per-device salt, so the log
//! never holds a secret or a token in the clear but a known value can be matched with
//! `sys/audit-hash`.
//!
//! Fail closed: with at least one device enabled, a request whose entry no device could
//! write is refused (500) before it is handled. Writes go to the OS with one `write` per
//! entry and no fsync, so auditing stays cheap; they never block on a lock held across
//! I/O of another request for longer than one write.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::store::LogicalStore;
use crate::CoreError;

/// Where the audit table is stored (through the barrier).
pub const AUDIT_PATH: &str = "core/audit";

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

enum Sink {
    File(File),
    Stdout,
    Discard,
}

/// An enabled device.
pub struct Device {
    entry: AuditEntry,
    key: hmac::Key,
    sink: Mutex<Sink>,
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
        let sink = match path.as_str() {
            "stdout" => Sink::Stdout,
            "discard" => Sink::Discard,
            p => Sink::File(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| CoreError::BadRequest(format!("audit file {p}: {e}")))?,
            ),
        };
        let salt = base64::engine::general_purpose::STANDARD
            .decode(&entry.salt)
            .map_err(|_| CoreError::Internal("audit salt does not decode".into()))?;
        Ok(Device {
            key: hmac::Key::new(hmac::HMAC_SHA256, &salt),
            entry,
            sink: Mutex::new(sink),
        })
    }

    /// `hmac-sha256:<hex>` of a value under this device's salt.
    pub fn hash(&self, value: &str) -> String {
        format!(
            "hmac-sha256:{}",
            hex::encode(hmac::sign(&self.key, value.as_bytes()).as_ref())
        )
    }

    fn hash_value(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.hash(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.hash_value(v)).collect()),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.hash_value(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn write_line(&self, line: &[u8]) -> std::io::Result<()> {
        let mut sink = self
            .sink
            .lock()
            .map_err(|_| std::io::Error::other("audit sink lock poisoned"))?;
        match &mut *sink {
            Sink::File(f) => f.write_all(line),
            Sink::Stdout => std::io::stdout().lock().write_all(line),
            Sink::Discard => Ok(()),
        }
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

/// The set of enabled devices.
#[derive(Default)]
pub struct AuditBroker {
    devices: RwLock<Vec<Arc<Device>>>,
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
            .map_err(|_| CoreError::Internal("audit lock poisoned".into()))? = devices;
        Ok(())
    }

    fn snapshot(&self) -> Vec<Arc<Device>> {
        self.devices.read().map(|d| d.clone()).unwrap_or_default()
    }

    /// Whether any device is enabled.
    pub fn enabled(&self) -> bool {
        !self.snapshot().is_empty()
    }

    /// The device at `path`, if enabled.
    pub fn device(&self, path: &str) -> Option<Arc<Device>> {
        self.snapshot().into_iter().find(|d| d.entry.path == path)
    }

    /// `GET sys/audit` rows.
    pub fn table(&self) -> Vec<AuditEntry> {
        self.snapshot().iter().map(|d| d.entry.clone()).collect()
    }

    fn request_json(device: &Device, rec: &AuditRecord<'_>) -> Value {
        json!({
            "id": rec.id,
            "operation": rec.operation,
            "mount_type": rec.mount_type,
            "client_token": if rec.client_token.is_empty() { String::new() } else { device.hash(rec.client_token) },
            "client_token_accessor": if rec.accessor.is_empty() { String::new() } else { device.hash(rec.accessor) },
            "namespace": { "id": "root" },
            "path": rec.path,
            "data": if rec.data.is_empty() { Value::Null } else { device.hash_value(&Value::Object(rec.data.clone())) },
            "remote_address": rec.remote_address,
        })
    }

    fn auth_json(device: &Device, rec: &AuditRecord<'_>) -> Value {
        json!({
            "client_token": if rec.client_token.is_empty() { String::new() } else { device.hash(rec.client_token) },
            "accessor": if rec.accessor.is_empty() { String::new() } else { device.hash(rec.accessor) },
            "display_name": rec.display_name,
            "policies": rec.policies,
            "token_policies": rec.policies,
        })
    }

    /// Write to every device; fine if at least one wrote (or none is enabled).
    fn fan_out(&self, build: impl Fn(&Device) -> Value) -> Result<(), CoreError> {
        let devices = self.snapshot();
        if devices.is_empty() {
            return Ok(());
        }
        let mut written = 0;
        for device in &devices {
            let mut line = match serde_json::to_vec(&build(device)) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "audit entry does not encode");
                    continue;
                }
            };
            line.push(b'\n');
            match device.write_line(&line) {
                Ok(()) => written += 1,
                Err(e) => {
                    tracing::error!(device = %device.entry.path, error = %e, "audit write failed")
                }
            }
        }
        if written == 0 {
            return Err(CoreError::Internal(
                "audit: no audit device could log the request; refusing to proceed".into(),
            ));
        }
        Ok(())
    }

    /// Log a request before it is handled.
    pub fn log_request(&self, rec: &AuditRecord<'_>) -> Result<(), CoreError> {
        self.fan_out(|d| {
            json!({
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "type": "request",
                "auth": Self::auth_json(d, rec),
                "request": Self::request_json(d, rec),
            })
        })
    }

    /// Log the response (or error) of a request.
    pub fn log_response(
        &self,
        rec: &AuditRecord<'_>,
        response: &Value,
        error: Option<&str>,
    ) -> Result<(), CoreError> {
        self.fan_out(|d| {
            let mut entry = json!({
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                "type": "response",
                "auth": Self::auth_json(d, rec),
                "request": Self::request_json(d, rec),
                "response": d.hash_value(response),
            });
            if let Some(err) = error {
                entry["error"] = Value::String(err.to_string());
            }
            entry
        })
    }
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

    #[test]
    fn hashes_every_string_and_keeps_keys() {
        let d = device("discard");
        let v = d.hash_value(&json!({"password": "hunter2", "n": 3, "list": ["a", true]}));
        assert_eq!(v["password"], d.hash("hunter2"));
        assert_eq!(v["n"], 3);
        assert_eq!(v["list"][0], d.hash("a"));
        assert_eq!(v["list"][1], true);
        assert!(d.hash("x").starts_with("hmac-sha256:"));
        assert_ne!(d.hash("x"), d.hash("y"));
    }

    #[test]
    fn failing_device_fails_closed() {
        let broker = AuditBroker::default();
        *broker.devices.write().unwrap() = vec![Arc::new(device("/dev/full"))];
        let data = Map::new();
        let rec = AuditRecord {
            id: "1",
            operation: "read",
            path: "secret/x",
            client_token: "t",
            accessor: "a",
            display_name: "d",
            policies: &[],
            data: &data,
            remote_address: "127.0.0.1",
            mount_type: "kv",
        };
        assert!(broker.log_request(&rec).is_err());
        // One good device is enough.
        broker
            .devices
            .write()
            .unwrap()
            .push(Arc::new(device("discard")));
        assert!(broker.log_request(&rec).is_ok());
    }
}

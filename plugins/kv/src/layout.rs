//! Where the KV engine keeps things in its mount's storage view, the records stored
//! there, and the Vault-style formatting of their times and durations.
//!
//! ```text
//! <path>                      KV v1: the secret map, JSON, at its plain path
//! _kv2/config                 KV v2: mount config          (MountConfig)
//! _kv2/upgrade                KV v2: v1 upgrade done       (UpgradeMarker)
//! _kv2/meta/<path>            KV v2: one secret's metadata (KeyMetadata)
//! _kv2/ver/<path>/<n>         KV v2: version n of a secret (VersionRecord)
//! ```
//!
//! Every v2 key lives below the reserved first segment `_kv2/`, so no v1 secret path
//! can name one (the v1 engine refuses paths in `_kv2/`), and the v1 -> v2 upgrade can
//! tell the two apart: everything outside `_kv2/` is v1 data. Metadata keys mirror the
//! secret paths, so listing `metadata/<folder>/` is a storage list of
//! `_kv2/meta/<folder>/`; version keys live in their own subtree so they never show up
//! in those listings. A version key is unambiguous because the version number is always
//! the last segment and secret paths never end in `/`.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The reserved first segment under which every v2 key lives.
pub const V2_ROOT: &str = "_kv2/";
/// The v2 mount configuration.
pub const CONFIG_KEY: &str = "_kv2/config";
/// The v1 -> v2 upgrade marker.
pub const UPGRADE_KEY: &str = "_kv2/upgrade";
/// Prefix of the per-secret metadata records.
pub const META_PREFIX: &str = "_kv2/meta/";
/// Prefix of the per-version data records.
pub const VERSION_PREFIX: &str = "_kv2/ver/";

/// Versions kept per secret when neither the secret nor the mount says otherwise.
pub const DEFAULT_MAX_VERSIONS: u32 = 10;

/// Storage key of a secret's metadata.
pub fn meta_key(path: &str) -> String {
    format!("{META_PREFIX}{path}")
}

/// Storage key of one version of a secret.
pub fn version_key(path: &str, version: u64) -> String {
    format!("{VERSION_PREFIX}{path}/{version}")
}

/// The v2 mount configuration (`config` endpoint).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountConfig {
    /// Versions to keep per secret; 0 means the default (10).
    #[serde(default)]
    pub max_versions: u32,
    /// Whether every write must carry `options.cas`.
    #[serde(default)]
    pub cas_required: bool,
    /// Seconds after which new versions count as deleted: 0 = unset, negative =
    /// disabled for every secret (Vault's semantics for a negative config value).
    #[serde(default)]
    pub delete_version_after: i64,
}

/// Metadata of one version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// When the version was written.
    #[serde(serialize_with = "serialize_time")]
    pub created_time: DateTime<Utc>,
    /// When it was (or will be) soft-deleted; `None` when it is not.
    #[serde(default, serialize_with = "serialize_opt_time")]
    pub deletion_time: Option<DateTime<Utc>>,
    /// Whether its data was permanently removed.
    #[serde(default)]
    pub destroyed: bool,
}

impl VersionMeta {
    /// Soft-deleted as of `now` (a deletion time in the future is only scheduled).
    pub fn is_deleted(&self, now: DateTime<Utc>) -> bool {
        self.deletion_time.is_some_and(|t| t < now)
    }

    /// Neither soft-deleted as of `now` nor destroyed.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        !self.destroyed && !self.is_deleted(now)
    }
}

/// Metadata of one secret: its settings and the versions still kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMetadata {
    /// First write (or metadata write) of the secret.
    #[serde(serialize_with = "serialize_time")]
    pub created_time: DateTime<Utc>,
    /// Last version written.
    #[serde(serialize_with = "serialize_time")]
    pub updated_time: DateTime<Utc>,
    /// Highest version number written so far (0 = none).
    #[serde(default)]
    pub current_version: u64,
    /// Vault's `oldest_version`: 0 until pruning first moves it.
    #[serde(default)]
    pub oldest_version: u64,
    /// Per-secret override of the mount's `max_versions` (0 = use the mount's).
    #[serde(default)]
    pub max_versions: u32,
    /// Per-secret `cas_required` (ORed with the mount's).
    #[serde(default)]
    pub cas_required: bool,
    /// Per-secret `delete_version_after` in seconds (0 = unset).
    #[serde(default)]
    pub delete_version_after: i64,
    /// User key/value pairs describing the secret.
    #[serde(default)]
    pub custom_metadata: BTreeMap<String, String>,
    /// Kept versions by number.
    #[serde(default)]
    pub versions: BTreeMap<u64, VersionMeta>,
}

impl KeyMetadata {
    /// Fresh metadata with no versions.
    pub fn new(now: DateTime<Utc>) -> Self {
        KeyMetadata {
            created_time: now,
            updated_time: now,
            current_version: 0,
            oldest_version: 0,
            max_versions: 0,
            cas_required: false,
            delete_version_after: 0,
            custom_metadata: BTreeMap::new(),
            versions: BTreeMap::new(),
        }
    }

    /// `custom_metadata` as Vault shows it: `null` when there is none.
    pub fn custom_metadata_json(&self) -> Value {
        if self.custom_metadata.is_empty() {
            Value::Null
        } else {
            json!(self.custom_metadata)
        }
    }

    /// The per-version block Vault returns from writes and inside reads:
    /// `{created_time, custom_metadata, deletion_time, destroyed, version}`.
    pub fn version_body(&self, version: u64, vm: &VersionMeta) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("created_time".into(), json!(format_time(&vm.created_time)));
        body.insert("custom_metadata".into(), self.custom_metadata_json());
        body.insert(
            "deletion_time".into(),
            json!(format_opt_time(vm.deletion_time.as_ref())),
        );
        body.insert("destroyed".into(), json!(vm.destroyed));
        body.insert("version".into(), json!(version));
        body
    }
}

/// The data of one version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// When the version was written (also in the metadata; kept for forensics).
    #[serde(serialize_with = "serialize_time")]
    pub created_time: DateTime<Utc>,
    /// The secret map.
    pub data: Map<String, Value>,
}

/// The record that a mount's v1 -> v2 upgrade is done (written once every v1 secret
/// has moved; its presence is what counts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeMarker {
    /// When the upgrade finished.
    pub finished_time: DateTime<Utc>,
    /// How many v1 secrets were migrated.
    #[serde(default)]
    pub migrated: u64,
}

/// A time as Go's `time.RFC3339Nano` prints it (what Vault returns): UTC, `Z`, up to
/// nine fractional digits with trailing zeros dropped.
pub fn format_time(t: &DateTime<Utc>) -> String {
    let mut buf = [0u8; RFC3339_NANO_MAX];
    match write_time(t, &mut buf) {
        Some(text) => text.to_string(),
        None => {
            // Before 1970, after 9999 or a leap second: chrono's formatter, trimmed.
            let full = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
            match full.strip_suffix('Z').and_then(|s| s.split_once('.')) {
                Some((head, frac)) => {
                    let frac = frac.trim_end_matches('0');
                    if frac.is_empty() {
                        format!("{head}Z")
                    } else {
                        format!("{head}.{frac}Z")
                    }
                }
                None => full,
            }
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const RFC3339_NANO_MAX: usize = coffer_sdk::time::RFC3339_NANOS_LEN;

/// [`format_time`] into `buf` without a formatter (it runs for every KV read and
/// write); `None` for a time before 1970 or after 9999 or a leap second, which the
/// caller formats with chrono.
fn write_time<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; RFC3339_NANO_MAX]) -> Option<&'b str> {
    *buf = coffer_sdk::time::rfc3339_nanos(t.timestamp(), t.timestamp_subsec_nanos())?;
    // Drop trailing zeros of the fraction, and the dot with them when it is all zeros.
    let mut end = 29;
    while end > 20 && buf[end - 1] == b'0' {
        end -= 1;
    }
    if end == 20 {
        end = 19;
    }
    buf[end] = b'Z';
    std::str::from_utf8(&buf[..=end]).ok()
}

/// Serde `serialize_with` for a stored time: [`format_time`]'s text, which chrono's
/// deserializer reads back (RFC 3339, any number of fractional digits).
pub fn serialize_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; RFC3339_NANO_MAX];
    match write_time(t, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => t.serialize(s),
    }
}

/// [`serialize_time`] for an optional time (`null` when unset).
pub fn serialize_opt_time<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize_time(t, s),
        None => s.serialize_none(),
    }
}

/// [`format_time`] for an optional time; Vault prints an unset time as `""`.
pub fn format_opt_time(t: Option<&DateTime<Utc>>) -> String {
    t.map(format_time).unwrap_or_default()
}

/// Whole seconds as Go's `time.Duration.String()` prints them: `0s`, `45s`, `1m30s`,
/// `3h25m19s`, `-1s`.
pub fn format_duration_secs(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let sign = if secs < 0 { "-" } else { "" };
    let abs = secs.unsigned_abs();
    let (h, m, s) = (abs / 3600, (abs % 3600) / 60, abs % 60);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_print_like_go_rfc3339nano() {
        let base = Utc
            .with_ymd_and_hms(2018, 3, 22, 2, 24, 6)
            .single()
            .expect("valid date");
        let cases = [
            (945_319_214, "2018-03-22T02:24:06.945319214Z"),
            (945_000_000, "2018-03-22T02:24:06.945Z"),
            (0, "2018-03-22T02:24:06Z"),
        ];
        for (nanos, want) in cases {
            let t = base + chrono::Duration::nanoseconds(nanos);
            assert_eq!(format_time(&t), want);
        }
        assert_eq!(format_opt_time(None), "");
    }

    #[test]
    fn the_fast_formatter_matches_chrono_and_stored_times_read_back() {
        let chrono_text = |t: &DateTime<Utc>| {
            let full = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
            let (head, frac) = full
                .strip_suffix('Z')
                .and_then(|s| s.split_once('.'))
                .expect("nanos");
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{head}Z")
            } else {
                format!("{head}.{frac}Z")
            }
        };
        let mut secs: i64 = 0;
        let mut nanos: u32 = 0;
        // Dates from 1970 to 9999, leap years and month ends included, odd nanos.
        while secs < 253_402_300_799 {
            let t = DateTime::from_timestamp(secs, nanos).expect("in range");
            assert_eq!(format_time(&t), chrono_text(&t), "{secs}.{nanos}");
            let meta = VersionMeta {
                created_time: t,
                deletion_time: Some(t),
                destroyed: false,
            };
            let back: VersionMeta =
                serde_json::from_slice(&serde_json::to_vec(&meta).expect("json")).expect("read");
            assert_eq!(back, meta);
            secs += 86_399 * 31 + 3_601;
            nanos = (nanos + 123_456_789) % 1_000_000_000;
            if secs % 5 == 0 {
                nanos = 0;
            }
        }
        // Outside the fast path: chrono's text.
        let old = Utc
            .with_ymd_and_hms(-5, 1, 1, 0, 0, 0)
            .single()
            .expect("valid date");
        assert_eq!(format_time(&old), chrono_text(&old));
        // What chrono itself stored earlier still reads.
        let earlier = r#"{"created_time":"2018-03-22T02:24:06.945319214Z","deletion_time":null,"destroyed":false}"#;
        let read: VersionMeta = serde_json::from_str(earlier).expect("read");
        assert_eq!(
            format_time(&read.created_time),
            "2018-03-22T02:24:06.945319214Z"
        );
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (90, "1m30s"),
            (3600, "1h0m0s"),
            (12_319, "3h25m19s"),
            (-1, "-1s"),
        ];
        for (secs, want) in cases {
            assert_eq!(format_duration_secs(secs), want, "{secs}");
        }
    }

    #[test]
    fn version_keys_are_unambiguous() {
        assert_eq!(version_key("a", 1), "_kv2/ver/a/1");
        assert_eq!(version_key("a/1", 2), "_kv2/ver/a/1/2");
        assert_eq!(meta_key("app/db"), "_kv2/meta/app/db");
    }
}

//! Output the way the `vault` CLI prints it: `-format=table` (two aligned columns with
//! a `---  -----` rule, Go's `%v` rendering of values, TTL-looking keys as durations),
//! `json` (the API response, pretty-printed), `yaml`, and `-field=NAME` (the raw value,
//! with no trailing newline when stdout is not a terminal, as Vault does for scripts).

use std::io::{IsTerminal, Write};

use serde_json::{Map, Value};

use crate::commands::CliError;

/// `println!` that ignores a closed stdout (`coffer kv list ... | head -1`) instead of
/// panicking, as a Go program would quietly stop.
#[macro_export]
macro_rules! outln {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Vault's aligned two-column tables (the default).
    Table,
    /// Pretty-printed JSON.
    Json,
    /// YAML.
    Yaml,
    /// The response body exactly as received (`read` only).
    Raw,
}

impl Format {
    /// Parse a `-format` value (`yml` is accepted for `yaml`, as Vault does).
    pub fn parse(s: &str) -> Result<Format, CliError> {
        match s.to_ascii_lowercase().as_str() {
            "table" | "" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "yaml" | "yml" => Ok(Format::Yaml),
            "raw" => Ok(Format::Raw),
            other => Err(CliError::usage(format!("Invalid output format: {other}"))),
        }
    }
}

/// The output settings of one command run.
#[derive(Debug, Clone)]
pub struct Output {
    pub format: Format,
    pub field: Option<String>,
}

/// What separates table columns (columnize's `Glue` as Vault sets it).
const GLUE: &str = "    ";

impl Output {
    /// Print one line to stdout.
    pub fn line(&self, text: &str) {
        crate::outln!("{text}");
    }

    /// Print a warning block to stderr.
    pub fn warn(&self, text: &str) {
        eprintln!("{text}");
    }

    /// Whether output is a table (not JSON/YAML).
    pub fn is_table(&self) -> bool {
        matches!(self.format, Format::Table | Format::Raw)
    }

    /// Print `value` as JSON or YAML (for non-table formats).
    pub fn structured(&self, value: &Value) -> Result<(), CliError> {
        match self.format {
            Format::Yaml => {
                let text = yaml_serde::to_string(value)
                    .map_err(|e| CliError::usage(format!("Could not parse output: {e}")))?;
                crate::outln!("{}", text.trim());
            }
            _ => {
                let text = serde_json::to_string_pretty(value)
                    .map_err(|e| CliError::usage(format!("Could not parse output: {e}")))?;
                crate::outln!("{text}");
            }
        }
        Ok(())
    }

    /// Vault's `OutputSecret`: the response as a table (lease, auth, wrap info and data
    /// rows), or the whole response for JSON/YAML. Honours `-field`.
    pub fn secret(&self, secret: &Value) -> Result<i32, CliError> {
        if let Some(field) = &self.field {
            return self.raw_field(secret_field(secret, field), field);
        }
        if !self.is_table() {
            self.structured(secret)?;
            return Ok(0);
        }
        print_warnings(secret);
        let rows = secret_rows(secret);
        if !rows.is_empty() {
            crate::outln!("{}", key_value_table(rows));
        }
        Ok(0)
    }

    /// Vault's `OutputData` for a map: `Key/Value` table, or JSON/YAML of the map.
    /// Honours `-field` (a key of the map).
    pub fn data(&self, data: &Value) -> Result<i32, CliError> {
        if let Some(field) = &self.field {
            return self.raw_field(data.get(field).filter(|v| !v.is_null()), field);
        }
        if !self.is_table() {
            self.structured(data)?;
            return Ok(0);
        }
        if let Some(map) = data.as_object() {
            let rows = map_rows(map);
            if !rows.is_empty() {
                crate::outln!("{}", key_value_table(rows));
            }
        }
        Ok(0)
    }

    /// Vault's `OutputList`: a sorted `Keys` column, or the key array for JSON/YAML.
    pub fn list(&self, secret: &Value) -> Result<i32, CliError> {
        let keys = secret
            .get("data")
            .and_then(|d| d.get("keys"))
            .or_else(|| secret.get("keys"))
            .cloned()
            .unwrap_or(Value::Array(Vec::new()));
        if !self.is_table() {
            self.structured(&keys)?;
            return Ok(0);
        }
        print_warnings(secret);
        let mut names: Vec<String> = keys
            .as_array()
            .map(|a| a.iter().map(go_fmt).collect())
            .unwrap_or_default();
        names.sort();
        if !names.is_empty() {
            let mut rows = vec![vec!["Keys".to_string()], vec!["----".to_string()]];
            rows.extend(names.into_iter().map(|n| vec![n]));
            crate::outln!("{}", columnize(&rows));
        }
        Ok(0)
    }

    /// Vault's `PrintRawField`: the value alone (no newline when piped), or the value as
    /// JSON/YAML; a missing field is exit 1.
    pub fn raw_field(&self, value: Option<&Value>, field: &str) -> Result<i32, CliError> {
        let Some(value) = value else {
            return Err(CliError::usage(format!(
                "Field \"{field}\" not present in secret"
            )));
        };
        if self.is_table() {
            print_raw(&go_fmt(value));
        } else {
            self.structured(value)?;
        }
        Ok(0)
    }
}

/// Print text with a newline only on a terminal (Vault's `PrintRaw`), so
/// `$(coffer read -field=x ...)` and `> file` get the exact bytes.
pub fn print_raw(text: &str) {
    let mut out = std::io::stdout();
    if out.is_terminal() {
        let _ = writeln!(out, "{text}");
    } else {
        let _ = write!(out, "{text}");
    }
    let _ = out.flush();
}

/// Vault prints response warnings to stderr before a table.
pub fn print_warnings(secret: &Value) {
    let Some(warnings) = secret.get("warnings").and_then(Value::as_array) else {
        return;
    };
    if warnings.is_empty() {
        return;
    }
    eprintln!("WARNING! The following warnings were returned from the server:\n");
    for w in warnings {
        eprintln!("  * {}\n", go_fmt(w));
    }
}

/// The value of `-field=NAME` in a response, as Vault's `PrintRawField` finds it: the
/// `auth` block's token fields, `refresh_interval`, or a key of `data`.
pub fn secret_field<'a>(secret: &'a Value, field: &str) -> Option<&'a Value> {
    let auth = secret.get("auth").filter(|a| a.is_object());
    if let Some(auth) = auth {
        let key = match field {
            "token" => Some("client_token"),
            "token_accessor" => Some("accessor"),
            "token_duration" => Some("lease_duration"),
            "token_renewable" => Some("renewable"),
            "token_policies" => Some("token_policies"),
            "identity_policies" => Some("identity_policies"),
            "policies" => Some("policies"),
            _ => None,
        };
        if let Some(k) = key {
            return auth.get(k);
        }
    } else if let Some(wrap) = secret.get("wrap_info").filter(|w| w.is_object()) {
        let key = match field {
            "wrapping_token" => Some("token"),
            "wrapping_accessor" => Some("accessor"),
            "wrapping_token_ttl" => Some("ttl"),
            "wrapping_token_creation_time" => Some("creation_time"),
            "wrapping_token_creation_path" => Some("creation_path"),
            "wrapped_accessor" => Some("wrapped_accessor"),
            _ => None,
        };
        if let Some(k) = key {
            return wrap.get(k);
        }
    } else if field == "refresh_interval" {
        return secret.get("lease_duration");
    }
    secret
        .get("data")
        .and_then(|d| d.get(field))
        .filter(|v| !v.is_null())
}

/// Rows of Vault's `OutputSecret` table (without the header).
pub fn secret_rows(secret: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let lease_duration = secret
        .get("lease_duration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if lease_duration > 0 {
        let lease_id = secret.get("lease_id").and_then(Value::as_str).unwrap_or("");
        if lease_id.is_empty() {
            out.push(("refresh_interval".into(), human_duration(lease_duration)));
        } else {
            out.push(("lease_id".into(), lease_id.to_string()));
            out.push(("lease_duration".into(), human_duration(lease_duration)));
            out.push((
                "lease_renewable".into(),
                go_fmt(secret.get("renewable").unwrap_or(&Value::Bool(false))),
            ));
        }
    }
    if let Some(auth) = secret.get("auth").filter(|a| a.is_object()) {
        let s = |k: &str| auth.get(k).map(go_fmt).unwrap_or_default();
        out.push(("token".into(), s("client_token")));
        out.push(("token_accessor".into(), s("accessor")));
        let duration = auth
            .get("lease_duration")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        out.push((
            "token_duration".into(),
            if duration == 0 {
                "∞".to_string()
            } else {
                human_duration(duration)
            },
        ));
        out.push((
            "token_renewable".into(),
            go_fmt(auth.get("renewable").unwrap_or(&Value::Bool(false))),
        ));
        out.push((
            "token_policies".into(),
            go_quoted_list(auth.get("token_policies")),
        ));
        out.push((
            "identity_policies".into(),
            go_quoted_list(auth.get("identity_policies")),
        ));
        out.push(("policies".into(), go_quoted_list(auth.get("policies"))));
        if let Some(meta) = auth.get("metadata").and_then(Value::as_object) {
            let mut keys: Vec<&String> = meta.keys().collect();
            keys.sort();
            for k in keys {
                out.push((format!("token_meta_{k}"), go_fmt(&meta[k])));
            }
        }
    }
    if let Some(wrap) = secret.get("wrap_info").filter(|w| w.is_object()) {
        let s = |k: &str| wrap.get(k).map(go_fmt).unwrap_or_default();
        out.push(("wrapping_token:".into(), s("token")));
        out.push(("wrapping_accessor:".into(), s("accessor")));
        out.push((
            "wrapping_token_ttl:".into(),
            human_duration_value(wrap.get("ttl").unwrap_or(&Value::Null)),
        ));
        out.push(("wrapping_token_creation_time:".into(), s("creation_time")));
        out.push(("wrapping_token_creation_path:".into(), s("creation_path")));
        if !s("wrapped_accessor").is_empty() {
            out.push(("wrapped_accessor:".into(), s("wrapped_accessor")));
        }
    }
    if let Some(data) = secret.get("data").and_then(Value::as_object) {
        out.extend(map_rows(data));
    }
    out
}

/// Rows of a map, keys sorted, durations humanised.
pub fn map_rows(map: &Map<String, Value>) -> Vec<(String, String)> {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let v = &map[k];
            let text = if looks_like_duration(k) {
                human_duration_value(v)
            } else {
                go_fmt(v)
            };
            (k.clone(), text)
        })
        .collect()
}

/// A `Key  Value` table with its `---  -----` rule.
pub fn key_value_table(rows: Vec<(String, String)>) -> String {
    let mut all = vec![
        vec!["Key".to_string(), "Value".to_string()],
        vec!["---".to_string(), "-----".to_string()],
    ];
    all.extend(rows.into_iter().map(|(k, v)| vec![k, v]));
    columnize(&all)
}

/// A table with a header row and a dashed rule under each header cell.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut all = vec![
        header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        header.iter().map(|h| "-".repeat(h.len())).collect(),
    ];
    all.extend(rows);
    columnize(&all)
}

/// Align cells in columns (ryanuber/columnize as Vault configures it): cells trimmed,
/// empty cells shown as `n/a`, four spaces between columns, the last column unpadded.
pub fn columnize(rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| {
                    let t = c.trim();
                    if t.is_empty() {
                        "n/a".to_string()
                    } else {
                        t.to_string()
                    }
                })
                .collect()
        })
        .collect();
    let columns = cells.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns];
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut lines = Vec::with_capacity(cells.len());
    for row in &cells {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            line.push_str(c);
            if i + 1 < row.len() {
                let pad = widths[i] - c.chars().count();
                line.push_str(&" ".repeat(pad));
                line.push_str(GLUE);
            }
        }
        lines.push(line);
    }
    lines.join("\n")
}

/// Go's `%v` of a decoded JSON value: `<nil>`, `[a b]`, `map[k:v]`.
pub fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_fmt(&m[k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's `%q` of a string list: `["default" "ops"]` (`[]` for none).
pub fn go_quoted_list(v: Option<&Value>) -> String {
    let items: Vec<String> = v
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| match x {
                    Value::String(s) => format!("{s:?}"),
                    other => format!("\"{}\"", go_fmt(other)),
                })
                .collect()
        })
        .unwrap_or_default();
    format!("[{}]", items.join(" "))
}

/// Vault's `looksLikeDuration`: keys whose integer values are shown as durations.
pub fn looks_like_duration(k: &str) -> bool {
    k == "period"
        || k.ends_with("_period")
        || k == "ttl"
        || k.ends_with("_ttl")
        || k == "duration"
        || k.ends_with("_duration")
        || k == "lease_max"
        || k == "ttl_max"
}

/// Seconds as Vault shows them: Go's `time.Duration` string without the trailing
/// zero units (`768h`, `1h30m`, `45s`, `0s`).
pub fn human_duration(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = if h > 0 {
        format!("{sign}{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{sign}{m}m{sec}s")
    } else {
        format!("{sign}{sec}s")
    };
    if out.ends_with("m0s") {
        out.truncate(out.len() - 2);
    }
    if let Some(idx) = out.find("h0m") {
        out.replace_range(idx + 1..idx + 3, "");
    }
    out
}

/// Vault's `humanDurationInt`: integers (or integer strings) become durations, anything
/// else prints as it is.
pub fn human_duration_value(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => human_duration(i),
            None => n.to_string(),
        },
        Value::String(s) => match s.parse::<i64>() {
            Ok(i) => human_duration(i),
            Err(_) => s.clone(),
        },
        other => go_fmt(other),
    }
}

/// Vault's `padEqualSigns`: `==== Title ====` about `total` characters wide.
pub fn pad_equal_signs(title: &str, total: usize) -> String {
    let mut signs = total as i64 - (title.len() as i64 + 2);
    if signs <= 0 {
        signs = 4;
    }
    if signs % 2 != 0 {
        signs += 1;
    }
    let side = "=".repeat((signs / 2) as usize);
    format!("{side} {title} {side}")
}

/// Vault's `getHeaderForMap`: a section header as wide as the map's table.
pub fn header_for_map(title: &str, map: &Map<String, Value>) -> String {
    let max_key = map.keys().map(String::len).max().unwrap_or(0);
    pad_equal_signs(title, max_key + 4 + 5)
}

/// Vault's `outputPath`: a header, the path, and a blank line.
pub fn print_path(path: &str, title: &str) {
    crate::outln!("{}", pad_equal_signs(title, path.len()));
    crate::outln!("{path}");
    crate::outln!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_read_like_vaults() {
        for (secs, want) in [
            (0, "0s"),
            (45, "45s"),
            (60, "1m"),
            (90, "1m30s"),
            (3600, "1h"),
            (3605, "1h5s"),
            (3660, "1h1m"),
            (2_764_800, "768h"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
        assert_eq!(human_duration_value(&json!("3600")), "1h");
        assert_eq!(human_duration_value(&json!("0s")), "0s");
    }

    #[test]
    fn tables_align_like_columnize() {
        let t = key_value_table(vec![
            ("foo".into(), "bar".into()),
            ("deletion_time".into(), String::new()),
        ]);
        assert_eq!(
            t,
            "Key              Value\n\
             ---              -----\n\
             foo              bar\n\
             deletion_time    n/a"
        );
    }

    #[test]
    fn values_print_like_go() {
        assert_eq!(go_fmt(&json!(null)), "<nil>");
        assert_eq!(go_fmt(&json!(["a", 1])), "[a 1]");
        assert_eq!(go_fmt(&json!({"b": 1, "a": "x"})), "map[a:x b:1]");
        assert_eq!(
            go_quoted_list(Some(&json!(["default", "ops"]))),
            "[\"default\" \"ops\"]"
        );
        assert_eq!(go_quoted_list(None), "[]");
    }

    #[test]
    fn headers_pad_with_equal_signs() {
        assert_eq!(pad_equal_signs("Secret Path", 17), "== Secret Path ==");
        assert_eq!(pad_equal_signs("Secret Path", 14), "= Secret Path =");
        let map = json!({"created_time": 1, "custom_metadata": null, "version": 1});
        assert_eq!(
            header_for_map("Metadata", map.as_object().unwrap()),
            "======= Metadata ======="
        );
        assert_eq!(pad_equal_signs("Data", 12), "=== Data ===");
    }

    #[test]
    fn secret_rows_show_auth_and_data() {
        let secret = json!({
            "lease_duration": 2764800, "lease_id": "",
            "auth": {"client_token": "hvs.x", "accessor": "a", "lease_duration": 0,
                     "renewable": false, "policies": ["root"], "token_policies": ["root"],
                     "identity_policies": null},
            "data": {"ttl": 60, "foo": "bar"}
        });
        let rows = secret_rows(&secret);
        let get = |k: &str| rows.iter().find(|(a, _)| a == k).map(|(_, b)| b.clone());
        assert_eq!(get("refresh_interval").as_deref(), Some("768h"));
        assert_eq!(get("token").as_deref(), Some("hvs.x"));
        assert_eq!(get("token_duration").as_deref(), Some("∞"));
        assert_eq!(get("policies").as_deref(), Some("[\"root\"]"));
        assert_eq!(get("identity_policies").as_deref(), Some("[]"));
        assert_eq!(get("ttl").as_deref(), Some("1m"));
        assert_eq!(secret_field(&secret, "token"), Some(&json!("hvs.x")));
        assert_eq!(secret_field(&secret, "foo"), Some(&json!("bar")));
        assert_eq!(secret_field(&secret, "nope"), None);
    }
}

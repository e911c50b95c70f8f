//! Command input the way the `vault` CLI takes it: `key=value` arguments, `key=@file`
//! (the file's contents), `key=-` (standard input), a whole JSON object from `-` or
//! `@file.json`, repeated keys collected into a list (Vault's `kvbuilder`), and secrets
//! prompted for without echo.

use std::io::{IsTerminal, Read};

use serde_json::{Map, Value};

use crate::commands::CliError;

/// Builds a request body from `key=value`-style arguments.
#[derive(Default)]
pub struct DataBuilder {
    map: Map<String, Value>,
    stdin_used: bool,
}

fn read_stdin() -> Result<String, CliError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CliError::usage(format!("Failed to read from stdin: {e}")))?;
    Ok(text)
}

fn read_file(path: &str) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("Error reading file {path}: {e}")))
}

impl DataBuilder {
    /// Add one argument: `-`, `@file`, or `key=value` (value `@file`, `-`, or `\@...`
    /// for a literal leading `@`).
    pub fn add(&mut self, raw: &str) -> Result<(), CliError> {
        if raw.is_empty() {
            return Ok(());
        }
        let Some((key, value)) = raw.split_once('=') else {
            if raw == "-" {
                let text = self.take_stdin()?;
                return self.merge_json(&text, "stdin");
            }
            if let Some(path) = raw.strip_prefix('@') {
                let text = read_file(path)?;
                return self.merge_json(&text, path);
            }
            return Err(CliError::usage(format!(
                "Failed to parse K=V data: invalid key/value pair \"{raw}\": format must be key=value"
            )));
        };
        let value = if let Some(path) = value.strip_prefix('@') {
            read_file(path)?
        } else if let Some(rest) = value.strip_prefix("\\@") {
            format!("@{rest}")
        } else if value == "-" {
            self.take_stdin()?
        } else {
            value.to_string()
        };
        self.insert(key, Value::String(value));
        Ok(())
    }

    /// Add every argument in order.
    pub fn add_all<S: AsRef<str>>(&mut self, args: &[S]) -> Result<(), CliError> {
        for a in args {
            self.add(a.as_ref())?;
        }
        Ok(())
    }

    /// The collected body.
    pub fn finish(self) -> Map<String, Value> {
        self.map
    }

    fn take_stdin(&mut self) -> Result<String, CliError> {
        if self.stdin_used {
            return Err(CliError::usage(
                "Failed to parse K=V data: stdin already consumed",
            ));
        }
        self.stdin_used = true;
        read_stdin()
    }

    fn merge_json(&mut self, text: &str, source: &str) -> Result<(), CliError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            CliError::usage(format!("Failed to parse JSON data from {source}: {e}"))
        })?;
        let Value::Object(map) = value else {
            return Err(CliError::usage(format!(
                "Failed to parse JSON data from {source}: expected a JSON object"
            )));
        };
        for (k, v) in map {
            self.insert(&k, v);
        }
        Ok(())
    }

    /// Repeated keys become a list, as Vault's `kvbuilder` does.
    fn insert(&mut self, key: &str, value: Value) {
        match self.map.get_mut(key) {
            Some(Value::Array(list)) => list.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
            None => {
                self.map.insert(key.to_string(), value);
            }
        }
    }
}

/// Parse data arguments into a JSON object.
pub fn parse_data<S: AsRef<str>>(args: &[S]) -> Result<Map<String, Value>, CliError> {
    let mut b = DataBuilder::default();
    b.add_all(args)?;
    Ok(b.finish())
}

/// Parse repeated `-flag=k=v` options (e.g. `-options`, `-metadata`) into a map of
/// strings; the last of a repeated key wins.
pub fn parse_pairs(flag: &str, pairs: &[String]) -> Result<Map<String, Value>, CliError> {
    let mut map = Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            return Err(CliError::usage(format!(
                "Invalid value for -{flag}: \"{p}\" must be key=value"
            )));
        };
        map.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(map)
}

/// Read a secret without echo: a hidden prompt on a terminal, else one line of stdin
/// (so scripts can pipe a key in).
pub fn prompt_secret(prompt: &str) -> Result<String, CliError> {
    let value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt)
            .map_err(|e| CliError::usage(format!("Error reading from the terminal: {e}")))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CliError::usage(format!("Failed to read from stdin: {e}")))?;
        line
    };
    Ok(value.trim().to_string())
}

/// A flag value given as `@file` is the file's contents (Vault's `parseFlagFile`).
pub fn flag_file(value: &str) -> Result<String, CliError> {
    match value.strip_prefix('@') {
        Some(path) => read_file(path),
        None => Ok(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_values_and_files() {
        let dir = std::env::temp_dir().join(format!("coffer-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("v.txt");
        std::fs::write(&file, "from-file").unwrap();
        let json_file = dir.join("body.json");
        std::fs::write(&json_file, r#"{"n": 1, "s": "x"}"#).unwrap();
        let data = parse_data(&[
            "a=b".to_string(),
            format!("f=@{}", file.display()),
            "lit=\\@home".to_string(),
            "eq=x=y".to_string(),
            format!("@{}", json_file.display()),
            "r=1".to_string(),
            "r=2".to_string(),
        ])
        .unwrap();
        assert_eq!(
            Value::Object(data),
            json!({"a": "b", "f": "from-file", "lit": "@home", "eq": "x=y", "n": 1, "s": "x",
                   "r": ["1", "2"]})
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_pairs_are_usage_errors() {
        let e = parse_data(&["novalue"]).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.message.contains("key=value"));
        let e = parse_pairs("options", &["x".to_string()]).unwrap_err();
        assert!(e.message.contains("-options"));
    }
}

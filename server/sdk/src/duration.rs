//! Vault-style durations: a bare integer is seconds; otherwise a Go duration string
//! (`"1h30m"`, `"768h"`, `"500ms"`) with `d` accepted for days, as Vault's parseutil does.

use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}")]
pub struct DurationError(pub String);

/// Parse a duration string: `"30"`, `"30s"`, `"1h30m"`, `"7d"`, `"1.5h"`, `"0"`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let text = input.trim();
    let err = || DurationError(input.to_string());
    if text.is_empty() {
        return Err(err());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if !total.is_finite() || total < 0.0 || total > u64::MAX as f64 / 2.0 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parse a JSON value that Vault accepts as a duration: an integer (seconds) or a string.
pub fn duration_from_json(value: &serde_json::Value) -> Result<Duration, DurationError> {
    match value {
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(Duration::from_secs_f64)
            })
            .ok_or_else(|| DurationError(n.to_string())),
        serde_json::Value::String(s) => parse_duration(s),
        other => Err(DurationError(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vault_forms() {
        let cases = [
            ("30", 30.0),
            ("30s", 30.0),
            ("1h30m", 5400.0),
            ("768h", 2_764_800.0),
            ("7d", 604_800.0),
            ("1.5h", 5400.0),
            ("500ms", 0.5),
            ("0", 0.0),
        ];
        for (text, secs) in cases {
            assert_eq!(parse_duration(text).unwrap().as_secs_f64(), secs, "{text}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "h", "10x", "-5s", "1h-", "abc", "1..5s"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn json_forms() {
        assert_eq!(
            duration_from_json(&serde_json::json!(60)).unwrap(),
            Duration::from_secs(60)
        );
        assert_eq!(
            duration_from_json(&serde_json::json!("2m")).unwrap(),
            Duration::from_secs(120)
        );
        assert!(duration_from_json(&serde_json::json!(true)).is_err());
        assert!(duration_from_json(&serde_json::json!(-1)).is_err());
    }
}

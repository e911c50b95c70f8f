//! The wrapping-TTL values a policy may carry: an integer number of seconds, or a
//! string holding either an integer (seconds) or a Go duration (`"90s"`, `"1h30m"`,
//! `"1.5h"`, `"250ms"`), as Vault's `parseutil.ParseDurationSecond` accepts them. A
//! `d` unit (24h) is accepted too, as parseutil does.
//!
//! Private to this crate on purpose: the policies crate depends on no other crate of
//! ours.

use serde_json::Value;
use std::time::Duration;

const NANOS_PER_SECOND: u128 = 1_000_000_000;
/// Go's `time.Duration` is an `int64` of nanoseconds: nothing longer exists there.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parse a wrapping TTL given as a JSON/HCL value. `Ok(None)` means "not set" (Vault
/// treats a zero TTL and an empty string as unset).
pub(crate) fn parse_ttl(value: &Value) -> Result<Option<Duration>, String> {
    let duration = match value {
        Value::Number(n) => {
            if let Some(secs) = n.as_u64() {
                Duration::from_secs(secs)
            } else {
                match n.as_f64() {
                    Some(f)
                        if f.is_finite()
                            && f >= 0.0
                            && f <= (MAX_NANOS / NANOS_PER_SECOND) as f64 =>
                    {
                        Duration::from_secs_f64(f)
                    }
                    _ => return Err(format!("{n} is not a valid number of seconds")),
                }
            }
        }
        Value::String(s) => parse_duration(s)?,
        other => {
            return Err(format!(
                "expected seconds or a duration string, found {other}"
            ))
        }
    };
    Ok(Some(duration).filter(|d| !d.is_zero()))
}

/// Parse `"90"`, `"90s"`, `"1h30m"`, `"1.5h"`, `"2d"`; the empty string is zero.
fn parse_duration(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    let invalid = || format!("invalid duration {input:?}");
    if text.is_empty() {
        return Ok(Duration::ZERO);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text.parse().map_err(|_| invalid())?;
        return Ok(Duration::from_secs(secs));
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    if text.starts_with('-') {
        return Err(format!("negative duration {input:?}"));
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }
        let unit_len = after_number
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SECOND,
            "m" => 60 * NANOS_PER_SECOND,
            "h" => 3_600 * NANOS_PER_SECOND,
            "d" => 86_400 * NANOS_PER_SECOND,
            "" => return Err(format!("missing unit in duration {input:?}")),
            _ => return Err(format!("unknown unit {unit:?} in duration {input:?}")),
        };
        let whole: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| invalid())?
        };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(invalid)?;
        // The fraction contributes frac * unit / 10^len, truncated as Go does. Digits
        // past 30 cannot change the result for any unit here.
        let frac_digits = &frac_digits[..frac_digits.len().min(30)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits.parse().map_err(|_| invalid())?;
            let scale = 10u128.pow(frac_digits.len() as u32);
            nanos = nanos
                .checked_add(frac.checked_mul(unit_nanos).ok_or_else(invalid)? / scale)
                .ok_or_else(invalid)?;
        }
        total = total.checked_add(nanos).ok_or_else(invalid)?;
        if total > MAX_NANOS {
            return Err(format!("duration {input:?} is too long"));
        }
        rest = after_unit;
    }
    let secs = (total / NANOS_PER_SECOND) as u64;
    let subsec = (total % NANOS_PER_SECOND) as u32;
    Ok(Duration::new(secs, subsec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_vault_forms() {
        let cases = [
            (json!(90), 90_000),
            (json!("90"), 90_000),
            (json!("90s"), 90_000),
            (json!("1m"), 60_000),
            (json!("1h"), 3_600_000),
            (json!("1h30m"), 5_400_000),
            (json!("1.5h"), 5_400_000),
            (json!("250ms"), 250),
            (json!("2d"), 172_800_000),
            (json!("1m30s500ms"), 90_500),
            (json!(" 5s "), 5_000),
            (json!("+5s"), 5_000),
            (json!(".5s"), 500),
            (json!(1.5), 1_500),
        ];
        for (input, millis) in cases {
            let got = parse_ttl(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got, Some(Duration::from_millis(millis)), "{input}");
        }
    }

    #[test]
    fn zero_and_empty_mean_unset() {
        for input in [json!(0), json!("0"), json!("0s"), json!(""), json!("0h0m")] {
            assert_eq!(parse_ttl(&input), Ok(None), "{input}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for input in [
            json!("1x"),
            json!("h"),
            json!("1h30"),
            json!("-5s"),
            json!("abc"),
            json!("1..5s"),
            json!(-1),
            json!(true),
            json!(["1s"]),
            json!("9999999999999999999999h"),
        ] {
            assert!(parse_ttl(&input).is_err(), "{input} should not parse");
        }
    }
}

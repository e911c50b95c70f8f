//! Times as RFC 3339 text without a formatter, for the paths that print one per request
//! (audit lines, KV v2 metadata): `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` at fixed positions.

/// Length of `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub const RFC3339_NANOS_LEN: usize = 30;

/// `secs` and `nanos` since the Unix epoch as UTC RFC 3339 text with nine fractional
/// digits (what chrono's `SecondsFormat::Nanos` prints). `None` before 1970, after the
/// year 9999, or for `nanos` of a second or more (a leap second): callers format those
/// with chrono.
pub fn rfc3339_nanos(secs: i64, nanos: u32) -> Option<[u8; RFC3339_NANOS_LEN]> {
    let secs = u64::try_from(secs).ok()?;
    if nanos >= 1_000_000_000 {
        return None;
    }
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
    if year > 9999 {
        return None;
    }
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
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat};

    #[test]
    fn matches_chrono_from_1970_to_9999_and_refuses_the_rest() {
        let mut secs: i64 = 0;
        let mut nanos: u32 = 0;
        // Leap years and month ends included, odd nanos.
        while secs < 253_402_300_800 {
            let want = DateTime::from_timestamp(secs, nanos)
                .expect("in range")
                .to_rfc3339_opts(SecondsFormat::Nanos, true);
            let got = rfc3339_nanos(secs, nanos).expect("in range");
            assert_eq!(std::str::from_utf8(&got).unwrap(), want, "{secs}.{nanos}");
            secs += 86_399 * 31 + 3_601;
            nanos = (nanos + 123_456_789) % 1_000_000_000;
        }
        let last = rfc3339_nanos(253_402_300_799, 999_999_999).expect("9999-12-31");
        assert_eq!(&last, b"9999-12-31T23:59:59.999999999Z");
        assert_eq!(rfc3339_nanos(253_402_300_800, 0), None, "year 10000");
        assert_eq!(rfc3339_nanos(-1, 0), None, "before 1970");
        assert_eq!(rfc3339_nanos(0, 1_000_000_000), None, "leap second");
    }
}

//! Event-time parsing: RFC 3339 (fast path), Common Log Format, epoch numbers.

use crate::event::Millis;

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days in month `m` (1–12) of year `y`, proleptic Gregorian.
fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Latest time an epoch number may stand for: 9999-12-31T23:59:59.999Z. Beyond it a
/// number is not a time (`1e300` would saturate and poison every window after it).
const MAX_EPOCH_MS: f64 = 253_402_300_799_999.0;

fn digits(b: &[u8], i: usize, n: usize) -> Option<u32> {
    let s = b.get(i..i + n)?;
    let mut v = 0u32;
    for c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

/// RFC 3339 / ISO 8601: `2026-11-21T10:30:00Z`, `...00.123456+02:00`, a space for `T`,
/// or no zone (taken as UTC).
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let b = s.trim().as_bytes();
    let y = digits(b, 0, 4)? as i64;
    if *b.get(4)? != b'-' || *b.get(7)? != b'-' {
        return None;
    }
    let mo = digits(b, 5, 2)?;
    let d = digits(b, 8, 2)?;
    if !matches!(*b.get(10)?, b'T' | b't' | b' ') {
        return None;
    }
    let h = digits(b, 11, 2)?;
    let mi = digits(b, 14, 2)?;
    let sec = digits(b, 17, 2)?;
    if b[13] != b':'
        || b[16] != b':'
        || !(1..=12).contains(&mo)
        || !(1..=days_in_month(y, mo)).contains(&d)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut ms: i64 = 0;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
    }
    let offset_s: i64 = match b.get(i) {
        None => 0,
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(&c @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2)? as i64;
            let om = match b.get(i + 3) {
                Some(b':') => digits(b, i + 4, 2)?,
                _ => digits(b, i + 3, 2).unwrap_or(0),
            } as i64;
            let o = oh * 3600 + om * 60;
            if c == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + (h as i64) * 3600 + (mi as i64) * 60 + sec as i64 - offset_s;
    Some(secs * 1000 + ms)
}

/// Common Log Format time: `10/Oct/2000:13:55:36 -0700` (brackets optional).
pub fn parse_clf(s: &str) -> Option<Millis> {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    let b = s.as_bytes();
    let d = digits(b, 0, 2)?;
    let mon = match b.get(3..6)? {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    };
    let y = digits(b, 7, 4)? as i64;
    if !(1..=days_in_month(y, mon)).contains(&d) {
        return None;
    }
    let h = digits(b, 12, 2)?;
    let mi = digits(b, 15, 2)?;
    let sec = digits(b, 18, 2)?;
    let mut ms = 0i64;
    let mut i = 20;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        for _ in (i - start).min(3)..3 {
            ms *= 10;
        }
    }
    let offset = match b.get(i) {
        Some(b' ') => {
            let sign = *b.get(i + 1)?;
            let oh = digits(b, i + 2, 2)? as i64;
            let om = digits(b, i + 4, 2)? as i64;
            let o = oh * 3600 + om * 60;
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        None => 0,
        _ => return None,
    };
    let days = days_from_civil(y, mon, d);
    Some((days * 86_400 + h as i64 * 3600 + mi as i64 * 60 + sec as i64 - offset) * 1000 + ms)
}

/// An epoch number in seconds, milliseconds, microseconds or nanoseconds, told apart by size.
pub fn from_epoch(n: f64) -> Option<Millis> {
    if !n.is_finite() || n <= 0.0 {
        return None;
    }
    let ms = if n >= 1e17 {
        n / 1e6
    } else if n >= 1e14 {
        n / 1e3
    } else if n >= 1e11 {
        n
    } else {
        n * 1e3
    };
    (ms <= MAX_EPOCH_MS).then(|| ms.round() as Millis)
}

/// Any of the above, for a timestamp given as text.
pub fn parse_any(s: &str) -> Option<Millis> {
    let t = s.trim();
    if t.is_empty() || t == "-" {
        return None;
    }
    if let Some(ms) = parse_rfc3339(t) {
        return Some(ms);
    }
    if let Ok(n) = t.parse::<f64>() {
        return from_epoch(n);
    }
    if let Some(ms) = parse_clf(t) {
        return Some(ms);
    }
    chrono::DateTime::parse_from_rfc2822(t).ok().map(|d| d.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_variants() {
        assert_eq!(parse_rfc3339("2026-11-21T10:30:00Z"), Some(1_795_257_000_000));
        assert_eq!(parse_rfc3339("2026-11-21T10:30:00.5Z"), Some(1_795_257_000_500));
        assert_eq!(parse_rfc3339("2026-11-21T12:30:00.123456+02:00"), Some(1_795_257_000_123));
        assert_eq!(parse_rfc3339("2026-11-21 10:30:00"), Some(1_795_257_000_000));
        assert_eq!(parse_rfc3339("2016-04-15T20:17:00.310Z"), Some(1_460_751_420_310));
        assert_eq!(parse_rfc3339("2026-13-21T10:30:00Z"), None);
        assert_eq!(parse_rfc3339("garbage"), None);
        // agrees with chrono on a spread of instants
        for ms in [0i64, 951_782_400_000, 1_709_210_096_789, 4_102_444_800_000] {
            let s = chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339();
            assert_eq!(parse_rfc3339(&s), Some(ms), "{s}");
        }
    }

    #[test]
    fn clf_and_epochs() {
        assert_eq!(parse_clf("[10/Oct/2000:13:55:36 -0700]"), Some(971_211_336_000));
        assert_eq!(parse_clf("10/Oct/2000:13:55:36 +0000"), Some(971_186_136_000));
        assert_eq!(from_epoch(1_726_783_839.538), Some(1_726_783_839_538));
        assert_eq!(from_epoch(1_726_783_839_538.0), Some(1_726_783_839_538));
        assert_eq!(from_epoch(1.7267838395395e18), Some(1_726_783_839_540));
        assert_eq!(parse_any("1726783839538"), Some(1_726_783_839_538));
    }

    #[test]
    fn impossible_dates_and_huge_numbers_are_not_times() {
        assert_eq!(parse_rfc3339("2026-02-31T10:00:00Z"), None, "not March 3rd");
        assert_eq!(parse_rfc3339("2026-04-31T10:00:00Z"), None);
        assert_eq!(parse_rfc3339("2025-02-29T10:00:00Z"), None);
        assert!(parse_rfc3339("2024-02-29T10:00:00Z").is_some(), "a leap day");
        assert_eq!(parse_clf("31/Feb/2026:10:00:00 +0000"), None);
        assert_eq!(from_epoch(1e300), None);
        assert_eq!(parse_any("1e300"), None);
        assert_eq!(from_epoch(f64::MAX), None);
        assert!(parse_rfc3339("9999-12-31T23:59:59Z").is_some(), "far, but a time: the engine bounds it");
    }
}

//! Tyk, in three shapes:
//!
//! - the gateway access log as logrus text (logfmt), `prefix=access-log`
//!   (tyk ≥ 5, `internal/httputil/accesslog`): `api_id`, `api_name`, `org_id`,
//!   `api_key`, `client_ip`, `remote_addr`, `host`, `method`, `path` (no query),
//!   `protocol`, `status`, `latency_total` / `upstream_latency` (ms),
//!   `upstream_addr`, `user_agent`, `trace_id`. Its `time="Jan 29 08:27:09"` has
//!   **no year and no zone**: the year is taken from the message's receive time
//!   (the one that puts the record nearest to it), the zone is taken as UTC;
//!   without a receive time the record is rejected;
//! - the same access log in Tyk's JSON log format (`time` is RFC 3339);
//! - the Tyk pump's Kafka JSON (`pumps/kafka.go`): `timestamp`, `method`,
//!   `path`/`raw_path`, `response_code`, `alias` (key alias → principal),
//!   `api_key`, `oauth_id` (OAuth client id → client), `raw_request` (base64 of
//!   the request, **with its Authorization / API-key headers** when detailed
//!   recording is on), `request_time_ms`, `ip_address`, `host`, `user_agent`.
//!   It has no upstream latency, no response size and no request id.
//!
//! `api_key` is the raw key, or its hash when `hash_keys` is on: either way it is
//! fingerprinted (a hash still identifies one key). `00000000` means
//! unauthenticated; `****abcd` (obfuscated, last four characters) is not a usable
//! identity and is ignored.

use std::borrow::Cow;

use base64::Engine as _;
use serde::Deserialize;

use super::fields::{parse_num_str, Num, Str};
use super::text::{unescape, Logfmt};
use super::{client_ip::parse_ip, time, Normalizer, Parts, Reject, RejectReason};
use crate::event::{ClientIdSource, Event, Millis};

/// The access-log fields, from logfmt or JSON.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Access<'a> {
    #[serde(borrow)]
    time: Str<'a>,
    #[serde(borrow)]
    api_id: Str<'a>,
    #[serde(borrow)]
    api_key: Str<'a>,
    #[serde(borrow)]
    client_ip: Str<'a>,
    #[serde(borrow)]
    remote_addr: Str<'a>,
    #[serde(borrow)]
    host: Str<'a>,
    #[serde(borrow)]
    method: Str<'a>,
    #[serde(borrow)]
    path: Str<'a>,
    status: Num,
    latency_total: Num,
    upstream_latency: Num,
    #[serde(borrow)]
    upstream_addr: Str<'a>,
    #[serde(borrow)]
    user_agent: Str<'a>,
    #[serde(borrow)]
    trace_id: Str<'a>,
    #[serde(borrow)]
    api_name: Str<'a>,
    // pump
    #[serde(borrow)]
    timestamp: Str<'a>,
    #[serde(borrow)]
    raw_path: Str<'a>,
    response_code: Num,
    #[serde(borrow)]
    alias: Str<'a>,
    #[serde(borrow)]
    oauth_id: Str<'a>,
    #[serde(borrow)]
    raw_request: Str<'a>,
    request_time_ms: Num,
    #[serde(borrow)]
    ip_address: Str<'a>,
}

fn set<'a>(slot: &mut Str<'a>, value: &'a str, escaped: bool) {
    slot.0 = Some(if escaped { Cow::Owned(unescape(value)) } else { Cow::Borrowed(value) });
}

fn from_logfmt(line: &str) -> Access<'_> {
    let mut a = Access::default();
    for p in Logfmt::new(line) {
        let slot = match p.key {
            "time" => &mut a.time,
            "api_id" => &mut a.api_id,
            "api_key" => &mut a.api_key,
            "client_ip" => &mut a.client_ip,
            "remote_addr" => &mut a.remote_addr,
            "host" => &mut a.host,
            "method" => &mut a.method,
            "path" => &mut a.path,
            "upstream_addr" => &mut a.upstream_addr,
            "user_agent" => &mut a.user_agent,
            "trace_id" => &mut a.trace_id,
            "api_name" => &mut a.api_name,
            "status" => {
                a.status = Num(parse_num_str(p.value));
                continue;
            }
            "latency_total" => {
                a.latency_total = Num(parse_num_str(p.value));
                continue;
            }
            "upstream_latency" => {
                a.upstream_latency = Num(parse_num_str(p.value));
                continue;
            }
            _ => continue,
        };
        set(slot, p.value, p.escaped);
    }
    a
}

/// `Jan 29 08:27:09` (logrus text time, no year): the year that puts it nearest `received`.
fn yearless(t: &str, received: Millis) -> Option<Millis> {
    use chrono::Datelike;
    let year = chrono::DateTime::from_timestamp_millis(received)?.year();
    (year - 1..=year + 1).filter_map(|y| in_year(t, y)).min_by_key(|ms| (ms - received).abs())
}

/// `Jan 29 08:27:09` in year `year`, UTC.
fn in_year(t: &str, year: i32) -> Option<Millis> {
    use chrono::NaiveDate;
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let mut it = t.split_whitespace();
    let (mon, day, hms) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == mon)? as u32 + 1;
    let day: u32 = day.parse().ok()?;
    let hms = hms.as_bytes();
    let two = |i: usize| -> Option<i64> {
        let (a, b) = (*hms.get(i)?, *hms.get(i + 1)?);
        (a.is_ascii_digit() && b.is_ascii_digit()).then(|| ((a - b'0') * 10 + (b - b'0')) as i64)
    };
    if hms.len() != 8 || hms[2] != b':' || hms[5] != b':' {
        return None;
    }
    let (h, m, sec) = (two(0)?, two(3)?, two(6)?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let d = NaiveDate::from_ymd_opt(year, month, day)?;
    Some((d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp() + h * 3600 + m * 60 + sec) * 1000)
}

/// Logrus text time without a year: `Jan 29 08:27:09`.
fn is_yearless(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 15 && b[0].is_ascii_uppercase() && b[3] == b' ' && b[9] == b':'
}

fn usable_key(k: &str) -> Option<&str> {
    (!k.starts_with("****") && k != "--").then_some(k)
}

pub fn parse(n: &Normalizer, rec: &[u8], received: Option<Millis>) -> Result<Event, Reject> {
    let a: Access<'_> = if rec.first() == Some(&b'{') {
        super::fields::from_json(rec).map_err(|e| Reject::json(&e))?
    } else {
        let line =
            crate::bytes::utf8(rec).ok_or_else(|| Reject::new(RejectReason::Malformed, "Tyk line: not UTF-8"))?;
        from_logfmt(line)
    };
    let ts = match a.timestamp.get().or_else(|| a.time.get()) {
        None => None,
        Some(t) => match (!is_yearless(t)).then(|| time::parse_any(t)).flatten() {
            Some(ms) => Some(ms),
            None => match (received, n.year) {
                (Some(r), _) => Some(
                    yearless(t, r)
                        .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "Tyk time is not a timestamp"))?,
                ),
                (None, Some(y)) => Some(
                    in_year(t, y)
                        .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "Tyk time is not a timestamp"))?,
                ),
                (None, None) => return Err(Reject::new(
                    RejectReason::MissingTimestamp,
                    "Tyk text time has no year: replay it with --year (or [input] year), or log in Tyk's JSON format",
                )),
            },
        },
    };

    // Pump detailed recording: the raw request, headers and all.
    let decoded = a.raw_request.get().and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok());
    let raw_text = decoded.as_deref().map(String::from_utf8_lossy);
    let (mut authorization, mut header_key, mut cookie) = (None, None, None);
    if let Some(t) = raw_text.as_deref() {
        for line in t.split('\n').skip(1).map(|l| l.trim_end_matches('\r')) {
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value);
            } else if name.eq_ignore_ascii_case("x-api-key") || name.eq_ignore_ascii_case("x-tyk-authorization") {
                header_key = Some(value);
            } else if name.eq_ignore_ascii_case("cookie") {
                cookie = Some(value);
            }
        }
    }

    // Access log: `remote_addr` is the socket peer, `client_ip` Tyk's XFF/X-Real-IP
    // reading, followed only when the peer is a trusted proxy. Pump: `ip_address` only.
    let (peer, xff) = match a.remote_addr.get().and_then(parse_ip) {
        Some(p) => (Some(p), a.client_ip.get()),
        None => (a.client_ip.get().or_else(|| a.ip_address.get()).and_then(parse_ip), None),
    };
    let parts = Parts {
        ts,
        method: a.method.get(),
        host: a.host.get(),
        uri: a.raw_path.get().or_else(|| a.path.get()),
        status: a.status.0.or(a.response_code.0),
        latency_ms: a.latency_total.0.or(a.request_time_ms.0),
        upstream_latency_ms: a.upstream_latency.0,
        user_agent: a.user_agent.get(),
        request_id: a.trace_id.get(),
        peer,
        xff,
        upstream: a.api_name.get().or_else(|| a.api_id.get()),
        creds: super::identity::RawCredentials {
            consumer_id: a.oauth_id.get(),
            consumer_name: a.alias.get(),
            // From the session Tyk found for the key or OAuth token it checked.
            consumer_source: ClientIdSource::Gateway,
            authorization,
            api_key: a.api_key.get().and_then(usable_key).or(header_key),
            cookie,
            ..Default::default()
        },
        ..Default::default()
    };
    n.build("tyk", parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Format;

    #[test]
    fn yearless_time_takes_the_nearest_year() {
        let dec31 = time::parse_rfc3339("2025-12-31T23:59:00Z").unwrap();
        assert_eq!(yearless("Jan  1 00:01:00", dec31), time::parse_rfc3339("2026-01-01T00:01:00Z"));
        let jan = time::parse_rfc3339("2025-02-01T00:00:00Z").unwrap();
        assert_eq!(yearless("Jan 29 08:27:09", jan), time::parse_rfc3339("2025-01-29T08:27:09Z"));
        assert_eq!(yearless("garbage", jan), None);
        assert_eq!(in_year("Feb 29 00:00:00", 2025), None, "no such day that year");
        assert_eq!(in_year("Feb 29 12:00:00", 2024), time::parse_rfc3339("2024-02-29T12:00:00Z"));
    }

    #[test]
    fn pump_raw_request_headers_are_fingerprinted() {
        let n = Normalizer::new(Format::Tyk, b"k");
        let raw = base64::engine::general_purpose::STANDARD
            .encode("GET /get HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pump-secret-token\r\n\r\n");
        let rec = format!(
            r#"{{"timestamp":"2025-01-29T08:27:09Z","method":"GET","path":"/get","raw_path":"/get","response_code":200,"alias":"portal-dev","api_key":"00000000","oauth_id":"oauth-app-1","raw_request":"{raw}","request_time_ms":7,"ip_address":"203.0.113.5","api_id":"a1","tags":[]}}"#
        );
        let ev = parse(&n, rec.as_bytes(), None).unwrap();
        assert_eq!(ev.client_id.as_deref(), Some("oauth-app-1"));
        assert_eq!(ev.subject.as_deref(), Some("portal-dev"));
        assert_eq!(ev.token_fingerprint, Some(n.fingerprinter.fingerprint(b"pump-secret-token")));
        assert_eq!(ev.latency_ms, Some(7.0));
        assert!(!serde_json::to_string(&ev).unwrap().contains("pump-secret"));
    }

    #[test]
    fn text_without_receive_time_is_rejected_clearly() {
        let n = Normalizer::new(Format::Tyk, b"k");
        let r = parse(&n, br#"time="Jan 29 08:27:09" prefix=access-log status=200"#, None).unwrap_err();
        assert_eq!(r.reason, RejectReason::MissingTimestamp);
        assert!(r.detail.contains("--year"), "{}", r.detail);
        let n = Normalizer { year: Some(2025), ..Normalizer::new(Format::Tyk, b"k") };
        let ev = parse(&n, br#"time="Jan 29 08:27:09" prefix=access-log status=200"#, None).unwrap();
        assert_eq!(Some(ev.ts), time::parse_rfc3339("2025-01-29T08:27:09Z"), "the year given");
    }
}

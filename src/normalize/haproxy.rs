//! HAProxy's HTTP log (`option httplog`), split by hand (no regex):
//!
//! ```text
//! %ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs %{+Q}r
//! 127.0.0.1:51234 [06/Dec/2026:10:00:00.123] fe be/srv1 0/0/1/2/3 200 512 - - ---- 1/1/0/0/0 0/0 {h1|h2} {r1} "GET /p?q HTTP/1.1"
//! ```
//!
//! as written by `log stdout format raw` or to a file, or behind a syslog header
//! (`<134>Dec  6 10:00:00 haproxy[123]: `, RFC 5424's `<134>1 2026-12-06T10:00:00+00:00 host
//! haproxy 123 - - `, rsyslog's `Dec  6 10:00:00 host haproxy[123]: `): the line is read from
//! the client address before the first `[dd/Mon/yyyy:hh:mm:ss.mmm]`.
//!
//! - Time: the accept date, local time with milliseconds and **no zone**: read as UTC (run
//!   HAProxy with `TZ=UTC`, as containers do, or the events are off by the zone's offset).
//! - Timers in ms, `-1` when the step never happened: `Ta` (total) → `latency_ms`, `Tr`
//!   (server response) → `upstream_latency_ms`; a `+` (`option logasap`) is dropped.
//! - `%B` (bytes sent to the client, headers included) → `bytes_sent`; the backend is the upstream.
//! - Header captures (`capture request header Authorization len 512`) are logged as values
//!   only, `{v1|v2|…}` in the order of the `capture` lines, request block first. Which header
//!   each position holds is configured (`[input.haproxy] request_captures`, default
//!   [`DEFAULT_REQUEST_CAPTURES`]). HAProxy writes `"`, `#`, `{`, `|`, `}` and bytes outside
//!   printable ASCII as `#XX`; they are decoded (in the request line too).
//! - Identity: a captured `Authorization` (bearer, basic, API key) or `X-Api-Key` goes the way
//!   every format's does (fingerprinted, the raw value dropped); a captured `Cookie` header,
//!   else the `capture cookie` value `%CC`, is read for token cookies; `X-Forwarded-For` is
//!   trusted only from `[normalize] trusted_proxies`; the query string is fingerprinted.

use std::borrow::Cow;

use memchr::memchr_iter;

use super::text::{int, split_request_line, Scanner};
use super::{client_ip::parse_ip, time, Normalizer, Parts, Reject, RejectReason};
use crate::config::HaproxyInputConfig;
use crate::event::Event;

/// The request capture order assumed when `[input.haproxy] request_captures` is not set.
pub const DEFAULT_REQUEST_CAPTURES: &[&str] = &["Host", "User-Agent", "X-Forwarded-For", "Authorization"];

/// What a captured request header is to gatewatch: the headers it reads, or one it skips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Captured {
    Host,
    UserAgent,
    XForwardedFor,
    Authorization,
    /// `X-Api-Key` or `apikey`.
    ApiKey,
    Cookie,
    RequestId,
    /// Any other header: its position is skipped.
    Other,
}

impl Captured {
    /// The meaning of a header name (case-insensitive, as HTTP's).
    pub fn of(name: &str) -> Captured {
        const NAMES: &[(&str, Captured)] = &[
            ("host", Captured::Host),
            ("user-agent", Captured::UserAgent),
            ("x-forwarded-for", Captured::XForwardedFor),
            ("authorization", Captured::Authorization),
            ("x-api-key", Captured::ApiKey),
            ("apikey", Captured::ApiKey),
            ("cookie", Captured::Cookie),
            ("x-request-id", Captured::RequestId),
        ];
        let name = name.trim();
        NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map_or(Captured::Other, |(_, c)| *c)
    }
}

/// A header name as HTTP defines one (RFC 9110 `token`): what `request_captures` may hold.
pub fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// The positions of the request header captures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captures {
    request: Vec<Captured>,
}

impl Default for Captures {
    fn default() -> Self {
        Captures::new(DEFAULT_REQUEST_CAPTURES)
    }
}

impl Captures {
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        Captures { request: names.iter().map(|n| Captured::of(n.as_ref())).collect() }
    }

    pub fn from_config(c: &HaproxyInputConfig) -> Self {
        c.request_captures.as_deref().map_or_else(Captures::default, Captures::new)
    }
}

fn malformed(what: &str) -> Reject {
    Reject::new(RejectReason::Malformed, format!("HAProxy line: {what}"))
}

/// `dd/Mon/yyyy:hh:mm:ss.` at the start of `b`: HAProxy's accept date always carries
/// milliseconds, NGINX's `$time_local` never does.
fn is_accept_date(b: &[u8]) -> bool {
    b.len() >= 21
        && super::detect::is_clf_time(b)
        && b[12..20].iter().enumerate().all(|(i, c)| if i % 3 == 2 { *c == b':' } else { c.is_ascii_digit() })
        && b[20] == b'.'
}

/// Where the log line proper starts (its client address), after any syslog header: the word
/// before the first `[dd/Mon/yyyy:…` bracket, when that date has HAProxy's milliseconds.
pub fn body_start(b: &[u8]) -> Option<usize> {
    let open = memchr_iter(b'[', b).find(|&o| o + 12 <= b.len() && b[o + 1].is_ascii_digit() && b[o + 3] == b'/')?;
    if open < 2 || b[open - 1] != b' ' || !is_accept_date(&b[open + 1..]) {
        return None;
    }
    let before = &b[..open - 1];
    Some(before.iter().rposition(|c| *c == b' ').map_or(0, |i| i + 1))
}

/// A timer: ms, `-1` when the step did not happen, `+` before it under `option logasap`.
fn timer(s: &str) -> Result<Option<f64>, Reject> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "-1" {
        return Ok(None);
    }
    int(s).map(Some).ok_or_else(|| malformed("a timer is not a number"))
}

/// `a/b/c…` with exactly `n` numeric parts (`+` allowed, as on a redispatch's retry count).
fn counters(s: Option<&str>, n: usize, what: &str) -> Result<(), Reject> {
    let ok = s.is_some_and(|s| {
        s.split('/').count() == n && s.split('/').all(|p| int(p.strip_prefix('+').unwrap_or(p)).is_some())
    });
    if ok {
        Ok(())
    } else {
        Err(malformed(what))
    }
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Undoes HAProxy's `#XX` escapes; a `#` not followed by two hex digits stays as it is.
fn unhash(v: &str) -> Cow<'_, str> {
    if !v.contains('#') {
        return Cow::Borrowed(v);
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'#' {
            if let (Some(h), Some(l)) = (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let line = crate::bytes::utf8(rec).ok_or_else(|| malformed("not UTF-8"))?;
    let start = body_start(rec).ok_or_else(|| malformed("no client address before an [accept date] with ms"))?;
    let mut s = Scanner::new(&line[start..]);
    let client = s.word().ok_or_else(|| malformed("no client address"))?;
    let peer = client.rsplit_once(':').and_then(|(ip, _port)| parse_ip(ip));
    let date = s.bracketed().ok_or_else(|| malformed("no [accept date]"))?;
    let ts = time::parse_clf(date)
        .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "accept date is not dd/Mon/yyyy:hh:mm:ss.mmm"))?;
    let _frontend = s.word().ok_or_else(|| malformed("no frontend"))?;
    let (backend, _server) = s.word().and_then(|w| w.split_once('/')).ok_or_else(|| malformed("no backend/server"))?;
    let timers: Vec<&str> = s.word().ok_or_else(|| malformed("no timers"))?.split('/').collect();
    let [t_req, tw, tc, tr, ta] = timers[..] else {
        return Err(malformed("timers are not TR/Tw/Tc/Tr/Ta"));
    };
    let [_, _, _, upstream_latency_ms, latency_ms] = [timer(t_req)?, timer(tw)?, timer(tc)?, timer(tr)?, timer(ta)?];
    let status = match s.word().ok_or_else(|| malformed("no status"))? {
        "-1" => None,
        st => Some(int(st).ok_or_else(|| malformed("status is not a number"))?),
    };
    let bytes = s.word().ok_or_else(|| malformed("no bytes_read"))?;
    let bytes = int(bytes.strip_prefix('+').unwrap_or(bytes)).ok_or_else(|| malformed("bytes_read is not a number"))?;
    let request_cookie = s.word().ok_or_else(|| malformed("no captured request cookie"))?;
    let _response_cookie = s.word().ok_or_else(|| malformed("no captured response cookie"))?;
    let _termination = s.word().ok_or_else(|| malformed("no termination state"))?;
    counters(s.word(), 5, "connections are not actconn/feconn/beconn/srv_conn/retries")?;
    counters(s.word(), 2, "queues are not srv_queue/backend_queue")?;
    let mut blocks = [None, None];
    for b in &mut blocks {
        if s.peek() == Some(b'{') {
            *b = Some(s.braced().ok_or_else(|| malformed("header captures not closed by }"))?);
        }
    }
    // One block alone is the request's, unless no request header is captured.
    let request_block = if blocks[1].is_some() || !n.haproxy.request.is_empty() { blocks[0] } else { None };
    let request = s.quoted().ok_or_else(|| malformed("no quoted request line (an `option tcplog` line?)"))?;
    let request = unhash(request);
    let (method, uri) = split_request_line(&request);

    let captured: Vec<Cow<'_, str>> = request_block.map(|b| b.split('|').map(unhash).collect()).unwrap_or_default();
    let header = |want: Captured| -> Option<&str> {
        n.haproxy
            .request
            .iter()
            .zip(&captured)
            .find(|(c, _)| **c == want)
            .map(|(_, v)| v.as_ref())
            .filter(|v| !v.is_empty())
    };
    let parts = Parts {
        ts: Some(ts),
        method,
        host: header(Captured::Host),
        uri,
        status,
        latency_ms,
        upstream_latency_ms,
        bytes_sent: Some(bytes),
        user_agent: header(Captured::UserAgent),
        request_id: header(Captured::RequestId),
        peer,
        xff: header(Captured::XForwardedFor),
        upstream: Some(backend),
        creds: super::identity::RawCredentials {
            authorization: header(Captured::Authorization),
            api_key: header(Captured::ApiKey),
            cookie: header(Captured::Cookie).or(Some(request_cookie).filter(|c| *c != "-")),
            ..Default::default()
        },
        ..Default::default()
    };
    n.build("haproxy", parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{Format, TrustedProxies};

    const TOKEN: &str = "hx7Qe2VrT9mZpL4sKd8WnY3c";

    fn norm() -> Normalizer {
        Normalizer::new(Format::Haproxy, b"test-key-0123456789")
    }

    fn line(prefix: &str) -> String {
        format!(
            "{prefix}127.0.0.1:51234 [06/Dec/2026:10:00:00.123] fe~ api/srv1 0/0/1/25/31 200 512 - - ---- 1/1/0/0/0 0/0 \
             {{api.example.com|curl/8.5 #7Bx#7C#7D|203.0.113.9|Bearer {TOKEN}}} {{application/json}} \
             \"GET /v1/orders/42?page=2 HTTP/1.1\""
        )
    }

    #[test]
    fn httplog_with_request_and_response_captures() {
        let n = norm();
        let ev = parse(&n, line("").as_bytes()).unwrap();
        assert_eq!(ev.gateway, "haproxy");
        assert_eq!(ev.ts, time::parse_clf("06/Dec/2026:10:00:00 +0000").unwrap() + 123);
        assert_eq!((ev.latency_ms, ev.upstream_latency_ms), (Some(31.0), Some(25.0)));
        assert_eq!((ev.status, ev.bytes_sent), (Some(200), Some(512)));
        assert_eq!(ev.upstream.as_deref(), Some("api"));
        assert_eq!(ev.host.as_deref(), Some("api.example.com"));
        assert_eq!(ev.user_agent.as_deref(), Some("curl/8.5 {x|}"), "#XX escapes decoded");
        assert_eq!(ev.route.as_deref(), Some("GET /v1/orders/{id}"));
        assert_eq!(ev.token_fingerprint, Some(n.fingerprinter.fingerprint(TOKEN.as_bytes())));
        // the forwarded address only counts from a trusted proxy
        assert_eq!(ev.source_ip.unwrap().to_string(), "127.0.0.1");
        let mut trusting = norm();
        trusting.proxies = TrustedProxies::new(&["127.0.0.1/32".into()]);
        let ev = parse(&trusting, line("").as_bytes()).unwrap();
        assert_eq!(ev.source_ip.unwrap().to_string(), "203.0.113.9");
        assert!(!serde_json::to_string(&ev).unwrap().contains(TOKEN));
    }

    #[test]
    fn syslog_headers_are_skipped() {
        let n = norm();
        let raw = parse(&n, line("").as_bytes()).unwrap();
        for prefix in [
            "<134>Dec  6 10:00:00 haproxy[123]: ",
            "<134>1 2026-12-06T10:00:00.123456+00:00 lb1 haproxy 123 - - ",
            "Dec  6 10:00:00 lb1 haproxy[123]: ",
        ] {
            assert_eq!(parse(&n, line(prefix).as_bytes()).unwrap(), raw, "{prefix}");
        }
    }

    #[test]
    fn the_documented_example_no_captures_and_absent_timers() {
        let n = norm();
        // HAProxy's configuration manual, section 8.2.3 "HTTP log format" (a request and an
        // empty response capture block)
        let doc = br#"haproxy[14389]: 10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 {1wt.eu} {} "GET /index.html HTTP/1.1""#;
        let ev = parse(&n, doc).unwrap();
        assert_eq!((ev.method.as_deref(), ev.path.as_deref()), (Some("GET"), Some("/index.html")));
        assert_eq!((ev.latency_ms, ev.upstream_latency_ms), (Some(109.0), Some(69.0)));
        assert_eq!((ev.host.as_deref(), ev.upstream.as_deref()), (Some("1wt.eu"), Some("static")));
        // no captures declared
        let bare = br#"10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 1/1/1/1/0 0/0 "HEAD / HTTP/1.0""#;
        let ev = parse(&n, bare).unwrap();
        assert_eq!((ev.method.as_deref(), ev.host), (Some("HEAD"), None));
        // a request refused by HAProxy itself: no server, no response timer; logasap's `+`
        let refused = b"10.0.0.1:4000 [06/Dec/2026:10:00:00.000] fe be/<NOSRV> 0/-1/-1/-1/+0 403 +192 - - PR-- 1/1/0/0/0 0/0 \"GET /admin HTTP/1.1\"";
        let ev = parse(&n, refused).unwrap();
        assert_eq!(
            (ev.status, ev.upstream_latency_ms, ev.latency_ms, ev.bytes_sent),
            (Some(403), None, Some(0.0), Some(192))
        );
        let ipv6 = b"::1:8080 [06/Dec/2026:10:00:00.000] fe be/s 0/0/0/0/0 -1 0 - - CR-- 1/1/0/0/0 0/0 \"<BADREQ>\"";
        let ev = parse(&n, ipv6).unwrap();
        assert_eq!((ev.source_ip.unwrap().to_string().as_str(), ev.status, ev.method.as_deref()), ("::1", None, None));
    }

    #[test]
    fn capture_positions_come_from_the_config() {
        let mut n = norm();
        n.haproxy = Captures::new(&["X-Request-Id", "Authorization", "Referer"]);
        let rec = format!("10.0.0.1:4000 [06/Dec/2026:10:00:00.000] fe be/s 0/0/0/1/1 401 10 - - ---- 1/1/0/0/0 0/0 {{r-77|Basic {TOKEN}|https://x/}} \"GET / HTTP/1.1\"");
        let ev = parse(&n, rec.as_bytes()).unwrap();
        assert_eq!(ev.request_id.as_deref(), Some("r-77"));
        assert!(ev.token_fingerprint.is_some() && ev.host.is_none());
        // no request header captured: a single block is the response's
        n.haproxy = Captures::new::<&str>(&[]);
        let ev = parse(&n, rec.as_bytes()).unwrap();
        assert_eq!((ev.request_id, ev.token_fingerprint), (None, None));
        // fewer values than positions (a shorter capture list than configured) is no error
        n.haproxy = Captures::default();
        let short = "10.0.0.1:4000 [06/Dec/2026:10:00:00.000] fe be/s 0/0/0/1/1 200 10 - - ---- 1/1/0/0/0 0/0 {h.example} \"GET / HTTP/1.1\"";
        assert_eq!(parse(&n, short.as_bytes()).unwrap().host.as_deref(), Some("h.example"));
        // a token cookie captured with `capture cookie`
        let cookie = format!("10.0.0.1:4000 [06/Dec/2026:10:00:00.000] fe be/s 0/0/0/1/1 200 10 access_token={TOKEN} - ---- 1/1/0/0/0 0/0 \"GET / HTTP/1.1\"");
        assert!(parse(&n, cookie.as_bytes()).unwrap().token_fingerprint.is_some());
    }

    #[test]
    fn captures_are_configured_under_input_haproxy() {
        let cfg: crate::config::GatewatchConfig =
            toml::from_str("[input.haproxy]\nrequest_captures = [\"Authorization\", \"X Bad\"]\n").unwrap();
        let errs: Vec<String> = cfg.validate().iter().map(ToString::to_string).collect();
        assert!(errs.iter().any(|e| e.contains("input.haproxy.request_captures[1]")), "{errs:?}");
        let n = Normalizer::from_config(&cfg, Format::Haproxy, b"k");
        assert_eq!(n.haproxy, Captures::new(&["Authorization", "X Bad"]));
        let unset = Normalizer::from_config(&Default::default(), Format::Haproxy, b"k");
        assert_eq!(unset.haproxy, Captures::default());
    }

    #[test]
    fn header_names() {
        assert_eq!(Captured::of("authorization"), Captured::Authorization);
        assert_eq!(Captured::of("X-API-Key"), Captured::ApiKey);
        assert_eq!(Captured::of("Referer"), Captured::Other);
        assert!(is_header_name("X-Forwarded-For"));
        assert!(!is_header_name("X Forwarded") && !is_header_name("") && !is_header_name("a:b"));
    }

    #[test]
    fn bad_lines_are_rejected_with_a_reason_never_a_panic() {
        let n = norm();
        let cases: &[(&str, &str)] = &[
            ("", "no client address"),
            ("127.0.0.1:1 [06/Dec/2026:10:00:00] fe be/s", "accept date"),
            ("127.0.0.1:1 [06/Dec/2026:10:00:00.1] fe", "backend/server"),
            ("127.0.0.1:1 [06/Dec/2026:10:00:00.1] fe be/s 0/0/1 200", "timers"),
            ("127.0.0.1:1 [06/Dec/2026:10:00:00.1] fe be/s 0/0/a/1/1 200", "timer"),
            ("127.0.0.1:1 [06/Dec/2026:10:00:00.1] fe be/s 0/0/0/1/1 2xx 1", "status"),
            ("127.0.0.1:1 [06/Dec/2026:10:00:00.1] fe be/s 0/0/0/1/1 200 1 - - ---- 1/1/0 0/0 \"GET / HTTP/1.1\"", "connections"),
            ("127.0.0.1:1 [06/Dec/2026:10:00:00.1] fe be/s 0/0/0/1/1 200 1 - - ---- 1/1/0/0/0 0/0 {a|b \"GET / HTTP/1.1\"", "not closed"),
            // `option tcplog`: no request line
            ("127.0.0.1:1 [06/Dec/2026:10:00:00.1] fe be/s 0/0/5001 212 -- 1/1/0/0/0 0/0", "timers"),
            ("127.0.0.1:1 [99/Dec/2026:10:00:00.1] fe be/s 0/0/0/1/1 200 1 - - ---- 1/1/0/0/0 0/0 \"GET / HTTP/1.1\"", "accept date"),
            ("127.0.0.1:1 [06/Dec/2026:10:00:00.1] fe be/s 0/0/0/1/1 200 1 - - ---- 1/1/0/0/0 0/0", "request line"),
        ];
        for (rec, what) in cases {
            let r = parse(&n, rec.as_bytes()).unwrap_err();
            assert!(matches!(r.reason, RejectReason::Malformed | RejectReason::BadTimestamp), "{rec}: {r}");
            assert!(r.to_string().contains(what), "{rec}: {r} does not say {what}");
        }
        // every cut of a good line, and a line with every byte changed in turn: read or
        // rejected, and no rejection quotes the token
        let good = line("<134>Dec  6 10:00:00 haproxy[123]: ");
        for i in 0..=good.len() {
            let mut b = good.as_bytes().to_vec();
            if let Err(e) = parse(&n, &b[..i]) {
                assert!(!e.to_string().contains(&TOKEN[..8]), "{e}");
            }
            if i < b.len() {
                b[i] = b"#{} |/\"[x"[i % 9];
                if let Err(e) = parse(&n, &b) {
                    assert!(!e.to_string().contains(&TOKEN[..8]), "{e}");
                }
            }
        }
    }
}

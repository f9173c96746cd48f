//! `--format auto`: tells the format of one record from a few distinctive keys
//! or the shape of its first columns, by substring search on the raw bytes (no
//! parse, no regex). Envelopes and batch arrays are opened before this runs.
//!
//! JSON, first match wins:
//! Kong (`latencies` + `started_at`) → APISIX (`apisix_latency`, or `route_id` +
//! `client_ip`/`server`) → Traefik (`DownstreamStatus`, or `ClientHost` +
//! `RequestMethod`) → Envoy (`response_code` + an Envoy-only key) → AWS
//! (`requestId` + a `$context` key) → Tyk (`prefix` `access-log`, or
//! `request_time_ms` + `api_id`) → Azure APIM (`apimSubscriptionId`, `GatewayLogs`)
//! → NGINX JSON (an NGINX-only variable name) → generic.
//!
//! Text: `[<digit>…] "` → Envoy text; `<ip>:<port> [dd/Mon/yyyy:hh:mm:ss.mmm]` (after any
//! syslog header) → HAProxy; `… [dd/Mon/yyyy:` CLF → NGINX;
//! `prefix=access-log` → Tyk; `METHOD /… HTTP/x` first line → APISIX `origin`;
//! `key=value …` → generic (logfmt).

use memchr::{memchr, memmem};
use std::sync::OnceLock;

use super::Format;

macro_rules! finders {
    ($($name:ident = $pat:expr),* $(,)?) => {
        struct Finders { $($name: memmem::Finder<'static>,)* }
        fn finders() -> &'static Finders {
            static F: OnceLock<Finders> = OnceLock::new();
            F.get_or_init(|| Finders { $($name: memmem::Finder::new($pat),)* })
        }
    };
}

finders! {
    latencies = b"\"latencies\"",
    started_at = b"\"started_at\"",
    apisix_latency = b"\"apisix_latency\"",
    route_id = b"\"route_id\"",
    client_ip = b"\"client_ip\"",
    server = b"\"server\"",
    downstream_status = b"\"DownstreamStatus\"",
    client_host = b"\"ClientHost\"",
    request_method_tr = b"\"RequestMethod\"",
    response_code = b"\"response_code\"",
    start_time = b"\"start_time\"",
    upstream_cluster = b"\"upstream_cluster\"",
    response_flags = b"\"response_flags\"",
    downstream_remote = b"\"downstream_remote_address\"",
    x_envoy = b"\"x-envoy-",
    request_id_aws = b"\"requestId\"",
    resource_path = b"\"resourcePath\"",
    route_key = b"\"routeKey\"",
    http_method = b"\"httpMethod\"",
    request_time_epoch = b"\"requestTimeEpoch\"",
    request_time_aws = b"\"requestTime\"",
    access_log_json = b"\"access-log\"",
    request_time_ms = b"\"request_time_ms\"",
    api_id = b"\"api_id\"",
    apim_sub = b"pimSubscriptionId\"",
    gateway_logs = b"\"GatewayLogs\"",
    body_bytes_sent = b"\"body_bytes_sent\"",
    time_local = b"\"time_local\"",
    upstream_response_time = b"\"upstream_response_time\"",
    http_user_agent = b"\"http_user_agent\"",
    request_time_nginx = b"\"request_time\"",
    prefix_access_log = b"prefix=access-log",
    http_slash = b" HTTP/",
}

/// The format of one record, or `None` when nothing matches.
pub fn detect(rec: &[u8]) -> Option<Format> {
    match *rec.first()? {
        b'{' => Some(detect_json(rec)),
        _ => detect_text(rec),
    }
}

/// The format of a JSON object record; `Generic` when no gateway's keys are there.
pub fn detect_json(rec: &[u8]) -> Format {
    let f = finders();
    let has = |x: &memmem::Finder<'static>| x.find(rec).is_some();
    if has(&f.latencies) && has(&f.started_at) {
        return Format::Kong;
    }
    if has(&f.apisix_latency) || (has(&f.route_id) && (has(&f.client_ip) || has(&f.server))) {
        return Format::Apisix;
    }
    if has(&f.downstream_status) || (has(&f.client_host) && has(&f.request_method_tr)) {
        return Format::Traefik;
    }
    if (has(&f.response_code) || has(&f.x_envoy))
        && (has(&f.start_time)
            || has(&f.upstream_cluster)
            || has(&f.response_flags)
            || has(&f.downstream_remote)
            || has(&f.x_envoy))
    {
        return Format::Envoy;
    }
    if has(&f.request_id_aws)
        && (has(&f.resource_path)
            || has(&f.route_key)
            || has(&f.http_method)
            || has(&f.request_time_epoch)
            || has(&f.request_time_aws))
    {
        return Format::Aws;
    }
    if has(&f.access_log_json) || (has(&f.request_time_ms) && has(&f.api_id)) {
        return Format::Tyk;
    }
    if has(&f.apim_sub) || has(&f.gateway_logs) {
        return Format::Azure;
    }
    if has(&f.body_bytes_sent)
        || has(&f.time_local)
        || has(&f.upstream_response_time)
        || has(&f.http_user_agent)
        || has(&f.request_time_nginx)
    {
        return Format::NginxJson;
    }
    Format::Generic
}

fn detect_text(rec: &[u8]) -> Option<Format> {
    let f = finders();
    // Envoy: `[2016-04-15T20:17:00.310Z] "POST ...`
    if rec[0] == b'[' && rec.get(1).is_some_and(u8::is_ascii_digit) {
        let close = memchr(b']', rec)?;
        return (rec.get(close + 1..close + 3) == Some(b" \"")).then_some(Format::EnvoyText);
    }
    // HAProxy: `<ip>:<port> [06/Dec/2026:10:00:00.123] ` (milliseconds, which CLF never has)
    if super::haproxy::body_start(rec).is_some() {
        return Some(Format::Haproxy);
    }
    // NGINX / CLF: `<addr> <ident> <user> [07/Dec/2016:11:05:07 +0100] "`
    if let Some(open) = memchr(b'[', rec) {
        if is_clf_time(&rec[open + 1..]) && open > 0 && rec[open - 1] == b' ' {
            return Some(Format::Nginx);
        }
    }
    if f.prefix_access_log.find(rec).is_some() {
        return Some(Format::Tyk);
    }
    // APISIX `meta_format = origin`: the raw request, `GET /path HTTP/1.1`.
    let first_line = &rec[..memchr(b'\n', rec).unwrap_or(rec.len())];
    if let Some(sp) = memchr(b' ', first_line) {
        if sp > 0
            && first_line[..sp].iter().all(u8::is_ascii_uppercase)
            && first_line.get(sp + 1) == Some(&b'/')
            && f.http_slash.find(first_line).is_some()
        {
            return Some(Format::Apisix);
        }
    }
    // logfmt: the first word is `key=...`.
    let first_word = &rec[..memchr(b' ', rec).unwrap_or(rec.len())];
    if let Some(eq) = memchr(b'=', first_word) {
        if eq > 0
            && first_word[..eq].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'@'))
        {
            return Some(Format::Generic);
        }
    }
    None
}

/// `dd/Mon/yyyy:` at the start of `b`.
pub(super) fn is_clf_time(b: &[u8]) -> bool {
    b.len() >= 12
        && b[0].is_ascii_digit()
        && b[1].is_ascii_digit()
        && b[2] == b'/'
        && b[3].is_ascii_uppercase()
        && b[4].is_ascii_lowercase()
        && b[5].is_ascii_lowercase()
        && b[6] == b'/'
        && b[7..11].iter().all(u8::is_ascii_digit)
        && b[11] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_shapes() {
        assert_eq!(detect(br#"[2016-04-15T20:17:00.310Z] "POST /x HTTP/2" 204"#), Some(Format::EnvoyText));
        assert_eq!(detect(br#"1.2.3.4 - - [07/Dec/2016:11:05:07 +0100] "GET / HTTP/1.1" 200 1"#), Some(Format::Nginx));
        assert_eq!(detect(br#"time="Jan 29 08:27:09" level=info prefix=access-log"#), Some(Format::Tyk));
        assert_eq!(detect(b"GET /hello?ab=cd HTTP/1.1\r\nhost: x\r\n"), Some(Format::Apisix));
        assert_eq!(detect(b"ts=2026-01-01T00:00:00Z status=200"), Some(Format::Generic));
        assert_eq!(detect(b"hello world"), None);
        let haproxy = br#"127.0.0.1:51234 [06/Dec/2026:10:00:00.123] fe be/srv1 0/0/1/2/3 200 512 - - ---- 1/1/0/0/0 0/0 {h|ua} "GET /p?q HTTP/1.1""#;
        assert_eq!(detect(haproxy), Some(Format::Haproxy));
        let mut syslog = b"<134>Dec  6 10:00:00 haproxy[123]: ".to_vec();
        syslog.extend_from_slice(haproxy);
        assert_eq!(detect(&syslog), Some(Format::Haproxy));
        // CLF time (no ms) stays NGINX, even with a bracketed upstream later on the line
        assert_eq!(
            detect(br#"1.2.3.4 - - [07/Dec/2016:11:05:07 +0100] "GET / HTTP/1.1" 200 1 "-" "ua" 10 0.1 [up] [] 1.1.1.1:80 1 0.1 200 x"#),
            Some(Format::Nginx)
        );
        assert_eq!(detect(b"[not a time"), None);
    }
}

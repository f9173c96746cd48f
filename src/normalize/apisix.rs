//! Apache APISIX kafka-logger / http-logger (same serializer, `log-util.lua`
//! `get_full_log`), in its three shapes:
//!
//! - default JSON: `start_time` epoch ms, `client_ip` (real-ip aware), `request`
//!   {method, uri (with query), url, headers (lower-case), querystring, size},
//!   `response` {status, size}, `latency` / `upstream_latency` / `apisix_latency`
//!   ms, `consumer.username`, `route_id`, `service_id`, `upstream`;
//! - custom `log_format` (plugin metadata): the user's keys with NGINX/APISIX
//!   `$var` values, read under the variable names (`@timestamp`, `host`,
//!   `client_ip`, `request_method`, `uri`/`request_uri`, `status`, `request_time`
//!   in s, `upstream_response_time` in s, `http_user_agent`, `consumer_name`, ...);
//! - `meta_format = "origin"`: the raw HTTP request text (request line and every
//!   header). It has no time, no status, no client address: the event time is the
//!   message's receive time, and a message without one is rejected.
//!
//! APISIX does not redact anything by default: `apikey` (key-auth header and
//! query), `authorization` (jwt-auth), `jwt` cookie/query and the openid-connect
//! `x-access-token` header all reach the log and are all fingerprinted here.

use serde::Deserialize;

use super::fields::{Num, Str};
use super::text::split_request_line;
use super::{client_ip::parse_ip, secs_to_ms, time, Normalizer, Parts, Reject, RejectReason};
use crate::event::{ClientIdSource, Event, Millis};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Record<'a> {
    start_time: Num,
    #[serde(borrow, rename = "@timestamp")]
    at_timestamp: Str<'a>,
    #[serde(borrow)]
    time_iso8601: Str<'a>,
    #[serde(borrow)]
    time_local: Str<'a>,
    #[serde(borrow)]
    client_ip: Str<'a>,
    #[serde(borrow)]
    remote_addr: Str<'a>,
    #[serde(borrow)]
    request: Option<Request<'a>>,
    response: Option<Response>,
    latency: Num,
    upstream_latency: Num,
    #[serde(borrow)]
    consumer: Option<Consumer<'a>>,
    #[serde(borrow)]
    route_id: Str<'a>,
    #[serde(borrow)]
    service_id: Str<'a>,
    #[serde(borrow)]
    upstream: Str<'a>,
    // custom log_format keys (NGINX/APISIX variable names)
    #[serde(borrow)]
    host: Str<'a>,
    #[serde(borrow)]
    http_host: Str<'a>,
    #[serde(borrow)]
    request_method: Str<'a>,
    #[serde(borrow)]
    request_uri: Str<'a>,
    #[serde(borrow)]
    uri: Str<'a>,
    status: Num,
    /// seconds
    request_time: Num,
    /// seconds, possibly a list
    upstream_response_time: Num,
    body_bytes_sent: Num,
    bytes_sent: Num,
    #[serde(borrow)]
    http_user_agent: Str<'a>,
    #[serde(borrow)]
    request_id: Str<'a>,
    #[serde(borrow)]
    consumer_name: Str<'a>,
    #[serde(borrow)]
    http_authorization: Str<'a>,
    #[serde(borrow)]
    http_apikey: Str<'a>,
    #[serde(borrow)]
    http_x_forwarded_for: Str<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Request<'a> {
    #[serde(borrow)]
    method: Str<'a>,
    #[serde(borrow)]
    uri: Str<'a>,
    #[serde(borrow)]
    url: Str<'a>,
    #[serde(borrow)]
    headers: Option<Headers<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Headers<'a> {
    #[serde(borrow)]
    host: Str<'a>,
    #[serde(borrow, rename = "user-agent")]
    user_agent: Str<'a>,
    #[serde(borrow)]
    authorization: Str<'a>,
    #[serde(borrow)]
    apikey: Str<'a>,
    #[serde(borrow, rename = "x-api-key")]
    x_api_key: Str<'a>,
    #[serde(borrow, rename = "x-access-token")]
    x_access_token: Str<'a>,
    #[serde(borrow)]
    cookie: Str<'a>,
    #[serde(borrow, rename = "x-request-id")]
    x_request_id: Str<'a>,
    #[serde(borrow, rename = "x-forwarded-for")]
    x_forwarded_for: Str<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Response {
    status: Num,
    size: Num,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Consumer<'a> {
    #[serde(borrow)]
    username: Str<'a>,
}

pub fn parse(n: &Normalizer, rec: &[u8], received: Option<Millis>) -> Result<Event, Reject> {
    if rec.first() != Some(&b'{') {
        return parse_origin(n, rec, received);
    }
    let r: Record<'_> = super::fields::from_json(rec).map_err(|e| Reject::json(&e))?;
    let ts = if let Some(ms) = r.start_time.0 {
        Some(time::from_epoch(ms).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "start_time out of range"))?)
    } else if let Some(t) = r.at_timestamp.get().or_else(|| r.time_iso8601.get()).or_else(|| r.time_local.get()) {
        Some(
            time::parse_any(t)
                .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "@timestamp is not a timestamp"))?,
        )
    } else {
        None
    };
    let req = r.request.as_ref();
    let h = req.and_then(|q| q.headers.as_ref());
    let resp = r.response.as_ref();
    // `client_ip` is APISIX's real-ip result: the peer. A logged XFF is only
    // followed when that peer is itself a trusted proxy.
    let xff = h.and_then(|h| h.x_forwarded_for.get()).or_else(|| r.http_x_forwarded_for.get());
    let parts = Parts {
        ts,
        method: req.and_then(|q| q.method.get()).or_else(|| r.request_method.get()),
        host: h.and_then(|h| h.host.get()).or_else(|| r.host.get()).or_else(|| r.http_host.get()),
        uri: req
            .and_then(|q| q.uri.get().or_else(|| q.url.get()))
            .or_else(|| r.request_uri.get())
            .or_else(|| r.uri.get()),
        status: resp.and_then(|x| x.status.0).or(r.status.0),
        latency_ms: r.latency.0.or(r.request_time.0.map(secs_to_ms)),
        upstream_latency_ms: r.upstream_latency.0.or(r.upstream_response_time.0.map(secs_to_ms)),
        bytes_sent: resp.and_then(|x| x.size.0).or(r.body_bytes_sent.0).or(r.bytes_sent.0),
        user_agent: h.and_then(|h| h.user_agent.get()).or_else(|| r.http_user_agent.get()),
        request_id: h.and_then(|h| h.x_request_id.get()).or_else(|| r.request_id.get()),
        peer: r.client_ip.get().or_else(|| r.remote_addr.get()).and_then(parse_ip),
        xff,
        upstream: r.upstream.get().or_else(|| r.service_id.get()),
        creds: super::identity::RawCredentials {
            consumer_name: r.consumer.as_ref().and_then(|c| c.username.get()).or_else(|| r.consumer_name.get()),
            // APISIX attaches a consumer only after an auth plugin matched its credential.
            consumer_source: ClientIdSource::Gateway,
            authorization: h
                .and_then(|h| h.authorization.get().or_else(|| h.x_access_token.get()))
                .or_else(|| r.http_authorization.get()),
            api_key: h.and_then(|h| h.apikey.get().or_else(|| h.x_api_key.get())).or_else(|| r.http_apikey.get()),
            cookie: h.and_then(|h| h.cookie.get()),
            ..Default::default()
        },
        ..Default::default()
    };
    n.build("apisix", parts)
}

/// `meta_format = "origin"`: `GET /hello?ab=cd HTTP/1.1\r\nhost: localhost\r\n...`.
fn parse_origin(n: &Normalizer, rec: &[u8], received: Option<Millis>) -> Result<Event, Reject> {
    let text = crate::bytes::utf8(rec)
        .ok_or_else(|| Reject::new(RejectReason::Malformed, "APISIX origin record: not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let (method, uri) = split_request_line(lines.next().unwrap_or_default());
    if method.is_none() {
        return Err(Reject::new(RejectReason::Malformed, "APISIX origin record: no HTTP request line"));
    }
    let mut parts = Parts { ts: received, method, uri, ..Default::default() };
    for line in lines {
        if line.is_empty() {
            break; // the body follows
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "host" => parts.host = Some(value),
            "user-agent" => parts.user_agent = Some(value),
            "authorization" | "x-access-token" => parts.creds.authorization = parts.creds.authorization.or(Some(value)),
            "apikey" | "x-api-key" => parts.creds.api_key = parts.creds.api_key.or(Some(value)),
            "cookie" => parts.creds.cookie = Some(value),
            "x-request-id" => parts.request_id = Some(value),
            "x-forwarded-for" => parts.xff = Some(value),
            _ => {}
        }
    }
    if parts.ts.is_none() {
        return Err(Reject::new(
            RejectReason::MissingTimestamp,
            "APISIX meta_format=origin carries no time; it needs the message's receive time",
        ));
    }
    n.build("apisix", parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Format;

    #[test]
    fn origin_headers_are_fingerprinted() {
        let n = Normalizer::new(Format::Apisix, b"k");
        let rec = b"GET /hello?ab=cd HTTP/1.1\r\nhost: localhost\r\napikey: raw-key-123456\r\n\r\nbody";
        assert_eq!(parse(&n, rec, None).unwrap_err().reason, RejectReason::MissingTimestamp);
        let ev = parse(&n, rec, Some(1_700_000_000_000)).unwrap();
        assert_eq!(ev.token_fingerprint, Some(n.fingerprinter.fingerprint(b"raw-key-123456")));
        assert_eq!(ev.path.as_deref(), Some("/hello"));
        assert_eq!(ev.host.as_deref(), Some("localhost"));
        assert!(!serde_json::to_string(&ev).unwrap().contains("raw-key"));
    }

    #[test]
    fn key_auth_header_and_consumer() {
        let n = Normalizer::new(Format::Apisix, b"k");
        let rec = br#"{"start_time":1699596164550,"client_ip":"198.51.100.3","consumer":{"username":"jack"},"request":{"method":"GET","uri":"/get?apikey=q-secret-1","headers":{"apikey":"h-secret-1"}},"response":{"status":401,"size":10},"latency":3.5}"#;
        let ev = parse(&n, rec, None).unwrap();
        assert_eq!(ev.client_id.as_deref(), Some("jack"));
        assert_eq!(ev.token_fingerprint, Some(n.fingerprinter.fingerprint(b"h-secret-1")));
        assert_eq!(ev.exposures.len(), 1);
        let s = serde_json::to_string(&ev).unwrap();
        assert!(!s.contains("secret-1"));
    }
}

//! NGINX `log_format <name> escape=json '{...}'` setups. The keys are the
//! operator's; they are read under the NGINX variable names (`remote_addr`,
//! `time_local`, `request`, `status`, `request_time`, ...), which is what nearly
//! every published recipe uses, plus the ingress-nginx JSON recipe's short
//! names (`vhost`, `path`, `request_query`, `x_forwarded_for`, `duration`).
//! Anything else goes through the `generic` format's field map.
//!
//! Units: `$request_time`, `$upstream_response_time` (a list on retries: summed)
//! and the recipe's `duration` are **seconds** → ms; `$msec` is epoch seconds.
//! Values are strings unless the operator left them unquoted: both are read.
//! Credentials: `$http_authorization`, `$http_x_api_key`/`$http_apikey`,
//! `$http_cookie` and the query string in `$request`/`$request_uri`/`$args`.

use serde::Deserialize;

use super::fields::{Num, Str};
use super::text::split_request_line;
use super::{client_ip::parse_ip, time, Normalizer, Parts, Reject, RejectReason};
use crate::event::Event;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Record<'a> {
    #[serde(borrow, alias = "time_iso8601", alias = "@timestamp", alias = "timestamp", alias = "time")]
    time_local: Str<'a>,
    msec: Num,
    #[serde(borrow, alias = "realip_remote_addr", alias = "client_ip")]
    remote_addr: Str<'a>,
    #[serde(borrow)]
    remote_user: Str<'a>,
    #[serde(borrow)]
    request: Str<'a>,
    #[serde(borrow, alias = "method")]
    request_method: Str<'a>,
    #[serde(borrow)]
    request_uri: Str<'a>,
    #[serde(borrow, alias = "path")]
    uri: Str<'a>,
    #[serde(borrow, alias = "query_string", alias = "request_query")]
    args: Str<'a>,
    status: Num,
    #[serde(alias = "bytes_sent")]
    body_bytes_sent: Num,
    #[serde(alias = "duration")]
    request_time: Num,
    upstream_response_time: Num,
    #[serde(borrow, alias = "user_agent", alias = "http_user_agent")]
    http_user_agent: Str<'a>,
    #[serde(borrow, alias = "x_forwarded_for")]
    http_x_forwarded_for: Str<'a>,
    #[serde(borrow, alias = "req_id", alias = "http_x_request_id")]
    request_id: Str<'a>,
    #[serde(borrow, alias = "http_host", alias = "vhost", alias = "server_name")]
    host: Str<'a>,
    #[serde(borrow)]
    http_authorization: Str<'a>,
    #[serde(borrow, alias = "http_apikey")]
    http_x_api_key: Str<'a>,
    #[serde(borrow)]
    http_cookie: Str<'a>,
    #[serde(borrow, alias = "upstream_addr")]
    proxy_upstream_name: Str<'a>,
    #[serde(borrow)]
    jwt_claim_sub: Str<'a>,
    #[serde(borrow, alias = "jwt_claim_azp")]
    jwt_claim_client_id: Str<'a>,
    #[serde(borrow, alias = "jwt_claim_scp")]
    jwt_claim_scope: Str<'a>,
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let r: Record<'_> = serde_json::from_slice(rec).map_err(|e| Reject::json(&e))?;
    let ts = if let Some(t) = r.time_local.get() {
        Some(time::parse_any(t).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "time is not a timestamp"))?)
    } else if let Some(s) = r.msec.0 {
        Some(time::from_epoch(s).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "msec out of range"))?)
    } else {
        None
    };
    let (line_method, line_uri) = r.request.get().map_or((None, None), split_request_line);
    let parts = Parts {
        ts,
        method: r.request_method.get().or(line_method),
        host: r.host.get(),
        uri: r.request_uri.get().or(line_uri).or_else(|| r.uri.get()),
        query: r.args.get(),
        status: r.status.0,
        latency_ms: r.request_time.0.map(|s| s * 1000.0),
        upstream_latency_ms: r.upstream_response_time.0.map(|s| s * 1000.0),
        bytes_sent: r.body_bytes_sent.0,
        user_agent: r.http_user_agent.get(),
        request_id: r.request_id.get(),
        peer: r.remote_addr.get().and_then(parse_ip),
        xff: r.http_x_forwarded_for.get(),
        upstream: r.proxy_upstream_name.get(),
        creds: super::identity::RawCredentials {
            consumer_name: r.remote_user.get(),
            authorization: r.http_authorization.get(),
            api_key: r.http_x_api_key.get(),
            cookie: r.http_cookie.get(),
            ..Default::default()
        },
        client_id: r.jwt_claim_client_id.get(),
        subject: r.jwt_claim_sub.get(),
        scopes: r.jwt_claim_scope.get(),
        ..Default::default()
    };
    n.build("nginx", parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Format;

    #[test]
    fn seconds_lists_and_credentials() {
        let n = Normalizer::new(Format::NginxJson, b"k");
        let rec = br#"{"time_local":"07/Feb/2020:11:48:51 +0000","remote_addr":"198.51.100.7","request":"GET /v1/items/42?page=2 HTTP/1.1","status":"200","body_bytes_sent":"512","request_time":"0.250","upstream_response_time":"0.100, 0.050","http_user_agent":"curl/8","http_authorization":"Bearer abc.def-raw","request_id":"9f"}"#;
        let ev = parse(&n, rec).unwrap();
        assert_eq!(ev.latency_ms, Some(250.0));
        assert!((ev.upstream_latency_ms.unwrap() - 150.0).abs() < 1e-9);
        assert_eq!(ev.route.as_deref(), Some("GET /v1/items/{id}"));
        assert_eq!(ev.token_fingerprint, Some(n.fingerprinter.fingerprint(b"abc.def-raw")));
        assert_eq!(ev.bytes_sent, Some(512));
    }
}

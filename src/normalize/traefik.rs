//! Traefik JSON access logs (logrus JSON over Traefik's field map).
//!
//! Times: `StartUTC` (RFC 3339 nano; `time` is when the line was written).
//! Durations: `Duration` and `OriginDuration` are **nanoseconds** → ms.
//! `OriginStatus` 0 (or absent) means Traefik answered itself: no upstream
//! latency. Identity: `ClientUsername` (`-` when none) is set by BasicAuth /
//! DigestAuth or by ForwardAuth's `headerField`; `TLSClientSubject` for mTLS. BasicAuth
//! logs the user name it was sent even when it refuses the password, so on a 401 the name
//! is only the caller's claim; otherwise it is the identity Traefik authenticated.
//! Request headers appear as `request_<Header>` only when the operator keeps
//! them (`fields.headers`); a kept `request_Authorization` / API-key / cookie
//! header is fingerprinted (Traefik's `redact` mode logs `REDACTED`, a sentinel).
//! `ClientHost` is the socket peer; a kept `request_X-Forwarded-For` is
//! followed only when that peer is a trusted proxy.

use serde::Deserialize;

use super::fields::{Num, Str};
use super::{client_ip::parse_ip, time, Normalizer, Parts, Reject, RejectReason};
use crate::event::{ClientIdSource, Event};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Record<'a> {
    #[serde(borrow, rename = "StartUTC")]
    start_utc: Str<'a>,
    #[serde(borrow, rename = "StartLocal")]
    start_local: Str<'a>,
    #[serde(borrow)]
    time: Str<'a>,
    #[serde(borrow, rename = "ClientHost")]
    client_host: Str<'a>,
    #[serde(borrow, rename = "ClientAddr")]
    client_addr: Str<'a>,
    #[serde(borrow, rename = "ClientUsername")]
    client_username: Str<'a>,
    #[serde(borrow, rename = "TLSClientSubject")]
    tls_client_subject: Str<'a>,
    #[serde(rename = "DownstreamStatus")]
    downstream_status: Num,
    #[serde(rename = "DownstreamContentSize")]
    downstream_size: Num,
    #[serde(rename = "OriginStatus")]
    origin_status: Num,
    #[serde(rename = "Duration")]
    duration: Num,
    #[serde(rename = "OriginDuration")]
    origin_duration: Num,
    #[serde(borrow, rename = "RequestMethod")]
    method: Str<'a>,
    #[serde(borrow, rename = "RequestHost")]
    host: Str<'a>,
    #[serde(borrow, rename = "RequestPath")]
    path: Str<'a>,
    #[serde(borrow, rename = "RouterName")]
    router: Str<'a>,
    #[serde(borrow, rename = "ServiceName")]
    service: Str<'a>,
    #[serde(borrow, rename = "request_Authorization", alias = "request_authorization")]
    authorization: Str<'a>,
    #[serde(
        borrow,
        rename = "request_X-Api-Key",
        alias = "request_x-api-key",
        alias = "request_Apikey",
        alias = "request_X-API-Key"
    )]
    api_key: Str<'a>,
    #[serde(borrow, rename = "request_Cookie", alias = "request_cookie")]
    cookie: Str<'a>,
    #[serde(borrow, rename = "request_User-Agent", alias = "request_user-agent")]
    user_agent: Str<'a>,
    #[serde(borrow, rename = "request_X-Request-Id", alias = "request_x-request-id", alias = "request_X-Request-ID")]
    request_id: Str<'a>,
    #[serde(borrow, rename = "request_X-Forwarded-For", alias = "request_x-forwarded-for")]
    xff: Str<'a>,
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let r: Record<'_> = super::fields::from_json(rec).map_err(|e| Reject::json(&e))?;
    let ts = match r.start_utc.get().or_else(|| r.start_local.get()).or_else(|| r.time.get()) {
        Some(t) => Some(
            time::parse_any(t).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "StartUTC is not a timestamp"))?,
        ),
        None => None,
    };
    let answered_by_origin = r.origin_status.0.is_some_and(|s| s > 0.0);
    let refused_auth = r.downstream_status.0 == Some(401.0);
    let parts = Parts {
        ts,
        method: r.method.get(),
        host: r.host.get(),
        uri: r.path.get(),
        status: r.downstream_status.0.filter(|s| *s > 0.0),
        latency_ms: r.duration.0.map(|ns| ns / 1e6),
        upstream_latency_ms: r.origin_duration.0.filter(|_| answered_by_origin).map(|ns| ns / 1e6),
        bytes_sent: r.downstream_size.0,
        user_agent: r.user_agent.get(),
        request_id: r.request_id.get(),
        peer: r.client_host.get().or_else(|| r.client_addr.get()).and_then(parse_ip),
        xff: r.xff.get(),
        upstream: r.service.get().or_else(|| r.router.get()),
        creds: super::identity::RawCredentials {
            consumer_name: r.client_username.get().or_else(|| r.tls_client_subject.get()),
            consumer_source: if refused_auth { ClientIdSource::Claimed } else { ClientIdSource::Gateway },
            authorization: r.authorization.get(),
            api_key: r.api_key.get(),
            cookie: r.cookie.get(),
            ..Default::default()
        },
        ..Default::default()
    };
    n.build("traefik", parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{Format, TrustedProxies};

    #[test]
    fn kept_headers_feed_identity_and_xff() {
        let mut n = Normalizer::new(Format::Traefik, b"k");
        n.proxies = TrustedProxies::new(&["10.0.0.0/8".into()]);
        let rec = br#"{"ClientHost":"10.1.2.3","ClientUsername":"-","DownstreamStatus":401,"Duration":1500000,"OriginStatus":0,"OriginDuration":0,"RequestMethod":"GET","RequestPath":"/v1/x?api_key=abc123secret","StartUTC":"2026-03-08T14:32:15.123456789Z","request_Authorization":"Bearer tok-xyz-123","request_X-Forwarded-For":"6.6.6.6, 198.51.100.4"}"#;
        let ev = parse(&n, rec).unwrap();
        assert_eq!(ev.source_ip.unwrap().to_string(), "198.51.100.4");
        assert_eq!(ev.token_fingerprint, Some(n.fingerprinter.fingerprint(b"tok-xyz-123")));
        assert_eq!(ev.exposures.len(), 1, "the key in the query is an exposure");
        assert_eq!(ev.upstream_latency_ms, None, "Traefik answered itself");
        assert_eq!(ev.latency_ms, Some(1.5));
        assert_eq!(ev.client_id, None);
        let s = serde_json::to_string(&ev).unwrap();
        assert!(!s.contains("tok-xyz") && !s.contains("abc123secret"));
    }

    #[test]
    fn a_user_name_basic_auth_refused_is_only_claimed() {
        let n = Normalizer::new(Format::Traefik, b"k");
        let rec = |status: u16| {
            format!(
                r#"{{"ClientHost":"198.51.100.4","ClientUsername":"billing-prod","DownstreamStatus":{status},"Duration":1500000,"RequestMethod":"GET","RequestPath":"/v1/x","StartUTC":"2026-03-08T14:32:15Z"}}"#
            )
        };
        let refused = parse(&n, rec(401).as_bytes()).unwrap();
        assert_eq!(
            (refused.client_id.as_deref(), refused.client_id_source),
            (Some("billing-prod"), ClientIdSource::Claimed)
        );
        assert_eq!(parse(&n, rec(200).as_bytes()).unwrap().client_id_source, ClientIdSource::Gateway);
    }
}

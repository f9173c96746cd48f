//! Envoy / Istio JSON access logs (`json_format` strings or `typed_json_format`
//! numbers), including Contour's `@timestamp` and Envoy Gateway's header-named keys.

use serde::Deserialize;

use super::fields::{Num, Str};
use super::{client_ip::parse_ip, time, Normalizer, Parts, Reject, RejectReason};
use crate::event::Event;

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default, alias = "@timestamp", alias = "timestamp")]
    start_time: Str<'a>,
    #[serde(borrow, default, alias = ":method")]
    method: Str<'a>,
    #[serde(borrow, default, alias = "x-envoy-origin-path", alias = ":path")]
    path: Str<'a>,
    #[serde(default, alias = "status")]
    response_code: Num,
    #[serde(default)]
    duration: Num,
    #[serde(default, alias = "x-envoy-upstream-service-time")]
    upstream_service_time: Num,
    #[serde(borrow, default, alias = "x-forwarded-for")]
    x_forwarded_for: Str<'a>,
    #[serde(borrow, default)]
    downstream_remote_address: Str<'a>,
    #[serde(borrow, default, alias = ":authority")]
    authority: Str<'a>,
    #[serde(borrow, default, alias = "x-request-id")]
    request_id: Str<'a>,
    #[serde(borrow, default, alias = "user-agent")]
    user_agent: Str<'a>,
    #[serde(borrow, default)]
    authorization: Str<'a>,
    #[serde(borrow, default, alias = "x-api-key")]
    api_key: Str<'a>,
    #[serde(default)]
    bytes_sent: Num,
    #[serde(borrow, default)]
    upstream_cluster: Str<'a>,
    #[serde(borrow, default)]
    route_name: Str<'a>,
    /// jwt_authn / ext_authz metadata when the operator logs it under these names.
    #[serde(borrow, default)]
    client_id: Str<'a>,
    #[serde(borrow, default, alias = "sub")]
    subject: Str<'a>,
    #[serde(borrow, default, alias = "scope")]
    scopes: Str<'a>,
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let r: Record<'_> = serde_json::from_slice(rec).map_err(|e| Reject::json(&e))?;
    let ts = match r.start_time.get() {
        Some(s) => Some(time::parse_any(s).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "start_time is not a timestamp"))?),
        None => None,
    };
    let parts = Parts {
        ts,
        method: r.method.get(),
        host: r.authority.get(),
        uri: r.path.get(),
        // 0 = the downstream went away before a response was sent: no status.
        status: r.response_code.0.filter(|s| *s > 0.0),
        latency_ms: r.duration.0,
        upstream_latency_ms: r.upstream_service_time.0,
        bytes_sent: r.bytes_sent.0,
        user_agent: r.user_agent.get(),
        request_id: r.request_id.get(),
        peer: r.downstream_remote_address.get().and_then(parse_ip),
        xff: r.x_forwarded_for.get(),
        upstream: r.upstream_cluster.get().or_else(|| r.route_name.get()),
        creds: super::identity::RawCredentials {
            authorization: r.authorization.get(),
            api_key: r.api_key.get(),
            ..Default::default()
        },
        client_id: r.client_id.get(),
        subject: r.subject.get(),
        scopes: r.scopes.get(),
        ..Default::default()
    };
    n.build("envoy", parts)
}

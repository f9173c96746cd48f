//! Envoy / Istio JSON access logs (`json_format` strings or `typed_json_format`
//! numbers), including Contour's `@timestamp` and Envoy Gateway's header-named keys.

use serde::Deserialize;

use super::fields::{Num, Str};
use super::{client_ip::parse_ip, time, Normalizer, Parts, Reject, RejectReason};
use crate::event::{ClientIdSource, Event};

/// Every alternative key name is its own field (no serde aliases): a record that
/// logs the same value under two names (Contour's `@timestamp` next to
/// `start_time`) must still parse. The first present name wins.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    start_time: Str<'a>,
    #[serde(borrow, default, rename = "@timestamp")]
    at_timestamp: Str<'a>,
    #[serde(borrow, default)]
    timestamp: Str<'a>,
    #[serde(borrow, default)]
    method: Str<'a>,
    #[serde(borrow, default, rename = ":method")]
    h_method: Str<'a>,
    #[serde(borrow, default)]
    path: Str<'a>,
    #[serde(borrow, default, rename = "x-envoy-origin-path")]
    h_origin_path: Str<'a>,
    #[serde(borrow, default, rename = ":path")]
    h_path: Str<'a>,
    #[serde(default)]
    response_code: Num,
    #[serde(default)]
    status: Num,
    #[serde(default)]
    duration: Num,
    #[serde(default)]
    upstream_service_time: Num,
    #[serde(default, rename = "x-envoy-upstream-service-time")]
    h_upstream_service_time: Num,
    #[serde(borrow, default)]
    x_forwarded_for: Str<'a>,
    #[serde(borrow, default, rename = "x-forwarded-for")]
    h_x_forwarded_for: Str<'a>,
    #[serde(borrow, default)]
    downstream_remote_address: Str<'a>,
    #[serde(borrow, default)]
    authority: Str<'a>,
    #[serde(borrow, default, rename = ":authority")]
    h_authority: Str<'a>,
    #[serde(borrow, default)]
    request_id: Str<'a>,
    #[serde(borrow, default, rename = "x-request-id")]
    h_request_id: Str<'a>,
    #[serde(borrow, default)]
    user_agent: Str<'a>,
    #[serde(borrow, default, rename = "user-agent")]
    h_user_agent: Str<'a>,
    #[serde(borrow, default)]
    authorization: Str<'a>,
    #[serde(borrow, default)]
    api_key: Str<'a>,
    #[serde(borrow, default, rename = "x-api-key")]
    h_api_key: Str<'a>,
    #[serde(default)]
    bytes_sent: Num,
    #[serde(borrow, default)]
    upstream_cluster: Str<'a>,
    /// jwt_authn / ext_authz metadata when the operator logs it under these names.
    #[serde(borrow, default)]
    client_id: Str<'a>,
    #[serde(borrow, default)]
    subject: Str<'a>,
    #[serde(borrow, default)]
    sub: Str<'a>,
    #[serde(borrow, default)]
    scopes: Str<'a>,
    #[serde(borrow, default)]
    scope: Str<'a>,
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let r: Record<'_> = super::fields::from_json(rec).map_err(|e| Reject::json(&e))?;
    let ts = match r.start_time.get().or_else(|| r.at_timestamp.get()).or_else(|| r.timestamp.get()) {
        Some(s) => Some(
            time::parse_any(s)
                .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "start_time is not a timestamp"))?,
        ),
        None => None,
    };
    let parts = Parts {
        ts,
        method: r.method.get().or_else(|| r.h_method.get()),
        host: r.authority.get().or_else(|| r.h_authority.get()),
        uri: r.path.get().or_else(|| r.h_origin_path.get()).or_else(|| r.h_path.get()),
        // 0 = the downstream went away before a response was sent: no status.
        status: r.response_code.0.or(r.status.0).filter(|s| *s > 0.0),
        latency_ms: r.duration.0,
        upstream_latency_ms: r.upstream_service_time.0.or(r.h_upstream_service_time.0),
        bytes_sent: r.bytes_sent.0,
        user_agent: r.user_agent.get().or_else(|| r.h_user_agent.get()),
        request_id: r.request_id.get().or_else(|| r.h_request_id.get()),
        peer: r.downstream_remote_address.get().and_then(parse_ip),
        xff: r.x_forwarded_for.get().or_else(|| r.h_x_forwarded_for.get()),
        // Only a real cluster: `-` means the gateway answered itself (401, 429...).
        upstream: r.upstream_cluster.get(),
        creds: super::identity::RawCredentials {
            authorization: r.authorization.get(),
            api_key: r.api_key.get().or_else(|| r.h_api_key.get()),
            ..Default::default()
        },
        client_id: r.client_id.get(),
        // jwt_authn / ext_authz metadata: logged by Envoy after its own check.
        client_id_source: ClientIdSource::Gateway,
        subject: r.subject.get().or_else(|| r.sub.get()),
        scopes: r.scopes.get().or_else(|| r.scope.get()),
        ..Default::default()
    };
    n.build("envoy", parts)
}

#[cfg(test)]
mod tests {
    use crate::normalize::{Format, Normalizer};

    #[test]
    fn the_same_value_under_two_names_still_parses() {
        let n = Normalizer::new(Format::Envoy, b"0123456789abcdef");
        let rec = br#"{"start_time":"2026-01-01T00:00:00Z","@timestamp":"2026-01-01T00:00:00Z","method":"GET",":method":"GET","path":"/a","response_code":200,"upstream_cluster":"-","route_name":"r1"}"#;
        let ev = n.normalize_record(rec).expect("parses");
        assert_eq!(ev.route.as_deref(), Some("GET /a"));
        assert_eq!(ev.upstream, None, "a route name is not an upstream");
    }
}

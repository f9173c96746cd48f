//! AWS API Gateway access logs, REST (v1) and HTTP (v2) APIs.
//!
//! The template is the user's: every value is a quoted string, `-` when empty.
//! Keys are read under the names AWS's own examples use (`requestId`, `ip`,
//! `caller`, `user`, `requestTime`, `httpMethod`, `resourcePath`, `routeKey`,
//! `status`, `protocol`, `responseLength`), under the `$context` variable names
//! themselves (`identity.sourceIp`, `authorizer.claims.sub`, ...), flat with
//! dots or nested as objects.
//!
//! Identity: `authorizer.claims.client_id` (Cognito/JWT), else the usage-plan key
//! id `identity.apiKeyId`, else the IAM caller `identity.caller`/`userArn`.
//! Principal: `authorizer.principalId` (Lambda authorizer), else
//! `authorizer.claims.sub`, else `identity.user`. Scopes:
//! `authorizer.claims.scope` (space-separated). `identity.apiKey` is the RAW key
//! when a template logs it: it is fingerprinted. Times: `requestTimeEpoch` (ms)
//! or `requestTime` (CLF); latencies ms. `resourcePath`/`routeKey` are the
//! gateway's own route template and become the route; the request path is
//! `path` when logged (REST: it includes the stage).

use serde::Deserialize;

use super::fields::{Num, Str};
use super::{client_ip::parse_ip, time, Normalizer, Parts, Reject, RejectReason};
use crate::event::{ClientIdSource, Event};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Record<'a> {
    #[serde(borrow, rename = "requestId", alias = "request_id")]
    request_id: Str<'a>,
    #[serde(borrow, rename = "extendedRequestId")]
    extended_request_id: Str<'a>,
    #[serde(borrow, rename = "ip", alias = "sourceIp", alias = "identity.sourceIp", alias = "sourceIP")]
    ip: Str<'a>,
    #[serde(borrow, rename = "caller", alias = "identity.caller")]
    caller: Str<'a>,
    #[serde(borrow, rename = "user", alias = "identity.user")]
    user: Str<'a>,
    #[serde(borrow, rename = "userArn", alias = "identity.userArn")]
    user_arn: Str<'a>,
    #[serde(borrow, rename = "apiKey", alias = "identity.apiKey")]
    api_key: Str<'a>,
    #[serde(borrow, rename = "apiKeyId", alias = "identity.apiKeyId")]
    api_key_id: Str<'a>,
    #[serde(borrow, rename = "userAgent", alias = "identity.userAgent", alias = "user_agent")]
    user_agent: Str<'a>,
    #[serde(borrow, rename = "requestTime")]
    request_time: Str<'a>,
    #[serde(rename = "requestTimeEpoch")]
    request_time_epoch: Num,
    #[serde(borrow, rename = "httpMethod", alias = "method")]
    http_method: Str<'a>,
    #[serde(borrow, rename = "path")]
    path: Str<'a>,
    #[serde(borrow, rename = "resourcePath")]
    resource_path: Str<'a>,
    #[serde(borrow, rename = "routeKey")]
    route_key: Str<'a>,
    #[serde(borrow, rename = "domainName")]
    domain_name: Str<'a>,
    status: Num,
    #[serde(rename = "responseLength")]
    response_length: Num,
    #[serde(rename = "responseLatency")]
    response_latency: Num,
    #[serde(rename = "integrationLatency")]
    integration_latency: Num,
    #[serde(rename = "integration.latency")]
    integration_latency_dotted: Num,
    #[serde(borrow, rename = "stage")]
    stage: Str<'a>,
    #[serde(borrow, rename = "apiId")]
    api_id: Str<'a>,
    // Authorizer values, flat (`authorizer.claims.sub`) or short (`sub`).
    #[serde(borrow, rename = "authorizer.principalId", alias = "principalId")]
    principal_id: Str<'a>,
    #[serde(borrow, rename = "authorizer.claims.client_id", alias = "clientId", alias = "client_id")]
    claims_client_id: Str<'a>,
    #[serde(borrow, rename = "authorizer.claims.sub", alias = "sub")]
    claims_sub: Str<'a>,
    #[serde(borrow, rename = "authorizer.claims.scope", alias = "scope", alias = "scopes")]
    claims_scope: Str<'a>,
    #[serde(borrow, rename = "authorizer.claims.username", alias = "username")]
    claims_username: Str<'a>,
    // ... or nested objects mirroring `$context`.
    #[serde(borrow)]
    identity: Option<Identity<'a>>,
    #[serde(borrow)]
    authorizer: Option<Authorizer<'a>>,
    integration: Option<Integration>,
    #[serde(borrow, rename = "x-forwarded-for", alias = "xForwardedFor")]
    xff: Str<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Identity<'a> {
    #[serde(borrow, rename = "sourceIp")]
    source_ip: Str<'a>,
    #[serde(borrow)]
    caller: Str<'a>,
    #[serde(borrow)]
    user: Str<'a>,
    #[serde(borrow, rename = "userArn")]
    user_arn: Str<'a>,
    #[serde(borrow, rename = "apiKey")]
    api_key: Str<'a>,
    #[serde(borrow, rename = "apiKeyId")]
    api_key_id: Str<'a>,
    #[serde(borrow, rename = "userAgent")]
    user_agent: Str<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Authorizer<'a> {
    #[serde(borrow, rename = "principalId")]
    principal_id: Str<'a>,
    #[serde(borrow)]
    claims: Option<Claims<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Claims<'a> {
    #[serde(borrow)]
    client_id: Str<'a>,
    #[serde(borrow)]
    sub: Str<'a>,
    #[serde(borrow)]
    scope: Str<'a>,
    #[serde(borrow)]
    username: Str<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Integration {
    latency: Num,
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let r: Record<'_> = super::fields::from_json(rec).map_err(|e| Reject::json(&e))?;
    let ts = if let Some(ms) = r.request_time_epoch.0 {
        Some(
            time::from_epoch(ms)
                .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "requestTimeEpoch out of range"))?,
        )
    } else if let Some(t) = r.request_time.get() {
        Some(
            time::parse_any(t)
                .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "requestTime is not a timestamp"))?,
        )
    } else {
        None
    };
    let id = r.identity.as_ref();
    let auth = r.authorizer.as_ref();
    let claims = auth.and_then(|a| a.claims.as_ref());

    let client_id = r
        .claims_client_id
        .get()
        .or_else(|| claims.and_then(|c| c.client_id.get()))
        .or_else(|| r.api_key_id.get())
        .or_else(|| id.and_then(|i| i.api_key_id.get()))
        .or_else(|| r.caller.get())
        .or_else(|| id.and_then(|i| i.caller.get()))
        .or_else(|| r.user_arn.get())
        .or_else(|| id.and_then(|i| i.user_arn.get()));
    let subject = r
        .principal_id
        .get()
        .or_else(|| auth.and_then(|a| a.principal_id.get()))
        .or_else(|| r.claims_sub.get())
        .or_else(|| claims.and_then(|c| c.sub.get()))
        .or_else(|| r.claims_username.get())
        .or_else(|| claims.and_then(|c| c.username.get()))
        .or_else(|| r.user.get())
        .or_else(|| id.and_then(|i| i.user.get()));
    let scopes = r.claims_scope.get().or_else(|| claims.and_then(|c| c.scope.get()));

    // The gateway's route template: `GET /pets/{petId}` (HTTP API routeKey) or `/pets/{petId}`.
    let route = r.route_key.get().filter(|k| *k != "$default").or_else(|| r.resource_path.get());
    let parts = Parts {
        ts,
        method: r.http_method.get(),
        host: r.domain_name.get(),
        uri: r.path.get(),
        status: r.status.0,
        latency_ms: r.response_latency.0,
        upstream_latency_ms: r
            .integration_latency
            .0
            .or(r.integration_latency_dotted.0)
            .or_else(|| r.integration.as_ref().and_then(|i| i.latency.0)),
        bytes_sent: r.response_length.0,
        user_agent: r.user_agent.get().or_else(|| id.and_then(|i| i.user_agent.get())),
        request_id: r.request_id.get().or_else(|| r.extended_request_id.get()),
        peer: r.ip.get().or_else(|| id.and_then(|i| i.source_ip.get())).and_then(parse_ip),
        xff: r.xff.get(),
        upstream: r.api_id.get().or_else(|| r.stage.get()),
        creds: super::identity::RawCredentials {
            api_key: r.api_key.get().or_else(|| id.and_then(|i| i.api_key.get())),
            ..Default::default()
        },
        client_id,
        // The authorizer's verdict, the usage-plan key API Gateway matched, the IAM caller it checked.
        client_id_source: ClientIdSource::Gateway,
        subject,
        scopes,
        route,
        ..Default::default()
    };
    n.build("aws", parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Format;

    #[test]
    fn claims_flat_and_nested_give_identity_and_scopes() {
        let n = Normalizer::new(Format::Aws, b"k");
        let flat = br#"{"requestId":"r1","ip":"203.0.113.7","requestTimeEpoch":"1700000000123","httpMethod":"GET","routeKey":"GET /orders/{id}","path":"/orders/42","status":"403","responseLatency":"12","integrationLatency":"-","authorizer.claims.client_id":"app-1","authorizer.claims.sub":"u-1","authorizer.claims.scope":"orders:read orders:write"}"#;
        let ev = parse(&n, flat).unwrap();
        assert_eq!(ev.client_id.as_deref(), Some("app-1"));
        assert_eq!(ev.client_id_source, ClientIdSource::Gateway, "the authorizer's verdict");
        assert_eq!(ev.subject.as_deref(), Some("u-1"));
        assert_eq!(ev.scopes, vec!["orders:read", "orders:write"]);
        assert_eq!(ev.route.as_deref(), Some("GET /orders/{id}"));
        assert_eq!(ev.path.as_deref(), Some("/orders/42"));
        assert_eq!(ev.upstream_latency_ms, None);
        assert_eq!(ev.ts, 1_700_000_000_123);
        let nested = br#"{"requestId":"r1","identity":{"sourceIp":"203.0.113.7","apiKey":"rawkey-abcdef0123"},"requestTime":"10/Jun/2023:15:36:28 +0000","httpMethod":"GET","resourcePath":"/pets/{petId}","status":"200","authorizer":{"principalId":"p-9"}}"#;
        let ev = parse(&n, nested).unwrap();
        assert_eq!(ev.subject.as_deref(), Some("p-9"));
        assert_eq!(ev.source_ip.unwrap().to_string(), "203.0.113.7");
        assert_eq!(ev.route.as_deref(), Some("GET /pets/{petId}"));
        assert!(ev.path.is_none());
        assert_eq!(ev.token_fingerprint, Some(n.fingerprinter.fingerprint(b"rawkey-abcdef0123")));
        assert!(!serde_json::to_string(&ev).unwrap().contains("rawkey"));
    }
}

//! Forward-auth: a gateway asks, before it proxies a request, whether gatewatch has taken a
//! decision against the credential the request carries. NGINX `auth_request`, Traefik
//! `forwardAuth`, APISIX `forward-auth` and Envoy `ext_authz` (HTTP) all send the request's
//! headers here and proxy only on a 2xx.
//!
//! The answer comes from memory: the credential is read out of the headers exactly as it is
//! read out of an access-log record ([`identity::resolve_with`]: `Authorization`, API-key
//! headers, a token in the original URI's query), fingerprinted with the same key, and looked
//! up in the deny-list the revoker keeps (enforced revocations, until their quarantine ends).
//! Nothing on this path touches the network or a disk, and the raw token is dropped once
//! fingerprinted. The client's address (`X-Real-IP`, else the last `X-Forwarded-For` hop) is
//! checked against the address bans (the `ban` action). 200: no decision against either;
//! 403: revoked or banned. A request that carries no credential is judged on its address
//! alone: what a gateway lets in without one is its own policy.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::actions::revocation::policy::client_key;
use crate::actions::revocation::DenyList;
use crate::normalize::identity::{self, RawCredentials};
use crate::scrub::Fingerprinter;

use super::Clock;

/// What the endpoint needs: the deny-list, and the key credentials are fingerprinted with.
pub struct ForwardAuth {
    deny: Arc<DenyList>,
    fingerprinter: Fingerprinter,
    /// Answers by decision (`allow`, `deny`), when registered.
    answers: Option<prometheus::IntCounterVec>,
}

impl ForwardAuth {
    pub fn new(deny: Arc<DenyList>, fingerprint_key: &[u8]) -> Self {
        ForwardAuth { deny, fingerprinter: Fingerprinter::new(fingerprint_key), answers: None }
    }

    /// Counts answers in `gatewatch_forward_auth_total{decision}`, registered in `registry`.
    pub fn with_metrics(mut self, registry: &prometheus::Registry) -> prometheus::Result<Self> {
        let c = prometheus::IntCounterVec::new(
            prometheus::Opts::new("gatewatch_forward_auth_total", "Forward-auth answers to gateways, by decision"),
            &["decision"],
        )?;
        registry.register(Box::new(c.clone()))?;
        for d in ["allow", "deny"] {
            c.with_label_values(&[d]);
        }
        self.answers = Some(c);
        Ok(self)
    }

    fn count(&self, decision: &str) {
        if let Some(c) = &self.answers {
            c.with_label_values(&[decision]).inc();
        }
    }
}

/// Where the gateways put the original request's URI (a token in its query counts).
const ORIGINAL_URI: [&str; 3] = ["x-original-uri", "x-forwarded-uri", "x-envoy-original-path"];

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The verdict for a request with these headers at `now`.
pub fn decide(fa: &ForwardAuth, headers: &HeaderMap, now: crate::event::Millis) -> Verdict {
    decide_at(fa, headers, None, now)
}

/// As [`decide`]; `appended` is the original request's path and query when the gateway put
/// them after the endpoint's own path (Envoy's `path_prefix`).
pub fn decide_at(fa: &ForwardAuth, headers: &HeaderMap, appended: Option<&str>, now: crate::event::Millis) -> Verdict {
    let uri = ORIGINAL_URI.iter().find_map(|n| header(headers, n)).or(appended);
    let creds = RawCredentials {
        authorization: header(headers, "authorization"),
        api_key: header(headers, "x-api-key").or_else(|| header(headers, "apikey")),
        query: uri.and_then(|u| u.split_once('?')).map(|(_, q)| q),
        ..RawCredentials::default()
    };
    let id = identity::resolve_with(&fa.fingerprinter, None, None, &creds);
    // The client: the token's own (its claim, or the API key), or the one the gateway names
    // after its own authentication (Kong `X-Consumer-ID`/`-Username`, APISIX's consumer).
    let clients = [
        id.client_id.as_deref().map(str::to_string),
        header(headers, "x-consumer-id").map(str::to_string),
        header(headers, "x-consumer-username").map(str::to_string),
        header(headers, "x-client-id").map(str::to_string),
    ];
    let client_keys = clients.into_iter().flatten().map(|c| format!("client:{}", client_key(&c)));
    let keys = [id.token_fingerprint.map(|f| f.to_hex()), id.credential_id.map(|c| format!("cred:{c}"))]
        .into_iter()
        .flatten()
        .chain(client_keys);
    for key in keys {
        if let Some(e) = fa.deny.denies(&key, now) {
            return Verdict::Deny { alert_id: e.alert_id, reason: e.reason };
        }
    }
    // The client's address: `X-Real-IP`, else the last `X-Forwarded-For` hop (the one the
    // gateway itself appended).
    let ip = header(headers, "x-real-ip")
        .or_else(|| header(headers, "x-forwarded-for").and_then(|x| x.rsplit(',').next()))
        .and_then(|a| a.trim().parse::<std::net::IpAddr>().ok());
    if let Some(e) = ip.and_then(|ip| fa.deny.bans(ip, now)) {
        return Verdict::Deny { alert_id: e.alert_id, reason: e.reason };
    }
    Verdict::Allow
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny { alert_id: String, reason: String },
}

pub async fn handle(State(st): State<(Arc<ForwardAuth>, Clock)>, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let (fa, clock) = st;
    let appended = uri
        .path_and_query()
        .map(|p| p.as_str())
        .and_then(|p| p.strip_prefix("/v1/forward-auth"))
        .filter(|p| p.starts_with('/'));
    match decide_at(&fa, &headers, appended, clock()) {
        Verdict::Allow => {
            fa.count("allow");
            let mut r = StatusCode::OK.into_response();
            r.headers_mut().insert("x-gatewatch-decision", HeaderValue::from_static("allow"));
            r
        }
        Verdict::Deny { alert_id, reason } => {
            fa.count("deny");
            let mut r =
                (StatusCode::FORBIDDEN, Json(json!({ "decision": "deny", "reason": reason, "alert_id": alert_id })))
                    .into_response();
            r.headers_mut().insert("x-gatewatch-decision", HeaderValue::from_static("deny"));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::revocation::DenyEntry;

    const KEY: &[u8] = b"forward-auth-test-key";
    const STOLEN: &str = "gwt_stolen_Rk5PvM2xTg8WzL3qBn";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_revoked_token_is_refused_wherever_the_request_carries_it_until_it_expires() {
        let deny = Arc::new(DenyList::new());
        let fp = Fingerprinter::new(KEY).fingerprint(STOLEN.as_bytes()).to_hex();
        deny.insert(DenyEntry {
            fingerprint: Some(fp),
            credential_id: None,
            address: None,
            client_id: None,
            claimed_client_id: None,
            reason: "token used from 5 regions in 10m".into(),
            alert_id: "a1".into(),
            revoked_at: 1_000,
            expires_at: Some(100_000),
        });
        let fa = ForwardAuth::new(deny, KEY);
        let bearer = format!("Bearer {STOLEN}");
        let deny_verdict = Verdict::Deny { alert_id: "a1".into(), reason: "token used from 5 regions in 10m".into() };
        assert_eq!(decide(&fa, &headers(&[("authorization", &bearer)]), 5_000), deny_verdict);
        let in_query = format!("/api/me?access_token={STOLEN}");
        assert_eq!(decide(&fa, &headers(&[("x-original-uri", &in_query)]), 5_000), deny_verdict);
        assert_eq!(decide(&fa, &headers(&[("x-api-key", STOLEN)]), 5_000), deny_verdict);
        // Envoy: the original path and query after the endpoint's own path.
        assert_eq!(decide_at(&fa, &headers(&[]), Some(&in_query), 5_000), deny_verdict);
        assert_eq!(
            decide(&fa, &headers(&[("authorization", "Bearer gwt_other_token_0123456789")]), 5_000),
            Verdict::Allow
        );
        assert_eq!(decide(&fa, &headers(&[]), 5_000), Verdict::Allow, "no credential: the gateway's own policy");
        assert_eq!(decide(&fa, &headers(&[("authorization", &bearer)]), 100_000), Verdict::Allow, "expired");
    }

    #[test]
    fn a_banned_client_is_refused_by_its_tokens_claim_or_the_gateways_consumer_header() {
        let deny = Arc::new(DenyList::new());
        deny.insert(DenyEntry {
            fingerprint: None,
            credential_id: None,
            address: None,
            client_id: Some("Shop-Web".into()),
            claimed_client_id: None,
            reason: "object_enumeration".into(),
            alert_id: "a2".into(),
            revoked_at: 0,
            expires_at: Some(10_000),
        });
        let fa = ForwardAuth::new(deny, KEY);
        // header {"alg":"RS256"}, payload {"client_id":"shop-web"}
        let jwt = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJjbGllbnRfaWQiOiJzaG9wLXdlYiJ9.c2ln";
        assert!(matches!(decide(&fa, &headers(&[("authorization", jwt)]), 5_000), Verdict::Deny { .. }));
        assert!(matches!(decide(&fa, &headers(&[("x-consumer-id", "shop-web")]), 5_000), Verdict::Deny { .. }));
        assert_eq!(decide(&fa, &headers(&[("x-consumer-id", "shop-ios")]), 5_000), Verdict::Allow);
    }
}

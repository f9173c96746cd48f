//! Kong's log-plugin JSON (`kong.log.serialize`: http-log, file-log, tcp-log, kafka-log).
//!
//! Identity: `consumer.id` (or `custom_id`/`username`), credential id from
//! `authenticated_entity.id`. Kong ≥ 2.1 logs `authorization` as `REDACTED`,
//! but raw keys still leak via the `apikey` header, `?apikey=`/`?jwt=` and the URI;
//! all of them are fingerprinted here. Legacy 0.x `authenticated_entity.key` is a
//! raw key and is fingerprinted too. Times: `started_at` epoch ms, latencies ms,
//! `latencies.proxy` = -1 when no upstream was called.

use serde::Deserialize;

use super::fields::{Num, Str};
use super::{client_ip::parse_ip, time, Normalizer, Parts, Reject, RejectReason};
use crate::event::{ClientIdSource, Event};

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    request: Option<Request<'a>>,
    #[serde(default)]
    response: Option<Response>,
    #[serde(default)]
    latencies: Option<Latencies>,
    #[serde(borrow, default)]
    client_ip: Str<'a>,
    #[serde(default)]
    started_at: Num,
    #[serde(borrow, default)]
    consumer: Option<Consumer<'a>>,
    #[serde(borrow, default)]
    authenticated_entity: Option<AuthEntity<'a>>,
    #[serde(borrow, default)]
    service: Option<Named<'a>>,
    #[serde(borrow, default)]
    route: Option<Named<'a>>,
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    method: Str<'a>,
    #[serde(borrow, default)]
    uri: Str<'a>,
    #[serde(borrow, default)]
    url: Str<'a>,
    #[serde(borrow, default)]
    id: Str<'a>,
    #[serde(borrow, default)]
    headers: Option<Headers<'a>>,
}

#[derive(Deserialize, Default)]
struct Headers<'a> {
    #[serde(borrow, default, alias = "Host")]
    host: Str<'a>,
    #[serde(borrow, default, rename = "user-agent", alias = "User-Agent")]
    user_agent: Str<'a>,
    #[serde(borrow, default, alias = "Authorization")]
    authorization: Str<'a>,
    #[serde(borrow, default)]
    apikey: Str<'a>,
    #[serde(borrow, default, rename = "x-api-key", alias = "X-Api-Key")]
    x_api_key: Str<'a>,
    #[serde(borrow, default, alias = "Cookie")]
    cookie: Str<'a>,
    #[serde(borrow, default, rename = "x-request-id")]
    x_request_id: Str<'a>,
    #[serde(borrow, default, alias = "Referer")]
    referer: Str<'a>,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    status: Num,
    #[serde(default)]
    size: Num,
}

#[derive(Deserialize)]
struct Latencies {
    #[serde(default)]
    request: Num,
    #[serde(default)]
    proxy: Num,
}

#[derive(Deserialize)]
struct Consumer<'a> {
    #[serde(borrow, default)]
    id: Str<'a>,
    #[serde(borrow, default)]
    custom_id: Str<'a>,
    #[serde(borrow, default)]
    username: Str<'a>,
}

#[derive(Deserialize)]
struct AuthEntity<'a> {
    #[serde(borrow, default)]
    id: Str<'a>,
    #[serde(borrow, default)]
    consumer_id: Str<'a>,
    /// Kong 0.x: the raw API key. Fingerprinted, never kept.
    #[serde(borrow, default)]
    key: Str<'a>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    name: Str<'a>,
    #[serde(borrow, default)]
    host: Str<'a>,
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let r: Record<'_> = super::fields::from_json(rec).map_err(|e| Reject::json(&e))?;
    let ts = match r.started_at.0 {
        Some(v) => Some(
            time::from_epoch(v).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "started_at out of range"))?,
        ),
        None => None,
    };
    let req = r.request.as_ref();
    let headers = req.and_then(|q| q.headers.as_ref());
    let uri = req.and_then(|q| q.uri.get().or_else(|| q.url.get()));
    let api_key = headers
        .and_then(|h| h.apikey.get().or_else(|| h.x_api_key.get()))
        .or_else(|| r.authenticated_entity.as_ref().and_then(|a| a.key.get()));
    let consumer = r.consumer.as_ref();
    let proxy_latency = r.latencies.as_ref().and_then(|l| l.proxy.0).filter(|v| *v >= 0.0);
    let parts = Parts {
        ts,
        method: req.and_then(|q| q.method.get()),
        host: headers.and_then(|h| h.host.get()),
        uri,
        status: r.response.as_ref().and_then(|x| x.status.0),
        latency_ms: r.latencies.as_ref().and_then(|l| l.request.0),
        upstream_latency_ms: proxy_latency,
        bytes_sent: r.response.as_ref().and_then(|x| x.size.0),
        user_agent: headers.and_then(|h| h.user_agent.get()),
        referer: headers.and_then(|h| h.referer.get()),
        request_id: req.and_then(|q| q.id.get()).or_else(|| headers.and_then(|h| h.x_request_id.get())),
        peer: r.client_ip.get().and_then(parse_ip),
        xff: None, // client_ip is already Kong's real-ip result
        upstream: r.service.as_ref().and_then(|s| s.name.get().or_else(|| s.host.get())),
        creds: super::identity::RawCredentials {
            consumer_id: consumer
                .and_then(|c| c.id.get().or_else(|| c.custom_id.get()))
                .or_else(|| r.authenticated_entity.as_ref().and_then(|a| a.consumer_id.get())),
            consumer_name: consumer.and_then(|c| c.username.get().or_else(|| c.custom_id.get())),
            // Kong logs a consumer only once an auth plugin has accepted the credential.
            consumer_source: ClientIdSource::Gateway,
            credential_id: r.authenticated_entity.as_ref().and_then(|a| a.id.get()),
            authorization: headers.and_then(|h| h.authorization.get()),
            api_key,
            query: None,
            cookie: headers.and_then(|h| h.cookie.get()),
        },
        ..Default::default()
    };
    let _ = r.route.as_ref().map(|x| (x.name.get(), x.host.get()));
    n.build("kong", parts)
}

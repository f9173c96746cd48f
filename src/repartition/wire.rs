//! The repartition topic's records: a compact binary encoding (postcard: varints, no field
//! names) of the fields the detectors read, and of the upstream watermarks.
//!
//! A record is a version byte followed by one [`Record`]. Only what a detector or a rule
//! reads travels (see [`WireEvent`]); the raw record never does, and nothing secret is in
//! an event to begin with (tokens are fingerprints by then). A reader refuses a version it
//! does not know, so a mixed-version group fails loudly rather than misreading.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::event::{ClientIdSource, Event, Exposure, Fingerprint, Millis, Shard, Text, TokenClaims};

/// The encoding's version; the first byte of every record.
pub const VERSION: u8 = 4;

/// Where a record came from: one partition of an input topic, as one ingest instance reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// The input partition ([`upstream_id`] of its topic and number); fixed 8 bytes, as a
    /// hash spends all of them.
    #[serde(with = "fixed64")]
    pub id: u64,
    /// How many input partitions there are in all: a detect partition moves time on only once
    /// it has heard from each of them.
    pub count: u32,
    /// Everything this input partition sends from now on is at or after this time.
    pub watermark: Millis,
}

/// One record of the repartition topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// An event, routed by one shard's key.
    Event(Box<EventRecord>),
    /// Time moved on upstream, or stands still: sent to every partition now and then, so that
    /// detect partitions the upstream sends no events to still hear its watermark.
    Heartbeat {
        upstream: Upstream,
        /// The upstream partition has been quiet for `[repartition] idle_after`: leave it out of
        /// the minimum until it sends again, rather than wait for it.
        idle: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The input partition, with its watermark as `event.ts` minus this lag (a short varint).
    #[serde(with = "fixed64")]
    pub upstream_id: u64,
    pub upstream_count: u32,
    pub watermark_lag: i64,
    /// The input message's offset, and the record's number among those the message caused:
    /// together they tell a record sent again (after an ingest restart) from a new one.
    pub offset: i64,
    pub sub: u32,
    pub shard: Shard,
    /// [`Shard::key_hash`] of the key the detectors named (the key itself stays home).
    #[serde(with = "fixed64")]
    pub key_hash: u64,
    /// [`Event::tiebreak`] of the whole event, so equal times keep the order replay gives them.
    #[serde(with = "fixed64")]
    pub tie: u64,
    pub event: WireEvent,
}

impl EventRecord {
    pub fn upstream(&self) -> Upstream {
        Upstream {
            id: self.upstream_id,
            count: self.upstream_count,
            watermark: self.event.ts.saturating_sub(self.watermark_lag),
        }
    }
}

/// A u64 as 8 fixed bytes (postcard would spend 10 on a hash as a varint).
mod fixed64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&v.to_le_bytes(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        <[u8; 8]>::deserialize(d).map(u64::from_le_bytes)
    }
}

/// The fields of an [`Event`] that detectors and rules read. Left behind: gateway, bytes sent,
/// request id (only the tiebreak needed it), and the request line's other parts unless a
/// loaded rule reads them ([`WireRequest`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    pub ts: Millis,
    pub client_id: Option<Text>,
    pub client_id_source: ClientIdSource,
    pub token_fingerprint: Option<[u8; 8]>,
    pub credential_id: Option<Text>,
    /// [`Event::principal`] (version 2).
    pub principal: Option<Text>,
    pub scopes: Vec<Text>,
    pub source_ip: Option<IpAddr>,
    pub path: Option<Text>,
    pub route: Option<Text>,
    pub upstream: Option<Text>,
    pub status: Option<u16>,
    pub latency_ms: Option<f64>,
    pub upstream_latency_ms: Option<f64>,
    pub exposures: Vec<WireExposure>,
    /// [`Event::claims`] (version 3).
    pub claims: Option<TokenClaims>,
    /// The rest of the request line, only when a loaded rule reads it (Sigma rules; version 4).
    pub request: Option<Box<WireRequest>>,
}

/// What Sigma rules read beyond the detectors' fields: the request line's method, host, query
/// (scrubbed) and user agent, the subject (`cs-username`) and bytes sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WireRequest {
    pub method: Option<Text>,
    pub host: Option<Text>,
    pub query: Option<Text>,
    pub user_agent: Option<Text>,
    pub subject: Option<Text>,
    pub bytes_sent: Option<u64>,
    pub referer: Option<Text>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireExposure {
    pub kind: String,
    pub place: String,
    pub fingerprint: [u8; 8],
}

impl WireEvent {
    /// `ev`'s fields the detectors read; with `request`, also those of [`WireRequest`].
    pub fn from_event(ev: &Event, request: bool) -> Self {
        WireEvent {
            ts: ev.ts,
            client_id: ev.client_id.clone(),
            client_id_source: ev.client_id_source,
            token_fingerprint: ev.token_fingerprint.map(|f| f.0),
            credential_id: ev.credential_id.clone(),
            principal: ev.principal.clone(),
            scopes: ev.scopes.clone(),
            source_ip: ev.source_ip,
            path: ev.path.clone(),
            route: ev.route.clone(),
            upstream: ev.upstream.clone(),
            status: ev.status,
            latency_ms: ev.latency_ms,
            upstream_latency_ms: ev.upstream_latency_ms,
            exposures: ev
                .exposures
                .iter()
                .map(|x| WireExposure { kind: x.kind.clone(), place: x.place.clone(), fingerprint: x.fingerprint.0 })
                .collect(),
            claims: ev.claims.as_deref().cloned(),
            request: request.then(|| {
                Box::new(WireRequest {
                    method: ev.method.clone(),
                    host: ev.host.clone(),
                    query: ev.query.clone(),
                    user_agent: ev.user_agent.clone(),
                    subject: ev.subject.clone(),
                    bytes_sent: ev.bytes_sent,
                    referer: ev.referer.clone(),
                })
            }),
        }
    }

    pub fn into_event(self) -> Event {
        Event {
            ts: self.ts,
            gateway: "repartitioned",
            client_id: self.client_id,
            client_id_source: self.client_id_source,
            token_fingerprint: self.token_fingerprint.map(Fingerprint),
            credential_id: self.credential_id,
            principal: self.principal,
            scopes: self.scopes,
            source_ip: self.source_ip,
            path: self.path,
            route: self.route,
            upstream: self.upstream,
            status: self.status,
            latency_ms: self.latency_ms,
            upstream_latency_ms: self.upstream_latency_ms,
            exposures: self
                .exposures
                .into_iter()
                .map(|x| Exposure { kind: x.kind, place: x.place, fingerprint: Fingerprint(x.fingerprint) })
                .collect(),
            claims: self.claims.map(std::sync::Arc::new),
            ..match self.request {
                Some(r) => {
                    let WireRequest { method, host, query, user_agent, subject, bytes_sent, referer } = *r;
                    Event { method, host, query, user_agent, subject, bytes_sent, referer, ..Event::default() }
                }
                None => Event::default(),
            }
        }
    }
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("record of encoding version {0}, this build reads version {VERSION}")]
    Version(u8),
    #[error("malformed record: {0}")]
    Malformed(String),
}

impl Record {
    /// Appends the encoded record to `out` (cleared first).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.push(VERSION);
        let body = postcard::to_extend(self, std::mem::take(out)).expect("records serialize");
        *out = body;
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        match bytes.split_first() {
            None => Err(DecodeError::Empty),
            Some((&VERSION, body)) => postcard::from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string())),
            Some((v, _)) => Err(DecodeError::Version(*v)),
        }
    }
}

/// The id of one input partition: a 64-bit FNV-1a hash of topic and partition, the same on
/// every instance.
pub fn upstream_id(topic: &str, partition: i32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes().chain([0]).chain(partition.to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The repartition partition of a shard key's hash ([`Shard::key_hash`]), out of `partitions`:
/// the same on every instance and every run.
pub fn partition_of(key_hash: u64, partitions: u32) -> i32 {
    (key_hash % partitions.max(1) as u64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event {
            ts: 1_763_720_400_123,
            gateway: "kong",
            client_id: Some("billing-prod".into()),
            client_id_source: ClientIdSource::Gateway,
            subject: Some("alice".into()),
            token_fingerprint: Some(Fingerprint([9, 8, 7, 6, 5, 4, 3, 2])),
            credential_id: Some("cred-1".into()),
            principal: Some("consumer:4f1c".into()),
            scopes: vec!["payments:write".into(), "profile".into()],
            source_ip: Some("2001:db8::7".parse().unwrap()),
            method: Some("POST".into()),
            query: Some("q=gatewatch&access_token=%5Bjwt%3A0908070605040302%5D".into()),
            host: Some("api.example.com".into()),
            path: Some("/v1/payments/42".into()),
            route: Some("POST /v1/payments/{id}".into()),
            upstream: Some("payments".into()),
            status: Some(401),
            latency_ms: Some(12.5),
            upstream_latency_ms: Some(10.25),
            bytes_sent: Some(1234),
            user_agent: Some("curl/8".into()),
            referer: Some("https://shop.example/cart?step=2".into()),
            request_id: Some("req-1".into()),
            exposures: vec![Exposure {
                kind: "jwt".into(),
                place: "query:access_token".into(),
                fingerprint: Fingerprint([1; 8]),
            }],
            claims: Some(std::sync::Arc::new(TokenClaims {
                alg: Some("RS256".into()),
                issuer: Some("https://idp.example/".into()),
                audience: vec!["payments".into(), "orders".into()],
                expires_at: Some(1_763_724_000_000),
                issued_at: Some(1_763_720_400_000),
            })),
        }
    }

    #[test]
    fn an_event_round_trips_with_the_fields_detectors_read() {
        let ev = sample();
        let rec = Record::Event(Box::new(EventRecord {
            upstream_id: upstream_id("logs", 3),
            upstream_count: 12,
            watermark_lag: 30_000,
            offset: 41,
            sub: 2,
            shard: Shard::Token,
            key_hash: Shard::Token.key_hash("0908070605040302"),
            tie: ev.tiebreak(),
            event: WireEvent::from_event(&ev, false),
        }));
        let bytes = rec.encode();
        assert_eq!(bytes[0], VERSION);
        let back = Record::decode(&bytes).unwrap();
        assert_eq!(back, rec);
        let Record::Event(r) = back else { panic!("an event") };
        assert_eq!(r.upstream().watermark, ev.ts - 30_000);
        let got = r.event.into_event();
        let kept = Event {
            gateway: "repartitioned",
            subject: None,
            method: None,
            host: None,
            bytes_sent: None,
            user_agent: None,
            request_id: None,
            query: None,
            referer: None,
            ..ev.clone()
        };
        assert_eq!(got, kept);
        // With a rule that reads the request line, its parts travel too.
        let full = WireEvent::from_event(&ev, true).into_event();
        assert_eq!(full, Event { gateway: "repartitioned", request_id: None, ..ev.clone() });
        let json = serde_json::to_string(&ev).unwrap();
        assert!(bytes.len() * 3 < json.len() * 2, "{} bytes, the event as JSON {}", bytes.len(), json.len());
    }

    #[test]
    fn heartbeats_round_trip_and_bad_records_are_refused() {
        let hb = Record::Heartbeat { upstream: Upstream { id: 7, count: 1, watermark: Millis::MIN }, idle: true };
        assert_eq!(Record::decode(&hb.encode()).unwrap(), hb);
        assert_eq!(Record::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(Record::decode(&[VERSION + 1, 0]), Err(DecodeError::Version(VERSION + 1)));
        assert!(matches!(Record::decode(&[VERSION, 0xff, 0xff]), Err(DecodeError::Malformed(_))));
        let mut cut = hb.encode();
        cut.pop();
        assert!(Record::decode(&cut).is_err());
    }

    #[test]
    fn ids_and_partitions_are_stable_and_spread() {
        assert_eq!(upstream_id("logs", 0), upstream_id("logs", 0));
        assert_ne!(upstream_id("logs", 0), upstream_id("logs", 1));
        assert_ne!(upstream_id("logs", 1), upstream_id("logs1", 0));
        let mut seen = [0u32; 12];
        for i in 0..1200 {
            seen[partition_of(Shard::Source.key_hash(&format!("10.0.{i}.0/24")), 12) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (50..=150).contains(n)), "{seen:?}");
        assert_ne!(Shard::Source.key_hash("x"), Shard::Route.key_hash("x"));
        assert_eq!(Shard::Route.key_hash("GET /v1/users/{id}"), Shard::Route.key_hash("GET /v1/users/{id}"));
    }
}

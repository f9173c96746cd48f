//! Normalization: one parser per gateway format, all producing [`Event`].
//!
//! Every credential on the record is fingerprinted while the record is read
//! (see [`identity`]); the raw value never leaves this stage. A record that
//! cannot be read is a [`Reject`] with a reason, counted and sent on, never a panic.

pub mod apisix;
pub mod aws;
pub mod azure;
pub mod client_ip;
pub mod detect;
pub mod envelope;
pub mod envoy;
pub mod envoy_text;
pub mod fields;
pub mod formats;
pub mod generic;
pub mod haproxy;
pub mod identity;
mod json;
pub mod kong;
pub mod missing;
pub mod nginx;
pub mod nginx_json;
pub mod route;
pub mod text;
pub mod time;
pub mod token_cache;
pub mod traefik;
pub mod tyk;

use std::net::IpAddr;

use crate::config::GatewatchConfig;
use crate::event::{ClientIdSource, Event, Millis, Text};
use crate::scrub::{Fingerprinter, ScrubConfig, ScrubStats, Scrubber};

pub use client_ip::TrustedProxies;
pub use formats::{Format, FormatSpec, Gateway, FORMATS, GATEWAYS};
pub use missing::{missing_fields, Field, Missing, MissingCounts, Why};
pub use route::RouteTemplater;

/// Why a record was rejected. The names are metric label values: a closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    Empty,
    NotJson,
    NotAnObject,
    UnknownFormat,
    MissingTimestamp,
    BadTimestamp,
    /// A text line that does not have the columns of its format.
    Malformed,
    /// An envelope (CloudWatch, Firehose, Event Hubs, shipper wrapper) that cannot be opened.
    BadEnvelope,
    /// Compressed data gatewatch does not inflate (gzip CloudWatch/Firehose payloads).
    Compressed,
    /// An envelope or batch that holds no log records (CloudWatch control message, `[]`).
    NoRecords,
}

impl RejectReason {
    /// Every reason: the closed label set for rejection metrics.
    pub const ALL: &'static [RejectReason] = &[
        RejectReason::Empty,
        RejectReason::NotJson,
        RejectReason::NotAnObject,
        RejectReason::UnknownFormat,
        RejectReason::MissingTimestamp,
        RejectReason::BadTimestamp,
        RejectReason::Malformed,
        RejectReason::BadEnvelope,
        RejectReason::Compressed,
        RejectReason::NoRecords,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Empty => "empty",
            RejectReason::NotJson => "not_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::UnknownFormat => "unknown_format",
            RejectReason::MissingTimestamp => "missing_timestamp",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::Malformed => "malformed",
            RejectReason::BadEnvelope => "bad_envelope",
            RejectReason::Compressed => "compressed",
            RejectReason::NoRecords => "no_records",
        }
    }
}

/// Whether a message was valid UTF-8, or read with invalid bytes replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Utf8 {
    Valid,
    Replaced,
}

/// A record gatewatch could not read. `detail` never quotes the record's values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Reject { reason, detail: detail.into() }
    }

    /// From a serde_json error: position and category only, never the input text.
    pub fn json(e: &serde_json::Error) -> Self {
        let reason = if e.is_data() { RejectReason::NotAnObject } else { RejectReason::NotJson };
        Reject::new(reason, format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column()))
    }
}

/// What a format parser hands over: the record's fields, borrowed.
#[derive(Default)]
pub struct Parts<'a> {
    pub ts: Option<Millis>,
    pub method: Option<&'a str>,
    pub host: Option<&'a str>,
    /// Path, possibly still carrying its query string.
    pub uri: Option<&'a str>,
    /// The query string when the format logs it separately (without `?`).
    pub query: Option<&'a str>,
    pub status: Option<f64>,
    pub latency_ms: Option<f64>,
    pub upstream_latency_ms: Option<f64>,
    pub bytes_sent: Option<f64>,
    pub user_agent: Option<&'a str>,
    /// The `Referer` header.
    pub referer: Option<&'a str>,
    pub request_id: Option<&'a str>,
    /// The address the gateway logged as the client or peer.
    pub peer: Option<IpAddr>,
    pub xff: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub creds: identity::RawCredentials<'a>,
    /// Identity a format carries directly (e.g. authorizer claims), overriding the token's.
    pub client_id: Option<&'a str>,
    /// Where that `client_id` came from: `Gateway` when the format logs an identity the
    /// gateway established (an authorizer's verdict); the default `Claimed` otherwise.
    pub client_id_source: ClientIdSource,
    pub subject: Option<&'a str>,
    pub scopes: Option<&'a str>,
    /// The gateway's own route template (`/pets/{petId}`, `GET /pets/{petId}`),
    /// used as the route instead of templating the path.
    pub route: Option<&'a str>,
}

/// The per-run normalization context: fingerprint key, routes, proxies, field maps.
pub struct Normalizer {
    pub format: Format,
    pub fingerprinter: Fingerprinter,
    pub routes: RouteTemplater,
    pub proxies: TrustedProxies,
    pub generic: generic::GenericMap,
    /// Which header each position of HAProxy's `{…}` request capture block holds.
    pub haproxy: haproxy::Captures,
    /// Content rules run on path, user agent and host, so no secret in them reaches an event.
    pub scrubber: Scrubber,
    /// The year of record times that carry none (Tyk's text log) when no receive time says it
    /// (`[input] year`, `replay --year`).
    pub year: Option<i32>,
    /// Fingerprints and claims of the tokens seen lately.
    pub tokens: token_cache::TokenCache,
    /// `[input] client_id_is_principal`: a client id names one caller (a machine client with
    /// its own id), so it is the principal of last resort.
    pub client_id_is_principal: bool,
}

impl Normalizer {
    pub fn new(format: Format, fingerprint_key: &[u8]) -> Self {
        Normalizer {
            format,
            fingerprinter: Fingerprinter::new(fingerprint_key),
            routes: RouteTemplater::default(),
            proxies: TrustedProxies::default(),
            generic: generic::GenericMap::default(),
            haproxy: haproxy::Captures::default(),
            scrubber: Scrubber::with_defaults(Fingerprinter::new(fingerprint_key)),
            year: None,
            tokens: Default::default(),
            client_id_is_principal: false,
        }
    }

    pub fn from_config(cfg: &GatewatchConfig, format: Format, fingerprint_key: &[u8]) -> Self {
        Normalizer {
            format,
            fingerprinter: Fingerprinter::new(fingerprint_key),
            routes: RouteTemplater::new(&cfg.normalize.route_templates),
            proxies: TrustedProxies::new(&cfg.normalize.trusted_proxies),
            generic: generic::GenericMap::from_config(&cfg.input.generic),
            haproxy: haproxy::Captures::from_config(&cfg.input.haproxy),
            scrubber: {
                // `[scrub]` errors are reported by config validation; here the built-ins still run.
                let sc = ScrubConfig::from_config(cfg).unwrap_or_default();
                Scrubber::new(Fingerprinter::new(fingerprint_key), &sc)
                    .unwrap_or_else(|_| Scrubber::with_defaults(Fingerprinter::new(fingerprint_key)))
            },
            year: cfg.input.year,
            tokens: Default::default(),
            client_id_is_principal: cfg.input.client_id_is_principal,
        }
    }

    /// Reads one message (a line, or a Kafka message value), which may hold one
    /// record, a batch array of records, or an envelope around them. Calls `out`
    /// once per record.
    pub fn normalize_message(&self, msg: &[u8], out: &mut dyn FnMut(Result<Event, Reject>)) -> Utf8 {
        self.normalize_message_at(msg, None, out)
    }

    /// As [`Self::normalize_message`], with the time the message was received
    /// (the Kafka message timestamp): the event time of records whose format
    /// carries none or only part of one (Tyk's text log has no year, APISIX
    /// `origin` has no time at all). Never used when the record has its own time.
    ///
    /// Bytes that are not UTF-8 never hide a record: the message is read with each
    /// invalid sequence replaced by U+FFFD, and the answer says so (to be counted).
    pub fn normalize_message_at(
        &self,
        msg: &[u8],
        received: Option<Millis>,
        out: &mut dyn FnMut(Result<Event, Reject>),
    ) -> Utf8 {
        match crate::bytes::utf8(msg) {
            Some(_) => {
                self.message(msg, received, 0, out);
                Utf8::Valid
            }
            None => {
                let text = String::from_utf8_lossy(msg);
                self.message(text.as_bytes(), received, 0, out);
                Utf8::Replaced
            }
        }
    }

    pub(crate) fn message(
        &self,
        msg: &[u8],
        received: Option<Millis>,
        depth: u8,
        out: &mut dyn FnMut(Result<Event, Reject>),
    ) {
        let trimmed = trim_ascii(msg);
        if trimmed.is_empty() {
            out(Err(Reject::new(RejectReason::Empty, "empty record")));
            return;
        }
        if depth > envelope::MAX_DEPTH {
            out(Err(Reject::new(RejectReason::BadEnvelope, "envelopes nested too deep")));
            return;
        }
        if is_batch(trimmed) {
            match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(trimmed) {
                Ok(items) => {
                    if items.is_empty() {
                        out(Err(Reject::new(RejectReason::NoRecords, "empty batch array")));
                    }
                    for item in items {
                        self.message(item.get().as_bytes(), received, depth + 1, out);
                    }
                }
                Err(e) => out(Err(Reject::json(&e))),
            }
            return;
        }
        if self.format != Format::Generic && trimmed[0] == b'{' && envelope::unwrap(self, trimmed, received, depth, out)
        {
            return;
        }
        out(self.normalize_record_at(trimmed, received));
    }

    /// Reads one record in the configured (or detected) format.
    pub fn normalize_record(&self, rec: &[u8]) -> Result<Event, Reject> {
        self.normalize_record_at(rec, None)
    }

    /// The format this normalizer reads `rec` with: the configured one, or the detected one.
    pub fn format_of(&self, rec: &[u8]) -> Option<Format> {
        match self.format {
            Format::Auto => detect::detect(trim_ascii(rec)),
            f => Some(f),
        }
    }

    /// Reads one record, with the message's receive time for formats that need it.
    pub fn normalize_record_at(&self, rec: &[u8], received: Option<Millis>) -> Result<Event, Reject> {
        let rec = trim_ascii(rec);
        if rec.is_empty() {
            return Err(Reject::new(RejectReason::Empty, "empty record"));
        }
        let format = self
            .format_of(rec)
            .ok_or_else(|| Reject::new(RejectReason::UnknownFormat, "no known gateway format matches this record"))?;
        match format {
            Format::Kong => kong::parse(self, rec),
            Format::Envoy => envoy::parse(self, rec),
            Format::EnvoyText => envoy_text::parse(self, rec),
            Format::Nginx => nginx::parse(self, rec),
            Format::NginxJson => nginx_json::parse(self, rec),
            Format::Haproxy => haproxy::parse(self, rec),
            Format::Aws => aws::parse(self, rec),
            Format::Traefik => traefik::parse(self, rec),
            Format::Apisix => apisix::parse(self, rec, received),
            Format::Tyk => tyk::parse(self, rec, received),
            Format::Azure => azure::parse(self, rec),
            Format::Generic => generic::parse(self, rec),
            Format::Auto => unreachable!("format_of never returns Auto"),
        }
    }

    /// Turns a format's parts into the event: identity, path split, route, client address.
    pub fn build(&self, gateway: &'static str, p: Parts<'_>) -> Result<Event, Reject> {
        let ts = p.ts.ok_or_else(|| Reject::new(RejectReason::MissingTimestamp, "no timestamp field"))?;
        let (path, query_in_uri) = match p.uri {
            Some(u) => match u.split_once('?') {
                Some((a, q)) => (Some(a), Some(q)),
                None => (Some(u), None),
            },
            None => (None, None),
        };
        // Full URLs (`http://host/path`) are reduced to the path.
        let path = path.map(strip_scheme_host);
        let mut creds = p.creds;
        creds.query = creds.query.or(p.query).or(query_in_uri);
        let id = identity::resolve_with(&self.fingerprinter, Some(&self.tokens), Some(&self.scrubber), &creds);
        let method = p.method.filter(|m| !m.is_empty() && *m != "-");
        // A secret in the path, user agent or host never reaches the event: replaced by its
        // marker, and recorded as an exposure. A clean value costs one literal scan, and a
        // user agent, host or referer found clean before costs none.
        let mut scrub_stats = ScrubStats::default();
        let mut exposures: Vec<crate::event::Exposure> = id
            .exposures
            .into_iter()
            .map(|(kind, place, fingerprint)| crate::event::Exposure { kind: kind.to_string(), place, fingerprint })
            .collect();
        // A secret anywhere in the query (`?q=ghp_…`, `?password=…`, URL-encoded or not) is an
        // exposure too; the parameters identity already recorded by name are not counted twice.
        // What is left of it (markers for secrets) is the event's query, for Sigma rules.
        let mut query = None;
        if let Some(q) = creds.query.filter(|q| !q.is_empty()) {
            let (clean, ex) = self.scrubber.scrub_value(q, "query", &mut scrub_stats);
            for x in ex {
                if !exposures.iter().any(|e| e.fingerprint == x.fingerprint) {
                    exposures.push(x);
                }
            }
            query = Some(Text::from(clean));
        }
        // A path is new on most requests; a user agent, host or referer is one of a few
        // hundred, so a value found clean before is not scanned again (`scrub_repeated_value`).
        let mut clean = |v: Option<&str>, place: &str, repeats: bool| -> Option<Text> {
            let v = v?;
            let (out, mut ex) = if repeats {
                self.scrubber.scrub_repeated_value(v, place, &mut scrub_stats)
            } else {
                self.scrubber.scrub_value(v, place, &mut scrub_stats)
            };
            exposures.append(&mut ex);
            Some(Text::from(out))
        };
        let path_clean = clean(path, "path", false);
        let user_agent = clean(p.user_agent.filter(|u| !u.is_empty() && *u != "-"), "user_agent", true);
        let host = clean(p.host.filter(|h| !h.is_empty() && *h != "-"), "host", true);
        // A referer is a URL another page put a token in as often as not.
        let referer = clean(p.referer.filter(|r| !r.is_empty() && *r != "-"), "referer", true);
        // A route the format logs (AWS `resourcePath`/`routeKey`) wins; otherwise the route is
        // templated from the scrubbed path, so a token in a segment never becomes a route.
        let route = match p.route.filter(|r| !r.is_empty() && *r != "-") {
            // `GET /pets/{petId}`: already carries the method.
            Some(r) if r.contains(' ') => Some(Text::from(r)),
            Some(r) => Some(match method {
                Some(m) => compact_str::format_compact!("{m} {r}"),
                None => Text::from(r),
            }),
            None => path_clean.as_deref().map(|pa| self.routes.route(method, pa)),
        };
        let mut scopes = id.scopes;
        if let Some(s) = p.scopes {
            scopes = s.split([' ', ',']).filter(|x| !x.is_empty()).map(Text::from).collect();
        }
        let (client_id, client_id_source) = match p.client_id.filter(|v| !identity::is_sentinel(v)) {
            Some(c) => (Some(Text::from(c)), p.client_id_source),
            None => (id.client_id, id.client_id_source),
        };
        let subject = p.subject.filter(|v| !identity::is_sentinel(v));
        // The caller when no token names it: the consumer or user name, else a subject the
        // format logs (an authorizer's, `jwt_authn`'s), else, where configured, the client id.
        let principal =
            id.principal.or_else(|| subject.map(|s| compact_str::format_compact!("sub:{s}"))).or_else(|| {
                client_id
                    .as_ref()
                    .filter(|_| self.client_id_is_principal)
                    .map(|c| compact_str::format_compact!("client:{c}"))
            });
        Ok(Event {
            ts,
            gateway,
            client_id,
            client_id_source,
            subject: subject.map(Text::from).or(id.subject),
            token_fingerprint: id.token_fingerprint,
            credential_id: id.credential_id,
            principal,
            scopes,
            source_ip: self.proxies.client_ip(p.peer, p.xff),
            method: method.map(Text::from),
            host,
            path: path_clean,
            query,
            route,
            upstream: p.upstream.filter(|u| !u.is_empty() && *u != "-").map(Text::from),
            status: p.status.filter(|s| (0.0..1000.0).contains(s)).map(|s| s as u16),
            latency_ms: p.latency_ms.filter(|l| *l >= 0.0),
            upstream_latency_ms: p.upstream_latency_ms.filter(|l| *l >= 0.0),
            bytes_sent: p.bytes_sent.filter(|b| *b >= 0.0).map(|b| b as u64),
            user_agent,
            referer,
            request_id: p.request_id.filter(|r| !r.is_empty() && *r != "-").map(Text::from),
            exposures,
            claims: id.claims,
        })
    }
}

fn strip_scheme_host(p: &str) -> &str {
    if let Some(rest) = p.strip_prefix("http://").or_else(|| p.strip_prefix("https://")) {
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    } else {
        p
    }
}

/// Seconds (NGINX `$request_time`, `$upstream_response_time`) to ms, rounded to
/// the microsecond so that `0.100 + 0.004` s reads 104 ms, not 104.00000000000001.
pub fn secs_to_ms(s: f64) -> f64 {
    (s * 1e6).round() / 1e3
}

/// A JSON array of records (`[{...}, ...]` or `[]`), not a text line that starts
/// with `[` (Envoy's `[START_TIME]`).
fn is_batch(b: &[u8]) -> bool {
    b.first() == Some(&b'[') && matches!(trim_ascii(&b[1..]).first(), Some(b'{') | Some(b']') | Some(b'"') | None)
}

pub fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &b[start..end]
}

#[cfg(test)]
mod principal_tests {
    use super::*;

    fn read(n: &Normalizer, rec: &str) -> Event {
        n.normalize_record(rec.as_bytes()).unwrap_or_else(|e| panic!("{e:?}: {rec}"))
    }

    #[test]
    fn the_principal_is_the_best_caller_a_record_names_without_its_token() {
        let n = Normalizer::new(Format::Kong, b"k");
        // Kong 3: the header is REDACTED; the credential id and the consumer are logged
        let kong = read(
            &n,
            r#"{"started_at":1763720400000,"client_ip":"198.51.100.4","request":{"method":"GET","uri":"/v1/items","headers":{"authorization":"REDACTED","host":"api.example.com"}},"response":{"status":200},"consumer":{"id":"c0ffee-1","username":"catalog-app"},"authenticated_entity":{"id":"cred-9","consumer_id":"c0ffee-1"}}"#,
        );
        assert_eq!(kong.token_fingerprint, None);
        assert_eq!(kong.principal.as_deref(), Some("consumer:c0ffee-1"));
        assert_eq!(kong.principal_entity().as_deref(), Some("cred:cred-9"), "the credential id comes first");
        let n = Normalizer::new(Format::Traefik, b"k");
        // Traefik: the caller only as `ClientUsername`
        let traefik = read(
            &n,
            r#"{"ClientHost":"198.51.100.4","ClientUsername":"alice","DownstreamStatus":200,"Duration":1500000,"RequestMethod":"GET","RequestPath":"/v1/x","StartUTC":"2026-03-08T14:32:15Z"}"#,
        );
        assert_eq!(traefik.principal_entity().as_deref(), Some("user:alice"));
        let n = Normalizer::new(Format::Generic, b"k");
        // a subject the record logs (an authorizer's), while the shared client id is no principal
        let generic =
            r#"{"ts":"2026-03-08T14:32:15Z","client_id":"shop-ios","subject":"usr_1","status":200,"path":"/x"}"#;
        assert_eq!(read(&n, generic).principal_entity().as_deref(), Some("sub:usr_1"));
        let anonymous = r#"{"ts":"2026-03-08T14:32:15Z","client_id":"shop-ios","status":200,"path":"/x"}"#;
        assert_eq!(read(&n, anonymous).principal_entity(), None);
        // ...unless configured as one
        let machine = Normalizer { client_id_is_principal: true, ..Normalizer::new(Format::Generic, b"k") };
        assert_eq!(read(&machine, anonymous).principal_entity().as_deref(), Some("client:shop-ios"));
        // a token, where logged, is always the entity
        let bearer = r#"{"ts":"2026-03-08T14:32:15Z","subject":"usr_1","authorization":"Bearer abc.def","status":200,"path":"/x"}"#;
        let ev = read(&n, bearer);
        assert_eq!(ev.principal_entity(), ev.token_fingerprint.map(|f| f.to_hex()));
    }
}

//! Normalization: one parser per gateway format, all producing [`Event`].
//!
//! Every credential on the record is fingerprinted while the record is read
//! (see [`identity`]); the raw value never leaves this stage. A record that
//! cannot be read is a [`Reject`] with a reason, counted and sent on, never a panic.

pub mod client_ip;
pub mod detect;
pub mod envoy;
pub mod fields;
pub mod generic;
pub mod identity;
pub mod kong;
pub mod route;
pub mod time;

use std::net::IpAddr;

use crate::config::GatewatchConfig;
use crate::event::{Event, Millis};
use crate::scrub::{Fingerprinter, ScrubConfig, ScrubStats, Scrubber};

pub use client_ip::TrustedProxies;
pub use route::RouteTemplater;

/// Input formats. `Auto` picks per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Auto,
    Kong,
    Envoy,
    Generic,
}

impl Format {
    pub const NAMES: &'static [&'static str] = &["auto", "kong", "envoy", "generic"];

    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "auto" => Format::Auto,
            "kong" => Format::Kong,
            "envoy" | "istio" => Format::Envoy,
            "generic" | "json" => Format::Generic,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Kong => "kong",
            Format::Envoy => "envoy",
            Format::Generic => "generic",
        }
    }
}

/// Why a record was rejected. The names are metric label values: a closed set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    Empty,
    NotJson,
    NotAnObject,
    UnknownFormat,
    MissingTimestamp,
    BadTimestamp,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Empty => "empty",
            RejectReason::NotJson => "not_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::UnknownFormat => "unknown_format",
            RejectReason::MissingTimestamp => "missing_timestamp",
            RejectReason::BadTimestamp => "bad_timestamp",
        }
    }
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
    pub request_id: Option<&'a str>,
    /// The address the gateway logged as the client or peer.
    pub peer: Option<IpAddr>,
    pub xff: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub creds: identity::RawCredentials<'a>,
    /// Identity a format carries directly (e.g. authorizer claims), overriding the token's.
    pub client_id: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub scopes: Option<&'a str>,
}

/// The per-run normalization context: fingerprint key, routes, proxies, field maps.
pub struct Normalizer {
    pub format: Format,
    pub fingerprinter: Fingerprinter,
    pub routes: RouteTemplater,
    pub proxies: TrustedProxies,
    pub generic: generic::GenericMap,
    /// Content rules run on path, user agent and host, so no secret in them reaches an event.
    pub scrubber: Scrubber,
}

impl Normalizer {
    pub fn new(format: Format, fingerprint_key: &[u8]) -> Self {
        Normalizer {
            format,
            fingerprinter: Fingerprinter::new(fingerprint_key),
            routes: RouteTemplater::default(),
            proxies: TrustedProxies::default(),
            generic: generic::GenericMap::default(),
            scrubber: Scrubber::with_defaults(Fingerprinter::new(fingerprint_key)),
        }
    }

    pub fn from_config(cfg: &GatewatchConfig, format: Format, fingerprint_key: &[u8]) -> Self {
        Normalizer {
            format,
            fingerprinter: Fingerprinter::new(fingerprint_key),
            routes: RouteTemplater::new(&cfg.normalize.route_templates),
            proxies: TrustedProxies::new(&cfg.normalize.trusted_proxies),
            generic: generic::GenericMap::from_config(&cfg.input.generic),
            scrubber: {
                // `[scrub]` errors are reported by config validation; here the built-ins still run.
                let sc = ScrubConfig::from_config(cfg).unwrap_or_default();
                Scrubber::new(Fingerprinter::new(fingerprint_key), &sc)
                    .unwrap_or_else(|_| Scrubber::with_defaults(Fingerprinter::new(fingerprint_key)))
            },
        }
    }

    /// Reads one message (a line, or a Kafka message value), which may hold one
    /// record or a batch array of records. Calls `out` once per record.
    pub fn normalize_message(&self, msg: &[u8], out: &mut dyn FnMut(Result<Event, Reject>)) {
        let trimmed = trim_ascii(msg);
        if trimmed.is_empty() {
            out(Err(Reject::new(RejectReason::Empty, "empty record")));
            return;
        }
        if trimmed[0] == b'[' {
            match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(trimmed) {
                Ok(items) => {
                    if items.is_empty() {
                        out(Err(Reject::new(RejectReason::Empty, "empty batch array")));
                    }
                    for item in items {
                        out(self.normalize_record(item.get().as_bytes()));
                    }
                }
                Err(e) => out(Err(Reject::json(&e))),
            }
            return;
        }
        out(self.normalize_record(trimmed));
    }

    /// Reads one record in the configured (or detected) format.
    pub fn normalize_record(&self, rec: &[u8]) -> Result<Event, Reject> {
        let rec = trim_ascii(rec);
        if rec.is_empty() {
            return Err(Reject::new(RejectReason::Empty, "empty record"));
        }
        let format = match self.format {
            Format::Auto => detect::detect(rec).ok_or_else(|| {
                Reject::new(RejectReason::UnknownFormat, "no known gateway format matches this record")
            })?,
            f => f,
        };
        match format {
            Format::Kong => kong::parse(self, rec),
            Format::Envoy => envoy::parse(self, rec),
            Format::Generic => generic::parse(self, rec),
            Format::Auto => unreachable!("detect never returns Auto"),
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
        let id = identity::resolve(&self.fingerprinter, &creds);
        let method = p.method.filter(|m| !m.is_empty() && *m != "-");
        // A secret in the path, user agent or host never reaches the event: replaced by its
        // marker, and recorded as an exposure. Clean values cost one literal scan.
        let mut scrub_stats = ScrubStats::default();
        let mut exposures: Vec<crate::event::Exposure> = id
            .exposures
            .into_iter()
            .map(|(kind, place, fingerprint)| crate::event::Exposure { kind: kind.to_string(), place, fingerprint })
            .collect();
        let mut clean = |v: Option<&str>, place: &str| -> Option<String> {
            let (out, mut ex) = self.scrubber.scrub_value(v?, place, &mut scrub_stats);
            exposures.append(&mut ex);
            Some(out.into_owned())
        };
        let path_clean = clean(path, "path");
        let user_agent = clean(p.user_agent.filter(|u| !u.is_empty() && *u != "-"), "user_agent");
        let host = clean(p.host.filter(|h| !h.is_empty() && *h != "-"), "host");
        // The route is templated from the scrubbed path: a token in a segment never becomes a route.
        let route = path_clean.as_deref().map(|pa| self.routes.route(method, pa));
        let mut scopes = id.scopes;
        if let Some(s) = p.scopes {
            scopes = s.split([' ', ',']).filter(|x| !x.is_empty()).map(str::to_string).collect();
        }
        Ok(Event {
            ts,
            gateway,
            client_id: p.client_id.filter(|v| !identity::is_sentinel(v)).map(str::to_string).or(id.client_id),
            subject: p.subject.filter(|v| !identity::is_sentinel(v)).map(str::to_string).or(id.subject),
            token_fingerprint: id.token_fingerprint,
            credential_id: id.credential_id,
            scopes,
            source_ip: self.proxies.client_ip(p.peer, p.xff),
            method: method.map(str::to_string),
            host,
            path: path_clean,
            route,
            upstream: p.upstream.filter(|u| !u.is_empty() && *u != "-").map(str::to_string),
            status: p.status.filter(|s| (0.0..1000.0).contains(s)).map(|s| s as u16),
            latency_ms: p.latency_ms.filter(|l| *l >= 0.0),
            upstream_latency_ms: p.upstream_latency_ms.filter(|l| *l >= 0.0),
            bytes_sent: p.bytes_sent.filter(|b| *b >= 0.0).map(|b| b as u64),
            user_agent,
            request_id: p.request_id.filter(|r| !r.is_empty() && *r != "-").map(str::to_string),
            exposures,
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

pub fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &b[start..end]
}

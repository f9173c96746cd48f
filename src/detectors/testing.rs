//! Helpers for detector tests: build events with chosen timestamps, build a
//! detector from a TOML snippet, run events through it in order.

use std::path::Path;

use super::{Detector, Limits, REGISTRY};
use crate::config::DetectorFile;
use crate::event::{Event, Finding, Fingerprint, Millis};
use crate::normalize::RouteTemplater;

/// Parses a detector file of `kind` whose `[params]` body is `params`.
pub fn file_from_toml(kind: &str, params: &str) -> DetectorFile {
    let text = format!("id = \"test-{kind}\"\nkind = \"{kind}\"\n[params]\n{params}\n");
    DetectorFile::parse(&text, Path::new("test.toml")).expect("test detector file parses")
}

/// A detector of `kind` with the given params; panics on invalid params.
pub fn detector_from_toml(kind: &str, params: &str) -> Box<dyn Detector> {
    let file = file_from_toml(kind, params);
    let (_, build) = REGISTRY.iter().find(|(k, _)| *k == kind).expect("registered kind");
    match build(&file, Limits::default()) {
        Ok(d) => d,
        Err(e) => panic!("invalid params: {e:?}"),
    }
}

/// Feeds events in order, then a far-future watermark; returns every finding.
pub fn run(d: &mut dyn Detector, events: &[Event]) -> Vec<Finding> {
    let mut out = feed(d, events);
    let end = events.last().map_or(0, |e| e.ts) + 48 * 3_600_000;
    d.on_watermark(end, &mut out);
    out
}

/// Feeds events in order with a watermark every second of event time, as [`run`] does, but
/// closes nothing at the end: the state is left as it is after the last event, for
/// [`Detector::describe`].
pub fn feed(d: &mut dyn Detector, events: &[Event]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut last_tick = Millis::MIN;
    for e in events {
        if last_tick == Millis::MIN || e.ts - last_tick >= 1000 {
            d.on_watermark(e.ts, &mut out);
            last_tick = e.ts;
        }
        d.on_event(e, &mut out);
    }
    out
}

/// `describe` of `entity`, asked twice: the answers must be the same (asking changes nothing).
pub fn describe_twice(d: &dyn Detector, entity: &crate::event::Entity) -> Option<serde_json::Value> {
    let stats = d.stats();
    let first = d.describe(entity);
    assert_eq!(d.describe(entity), first, "describe is read-only");
    assert_eq!(d.stats(), stats, "describe is read-only");
    first
}

/// Starts an event at `ts` (ms).
pub fn ev(ts: Millis) -> EventBuilder {
    EventBuilder(Event { ts, gateway: "test", status: Some(200), latency_ms: Some(20.0), ..Default::default() })
}

pub struct EventBuilder(pub Event);

impl EventBuilder {
    pub fn ip(mut self, ip: &str) -> Self {
        self.0.source_ip = Some(ip.parse().expect("test ip"));
        self
    }
    pub fn client(mut self, c: &str) -> Self {
        self.0.client_id = Some(c.into());
        self
    }
    /// A token whose fingerprint is `[n; 8]`.
    pub fn token(mut self, n: u8) -> Self {
        self.0.token_fingerprint = Some(Fingerprint([n; 8]));
        self
    }
    pub fn credential(mut self, c: &str) -> Self {
        self.0.credential_id = Some(c.into());
        self
    }
    /// The record's principal, prefix included (`user:alice`, `consumer:…`, `sub:…`).
    pub fn principal(mut self, p: &str) -> Self {
        self.0.principal = Some(p.into());
        self
    }
    pub fn scopes(mut self, s: &[&str]) -> Self {
        self.0.scopes = s.iter().map(|&x| x.into()).collect();
        self
    }
    pub fn req(mut self, method: &str, path: &str) -> Self {
        self.0.method = Some(method.into());
        self.0.path = Some(path.into());
        self.0.route = Some(RouteTemplater::default().route(Some(method), path));
        self
    }
    pub fn get(self, path: &str) -> Self {
        self.req("GET", path)
    }
    pub fn post(self, path: &str) -> Self {
        self.req("POST", path)
    }
    pub fn delete(self, path: &str) -> Self {
        self.req("DELETE", path)
    }
    pub fn status(mut self, s: u16) -> Self {
        self.0.status = Some(s);
        self
    }
    pub fn latency(mut self, ms: f64) -> Self {
        self.0.latency_ms = Some(ms);
        self
    }
    pub fn upstream(mut self, u: &str) -> Self {
        self.0.upstream = Some(u.into());
        self
    }
    /// The bearer JWT's claims (see [`crate::event::TokenClaims`]).
    pub fn claims(mut self, c: crate::event::TokenClaims) -> Self {
        self.0.claims = Some(std::sync::Arc::new(c));
        self
    }
    pub fn build(self) -> Event {
        self.0
    }
}

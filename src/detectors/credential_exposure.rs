//! `credential_exposure`: a client sends credentials where they do not belong —
//! a token or key in a URL, basic auth over a logged header, a private key in a
//! path or user agent. The scrubber and identity resolution record these on the
//! event as [`Exposure`]s (kind, place, fingerprint); this detector turns them
//! into alerts that name the client, the kind and the place, never the secret.
//!
//! Entity: the client id if known, else the token (the exposed secret's
//! fingerprint, or the request's token entity), else the source address.
//! May touch: the events it is given, its own keyed state, the findings it
//! returns. No clock, no I/O.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{parse_params, Checker, Detector, Limits};
use crate::config::{DetectorFile, DurationStr};
use crate::event::{format_ts, Entity, EntityKind, Event, Exposure, Finding, Millis, Shard};
use crate::state::{KeyedState, SlidingCount, StateStats};

/// `[params]` of a `credential_exposure` detector file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Secret kinds that count (`jwt`, `api_key`, `basic_auth`, `private_key`, ...). Empty: all kinds.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Places that count, matched as prefixes of the exposure's place (`query`,
    /// `query:access_token`, `header:authorization`, `path`, `user_agent`). Empty: all places.
    #[serde(default)]
    pub places: Vec<String>,
    /// Exposures by one entity within `window` needed to alert. Default 1.
    #[serde(default = "default_min_occurrences")]
    pub min_occurrences: usize,
    /// The window exposures are counted in. Default 10m.
    #[serde(default = "default_window")]
    pub window: DurationStr,
}

fn default_min_occurrences() -> usize {
    1
}
fn default_window() -> DurationStr {
    DurationStr(10 * 60_000)
}

/// Per-entity state: exposures in the window and what they were.
#[derive(Default)]
struct EntityState {
    count: SlidingCount,
    kinds: BTreeSet<String>,
    places: BTreeSet<String>,
    fingerprints: BTreeSet<String>,
    /// End of the last alert's window: no new alert for exposures already reported.
    alerted_until: Option<Millis>,
}

pub struct CredentialExposure {
    params: Params,
    window: Millis,
    state: KeyedState<Entity, EntityState>,
    /// The latest event time seen (event or watermark): what [`Detector::describe`] reads the
    /// window as of.
    now: Millis,
}

/// Most distinct fingerprints / kinds / places kept as evidence per entity.
const EVIDENCE_CAP: usize = 16;

pub fn build(file: &DetectorFile, limits: Limits) -> Result<Box<dyn Detector>, Vec<crate::config::ConfigError>> {
    let params: Params = parse_params(file)?;
    let mut c = Checker::new(file);
    c.check(
        params.min_occurrences >= 1 && params.min_occurrences <= 10_000,
        "min_occurrences",
        "must be between 1 and 10000",
    );
    c.check(params.window.0 >= 1_000 && params.window.0 <= 24 * 3_600_000, "window", "must be between 1s and 24h");
    for (i, k) in params.kinds.iter().enumerate() {
        c.check(
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            &format!("kinds[{i}]"),
            "a kind name: lower-case letters, digits, `_`",
        );
    }
    for (i, p) in params.places.iter().enumerate() {
        c.check(!p.is_empty(), &format!("places[{i}]"), "must not be empty");
    }
    let window = params.window.0;
    let det = CredentialExposure {
        params,
        window,
        state: KeyedState::new(limits.max_keys, limits.idle_timeout),
        now: Millis::MIN,
    };
    c.finish(Box::new(det) as Box<dyn Detector>)
}

impl CredentialExposure {
    fn counts(&self, x: &Exposure) -> bool {
        (self.params.kinds.is_empty() || self.params.kinds.contains(&x.kind))
            && (self.params.places.is_empty() || self.params.places.iter().any(|p| x.place.starts_with(p.as_str())))
    }

    fn entity(ev: &Event, first: &Exposure) -> Option<Entity> {
        if let Some(c) = &ev.client_id {
            return Some(Entity::new(EntityKind::ClientId, c.clone()));
        }
        if let Some(t) = ev.token_entity() {
            return Some(Entity::new(EntityKind::Token, t));
        }
        if first.fingerprint != Default::default() {
            return Some(Entity::new(EntityKind::Token, first.fingerprint.to_hex()));
        }
        ev.source_ip.map(|ip| Entity::new(EntityKind::SourceIp, ip.to_string()))
    }
}

impl Detector for CredentialExposure {
    fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String> {
        let first = ev.exposures.iter().find(|x| self.counts(x))?;
        let entity = Self::entity(ev, first)?;
        let of = match entity.kind {
            EntityKind::ClientId => Shard::ClientId,
            EntityKind::Token => Shard::Token,
            EntityKind::SourceIp => Shard::Source,
            EntityKind::Route => Shard::Route,
        };
        (of == shard).then_some(entity.id)
    }

    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        self.now = self.now.max(ev.ts);
        let counted: Vec<&Exposure> = ev.exposures.iter().filter(|x| self.counts(x)).collect();
        let Some(first) = counted.first() else { return };
        let Some(entity) = Self::entity(ev, first) else { return };
        let window = self.window;
        let min = self.params.min_occurrences;
        let st = self.state.entry(&entity, ev.ts, EntityState::default);
        for x in counted {
            st.count.push(ev.ts, window, min.max(1));
            if st.kinds.len() < EVIDENCE_CAP {
                st.kinds.insert(x.kind.clone());
            }
            if st.places.len() < EVIDENCE_CAP {
                st.places.insert(x.place.clone());
            }
            if st.fingerprints.len() < EVIDENCE_CAP {
                st.fingerprints.insert(x.fingerprint.to_hex());
            }
        }
        if st.count.count() < min || st.alerted_until.is_some_and(|t| ev.ts < t) {
            return;
        }
        let start = st.count.first().unwrap_or(ev.ts);
        let who = match entity.kind {
            EntityKind::ClientId => format!("client {}", entity.id),
            EntityKind::Token => format!("token {}", entity.id),
            _ => format!("{} {}", entity.kind.as_str(), entity.id),
        };
        let kinds: Vec<&str> = st.kinds.iter().map(String::as_str).collect();
        let places: Vec<&str> = st.places.iter().map(String::as_str).collect();
        let summary = if min <= 1 {
            format!("{who} sent {} in {}", kinds.join(", "), places.join(", "))
        } else {
            format!(
                "{who} sent {} in {} ({} times in {})",
                kinds.join(", "),
                places.join(", "),
                st.count.count(),
                super::human_duration(window)
            )
        };
        let mut evidence = serde_json::Map::new();
        evidence.insert("kinds".into(), kinds.clone().into());
        evidence.insert("places".into(), places.clone().into());
        evidence.insert("occurrences".into(), (st.count.count() as u64).into());
        evidence.insert("fingerprints".into(), st.fingerprints.iter().cloned().collect::<Vec<_>>().into());
        if let Some(ip) = ev.source_ip {
            evidence.insert("source_ip".into(), ip.to_string().into());
        }
        out.push(Finding {
            within: None,
            entity,
            client_id: ev.client_id.as_deref().map(str::to_string),
            client_id_source: ev.client_id_source,
            token_fingerprint: ev.token_fingerprint,
            window_start: start,
            window_end: ev.ts,
            summary,
            evidence,
        });
        st.alerted_until = Some(ev.ts + window);
        st.count.clear();
        st.kinds.clear();
        st.places.clear();
        st.fingerprints.clear();
    }

    fn on_watermark(&mut self, watermark: Millis, _out: &mut Vec<Finding>) {
        self.now = self.now.max(watermark);
        self.state.sweep(watermark);
    }

    fn stats(&self) -> StateStats {
        self.state.stats()
    }

    /// An entity exposures are counted for (its client, else its token, else its address):
    /// the exposures in the window open now (counted up to `min_occurrences`, all this needs),
    /// the kinds, places and secrets' fingerprints seen since the last alert, and until when
    /// the last alert covers it.
    fn describe(&self, entity: &Entity) -> Option<serde_json::Value> {
        let st = self.state.get(entity)?;
        let (count, first) = st.count.within(self.now, self.window);
        let mut o = serde_json::Map::new();
        o.insert("window_ms".into(), self.window.into());
        o.insert("as_of".into(), format_ts(self.now).into());
        o.insert("exposures_in_window".into(), (count as u64).into());
        o.insert("counted_up_to".into(), (self.params.min_occurrences as u64).into());
        o.insert("min_occurrences".into(), (self.params.min_occurrences as u64).into());
        o.insert("first_exposure_at".into(), first.map(format_ts).into());
        o.insert("kinds".into(), st.kinds.iter().cloned().collect::<Vec<_>>().into());
        o.insert("places".into(), st.places.iter().cloned().collect::<Vec<_>>().into());
        o.insert("fingerprints".into(), st.fingerprints.iter().cloned().collect::<Vec<_>>().into());
        if let Some(seen) = self.state.last_seen(entity) {
            o.insert("last_seen_at".into(), format_ts(seen).into());
        }
        if let Some(t) = st.alerted_until.filter(|t| *t > self.now) {
            o.insert("reported_until".into(), format_ts(t).into());
        }
        Some(serde_json::Value::Object(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Fingerprint;

    fn file(params: &str) -> DetectorFile {
        DetectorFile::parse(
            &format!("id = \"t\"\nkind = \"credential_exposure\"\n[params]\n{params}\n"),
            std::path::Path::new("t.toml"),
        )
        .unwrap()
    }

    fn det(params: &str) -> Box<dyn Detector> {
        match build(&file(params), Limits::default()) {
            Ok(d) => d,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn ev(ts: Millis, client: Option<&str>, kind: &str, place: &str) -> Event {
        Event {
            ts,
            gateway: "generic",
            client_id: client.map(Into::into),
            source_ip: Some("203.0.113.7".parse().unwrap()),
            exposures: vec![Exposure { kind: kind.into(), place: place.into(), fingerprint: Fingerprint([7; 8]) }],
            ..Default::default()
        }
    }

    #[test]
    fn one_exposure_alerts_by_client_without_the_secret() {
        let mut d = det("");
        let mut out = Vec::new();
        d.on_event(&ev(1_000, Some("app-1"), "jwt", "query:access_token"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].entity, Entity::new(EntityKind::ClientId, "app-1"));
        assert_eq!(out[0].summary, "client app-1 sent jwt in query:access_token");
        // No second alert for the same entity inside the window.
        d.on_event(&ev(2_000, Some("app-1"), "jwt", "query:access_token"), &mut out);
        assert_eq!(out.len(), 1);
        d.on_event(&ev(1_000 + 11 * 60_000, Some("app-1"), "jwt", "query:access_token"), &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn entity_falls_back_to_token_then_ip() {
        let mut d = det("");
        let mut out = Vec::new();
        d.on_event(&ev(1_000, None, "api_key", "path"), &mut out);
        assert_eq!(out[0].entity, Entity::new(EntityKind::Token, Fingerprint([7; 8]).to_hex()));
        let mut e = ev(1_000, None, "api_key", "path");
        e.exposures[0].fingerprint = Fingerprint::default();
        d.on_event(&e, &mut out);
        assert_eq!(out[1].entity, Entity::new(EntityKind::SourceIp, "203.0.113.7"));
    }

    #[test]
    fn kinds_places_and_threshold_filter() {
        let mut d = det("kinds = [\"basic_auth\"]\nplaces = [\"header\"]\nmin_occurrences = 3\nwindow = \"1m\"");
        let mut out = Vec::new();
        d.on_event(&ev(1_000, Some("a"), "jwt", "header:authorization"), &mut out);
        d.on_event(&ev(2_000, Some("a"), "basic_auth", "query:x"), &mut out);
        assert!(out.is_empty());
        for t in [3_000, 40_000] {
            d.on_event(&ev(t, Some("a"), "basic_auth", "header:authorization"), &mut out);
        }
        assert!(out.is_empty());
        // The first of three falls out of the 1m window.
        d.on_event(&ev(70_000, Some("a"), "basic_auth", "header:authorization"), &mut out);
        assert!(out.is_empty());
        d.on_event(&ev(71_000, Some("a"), "basic_auth", "header:authorization"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].window_start, 40_000);
        assert!(out[0].summary.contains("3 times in 1m"));
    }

    #[test]
    fn params_are_strict_and_checked() {
        assert!(build(&file("min_occurences = 2"), Limits::default()).is_err());
        let errs = build(&file("min_occurrences = 0\nwindow = \"100ms\"\nkinds = [\"Bad Kind\"]"), Limits::default())
            .err()
            .unwrap();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["params.min_occurrences", "params.window", "params.kinds[0]"]);
    }

    #[test]
    fn describe_shows_the_exposures_in_the_window_without_the_secret() {
        use crate::detectors::testing::describe_twice;
        use serde_json::json;
        let mut d = det("min_occurrences = 3\nwindow = \"1m\"");
        let mut out = Vec::new();
        d.on_event(&ev(1_000, Some("app-1"), "jwt", "query:access_token"), &mut out);
        d.on_event(&ev(30_000, Some("app-1"), "basic_auth", "header:authorization"), &mut out);
        d.on_event(&ev(40_000, None, "api_key", "path"), &mut out);
        assert!(out.is_empty());
        let got = describe_twice(&*d, &Entity::new(EntityKind::ClientId, "app-1")).expect("held");
        assert_eq!(got["exposures_in_window"], json!(2));
        assert_eq!(got["min_occurrences"], json!(3));
        assert_eq!(got["first_exposure_at"], json!("1970-01-01T00:00:01Z"));
        assert_eq!(got["kinds"], json!(["basic_auth", "jwt"]));
        assert_eq!(got["places"], json!(["header:authorization", "query:access_token"]));
        assert_eq!(got["fingerprints"], json!([Fingerprint([7; 8]).to_hex()]));
        let token = describe_twice(&*d, &Entity::new(EntityKind::Token, Fingerprint([7; 8]).to_hex())).unwrap();
        assert_eq!(token["kinds"], json!(["api_key"]));
        // the first exposure leaves the 1m window
        d.on_watermark(70_000, &mut out);
        let later = describe_twice(&*d, &Entity::new(EntityKind::ClientId, "app-1")).unwrap();
        assert_eq!(
            (later["exposures_in_window"].clone(), later["first_exposure_at"].clone()),
            (json!(1), json!("1970-01-01T00:00:30Z"))
        );
        assert_eq!(describe_twice(&*d, &Entity::new(EntityKind::ClientId, "app-2")), None);
        assert_eq!(describe_twice(&*d, &Entity::new(EntityKind::SourceIp, "203.0.113.7")), None);
        // an alert: reported for a window
        d.on_event(&ev(71_000, Some("app-1"), "jwt", "query:access_token"), &mut out);
        d.on_event(&ev(72_000, Some("app-1"), "jwt", "query:access_token"), &mut out);
        assert_eq!(out.len(), 1);
        let after = describe_twice(&*d, &Entity::new(EntityKind::ClientId, "app-1")).unwrap();
        assert_eq!(after["exposures_in_window"], json!(0));
        assert_eq!(after["reported_until"], json!("1970-01-01T00:02:12Z"));
    }

    #[test]
    fn events_without_exposures_cost_nothing() {
        let mut d = det("");
        let mut out = Vec::new();
        d.on_event(&Event { ts: 1, ..Default::default() }, &mut out);
        assert!(out.is_empty());
        assert_eq!(d.stats().keys, 0);
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn shipped_file_builds() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors/credential-exposure.toml"));
        let f = DetectorFile::load(path).unwrap();
        assert_eq!(f.kind, "credential_exposure");
        assert!(build(&f, Limits::default()).is_ok());
        assert!(f.tests.len() >= 4);
    }
}

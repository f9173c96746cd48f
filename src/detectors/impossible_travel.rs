//! `impossible_travel`: one principal seen in two places too far apart for the time between
//! its requests — a credential used by somebody else, somewhere else.
//!
//! Places come from MaxMind-format databases the user supplies (`city_db`: GeoIP2 / GeoLite2
//! City or DB-IP's city lite; `asn_db`: GeoLite2 ASN, optional, for the AS in the evidence and
//! the `allow_asns` list). Without a city database the rule is off and says so when it is
//! loaded; it never guesses a place from an address.
//!
//! For each principal (the token, else the credential id or principal the record names:
//! [`Event::principal_entity`]) the last placed request is kept. A request placed elsewhere is
//! judged against it: the distance between the two, less both places' accuracy radius (a
//! mobile or hosting address is placed within hundreds of km), over the time between them. An
//! alert fires when that distance is at least `min_distance_km` and the speed it takes is
//! above `max_speed_kmh` (an airliner's, by default).
//!
//! What stays quiet: a mobile user changing carriers in one city (a short distance), a
//! traveller who flew (the speed of a plane), addresses the database does not place (nothing
//! is guessed), requests from the networks in `allow_asns` (corporate VPN and proxy egress,
//! cloud relays, whose address says nothing of where the user is: neither judged nor kept).
//! A shared client id is never a principal here, so a public app's users are not one traveller.
//!
//! Touches: events, its own keyed state, the read-only databases, the findings it returns.
//! No clock.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::geoip::{distance_km, Database, Place};
use super::{human_duration, parse_params, principal_key, Checker, Detector, Limits};
use crate::config::{ConfigError, DetectorFile};
use crate::event::{format_ts, Entity, EntityKind, Event, Finding, Millis, PrincipalKind, SeenClient, Shard};
use crate::state::{KeyedState, StateStats};

/// `[params]` of an `impossible_travel` file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// A City database (GeoIP2/GeoLite2 City, DB-IP city lite). Relative to the detector
    /// file's folder. Empty: the rule is off.
    #[serde(default)]
    pub city_db: String,
    /// An ASN database (GeoLite2 ASN), optional: the AS in the evidence, and `allow_asns`.
    #[serde(default)]
    pub asn_db: String,
    /// Fastest plausible travel, km/h.
    #[serde(default = "default_speed")]
    pub max_speed_kmh: f64,
    /// Shortest distance (beyond both places' accuracy) that can be impossible travel.
    #[serde(default = "default_distance")]
    pub min_distance_km: f64,
    /// Autonomous systems whose addresses say nothing of where the user is (your VPN and
    /// proxy egress, Zscaler 53813, Cloudflare WARP 13335, iCloud Private Relay 36183):
    /// their requests are neither judged nor kept. Needs `asn_db`.
    #[serde(default)]
    pub allow_asns: Vec<u32>,
}

fn default_speed() -> f64 {
    900.0
}
fn default_distance() -> f64 {
    500.0
}

/// Where a principal was last placed.
struct Seen {
    ts: Millis,
    ip: IpAddr,
    place: Place,
}

#[derive(Default)]
struct KeyState {
    last: Option<Seen>,
    client: SeenClient,
}

pub struct ImpossibleTravel {
    p: Params,
    city: Option<Arc<Database>>,
    asn: Option<Arc<Database>>,
    /// Why the rule is off, when it is.
    off: Option<String>,
    /// Keyed by a hash of the principal.
    state: KeyedState<u128, KeyState>,
}

/// `path` as the file names it: relative to the file's folder.
fn beside(file: &DetectorFile, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        file.path.parent().unwrap_or(Path::new(".")).join(p)
    }
}

pub fn build(file: &DetectorFile, limits: Limits) -> Result<Box<dyn Detector>, Vec<ConfigError>> {
    let p: Params = parse_params(file)?;
    let mut c = Checker::new(file);
    c.check(p.max_speed_kmh.is_finite() && p.max_speed_kmh >= 50.0, "max_speed_kmh", "must be at least 50");
    c.check(p.min_distance_km.is_finite() && p.min_distance_km >= 10.0, "min_distance_km", "must be at least 10");
    c.check(p.allow_asns.is_empty() || !p.asn_db.is_empty(), "allow_asns", "needs asn_db to know an address's AS");
    // A database that cannot be read turns the rule off, with the reason, rather than failing
    // the whole set: the file is the user's, it may be replaced between a check and a reload.
    let open = |path: &str| (!path.is_empty()).then(|| Database::open(&beside(file, path))).transpose();
    let (city, asn, off) = match (open(&p.city_db), open(&p.asn_db)) {
        (Ok(None), _) => (None, None, Some("no city_db is set, and without one no place is known".to_string())),
        (Err(e), _) | (_, Err(e)) => (None, None, Some(e)),
        (Ok(city), Ok(asn)) => (city, asn, None),
    };
    let idle = limits.idle_timeout;
    c.finish(Box::new(ImpossibleTravel { p, city, asn, off, state: KeyedState::new(limits.max_keys, idle) })
        as Box<dyn Detector>)
}

fn describe(ip: IpAddr, place: &Place) -> String {
    let mut s = ip.to_string();
    let mut inner = Vec::new();
    if let Some(c) = &place.country {
        inner.push(c.clone());
    }
    if let Some(a) = place.asn {
        inner.push(format!("AS{a}"));
    }
    if !inner.is_empty() {
        s += &format!(" ({})", inner.join(", "));
    }
    s
}

fn place_json(ts: Millis, ip: IpAddr, place: &Place) -> serde_json::Value {
    json!({
        "at": format_ts(ts),
        "source_ip": ip.to_string(),
        "country": place.country,
        "asn": place.asn,
        "as_org": place.as_org,
        "latitude": place.coords.map(|c| c.0),
        "longitude": place.coords.map(|c| c.1),
        "accuracy_km": place.accuracy_km,
    })
}

impl ImpossibleTravel {
    fn locate(&self, ip: IpAddr) -> Place {
        let mut place = Place::default();
        for db in [&self.city, &self.asn].into_iter().flatten() {
            db.locate(ip, &mut place);
        }
        place
    }
}

impl Detector for ImpossibleTravel {
    /// A principal's requests are whole on the token shard.
    fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String> {
        (shard == Shard::Token && self.off.is_none() && ev.source_ip.is_some()).then(|| ev.principal_entity()).flatten()
    }

    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        if self.off.is_some() {
            return;
        }
        let (Some(ip), Some(key)) = (ev.source_ip.map(|i| i.to_canonical()), principal_key(ev)) else { return };
        // the same address as last time: nothing new about where the principal is
        if let Some(st) = self.state.get_mut(&key) {
            if let Some(last) = st.last.as_mut().filter(|l| l.ip == ip) {
                last.ts = last.ts.max(ev.ts);
                st.client.observe(ev, ev.token_fingerprint.is_some());
                return;
            }
        }
        let place = self.locate(ip);
        if place.asn.is_some_and(|a| self.p.allow_asns.contains(&a)) {
            return;
        }
        let Some(here) = place.coords else { return };
        let (speed_limit, min_distance) = (self.p.max_speed_kmh, self.p.min_distance_km);
        let st = self.state.entry(&key, ev.ts, KeyState::default);
        st.client.observe(ev, ev.token_fingerprint.is_some());
        let seen = Seen { ts: ev.ts, ip, place };
        let Some(last) = st.last.replace(seen) else { return };
        let Some(there) = last.place.coords else { return };
        let now = st.last.as_ref().expect("just set");
        let apart = distance_km(there, here);
        let beyond = apart - last.place.accuracy_km - now.place.accuracy_km;
        let elapsed = (ev.ts - last.ts).abs();
        let hours = elapsed as f64 / 3_600_000.0;
        let speed = if hours > 0.0 { beyond / hours } else { f64::INFINITY };
        if beyond < min_distance || speed <= speed_limit {
            return;
        }
        let Some(principal) = ev.principal_entity() else { return };
        let who = match PrincipalKind::of(&principal) {
            PrincipalKind::Token => format!("token {principal}"),
            _ => principal.replacen(':', " ", 1),
        };
        let mut evidence = serde_json::Map::new();
        evidence.insert("from".into(), place_json(last.ts, last.ip, &last.place));
        evidence.insert("to".into(), place_json(ev.ts, ip, &now.place));
        evidence.insert("distance_km".into(), json!(apart.round()));
        evidence.insert("distance_beyond_accuracy_km".into(), json!(beyond.round()));
        evidence.insert("elapsed_s".into(), json!(elapsed / 1000));
        let speed_shown = if speed.is_finite() { json!(speed.round()) } else { json!(null) };
        evidence.insert("speed_kmh".into(), speed_shown);
        evidence.insert("max_speed_kmh".into(), json!(speed_limit));
        let pace = if speed.is_finite() { format!("{:.0} km/h", speed) } else { "at the same moment".to_string() };
        out.push(Finding {
            entity: Entity::new(EntityKind::Token, principal),
            within: None,
            client_id: st.client.id.clone(),
            client_id_source: st.client.source,
            token_fingerprint: ev.token_fingerprint,
            window_start: last.ts.min(ev.ts),
            window_end: ev.ts.max(last.ts),
            summary: format!(
                "{who} used from {} {} after {}: {:.0} km apart, {pace} (limit {:.0} km/h)",
                describe(ip, &now.place),
                human_duration(elapsed),
                describe(last.ip, &last.place),
                apart,
                speed_limit
            ),
            evidence,
        });
    }

    fn on_watermark(&mut self, wm: Millis, _out: &mut Vec<Finding>) {
        self.state.sweep(wm);
    }

    fn stats(&self) -> StateStats {
        self.state.stats()
    }

    fn off_reason(&self) -> Option<&str> {
        self.off.as_deref()
    }

    /// A principal: where it was last placed (address, country, AS, coordinates and their
    /// accuracy, as the databases place it) and when, which the next request elsewhere is
    /// judged against.
    fn describe(&self, entity: &Entity) -> Option<serde_json::Value> {
        let key = super::principal_key_of(entity)?;
        let st = self.state.get(&key)?;
        let last = st.last.as_ref()?;
        let mut o = serde_json::Map::new();
        o.insert("last_place".into(), place_json(last.ts, last.ip, &last.place));
        if let Some(c) = &st.client.id {
            o.insert("client_id".into(), json!(c));
        }
        o.insert("max_speed_kmh".into(), json!(self.p.max_speed_kmh));
        o.insert("min_distance_km".into(), json!(self.p.min_distance_km));
        Some(serde_json::Value::Object(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::{detector_from_toml, ev, run};

    const MIN: Millis = 60_000;
    /// Places of MaxMind's test databases (tests/data/geoip/README.md).
    const LONDON: &str = "81.2.69.142";
    const BOXFORD: &str = "2.125.160.216";
    const LINKOPING: &str = "89.160.20.112";
    const MILTON_US: &str = "216.160.83.56";
    const CHANGCHUN: &str = "175.16.199.7";

    fn with_dbs(extra: &str) -> Box<dyn Detector> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/geoip");
        detector_from_toml(
            "impossible_travel",
            &format!("city_db = \"{dir}/GeoIP2-City-Test.mmdb\"\nasn_db = \"{dir}/GeoLite2-ASN-Test.mmdb\"\n{extra}"),
        )
    }

    #[test]
    fn a_token_in_london_then_in_changchun_twenty_minutes_later_is_found() {
        let mut d = with_dbs("");
        let evs = [
            ev(0).token(1).ip(LONDON).client("app-1").get("/v1/a").build(),
            ev(5 * MIN).token(1).ip(LONDON).get("/v1/a").build(),
            ev(20 * MIN).token(1).ip(CHANGCHUN).get("/v1/a").build(),
            // the owner again: the same pair, the rule's cooldown decides whether to say it again
            ev(21 * MIN).token(1).ip(LONDON).get("/v1/a").build(),
        ];
        let found = run(d.as_mut(), &evs);
        assert_eq!(found.len(), 2, "{found:?}");
        let f = &found[0];
        assert_eq!(f.entity, Entity::new(EntityKind::Token, crate::event::Fingerprint([1; 8]).to_hex()));
        assert_eq!(f.evidence["from"]["country"], "GB");
        assert_eq!(f.evidence["to"]["country"], "CN");
        assert_eq!((f.window_start, f.window_end), (5 * MIN, 20 * MIN), "from the last London call");
        assert!(
            f.summary.contains("175.16.199.7 (CN)") && f.summary.contains("15m after 81.2.69.142 (GB)"),
            "{}",
            f.summary
        );
        assert_eq!(f.client_id.as_deref(), Some("app-1"));
    }

    #[test]
    fn a_principal_without_a_token_is_followed_too() {
        let mut d = with_dbs("");
        let evs = [
            ev(0).principal("user:alice").ip(LINKOPING).build(),
            ev(30 * MIN).principal("user:alice").ip(MILTON_US).build(),
        ];
        let found = run(d.as_mut(), &evs);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].entity.id, "user:alice");
        assert_eq!(found[0].evidence["to"]["asn"], 209);
        assert!(found[0].summary.starts_with("user alice used from 216.160.83.56 (US, AS209)"), "{}", found[0].summary);
    }

    #[test]
    fn a_flight_a_carrier_change_and_unplaced_addresses_stay_quiet() {
        let mut d = with_dbs("");
        let evs = [
            // London to Boxford (80 km) within a minute: a phone changing networks
            ev(0).token(1).ip(LONDON).build(),
            ev(MIN).token(1).ip(BOXFORD).build(),
            // London to Milton, WA in ten hours: a plane
            ev(10 * 60 * MIN).token(1).ip(MILTON_US).build(),
            // addresses the database does not place: nothing to judge
            ev(10 * 60 * MIN + MIN).token(1).ip("10.0.0.7").build(),
            ev(10 * 60 * MIN + 2 * MIN).token(1).ip("198.51.100.1").build(),
            // and two different tokens in two places are two people
            ev(0).token(2).ip(LONDON).build(),
            ev(MIN).token(3).ip(CHANGCHUN).build(),
        ];
        let mut evs = evs.to_vec();
        evs.sort_by_key(|e| e.ts);
        assert!(run(d.as_mut(), &evs).is_empty());
    }

    #[test]
    fn corporate_egress_in_allowed_asns_is_neither_judged_nor_kept() {
        // The company's proxy egress sits in AS209 (Milton, US); the user is in Linköping.
        let mut d = with_dbs("allow_asns = [209]");
        let evs = [
            ev(0).token(1).ip(LINKOPING).build(),
            ev(5 * MIN).token(1).ip(MILTON_US).build(),
            ev(10 * MIN).token(1).ip(LINKOPING).build(),
        ];
        assert!(run(d.as_mut(), &evs).is_empty());
        let mut strict = with_dbs("");
        assert_eq!(run(strict.as_mut(), &evs).len(), 2, "without the allow-list: there and back");
    }

    #[test]
    fn describe_shows_where_the_principal_was_last_placed() {
        use crate::detectors::testing::{describe_twice, feed};
        let mut d = with_dbs("");
        let evs = [
            ev(0).token(1).ip(LONDON).client("app-1").get("/v1/a").build(),
            ev(5 * MIN).token(1).ip(LINKOPING).get("/v1/a").build(),
            ev(7 * MIN).token(1).ip(LINKOPING).get("/v1/a").build(),
            ev(0).principal("user:alice").ip(MILTON_US).build(),
            // not placed: nothing kept
            ev(MIN).token(2).ip("10.0.0.7").build(),
        ];
        let mut evs = evs.to_vec();
        evs.sort_by_key(|e| e.ts);
        feed(d.as_mut(), &evs);
        let token = Entity::new(EntityKind::Token, crate::event::Fingerprint([1; 8]).to_hex());
        let got = describe_twice(d.as_ref(), &token).expect("held");
        let last = &got["last_place"];
        assert_eq!(last["source_ip"], json!(LINKOPING));
        assert_eq!(last["country"], json!("SE"));
        assert_eq!(last["at"], json!("1970-01-01T00:07:00Z"), "the same address again moves the time on");
        assert!(last["latitude"].as_f64().is_some() && last["longitude"].as_f64().is_some(), "{got:#}");
        assert_eq!(got["client_id"], json!("app-1"));
        let alice = describe_twice(d.as_ref(), &Entity::new(EntityKind::Token, "user:alice")).expect("held");
        assert_eq!(alice["last_place"]["country"], json!("US"));
        assert_eq!(alice["last_place"]["asn"], json!(209));
        for never in [
            Entity::new(EntityKind::Token, crate::event::Fingerprint([2; 8]).to_hex()),
            Entity::new(EntityKind::Token, "user:bob"),
            Entity::new(EntityKind::SourceIp, LONDON),
        ] {
            assert_eq!(describe_twice(d.as_ref(), &never), None, "{never:?}");
        }
    }

    #[test]
    fn without_a_database_it_is_off_and_says_so() {
        let d = detector_from_toml("impossible_travel", "");
        assert!(d.off_reason().unwrap().contains("no city_db"), "{:?}", d.off_reason());
        let mut d = d;
        let evs = [ev(0).token(1).ip(LONDON).build(), ev(MIN).token(1).ip(CHANGCHUN).build()];
        assert!(run(d.as_mut(), &evs).is_empty());
        assert_eq!(d.shard_key(&evs[0], Shard::Token), None);
        let missing = detector_from_toml("impossible_travel", r#"city_db = "/nonexistent/GeoLite2-City.mmdb""#);
        assert!(missing.off_reason().unwrap().contains("cannot read /nonexistent/GeoLite2-City.mmdb"));
        assert!(with_dbs("").off_reason().is_none());
    }

    #[test]
    fn bad_params_are_refused() {
        let file = crate::detectors::testing::file_from_toml("impossible_travel", "allow_asns = [13335]");
        let Err(e) = build(&file, Limits::default()) else { panic!("allow_asns without asn_db") };
        assert!(e[0].to_string().contains("params.allow_asns"), "{e:?}");
        let file = crate::detectors::testing::file_from_toml("impossible_travel", "max_speed_kmh = 0");
        assert!(build(&file, Limits::default()).is_err());
    }
}

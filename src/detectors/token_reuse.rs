//! `token_reuse`: one token used from too many networks — a stolen token.
//!
//! For each token (its fingerprint; where the gateway does not log the token,
//! the credential id: Kong's credential, a JWT `jti`, an API-key id; where it logs
//! neither, the best principal the record carries: the consumer, the authenticated
//! user name, the subject — see `Event::principal`), the
//! source addresses seen in a sliding window are grouped into networks (IPv4
//! /24, IPv6 /48) and networks into regions (IPv4 /16, IPv6 /32). The token
//! alerts when it is used from more regions than `max_regions`.
//!
//! Why regions: a phone moving inside its carrier's range changes /24 all the
//! time but stays inside the carrier's block; counting regions keeps it quiet.
//! Many clients behind one office NAT share an address but not a token, so
//! they never add networks to one another's count. A service with a handful
//! of egress NATs (one per availability zone) stays under the limit.
//! Without a GeoIP database, "far apart" is approximated by the region prefix.
//!
//! A credential id, a consumer or a client id may be shared (a user name or a subject names
//! one person): Kong's `authenticated_entity.id` is the consumer's JWT or
//! key credential, which every user of a public app presents. Such a key is judged
//! only once it has been watched for a whole window (one in more regions than
//! `max_regions` before that is shared, and left alone while it stays in state), and
//! then on the regions it *newly* appears in: those first seen within the window and
//! after that first window, among the regions it used over the last hour. (Watching
//! for half a window found thefts 8 minutes after a credential's first use too, but
//! took a small public app's credential for a stolen one in 1 of 20 simulated hours.) A public app's users keep calling from where
//! they are, so its credential adds a region now and then; a thief adds many at once.
//! A token's fingerprint, a user name or a subject is judged on every region of the window, at once.
//!
//! Touches: events, its own keyed state, the findings it returns. No clock.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::json;

use super::{human_duration, network_of, parse_params, Checker, Detector, Limits};
use crate::config::{ConfigError, DetectorFile, DurationStr};
use crate::event::{
    format_ts, Entity, EntityKind, Event, Finding, Fingerprint, Millis, PrincipalKind, SeenClient, Shard,
};
use crate::state::{KeyedState, SlidingSet, StateStats};

/// `[params]` of a `token_reuse` file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Sliding window the networks are counted in.
    #[serde(default = "default_window")]
    pub window: DurationStr,
    /// Alert when a token is used from more regions than this in the window.
    #[serde(default = "default_max_regions")]
    pub max_regions: usize,
    /// IPv4 prefix length of a network (evidence granularity).
    #[serde(default = "default_net_v4")]
    pub network_prefix_v4: u8,
    /// IPv6 prefix length of a network.
    #[serde(default = "default_net_v6")]
    pub network_prefix_v6: u8,
    /// IPv4 prefix length of a region: networks inside one region count once.
    #[serde(default = "default_region_v4")]
    pub region_prefix_v4: u8,
    /// IPv6 prefix length of a region.
    #[serde(default = "default_region_v6")]
    pub region_prefix_v6: u8,
    /// Requests a region needs in the window before it counts (1 = any use).
    #[serde(default = "default_min_requests")]
    pub min_requests_per_region: u32,
    /// Only successful requests (2xx/3xx) count: a token that is refused everywhere is
    /// the business of `auth_failure_spike`.
    #[serde(default = "default_true")]
    pub successful_only: bool,
    /// Also key on credential ids (Kong credential, JWT `jti`) when the token itself is not logged.
    #[serde(default = "default_true")]
    pub use_credential_id: bool,
    /// Where neither the token nor a credential id is logged, key on the record's principal
    /// (consumer, authenticated user name, subject): Kong 3 redacts the `Authorization`
    /// header, Traefik drops it and keeps `ClientUsername`.
    #[serde(default = "default_true")]
    pub use_principal: bool,
}

fn default_window() -> DurationStr {
    DurationStr(10 * 60_000)
}
fn default_max_regions() -> usize {
    3
}
fn default_net_v4() -> u8 {
    24
}
fn default_net_v6() -> u8 {
    48
}
fn default_region_v4() -> u8 {
    16
}
fn default_region_v6() -> u8 {
    32
}
fn default_min_requests() -> u32 {
    1
}
fn default_true() -> bool {
    true
}

/// The most addresses remembered per token; enough evidence, bounded memory.
const MAX_ADDRS: usize = 64;

struct TokenState {
    addrs: SlidingSet<IpAddr>,
    client: SeenClient,
    fingerprint: Option<Fingerprint>,
    /// After an alert, the same episode is not reported again before this time.
    quiet_until: Millis,
    /// For a key that may be shared (a credential, consumer or client id; see the module
    /// doc): what tells sharing from theft. `None` for a token, a user, a subject.
    shared: Option<Box<SharedGuard>>,
}

/// What `token_reuse` keeps about a key that may be shared.
struct SharedGuard {
    /// When the key was first seen.
    first_seen: Millis,
    /// Seen in more regions than `max_regions` before it had been watched for a window:
    /// many callers share it, it is not judged.
    shared: bool,
    /// The regions it was used in over the last [`KNOWN_HORIZON`], each with when it was
    /// first seen.
    known: SlidingSet<ipnet::IpNet>,
}

/// How long a credential or principal's regions are remembered, to tell a region it newly
/// appears in from one it keeps using.
const KNOWN_HORIZON: Millis = 3_600_000;

pub struct TokenReuse {
    p: Params,
    state: KeyedState<String, TokenState>,
    /// The latest event time seen (event or watermark): what [`Detector::describe`] reads the
    /// window as of.
    now: Millis,
}

pub fn build(file: &DetectorFile, limits: Limits) -> Result<Box<dyn Detector>, Vec<ConfigError>> {
    let p: Params = parse_params(file)?;
    let mut c = Checker::new(file);
    c.check(p.window.0 >= 10_000, "window", "must be at least 10s");
    c.check(p.max_regions >= 1, "max_regions", "must be at least 1");
    c.check(p.max_regions < MAX_ADDRS, "max_regions", "must be below 64");
    c.check((8..=32).contains(&p.network_prefix_v4), "network_prefix_v4", "must be 8–32");
    c.check((16..=128).contains(&p.network_prefix_v6), "network_prefix_v6", "must be 16–128");
    c.check(p.region_prefix_v4 <= p.network_prefix_v4, "region_prefix_v4", "must not be longer than network_prefix_v4");
    c.check(p.region_prefix_v6 <= p.network_prefix_v6, "region_prefix_v6", "must not be longer than network_prefix_v6");
    c.check(p.min_requests_per_region >= 1, "min_requests_per_region", "must be at least 1");
    let idle = limits.idle_timeout.max(p.window.0);
    c.finish(Box::new(TokenReuse { state: KeyedState::new(limits.max_keys, idle), now: Millis::MIN, p })
        as Box<dyn Detector>)
}

impl TokenReuse {
    fn regions(&self, st: &TokenState) -> Vec<(ipnet::IpNet, u32)> {
        let mut regions: Vec<(ipnet::IpNet, u32)> = Vec::new();
        for (ip, _, _, hits) in st.addrs.iter() {
            let r = network_of(*ip, self.p.region_prefix_v4, self.p.region_prefix_v6);
            match regions.iter_mut().find(|(x, _)| *x == r) {
                Some(e) => e.1 += hits,
                None => regions.push((r, *hits)),
            }
        }
        regions.retain(|(_, n)| *n >= self.p.min_requests_per_region);
        regions
    }
}

impl TokenReuse {
    /// The token `ev` counts for, if it counts at all.
    fn key(&self, ev: &Event) -> Option<String> {
        ev.source_ip?;
        if self.p.successful_only && ev.status.is_some() && !ev.is_success() {
            return None;
        }
        match (&ev.token_fingerprint, &ev.credential_id, &ev.principal) {
            (Some(fp), _, _) => Some(fp.to_hex()),
            (None, Some(c), _) if self.p.use_credential_id => Some(format!("cred:{c}")),
            (None, None, Some(p)) if self.p.use_principal => Some(p.to_string()),
            _ => None,
        }
    }
}

impl Detector for TokenReuse {
    fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String> {
        (shard == Shard::Token).then(|| self.key(ev)).flatten()
    }

    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        self.now = self.now.max(ev.ts);
        let Some(ip) = ev.source_ip else { return };
        let Some(key) = self.key(ev) else { return };
        let window = self.p.window.0;
        // A user name or a subject names one person (or one service); a credential, a consumer
        // or a client id may be an application's, presented by all its users.
        let may_be_shared = matches!(
            PrincipalKind::of(&key),
            PrincipalKind::Credential | PrincipalKind::Consumer | PrincipalKind::Client
        );
        let new_state = || TokenState {
            addrs: SlidingSet::default(),
            client: SeenClient::default(),
            fingerprint: None,
            quiet_until: Millis::MIN,
            shared: may_be_shared
                .then(|| Box::new(SharedGuard { first_seen: ev.ts, shared: false, known: SlidingSet::default() })),
        };
        let st = self.state.entry(&key, ev.ts, new_state);
        if let Some(g) = &mut st.shared {
            if g.shared {
                return;
            }
            let region = network_of(ip, self.p.region_prefix_v4, self.p.region_prefix_v6);
            g.known.insert(region, ev.ts, KNOWN_HORIZON.max(window), MAX_ADDRS);
        }
        let before = st.addrs.len();
        st.addrs.insert(ip, ev.ts, window, MAX_ADDRS);
        st.client.observe(ev, ev.token_fingerprint.is_some());
        st.fingerprint = ev.token_fingerprint.or(st.fingerprint);
        if (st.addrs.len() <= before && self.p.min_requests_per_region == 1) || ev.ts < st.quiet_until {
            return; // no new address (the region count cannot have grown), or episode already reported
        }
        let st = self.state.get(&key).expect("just inserted");
        let regions = self.regions(st);
        if regions.len() <= self.p.max_regions {
            return;
        }
        let mut new_regions = None;
        if let Some(g) = &st.shared {
            let settled = g.first_seen + window;
            if ev.ts < settled {
                // In more regions than one caller before it was watched for a whole window:
                // a credential many share.
                if let Some(g) = self.state.get_mut(&key).and_then(|st| st.shared.as_mut()) {
                    g.shared = true;
                }
                return;
            }
            // Its home: the regions of its first window, and those it used before this one.
            let since = (ev.ts - window).max(settled);
            let fresh = g.known.iter().filter(|(_, first, _, _)| *first > since).count();
            if fresh <= self.p.max_regions {
                return; // the places it keeps being used from, and a few more
            }
            new_regions = Some(fresh);
        }
        let mut networks: Vec<String> = Vec::new();
        for (a, _, _, _) in st.addrs.iter() {
            let n = network_of(*a, self.p.network_prefix_v4, self.p.network_prefix_v6).to_string();
            if !networks.contains(&n) {
                networks.push(n);
            }
        }
        let mut source_ips: Vec<String> = st.addrs.iter().map(|(a, _, _, _)| a.to_string()).collect();
        source_ips.truncate(20);
        let mut evidence = serde_json::Map::new();
        evidence.insert("distinct_regions".into(), json!(regions.len()));
        evidence.insert("distinct_networks".into(), json!(networks.len()));
        evidence.insert("regions".into(), json!(regions.iter().map(|(r, _)| r.to_string()).collect::<Vec<_>>()));
        evidence.insert("networks".into(), json!(networks));
        evidence.insert("source_ips".into(), json!(source_ips));
        evidence.insert("limit".into(), json!(self.p.max_regions));
        if let Some(n) = new_regions {
            evidence.insert("new_regions".into(), json!(n));
        }
        let who = match &st.client.id {
            Some(c) => format!(" (client {c})"),
            None => String::new(),
        };
        let what = PrincipalKind::of(&key).noun();
        out.push(Finding {
            within: None,
            entity: Entity::new(EntityKind::Token, key.clone()),
            client_id: st.client.id.clone(),
            client_id_source: st.client.source,
            token_fingerprint: st.fingerprint,
            window_start: st.addrs.earliest().unwrap_or(ev.ts),
            window_end: ev.ts,
            summary: format!(
                "{what}{who} used from {} networks in {} regions within {} (limit {} regions)",
                networks.len(),
                regions.len(),
                human_duration(window),
                self.p.max_regions
            ),
            evidence,
        });
        // The episode is reported; stay quiet about it for a window.
        if let Some(st) = self.state.get_mut(&key) {
            st.quiet_until = ev.ts + window;
        }
    }

    fn on_watermark(&mut self, wm: Millis, _out: &mut Vec<Finding>) {
        self.now = self.now.max(wm);
        self.state.sweep(wm);
    }

    fn stats(&self) -> StateStats {
        self.state.stats()
    }

    /// A token (or credential, or principal): the addresses, networks and regions it was used
    /// from in the window open now, against the limit; for a key that may be shared, whether
    /// it is judged.
    fn describe(&self, entity: &Entity) -> Option<serde_json::Value> {
        if entity.kind != EntityKind::Token {
            return None;
        }
        let st = self.state.get_by(entity.id.as_str())?;
        let (now, window) = (self.now, self.p.window.0);
        let live: Vec<&(IpAddr, Millis, Millis, u32)> = st.addrs.within(now, window).collect();
        let mut networks: Vec<String> = Vec::new();
        let mut regions: Vec<(ipnet::IpNet, u32)> = Vec::new();
        for (ip, _, _, hits) in &live {
            let n = network_of(*ip, self.p.network_prefix_v4, self.p.network_prefix_v6).to_string();
            if !networks.contains(&n) {
                networks.push(n);
            }
            let r = network_of(*ip, self.p.region_prefix_v4, self.p.region_prefix_v6);
            match regions.iter_mut().find(|(x, _)| *x == r) {
                Some(e) => e.1 += hits,
                None => regions.push((r, *hits)),
            }
        }
        // as `regions` counts them: a region with fewer requests than the minimum does not
        let counted = regions.iter().filter(|(_, n)| *n >= self.p.min_requests_per_region).count();
        let mut o = serde_json::Map::new();
        o.insert("window_ms".into(), json!(window));
        o.insert("as_of".into(), json!(format_ts(now)));
        o.insert("requests".into(), json!(live.iter().map(|e| e.3 as u64).sum::<u64>()));
        o.insert("distinct_addresses".into(), json!(live.len()));
        o.insert("distinct_networks".into(), json!(networks.len()));
        o.insert("distinct_regions".into(), json!(counted));
        o.insert("max_regions".into(), json!(self.p.max_regions));
        o.insert(
            "source_ips".into(),
            json!(live.iter().take(DESCRIBED_ADDRS).map(|e| e.0.to_string()).collect::<Vec<_>>()),
        );
        o.insert("networks".into(), json!(networks));
        o.insert(
            "regions".into(),
            json!(regions.iter().map(|(r, n)| json!({"region": r.to_string(), "requests": n})).collect::<Vec<_>>()),
        );
        o.insert("first_seen_at".into(), json!(live.iter().map(|e| e.1).min().map(format_ts)));
        o.insert("last_seen_at".into(), json!(live.iter().map(|e| e.2).max().map(format_ts)));
        if let Some(c) = &st.client.id {
            o.insert("client_id".into(), json!(c));
        }
        if st.quiet_until > now {
            o.insert("reported_until".into(), json!(format_ts(st.quiet_until)));
        }
        if let Some(g) = &st.shared {
            let horizon = KNOWN_HORIZON.max(window);
            o.insert(
                "shared_key".into(),
                json!({
                    "first_seen_at": format_ts(g.first_seen),
                    "judged_from": format_ts(g.first_seen + window),
                    "shared": g.shared,
                    "known_regions": g.known.within(now, horizon).count(),
                }),
            );
        }
        Some(serde_json::Value::Object(o))
    }
}

/// Addresses listed by [`Detector::describe`].
const DESCRIBED_ADDRS: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::{detector_from_toml, ev, run};

    fn det() -> Box<dyn Detector> {
        detector_from_toml("token_reuse", "")
    }

    #[test]
    fn stolen_token_from_many_networks_fires() {
        let mut d = det();
        let mut events = Vec::new();
        // the owner, steadily from home
        for i in 0..60 {
            events.push(ev(i * 10_000).ip("198.51.100.7").client("app-1").token(1).get("/v1/me").build());
        }
        // the thief, from 6 far-apart networks within 3 minutes
        for (i, ip) in
            ["203.0.113.5", "45.33.1.9", "91.198.174.2", "5.255.255.5", "185.199.108.1", "77.88.8.8"].iter().enumerate()
        {
            events.push(ev(120_000 + i as i64 * 30_000).ip(ip).client("app-1").token(1).get("/v1/me").build());
        }
        events.sort_by_key(|e| e.ts);
        let f = run(&mut *d, &events);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].entity, Entity::new(EntityKind::Token, Fingerprint([1; 8]).to_hex()));
        assert_eq!(f[0].client_id.as_deref(), Some("app-1"));
        assert_eq!(f[0].evidence["distinct_regions"], json!(4));
        assert!(f[0].summary.contains("limit 3 regions"));
    }

    #[test]
    fn mobile_client_inside_carrier_range_does_not_fire() {
        let mut d = det();
        // 40 different /24s, all inside the carrier's 100.64.0.0/16 block
        let events: Vec<Event> = (0..40)
            .map(|i| ev(i * 10_000).ip(&format!("100.64.{}.{}", i * 3, 10 + i)).token(2).get("/v1/feed").build())
            .collect();
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn office_nat_shared_by_many_tokens_does_not_fire() {
        let mut d = det();
        let events: Vec<Event> =
            (0..500).map(|i| ev(i * 1000).ip("192.0.2.10").token((i % 50) as u8).get("/v1/x").build()).collect();
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn three_zone_egress_stays_under_the_limit() {
        let mut d = det();
        let ips = ["3.120.1.10", "18.156.2.20", "52.29.3.30"];
        let events: Vec<Event> =
            (0..900).map(|i| ev(i * 500).ip(ips[i as usize % 3]).token(3).get("/v1/batch").build()).collect();
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn credential_id_is_used_when_the_token_is_not_logged() {
        let mut d = det();
        // the owner, from one network for a quarter of an hour; then five regions in 5s
        let mut events: Vec<Event> = (0..90)
            .map(|i| ev(i * 10_000).ip("198.51.100.7").credential("cred-42").client("c-1").get("/x").build())
            .collect();
        events.extend((0..5).map(|i| {
            ev(900_000 + i * 1000)
                .ip(&format!("{}.10.0.1", 20 + i * 20))
                .credential("cred-42")
                .client("c-1")
                .get("/x")
                .build()
        }));
        let f = run(&mut *d, &events);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].entity.id, "cred:cred-42");
        assert_eq!(f[0].token_fingerprint, None);
    }

    #[test]
    fn a_credential_shared_by_many_users_from_the_start_is_not_judged() {
        // Kong's JWT credential of a public app: every user presents it, from every carrier
        let events: Vec<Event> = (0..600)
            .map(|i| {
                ev(i * 2_000)
                    .ip(&format!("{}.{}.7.9", 30 + (i % 40) * 5, i % 7))
                    .credential("shop-ios-jwt")
                    .get("/v1/feed")
                    .build()
            })
            .collect();
        assert!(run(&mut *det(), &events).is_empty());
        // ...while the same spread on a token's own fingerprint is a stolen token at once
        let tokens: Vec<Event> = events
            .iter()
            .cloned()
            .map(|mut e| {
                e.credential_id = None;
                e.token_fingerprint = Some(Fingerprint([6; 8]));
                e
            })
            .collect();
        assert_eq!(run(&mut *det(), &tokens).len(), 1);
    }

    #[test]
    fn the_principal_is_used_when_neither_token_nor_credential_is_logged() {
        // Traefik without the Authorization header: the caller only as its user name
        let thief = |i: i64, ip: &str| ev(i).ip(ip).principal("user:alice").client("alice").get("/v1/me").build();
        let mut events: Vec<Event> = (0..90).map(|i| thief(i * 10_000, "198.51.100.7")).collect();
        for (i, ip) in ["203.0.113.5", "45.33.1.9", "91.198.174.2", "5.255.255.5"].iter().enumerate() {
            events.push(thief(700_000 + i as i64 * 20_000, ip));
        }
        events.sort_by_key(|e| e.ts);
        let f = run(&mut *det(), &events);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].entity, Entity::new(EntityKind::Token, "user:alice"));
        assert!(f[0].summary.starts_with("user (client alice) used from"), "{}", f[0].summary);
        // ...and not when the file says so
        let mut off = detector_from_toml("token_reuse", "use_principal = false");
        assert!(run(&mut *off, &events).is_empty());
        // a mobile user changing carriers inside one region stays quiet on its principal too
        let roaming: Vec<Event> = (0..40)
            .map(|i| ev(i * 10_000).ip(&format!("100.64.{}.9", i * 5)).principal("sub:u-1").get("/v1/feed").build())
            .collect();
        assert!(run(&mut *det(), &roaming).is_empty());
    }

    #[test]
    fn uses_spread_beyond_the_window_do_not_add_up() {
        let mut d = det();
        // 8 regions, one every 15 minutes: never more than 1 in a 10-minute window
        let events: Vec<Event> =
            (0..8).map(|i| ev(i * 900_000).ip(&format!("{}.1.1.1", 10 + i * 20)).token(4).get("/x").build()).collect();
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn describe_shows_the_tokens_places_in_the_window() {
        use crate::detectors::testing::{describe_twice, feed};
        let mut d = det();
        let mut events: Vec<Event> =
            (0..5).map(|i| ev(i * 10_000).ip("198.51.100.7").client("app-1").token(1).get("/v1/me").build()).collect();
        events.push(ev(60_000).ip("198.51.100.9").token(1).get("/v1/me").build());
        events.push(ev(70_000).ip("203.0.113.5").token(1).get("/v1/me").build());
        events.push(ev(80_000).ip("198.51.100.7").credential("cred-1").get("/v1/me").build());
        assert!(feed(&mut *d, &events).is_empty());
        let fp = Fingerprint([1; 8]).to_hex();
        let got = describe_twice(&*d, &Entity::new(EntityKind::Token, fp.clone())).expect("held");
        assert_eq!(got["requests"], json!(7));
        assert_eq!(got["distinct_addresses"], json!(3));
        assert_eq!(got["distinct_networks"], json!(2));
        assert_eq!(got["distinct_regions"], json!(2));
        assert_eq!(got["max_regions"], json!(3));
        assert_eq!(got["source_ips"], json!(["198.51.100.7", "198.51.100.9", "203.0.113.5"]));
        assert_eq!(got["networks"], json!(["198.51.100.0/24", "203.0.113.0/24"]));
        assert_eq!(got["regions"][0], json!({"region": "198.51.0.0/16", "requests": 6}));
        assert_eq!(got["first_seen_at"], json!("1970-01-01T00:00:00Z"));
        assert_eq!(got["last_seen_at"], json!("1970-01-01T00:01:10Z"));
        assert_eq!(got["client_id"], json!("app-1"));
        assert!(got.get("shared_key").is_none(), "a token's own fingerprint is never shared");
        // a credential id may be shared: it says whether it is judged yet
        let cred = describe_twice(&*d, &Entity::new(EntityKind::Token, "cred:cred-1")).expect("held");
        assert_eq!(cred["distinct_addresses"], json!(1));
        assert_eq!(cred["shared_key"]["judged_from"], json!("1970-01-01T00:11:20Z"));
        assert_eq!(cred["shared_key"]["shared"], json!(false));
        // never seen, or not a token
        assert_eq!(describe_twice(&*d, &Entity::new(EntityKind::Token, Fingerprint([2; 8]).to_hex())), None);
        assert_eq!(describe_twice(&*d, &Entity::new(EntityKind::SourceIp, "198.51.100.7")), None);
        // the window passes: held, but empty
        d.on_watermark(80_000 + 600_000, &mut Vec::new());
        let later = describe_twice(&*d, &Entity::new(EntityKind::Token, fp)).expect("held");
        assert_eq!((later["distinct_addresses"].clone(), later["last_seen_at"].clone()), (json!(0), json!(null)));
    }

    #[test]
    fn refused_calls_do_not_count() {
        let mut d = det();
        let events: Vec<Event> = (0..8)
            .map(|i| ev(i * 1000).ip(&format!("{}.1.1.1", 10 + i * 20)).token(5).get("/x").status(401).build())
            .collect();
        assert!(run(&mut *d, &events).is_empty());
    }
}

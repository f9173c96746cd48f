//! `auth_failure_spike`: bursts of failed authentication — brute force,
//! credential stuffing, replay of a revoked or expired token.
//!
//! Counts failures (401/403, and 400/401 on token endpoints) in a sliding
//! window per source IP, per source network, per client, per token and per
//! route. A key alerts when its failures reach the threshold for its kind
//! **and** make up at least `min_failure_ratio` of its requests, so a busy
//! client that sends a few 401s while rotating its token, or an office NAT with
//! one tired user, stays quiet. The route key also needs failures from many
//! distinct networks: that is credential stuffing spread thin over a botnet.
//!
//! The source network key (IPv4 /24, IPv6 /64 by default) catches one host
//! rotating its address: a single machine owns a whole IPv6 /64, and a cloud
//! or proxy pool hands out addresses inside one /24, so 300 failures from 300
//! addresses never make one address loud. It alerts only when the failures come
//! from at least `network_min_addresses` distinct addresses: a brute force from
//! one address stays the business of the address key (one alert, not two). Its
//! alert names the network in CIDR form as a `source_ip` entity
//! (`203.0.113.0/24`, `2001:db8:1:2::/64`).
//!
//! Failures are hits for the keyed state: at the key cap, a key with a failure
//! still in the window is evicted only when every key has one, so a flood of
//! one-off addresses cannot push a slow brute force out (`crate::state::keyed`).
//!
//! Touches: events, its own keyed state, the findings it returns. No clock.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::json;

use super::{human_duration, network_of, parse_params, Checker, Detector, Limits};
use crate::config::{ConfigError, DetectorFile, DurationStr};
use crate::event::{format_ts, Entity, EntityKind, Event, Finding, Fingerprint, Millis, SeenClient, Shard};
use crate::state::{BucketCounter, KeyedState, SlidingSet, StateStats};

/// `[params]` of an `auth_failure_spike` file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Sliding window the failures are counted in.
    #[serde(default = "default_window")]
    pub window: DurationStr,
    /// Which entities to count per: `source_ip`, `source_network`, `client_id`, `token`, `route`.
    /// Default: all of them.
    #[serde(default = "default_keys")]
    pub keys: Vec<KeyName>,
    /// Failures in the window that raise an alert, per key kind.
    #[serde(default)]
    pub threshold: Thresholds,
    /// Minimum share of failures among the entity's requests in the window (0–1).
    #[serde(default = "default_ratio")]
    pub min_failure_ratio: f64,
    /// Minimum failure share for the `route` key (a login route always fails a little).
    #[serde(default = "default_route_ratio")]
    pub route_min_failure_ratio: f64,
    /// For the `route` key: distinct source networks (/24, /48) among the failures.
    #[serde(default = "default_route_networks")]
    pub route_min_networks: usize,
    /// For the `source_network` key: IPv4 prefix length of a network (8–31).
    #[serde(default = "default_network_v4")]
    pub network_prefix_v4: u8,
    /// For the `source_network` key: IPv6 prefix length of a network (16–127). A /64 is one
    /// host's (or one LAN's) share of the address space.
    #[serde(default = "default_network_v6")]
    pub network_prefix_v6: u8,
    /// For the `source_network` key: distinct addresses among the failures, at least this
    /// (2–64). A brute force from one address is the `source_ip` key's, reported once there.
    #[serde(default = "default_network_addresses")]
    pub network_min_addresses: usize,
    /// For the `client_id` key: failures per distinct token at least this. A public client id
    /// shared by a mobile fleet sees many users' expired tokens fail once each: that is
    /// rotation, not an attack on the client.
    #[serde(default = "default_client_per_token")]
    pub client_min_failures_per_token: f64,
    /// Statuses that count as an authentication failure anywhere.
    #[serde(default = "default_statuses")]
    pub failure_statuses: Vec<u16>,
    /// Token / login endpoints (path prefixes, no method): a 400 there is a failed grant too.
    #[serde(default = "default_token_endpoints")]
    pub token_endpoints: Vec<String>,
}

/// What failures are counted per: the closed set of `keys` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// One source address.
    SourceIp,
    /// One source network (`network_prefix_v4` / `network_prefix_v6`), from several addresses.
    SourceNetwork,
    /// One client id.
    ClientId,
    /// One token (its fingerprint, or the credential id when the token is not logged).
    Token,
    /// One templated route, with failures spread over many networks.
    Route,
}

impl KeyKind {
    /// The shard whose key covers this kind's keys.
    pub fn shard(self) -> Shard {
        match self {
            KeyKind::SourceIp | KeyKind::SourceNetwork => Shard::Source,
            KeyKind::ClientId => Shard::ClientId,
            KeyKind::Token => Shard::Token,
            KeyKind::Route => Shard::Route,
        }
    }

    /// Every kind, in declaration order (`kind as usize` indexes this).
    pub const ALL: [KeyKind; 5] =
        [KeyKind::SourceIp, KeyKind::SourceNetwork, KeyKind::ClientId, KeyKind::Token, KeyKind::Route];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::SourceIp => "source_ip",
            KeyKind::SourceNetwork => "source_network",
            KeyKind::ClientId => "client_id",
            KeyKind::Token => "token",
            KeyKind::Route => "route",
        }
    }
}

/// An entry of `keys` as written: a known name, or any other string, kept so that every bad
/// entry is reported with its index (`params.keys[i]`) along with the other errors.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum KeyName {
    Known(KeyKind),
    Unknown(String),
}

/// Failures per window, per key kind.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Per source address.
    #[serde(default = "default_t_ip")]
    pub source_ip: u64,
    /// Per source network, summed over its addresses.
    #[serde(default = "default_t_network")]
    pub source_network: u64,
    /// Per client id.
    #[serde(default = "default_t_client")]
    pub client_id: u64,
    /// Per token.
    #[serde(default = "default_t_token")]
    pub token: u64,
    /// Per route, spread over `route_min_networks` networks.
    #[serde(default = "default_t_route")]
    pub route: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            source_ip: default_t_ip(),
            source_network: default_t_network(),
            client_id: default_t_client(),
            token: default_t_token(),
            route: default_t_route(),
        }
    }
}

fn default_window() -> DurationStr {
    DurationStr(10 * 60_000)
}
fn default_keys() -> Vec<KeyName> {
    KeyKind::ALL.iter().map(|k| KeyName::Known(*k)).collect()
}
fn default_ratio() -> f64 {
    0.5
}
fn default_route_ratio() -> f64 {
    0.3
}
fn default_route_networks() -> usize {
    10
}
fn default_network_v4() -> u8 {
    24
}
fn default_network_v6() -> u8 {
    64
}
fn default_network_addresses() -> usize {
    3
}
fn default_client_per_token() -> f64 {
    3.0
}
fn default_statuses() -> Vec<u16> {
    vec![401, 403]
}
fn default_token_endpoints() -> Vec<String> {
    [
        "/oauth/token",
        "/oauth2/token",
        "/token",
        "/connect/token",
        "/login",
        "/signin",
        "/auth/token",
        "/v1/token",
        "/api/login",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
fn default_t_ip() -> u64 {
    20
}
fn default_t_network() -> u64 {
    40
}
fn default_t_client() -> u64 {
    30
}
fn default_t_token() -> u64 {
    10
}
fn default_t_route() -> u64 {
    60
}

/// The most failing addresses remembered per source network: enough to pass
/// `network_min_addresses` and to show samples, bounded memory under a rotating flood.
const MAX_NETWORK_ADDRS: usize = 64;
/// Sample addresses shown in a network alert's evidence.
const SAMPLE_ADDRS: usize = 5;

/// A counted key. `Key<&str>` is the borrowed form an event's fields make without
/// allocating: it hashes as the `Key<String>` it stands for (same variants in the same order,
/// and a `&str` hashes as a `String`), and is made owned only when the key is new.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key<S = String> {
    Ip(IpAddr),
    Net(IpNet),
    Client(S),
    /// A token by its fingerprint: 8 bytes, nothing to allocate or format per event.
    Token(Fingerprint),
    /// A credential known only by its id (no token on the record): entity `cred:<id>`.
    Credential(S),
    /// Neither token nor credential id on the record: its principal (`consumer:<id>`,
    /// `user:<name>`, `sub:<subject>`), the entity as it reads.
    Principal(S),
    Route(S),
}

impl Key<&str> {
    fn to_owned_key(&self) -> Key {
        match *self {
            Key::Ip(ip) => Key::Ip(ip),
            Key::Net(n) => Key::Net(n),
            Key::Client(c) => Key::Client(c.to_string()),
            Key::Token(t) => Key::Token(t),
            Key::Credential(c) => Key::Credential(c.to_string()),
            Key::Principal(p) => Key::Principal(p.to_string()),
            Key::Route(r) => Key::Route(r.to_string()),
        }
    }
}

impl indexmap::Equivalent<Key> for Key<&str> {
    fn equivalent(&self, k: &Key) -> bool {
        match (self, k) {
            (Key::Ip(a), Key::Ip(b)) => a == b,
            (Key::Net(a), Key::Net(b)) => a == b,
            (Key::Client(a), Key::Client(b)) => *a == b,
            (Key::Token(a), Key::Token(b)) => a == b,
            (Key::Credential(a), Key::Credential(b)) => *a == b,
            (Key::Principal(a), Key::Principal(b)) => *a == b,
            (Key::Route(a), Key::Route(b)) => *a == b,
            _ => false,
        }
    }
}

struct KeyState {
    counts: BucketCounter,
    /// What the key's kind tracks besides the counts, fed by failures only.
    spread: Spread,
    /// A client / token seen on the failures, for the alert.
    client: SeenClient,
    token: Option<Fingerprint>,
}

/// Distinct values among a key's failures: one set per key, whose type depends on the key kind.
enum Spread {
    None,
    /// Route key: the networks the failures came from.
    Networks(SlidingSet<IpNet>),
    /// Source network key: the addresses the failures came from.
    Addresses(SlidingSet<IpAddr>),
    /// Client key: the tokens the failures carried (`None` = no token).
    Tokens(SlidingSet<Option<Fingerprint>>),
}

impl KeyState {
    fn new<S>(key: &Key<S>) -> Self {
        let spread = match key {
            Key::Ip(_) | Key::Token(_) | Key::Credential(_) | Key::Principal(_) => Spread::None,
            Key::Net(_) => Spread::Addresses(SlidingSet::default()),
            Key::Client(_) => Spread::Tokens(SlidingSet::default()),
            Key::Route(_) => Spread::Networks(SlidingSet::default()),
        };
        KeyState { counts: BucketCounter::default(), spread, client: SeenClient::default(), token: None }
    }

    /// Distinct values among the failures in the window (0 for kinds that track none).
    fn distinct(&self) -> usize {
        match &self.spread {
            Spread::None => 0,
            Spread::Networks(s) => s.len(),
            Spread::Addresses(s) => s.len(),
            Spread::Tokens(s) => s.len(),
        }
    }

    /// Forget the failures: the next alert (after the cooldown) needs a new burst.
    fn reset(&mut self) {
        self.counts = BucketCounter::default();
        match &mut self.spread {
            Spread::None => {}
            Spread::Networks(s) => *s = SlidingSet::default(),
            Spread::Addresses(s) => *s = SlidingSet::default(),
            Spread::Tokens(s) => *s = SlidingSet::default(),
        }
    }
}

pub struct AuthFailureSpike {
    p: Params,
    /// Which key kinds are counted, indexed by `KeyKind as usize`.
    by: [bool; KeyKind::ALL.len()],
    state: KeyedState<Key, KeyState>,
    bucket: Millis,
    /// The latest event time seen (event or watermark): what [`Detector::describe`] reads the
    /// open windows as of.
    now: Millis,
}

pub fn build(file: &DetectorFile, limits: Limits) -> Result<Box<dyn Detector>, Vec<ConfigError>> {
    let p: Params = parse_params(file)?;
    let mut c = Checker::new(file);
    c.check(p.window.0 >= 10_000, "window", "must be at least 10s");
    c.check((0.0..=1.0).contains(&p.min_failure_ratio), "min_failure_ratio", "must be between 0 and 1");
    c.check((0.0..=1.0).contains(&p.route_min_failure_ratio), "route_min_failure_ratio", "must be between 0 and 1");
    let names = KeyKind::ALL.map(KeyKind::as_str).join(", ");
    c.check(!p.keys.is_empty(), "keys", &format!("name at least one of {names}"));
    for (i, k) in p.keys.iter().enumerate() {
        c.check(matches!(k, KeyName::Known(_)), &format!("keys[{i}]"), &format!("one of {names}"));
    }
    let t = &p.threshold;
    for (field, value) in [
        ("source_ip", t.source_ip),
        ("source_network", t.source_network),
        ("client_id", t.client_id),
        ("token", t.token),
        ("route", t.route),
    ] {
        c.check(value > 0, &format!("threshold.{field}"), "must be > 0");
    }
    c.check((8..=31).contains(&p.network_prefix_v4), "network_prefix_v4", "must be 8–31");
    c.check((16..=127).contains(&p.network_prefix_v6), "network_prefix_v6", "must be 16–127");
    c.check(
        (2..=MAX_NETWORK_ADDRS).contains(&p.network_min_addresses),
        "network_min_addresses",
        "must be 2–64 (one address is the source_ip key's)",
    );
    c.check(!p.failure_statuses.is_empty(), "failure_statuses", "must not be empty");
    for (i, s) in p.failure_statuses.iter().enumerate() {
        c.check((100..=599).contains(s), &format!("failure_statuses[{i}]"), "must be an HTTP status (100 to 599)");
    }
    c.check(p.client_min_failures_per_token >= 1.0, "client_min_failures_per_token", "must be at least 1");
    let by = KeyKind::ALL.map(|kind| p.keys.contains(&KeyName::Known(kind)));
    let bucket = (p.window.0 / 30).max(1000);
    let d = AuthFailureSpike {
        // A key with a failure in the window is evicted at the cap only when every key has one:
        // a flood of one-off addresses cannot push a slow brute force out.
        state: KeyedState::new(limits.max_keys, limits.idle_timeout.max(p.window.0)).with_hit_protection(p.window.0),
        by,
        bucket,
        now: Millis::MIN,
        p,
    };
    c.finish(Box::new(d) as Box<dyn Detector>)
}

impl AuthFailureSpike {
    fn counts_per(&self, kind: KeyKind) -> bool {
        self.by[kind as usize]
    }

    fn is_failure(&self, ev: &Event) -> bool {
        let Some(s) = ev.status else { return false };
        if self.p.failure_statuses.contains(&s) {
            return true;
        }
        (s == 400 || s == 401) && self.is_token_endpoint(ev)
    }

    fn is_token_endpoint(&self, ev: &Event) -> bool {
        ev.path
            .as_deref()
            .is_some_and(|p| self.p.token_endpoints.iter().any(|t| p == t || p.starts_with(&format!("{t}/"))))
    }

    fn threshold<S>(&self, k: &Key<S>) -> u64 {
        match k {
            Key::Ip(_) => self.p.threshold.source_ip,
            Key::Net(_) => self.p.threshold.source_network,
            Key::Client(_) => self.p.threshold.client_id,
            Key::Token(_) | Key::Credential(_) | Key::Principal(_) => self.p.threshold.token,
            Key::Route(_) => self.p.threshold.route,
        }
    }

    fn observe(&mut self, key: Key<&str>, ev: &Event, failed: bool, out: &mut Vec<Finding>) {
        let window = self.p.window.0;
        let bucket = self.bucket;
        let threshold = self.threshold(&key);
        let is_route = matches!(key, Key::Route(_));
        let min_ratio = if is_route { self.p.route_min_failure_ratio } else { self.p.min_failure_ratio };
        let min_networks = self.p.route_min_networks;
        let min_addresses = self.p.network_min_addresses;
        let per_token = self.p.client_min_failures_per_token;
        let st = self.state.entry_hit_by(&key, Key::to_owned_key, ev.ts, failed, || KeyState::new(&key));
        st.counts.add(ev.ts, failed, window, bucket);
        if !failed {
            return;
        }
        st.client.observe(ev, matches!(key, Key::Token(_)));
        if ev.token_fingerprint.is_some() {
            st.token = ev.token_fingerprint;
        }
        match (&mut st.spread, ev.source_ip) {
            (Spread::Tokens(s), _) => s.insert(ev.token_fingerprint, ev.ts, window, 64),
            (Spread::Networks(s), Some(ip)) => s.insert(network_of(ip, 24, 48), ev.ts, window, min_networks + 1),
            (Spread::Addresses(s), Some(ip)) => s.insert(ip, ev.ts, window, MAX_NETWORK_ADDRS),
            _ => {}
        }
        let failures = st.counts.hits();
        let total = st.counts.total();
        if failures < threshold || (failures as f64) < min_ratio * total as f64 {
            return;
        }
        let distinct = st.distinct();
        match key {
            Key::Route(_) if distinct < min_networks => return,
            Key::Net(_) if distinct < min_addresses => return,
            Key::Client(_) if (failures as f64) < per_token * distinct.max(1) as f64 => return,
            _ => {}
        }
        let window_start = st.counts.first_hit().unwrap_or(ev.ts);
        let (entity, what) = match key {
            Key::Ip(ip) => (Entity::new(EntityKind::SourceIp, ip.to_string()), format!("source {ip}")),
            Key::Net(n) => (Entity::new(EntityKind::SourceIp, n.to_string()), format!("network {n}")),
            Key::Client(c) => (Entity::new(EntityKind::ClientId, c.to_string()), format!("client {c}")),
            Key::Token(t) => (Entity::new(EntityKind::Token, t.to_hex()), format!("token {t}")),
            Key::Credential(c) => (Entity::new(EntityKind::Token, format!("cred:{c}")), format!("token cred:{c}")),
            Key::Principal(p) => (Entity::new(EntityKind::Token, p.to_string()), p.replacen(':', " ", 1)),
            Key::Route(r) => (Entity::new(EntityKind::Route, r.to_string()), format!("route {r}")),
        };
        let ratio = failures as f64 / total.max(1) as f64;
        let mut summary = format!(
            "{failures} failed authentications from {what} in {} ({:.0}% of {total} requests, limit {threshold})",
            human_duration(window),
            ratio * 100.0
        );
        let mut evidence = serde_json::Map::new();
        evidence.insert("failures".into(), json!(failures));
        evidence.insert("requests".into(), json!(total));
        evidence.insert("failure_ratio".into(), json!((ratio * 1000.0).round() / 1000.0));
        evidence.insert("threshold".into(), json!(threshold));
        evidence.insert("window".into(), json!(human_duration(window)));
        match &st.spread {
            Spread::Networks(_) => {
                summary.push_str(&format!(", from {distinct} networks"));
                evidence.insert("distinct_networks".into(), json!(distinct));
            }
            Spread::Addresses(addrs) => {
                // The set keeps at most MAX_NETWORK_ADDRS: beyond that the count is a floor.
                let more = if distinct >= MAX_NETWORK_ADDRS { " or more" } else { "" };
                summary.push_str(&format!(", from {distinct}{more} addresses"));
                evidence.insert("network".into(), json!(entity.id));
                evidence.insert("distinct_addresses".into(), json!(distinct));
                evidence.insert("distinct_addresses_capped".into(), json!(distinct >= MAX_NETWORK_ADDRS));
                let samples: Vec<String> = addrs.iter().take(SAMPLE_ADDRS).map(|(a, ..)| a.to_string()).collect();
                evidence.insert("source_ips".into(), json!(samples));
            }
            Spread::None | Spread::Tokens(_) => {}
        }
        if let Some(r) = &ev.route {
            evidence.insert("last_route".into(), json!(r));
        }
        out.push(Finding {
            within: None,
            entity,
            client_id: st.client.id.clone(),
            client_id_source: st.client.source,
            token_fingerprint: st.token,
            window_start,
            window_end: ev.ts,
            summary,
            evidence,
        });
        st.reset();
    }
}

impl AuthFailureSpike {
    /// Observes `ev` under every key kind counted that belongs to `only` (every kind: `None`).
    fn observe_all(&mut self, ev: &Event, only: Option<Shard>, out: &mut Vec<Finding>) {
        let failed = self.is_failure(ev);
        let wanted = |k: KeyKind| only.is_none_or(|s| s == k.shard());
        if self.counts_per(KeyKind::SourceIp) && wanted(KeyKind::SourceIp) {
            if let Some(ip) = ev.source_ip {
                self.observe(Key::Ip(ip), ev, failed, out);
            }
        }
        if self.counts_per(KeyKind::SourceNetwork) && wanted(KeyKind::SourceNetwork) {
            if let Some(ip) = ev.source_ip {
                // An IPv4-mapped IPv6 address (dual-stack listener) belongs to its IPv4 network,
                // not to ::/64 with every other IPv4 client.
                let net = network_of(ip.to_canonical(), self.p.network_prefix_v4, self.p.network_prefix_v6);
                self.observe(Key::Net(net), ev, failed, out);
            }
        }
        if self.counts_per(KeyKind::ClientId) && wanted(KeyKind::ClientId) {
            if let Some(c) = &ev.client_id {
                self.observe(Key::Client(c), ev, failed, out);
            }
        }
        if self.counts_per(KeyKind::Token) && wanted(KeyKind::Token) {
            // the same entity as `Event::principal_entity`, without making its string per event
            match (ev.token_fingerprint, &ev.credential_id, &ev.principal) {
                (Some(fp), _, _) => self.observe(Key::Token(fp), ev, failed, out),
                (None, Some(c), _) => self.observe(Key::Credential(c), ev, failed, out),
                (None, None, Some(p)) => self.observe(Key::Principal(p), ev, failed, out),
                (None, None, None) => {}
            }
        }
        if self.counts_per(KeyKind::Route) && wanted(KeyKind::Route) {
            if let Some(r) = &ev.route {
                self.observe(Key::Route(r), ev, failed, out);
            }
        }
    }
}

impl AuthFailureSpike {
    /// The keys `entity` is counted under, by kind, as [`AuthFailureSpike::observe_all`]
    /// builds them: an address also under its network, a network under itself.
    fn keys_of(&self, entity: &Entity) -> Vec<(KeyKind, Key)> {
        let id = entity.id.as_str();
        let mut keys = Vec::new();
        match entity.kind {
            EntityKind::SourceIp => {
                if let Ok(ip) = id.parse::<IpAddr>() {
                    keys.push((KeyKind::SourceIp, Key::Ip(ip)));
                    let net = network_of(ip.to_canonical(), self.p.network_prefix_v4, self.p.network_prefix_v6);
                    keys.push((KeyKind::SourceNetwork, Key::Net(net)));
                } else if let Ok(net) = id.parse::<IpNet>() {
                    keys.push((KeyKind::SourceNetwork, Key::Net(net.trunc())));
                }
            }
            EntityKind::ClientId => keys.push((KeyKind::ClientId, Key::Client(id.to_string()))),
            EntityKind::Token => {
                let key = match (Fingerprint::from_hex(id), id.strip_prefix("cred:")) {
                    (Some(fp), _) => Key::Token(fp),
                    (None, Some(c)) => Key::Credential(c.to_string()),
                    (None, None) => Key::Principal(id.to_string()),
                };
                keys.push((KeyKind::Token, key));
            }
            EntityKind::Route => keys.push((KeyKind::Route, Key::Route(id.to_string()))),
        }
        keys.retain(|(kind, _)| self.counts_per(*kind));
        keys
    }

    /// What one key holds, as of `now`.
    fn describe_key(&self, kind: KeyKind, key: &Key, st: &KeyState, now: Millis) -> serde_json::Value {
        let window = self.p.window.0;
        let (total, failures, first_failure) = st.counts.within(now, window);
        let ratio = failures as f64 / total.max(1) as f64;
        let min_ratio = if kind == KeyKind::Route { self.p.route_min_failure_ratio } else { self.p.min_failure_ratio };
        let mut o = serde_json::Map::new();
        o.insert("key".into(), json!(kind.as_str()));
        let value = match key {
            Key::Ip(ip) => ip.to_string(),
            Key::Net(n) => n.to_string(),
            Key::Token(fp) => fp.to_hex(),
            Key::Credential(c) => format!("cred:{c}"),
            Key::Client(v) | Key::Principal(v) | Key::Route(v) => v.clone(),
        };
        o.insert("value".into(), json!(value));
        o.insert("failures".into(), json!(failures));
        o.insert("requests".into(), json!(total));
        o.insert("failure_ratio".into(), json!((ratio * 1000.0).round() / 1000.0));
        o.insert("threshold".into(), json!(self.threshold(key)));
        o.insert("min_failure_ratio".into(), json!(min_ratio));
        o.insert("first_failure_at".into(), json!(first_failure.map(format_ts)));
        if let Some(seen) = self.state.last_seen(key) {
            o.insert("last_seen_at".into(), json!(format_ts(seen)));
        }
        match &st.spread {
            Spread::None => {}
            Spread::Networks(s) => {
                let nets: Vec<String> = s.within(now, window).map(|(n, ..)| n.to_string()).collect();
                o.insert("distinct_networks".into(), json!(nets.len()));
                o.insert("min_networks".into(), json!(self.p.route_min_networks));
                o.insert("networks".into(), json!(nets));
            }
            Spread::Addresses(s) => {
                let addrs: Vec<String> = s.within(now, window).map(|(a, ..)| a.to_string()).collect();
                o.insert("distinct_addresses".into(), json!(addrs.len()));
                o.insert("distinct_addresses_capped".into(), json!(addrs.len() >= MAX_NETWORK_ADDRS));
                o.insert("min_addresses".into(), json!(self.p.network_min_addresses));
                o.insert("addresses".into(), json!(addrs.iter().take(DESCRIBED_ADDRS).collect::<Vec<_>>()));
            }
            Spread::Tokens(s) => {
                let live: Vec<&Option<Fingerprint>> = s.within(now, window).map(|(t, ..)| t).collect();
                let tokens: Vec<String> = live.iter().filter_map(|t| t.map(|fp| fp.to_hex())).collect();
                o.insert("distinct_tokens".into(), json!(live.len()));
                o.insert("tokens".into(), json!(tokens));
                o.insert("min_failures_per_token".into(), json!(self.p.client_min_failures_per_token));
            }
        }
        if let Some(c) = &st.client.id {
            o.insert("client_id".into(), json!(c));
        }
        if let (Some(fp), false) = (st.token, matches!(key, Key::Token(_))) {
            o.insert("token".into(), json!(fp.to_hex()));
        }
        serde_json::Value::Object(o)
    }
}

/// Addresses of a network listed by [`Detector::describe`].
const DESCRIBED_ADDRS: usize = 16;

impl Detector for AuthFailureSpike {
    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        self.now = self.now.max(ev.ts);
        self.observe_all(ev, None, out);
    }

    fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String> {
        let counted = |k: KeyKind| self.counts_per(k) && k.shard() == shard;
        match shard {
            // Every address and network of one coarse network lands together.
            Shard::Source if counted(KeyKind::SourceIp) || counted(KeyKind::SourceNetwork) => ev.source_ip.map(|ip| {
                network_of(ip.to_canonical(), self.p.network_prefix_v4, self.p.network_prefix_v6).to_string()
            }),
            Shard::ClientId if counted(KeyKind::ClientId) => ev.client_id.as_deref().map(str::to_string),
            Shard::Token if counted(KeyKind::Token) => ev.principal_entity(),
            Shard::Route if counted(KeyKind::Route) => ev.route.as_deref().map(str::to_string),
            _ => None,
        }
    }

    fn on_shard_event(&mut self, ev: &Event, shard: Shard, out: &mut Vec<Finding>) {
        self.now = self.now.max(ev.ts);
        self.observe_all(ev, Some(shard), out);
    }

    fn on_watermark(&mut self, wm: Millis, _out: &mut Vec<Finding>) {
        self.now = self.now.max(wm);
        self.state.sweep(wm);
    }

    fn stats(&self) -> StateStats {
        self.state.stats()
    }

    /// Per key kind the entity is counted under (an address also under its network): the
    /// failures and requests in the window open now, against the kind's threshold, and the
    /// distinct networks, addresses or tokens among the failures.
    fn describe(&self, entity: &Entity) -> Option<serde_json::Value> {
        let now = self.now;
        let keys: Vec<serde_json::Value> = self
            .keys_of(entity)
            .iter()
            .filter_map(|(kind, key)| self.state.get(key).map(|st| self.describe_key(*kind, key, st, now)))
            .collect();
        if keys.is_empty() {
            return None;
        }
        Some(json!({
            "window_ms": self.p.window.0,
            "as_of": format_ts(now),
            "keys": keys,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::{detector_from_toml, ev, run};

    /// The borrowed key an event makes finds the owned key it stands for, and only that one.
    #[test]
    fn a_borrowed_key_hashes_and_compares_as_its_owned_key() {
        let fp = Fingerprint([7; 8]);
        let borrowed: [Key<&str>; 7] = [
            Key::Ip("203.0.113.9".parse().unwrap()),
            Key::Net("203.0.113.0/24".parse().unwrap()),
            Key::Client("billing"),
            Key::Token(fp),
            Key::Credential("billing"),
            Key::Principal("billing"),
            Key::Route("billing"),
        ];
        let h = ahash::RandomState::new();
        for (i, b) in borrowed.iter().enumerate() {
            let owned = b.to_owned_key();
            assert_eq!(h.hash_one(b), h.hash_one(&owned), "{b:?}");
            for (j, other) in borrowed.iter().enumerate() {
                assert_eq!(indexmap::Equivalent::equivalent(other, &owned), i == j, "{other:?} against {owned:?}");
            }
        }
        assert!(!indexmap::Equivalent::equivalent(&Key::Client("billinG"), &Key::Client("billing".to_string())));
    }

    fn det(params: &str) -> Box<dyn Detector> {
        detector_from_toml("auth_failure_spike", params)
    }

    #[test]
    fn brute_force_from_one_ip_fires_once_per_burst() {
        let mut d = det("");
        let events: Vec<Event> =
            (0..40).map(|i| ev(i * 5_000).ip("203.0.113.7").post("/login").status(401).build()).collect();
        let f = run(&mut *d, &events);
        let ips: Vec<_> = f.iter().filter(|f| f.entity.kind == EntityKind::SourceIp).collect();
        assert_eq!(ips.len(), 2, "40 failures, threshold 20, counter resets after a finding: {f:#?}");
        assert_eq!(ips[0].entity.id, "203.0.113.7");
        assert_eq!(ips[0].window_start, 0);
        assert!(ips[0].summary.contains("20 failed authentications"));
    }

    #[test]
    fn failures_of_one_principal_count_where_no_token_is_logged() {
        // Traefik drops the Authorization header: a password spray on one user name from
        // many addresses is seen only through `ClientUsername`.
        let events: Vec<Event> = (0..12)
            .map(|i| {
                ev(i * 5_000)
                    .ip(&format!("{}.7.1.{i}", 20 + i * 9))
                    .principal("user:alice")
                    .post("/login")
                    .status(401)
                    .build()
            })
            .collect();
        let f = run(&mut *det(r#"keys = ["source_ip", "token"]"#), &events);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].entity, Entity::new(EntityKind::Token, "user:alice"));
        assert!(f[0].summary.contains("failed authentications from user alice"), "{}", f[0].summary);
    }

    #[test]
    fn token_rotation_401s_do_not_fire() {
        let mut d = det("");
        // a busy client: 600 calls in 10 minutes, 4 of them 401 while its token rotates
        let mut events = Vec::new();
        for i in 0..600 {
            let status = if (300..304).contains(&i) { 401 } else { 200 };
            events.push(
                ev(i * 1000).ip("198.51.100.20").client("app-1").token(1).get("/v1/orders").status(status).build(),
            );
        }
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn office_nat_with_occasional_failures_does_not_fire() {
        let mut d = det("");
        // 50 clients behind one address; 25 failures in 10 minutes among 3000 calls
        let events: Vec<Event> = (0..3000)
            .map(|i| {
                let status = if i % 120 == 0 { 401 } else { 200 };
                ev(i * 200).ip("192.0.2.10").client(&format!("app-{}", i % 50)).get("/v1/items").status(status).build()
            })
            .collect();
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn public_client_with_many_users_expiring_tokens_does_not_fire() {
        let mut d = det(r#"keys = ["client_id"]"#);
        // 60 users of the same mobile client id, each with an expired token failing once
        let events: Vec<Event> = (0..60)
            .map(|i| {
                ev(i * 5_000)
                    .ip(&format!("172.56.{i}.9"))
                    .client("shop-ios")
                    .token(i as u8)
                    .get("/v1/orders")
                    .status(401)
                    .build()
            })
            .collect();
        assert!(run(&mut *d, &events).is_empty());
        // ...while 40 failures on the client's own two credentials do
        let mut d = det(r#"keys = ["client_id"]"#);
        let events: Vec<Event> = (0..40)
            .map(|i| {
                ev(i * 5_000)
                    .ip("172.56.1.9")
                    .client("svc-a")
                    .token((i % 2) as u8)
                    .get("/v1/orders")
                    .status(401)
                    .build()
            })
            .collect();
        assert_eq!(run(&mut *d, &events).len(), 1);
    }

    #[test]
    fn expired_token_replay_fires_on_the_token() {
        let mut d = det(r#"keys = ["token"]"#);
        let events: Vec<Event> = (0..12)
            .map(|i| ev(i * 20_000).ip(&format!("198.51.{i}.9")).token(9).get("/v1/me").status(401).build())
            .collect();
        let f = run(&mut *d, &events);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].entity.kind, EntityKind::Token);
        assert_eq!(f[0].token_fingerprint, Some(Fingerprint([9; 8])));
    }

    #[test]
    fn distributed_stuffing_fires_on_the_route_only_with_many_networks() {
        let mut d = det(r#"keys = ["route"]"#);
        // 80 failures from 80 networks, 3 attempts each at most: no single IP is loud
        let events: Vec<Event> = (0..80)
            .map(|i| ev(i * 3_000).ip(&format!("10.{}.{}.1", i / 200, i % 200)).post("/login").status(401).build())
            .collect();
        let f = run(&mut *d, &events);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].entity, Entity::new(EntityKind::Route, "POST /login"));

        // the same failures from one network do not make the route alert
        let mut d = det(r#"keys = ["route"]"#);
        let events: Vec<Event> =
            (0..80).map(|i| ev(i * 3_000).ip("10.0.0.1").post("/login").status(401).build()).collect();
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn failed_grants_on_token_endpoint_count() {
        let mut d = det(r#"keys = ["source_ip"]"#);
        let events: Vec<Event> =
            (0..25).map(|i| ev(i * 1_000).ip("203.0.113.8").post("/oauth/token").status(400).build()).collect();
        assert_eq!(run(&mut *d, &events).len(), 1);
        // 400 elsewhere is a client bug, not an auth failure
        let mut d = det(r#"keys = ["source_ip"]"#);
        let events: Vec<Event> =
            (0..25).map(|i| ev(i * 1_000).ip("203.0.113.8").post("/v1/orders").status(400).build()).collect();
        assert!(run(&mut *d, &events).is_empty());
    }

    fn net_findings(f: &[Finding]) -> Vec<&Finding> {
        f.iter().filter(|f| f.entity.kind == EntityKind::SourceIp && f.entity.id.contains('/')).collect()
    }

    #[test]
    fn key_kinds_index_in_declaration_order() {
        for (i, k) in KeyKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
    }

    #[test]
    fn brute_force_rotating_inside_one_ipv6_64_fires_on_the_network() {
        let mut d = det("");
        // 300 failed logins in 5 minutes, every one from a new address of 2001:db8:1:2::/64
        let events: Vec<Event> = (0..300)
            .map(|i| {
                ev(i * 1_000).ip(&format!("2001:db8:1:2:{:x}:{:x}::1", 0x100 + i, i * 7)).post("/login").status(401)
            })
            .map(|b| b.build())
            .collect();
        let f = run(&mut *d, &events);
        let nets = net_findings(&f);
        assert_eq!(nets.len(), f.len(), "no address, route or other key is loud: {f:#?}");
        assert_eq!(nets.len(), 300 / 40, "threshold 40, counter reset after each finding");
        let first = nets[0];
        assert_eq!(first.entity, Entity::new(EntityKind::SourceIp, "2001:db8:1:2::/64"));
        assert_eq!(first.evidence["distinct_addresses"], json!(40));
        assert_eq!(first.evidence["network"], json!("2001:db8:1:2::/64"));
        assert_eq!(first.evidence["source_ips"].as_array().unwrap().len(), SAMPLE_ADDRS);
        assert_eq!(first.evidence["source_ips"][0], json!("2001:db8:1:2:100::1"));
        assert!(first.summary.contains("from network 2001:db8:1:2::/64"), "{}", first.summary);
        assert!(first.summary.contains("from 40 addresses"), "{}", first.summary);
    }

    #[test]
    fn brute_force_rotating_inside_one_ipv4_24_fires_on_the_network() {
        let mut d = det("");
        // 300 failures in 5 minutes over 250 addresses of one /24, as a proxy pool hands them out;
        // a few arrive as IPv4-mapped IPv6 from a dual-stack listener
        let events: Vec<Event> = (0..300)
            .map(|i| {
                let host = 2 + (i * 37) % 250;
                let ip = if i % 10 == 0 { format!("::ffff:203.0.113.{host}") } else { format!("203.0.113.{host}") };
                ev(i * 1_000).ip(&ip).post("/login").status(401).build()
            })
            .collect();
        let f = run(&mut *d, &events);
        let nets = net_findings(&f);
        assert_eq!(nets.len(), f.len(), "{f:#?}");
        assert_eq!(nets.len(), 7);
        assert!(nets.iter().all(|f| f.entity == Entity::new(EntityKind::SourceIp, "203.0.113.0/24")));
        assert_eq!(nets[0].window_start, 0);
        assert_eq!(nets[0].evidence["failures"], json!(40));
    }

    #[test]
    fn one_or_two_addresses_are_not_also_a_network() {
        // one address: only the address alerts (the network would say the same thing twice)
        let mut d = det("");
        let events: Vec<Event> =
            (0..40).map(|i| ev(i * 5_000).ip("203.0.113.7").post("/login").status(401).build()).collect();
        let f = run(&mut *d, &events);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f.iter().all(|f| f.entity == Entity::new(EntityKind::SourceIp, "203.0.113.7")));
        // two addresses of one /24, 30 failures each: each address alerts, the network does not
        let mut d = det("");
        let events: Vec<Event> = (0..60)
            .map(|i| ev(i * 5_000).ip(["203.0.113.7", "203.0.113.8"][i as usize % 2]).post("/login").status(401))
            .map(|b| b.build())
            .collect();
        let f = run(&mut *d, &events);
        assert!(net_findings(&f).is_empty(), "{f:#?}");
        assert_eq!(f.len(), 2);
    }

    /// A campus NAT pool: 250 addresses of one /24, 400 users making 15 calls each in 10
    /// minutes; every user fails a login once, every third user twice (typos, expired sessions).
    fn campus() -> Vec<Event> {
        (0..6000)
            .map(|i| {
                let (user, round) = (i % 400, i / 400);
                let ip = format!("192.0.2.{}", 2 + (user * 53) % 250);
                let client = format!("app-{user}");
                let fails = round == user % 15 || (user % 3 == 0 && round == (user + 7) % 15);
                let e = ev(i * 100).ip(&ip).client(&client);
                if fails {
                    e.post("/login").status(401).build()
                } else {
                    e.get("/v1/courses").status(200).build()
                }
            })
            .collect()
    }

    #[test]
    fn campus_nat_with_many_users_failing_once_or_twice_stays_quiet() {
        let events = campus();
        let failures = events.iter().filter(|e| e.status == Some(401)).count();
        assert_eq!(failures, 534, "far above the network threshold in 10 minutes");
        let mut d = det("");
        let f = run(&mut *d, &events);
        assert!(f.is_empty(), "{f:#?}");
        // what keeps the network quiet is the failure ratio (9 % of its requests)
        let mut d = det("min_failure_ratio = 0.08");
        let f = run(&mut *d, &events);
        assert!(!f.is_empty());
        assert!(f.iter().all(|f| f.entity == Entity::new(EntityKind::SourceIp, "192.0.2.0/24")), "{f:#?}");
    }

    #[test]
    fn network_prefix_and_minimum_addresses_are_params() {
        // a /56 per customer: rotating inside it is one network at 56, many at 64
        let events: Vec<Event> = (0..60)
            .map(|i| ev(i * 1_000).ip(&format!("2001:db8:0:{:x}::1", i % 200)).post("/login").status(401).build())
            .collect();
        let mut d = det("network_prefix_v6 = 56");
        let f = run(&mut *d, &events);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].entity.id, "2001:db8::/56");
        let mut d = det("");
        assert!(run(&mut *d, &events).is_empty(), "60 networks of one failure each at /64");
        // network_min_addresses = 61: 60 addresses are not enough
        let mut d = det("network_prefix_v6 = 56\nnetwork_min_addresses = 61");
        assert!(run(&mut *d, &events).is_empty());
        // without the key in `keys`, no network is counted
        let mut d = det("network_prefix_v6 = 56\nkeys = [\"source_ip\", \"route\"]");
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn bad_network_params_are_reported_with_their_field() {
        let file = crate::detectors::testing::file_from_toml(
            "auth_failure_spike",
            "network_prefix_v4 = 32\nnetwork_prefix_v6 = 8\nnetwork_min_addresses = 1\n\
             keys = [\"source_ip\", \"network\"]\n[params.threshold]\nsource_network = 0",
        );
        let errs = build(&file, Limits::default()).err().expect("invalid");
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "params.keys[1]",
                "params.threshold.source_network",
                "params.network_prefix_v4",
                "params.network_prefix_v6",
                "params.network_min_addresses",
            ]
        );
        assert!(errs[0].to_string().contains("source_network"), "the message lists the names: {}", errs[0]);
    }

    #[test]
    fn slow_brute_force_survives_a_flood_of_distinct_addresses_at_the_cap() {
        let file = crate::detectors::testing::file_from_toml("auth_failure_spike", "");
        let mut d = build(&file, Limits { max_keys: 10_000, idle_timeout: 2 * 3_600_000 }).expect("valid");
        let attacker: IpAddr = "203.0.113.7".parse().unwrap();
        // 200k distinct addresses scattered over the IPv4 space, one successful call each, in 10 minutes
        let mut events: Vec<Event> = (0..200_000u32)
            .map(|i| {
                let mut e = ev(i as i64 * 3).get("/v1/items").build();
                e.source_ip = Some(IpAddr::V4(std::net::Ipv4Addr::from(i.wrapping_mul(2_654_435_761))));
                e
            })
            .filter(|e| e.source_ip != Some(attacker))
            .collect();
        // ...and a slow brute force from one address: 25 failures, one every 24 s
        events.extend((0..25).map(|k| ev(k * 24_000 + 1).ip("203.0.113.7").post("/login").status(401).build()));
        events.sort_by_key(|e| e.ts);
        let f = run(&mut *d, &events);
        let stats = d.stats();
        assert!(stats.keys <= 10_000);
        assert!(stats.evicted_cap > 300_000, "the flood went through the cap: {stats:?}");
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].entity, Entity::new(EntityKind::SourceIp, "203.0.113.7"));
        assert_eq!(f[0].evidence["failures"], json!(20));
    }

    #[test]
    fn describe_shows_each_key_the_entity_is_counted_under() {
        use crate::detectors::testing::{describe_twice, feed};
        let mut d = det("");
        let mut events: Vec<Event> = (0..12)
            .map(|i| {
                ev(i * 5_000).ip("203.0.113.7").client("app-1").token(3 + (i % 2) as u8 * 2).post("/login").status(401)
            })
            .map(|b| b.build())
            .collect();
        events.extend((0..3).map(|i| ev(61_000 + i * 1000).ip("203.0.113.7").get("/v1/me").build()));
        events.extend(
            (0..2).map(|i| ev(70_000 + i * 1000).ip("203.0.113.8").token(4).post("/login").status(401).build()),
        );
        events.sort_by_key(|e| e.ts);
        assert!(feed(&mut *d, &events).is_empty(), "under every threshold");

        let ip = describe_twice(&*d, &Entity::new(EntityKind::SourceIp, "203.0.113.7")).expect("held");
        assert_eq!(ip["window_ms"], json!(600_000));
        assert_eq!(ip["as_of"], json!("1970-01-01T00:01:11Z"));
        let keys = ip["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "the address and its network: {ip:#}");
        assert_eq!(keys[0]["key"], json!("source_ip"));
        assert_eq!((keys[0]["failures"].clone(), keys[0]["requests"].clone()), (json!(12), json!(15)));
        assert_eq!(keys[0]["threshold"], json!(20));
        assert_eq!(keys[0]["first_failure_at"], json!("1970-01-01T00:00:00Z"));
        assert_eq!(keys[1]["key"], json!("source_network"));
        assert_eq!(keys[1]["value"], json!("203.0.113.0/24"));
        assert_eq!((keys[1]["failures"].clone(), keys[1]["requests"].clone()), (json!(14), json!(17)));
        assert_eq!(keys[1]["distinct_addresses"], json!(2));
        assert_eq!(keys[1]["addresses"], json!(["203.0.113.7", "203.0.113.8"]));
        // the network by its own id holds the same
        let net = describe_twice(&*d, &Entity::new(EntityKind::SourceIp, "203.0.113.0/24")).expect("held");
        assert_eq!(net["keys"][0], keys[1]);

        let route = describe_twice(&*d, &Entity::new(EntityKind::Route, "POST /login")).expect("held");
        assert_eq!(route["keys"][0]["failures"], json!(14));
        assert_eq!(route["keys"][0]["distinct_networks"], json!(1));
        assert_eq!(route["keys"][0]["threshold"], json!(60));
        let client = describe_twice(&*d, &Entity::new(EntityKind::ClientId, "app-1")).expect("held");
        assert_eq!(client["keys"][0]["distinct_tokens"], json!(2));
        assert_eq!(client["keys"][0]["tokens"], json!([Fingerprint([3; 8]).to_hex(), Fingerprint([5; 8]).to_hex()]));
        let token = describe_twice(&*d, &Entity::new(EntityKind::Token, Fingerprint([4; 8]).to_hex())).expect("held");
        assert_eq!(token["keys"][0]["failures"], json!(2));
        assert_eq!(token["keys"][0]["threshold"], json!(10));

        for never in [
            Entity::new(EntityKind::SourceIp, "198.51.100.1"),
            Entity::new(EntityKind::Token, Fingerprint([9; 8]).to_hex()),
            Entity::new(EntityKind::Route, "GET /nowhere"),
            Entity::new(EntityKind::SourceIp, "not an address"),
        ] {
            assert_eq!(describe_twice(&*d, &never), None, "{never:?}");
        }
        // a window later the key is still held, its window empty
        d.on_watermark(71_000 + 600_000, &mut Vec::new());
        let later = describe_twice(&*d, &Entity::new(EntityKind::SourceIp, "203.0.113.7")).expect("held");
        assert_eq!((later["keys"][0]["failures"].clone(), later["keys"][0]["requests"].clone()), (json!(0), json!(0)));
        assert_eq!(later["keys"][0]["first_failure_at"], json!(null));
    }

    #[test]
    fn bad_params_are_all_reported() {
        let file = crate::detectors::testing::file_from_toml(
            "auth_failure_spike",
            "window = \"1s\"\nmin_failure_ratio = 2.0\nkeys = [\"nope\"]",
        );
        let errs = build(&file, Limits::default()).err().expect("invalid");
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["params.window", "params.min_failure_ratio", "params.keys[0]"]);
    }
}

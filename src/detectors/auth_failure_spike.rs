//! `auth_failure_spike`: bursts of failed authentication — brute force,
//! credential stuffing, replay of a revoked or expired token.
//!
//! Counts failures (401/403, and 400/401 on token endpoints) in a sliding
//! window per source IP, per client, per token and per route. A key alerts
//! when its failures reach the threshold for its kind **and** make up at least
//! `min_failure_ratio` of its requests, so a busy client that sends a few 401s
//! while rotating its token, or an office NAT with one tired user, stays quiet.
//! The route key also needs failures from many distinct networks: that is
//! credential stuffing spread thin over a botnet.
//!
//! Touches: events, its own keyed state, the findings it returns. No clock.

use serde::Deserialize;
use serde_json::json;

use super::{human_duration, network_of, parse_params, Checker, Detector, Limits};
use crate::config::{ConfigError, DetectorFile, DurationStr};
use crate::event::{Entity, EntityKind, Event, Finding, Fingerprint, Millis};
use crate::state::{BucketCounter, KeyedState, SlidingSet, StateStats};

/// `[params]` of an `auth_failure_spike` file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Sliding window the failures are counted in.
    #[serde(default = "default_window")]
    pub window: DurationStr,
    /// Which entities to count per: `source_ip`, `client_id`, `token`, `route`.
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
    /// One client id.
    ClientId,
    /// One token (its fingerprint, or the credential id when the token is not logged).
    Token,
    /// One templated route, with failures spread over many networks.
    Route,
}

impl KeyKind {
    pub const ALL: [KeyKind; 4] = [KeyKind::SourceIp, KeyKind::ClientId, KeyKind::Token, KeyKind::Route];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::SourceIp => "source_ip",
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
    #[serde(default = "default_t_ip")]
    pub source_ip: u64,
    #[serde(default = "default_t_client")]
    pub client_id: u64,
    #[serde(default = "default_t_token")]
    pub token: u64,
    #[serde(default = "default_t_route")]
    pub route: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            source_ip: default_t_ip(),
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
fn default_t_client() -> u64 {
    30
}
fn default_t_token() -> u64 {
    10
}
fn default_t_route() -> u64 {
    60
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Ip(std::net::IpAddr),
    Client(String),
    Token(String),
    Route(String),
}

#[derive(Default)]
struct KeyState {
    counts: BucketCounter,
    /// Networks the failures came from (route key only).
    networks: SlidingSet<ipnet::IpNet>,
    /// Tokens the failures carried (client key only; `None` = no token).
    tokens: SlidingSet<Option<Fingerprint>>,
    /// A client / token seen on the failures, for the alert.
    client: Option<String>,
    token: Option<Fingerprint>,
}

pub struct AuthFailureSpike {
    p: Params,
    /// Which key kinds are counted, indexed by `KeyKind as usize`.
    by: [bool; KeyKind::ALL.len()],
    state: KeyedState<Key, KeyState>,
    bucket: Millis,
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
    c.check(
        t.source_ip > 0 && t.client_id > 0 && t.token > 0 && t.route > 0,
        "threshold",
        "every threshold must be > 0",
    );
    c.check(!p.failure_statuses.is_empty(), "failure_statuses", "must not be empty");
    c.check(p.client_min_failures_per_token >= 1.0, "client_min_failures_per_token", "must be at least 1");
    let by = KeyKind::ALL.map(|kind| p.keys.contains(&KeyName::Known(kind)));
    let bucket = (p.window.0 / 30).max(1000);
    let d = AuthFailureSpike {
        state: KeyedState::new(limits.max_keys, limits.idle_timeout.max(p.window.0)),
        by,
        bucket,
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

    fn threshold(&self, k: &Key) -> u64 {
        match k {
            Key::Ip(_) => self.p.threshold.source_ip,
            Key::Client(_) => self.p.threshold.client_id,
            Key::Token(_) => self.p.threshold.token,
            Key::Route(_) => self.p.threshold.route,
        }
    }

    fn observe(&mut self, key: Key, ev: &Event, failed: bool, out: &mut Vec<Finding>) {
        let window = self.p.window.0;
        let bucket = self.bucket;
        let threshold = self.threshold(&key);
        let is_route = matches!(key, Key::Route(_));
        let min_ratio = if is_route { self.p.route_min_failure_ratio } else { self.p.min_failure_ratio };
        let min_networks = self.p.route_min_networks;
        let is_client = matches!(key, Key::Client(_));
        let per_token = self.p.client_min_failures_per_token;
        let st = self.state.entry(&key, ev.ts, KeyState::default);
        st.counts.add(ev.ts, failed, window, bucket);
        if !failed {
            return;
        }
        if ev.client_id.is_some() {
            st.client = ev.client_id.clone();
        }
        if ev.token_fingerprint.is_some() {
            st.token = ev.token_fingerprint;
        }
        if is_client {
            st.tokens.insert(ev.token_fingerprint, ev.ts, window, 64);
        }
        if is_route {
            if let Some(ip) = ev.source_ip {
                st.networks.insert(network_of(ip, 24, 48), ev.ts, window, min_networks + 1);
            }
        }
        let failures = st.counts.hits();
        let total = st.counts.total();
        if failures < threshold || (failures as f64) < min_ratio * total as f64 {
            return;
        }
        if is_route && st.networks.len() < min_networks {
            return;
        }
        if is_client && (failures as f64) < per_token * st.tokens.len().max(1) as f64 {
            return;
        }
        let window_start = st.counts.first_hit().unwrap_or(ev.ts);
        let (entity, what) = match &key {
            Key::Ip(ip) => (Entity::new(EntityKind::SourceIp, ip.to_string()), format!("source {ip}")),
            Key::Client(c) => (Entity::new(EntityKind::ClientId, c.clone()), format!("client {c}")),
            Key::Token(t) => (Entity::new(EntityKind::Token, t.clone()), format!("token {t}")),
            Key::Route(r) => (Entity::new(EntityKind::Route, r.clone()), format!("route {r}")),
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
        if is_route {
            summary.push_str(&format!(", from {} networks", st.networks.len()));
            evidence.insert("distinct_networks".into(), json!(st.networks.len()));
        }
        if let Some(r) = &ev.route {
            evidence.insert("last_route".into(), json!(r));
        }
        out.push(Finding {
            entity,
            client_id: st.client.clone(),
            token_fingerprint: st.token,
            window_start,
            window_end: ev.ts,
            summary,
            evidence,
        });
        // Start counting afresh: the next alert (after the cooldown) needs a new burst.
        st.counts = BucketCounter::default();
        st.networks = SlidingSet::default();
        st.tokens = SlidingSet::default();
    }
}

impl Detector for AuthFailureSpike {
    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        let failed = self.is_failure(ev);
        if self.counts_per(KeyKind::SourceIp) {
            if let Some(ip) = ev.source_ip {
                self.observe(Key::Ip(ip), ev, failed, out);
            }
        }
        if self.counts_per(KeyKind::ClientId) {
            if let Some(c) = &ev.client_id {
                self.observe(Key::Client(c.clone()), ev, failed, out);
            }
        }
        if self.counts_per(KeyKind::Token) {
            if let Some(t) = ev.token_entity() {
                self.observe(Key::Token(t), ev, failed, out);
            }
        }
        if self.counts_per(KeyKind::Route) {
            if let Some(r) = &ev.route {
                self.observe(Key::Route(r.clone()), ev, failed, out);
            }
        }
    }

    fn on_watermark(&mut self, wm: Millis, _out: &mut Vec<Finding>) {
        self.state.sweep(wm);
    }

    fn stats(&self) -> StateStats {
        self.state.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::{detector_from_toml, ev, run};

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

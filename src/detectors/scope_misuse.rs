//! `scope_misuse`: tokens calling routes their scopes do not allow.
//!
//! Two signals:
//! 1. **Succeeded without the scope.** A successful call to a route by a token
//!    lacking a scope the route needs. What a route needs comes from the
//!    explicit `[[params.policy]]` entries where given; otherwise from what the
//!    detector learns: after `learn_min_calls` successful scoped calls from at
//!    least `learn_min_clients` clients, every scope present on at least
//!    `required_share` of them is required. A violating call never teaches.
//!    The high default share (99 %) keeps routes with an alternative scope
//!    (say `admin` on 5 % of calls) from being learned too strictly.
//! 2. **Bursts of 403.** A caller refused `forbidden_threshold` times in the
//!    window: probing routes outside its scopes. The caller is its token; where
//!    the record logs none (Kong 3 writes `authorization: REDACTED`, Traefik drops
//!    the header), its credential id or principal (`Event::principal_entity`);
//!    else its client. This signal needs no scopes: the gateway's 403 says it.
//!
//! Signal 1 skips calls whose token carries no scopes (API keys, consumers
//! without JWTs, a redacted header): nothing can be said about them there.
//!
//! Touches: events, its own keyed state, the findings it returns. No clock.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::json;

use super::{human_duration, parse_params, Checker, Detector, Limits};
use crate::config::{ConfigError, DetectorFile, DurationStr};
use crate::event::{
    format_ts, Entity, EntityKind, Event, Finding, Fingerprint, Millis, PrincipalKind, SeenClient, Shard, Text,
};
use crate::state::{BucketCounter, KeyedState, SlidingSet, StateStats};

/// `[params]` of a `scope_misuse` file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Window for the 403 burst and for counting violations.
    #[serde(default = "default_window")]
    pub window: DurationStr,
    /// 403s of one token in the window that raise an alert (0 turns the signal off).
    #[serde(default = "default_forbidden")]
    pub forbidden_threshold: u64,
    /// Minimum share of 403s among the token's calls in the window...
    #[serde(default = "default_forbidden_ratio")]
    pub min_forbidden_ratio: f64,
    /// ...or at least this many distinct routes refused: a busy client probing many routes
    /// stays under the ratio, a misconfigured one hits the same route again and again.
    #[serde(default = "default_forbidden_routes")]
    pub min_forbidden_routes: usize,
    /// Successful calls without a scope the policy requires, per token in the window, that raise an alert.
    #[serde(default = "default_min_violations")]
    pub min_violations: u64,
    /// The same for a learned requirement (less certain than a policy, so more calls).
    #[serde(default = "default_learned_min_violations")]
    pub learned_min_violations: u64,
    /// A learned requirement that this many distinct tokens violate is dropped for the
    /// route: several callers doing the same thing is a pattern the learning missed.
    #[serde(default = "default_unlearn")]
    pub unlearn_after_clients: usize,
    /// Explicit route → scope policy. Wins over anything learned for the same route.
    #[serde(default)]
    pub policy: Vec<PolicyEntry>,
    /// Learn required scopes for routes without a policy entry.
    #[serde(default = "default_true")]
    pub learn: bool,
    /// Successful scoped calls a route needs before its learned requirement is used.
    #[serde(default = "default_learn_calls")]
    pub learn_min_calls: u64,
    /// How long a route must have been watched before its learned requirement is used.
    #[serde(default = "default_learn_for")]
    pub learn_for: DurationStr,
    /// Distinct clients a route needs before its learned requirement is used.
    #[serde(default = "default_learn_clients")]
    pub learn_min_clients: usize,
    /// A scope present on at least this share of a route's calls is required (0.5–1).
    #[serde(default = "default_share")]
    pub required_share: f64,
    /// Only scopes that name the route's resource (`users:write` for `/v1/users/{id}`, singular
    /// or plural, any separator) or are listed here can be learned as required. Keeps a scope
    /// every caller happens to hold (`profile`) from being taken for a requirement.
    #[serde(default = "default_privileged")]
    pub privileged_scopes: Vec<String>,
}

/// One policy entry: calls to `route` need at least one of `any_of` and every one of `all_of`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// Templated route `METHOD /path/{id}`; `*` as method matches any; a trailing `*` is a prefix.
    pub route: String,
    /// The call needs at least one of these.
    #[serde(default)]
    pub any_of: Vec<String>,
    /// The call needs all of these.
    #[serde(default)]
    pub all_of: Vec<String>,
}

fn default_window() -> DurationStr {
    DurationStr(10 * 60_000)
}
fn default_forbidden() -> u64 {
    10
}
fn default_forbidden_ratio() -> f64 {
    0.2
}
fn default_forbidden_routes() -> usize {
    5
}
fn default_min_violations() -> u64 {
    1
}
fn default_learn_for() -> DurationStr {
    DurationStr(15 * 60_000)
}
fn default_learned_min_violations() -> u64 {
    2
}
fn default_unlearn() -> usize {
    2
}
fn default_true() -> bool {
    true
}
fn default_learn_calls() -> u64 {
    5
}
fn default_learn_clients() -> usize {
    1
}
fn default_privileged() -> Vec<String> {
    vec!["admin".into(), "superuser".into(), "root".into()]
}

/// Lower-case words of a scope or path, a trailing plural `s` dropped: `Users.Write` → [user, write].
fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| w.len() > 1).map(|w| {
        let w = w.to_ascii_lowercase();
        match w.strip_suffix('s') {
            Some(stem) if stem.len() > 2 => stem.to_string(),
            _ => w,
        }
    })
}

/// Whether `scope` names a word of the route's path or is privileged.
fn scope_relates_to_route(scope: &str, route_words: &[String], privileged: &[String]) -> bool {
    privileged.iter().any(|p| p == scope) || words(scope).any(|w| route_words.contains(&w))
}
fn default_share() -> f64 {
    0.99
}

struct Policy {
    method: Option<String>,
    path: String,
    prefix: bool,
    any_of: Vec<String>,
    all_of: Vec<String>,
}

impl Policy {
    fn matches(&self, route: &str) -> bool {
        let (m, p) = route.split_once(' ').unwrap_or(("", route));
        if let Some(want) = &self.method {
            if want != m {
                return false;
            }
        }
        if self.prefix {
            p.starts_with(&self.path)
        } else {
            p == self.path
        }
    }

    /// The scopes missing from `have`, or `None` when the call is allowed.
    fn missing(&self, have: &[Text]) -> Option<Vec<String>> {
        let has = |s: &String| have.iter().any(|h| h.as_str() == s.as_str());
        let mut missing: Vec<String> = self.all_of.iter().filter(|s| !has(s)).cloned().collect();
        if !self.any_of.is_empty() && !self.any_of.iter().any(has) {
            missing.push(format!("one of {}", self.any_of.join("|")));
        }
        (!missing.is_empty()).then_some(missing)
    }
}

#[derive(Default)]
struct RouteLearning {
    /// Words of the route's path, for [`scope_relates_to_route`].
    route_words: Vec<String>,
    first_seen: Option<Millis>,
    calls: u64,
    /// Counted on every call with scopes: ahash, not SipHash (keys random per process).
    by_scope: HashMap<String, u64, ahash::RandomState>,
    clients: Vec<String>,
    /// Scopes dropped from the requirement (see `unlearn_after_clients`).
    optional: Vec<String>,
    /// Tokens (or clients) seen violating each learned scope.
    violators: Vec<(String, Vec<String>)>,
}

/// Per token (or client): its calls and 403s in the window, for the probing signal.
#[derive(Default)]
struct TokenState {
    calls: BucketCounter, // hits = 403s
    client: SeenClient,
    fingerprint: Option<Fingerprint>,
    /// Distinct routes refused with 403 in the window.
    forbidden_routes: SlidingSet<String>,
}

/// Per (route, token): successful calls without a required scope.
#[derive(Default)]
struct ViolationState {
    violations: BucketCounter,
    client: SeenClient,
    fingerprint: Option<Fingerprint>,
    missing: Vec<String>,
}

pub struct ScopeMisuse {
    p: Params,
    policies: Vec<Policy>,
    routes: KeyedState<String, RouteLearning>,
    tokens: KeyedState<String, TokenState>,
    /// Keyed by (route, token key): what a route's instance knows of each caller's violations.
    violations: KeyedState<(String, String), ViolationState>,
    bucket: Millis,
    /// The latest event time seen (event or watermark): what [`Detector::describe`] reads the
    /// windows as of.
    now: Millis,
}

pub fn build(file: &DetectorFile, limits: Limits) -> Result<Box<dyn Detector>, Vec<ConfigError>> {
    let p: Params = parse_params(file)?;
    let mut c = Checker::new(file);
    c.check(p.window.0 >= 10_000, "window", "must be at least 10s");
    c.check((0.0..=1.0).contains(&p.min_forbidden_ratio), "min_forbidden_ratio", "must be between 0 and 1");
    c.check((0.5..=1.0).contains(&p.required_share), "required_share", "must be between 0.5 and 1");
    c.check(p.min_violations >= 1, "min_violations", "must be at least 1");
    c.check(p.learn_min_clients >= 1, "learn_min_clients", "must be at least 1");
    let mut policies = Vec::new();
    for (i, e) in p.policy.iter().enumerate() {
        let field = format!("policy[{i}]");
        let Some((m, path)) = e.route.split_once(' ') else {
            c.check(false, &format!("{field}.route"), "must read `METHOD /path` (method may be `*`)");
            continue;
        };
        c.check(path.starts_with('/'), &format!("{field}.route"), "the path must start with `/`");
        c.check(!e.any_of.is_empty() || !e.all_of.is_empty(), &field, "give `any_of` or `all_of`");
        let (path, prefix) = match path.strip_suffix('*') {
            Some(p) => (p.to_string(), true),
            None => (path.to_string(), false),
        };
        policies.push(Policy {
            method: (m != "*").then(|| m.to_string()),
            path,
            prefix,
            any_of: e.any_of.clone(),
            all_of: e.all_of.clone(),
        });
    }
    let bucket = (p.window.0 / 30).max(1000);
    let idle = limits.idle_timeout.max(p.window.0);
    let d = ScopeMisuse {
        routes: KeyedState::new(limits.max_keys.min(50_000), Millis::MAX / 4),
        tokens: KeyedState::new(limits.max_keys, idle),
        violations: KeyedState::new(limits.max_keys, idle),
        policies,
        bucket,
        now: Millis::MIN,
        p,
    };
    c.finish(Box::new(d) as Box<dyn Detector>)
}

impl ScopeMisuse {
    /// Scopes missing for this call, by policy or learned requirement; `None` if allowed or unknown.
    fn check_and_learn(&mut self, route: &str, ev: &Event) -> Option<(Vec<String>, &'static str)> {
        if let Some(pol) = self.policies.iter().find(|p| p.matches(route)) {
            return pol.missing(&ev.scopes).map(|m| (m, "policy"));
        }
        if !self.p.learn {
            return None;
        }
        let (min_calls, min_clients, share) = (self.p.learn_min_calls, self.p.learn_min_clients, self.p.required_share);
        let unlearn = self.p.unlearn_after_clients;
        let learn_for = self.p.learn_for.0;
        let privileged = &self.p.privileged_scopes;
        let st = self.routes.entry(route, ev.ts, RouteLearning::default);
        if st.route_words.is_empty() {
            let path = route.split_once(' ').map_or(route, |(_, p)| p);
            let is_version = |w: &str| w.starts_with('v') && w[1..].bytes().all(|b| b.is_ascii_digit());
            st.route_words = words(path).filter(|w| w != "id" && !is_version(w)).collect();
            st.route_words.push(String::new()); // marks "computed" even for a path without words
        }
        let first = *st.first_seen.get_or_insert(ev.ts);
        let learned = st.calls >= min_calls && st.clients.len() >= min_clients && ev.ts - first >= learn_for;
        if learned {
            let need = (share * st.calls as f64).ceil() as u64;
            let mut missing: Vec<String> = st
                .by_scope
                .iter()
                .filter(|(s, n)| {
                    **n >= need
                        && !ev.scopes.iter().any(|x| x.as_str() == s.as_str())
                        && !st.optional.contains(s)
                        && scope_relates_to_route(s, &st.route_words, privileged)
                })
                .map(|(s, _)| s.clone())
                .collect();
            if !missing.is_empty() {
                missing.sort();
                let who =
                    ev.principal_entity().or_else(|| ev.client_id.as_deref().map(str::to_string)).unwrap_or_default();
                for m in &missing {
                    let i = match st.violators.iter().position(|(s, _)| s == m) {
                        Some(i) => i,
                        None => {
                            st.violators.push((m.clone(), Vec::new()));
                            st.violators.len() - 1
                        }
                    };
                    let list = &mut st.violators[i].1;
                    if !list.contains(&who) {
                        list.push(who.clone());
                    }
                    if list.len() >= unlearn {
                        st.optional.push(m.clone());
                    }
                }
                missing.retain(|m| !st.optional.contains(m));
                if !missing.is_empty() {
                    return Some((missing, "learned"));
                }
                return None;
            }
        }
        st.calls += 1;
        for s in &ev.scopes {
            match st.by_scope.get_mut(s.as_str()) {
                Some(n) => *n += 1,
                None => {
                    st.by_scope.insert(s.to_string(), 1);
                }
            }
        }
        if st.clients.len() < min_clients {
            if let Some(c) = &ev.client_id {
                if !st.clients.iter().any(|x| x.as_str() == c.as_str()) {
                    st.clients.push(c.to_string());
                }
            }
        }
        None
    }
}

/// The caller a call counts for: its token or principal, else its client (`client:<id>`).
fn caller_key(ev: &Event) -> Option<String> {
    match (ev.principal_entity(), &ev.client_id) {
        (Some(t), _) => Some(t),
        (None, Some(c)) => Some(format!("client:{c}")),
        _ => None,
    }
}

fn caller_entity(key: &str) -> Entity {
    match key.strip_prefix("client:") {
        Some(c) => Entity::new(EntityKind::ClientId, c),
        None => Entity::new(EntityKind::Token, key),
    }
}

impl ScopeMisuse {
    /// A route's half: learn what it requires, and count each caller's successful calls
    /// without it. Whole on the instance that owns the route.
    fn on_route_call(&mut self, route: &str, key: &str, ev: &Event, out: &mut Vec<Finding>) {
        if !ev.is_success() {
            return;
        }
        let Some((missing, source)) = self.check_and_learn(route, ev) else { return };
        let (window, bucket) = (self.p.window.0, self.bucket);
        let st = self.violations.entry(&(route.to_string(), key.to_string()), ev.ts, ViolationState::default);
        st.violations.add(ev.ts, true, window, bucket);
        st.client.observe(ev, ev.token_fingerprint.is_some() && !key.starts_with("client:"));
        st.fingerprint = ev.token_fingerprint.or(st.fingerprint);
        for m in missing {
            if !st.missing.contains(&m) {
                st.missing.push(m);
            }
        }
        let needed = if source == "policy" { self.p.min_violations } else { self.p.learned_min_violations };
        if st.violations.hits() < needed {
            return;
        }
        let mut evidence = serde_json::Map::new();
        evidence.insert("violations".into(), json!(st.violations.hits()));
        evidence.insert("routes".into(), json!([route]));
        evidence.insert("missing_scopes".into(), json!(st.missing));
        evidence.insert("token_scopes".into(), json!(ev.scopes));
        evidence.insert("requirement".into(), json!(source));
        evidence.insert("status".into(), json!(ev.status));
        out.push(Finding {
            entity: caller_entity(key),
            within: Some(route.to_string()),
            client_id: st.client.id.clone(),
            client_id_source: st.client.source,
            token_fingerprint: st.fingerprint,
            window_start: st.violations.first_hit().unwrap_or(ev.ts),
            window_end: ev.ts,
            summary: format!(
                "{} successful call(s) to {route} without scope {} ({source} requirement)",
                st.violations.hits(),
                st.missing.join(", "),
            ),
            evidence,
        });
        *st = ViolationState::default();
    }

    /// A caller's half: its 403s across routes. Whole on the instance that owns the token.
    fn on_caller_call(&mut self, route: &str, key: &str, ev: &Event, out: &mut Vec<Finding>) {
        let forbidden = ev.status == Some(403);
        if !forbidden && ev.scopes.is_empty() && !self.tokens.contains(key) {
            // A caller whose calls carry no scopes is tracked from its first refusal on, so
            // that a flood of distinct keys without scopes costs no state here.
            return;
        }
        let (window, bucket) = (self.p.window.0, self.bucket);
        let st = self.tokens.entry(key, ev.ts, TokenState::default);
        st.calls.add(ev.ts, forbidden, window, bucket);
        st.client.observe(ev, ev.token_fingerprint.is_some() && !key.starts_with("client:"));
        st.fingerprint = ev.token_fingerprint.or(st.fingerprint);
        if !forbidden || self.p.forbidden_threshold == 0 {
            return;
        }
        st.forbidden_routes.insert(route.to_string(), ev.ts, window, 32);
        let (n, total) = (st.calls.hits(), st.calls.total());
        let routes = st.forbidden_routes.len();
        if n < self.p.forbidden_threshold
            || (n as f64) < self.p.min_forbidden_ratio * total as f64 && routes < self.p.min_forbidden_routes
        {
            return;
        }
        let what = PrincipalKind::of(key).noun();
        let mut evidence = serde_json::Map::new();
        evidence.insert("forbidden".into(), json!(n));
        evidence.insert("distinct_routes".into(), json!(routes));
        evidence.insert("requests".into(), json!(total));
        evidence.insert("token_scopes".into(), json!(ev.scopes));
        evidence.insert("last_route".into(), json!(route));
        out.push(Finding {
            entity: caller_entity(key),
            within: None,
            client_id: st.client.id.clone(),
            client_id_source: st.client.source,
            token_fingerprint: st.fingerprint,
            window_start: st.calls.first_hit().unwrap_or(ev.ts),
            window_end: ev.ts,
            summary: format!(
                "{n} of {total} calls refused with 403 on {routes} routes in {}: {what} probing routes outside its scopes",
                human_duration(window)
            ),
            evidence,
        });
        st.calls = BucketCounter::default();
        st.forbidden_routes = SlidingSet::default();
    }
}

impl Detector for ScopeMisuse {
    /// Two halves, each whole where it runs: what a route requires, and who called it without,
    /// by route; a caller's 403s across routes, by token (or client without a token).
    fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String> {
        let route = ev.route.as_ref()?;
        let key = caller_key(ev)?;
        match shard {
            Shard::Route if ev.is_success() && !ev.scopes.is_empty() => Some(route.to_string()),
            Shard::Token if ev.principal_entity().is_some() => Some(key),
            Shard::ClientId if ev.principal_entity().is_none() => ev.client_id.as_deref().map(str::to_string),
            _ => None,
        }
    }

    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        self.now = self.now.max(ev.ts);
        let Some(route) = ev.route.as_deref() else { return };
        let Some(key) = caller_key(ev) else { return };
        if !ev.scopes.is_empty() {
            self.on_route_call(route, &key, ev, out);
        }
        self.on_caller_call(route, &key, ev, out);
    }

    fn on_shard_event(&mut self, ev: &Event, shard: Shard, out: &mut Vec<Finding>) {
        self.now = self.now.max(ev.ts);
        let Some(route) = ev.route.as_deref() else { return };
        let Some(key) = caller_key(ev) else { return };
        match shard {
            Shard::Route if !ev.scopes.is_empty() => self.on_route_call(route, &key, ev, out),
            Shard::Token | Shard::ClientId => self.on_caller_call(route, &key, ev, out),
            Shard::Route | Shard::Source | Shard::Group => {}
        }
    }

    fn on_watermark(&mut self, wm: Millis, _out: &mut Vec<Finding>) {
        self.now = self.now.max(wm);
        self.tokens.sweep(wm);
        self.violations.sweep(wm);
    }

    fn stats(&self) -> StateStats {
        self.tokens.stats() + self.routes.stats() + self.violations.stats()
    }

    /// A route: the policy it falls under, or what is learned of it (calls, scopes seen, the
    /// scopes required once learned, those unlearned), and its callers' violations in the
    /// window. A token (or a client without one): its calls and 403s in the window, the routes
    /// refused, and its violations per route.
    fn describe(&self, entity: &Entity) -> Option<serde_json::Value> {
        match entity.kind {
            EntityKind::Route => self.describe_route(&entity.id),
            EntityKind::Token => self.describe_caller(&entity.id),
            EntityKind::ClientId => self.describe_caller(&format!("client:{}", entity.id)),
            EntityKind::SourceIp => None,
        }
    }
}

/// Scopes (by calls) listed for a route by [`Detector::describe`].
const DESCRIBED_SCOPES: usize = 16;

impl ScopeMisuse {
    fn describe_route(&self, route: &str) -> Option<serde_json::Value> {
        let (now, window) = (self.now, self.p.window.0);
        let learning = self.routes.get_by(route);
        // (caller, violations in the window, missing scopes)
        let mut callers: Vec<(&str, u64, &Vec<String>)> = self
            .violations
            .iter()
            .filter(|((r, _), _)| r == route)
            .map(|((_, who), v)| (who.as_str(), v.violations.within(now, window).1, &v.missing))
            .filter(|(_, n, _)| *n > 0)
            .collect();
        if learning.is_none() && callers.is_empty() {
            return None;
        }
        callers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut o = serde_json::Map::new();
        o.insert("window_ms".into(), json!(window));
        o.insert("as_of".into(), json!(format_ts(now)));
        let policy = self.policies.iter().find(|p| p.matches(route));
        let mut requirement = match policy {
            Some(_) => "policy",
            None if !self.p.learn => "none",
            None => "learning",
        };
        if let Some(pol) = policy {
            o.insert("policy".into(), json!({"any_of": pol.any_of, "all_of": pol.all_of}));
        }
        if let (Some(st), None) = (learning, policy) {
            let learned = st.calls >= self.p.learn_min_calls
                && st.clients.len() >= self.p.learn_min_clients
                && st.first_seen.is_some_and(|f| now - f >= self.p.learn_for.0);
            // as `check_and_learn` judges the next call
            let need = (self.p.required_share * st.calls as f64).ceil() as u64;
            let mut required: Vec<&String> = st
                .by_scope
                .iter()
                .filter(|(s, n)| {
                    **n >= need
                        && !st.optional.contains(s)
                        && scope_relates_to_route(s, &st.route_words, &self.p.privileged_scopes)
                })
                .map(|(s, _)| s)
                .collect();
            required.sort();
            let mut seen: Vec<(&String, &u64)> = st.by_scope.iter().collect();
            seen.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let seen: serde_json::Map<String, serde_json::Value> =
                seen.into_iter().take(DESCRIBED_SCOPES).map(|(s, n)| (s.clone(), json!(n))).collect();
            if learned {
                requirement = "learned";
            }
            // clients are counted up to `learn_min_clients`, all learning needs
            o.insert(
                "learning".into(),
                json!({
                    "first_seen_at": st.first_seen.map(format_ts),
                    "calls": st.calls,
                    "clients_counted": st.clients.len(),
                    "learned": learned,
                    "learn_min_calls": self.p.learn_min_calls,
                    "learn_min_clients": self.p.learn_min_clients,
                    "learn_for_ms": self.p.learn_for.0,
                }),
            );
            o.insert("required_scopes".into(), json!(required));
            o.insert("scopes_seen".into(), serde_json::Value::Object(seen));
            o.insert("unlearned_scopes".into(), json!(st.optional));
            let violators: serde_json::Map<String, serde_json::Value> =
                st.violators.iter().map(|(s, who)| (s.clone(), json!(who.len()))).collect();
            o.insert("violators_per_scope".into(), serde_json::Value::Object(violators));
        }
        o.insert("requirement".into(), json!(requirement));
        o.insert(
            "violations".into(),
            json!(callers
                .iter()
                .map(|(who, n, missing)| {
                    json!({"caller": caller_entity(who), "violations": n, "missing_scopes": missing})
                })
                .collect::<Vec<_>>()),
        );
        Some(serde_json::Value::Object(o))
    }

    fn describe_caller(&self, key: &str) -> Option<serde_json::Value> {
        let (now, window) = (self.now, self.p.window.0);
        let calls = self.tokens.get_by(key);
        let mut routes: Vec<(&str, u64, Option<Millis>, &Vec<String>)> = self
            .violations
            .iter()
            .filter(|((_, who), _)| who == key)
            .map(|((r, _), v)| {
                let (_, n, first) = v.violations.within(now, window);
                (r.as_str(), n, first, &v.missing)
            })
            .filter(|(_, n, ..)| *n > 0)
            .collect();
        if calls.is_none() && routes.is_empty() {
            return None;
        }
        routes.sort_by(|a, b| a.0.cmp(b.0));
        let mut o = serde_json::Map::new();
        o.insert("window_ms".into(), json!(window));
        o.insert("as_of".into(), json!(format_ts(now)));
        if let Some(st) = calls {
            let (total, forbidden, first) = st.calls.within(now, window);
            let refused: Vec<&String> = st.forbidden_routes.within(now, window).map(|(r, ..)| r).collect();
            o.insert("requests".into(), json!(total));
            o.insert("forbidden".into(), json!(forbidden));
            o.insert("forbidden_threshold".into(), json!(self.p.forbidden_threshold));
            o.insert("min_forbidden_ratio".into(), json!(self.p.min_forbidden_ratio));
            o.insert("first_forbidden_at".into(), json!(first.map(format_ts)));
            o.insert("forbidden_routes".into(), json!(refused));
            if let Some(c) = &st.client.id {
                o.insert("client_id".into(), json!(c));
            }
        }
        o.insert(
            "violations".into(),
            json!(routes
                .iter()
                .map(|(r, n, first, missing)| json!({
                    "route": r,
                    "violations": n,
                    "missing_scopes": missing,
                    "first_violation_at": first.map(format_ts),
                }))
                .collect::<Vec<_>>()),
        );
        Some(serde_json::Value::Object(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::{detector_from_toml, ev, run, EventBuilder};

    const POLICY: &str = r#"
[[params.policy]]
route = "DELETE /v1/users/{id}"
any_of = ["admin"]
"#;

    #[test]
    fn policy_violation_fires_on_the_token() {
        let mut d = detector_from_toml("scope_misuse", POLICY);
        let events = vec![
            ev(0).client("admin-app").token(1).scopes(&["admin"]).delete("/v1/users/17").status(204).build(),
            ev(1000).client("app-2").token(2).scopes(&["orders:read"]).delete("/v1/users/18").status(204).build(),
        ];
        let f = run(&mut *d, &events);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].entity, Entity::new(EntityKind::Token, Fingerprint([2; 8]).to_hex()));
        assert!(f[0].summary.contains("DELETE /v1/users/{id}"));
        assert!(f[0].summary.contains("one of admin"));
    }

    #[test]
    fn refused_call_is_not_a_violation() {
        let mut d = detector_from_toml("scope_misuse", POLICY);
        let events = vec![ev(0).token(2).scopes(&["orders:read"]).delete("/v1/users/18").status(403).build()];
        assert!(run(&mut *d, &events).is_empty());
    }

    fn learning_traffic() -> Vec<Event> {
        // 10 clients with orders:read call GET /v1/orders 30 times each
        (0..300)
            .map(|i| {
                ev(i * 1000)
                    .client(&format!("app-{}", i % 10))
                    .token((i % 10) as u8)
                    .scopes(&["orders:read", "profile"])
                    .get("/v1/orders")
                    .build()
            })
            .collect()
    }

    #[test]
    fn learned_requirement_catches_a_token_without_the_scope() {
        let mut d = detector_from_toml("scope_misuse", "learn_for = \"1m\"");
        let mut events = learning_traffic();
        events.push(ev(400_000).client("intruder").token(99).scopes(&["profile"]).get("/v1/orders").build());
        events.push(ev(401_000).client("intruder").token(99).scopes(&["profile"]).get("/v1/orders").build());
        let f = run(&mut *d, &events);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].evidence["missing_scopes"], json!(["orders:read"]));
        assert_eq!(f[0].evidence["requirement"], json!("learned"));
    }

    #[test]
    fn a_scope_unrelated_to_the_route_is_never_required() {
        let mut d = detector_from_toml("scope_misuse", "");
        // every caller of /v1/orders happens to hold `profile`; a caller without it is fine
        let mut events = learning_traffic();
        events.push(ev(400_000).client("newcomer").token(98).scopes(&["orders:read"]).get("/v1/orders").build());
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn low_traffic_admin_route_learns_its_privileged_scope() {
        let mut d = detector_from_toml("scope_misuse", "");
        // 15 admin calls over 15 minutes, then an ordinary token deletes users
        let mut events: Vec<Event> = (0..15)
            .map(|i| {
                ev(i * 60_000)
                    .client("ops")
                    .token(1)
                    .scopes(&["admin", "users:write", "profile"])
                    .delete(&format!("/v1/users/{i}"))
                    .status(204)
                    .build()
            })
            .collect();
        events.push(
            ev(1_000_000)
                .client("app-x")
                .token(2)
                .scopes(&["users:read", "users:write"])
                .delete("/v1/users/99")
                .status(204)
                .build(),
        );
        events.push(
            ev(1_060_000)
                .client("app-x")
                .token(2)
                .scopes(&["users:read", "users:write"])
                .delete("/v1/users/98")
                .status(204)
                .build(),
        );
        let f = run(&mut *d, &events);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].evidence["missing_scopes"], json!(["admin"]));
    }

    #[test]
    fn a_requirement_several_clients_break_is_unlearned() {
        let mut d = detector_from_toml("scope_misuse", "learn_for = \"1s\"");
        // early callers all admins; later two ordinary clients legitimately use the route
        let mut events: Vec<Event> = (0..6)
            .map(|i| {
                ev(i * 1000)
                    .client("ops")
                    .token(1)
                    .scopes(&["admin", "users:write"])
                    .req("PUT", &format!("/v1/users/{i}"))
                    .build()
            })
            .collect();
        events.push(ev(10_000).client("crm").token(2).scopes(&["users:write"]).req("PUT", "/v1/users/7").build());
        events.push(ev(11_000).client("hr").token(3).scopes(&["users:write"]).req("PUT", "/v1/users/8").build());
        for i in 0..5 {
            events.push(
                ev(20_000 + i * 1000).client("crm").token(2).scopes(&["users:write"]).req("PUT", "/v1/users/9").build(),
            );
            events.push(
                ev(20_500 + i * 1000).client("hr").token(3).scopes(&["users:write"]).req("PUT", "/v1/users/9").build(),
            );
        }
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn nothing_is_learned_in_the_first_minutes_of_a_busy_route() {
        let mut d = detector_from_toml("scope_misuse", "");
        let mut events: Vec<Event> = learning_traffic().into_iter().take(100).collect(); // 100 s of traffic
        events.push(ev(101_000).client("x").token(99).scopes(&["profile"]).get("/v1/orders").build());
        events.push(ev(102_000).client("x").token(99).scopes(&["profile"]).get("/v1/orders").build());
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn nothing_is_learned_before_enough_calls() {
        let mut d = detector_from_toml("scope_misuse", "learn_for = \"1s\"");
        let mut events: Vec<Event> = learning_traffic().into_iter().take(4).collect();
        events.push(ev(400_000).client("x").token(99).scopes(&["profile"]).get("/v1/orders").build());
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn alternative_scope_on_a_few_percent_of_calls_is_not_learned_as_violation() {
        let mut d = detector_from_toml("scope_misuse", "");
        // 95 % of calls carry orders:read, 5 % carry admin only: nothing reaches 99 %
        let events: Vec<Event> = (0..400)
            .map(|i| {
                let scopes: &[&str] = if i % 20 == 0 { &["admin"] } else { &["orders:read"] };
                ev(i * 1000)
                    .client(&format!("app-{}", i % 12))
                    .token((i % 12) as u8)
                    .scopes(scopes)
                    .get("/v1/orders")
                    .build()
            })
            .collect();
        assert!(run(&mut *d, &events).is_empty());
    }

    #[test]
    fn forbidden_burst_fires() {
        let mut d = detector_from_toml("scope_misuse", "learn = false");
        let events: Vec<Event> = (0..15)
            .map(|i| {
                ev(i * 2000)
                    .client("app-3")
                    .token(3)
                    .scopes(&["orders:read"])
                    .get(&format!("/admin/t{i}"))
                    .status(403)
                    .build()
            })
            .collect();
        let f = run(&mut *d, &events);
        assert_eq!(f.len(), 1);
        assert!(f[0].summary.starts_with("10 of 10 calls refused"));
    }

    #[test]
    fn busy_client_probing_many_routes_fires_but_one_misconfigured_route_does_not() {
        let busy = |path_for: &dyn Fn(i64) -> String| {
            let mut d = detector_from_toml("scope_misuse", "learn = false");
            let mut events: Vec<Event> = (0..600)
                .map(|i| ev(i * 500).client("batch").token(4).scopes(&["orders:read"]).get("/v1/orders").build())
                .collect();
            events.extend((0..20).map(|i| {
                ev(100_000 + i * 3000)
                    .client("batch")
                    .token(4)
                    .scopes(&["orders:read"])
                    .get(&path_for(i))
                    .status(403)
                    .build()
            }));
            events.sort_by_key(|e| e.ts);
            run(&mut *d, &events)
        };
        assert!(!busy(&|i| format!("/admin/area{}", i % 8)).is_empty());
        assert!(busy(&|_| "/v1/reports".to_string()).is_empty());
    }

    #[test]
    fn a_burst_of_403_needs_no_scopes_and_keys_on_the_credential_or_principal() {
        // Kong 3: `authorization: REDACTED`, no claims, no scopes; the credential id is logged.
        // A catalog-only consumer hammering admin and payment routes: 45 × 403 in 5 minutes.
        let probe = |i: i64, who: &dyn Fn(EventBuilder) -> EventBuilder| {
            let path = ["/admin/users", "/admin/keys", "/v1/payments/9", "/v1/payments/9/refund", "/admin/audit"];
            who(ev(i * 6_000).ip("198.51.100.23").client("catalog-app")).get(path[i as usize % 5]).status(403).build()
        };
        let mut catalog: Vec<Event> = (0..100)
            .map(|i| {
                ev(i * 3_000).ip("198.51.100.23").client("catalog-app").credential("cred-7").get("/v1/items").build()
            })
            .collect();
        catalog.extend((0..45).map(|i| probe(i, &|b| b.credential("cred-7"))));
        catalog.sort_by_key(|e| e.ts);
        // a finding per 10 refusals (the rule's cooldown makes them one alert)
        let f = run(&mut *detector_from_toml("scope_misuse", ""), &catalog);
        assert_eq!(f.len(), 4, "{f:#?}");
        assert!(f.iter().all(|x| x.entity == Entity::new(EntityKind::Token, "cred:cred-7")), "{f:#?}");
        assert!(f[0].summary.contains("token probing routes"), "{}", f[0].summary);
        // Traefik: only the authenticated user name
        let traefik: Vec<Event> = (0..45).map(|i| probe(i, &|b| b.principal("user:catalog-bot"))).collect();
        let f = run(&mut *detector_from_toml("scope_misuse", ""), &traefik);
        assert_eq!(f.len(), 4, "{f:#?}");
        assert!(f.iter().all(|x| x.entity == Entity::new(EntityKind::Token, "user:catalog-bot")), "{f:#?}");
        assert!(f[0].summary.contains("user probing routes"), "{}", f[0].summary);
        // the same caller refused a few times while its key rotates stays quiet
        let mut rotating: Vec<Event> = (0..300)
            .map(|i| ev(i * 2_000).client("catalog-app").credential("cred-8").get("/v1/items").build())
            .collect();
        rotating.extend(
            (0..4).map(|i| {
                ev(200_000 + i).client("catalog-app").credential("cred-8").get("/v1/items").status(403).build()
            }),
        );
        rotating.sort_by_key(|e| e.ts);
        assert!(run(&mut *detector_from_toml("scope_misuse", ""), &rotating).is_empty());
    }

    #[test]
    fn describe_shows_what_a_route_requires_and_what_a_caller_did() {
        use crate::detectors::testing::{describe_twice, feed};
        let mut d = detector_from_toml("scope_misuse", "learn_for = \"1m\"\nlearned_min_violations = 3");
        let mut events = learning_traffic();
        events.push(ev(400_000).client("intruder").token(99).scopes(&["profile"]).get("/v1/orders").build());
        events.push(ev(401_000).client("intruder").token(99).scopes(&["profile"]).get("/v1/orders").build());
        events.push(ev(402_000).client("intruder").token(99).scopes(&["profile"]).get("/admin/x").status(403).build());
        assert!(feed(&mut *d, &events).is_empty(), "two violations of three");
        let route = describe_twice(&*d, &Entity::new(EntityKind::Route, "GET /v1/orders")).expect("held");
        assert_eq!(route["requirement"], json!("learned"));
        assert_eq!(route["learning"]["calls"], json!(300));
        assert_eq!(route["learning"]["learned"], json!(true));
        assert_eq!(route["required_scopes"], json!(["orders:read"]), "profile names nothing of the route");
        assert_eq!(route["scopes_seen"], json!({"orders:read": 300, "profile": 300}));
        assert_eq!(route["violators_per_scope"], json!({"orders:read": 1}));
        let intruder = Fingerprint([99; 8]).to_hex();
        assert_eq!(
            route["violations"],
            json!([{"caller": {"kind": "token", "id": intruder}, "violations": 2, "missing_scopes": ["orders:read"]}])
        );
        let token = describe_twice(&*d, &Entity::new(EntityKind::Token, intruder.clone())).expect("held");
        assert_eq!(token["requests"], json!(3));
        assert_eq!(token["forbidden"], json!(1));
        assert_eq!(token["forbidden_routes"], json!(["GET /admin/x"]));
        assert_eq!(token["violations"][0]["route"], json!("GET /v1/orders"));
        assert_eq!(token["violations"][0]["violations"], json!(2));
        assert_eq!(token["client_id"], json!("intruder"));
        assert_eq!(describe_twice(&*d, &Entity::new(EntityKind::Route, "GET /v1/never")), None);
        assert_eq!(describe_twice(&*d, &Entity::new(EntityKind::Token, Fingerprint([98; 8]).to_hex())), None);
        assert_eq!(describe_twice(&*d, &Entity::new(EntityKind::SourceIp, "192.0.2.1")), None);
        // describing changed nothing: the third violation fires
        let third = [ev(403_000).client("intruder").token(99).scopes(&["profile"]).get("/v1/orders").build()];
        assert_eq!(feed(&mut *d, &third).len(), 1);

        // a policy route, and a client without a token
        let mut d = detector_from_toml("scope_misuse", &format!("min_violations = 2\n{POLICY}"));
        let events = [ev(0).client("app-2").scopes(&["orders:read"]).delete("/v1/users/18").status(204).build()];
        assert!(feed(&mut *d, &events).is_empty());
        let route = describe_twice(&*d, &Entity::new(EntityKind::Route, "DELETE /v1/users/{id}")).expect("held");
        assert_eq!(route["requirement"], json!("policy"));
        assert_eq!(route["policy"], json!({"any_of": ["admin"], "all_of": []}));
        assert_eq!(route["violations"][0]["caller"], json!({"kind": "client_id", "id": "app-2"}));
        let client = describe_twice(&*d, &Entity::new(EntityKind::ClientId, "app-2")).expect("held");
        assert_eq!(client["violations"][0]["missing_scopes"], json!(["one of admin"]));
    }

    #[test]
    fn bad_policy_is_reported_with_its_field() {
        let file = crate::detectors::testing::file_from_toml(
            "scope_misuse",
            "[[params.policy]]\nroute = \"/no-method\"\nany_of = [\"a\"]",
        );
        let errs = build(&file, Limits::default()).err().expect("invalid");
        assert_eq!(errs[0].field, "params.policy[0].route");
    }
}

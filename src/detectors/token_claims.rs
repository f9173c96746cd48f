//! `token_claims`: bearer JWTs a gateway accepted (answered 2xx) that it should have refused.
//!
//! gatewatch reads a token's header and payload while the record is parsed, before the token
//! is fingerprinted and dropped ([`Event::claims`]); it never verifies a signature (it holds no
//! key), and does not need to: a request the gateway *accepted* with a token that is unsigned,
//! expired, or minted by somebody else says the gateway (or the route's plugin, or the upstream
//! that validates for it) is not checking what it should. What is judged, on 2xx answers only:
//!
//! - `unsigned`: the header says `alg: none` (the classic forged token);
//! - `expired`: `exp` more than `clock_skew` before the request;
//! - `lifetime`: `exp` more than `max_lifetime` after the request, or no `exp` at all;
//! - `issuer`, `audience`, `algorithm`: a value outside the configured list, or, with no list,
//!   outside what the route's accepted tokens carried while it was learned (its first `learn`
//!   of event time, and at least `min_learn_tokens` distinct tokens). Algorithm confusion
//!   (an `HS256` token on a route that only ever saw `RS256`) is the `algorithm` check.
//!
//! One alert per token and check for a token's own faults, on whichever route it is used first
//! (each such token is a credential to revoke); one per route and unexpected value for the
//! issuer, audience and algorithm checks, again after `learn` (a campaign of forged tokens
//! from one issuer is one story). What stays quiet: a signing-key
//! rotation (a new `kid`, same issuer and algorithm), a batch client sending one token for its
//! whole hour, refused tokens (401/403: the gateway did its job), a token a little past its
//! `exp` within the allowed skew.
//!
//! Only the claims' scrubbed text reaches an alert: an issuer or audience with a secret in it
//! shows the scrubber's marker, an over-long one a placeholder.
//!
//! Touches: events, its own keyed state, the findings it returns. No clock.

use serde::Deserialize;
use serde_json::json;

use super::{human_duration, parse_params, Checker, Detector, Limits};
use crate::config::{ConfigError, DetectorFile, DurationStr};
use crate::event::{format_ts, Entity, EntityKind, Event, Finding, Fingerprint, Millis, Shard, TokenClaims};
use crate::state::{key128, KeyedState, StateStats};

/// `[params]` of a `token_claims` file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Which checks run. Default: all.
    #[serde(default = "all_checks")]
    pub checks: Vec<Check>,
    /// Issuers (`iss`) the gateways may accept. Empty: learned per route.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Audiences (`aud`) the gateways may accept (a token naming any one of them passes).
    /// Empty: learned per route.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Signing algorithms (`alg`) the gateways may accept. Empty: learned per route. `none`
    /// is never accepted (the `unsigned` check).
    #[serde(default)]
    pub algorithms: Vec<String>,
    /// How long a route's accepted tokens are learned from, from its first, before an issuer,
    /// audience or algorithm it has not seen is reported.
    #[serde(default = "default_learn")]
    pub learn: DurationStr,
    /// ...and at least this many distinct tokens: a route a single client calls has not shown
    /// what is normal for it yet.
    #[serde(default = "default_learn_tokens")]
    pub min_learn_tokens: usize,
    /// Tolerated difference between the gateway's clock and the issuer's.
    #[serde(default = "default_skew")]
    pub clock_skew: DurationStr,
    /// The most lifetime a token may have left when it is used.
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime: DurationStr,
}

/// What a `token_claims` rule judges: the closed set of `checks` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// `alg: none` accepted.
    Unsigned,
    /// Accepted after `exp`.
    Expired,
    /// `exp` too far ahead, or absent.
    Lifetime,
    /// An issuer outside the list (or the route's learned set).
    Issuer,
    /// No audience of the token in the list (or the route's learned set).
    Audience,
    /// An algorithm outside the list (or the route's learned set).
    Algorithm,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Unsigned => "unsigned",
            Check::Expired => "expired",
            Check::Lifetime => "lifetime",
            Check::Issuer => "issuer",
            Check::Audience => "audience",
            Check::Algorithm => "algorithm",
        }
    }

    /// A fault of the token itself, reported per token; the others are about which tokens a
    /// route accepts, reported per route and value.
    fn per_token(self) -> bool {
        matches!(self, Check::Unsigned | Check::Expired | Check::Lifetime)
    }
}

fn all_checks() -> Vec<Check> {
    vec![Check::Unsigned, Check::Expired, Check::Lifetime, Check::Issuer, Check::Audience, Check::Algorithm]
}
fn default_learn() -> DurationStr {
    DurationStr(3_600_000)
}
fn default_learn_tokens() -> usize {
    20
}
fn default_skew() -> DurationStr {
    DurationStr(5 * 60_000)
}
fn default_max_lifetime() -> DurationStr {
    DurationStr(24 * 3_600_000)
}

/// Values remembered per route and claim: a route accepts tokens of a few issuers, not of
/// hundreds; past this a route's set is full and a new value is judged against what it holds.
const MAX_LEARNED: usize = 16;
/// Stands for an absent claim in a learned set (a route whose tokens carry no `aud`).
const ABSENT: &str = "";

/// What a route's accepted tokens carried while it was learned.
#[derive(Default)]
struct RouteLearned {
    first: Millis,
    /// Distinct tokens seen while learning (up to `min_learn_tokens`).
    tokens: Vec<[u8; 8]>,
    learned: bool,
    issuers: Vec<String>,
    audiences: Vec<String>,
    algorithms: Vec<String>,
}

fn remember(set: &mut Vec<String>, v: &str) {
    if set.len() < MAX_LEARNED && !set.iter().any(|x| x == v) {
        set.push(v.to_string());
    }
}

pub struct TokenClaimsDetector {
    p: Params,
    /// Keyed by a hash of the route.
    routes: KeyedState<u128, RouteLearned>,
    /// When a reported (check, route, token or value) may be reported again.
    quiet: KeyedState<u128, Millis>,
}

pub fn build(file: &DetectorFile, limits: Limits) -> Result<Box<dyn Detector>, Vec<ConfigError>> {
    let p: Params = parse_params(file)?;
    let mut c = Checker::new(file);
    c.check(!p.checks.is_empty(), "checks", "name at least one check");
    c.check(p.learn.0 >= 60_000, "learn", "must be at least 1m");
    c.check((1..=1000).contains(&p.min_learn_tokens), "min_learn_tokens", "must be 1–1000");
    c.check(p.max_lifetime.0 >= 60_000, "max_lifetime", "must be at least 1m");
    c.check(
        !p.algorithms.iter().any(|a| a.eq_ignore_ascii_case("none")),
        "algorithms",
        "`none` cannot be allowed: an unsigned token proves nothing",
    );
    let idle = limits.idle_timeout.max(p.learn.0);
    let routes = KeyedState::new(limits.max_keys, Millis::MAX / 4);
    c.finish(
        Box::new(TokenClaimsDetector { routes, quiet: KeyedState::new(limits.max_keys, idle), p }) as Box<dyn Detector>
    )
}

fn route_key(route: &str) -> u128 {
    key128(&[route.as_bytes()])
}

fn quiet_key(check: Check, route: &str, subject: &[u8]) -> u128 {
    key128(&[&[check as u8], route.as_bytes(), subject])
}

/// One check the event's token failed, with what it is judged against.
struct Failed {
    check: Check,
    /// The offending value (issuer, audience, algorithm), for the learned checks.
    value: Option<String>,
    /// What was expected, for the list checks.
    expected: Vec<String>,
    learned: bool,
    why: String,
}

impl TokenClaimsDetector {
    fn on(&self, c: Check) -> bool {
        self.p.checks.contains(&c)
    }

    /// Whether any issuer, audience or algorithm check runs.
    fn judges_routes(&self) -> bool {
        [Check::Issuer, Check::Audience, Check::Algorithm].iter().any(|c| self.on(*c))
    }

    /// The token's own faults.
    fn own_faults(&self, ev: &Event, t: &TokenClaims, out: &mut Vec<Failed>) {
        let fail = |check, why: String| Failed { check, value: None, expected: Vec::new(), learned: false, why };
        if self.on(Check::Unsigned) && t.is_unsigned() {
            out.push(fail(Check::Unsigned, "is unsigned (alg none)".into()));
        }
        match t.expires_at {
            Some(exp) if self.on(Check::Expired) && exp + self.p.clock_skew.0 < ev.ts => {
                out.push(fail(Check::Expired, format!("had expired {} before", human_duration(ev.ts - exp))));
            }
            Some(exp) if self.on(Check::Lifetime) && exp - ev.ts > self.p.max_lifetime.0 => out.push(fail(
                Check::Lifetime,
                format!(
                    "had {} of lifetime left (limit {})",
                    human_duration(exp - ev.ts),
                    human_duration(self.p.max_lifetime.0)
                ),
            )),
            None if self.on(Check::Lifetime) => out.push(fail(Check::Lifetime, "never expires (no exp)".into())),
            _ => {}
        }
    }

    /// Which issuers, audiences and algorithms the route accepts: learns them while the route
    /// is being learned, judges them after (or against the configured lists at once).
    fn route_faults(&mut self, ev: &Event, t: &TokenClaims, fp: [u8; 8], route: &str, out: &mut Vec<Failed>) {
        let (learn, min_tokens) = (self.p.learn.0, self.p.min_learn_tokens);
        let needs_learning = [
            (Check::Issuer, &self.p.issuers),
            (Check::Audience, &self.p.audiences),
            (Check::Algorithm, &self.p.algorithms),
        ]
        .iter()
        .any(|(c, list)| self.p.checks.contains(c) && list.is_empty());
        let issuer = t.issuer.as_deref().unwrap_or(ABSENT);
        let alg = t.alg.as_deref().unwrap_or(ABSENT);
        let mut learned: Option<&RouteLearned> = None;
        if needs_learning {
            let r = self.routes.entry(&route_key(route), ev.ts, || RouteLearned { first: ev.ts, ..Default::default() });
            if !r.learned {
                if r.tokens.len() < min_tokens && !r.tokens.contains(&fp) {
                    r.tokens.push(fp);
                }
                if ev.ts - r.first >= learn && r.tokens.len() >= min_tokens {
                    r.learned = true;
                    r.tokens = Vec::new();
                } else if !t.is_unsigned() {
                    // an unsigned token is never what a route accepts, learning or not
                    remember(&mut r.issuers, issuer);
                    remember(&mut r.algorithms, alg);
                    if t.audience.is_empty() {
                        remember(&mut r.audiences, ABSENT);
                    }
                    for a in &t.audience {
                        remember(&mut r.audiences, a);
                    }
                }
            }
            learned = Some(&*r).filter(|r| r.learned);
        }
        let shown = |v: &str| if v == ABSENT { "(none)".to_string() } else { v.to_string() };
        let mut judge =
            |check: Check, list: &[String], learned_set: Option<&Vec<String>>, values: &[&str], noun: &str| {
                if !self.p.checks.contains(&check) {
                    return;
                }
                let (expected, from_learning) = if !list.is_empty() {
                    (list, false)
                } else if let Some(s) = learned_set {
                    (s.as_slice(), true)
                } else {
                    return;
                };
                let ok = values.iter().any(|v| {
                    expected.iter().any(|e| if check == Check::Algorithm { e.eq_ignore_ascii_case(v) } else { e == v })
                });
                if ok || (from_learning && expected.len() >= MAX_LEARNED) {
                    return;
                }
                let value = values.first().copied().unwrap_or(ABSENT);
                let whose = if from_learning { "the route's tokens carried" } else { "configured" };
                out.push(Failed {
                    check,
                    value: Some(shown(value)),
                    expected: expected.iter().map(|e| shown(e)).collect(),
                    learned: from_learning,
                    why: format!(
                        "has {noun} {} ({whose}: {})",
                        shown(value),
                        expected.iter().map(|e| shown(e)).collect::<Vec<_>>().join(", ")
                    ),
                });
            };
        judge(Check::Issuer, &self.p.issuers, learned.map(|r| &r.issuers), &[issuer], "issuer");
        let auds: Vec<&str> =
            if t.audience.is_empty() { vec![ABSENT] } else { t.audience.iter().map(String::as_str).collect() };
        judge(Check::Audience, &self.p.audiences, learned.map(|r| &r.audiences), &auds, "audience");
        if !t.is_unsigned() {
            judge(Check::Algorithm, &self.p.algorithms, learned.map(|r| &r.algorithms), &[alg], "algorithm");
        }
    }
}

/// A 2xx answer: the gateway let the request through.
fn accepted(ev: &Event) -> bool {
    ev.status.is_some_and(|s| (200..300).contains(&s))
}

/// Which faults an event is judged for: the token's own (whole on the token shard) or the
/// route's (whole on the route shard). Without repartition, both.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Token,
    Route,
}

impl TokenClaimsDetector {
    fn judge(&mut self, ev: &Event, part: Part, out: &mut Vec<Finding>) {
        let (Some(t), Some(fp)) = (ev.claims.as_deref(), ev.token_fingerprint) else { return };
        if !accepted(ev) {
            return;
        }
        let route = ev.route.as_deref().unwrap_or_default();
        let mut failed = Vec::new();
        match part {
            Part::Token => self.own_faults(ev, t, &mut failed),
            Part::Route => self.route_faults(ev, t, fp.0, route, &mut failed),
        }
        if failed.is_empty() {
            return;
        }
        // The first fault that is not in its quiet period is the alert; the others its evidence.
        let mut primary = None;
        for (i, f) in failed.iter().enumerate() {
            let subject = match (&f.value, f.check.per_token()) {
                (Some(v), false) => v.as_bytes().to_vec(),
                _ => fp.0.to_vec(),
            };
            // a token's own fault is one story wherever it is used; a value is judged per route
            let key = quiet_key(f.check, if f.check.per_token() { "" } else { route }, &subject);
            let until = self.quiet.entry(&key, ev.ts, || Millis::MIN);
            if ev.ts >= *until {
                *until = if f.check.per_token() { Millis::MAX / 4 } else { ev.ts + self.p.learn.0 };
                primary.get_or_insert(i);
            }
        }
        let Some(i) = primary else { return };
        let f = &failed[i];
        let mut evidence = serde_json::Map::new();
        evidence.insert("check".into(), json!(f.check.as_str()));
        evidence.insert("checks".into(), json!(failed.iter().map(|f| f.check.as_str()).collect::<Vec<_>>()));
        evidence.insert("route".into(), json!(route));
        evidence.insert("status".into(), json!(ev.status));
        evidence.insert("alg".into(), json!(t.alg));
        evidence.insert("issuer".into(), json!(t.issuer));
        evidence.insert("audience".into(), json!(t.audience));
        evidence.insert("expires_at".into(), json!(t.expires_at.map(format_ts)));
        evidence.insert("issued_at".into(), json!(t.issued_at.map(format_ts)));
        if !f.expected.is_empty() {
            evidence.insert("expected".into(), json!(f.expected));
            evidence.insert("learned".into(), json!(f.learned));
        }
        let route_shown = if route.is_empty() { "a request without a route" } else { route };
        out.push(Finding {
            entity: Entity::new(EntityKind::Token, fp.to_hex()),
            within: (!f.check.per_token()).then(|| route.to_string()),
            client_id: ev.client_id.as_deref().map(str::to_string),
            client_id_source: ev.client_id_source,
            token_fingerprint: Some(fp),
            window_start: ev.ts,
            window_end: ev.ts,
            summary: format!(
                "token {fp} accepted on {route_shown} (status {}) {}",
                ev.status.unwrap_or_default(),
                f.why
            ),
            evidence,
        });
    }
}

impl Detector for TokenClaimsDetector {
    /// A token's own faults are whole on the token shard, a route's learning on the route shard.
    fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String> {
        if ev.claims.is_none() || ev.token_fingerprint.is_none() || !accepted(ev) {
            return None;
        }
        match shard {
            Shard::Token => ev.token_entity(),
            Shard::Route if self.judges_routes() => Some(ev.route.as_deref().unwrap_or_default().to_string()),
            _ => None,
        }
    }

    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        self.judge(ev, Part::Token, out);
        self.judge(ev, Part::Route, out);
    }

    fn on_shard_event(&mut self, ev: &Event, shard: Shard, out: &mut Vec<Finding>) {
        match shard {
            Shard::Token => self.judge(ev, Part::Token, out),
            Shard::Route => self.judge(ev, Part::Route, out),
            Shard::Source | Shard::ClientId | Shard::Group => {}
        }
    }

    fn on_watermark(&mut self, wm: Millis, _out: &mut Vec<Finding>) {
        self.quiet.sweep(wm);
    }

    fn stats(&self) -> StateStats {
        self.routes.stats() + self.quiet.stats()
    }

    /// A route: what its accepted tokens carried while it was learned (issuers, audiences,
    /// algorithms; `(none)` for an absent claim), and whether learning is done. A token: which
    /// of its own faults were already reported (each is reported once).
    fn describe(&self, entity: &Entity) -> Option<serde_json::Value> {
        match entity.kind {
            EntityKind::Route => {
                let r = self.routes.get(&route_key(&entity.id))?;
                fn shown(set: &[String]) -> Vec<&str> {
                    set.iter().map(|v| if v == ABSENT { "(none)" } else { v.as_str() }).collect()
                }
                let configured = |list: &[String], learned: &[String]| {
                    if list.is_empty() {
                        json!({"from": "learned", "values": shown(learned), "full": learned.len() >= MAX_LEARNED})
                    } else {
                        json!({"from": "configured", "values": list, "learned": shown(learned)})
                    }
                };
                Some(json!({
                    "learning_started_at": format_ts(r.first),
                    "learned": r.learned,
                    "learn_ms": self.p.learn.0,
                    "learn_until": format_ts(r.first + self.p.learn.0),
                    "tokens_seen_while_learning": if r.learned { None } else { Some(r.tokens.len()) },
                    "min_learn_tokens": self.p.min_learn_tokens,
                    "issuers": configured(&self.p.issuers, &r.issuers),
                    "audiences": configured(&self.p.audiences, &r.audiences),
                    "algorithms": configured(&self.p.algorithms, &r.algorithms),
                }))
            }
            EntityKind::Token => {
                let fp = Fingerprint::from_hex(&entity.id)?;
                let reported: Vec<&str> = all_checks()
                    .into_iter()
                    .filter(|c| c.per_token() && self.quiet.get(&quiet_key(*c, "", &fp.0)).is_some())
                    .map(Check::as_str)
                    .collect();
                (!reported.is_empty()).then(|| json!({ "reported_checks": reported }))
            }
            EntityKind::ClientId | EntityKind::SourceIp => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::{detector_from_toml, ev, run};
    use crate::event::Fingerprint;

    const H: Millis = 3_600_000;
    const ISS: &str = "https://auth.shop.example/";
    const AUD: &str = "https://api.shop.example";

    /// The claims of a well-behaved token issued at `iat`, valid for an hour.
    fn good(iat: Millis) -> TokenClaims {
        TokenClaims {
            alg: Some("RS256".into()),
            issuer: Some(ISS.into()),
            audience: vec![AUD.into()],
            expires_at: Some(iat + H),
            issued_at: Some(iat),
        }
    }

    /// A route's ordinary day: `clients` clients each renewing their token every hour and
    /// calling every `every` ms, for `hours`.
    fn day(clients: u8, hours: i64, every: Millis) -> Vec<Event> {
        let mut out = Vec::new();
        for c in 0..clients {
            let mut t = c as Millis * 997;
            while t < hours * H {
                let hour = t / H;
                out.push(
                    ev(t)
                        .token(c.wrapping_mul(31).wrapping_add(hour as u8))
                        .ip(&format!("198.51.100.{}", c + 1))
                        .client(&format!("app-{c}"))
                        .get("/v1/orders/17")
                        .claims(good(hour * H))
                        .build(),
                );
                t += every;
            }
        }
        out.sort_by_key(|e| e.ts);
        out
    }

    fn kinds(found: &[Finding]) -> Vec<&str> {
        found.iter().map(|f| f.evidence["check"].as_str().unwrap()).collect()
    }

    #[test]
    fn an_ordinary_day_of_many_clients_raises_nothing() {
        let mut d = detector_from_toml("token_claims", "");
        assert!(run(d.as_mut(), &day(30, 6, 20_000)).is_empty());
    }

    #[test]
    fn an_unsigned_token_is_found_once_however_often_it_is_used() {
        let mut d = detector_from_toml("token_claims", "");
        let forged = TokenClaims { alg: Some("none".into()), ..good(0) };
        let evs: Vec<Event> = (0..20)
            .map(|i| {
                let path = ["/v1/orders/17", "/v1/search", "/v1/payments/9"][i as usize % 3];
                ev(60_000 + i * 5_000).token(200).get(path).claims(forged.clone()).build()
            })
            .collect();
        let found = run(d.as_mut(), &evs);
        assert_eq!(kinds(&found), ["unsigned"], "{found:?}");
        assert_eq!(found[0].entity, Entity::new(EntityKind::Token, Fingerprint([200; 8]).to_hex()));
        assert!(found[0].summary.contains("alg none"), "{}", found[0].summary);
        assert_eq!(found[0].within, None, "one story for the token, whichever routes it is used on");
    }

    #[test]
    fn refused_tokens_are_the_gateway_doing_its_job() {
        let mut d = detector_from_toml("token_claims", "");
        let forged = TokenClaims { alg: Some("none".into()), expires_at: Some(0), ..good(0) };
        let evs: Vec<Event> = [401, 403, 500]
            .iter()
            .map(|&s| ev(10 * H).token(9).get("/v1/orders/17").status(s).claims(forged.clone()).build())
            .collect();
        assert!(run(d.as_mut(), &evs).is_empty());
    }

    #[test]
    fn expiry_is_judged_with_the_clock_skew() {
        let mut d = detector_from_toml("token_claims", "");
        let evs = [
            // four minutes past exp: within the 5m skew
            ev(H + 4 * 60_000).token(1).get("/v1/a").claims(good(0)).build(),
            // two hours past exp
            ev(3 * H).token(2).get("/v1/a").claims(good(0)).build(),
        ];
        let found = run(d.as_mut(), &evs);
        assert_eq!(kinds(&found), ["expired"]);
        assert!(found[0].summary.contains("expired 2h before"), "{}", found[0].summary);
        assert_eq!(found[0].token_fingerprint, Some(Fingerprint([2; 8])));
    }

    #[test]
    fn a_token_living_too_long_or_forever_is_found() {
        let mut d = detector_from_toml("token_claims", r#"max_lifetime = "12h""#);
        let evs = [
            ev(0).token(1).get("/v1/a").claims(TokenClaims { expires_at: Some(90 * 24 * H), ..good(0) }).build(),
            ev(1000).token(2).get("/v1/a").claims(TokenClaims { expires_at: None, ..good(0) }).build(),
            ev(2000).token(3).get("/v1/a").claims(TokenClaims { expires_at: Some(11 * H), ..good(0) }).build(),
        ];
        let found = run(d.as_mut(), &evs);
        assert_eq!(kinds(&found), ["lifetime", "lifetime"]);
        assert!(found[1].summary.contains("no exp"), "{}", found[1].summary);
        let off = detector_from_toml("token_claims", r#"checks = ["unsigned", "expired"]"#);
        let mut off = off;
        assert!(run(off.as_mut(), &evs).is_empty(), "lifetime not asked for");
    }

    #[test]
    fn an_issuer_the_route_never_accepted_is_found_after_learning() {
        let mut d = detector_from_toml("token_claims", "");
        let mut evs = day(25, 3, 30_000);
        let t = 2 * H + 600_000;
        let other = TokenClaims { issuer: Some("https://evil.example/".into()), ..good(2 * H) };
        // the same foreign issuer on three tokens: one story, one alert
        for (i, tok) in [150u8, 151, 152].iter().enumerate() {
            evs.push(ev(t + i as Millis * 1000).token(*tok).get("/v1/orders/17").claims(other.clone()).build());
        }
        // the same issuer on another route that never learned: learning there is not done
        evs.push(ev(t + 5000).token(153).get("/v1/admin/users").claims(other.clone()).build());
        evs.sort_by_key(|e| e.ts);
        let found = run(d.as_mut(), &evs);
        assert_eq!(kinds(&found), ["issuer"], "{found:?}");
        assert_eq!(found[0].evidence["expected"], json!([ISS]));
        assert_eq!(found[0].evidence["learned"], json!(true));
        assert_eq!(found[0].within.as_deref(), Some("GET /v1/orders/{id}"));
    }

    #[test]
    fn a_token_seen_while_the_route_learns_is_not_judged_by_what_it_learns() {
        // Nothing learned yet (10 minutes, 3 tokens): a second issuer is learned, not reported.
        let mut d = detector_from_toml("token_claims", "");
        let mut evs = day(3, 1, 60_000);
        evs.retain(|e| e.ts < 600_000);
        evs.push(
            ev(700_000)
                .token(99)
                .get("/v1/orders/17")
                .claims(TokenClaims { issuer: Some("https://partner-idp.example/".into()), ..good(0) })
                .build(),
        );
        assert!(run(d.as_mut(), &evs).is_empty());
    }

    #[test]
    fn algorithm_confusion_and_audience_are_found_against_configured_lists() {
        let mut d = detector_from_toml(
            "token_claims",
            &format!(
                r#"issuers = ["{ISS}"]
audiences = ["{AUD}", "https://admin.shop.example"]
algorithms = ["RS256", "ES256"]"#
            ),
        );
        let evs = [
            // judged at once: the lists need no learning
            ev(1000).token(1).get("/v1/a").claims(TokenClaims { alg: Some("HS256".into()), ..good(0) }).build(),
            ev(2000)
                .token(2)
                .get("/v1/a")
                .claims(TokenClaims { audience: vec!["https://other.example".into()], ..good(0) })
                .build(),
            // one of its audiences is accepted: passes
            ev(3000)
                .token(3)
                .get("/v1/a")
                .claims(TokenClaims { audience: vec!["x".into(), "https://admin.shop.example".into()], ..good(0) })
                .build(),
            ev(4000).token(4).get("/v1/a").claims(TokenClaims { alg: Some("es256".into()), ..good(0) }).build(),
        ];
        let found = run(d.as_mut(), &evs);
        assert_eq!(kinds(&found), ["algorithm", "audience"], "{found:?}");
        assert_eq!(found[0].evidence["alg"], json!("HS256"));
    }

    #[test]
    fn none_cannot_be_allowed_and_unknown_checks_are_refused() {
        let file = crate::detectors::testing::file_from_toml("token_claims", r#"algorithms = ["RS256", "none"]"#);
        let Err(e) = build(&file, Limits::default()) else { panic!("none allowed") };
        assert!(e[0].to_string().contains("params.algorithms"), "{e:?}");
        let file = crate::detectors::testing::file_from_toml("token_claims", r#"checks = ["signature"]"#);
        assert!(build(&file, Limits::default()).is_err());
    }

    #[test]
    fn an_issuer_holding_a_secret_reaches_the_alert_scrubbed() {
        // What the normalizer does to a token whose issuer carries a key: the alert shows the
        // scrubber's marker, never the key.
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let key = "AKIAIOSFODNN7EXAMPLE";
        let raw = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"none"}"#),
            b64(&format!(
                r#"{{"iss":"https://x.example/?k={key}","exp":4102444800,"sub":"u-{key}","client_id":"app {key}","jti":"{key}"}}"#
            ))
        );
        let n = crate::normalize::Normalizer::new(crate::normalize::Format::Generic, b"k");
        let line =
            format!(r#"{{"ts":"2026-01-01T00:00:00Z","path":"/v1/a","status":200,"authorization":"Bearer {raw}"}}"#);
        let e = n.normalize_record(line.as_bytes()).unwrap();
        // the claims that name the caller are scrubbed too: anybody can write them
        for v in [&e.client_id, &e.subject, &e.credential_id, &e.principal] {
            assert!(v.as_deref().is_none_or(|v| !v.contains(key)), "{v:?}");
        }
        assert!(e.client_id.as_deref().is_some_and(|c| c.starts_with("app ")), "{:?}", e.client_id);
        let mut d = detector_from_toml("token_claims", "");
        let found = run(d.as_mut(), &[e]);
        assert_eq!(kinds(&found), ["unsigned"]);
        let text = serde_json::to_string(&found[0].evidence).unwrap() + &found[0].summary;
        assert!(!text.contains(key), "{text}");
        assert!(text.contains("x.example"), "the issuer is still shown: {text}");
    }

    #[test]
    fn describe_shows_what_a_route_learned_and_what_a_token_was_reported_for() {
        use crate::detectors::testing::{describe_twice, feed};
        let mut d = detector_from_toml("token_claims", "");
        let mut evs = day(3, 1, 60_000);
        evs.retain(|e| e.ts < 600_000);
        evs.push(
            ev(610_000).token(150).get("/v1/orders/17").claims(TokenClaims { audience: vec![], ..good(0) }).build(),
        );
        let forged = TokenClaims { alg: Some("none".into()), ..good(0) };
        evs.push(ev(620_000).token(200).get("/v1/search").claims(forged).build());
        let found = feed(d.as_mut(), &evs);
        assert_eq!(kinds(&found), ["unsigned"]);
        let route = describe_twice(d.as_ref(), &Entity::new(EntityKind::Route, "GET /v1/orders/{id}")).expect("held");
        assert_eq!(route["learned"], json!(false));
        assert_eq!(route["learning_started_at"], json!("1970-01-01T00:00:00Z"));
        assert_eq!(route["learn_until"], json!("1970-01-01T01:00:00Z"));
        assert_eq!(route["tokens_seen_while_learning"], json!(4));
        assert_eq!(route["issuers"], json!({"from": "learned", "values": [ISS], "full": false}));
        assert_eq!(route["audiences"]["values"], json!([AUD, "(none)"]));
        assert_eq!(route["algorithms"]["values"], json!(["RS256"]));
        let token = Entity::new(EntityKind::Token, Fingerprint([200; 8]).to_hex());
        assert_eq!(describe_twice(d.as_ref(), &token), Some(json!({"reported_checks": ["unsigned"]})));
        for never in [
            Entity::new(EntityKind::Route, "GET /v1/never"),
            Entity::new(EntityKind::Token, Fingerprint([150; 8]).to_hex()),
            Entity::new(EntityKind::Token, "user:alice"),
        ] {
            assert_eq!(describe_twice(d.as_ref(), &never), None, "{never:?}");
        }
        // configured lists are what a route is judged against
        let mut d = detector_from_toml("token_claims", &format!("issuers = [\"{ISS}\"]"));
        feed(d.as_mut(), &evs);
        let route = describe_twice(d.as_ref(), &Entity::new(EntityKind::Route, "GET /v1/orders/{id}")).unwrap();
        assert_eq!(route["issuers"], json!({"from": "configured", "values": [ISS], "learned": [ISS]}));
    }

    #[test]
    fn shard_key_is_the_route_of_accepted_tokens_only() {
        let d = detector_from_toml("token_claims", "");
        let e = ev(0).token(1).get("/v1/orders/5").claims(good(0)).build();
        assert_eq!(d.shard_key(&e, Shard::Route).as_deref(), Some("GET /v1/orders/{id}"));
        assert_eq!(d.shard_key(&e, Shard::Token), Some(Fingerprint([1; 8]).to_hex()));
        assert_eq!(d.shard_key(&e, Shard::Source), None);
        let own_only = detector_from_toml("token_claims", r#"checks = ["unsigned", "expired"]"#);
        assert_eq!(own_only.shard_key(&e, Shard::Route), None, "no route is learned");
        let refused = ev(0).token(1).get("/v1/orders/5").status(401).claims(good(0)).build();
        assert_eq!(d.shard_key(&refused, Shard::Route), None);
        let opaque = ev(0).token(1).get("/v1/orders/5").build();
        assert_eq!(d.shard_key(&opaque, Shard::Route), None);
    }
}

//! Injected attacks, one [`Label`] each, spread over the span.
//!
//! Intensities follow what incident reports describe rather than what is easy to
//! catch: a brute force of 40–200 attempts over several minutes from one address;
//! credential stuffing from 40–90 residential addresses with a handful of tries
//! each; a replayed expired token 30–80 times from 1–3 hosts; a stolen token used
//! from 6–9 networks on other continents within minutes while its owner carries
//! on; a latency regression of ×2.7–3.4 on one route for 8–12 minutes; a token
//! without `admin` deleting users 5–12 times; another token probing 25–60 routes
//! outside its scopes.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::traffic::{
    ip, make_record, stream, ClientKind, LatencyEffect, Outcome, Population, Profile, Request, TokenUse, ROUTES,
    R_DELETE_USER, R_LIST_USERS, R_LOGIN, R_ORDER, R_PRODUCTS, R_TOKEN,
};
use super::{token, Label, RelatedEntity, SimConfig, SimRecord, SimToken};
use crate::event::{EntityKind, Millis};
use crate::scrub::Fingerprinter;

const MIN: Millis = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    BruteForce,
    CredentialStuffing,
    TokenReplay,
    StolenToken,
    LatencyRegression,
    ScopeEscalation,
    ScopeProbing,
    ObjectEnumeration,
    ForgedToken,
    ImpossibleTravel,
    Scraping,
}

const KINDS: [Kind; 7] = [
    Kind::BruteForce,
    Kind::StolenToken,
    Kind::CredentialStuffing,
    Kind::ScopeProbing,
    Kind::TokenReplay,
    Kind::LatencyRegression,
    Kind::ScopeEscalation,
];

/// Kinds injected only when `SimConfig::with` names them: the default set stays the seven
/// every figure and test was measured with (and each seed's plan with it).
const OPT_IN: [Kind; 4] = [Kind::ObjectEnumeration, Kind::ForgedToken, Kind::ImpossibleTravel, Kind::Scraping];

/// How long `volume_anomaly` learns a principal before judging it (`learn` of the shipped
/// `detectors/volume-anomaly.toml`), plus a bucket for its buckets' alignment: a scrape starts
/// this long after the token it uses was first seen.
const VOLUME_LEARN: Millis = 30 * MIN + 5 * MIN;

/// Names of the kinds `SimConfig::with` may name.
pub fn opt_in_names() -> Vec<&'static str> {
    OPT_IN.iter().map(|k| k.name()).collect()
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::BruteForce => "brute_force",
            Kind::CredentialStuffing => "credential_stuffing",
            Kind::TokenReplay => "token_replay",
            Kind::StolenToken => "stolen_token",
            Kind::LatencyRegression => "latency_regression",
            Kind::ScopeEscalation => "scope_escalation",
            Kind::ScopeProbing => "scope_probing",
            Kind::ObjectEnumeration => "object_enumeration",
            Kind::ForgedToken => "forged_token",
            Kind::ImpossibleTravel => "impossible_travel",
            Kind::Scraping => "scraping",
        }
    }

    /// Nominal duration range, ms.
    fn duration(self) -> (Millis, Millis) {
        match self {
            Kind::BruteForce => (4 * MIN, 9 * MIN),
            Kind::CredentialStuffing => (6 * MIN, 10 * MIN),
            Kind::TokenReplay => (4 * MIN, 8 * MIN),
            Kind::StolenToken => (3 * MIN, 6 * MIN),
            Kind::LatencyRegression => (8 * MIN, 12 * MIN),
            Kind::ScopeEscalation => (3 * MIN, 8 * MIN),
            Kind::ScopeProbing => (2 * MIN, 5 * MIN),
            Kind::ObjectEnumeration => (3 * MIN, 7 * MIN),
            Kind::ForgedToken => (2 * MIN, 6 * MIN),
            Kind::ImpossibleTravel => (10 * MIN, 20 * MIN),
            Kind::Scraping => (12 * MIN, 15 * MIN),
        }
    }
}

/// One planned attack.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub kind: Kind,
    pub start: Millis,
    pub duration: Millis,
    /// Victim or culprit client, where the attack has one.
    pub client: Option<usize>,
    /// Route of a latency regression or a scope escalation.
    pub route: u8,
    pub factor: f64,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub attacks: Vec<Planned>,
    /// Regressions the benign generator must apply.
    pub effects: Vec<LatencyEffect>,
}

/// Routes busy enough for a percentile to mean something.
const LATENCY_CANDIDATES: [u8; 4] = [1, 13, 14, 16];

/// Routes only `admin` may call; a scope escalation targets one each, since a learned
/// requirement that a second token breaks is dropped as wrongly learned (`unlearn_after_clients`).
const ADMIN_ROUTES: [u8; 2] = [R_DELETE_USER, R_LIST_USERS];

/// Chooses kinds, windows and targets. An attack that needs something learned first starts
/// after it: a latency regression after the latency baseline's warm-up, a scope escalation
/// after its route's requirement is learned (checked again against the traffic in [`inject`]).
pub(crate) fn plan(cfg: &SimConfig, pop: &Population) -> Plan {
    let mut rng = stream(cfg.seed, 2);
    let mut kinds: Vec<Kind> = Vec::new();
    for _ in 0..cfg.attack_rounds {
        let mut round: Vec<Kind> = KINDS
            .iter()
            .chain(OPT_IN.iter().filter(|k| cfg.with.contains(&k.name())))
            .copied()
            .filter(|k| !cfg.skip.contains(&k.name()))
            .collect();
        round.shuffle(&mut rng);
        kinds.extend(round);
    }
    // One escalation per admin route, one regression per busy route: a second on the same
    // route would be judged against what the first changed.
    let cap = |k: Kind| match k {
        Kind::ScopeEscalation => ADMIN_ROUTES.len(),
        Kind::LatencyRegression => LATENCY_CANDIDATES.len(),
        _ => usize::MAX,
    };
    let mut seen = [0usize; KINDS.len() + OPT_IN.len()];
    kinds.retain(|&k| {
        seen[k as usize] += 1;
        seen[k as usize] <= cap(k)
    });
    let total = kinds.len();
    if total == 0 {
        return Plan::default();
    }
    let warmup = (cfg.duration_ms * 15 / 100).min(8 * MIN);
    let tail = (cfg.duration_ms * 3 / 100).min(2 * MIN);
    let usable = cfg.duration_ms - warmup - tail;
    let slot = usable / total as Millis;
    // Move an attack that would start before what it needs is learned to a later slot,
    // swapping with one that can start earlier.
    let slot_at = |i: usize| warmup + slot * i as Millis;
    let earliest = |k: Kind| match k {
        Kind::LatencyRegression => cfg.learning.latency_warmup_ms + MIN,
        Kind::ScopeEscalation => cfg.learning.scope_learn_ms + 2 * MIN,
        _ => 0,
    };
    for i in 0..total {
        if earliest(kinds[i]) > slot_at(i) {
            let need = earliest(kinds[i]);
            if let Some(j) = (i + 1..total).find(|&j| slot_at(j) >= need && earliest(kinds[j]) <= slot_at(i)) {
                kinds.swap(i, j);
            }
        }
    }

    let mut used_clients: HashSet<usize> = HashSet::new();
    let partners: Vec<usize> =
        pop.clients.iter().filter(|c| matches!(c.kind, ClientKind::Partner(_))).map(|c| c.idx).collect();
    let mut pick_partner = |rng: &mut SmallRng, want: &dyn Fn(usize) -> bool| -> usize {
        let free: Vec<usize> = partners.iter().copied().filter(|i| !used_clients.contains(i)).collect();
        let good: Vec<usize> = free.iter().copied().filter(|i| want(*i)).collect();
        let pool = if good.is_empty() {
            if free.is_empty() {
                partners.clone()
            } else {
                free
            }
        } else {
            good
        };
        let c = pool[rng.gen_range(0..pool.len())];
        used_clients.insert(c);
        c
    };

    let mut out = Plan::default();
    let mut admin_routes = ADMIN_ROUTES.iter().copied();
    for (i, kind) in kinds.into_iter().enumerate() {
        let (lo, hi) = kind.duration();
        // A dense plan shortens attacks to their slots, except a regression: a route slow for
        // less than its nominal minimum is not what the kind stands for.
        let floor = if matches!(kind, Kind::LatencyRegression | Kind::Scraping) { lo } else { 90_000 };
        let max_len = (slot * 16 / 10).max(2 * MIN);
        let mut duration = rng.gen_range(lo..=hi).min(max_len).max(floor);
        let start = cfg.start + warmup + slot * i as Millis + rng.gen_range(0..=slot * 3 / 10);
        duration = duration.min(cfg.end() - 30_000 - start);
        if duration < floor {
            continue;
        }
        let mut p = Planned { kind, start, duration, client: None, route: 0, factor: 1.0 };
        match kind {
            Kind::StolenToken => {
                // a busy integration, so its owner keeps calling throughout
                let median = {
                    let mut r: Vec<f64> = partners.iter().map(|&i| pop.clients[i].rate).collect();
                    r.sort_by(f64::total_cmp);
                    r.get(r.len() / 2).copied().unwrap_or(0.0)
                };
                p.client = Some(pick_partner(&mut rng, &|i| pop.clients[i].rate >= median.max(0.08)));
            }
            Kind::ScopeEscalation => {
                p.route = admin_routes.next().expect("escalations capped at the admin routes");
                p.client = Some(pick_partner(&mut rng, &|i| {
                    pop.clients[i].kind == ClientKind::Partner(Profile::Crm)
                        && !pop.clients[i].scopes.contains(&"admin")
                }));
            }
            Kind::ScopeProbing => {
                p.client = Some(pick_partner(&mut rng, &|i| {
                    matches!(pop.clients[i].kind, ClientKind::Partner(Profile::CatalogOnly | Profile::Marketplace))
                }));
            }
            Kind::LatencyRegression => {
                let free: Vec<u8> =
                    LATENCY_CANDIDATES.iter().copied().filter(|r| !out.effects.iter().any(|e| e.route == *r)).collect();
                p.route = free[rng.gen_range(0..free.len())];
                p.factor = rng.gen_range(2.7..3.4);
                out.effects.push(LatencyEffect { route: p.route, start, end: start + duration, factor: p.factor });
            }
            Kind::ObjectEnumeration => {
                p.client = Some(pick_partner(&mut rng, &|i| pop.clients[i].scopes.contains(&"orders:read")));
            }
            Kind::ForgedToken => p.client = Some(pick_partner(&mut rng, &|_| true)),
            Kind::Scraping => {
                // a partner that reads the catalog, holding one token long enough for it to be
                // learned and then scraped with: its first (from the start) or its second (from
                // its first refresh to the end); [`inject`] places the scrape in it
                let need = VOLUME_LEARN + lo + 2 * FIT_MARGIN;
                p.client = Some(pick_partner(&mut rng, &|i| {
                    let c = &pop.clients[i];
                    let first = super::TOKEN_TTL_MS - c.token_age_ms - 5 * MIN;
                    let second = cfg.duration_ms - 30_000 - (super::TOKEN_TTL_MS - c.token_age_ms);
                    c.scopes.contains(&"catalog:read") && (first >= need || second >= need)
                }));
            }
            Kind::ImpossibleTravel => {
                // a partner whose servers sit in one region, so that the two far places make
                // three: within what token_reuse tolerates
                p.client = Some(pick_partner(&mut rng, &|i| {
                    let ips = partner_ips(&pop.clients[i]);
                    ips.iter().all(|x| x.octets()[..2] == ips[0].octets()[..2])
                }));
            }
            Kind::TokenReplay | Kind::BruteForce | Kind::CredentialStuffing => {}
        }
        out.attacks.push(p);
    }
    out
}

/// Hosting ranges attackers rent from.
const VPS: [(u8, u8); 6] = [(45, 155), (185, 220), (193, 142), (91, 92), (194, 26), (80, 94)];
/// Far-apart networks (different continents) a stolen token is tried from.
const FAR: [(u8, u8); 12] = [
    (5, 188),
    (41, 203),
    (103, 21),
    (177, 54),
    (185, 107),
    (201, 141),
    (223, 104),
    (36, 89),
    (197, 210),
    (110, 170),
    (89, 248),
    (181, 49),
];
/// Residential first octets a stuffing botnet's proxies come from.
const RESIDENTIAL: [u8; 24] =
    [24, 67, 73, 76, 79, 82, 86, 90, 95, 109, 151, 187, 189, 190, 200, 186, 105, 112, 115, 118, 122, 125, 14, 27];
const ATTACK_UA: [&str; 5] =
    ["python-requests/2.31.0", "curl/8.5.0", "Go-http-client/1.1", "PostmanRuntime/7.39.0", "okhttp/3.14.9"];
const BROWSER_UA: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
];

/// Attacker addresses, never inside a benign /24 and never reused.
struct Addresses<'a> {
    benign: &'a HashSet<[u8; 3]>,
    used: HashSet<[u8; 3]>,
}

impl Addresses<'_> {
    fn fresh(&mut self, rng: &mut SmallRng, a: u8, b: Option<u8>) -> Ipv4Addr {
        loop {
            let b = b.unwrap_or_else(|| rng.gen_range(1..=254));
            let x = ip(a, b, rng.gen_range(0..=255), rng.gen_range(2..=254));
            let o = x.octets();
            let net = [o[0], o[1], o[2]];
            if !self.benign.contains(&net) && self.used.insert(net) {
                return x;
            }
        }
    }
}

/// `n` event times spread over `[start, start + duration]` with jitter, sorted.
fn spread(rng: &mut SmallRng, start: Millis, duration: Millis, n: usize) -> Vec<Millis> {
    let gap = duration as f64 / n.max(1) as f64;
    let mut v: Vec<Millis> = (0..n)
        .map(|k| start + (gap * (k as f64 + rng.gen_range(0.1..0.9))) as Millis)
        .map(|t| t.min(start + duration))
        .collect();
    v.sort_unstable();
    v
}

/// The token a client held over a period, and the period in which it was valid and
/// still the client's current one.
fn held_tokens(history: &[TokenUse], cfg: &SimConfig) -> Vec<(Arc<SimToken>, Millis, Millis)> {
    let mut out = Vec::new();
    for (i, u) in history.iter().enumerate() {
        let from = u.token.issued_at.max(cfg.start).max(u.first_use - 30_000);
        let mut to = u.token.expires_at.min(cfg.end());
        if let Some(next) = history.get(i + 1) {
            to = to.min(next.first_use);
        }
        if to > from {
            out.push((u.token.clone(), from, to));
        }
    }
    out
}

/// How far inside a token's validity an attack using it stays.
const FIT_MARGIN: Millis = 20_000;

/// When `scope_misuse` first judges a call to `route` by what it learned: once two benign
/// successful calls taught it (`learn_min_calls`) and `learn_for` has passed since the first.
/// `None` if that never happens.
fn learned_at(records: &[SimRecord], route: u8, learn_for: Millis) -> Option<Millis> {
    let mut calls: Vec<Millis> =
        records.iter().filter(|r| r.route_idx == route && r.attack.is_none() && r.status < 400).map(|r| r.ts).collect();
    calls.sort_unstable();
    Some((*calls.get(1)?).max(calls[0] + learn_for))
}

/// Fits `[start, start + duration]` inside the validity of one held token: the one
/// overlapping the window most; shifts (and if needed shortens) the window into it.
fn fit(
    held: &[(Arc<SimToken>, Millis, Millis)],
    start: Millis,
    duration: Millis,
) -> Option<(Arc<SimToken>, Millis, Millis)> {
    let margin = FIT_MARGIN;
    let overlap = |lo: Millis, hi: Millis| (hi.min(start + duration) - lo.max(start)).max(0);
    let (tok, lo, hi) = held
        .iter()
        .filter(|(_, lo, hi)| hi - lo - 2 * margin >= 90_000)
        .max_by_key(|(_, lo, hi)| (overlap(*lo, *hi), *lo))?;
    let d = duration.min(hi - lo - 2 * margin);
    let s = start.clamp(lo + margin, hi - margin - d);
    Some((tok.clone(), s, d))
}

/// Generates the attack traffic of the plan and returns one label per attack, in plan order.
pub(crate) fn inject(
    cfg: &SimConfig,
    pop: &Population,
    plan: &Plan,
    history: &[Vec<TokenUse>],
    fp: &Fingerprinter,
    out: &mut Vec<SimRecord>,
) -> Vec<Label> {
    let mut addrs = Addresses { benign: &pop.benign_nets, used: HashSet::new() };
    let mut labels = Vec::with_capacity(plan.attacks.len());
    let no_effects: &[LatencyEffect] = &[];
    // plan index -> label index (an attack no token fits is skipped)
    let mut label_of: Vec<Option<u16>> = vec![None; plan.attacks.len()];
    for (ai, p) in plan.attacks.iter().enumerate() {
        let mut rng = stream(cfg.seed, 10_000 + ai as u64);
        let tag = Some(ai as u16);
        let first = out.len();
        let mut label = match p.kind {
            Kind::BruteForce => {
                let (a, b) = VPS[rng.gen_range(0..VPS.len())];
                let attacker = addrs.fresh(&mut rng, a, Some(b));
                let route = if rng.gen_bool(0.5) { R_TOKEN } else { R_LOGIN };
                let n = rng.gen_range(40..=200usize);
                let ua: Arc<str> = Arc::from(ATTACK_UA[rng.gen_range(0..ATTACK_UA.len())]);
                for ts in spread(&mut rng, p.start, p.duration, n) {
                    let rec = make_record(
                        &mut rng,
                        pop,
                        cfg,
                        no_effects,
                        Request {
                            ts,
                            route,
                            token: None,
                            consumer: None,
                            ip: attacker,
                            // a spoofed forwarding header, to be ignored
                            inner_xff: Some(Ipv4Addr::new(127, 0, 0, 1)),
                            user_agent: &ua,
                            outcome: Outcome::Upstream(401),
                            id_base: 0,
                            attack: tag,
                        },
                    );
                    out.push(rec);
                }
                Label {
                    attack: p.kind.name(),
                    detector: "auth_failure_spike",
                    entity_kind: EntityKind::SourceIp,
                    entity_id: attacker.to_string(),
                    start: 0,
                    end: 0,
                    description: format!(
                        "brute force: {n} failed {} from {attacker} over {:.1} min",
                        ROUTES[route as usize].route,
                        p.duration as f64 / 60_000.0
                    ),
                    related: vec![RelatedEntity {
                        detector: "auth_failure_spike",
                        entity_kind: EntityKind::Route,
                        entity_id: ROUTES[route as usize].route.to_string(),
                    }],
                }
            }
            Kind::CredentialStuffing => {
                let k = rng.gen_range(40..=90usize);
                let mut attempts = 0;
                let mut hits = 0;
                for _ in 0..k {
                    let a = RESIDENTIAL[rng.gen_range(0..RESIDENTIAL.len())];
                    let bot = addrs.fresh(&mut rng, a, None);
                    let ua: Arc<str> = Arc::from(BROWSER_UA[rng.gen_range(0..BROWSER_UA.len())]);
                    let tries = rng.gen_range(2..=6usize);
                    let mut times: Vec<Millis> = (0..tries).map(|_| p.start + rng.gen_range(0..=p.duration)).collect();
                    times.sort_unstable();
                    for ts in times {
                        let ok = rng.gen_bool(0.03);
                        hits += ok as usize;
                        attempts += 1;
                        out.push(make_record(
                            &mut rng,
                            pop,
                            cfg,
                            no_effects,
                            Request {
                                ts,
                                route: R_LOGIN,
                                token: None,
                                consumer: None,
                                ip: bot,
                                inner_xff: None,
                                user_agent: &ua,
                                outcome: Outcome::Upstream(if ok { 200 } else { 401 }),
                                id_base: 0,
                                attack: tag,
                            },
                        ));
                    }
                }
                Label {
                    attack: p.kind.name(),
                    detector: "auth_failure_spike",
                    entity_kind: EntityKind::Route,
                    entity_id: ROUTES[R_LOGIN as usize].route.to_string(),
                    start: 0,
                    end: 0,
                    description: format!(
                        "credential stuffing: {attempts} logins from {k} residential addresses ({hits} succeeded) over {:.1} min",
                        p.duration as f64 / 60_000.0
                    ),
                    related: vec![],
                }
            }
            Kind::TokenReplay => {
                // A token that expired (or was revoked at rotation) at least a minute before.
                let expired: Vec<(usize, &Arc<SimToken>)> = history
                    .iter()
                    .enumerate()
                    .flat_map(|(ci, h)| h.iter().map(move |u| (ci, &u.token)))
                    .filter(|(ci, t)| t.expires_at < p.start - MIN && pop.clients[*ci].kind != ClientKind::Batch)
                    .collect();
                let (ci, tok) = if expired.is_empty() {
                    // captured from an old log: issued two hours before the span
                    let ci = rng.gen_range(2..pop.clients.len());
                    let c = &pop.clients[ci];
                    (
                        ci,
                        token::mint(
                            &mut rng,
                            fp,
                            &c.client_id,
                            &c.subject,
                            &c.scopes,
                            cfg.start - 2 * super::TOKEN_TTL_MS,
                        ),
                    )
                } else {
                    let (ci, t) = expired[rng.gen_range(0..expired.len())];
                    (ci, t.clone())
                };
                let c = &pop.clients[ci];
                let hosts: Vec<Ipv4Addr> = (0..rng.gen_range(1..=3))
                    .map(|_| {
                        let (a, b) = VPS[rng.gen_range(0..VPS.len())];
                        addrs.fresh(&mut rng, a, Some(b))
                    })
                    .collect();
                let ua: Arc<str> = Arc::from(ATTACK_UA[rng.gen_range(0..ATTACK_UA.len())]);
                let n = rng.gen_range(30..=80usize);
                for ts in spread(&mut rng, p.start, p.duration, n) {
                    let route = pick(&mut rng, c);
                    let host = hosts[rng.gen_range(0..hosts.len())];
                    out.push(make_record(
                        &mut rng,
                        pop,
                        cfg,
                        no_effects,
                        Request {
                            ts,
                            route,
                            token: Some(&tok),
                            consumer: Some(&c.consumer),
                            ip: host,
                            inner_xff: None,
                            user_agent: &ua,
                            outcome: Outcome::GatewayUnauthorized,
                            id_base: c.id_base,
                            attack: tag,
                        },
                    ));
                }
                let mut related: Vec<RelatedEntity> = hosts
                    .iter()
                    .map(|h| RelatedEntity {
                        detector: "auth_failure_spike",
                        entity_kind: EntityKind::SourceIp,
                        entity_id: h.to_string(),
                    })
                    .collect();
                related.push(RelatedEntity {
                    detector: "auth_failure_spike",
                    entity_kind: EntityKind::ClientId,
                    entity_id: c.client_id.to_string(),
                });
                Label {
                    attack: p.kind.name(),
                    detector: "auth_failure_spike",
                    entity_kind: EntityKind::Token,
                    entity_id: tok.fingerprint.to_hex(),
                    start: 0,
                    end: 0,
                    description: format!(
                        "replay of {}'s token expired {} min earlier: {n} rejected calls from {} host(s) over {:.1} min",
                        c.client_id,
                        (p.start - tok.expires_at) / MIN,
                        hosts.len(),
                        p.duration as f64 / 60_000.0
                    ),
                    related,
                }
            }
            Kind::StolenToken => {
                let c = &pop.clients[p.client.expect("planned with a victim")];
                let held = held_tokens(&history[c.idx], cfg);
                let Some((tok, start, duration)) = fit(&held, p.start, p.duration) else {
                    continue;
                };
                let m = rng.gen_range(6..=9usize);
                let mut nets = FAR.to_vec();
                nets.shuffle(&mut rng);
                let mut requests = 0;
                let mut places = Vec::new();
                for &(a, b) in nets.iter().take(m) {
                    let thief = addrs.fresh(&mut rng, a, Some(b));
                    places.push(thief.to_string());
                    let ua: Arc<str> = Arc::from(ATTACK_UA[rng.gen_range(0..ATTACK_UA.len())]);
                    let from = start + rng.gen_range(0..=duration * 6 / 10);
                    let span = rng.gen_range(30_000..=(start + duration - from).max(30_001));
                    let n = rng.gen_range(3..=10usize);
                    for ts in spread(&mut rng, from, span.min(start + duration - from), n) {
                        let route = pick_read(&mut rng, c);
                        let id_base = rng.gen_range(100_000..900_000);
                        requests += 1;
                        out.push(make_record(
                            &mut rng,
                            pop,
                            cfg,
                            no_effects,
                            Request {
                                ts,
                                route,
                                token: Some(&tok),
                                consumer: Some(&c.consumer),
                                ip: thief,
                                inner_xff: None,
                                user_agent: &ua,
                                outcome: Outcome::Normal { rate_limited: 0.0 },
                                id_base,
                                attack: tag,
                            },
                        ));
                    }
                }
                Label {
                    attack: p.kind.name(),
                    detector: "token_reuse",
                    entity_kind: EntityKind::Token,
                    entity_id: tok.fingerprint.to_hex(),
                    start: 0,
                    end: 0,
                    description: format!(
                        "stolen token of {}: {requests} calls from {m} networks on other continents ({}) in {:.1} min while the owner keeps using it",
                        c.client_id,
                        places.join(", "),
                        duration as f64 / 60_000.0
                    ),
                    related: client_related("token_reuse", c),
                }
            }
            Kind::LatencyRegression => {
                let r = &ROUTES[p.route as usize];
                labels.push(Label {
                    attack: p.kind.name(),
                    detector: "latency_anomaly",
                    entity_kind: EntityKind::Route,
                    entity_id: r.route.to_string(),
                    start: p.start,
                    end: p.start + p.duration,
                    description: format!(
                        "latency regression on {} ({}): upstream latency ×{:.1} for {:.1} min",
                        r.route,
                        r.upstream,
                        p.factor,
                        p.duration as f64 / 60_000.0
                    ),
                    related: vec![],
                });
                label_of[ai] = Some(labels.len() as u16 - 1);
                continue;
            }
            Kind::ObjectEnumeration => {
                // A partner's own token walking other customers' orders in sequence: most are
                // not found for it (404), a few of its own answer.
                let c = &pop.clients[p.client.expect("planned with a culprit")];
                let held: Vec<_> = held_tokens(&history[c.idx], cfg)
                    .into_iter()
                    .map(|(t, lo, hi)| (t, lo, hi.min(cfg.end() - 30_000)))
                    .collect();
                let Some((tok, start, duration)) = fit(&held, p.start, p.duration) else {
                    continue;
                };
                let ips = partner_ips(c);
                let n = rng.gen_range(50..=90usize);
                let first_id = rng.gen_range(100_000..900_000u64);
                for (k, ts) in spread(&mut rng, start, duration, n).into_iter().enumerate() {
                    let status = if rng.gen_bool(0.1) { 200 } else { 404 };
                    let from = ips[rng.gen_range(0..ips.len())];
                    let mut rec = make_record(
                        &mut rng,
                        pop,
                        cfg,
                        no_effects,
                        Request {
                            ts,
                            route: R_ORDER,
                            token: Some(&tok),
                            consumer: Some(&c.consumer),
                            ip: from,
                            inner_xff: None,
                            user_agent: &c.user_agent,
                            outcome: Outcome::Upstream(status),
                            id_base: first_id,
                            attack: tag,
                        },
                    );
                    rec.path = format!("/v1/orders/{}", first_id + k as u64);
                    out.push(rec);
                }
                let mut related = client_related("object_enumeration", c);
                for x in &ips {
                    related.push(RelatedEntity {
                        detector: "object_enumeration",
                        entity_kind: EntityKind::SourceIp,
                        entity_id: x.to_string(),
                    });
                }
                Label {
                    attack: p.kind.name(),
                    detector: "object_enumeration",
                    entity_kind: EntityKind::Token,
                    entity_id: tok.fingerprint.to_hex(),
                    start: 0,
                    end: 0,
                    description: format!(
                        "object enumeration: {} walked {n} order ids in sequence from {first_id}, mostly not its own (404), over {:.1} min",
                        c.client_id,
                        duration as f64 / 60_000.0
                    ),
                    related,
                }
            }
            Kind::ForgedToken => {
                // A partner's claims copied into an unsigned token (`alg: none`) and sent from a
                // rented server to routes whose gateway plugin does not check signatures: every
                // call is answered.
                let c = &pop.clients[p.client.expect("planned with a culprit")];
                let Some((like, ..)) = held_tokens(&history[c.idx], cfg).into_iter().next() else {
                    continue;
                };
                let tok = token::forge_unsigned(&mut rng, fp, &like, p.start, super::TOKEN_TTL_MS);
                let (a, b) = VPS[rng.gen_range(0..VPS.len())];
                let attacker = addrs.fresh(&mut rng, a, Some(b));
                let ua: Arc<str> = Arc::from(ATTACK_UA[rng.gen_range(0..ATTACK_UA.len())]);
                let n = rng.gen_range(6..=15usize);
                for ts in spread(&mut rng, p.start, p.duration, n) {
                    let route = pick_read(&mut rng, c);
                    let id_base = rng.gen_range(100_000..900_000);
                    out.push(make_record(
                        &mut rng,
                        pop,
                        cfg,
                        no_effects,
                        Request {
                            ts,
                            route,
                            token: Some(&tok),
                            consumer: None,
                            ip: attacker,
                            inner_xff: None,
                            user_agent: &ua,
                            outcome: Outcome::Upstream(ROUTES[route as usize].ok),
                            id_base,
                            attack: tag,
                        },
                    ));
                }
                Label {
                    attack: p.kind.name(),
                    detector: "token_claims",
                    entity_kind: EntityKind::Token,
                    entity_id: tok.fingerprint.to_hex(),
                    start: 0,
                    end: 0,
                    description: format!(
                        "forged token: {}'s claims under alg none, accepted {n} times from {attacker} over {:.1} min",
                        c.client_id,
                        p.duration as f64 / 60_000.0
                    ),
                    related: client_related("token_claims", c),
                }
            }
            Kind::Scraping => {
                // A partner's own token suddenly pulling the catalog page after page, from its
                // own servers, at 20-30 times its usual rate (at least 3 a second), once the
                // token has been watched long enough to have a usual rate.
                let c = &pop.clients[p.client.expect("planned with a culprit")];
                let held: Vec<_> = held_tokens(&history[c.idx], cfg)
                    .into_iter()
                    .map(|(t, lo, hi)| (t, lo + VOLUME_LEARN, hi.min(cfg.end() - 30_000)))
                    .filter(|(_, lo, hi)| hi - lo - 2 * FIT_MARGIN >= p.duration)
                    .collect();
                let Some((tok, start, duration)) = fit(&held, p.start, p.duration) else {
                    continue;
                };
                let ips = partner_ips(c);
                let rate = (c.rate * rng.gen_range(20.0..30.0)).max(rng.gen_range(3.0..4.0));
                let n = (rate * duration as f64 / 1000.0) as usize;
                for (k, ts) in spread(&mut rng, start, duration, n).into_iter().enumerate() {
                    let from = ips[rng.gen_range(0..ips.len())];
                    let mut rec = make_record(
                        &mut rng,
                        pop,
                        cfg,
                        no_effects,
                        Request {
                            ts,
                            route: R_PRODUCTS,
                            token: Some(&tok),
                            consumer: Some(&c.consumer),
                            ip: from,
                            inner_xff: None,
                            user_agent: &c.user_agent,
                            outcome: Outcome::Normal { rate_limited: 0.0 },
                            id_base: c.id_base,
                            attack: tag,
                        },
                    );
                    rec.query = Some(format!("page={}&per_page=100", k + 1));
                    out.push(rec);
                }
                Label {
                    attack: p.kind.name(),
                    detector: "volume_anomaly",
                    entity_kind: EntityKind::Token,
                    entity_id: tok.fingerprint.to_hex(),
                    start: 0,
                    end: 0,
                    description: format!(
                        "scraping: {} (usually {:.2} calls a second) pulled {n} catalog pages at {rate:.1} a second over {:.1} min",
                        c.client_id,
                        c.rate,
                        duration as f64 / 60_000.0
                    ),
                    related: client_related("volume_anomaly", c),
                }
            }
            Kind::ImpossibleTravel => {
                // A partner's token called from an office in London, then, minutes later, from
                // Changchun: the addresses MaxMind's test databases place there (and GeoLite2
                // too), so a test can judge them with `tests/data/geoip`.
                let c = &pop.clients[p.client.expect("planned with a culprit")];
                let held: Vec<_> = held_tokens(&history[c.idx], cfg)
                    .into_iter()
                    .map(|(t, lo, hi)| (t, lo, hi.min(cfg.end() - 30_000)))
                    .collect();
                let Some((tok, start, duration)) = fit(&held, p.start, p.duration) else {
                    continue;
                };
                let places: [(Ipv4Addr, &str); 2] =
                    [(Ipv4Addr::new(81, 2, 69, 142), "London, GB"), (Ipv4Addr::new(175, 16, 199, 7), "Changchun, CN")];
                let ua: Arc<str> = Arc::from(ATTACK_UA[rng.gen_range(0..ATTACK_UA.len())]);
                let half = duration / 2;
                let mut n = 0;
                for (k, (addr, _)) in places.iter().enumerate() {
                    let m = rng.gen_range(3..=6usize);
                    for ts in spread(&mut rng, start + half * k as Millis, half * 4 / 10, m) {
                        let route = pick_read(&mut rng, c);
                        let id_base = rng.gen_range(100_000..900_000);
                        n += 1;
                        out.push(make_record(
                            &mut rng,
                            pop,
                            cfg,
                            no_effects,
                            Request {
                                ts,
                                route,
                                token: Some(&tok),
                                consumer: Some(&c.consumer),
                                ip: *addr,
                                inner_xff: None,
                                user_agent: if k == 0 { &c.user_agent } else { &ua },
                                outcome: Outcome::Normal { rate_limited: 0.0 },
                                id_base,
                                attack: tag,
                            },
                        ));
                    }
                }
                let mut related = client_related("impossible_travel", c);
                // three regions in one window: at token_reuse's limit, and a fair alert if it fires
                related.push(RelatedEntity {
                    detector: "token_reuse",
                    entity_kind: EntityKind::Token,
                    entity_id: tok.fingerprint.to_hex(),
                });
                Label {
                    attack: p.kind.name(),
                    detector: "impossible_travel",
                    entity_kind: EntityKind::Token,
                    entity_id: tok.fingerprint.to_hex(),
                    start: 0,
                    end: 0,
                    description: format!(
                        "impossible travel: {}'s token called {n} times from {} ({}), then from {} ({}) {:.0} min later",
                        c.client_id,
                        places[0].0,
                        places[0].1,
                        places[1].0,
                        places[1].1,
                        half as f64 / 60_000.0
                    ),
                    related,
                }
            }
            Kind::ScopeEscalation | Kind::ScopeProbing => {
                let c = &pop.clients[p.client.expect("planned with a culprit")];
                let escalation = p.kind == Kind::ScopeEscalation;
                // an escalation starts once its route's requirement is learned from benign calls
                let not_before = if escalation {
                    match learned_at(out, p.route, cfg.learning.scope_learn_ms) {
                        Some(t) => t + MIN,
                        None => continue,
                    }
                } else {
                    cfg.start
                };
                let held: Vec<_> = held_tokens(&history[c.idx], cfg)
                    .into_iter()
                    .map(|(t, lo, hi)| (t, lo.max(not_before - FIT_MARGIN), hi.min(cfg.end() - 30_000)))
                    .collect();
                let Some((tok, start, duration)) = fit(&held, p.start.max(not_before), p.duration) else {
                    continue;
                };
                let ips = partner_ips(c);
                let n = if escalation { rng.gen_range(5..=12usize) } else { rng.gen_range(25..=60usize) };
                let outside: Vec<u8> = ROUTES
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.scope.is_some_and(|s| !tok.scopes.contains(&s)))
                    .map(|(i, _)| i as u8)
                    .collect();
                for ts in spread(&mut rng, start, duration, n) {
                    let (route, outcome) = if escalation {
                        (p.route, Outcome::Upstream(ROUTES[p.route as usize].ok))
                    } else {
                        (outside[rng.gen_range(0..outside.len())], Outcome::GatewayForbidden)
                    };
                    let from = ips[rng.gen_range(0..ips.len())];
                    let id_base = rng.gen_range(100_000..900_000);
                    out.push(make_record(
                        &mut rng,
                        pop,
                        cfg,
                        no_effects,
                        Request {
                            ts,
                            route,
                            token: Some(&tok),
                            consumer: Some(&c.consumer),
                            ip: from,
                            inner_xff: None,
                            user_agent: &c.user_agent,
                            outcome,
                            id_base,
                            attack: tag,
                        },
                    ));
                }
                let mut related = client_related("scope_misuse", c);
                let description = if escalation {
                    format!(
                        "scope escalation: {} (scopes {}) called {} {n} times, which needs admin, over {:.1} min",
                        c.client_id,
                        tok.scopes.join(" "),
                        ROUTES[p.route as usize].route,
                        duration as f64 / 60_000.0
                    )
                } else {
                    related.push(RelatedEntity {
                        detector: "auth_failure_spike",
                        entity_kind: EntityKind::Token,
                        entity_id: tok.fingerprint.to_hex(),
                    });
                    related.extend(client_related("auth_failure_spike", c));
                    for x in &ips {
                        related.push(RelatedEntity {
                            detector: "auth_failure_spike",
                            entity_kind: EntityKind::SourceIp,
                            entity_id: x.to_string(),
                        });
                    }
                    format!(
                        "scope probing: {} (scopes {}) got {n} 403s on routes outside its scopes over {:.1} min",
                        c.client_id,
                        tok.scopes.join(" "),
                        duration as f64 / 60_000.0
                    )
                };
                Label {
                    attack: p.kind.name(),
                    detector: "scope_misuse",
                    entity_kind: EntityKind::Token,
                    entity_id: tok.fingerprint.to_hex(),
                    start: 0,
                    end: 0,
                    description,
                    related,
                }
            }
        };
        let recs = &out[first..];
        label.start = recs.iter().map(|r| r.ts).min().expect("an attack makes requests");
        label.end = recs.iter().map(|r| r.ts).max().expect("an attack makes requests");
        labels.push(label);
        label_of[ai] = Some(labels.len() as u16 - 1);
    }
    for r in out.iter_mut() {
        if let Some(a) = r.attack {
            r.attack = label_of[a as usize];
        }
    }
    labels
}

/// The fixed addresses a partner integration calls from.
fn partner_ips(c: &super::traffic::Client) -> Vec<Ipv4Addr> {
    match &c.net {
        super::traffic::NetPlan::Fixed(v) => v.clone(),
        super::traffic::NetPlan::Mobile { .. } => unreachable!("partners sit on fixed addresses"),
    }
}

/// The client entity of a culprit or victim, as the JWT names it and as Kong's consumer does.
fn client_related(detector: &'static str, c: &super::traffic::Client) -> Vec<RelatedEntity> {
    vec![
        RelatedEntity { detector, entity_kind: EntityKind::ClientId, entity_id: c.client_id.to_string() },
        RelatedEntity { detector, entity_kind: EntityKind::ClientId, entity_id: c.consumer.id.clone() },
    ]
}

/// A route the client may call.
fn pick(rng: &mut SmallRng, c: &super::traffic::Client) -> u8 {
    let total = c.routes.last().map_or(0.0, |x| x.1);
    let x = rng.gen::<f64>() * total;
    c.routes[c.routes.partition_point(|(_, acc)| *acc <= x).min(c.routes.len() - 1)].0
}

/// A read route the client may call (what a thief does first: look around).
fn pick_read(rng: &mut SmallRng, c: &super::traffic::Client) -> u8 {
    for _ in 0..20 {
        let r = pick(rng, c);
        if ROUTES[r as usize].method == "GET" {
            return r;
        }
    }
    pick(rng, c)
}

//! Labelled gateway-traffic simulator: realistic benign traffic for a population
//! of API clients, injected credential-abuse attacks, and the ground truth of both.
//!
//! Everything is a pure function of [`SimConfig`]: the same seed gives the same
//! records, byte for byte, and nothing reads the clock. [`simulate`] returns the
//! records in *arrival* order (the order a log shipper would deliver them from
//! three gateway nodes), each with its event time, plus one [`Label`] per attack
//! naming the entity exactly as gatewatch reports it.
//!
//! Split by concern: [`traffic`] builds the population and its benign behaviour,
//! [`attacks`] plans and injects the attacks, [`render`] writes a record as one
//! gateway format would, and `token` mints the bearer tokens.

mod attacks;
pub mod render;
mod token;
mod traffic;

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::event::{format_ts, EntityKind, Fingerprint, Millis};
use crate::scrub::Fingerprinter;

pub use attacks::opt_in_names as opt_in_kinds;
pub use render::{render, render_envoy, render_generic, render_kong};

/// 2026-11-21T10:00:00Z: the default start of a simulation (a fixed instant, never the clock).
pub const DEFAULT_START: Millis = 1_795_255_200_000;

/// Upper bound on how far a record may arrive after a record with a later event
/// time: no record's event time is more than this below the largest event time
/// delivered before it.
pub const MAX_DISORDER_MS: Millis = 10_000;

/// How long a bearer token lives before the client must fetch a new one.
pub const TOKEN_TTL_MS: Millis = 3_600_000;

/// What to simulate. `Debug` never shows the fingerprint key.
#[derive(Clone)]
pub struct SimConfig {
    /// Seed of every random choice; the same seed gives the same output.
    pub seed: u64,
    /// Event time of the beginning of the simulated span.
    pub start: Millis,
    /// Length of the simulated span.
    pub duration_ms: Millis,
    /// Number of API clients (token holders): mobile installations, office staff,
    /// partner integrations, one heavy batch client and one multi-egress cloud client.
    pub clients: usize,
    /// Key of the token fingerprints in the labels (must match the key gatewatch runs with).
    pub fingerprint_key: Vec<u8>,
    /// Inject attacks (and label them).
    pub attacks: bool,
    /// How many times each kind of attack is injected, spread over the span.
    pub attack_rounds: usize,
    /// Attack kinds (as [`Label::attack`] names them) not injected: a demo too short for a
    /// detector's warm-up leaves out what it could not find.
    pub skip: Vec<&'static str>,
    /// Attack kinds outside the default seven injected as well (`object_enumeration`, `forged_token`, `impossible_travel`,
    /// `scraping`: placed at least 35 minutes into the life of the token it uses, so that `volume_anomaly` has learned it);
    /// the default set, and so every seed's plan, is unchanged without them.
    pub with: Vec<&'static str>,
    /// How long the detectors watch before they can judge what some attacks need; those
    /// attacks are placed after it.
    pub learning: Learning,
}

/// Event time the detectors need before some attacks can be found at all. The defaults are
/// those of the shipped `detectors/` files; `gatewatch demo` reads its own files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learning {
    /// A latency regression is judged against a baseline: `warmup_buckets` × `bucket` of
    /// `latency_anomaly`. No regression starts before this much of the span has passed.
    pub latency_warmup_ms: Millis,
    /// A route's scope requirement is used once it has been watched this long
    /// (`learn_for` of `scope_misuse`) and called twice. No escalation on a route starts before.
    pub scope_learn_ms: Millis,
}

impl Default for Learning {
    fn default() -> Self {
        Learning { latency_warmup_ms: 30 * 60_000, scope_learn_ms: 4 * 60_000 }
    }
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("seed", &self.seed)
            .field("start", &self.start)
            .field("duration_ms", &self.duration_ms)
            .field("clients", &self.clients)
            .field("fingerprint_key", &"***")
            .field("attacks", &self.attacks)
            .field("attack_rounds", &self.attack_rounds)
            .field("skip", &self.skip)
            .field("with", &self.with)
            .field("learning", &self.learning)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 7,
            start: DEFAULT_START,
            duration_ms: 3_600_000,
            clients: 300,
            fingerprint_key: crate::config::DEV_FINGERPRINT_KEY.as_bytes().to_vec(),
            attacks: true,
            attack_rounds: 1,
            skip: Vec::new(),
            with: Vec::new(),
            learning: Learning::default(),
        }
    }
}

/// A configuration the simulator cannot honour.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("duration must be at least 1 minute (got {0} ms)")]
    TooShort(Millis),
    #[error("at least {min} clients are needed{why} (got {got})")]
    TooFewClients { min: usize, got: usize, why: &'static str },
    #[error("attacks need a span of at least 10 minutes (got {0} ms)")]
    TooShortForAttacks(Millis),
    #[error("attack_rounds must be between 1 and 20 (got {0})")]
    AttackRounds(usize),
    #[error("no optional attack kind `{0}` (one of: {1})")]
    UnknownKind(String, String),
}

impl SimConfig {
    pub fn validate(&self) -> Result<(), SimError> {
        if self.duration_ms < 60_000 {
            return Err(SimError::TooShort(self.duration_ms));
        }
        if self.clients < 6 {
            return Err(SimError::TooFewClients { min: 6, got: self.clients, why: "" });
        }
        if self.attacks {
            if self.duration_ms < 600_000 {
                return Err(SimError::TooShortForAttacks(self.duration_ms));
            }
            if self.clients < 20 {
                return Err(SimError::TooFewClients { min: 20, got: self.clients, why: " for attacks" });
            }
            if !(1..=20).contains(&self.attack_rounds) {
                return Err(SimError::AttackRounds(self.attack_rounds));
            }
            let known = attacks::opt_in_names();
            if let Some(k) = self.with.iter().find(|k| !known.contains(k)) {
                return Err(SimError::UnknownKind(k.to_string(), known.join(", ")));
            }
        }
        Ok(())
    }

    pub fn end(&self) -> Millis {
        self.start + self.duration_ms
    }
}

/// A bearer token as the identity provider issued it. `raw` is the secret:
/// it goes into rendered records (that is what gatewatch must scrub), never into labels.
#[derive(Debug, PartialEq, Eq)]
pub struct SimToken {
    /// The compact JWT (`header.payload.signature`), unsigned but well formed.
    pub raw: String,
    /// `Fingerprinter(key).fingerprint(raw)`: how gatewatch names this token.
    pub fingerprint: Fingerprint,
    pub client_id: Arc<str>,
    pub subject: Arc<str>,
    /// Granted scopes, sorted.
    pub scopes: Arc<[&'static str]>,
    pub jti: String,
    pub issued_at: Millis,
    pub expires_at: Millis,
}

/// The Kong consumer an application maps to (one per client id).
#[derive(Debug, PartialEq, Eq)]
pub struct KongConsumer {
    /// Kong's consumer id (a UUID).
    pub id: String,
    /// The consumer's username: the OAuth client id.
    pub username: Arc<str>,
    /// Kong's credential id (`authenticated_entity.id`).
    pub credential_id: String,
    /// Creation time, seconds (Kong's `created_at`).
    pub created_at: i64,
}

/// Ground truth of one request.
#[derive(Clone, Debug, PartialEq)]
pub struct SimRecord {
    /// Event time: when the gateway received the request.
    pub ts: Millis,
    /// When the record reached the log pipeline (records are emitted in this order).
    pub arrival: Millis,
    /// Which of the gateway nodes handled it (0-based).
    pub gateway_node: u8,
    /// The client id the request's credential claims (the token's `client_id`); `None` without a token.
    pub client_id: Option<Arc<str>>,
    /// The token's subject; `None` without a token.
    pub subject: Option<Arc<str>>,
    /// The bearer token sent in `Authorization`, if any.
    pub token: Option<Arc<SimToken>>,
    /// The Kong consumer, present when the gateway authenticated the request.
    pub consumer: Option<Arc<KongConsumer>>,
    /// The client's address as the gateway sees it (after the client's NAT).
    pub source_ip: Ipv4Addr,
    pub source_port: u16,
    /// `X-Forwarded-For` as the gateway logs it (already including `source_ip` last), if the header was set.
    pub xff: Option<String>,
    pub method: &'static str,
    pub host: &'static str,
    /// Path without query.
    pub path: String,
    /// Query string without `?`.
    pub query: Option<String>,
    /// Templated route as gatewatch reports it: `METHOD /v1/orders/{id}`.
    pub route: &'static str,
    pub status: u16,
    /// Total request latency at the gateway, ms.
    pub latency_ms: u32,
    /// Time spent waiting for the upstream, ms; `None` when no upstream answered.
    pub upstream_latency_ms: Option<u32>,
    /// The gateway's own processing time, ms.
    pub gateway_latency_ms: u32,
    /// Response bytes sent to the client.
    pub bytes_sent: u64,
    /// Request bytes received.
    pub bytes_received: u64,
    pub user_agent: Arc<str>,
    pub request_id: String,
    /// Upstream service name (Kong service, Envoy cluster `…|<name>.prod.svc…`).
    pub upstream: &'static str,
    /// The gateway answered itself (401 bad token, 403 scope policy, 429 rate limit):
    /// no upstream was selected or called.
    pub answered_by_gateway: bool,
    /// Index into [`Simulation::labels`] of the attack this request belongs to; `None` for benign traffic.
    pub attack: Option<u16>,
    pub(crate) route_idx: u8,
}

impl SimRecord {
    /// The path with its query string, as sent on the wire.
    pub fn uri(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.clone(),
        }
    }

    pub fn token_fingerprint(&self) -> Option<Fingerprint> {
        self.token.as_ref().map(|t| t.fingerprint)
    }

    /// Scopes granted to the token sent, sorted; empty without a token.
    pub fn scopes(&self) -> &[&'static str] {
        self.token.as_ref().map_or(&[], |t| &t.scopes[..])
    }
}

/// Another entity an alert about the same incident may legitimately name
/// (the attacker's IP of a token replay, the client of an abused token, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelatedEntity {
    pub detector: &'static str,
    pub entity_kind: EntityKind,
    pub entity_id: String,
}

/// One injected attack: what gatewatch should report, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Kind of attack (`brute_force`, `credential_stuffing`, `token_replay`,
    /// `stolen_token`, `latency_regression`, `scope_escalation`, `scope_probing`).
    pub attack: &'static str,
    /// The detector kind expected to fire.
    pub detector: &'static str,
    pub entity_kind: EntityKind,
    /// Exactly as gatewatch reports it: IP string, client id, token fingerprint hex, or `METHOD /templated/{id}`.
    pub entity_id: String,
    /// Event time of the first and last attack request (inclusive).
    pub start: Millis,
    pub end: Millis,
    pub description: String,
    /// Other (detector, entity) pairs an alert about this incident may name.
    pub related: Vec<RelatedEntity>,
}

impl Label {
    /// One JSON object, as `gatewatch simulate --labels` writes it.
    pub fn to_json(&self) -> String {
        let related: Vec<_> = self
            .related
            .iter()
            .map(|r| {
                serde_json::json!({"detector": r.detector, "entity": {"kind": r.entity_kind.as_str(), "id": r.entity_id}})
            })
            .collect();
        serde_json::json!({
            "attack": self.attack,
            "detector": self.detector,
            "entity": {"kind": self.entity_kind.as_str(), "id": self.entity_id},
            "start": format_ts(self.start),
            "end": format_ts(self.end),
            "description": self.description,
            "related": related,
        })
        .to_string()
    }
}

/// The simulated records (arrival order) and the attack labels.
#[derive(Clone, Debug)]
pub struct Simulation {
    pub records: Vec<SimRecord>,
    pub labels: Vec<Label>,
}

impl Simulation {
    /// The largest amount by which a record's event time falls below the largest
    /// event time delivered before it (0 for perfectly ordered output).
    pub fn max_disorder_ms(&self) -> Millis {
        let mut max_seen = Millis::MIN;
        let mut worst = 0;
        for r in &self.records {
            if r.ts < max_seen {
                worst = worst.max(max_seen - r.ts);
            }
            max_seen = max_seen.max(r.ts);
        }
        worst
    }
}

/// Runs the simulation. Panics only on a configuration [`SimConfig::validate`] rejects.
pub fn simulate(cfg: &SimConfig) -> Simulation {
    if let Err(e) = cfg.validate() {
        panic!("invalid simulation config: {e}");
    }
    let fp = Fingerprinter::new(&cfg.fingerprint_key);
    let pop = traffic::Population::build(cfg, &fp);
    let plan = if cfg.attacks { attacks::plan(cfg, &pop) } else { attacks::Plan::default() };
    let mut records = Vec::with_capacity(pop.expected_records(cfg));
    let mut history = Vec::with_capacity(pop.clients.len());
    for c in &pop.clients {
        history.push(traffic::generate_client(cfg, &pop, c, &plan.effects, &fp, &mut records));
    }
    let labels = attacks::inject(cfg, &pop, &plan, &history, &fp, &mut records);
    // Arrival order; ties broken by gateway node then generation order, so the
    // output is a pure function of the config.
    let mut keyed: Vec<(Millis, u8, u32)> =
        records.iter().enumerate().map(|(i, r)| (r.arrival, r.gateway_node, i as u32)).collect();
    keyed.sort_unstable();
    let mut slots: Vec<Option<SimRecord>> = records.into_iter().map(Some).collect();
    let records = keyed.into_iter().map(|(_, _, i)| slots[i as usize].take().expect("each index once")).collect();
    Simulation { records, labels }
}

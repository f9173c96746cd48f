//! The pure parts of alert delivery: de-duplication, grouping of bursts, rate limiting,
//! backoff and the circuit breaker. No tasks, no clock: time comes in as a parameter, so
//! each piece is tested with chosen instants.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::event::{Alert, Entity, Millis};

/// Remembers the last `capacity` alert ids.
pub struct Dedup {
    seen: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl Dedup {
    pub fn new(capacity: usize) -> Self {
        Dedup { seen: HashSet::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// `true` if the id was seen (without remembering it).
    pub fn seen(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// `true` if the id is new (and remembers it).
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(id.to_string());
        self.order.push_back(id.to_string());
        true
    }
}

/// What a notification says about its alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One message to a sink: an alert, standing for `count` alerts of the same entity and
/// detector (a burst folded into one), firing or resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub status: Status,
    /// The latest alert of the group.
    pub alert: Alert,
    /// How many alerts this notification stands for (≥ 1).
    pub count: u64,
    /// Event time of the first alert folded into it.
    pub first_window_start: Millis,
    /// Runbook link for the alert's rule or detector, if configured.
    pub runbook: Option<String>,
    /// The idempotency key, when it is not this alert's own: a batch drained from the queue
    /// keeps the key of its first notification across retries and restarts.
    pub key: Option<String>,
}

impl Notification {
    pub fn firing(alert: Alert) -> Self {
        let first = alert.window_start;
        Notification { status: Status::Firing, alert, count: 1, first_window_start: first, runbook: None, key: None }
    }

    /// A key that identifies this notification for idempotent receivers.
    pub fn idempotency_key(&self) -> String {
        if let Some(k) = &self.key {
            return k.clone();
        }
        match self.status {
            Status::Firing => self.alert.id.clone(),
            Status::Resolved => format!("{}:resolved", self.alert.id),
        }
    }
}

/// Per (entity, detector): remembers the latest alert and when it came, so a pair quiet for
/// `resolve_after` (wall time) gets one "resolved" notification to the sinks it notified.
/// Folding bursts into one notification is the queue's business ([`super::queue`]).
pub struct Resolver {
    after: Duration,
    max_pairs: usize,
    pairs: HashMap<(Entity, String), Pair>,
}

struct Pair {
    last_wall: Instant,
    latest: Alert,
    sinks: Vec<usize>,
}

/// Resolved notifications due, and the sinks (indices into the dispatcher's list) each goes to.
pub type Outgoing = Vec<(Notification, Vec<usize>)>;

impl Resolver {
    pub fn new(after: Duration, max_pairs: usize) -> Self {
        Resolver { after, max_pairs: max_pairs.max(1), pairs: HashMap::new() }
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// An alert went to `sinks`. Past `max_pairs`, a new pair is not watched (it gets no
    /// resolved notification) rather than pushing out one that is.
    pub fn on_alert(&mut self, alert: &Alert, sinks: &[usize], now: Instant) {
        let key = (alert.entity.clone(), alert.detector.clone());
        if let Some(p) = self.pairs.get_mut(&key) {
            p.last_wall = now;
            p.latest = alert.clone();
            for s in sinks {
                if !p.sinks.contains(s) {
                    p.sinks.push(*s);
                }
            }
            return;
        }
        if self.pairs.len() < self.max_pairs {
            self.pairs.insert(key, Pair { last_wall: now, latest: alert.clone(), sinks: sinks.to_vec() });
        }
    }

    /// Resolved notifications for the pairs quiet for `resolve_after`; they are forgotten.
    pub fn tick(&mut self, now: Instant) -> Outgoing {
        let mut out = Vec::new();
        let after = self.after;
        self.pairs.retain(|_, p| {
            if now.saturating_duration_since(p.last_wall) < after {
                return true;
            }
            let mut n = Notification::firing(p.latest.clone());
            n.status = Status::Resolved;
            out.push((n, std::mem::take(&mut p.sinks)));
            false
        });
        out
    }
}

/// Token bucket: `burst` at once, then `per_minute` sustained.
pub struct RateLimiter {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimiter {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        RateLimiter {
            capacity: burst.max(1) as f64,
            per_sec: per_minute as f64 / 60.0,
            tokens: burst.max(1) as f64,
            last: None,
        }
    }

    /// Takes a token if one is there (`None`), else says how long until one is.
    pub fn try_take(&mut self, now: Instant) -> Option<Duration> {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.per_sec).min(self.capacity);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        }
    }
}

/// Exponential backoff with full jitter: attempt `n` (1-based, the retry number) waits a
/// random time in `[d/2, d]` where `d = min(max, initial * 2^(n-1))`. `unit` in `[0, 1)`
/// is the random draw, passed in so the function is deterministic.
pub fn backoff(initial: Duration, max: Duration, retry: u32, unit: f64) -> Duration {
    let exp = initial.saturating_mul(1u32.checked_shl(retry.saturating_sub(1).min(30)).unwrap_or(u32::MAX));
    let d = exp.min(max);
    d.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

/// Circuit state, as exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    pub fn as_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            _ => CircuitState::Closed,
        }
    }
}

/// Opens after `threshold` consecutive failures; after `open_for` lets one trial call
/// through (half-open): success closes it, failure opens it again.
pub struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    failures: u32,
    opened_at: Option<Instant>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        CircuitBreaker { threshold: threshold.max(1), open_for, failures: 0, opened_at: None }
    }

    pub fn state(&self, now: Instant) -> CircuitState {
        match self.opened_at {
            None => CircuitState::Closed,
            Some(t) if now.saturating_duration_since(t) >= self.open_for => CircuitState::HalfOpen,
            Some(_) => CircuitState::Open,
        }
    }

    /// How long until a call may go out (zero when closed or half-open).
    pub fn wait(&self, now: Instant) -> Duration {
        match self.opened_at {
            Some(t) => self.open_for.saturating_sub(now.saturating_duration_since(t)),
            None => Duration::ZERO,
        }
    }

    pub fn on_success(&mut self) {
        self.failures = 0;
        self.opened_at = None;
    }

    pub fn on_failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.opened_at.is_some() || self.failures >= self.threshold {
            self.opened_at = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EntityKind, Severity};

    fn alert(entity: &str, detector: &str, window_end: Millis) -> Alert {
        let e = Entity::new(EntityKind::ClientId, entity);
        Alert {
            id: Alert::make_id(detector, &e, window_end),
            detector: detector.into(),
            rule: format!("{detector}-rule"),
            severity: Severity::High,
            entity: e,
            client_id: Some(entity.into()),
            client_id_source: Default::default(),
            token_fingerprint: None,
            window_start: window_end - 60_000,
            window_end,
            summary: "s".into(),
            evidence: Default::default(),
            actions: vec![],
        }
    }

    #[test]
    fn dedup_remembers_within_capacity() {
        let mut d = Dedup::new(2);
        assert!(d.first_time("a"));
        assert!(!d.first_time("a"));
        assert!(d.first_time("b"));
        assert!(d.first_time("c")); // evicts a
        assert!(d.first_time("a"));
        assert!(!d.first_time("c"));
    }

    #[test]
    fn a_quiet_pair_is_resolved_once_to_every_sink_it_notified() {
        let t0 = Instant::now();
        let mut r = Resolver::new(Duration::from_secs(300), 100);
        r.on_alert(&alert("c1", "d", 1_000_000), &[1], t0);
        r.on_alert(&alert("c1", "d", 1_010_000), &[0, 1], t0 + Duration::from_secs(100));
        r.on_alert(&alert("c2", "d", 1_000_000), &[0], t0);
        assert!(r.tick(t0 + Duration::from_secs(299)).is_empty());
        let out = r.tick(t0 + Duration::from_secs(301));
        assert_eq!(out.len(), 1, "c2 is quiet, c1 had an alert 100 s later");
        assert_eq!((out[0].0.alert.entity.id.as_str(), out[0].0.status), ("c2", Status::Resolved));
        assert_eq!(out[0].0.idempotency_key(), format!("{}:resolved", out[0].0.alert.id));
        let out = r.tick(t0 + Duration::from_secs(401));
        assert_eq!((out[0].0.alert.window_end, out[0].1.clone()), (1_010_000, vec![1, 0]));
        assert!(r.is_empty());
    }

    #[test]
    fn a_full_resolver_watches_no_new_pair() {
        let t0 = Instant::now();
        let mut r = Resolver::new(Duration::from_secs(1), 1);
        r.on_alert(&alert("a", "d", 1_000_000), &[0], t0);
        r.on_alert(&alert("b", "d", 1_000_000), &[0], t0);
        assert_eq!(r.len(), 1);
        assert_eq!(r.tick(t0 + Duration::from_secs(2))[0].0.alert.entity.id, "a");
    }

    #[test]
    fn rate_limiter_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(60, 2);
        assert_eq!(r.try_take(t0), None);
        assert_eq!(r.try_take(t0), None);
        let wait = r.try_take(t0).unwrap();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(r.try_take(t0 + Duration::from_secs(1)), None);
    }

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_caps() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(1);
        assert_eq!(backoff(i, m, 1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(i, m, 1, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(i, m, 3, 1.0), Duration::from_millis(400));
        assert_eq!(backoff(i, m, 10, 1.0), m);
        assert_eq!(backoff(i, m, 100, 0.0), m / 2);
    }

    #[test]
    fn breaker_opens_after_threshold_and_half_opens() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(2, Duration::from_secs(10));
        b.on_failure(t0);
        assert_eq!(b.state(t0), CircuitState::Closed);
        b.on_failure(t0);
        assert_eq!(b.state(t0), CircuitState::Open);
        assert_eq!(b.wait(t0 + Duration::from_secs(4)), Duration::from_secs(6));
        assert_eq!(b.state(t0 + Duration::from_secs(10)), CircuitState::HalfOpen);
        // A failed trial opens it again at once.
        b.on_failure(t0 + Duration::from_secs(10));
        assert_eq!(b.state(t0 + Duration::from_secs(11)), CircuitState::Open);
        b.on_success();
        assert_eq!(b.state(t0 + Duration::from_secs(11)), CircuitState::Closed);
    }
}

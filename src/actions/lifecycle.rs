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
}

impl Notification {
    pub fn firing(alert: Alert) -> Self {
        let first = alert.window_start;
        Notification { status: Status::Firing, alert, count: 1, first_window_start: first, runbook: None }
    }

    /// A key that identifies this notification for idempotent receivers.
    pub fn idempotency_key(&self) -> String {
        match self.status {
            Status::Firing => self.alert.id.clone(),
            Status::Resolved => format!("{}:resolved", self.alert.id),
        }
    }
}

/// Per (entity, detector): folds alerts that follow a notification within `window` (event
/// time) into one follow-up notification with a count.
///
/// - The first alert of a key goes out at once.
/// - Alerts within `window` of event time after it are held and counted.
/// - The held ones go out as one notification (the latest alert, with the count) when an
///   alert past the window arrives (it goes out right after) or when `tick` finds the group
///   older than `window` of wall time (live traffic, where event and wall time agree).
/// - With `resolve_after`, a key quiet for that long (wall time) gets a resolved notification.
pub struct Grouper {
    window: Millis,
    wall_window: Duration,
    resolve_after: Option<Duration>,
    max_groups: usize,
    groups: HashMap<(Entity, String), Group>,
}

struct Group {
    /// Event time the current window opened (window_end of the alert last sent).
    opened_at: Millis,
    /// Wall time the current window opened.
    opened_wall: Instant,
    /// Wall time of the latest alert.
    last_wall: Instant,
    held: Option<Held>,
    /// The latest alert, for a resolved notification.
    latest: Alert,
    /// Sinks the group notifies.
    sinks: Vec<usize>,
}

struct Held {
    alert: Alert,
    count: u64,
    first_window_start: Millis,
}

/// What to send now, and to which sinks (indices into the dispatcher's sink list).
pub type Outgoing = Vec<(Notification, Vec<usize>)>;

impl Grouper {
    pub fn new(window: Duration, resolve_after: Option<Duration>, max_groups: usize) -> Self {
        Grouper {
            window: window.as_millis() as Millis,
            wall_window: window,
            resolve_after,
            max_groups: max_groups.max(1),
            groups: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Takes an alert bound for `sinks`; returns what to send now (possibly nothing: held).
    pub fn on_alert(&mut self, alert: Alert, sinks: Vec<usize>, now: Instant) -> Outgoing {
        let mut out = Vec::new();
        if self.window == 0 && self.resolve_after.is_none() {
            out.push((Notification::firing(alert), sinks));
            return out;
        }
        let key = (alert.entity.clone(), alert.detector.clone());
        if let Some(g) = self.groups.get_mut(&key) {
            g.last_wall = now;
            g.latest = alert.clone();
            if alert.window_end < g.opened_at.saturating_add(self.window) {
                match &mut g.held {
                    Some(h) => {
                        h.count += 1;
                        h.alert = alert;
                    }
                    None => {
                        g.held = Some(Held { first_window_start: alert.window_start, alert, count: 1 });
                    }
                }
                // The latest alert's sinks win: a later alert may ask for more.
                for s in sinks {
                    if !g.sinks.contains(&s) {
                        g.sinks.push(s);
                    }
                }
                return out;
            }
            if let Some(h) = g.held.take() {
                out.push((held_notification(h), g.sinks.clone()));
            }
            g.opened_at = alert.window_end;
            g.opened_wall = now;
            g.sinks = sinks.clone();
            out.push((Notification::firing(alert), sinks));
            return out;
        }
        if self.groups.len() >= self.max_groups {
            // Make room: flush what is due; if still full, send ungrouped (never drop).
            out.extend(self.tick(now));
            if self.groups.len() >= self.max_groups {
                out.push((Notification::firing(alert), sinks));
                return out;
            }
        }
        self.groups.insert(
            key,
            Group {
                opened_at: alert.window_end,
                opened_wall: now,
                last_wall: now,
                held: None,
                latest: alert.clone(),
                sinks: sinks.clone(),
            },
        );
        out.push((Notification::firing(alert), sinks));
        out
    }

    /// Flushes groups whose window passed in wall time, sends resolved notifications for
    /// quiet keys, and forgets groups with nothing left to do.
    pub fn tick(&mut self, now: Instant) -> Outgoing {
        let mut out = Vec::new();
        let wall_window = self.wall_window;
        let resolve_after = self.resolve_after;
        self.groups.retain(|_, g| {
            if now.saturating_duration_since(g.opened_wall) >= wall_window {
                if let Some(h) = g.held.take() {
                    out.push((held_notification(h), g.sinks.clone()));
                    g.opened_wall = now;
                    g.opened_at = g.latest.window_end;
                }
            }
            match resolve_after {
                Some(r) => {
                    if g.held.is_none() && now.saturating_duration_since(g.last_wall) >= r {
                        let n = Notification {
                            status: Status::Resolved,
                            first_window_start: g.latest.window_start,
                            alert: g.latest.clone(),
                            count: 1,
                            runbook: None,
                        };
                        out.push((n, g.sinks.clone()));
                        false
                    } else {
                        true
                    }
                }
                None => g.held.is_some() || now.saturating_duration_since(g.last_wall) < wall_window,
            }
        });
        out
    }

    /// Everything held, now (shutdown).
    pub fn drain(&mut self) -> Outgoing {
        let mut out = Vec::new();
        for (_, g) in self.groups.drain() {
            if let Some(h) = g.held {
                out.push((held_notification(h), g.sinks));
            }
        }
        out
    }
}

fn held_notification(h: Held) -> Notification {
    Notification {
        status: Status::Firing,
        alert: h.alert,
        count: h.count,
        first_window_start: h.first_window_start,
        runbook: None,
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
    fn burst_is_folded_into_one_notification_with_a_count() {
        let t0 = Instant::now();
        let mut g = Grouper::new(Duration::from_secs(600), None, 100);
        let out = g.on_alert(alert("c1", "d", 1_000_000), vec![0], t0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.count, 1);
        for i in 1..=4 {
            assert!(g.on_alert(alert("c1", "d", 1_000_000 + i * 60_000), vec![0], t0).is_empty());
        }
        // Another entity is not held by c1's group.
        assert_eq!(g.on_alert(alert("c2", "d", 1_000_000), vec![0], t0).len(), 1);
        // An alert past the window releases the held four, then goes out itself.
        let out = g.on_alert(alert("c1", "d", 1_000_000 + 700_000), vec![0], t0);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0.count, 4);
        assert_eq!(out[0].0.alert.window_end, 1_000_000 + 240_000);
        assert_eq!(out[0].0.first_window_start, 1_000_000 + 60_000 - 60_000);
        assert_eq!(out[1].0.count, 1);
    }

    #[test]
    fn tick_flushes_held_alerts_after_the_window_in_wall_time() {
        let t0 = Instant::now();
        let mut g = Grouper::new(Duration::from_secs(60), Some(Duration::from_secs(300)), 100);
        g.on_alert(alert("c1", "d", 1_000_000), vec![1], t0);
        g.on_alert(alert("c1", "d", 1_010_000), vec![1], t0);
        assert!(g.tick(t0 + Duration::from_secs(30)).is_empty());
        let out = g.tick(t0 + Duration::from_secs(61));
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].0.count, out[0].0.status), (1, Status::Firing));
        assert_eq!(out[0].1, vec![1]);
        // Quiet for resolve_after: resolved, then forgotten.
        let out = g.tick(t0 + Duration::from_secs(301));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.status, Status::Resolved);
        assert_eq!(out[0].0.idempotency_key(), format!("{}:resolved", out[0].0.alert.id));
        assert!(g.is_empty());
    }

    #[test]
    fn full_group_table_sends_ungrouped_rather_than_dropping() {
        let t0 = Instant::now();
        let mut g = Grouper::new(Duration::from_secs(600), None, 1);
        assert_eq!(g.on_alert(alert("a", "d", 1_000_000), vec![0], t0).len(), 1);
        assert_eq!(g.on_alert(alert("b", "d", 1_000_000), vec![0], t0).len(), 1);
        assert_eq!(g.len(), 1);
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

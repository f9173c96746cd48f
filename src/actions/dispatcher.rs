//! The alert dispatcher: takes alerts from the engine ([`AlertHandoff`]) and delivers them
//! to the sinks their `actions` name, without ever making detection wait for a sink.
//!
//! `handoff` is synchronous and only enqueues: de-duplicate by alert id, fold bursts per
//! (entity, detector) into one notification with a count, and `try_send` into each sink's
//! bounded queue. A full queue sends the notification to the dead-letter file with the
//! reason. Each sink has its own tokio task with a rate limit, retries with exponential
//! backoff and jitter, and a circuit breaker, so a slow or dead sink only fills its own
//! queue. Shutdown drains within a grace period; what is left goes to the dead-letter file.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::{ActionsConfig, DeliveryConfig, SinkConfig, SinkKind};
use super::deadletter::DeadLetter;
use super::lifecycle::{backoff, CircuitBreaker, CircuitState, Dedup, Grouper, Notification, Outgoing, RateLimiter};
use super::revocation::Revoker;
use super::sink::{Sink, SinkError};
use super::{AlertHandoff, HandoffError};
use crate::event::{Alert, Severity};

/// Counters of one sink, updated by `handoff` and the sink's task.
#[derive(Debug, Default)]
pub struct SinkCounters {
    enqueued: AtomicU64,
    dequeued: AtomicU64,
    sent: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    overflow: AtomicU64,
    dead_lettered: AtomicU64,
    circuit: AtomicU8,
}

/// A snapshot of one sink's counters, for the telemetry layer. `name` comes from the config
/// (bounded); nothing here is a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkStats {
    /// `webhook:secops`, `email:oncall`, `revoke`.
    pub name: String,
    /// `webhook`, `email`, `alertmanager`, `revoke`, ...
    pub kind: String,
    /// Notifications put in the queue, ever.
    pub queued: u64,
    /// Notifications waiting now.
    pub queue_depth: u64,
    /// Delivered.
    pub sent: u64,
    /// Retries (attempts after the first).
    pub retried: u64,
    /// Given up on (rejected, or out of attempts); each is in the dead-letter file.
    pub failed: u64,
    /// Refused by a full queue; each is in the dead-letter file.
    pub overflow: u64,
    /// Written to the dead-letter file for any reason (failed, overflow, shutdown).
    pub dead_lettered: u64,
    pub circuit: CircuitState,
}

/// A snapshot of the dispatcher's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DispatcherStats {
    /// Alerts handed off.
    pub received: u64,
    /// Alerts dropped because their id was seen before.
    pub duplicates: u64,
    /// Alerts folded into a later grouped notification instead of being sent alone.
    pub grouped: u64,
    /// Dead-letter writes that failed (the handoff returned an error for those).
    pub dead_letter_errors: u64,
    pub sinks: Vec<SinkStats>,
}

impl SinkCounters {
    fn snapshot(&self, name: &str, kind: &str) -> SinkStats {
        let enq = self.enqueued.load(Ordering::Relaxed);
        let deq = self.dequeued.load(Ordering::Relaxed);
        SinkStats {
            name: name.to_string(),
            kind: kind.to_string(),
            queued: enq,
            queue_depth: enq.saturating_sub(deq),
            sent: self.sent.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            overflow: self.overflow.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            circuit: CircuitState::from_u8(self.circuit.load(Ordering::Relaxed)),
        }
    }
}

/// A sink and how to feed it.
pub struct SinkEntry {
    /// What detector `actions` name: `webhook:secops`.
    pub name: String,
    /// The kind, also accepted alone in `actions` to mean every sink of that kind.
    pub kind: String,
    pub delivery: DeliveryConfig,
    pub sink: Arc<dyn Sink>,
}

/// Builds the sinks of a config (webhook, email, Alertmanager).
pub fn build_sinks(sinks: &[SinkConfig]) -> Result<Vec<SinkEntry>, String> {
    let client = http_client()?;
    let mut out = Vec::new();
    for s in sinks {
        let sink: Arc<dyn Sink> = match &s.kind {
            SinkKind::Webhook(w) => Arc::new(super::webhook::WebhookSink::new(w.clone(), client.clone())),
            SinkKind::Email(e) => {
                Arc::new(super::email::EmailSink::new(e, s.delivery.timeout).map_err(|m| format!("{}: {m}", s.name))?)
            }
            SinkKind::Alertmanager(a) => {
                Arc::new(super::alertmanager::AlertmanagerSink::new(a.clone(), client.clone()))
            }
        };
        out.push(SinkEntry {
            name: s.name.clone(),
            kind: s.kind.as_str().to_string(),
            delivery: s.delivery.clone(),
            sink,
        });
    }
    Ok(out)
}

/// The HTTP client every HTTP sink shares: rustls, no redirects (a redirect must not carry
/// a signature or a bearer token to another host).
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("gatewatch/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

struct Slot {
    name: String,
    kind: String,
    min_severity: Option<Severity>,
    capacity: usize,
    counters: Arc<SinkCounters>,
}

struct State {
    dedup: Dedup,
    grouper: Grouper,
    /// `None` once shut down.
    senders: Option<Vec<mpsc::Sender<Notification>>>,
    revoke_tx: Option<mpsc::Sender<(Alert, bool)>>,
}

struct Shared {
    slots: Vec<Slot>,
    revoke_counters: Option<Arc<SinkCounters>>,
    revoke_capacity: usize,
    state: Mutex<State>,
    dead_letter: Arc<DeadLetter>,
    runbooks: BTreeMap<String, String>,
    received: AtomicU64,
    duplicates: AtomicU64,
    grouped: AtomicU64,
    dead_letter_errors: AtomicU64,
}

/// The dispatcher. Create it inside a tokio runtime; `handoff` may be called from any thread.
pub struct Dispatcher {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    hard_stop: watch::Sender<bool>,
}

impl Dispatcher {
    /// Starts a dispatcher with the sinks of `cfg`, plus `extra` sinks (a Kafka alerts topic,
    /// a test double) and an optional revoker for alerts whose actions say `revoke`.
    pub fn start(
        cfg: &ActionsConfig,
        extra: Vec<SinkEntry>,
        revoker: Option<Arc<Revoker>>,
    ) -> Result<Dispatcher, String> {
        let mut entries = build_sinks(&cfg.sinks)?;
        entries.extend(extra);
        let dead_letter = Arc::new(
            DeadLetter::open(&cfg.dead_letter)
                .map_err(|e| format!("cannot open dead-letter file {}: {e}", cfg.dead_letter.display()))?,
        );
        let (hard_stop, stop_rx) = watch::channel(false);
        let mut slots = Vec::new();
        let mut senders = Vec::new();
        let mut workers = Vec::new();
        for e in entries {
            let (tx, rx) = mpsc::channel(e.delivery.queue);
            let counters = Arc::new(SinkCounters::default());
            slots.push(Slot {
                name: e.name.clone(),
                kind: e.kind.clone(),
                min_severity: e.delivery.min_severity,
                capacity: e.delivery.queue,
                counters: counters.clone(),
            });
            senders.push(tx);
            let worker = SinkWorker {
                name: e.name,
                sink: e.sink,
                delivery: e.delivery,
                counters,
                dead_letter: dead_letter.clone(),
                stop: stop_rx.clone(),
            };
            workers.push(tokio::spawn(worker.run(rx)));
        }
        let revoke_capacity = 1000;
        let (revoke_tx, revoke_counters) = match revoker {
            Some(r) => {
                let (tx, rx) = mpsc::channel(revoke_capacity);
                let counters = Arc::new(SinkCounters::default());
                workers.push(tokio::spawn(revoke_worker(
                    r,
                    rx,
                    counters.clone(),
                    dead_letter.clone(),
                    stop_rx.clone(),
                )));
                (Some(tx), Some(counters))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            slots,
            revoke_counters,
            revoke_capacity,
            state: Mutex::new(State {
                dedup: Dedup::new(cfg.dedup_capacity),
                grouper: Grouper::new(cfg.group_window, cfg.resolve_after, 100_000),
                senders: Some(senders),
                revoke_tx,
            }),
            dead_letter,
            runbooks: cfg.runbooks.clone(),
            received: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            grouped: AtomicU64::new(0),
            dead_letter_errors: AtomicU64::new(0),
        });
        let tick_every = (cfg.group_window / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let ticker = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut iv = tokio::time::interval(tick_every);
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    iv.tick().await;
                    let mut st = match shared.state.lock() {
                        Ok(s) => s,
                        Err(_) => return,
                    };
                    if st.senders.is_none() {
                        return;
                    }
                    let out = st.grouper.tick(Instant::now());
                    let _ = shared.enqueue(&mut st, out);
                }
            })
        };
        Ok(Dispatcher { shared, workers: Mutex::new(workers), ticker: Mutex::new(Some(ticker)), hard_stop })
    }

    /// Counters for the telemetry layer.
    pub fn stats(&self) -> DispatcherStats {
        let s = &self.shared;
        let mut sinks: Vec<SinkStats> = s.slots.iter().map(|sl| sl.counters.snapshot(&sl.name, &sl.kind)).collect();
        if let Some(c) = &s.revoke_counters {
            sinks.push(c.snapshot("revoke", "revoke"));
        }
        DispatcherStats {
            received: s.received.load(Ordering::Relaxed),
            duplicates: s.duplicates.load(Ordering::Relaxed),
            grouped: s.grouped.load(Ordering::Relaxed),
            dead_letter_errors: s.dead_letter_errors.load(Ordering::Relaxed),
            sinks,
        }
    }

    /// Path of the dead-letter file.
    pub fn dead_letter_path(&self) -> std::path::PathBuf {
        self.shared.dead_letter.path().to_path_buf()
    }

    /// Stops taking alerts, sends what grouping still holds, and lets every sink drain for
    /// up to `grace`. What is still queued or being retried after that goes to the
    /// dead-letter file with the reason `shutdown`.
    pub async fn shutdown(&self, grace: Duration) {
        {
            let mut st = match self.shared.state.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            let held = st.grouper.drain();
            let _ = self.shared.enqueue(&mut st, held);
            st.senders = None;
            st.revoke_tx = None;
        }
        if let Some(t) = self.ticker.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
        let workers: Vec<JoinHandle<()>> = match self.workers.lock() {
            Ok(mut w) => w.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let mut all = Box::pin(async move {
            for w in workers {
                let _ = w.await;
            }
        });
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            let _ = self.hard_stop.send(true);
            all.await;
        }
    }
}

impl Shared {
    /// Indices of the sinks an alert goes to.
    fn route(&self, alert: &Alert) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                alert.actions.iter().any(|a| *a == s.name || *a == s.kind)
                    || s.min_severity.is_some_and(|m| alert.severity >= m)
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn runbook(&self, alert: &Alert) -> Option<String> {
        self.runbooks.get(&alert.rule).or_else(|| self.runbooks.get(&alert.detector)).cloned()
    }

    /// Puts notifications in their sinks' queues; a full queue goes to the dead-letter file.
    /// Errors only when a dead-letter write failed.
    fn enqueue(&self, st: &mut State, out: Outgoing) -> Result<(), HandoffError> {
        let Some(senders) = &st.senders else {
            return Err(HandoffError::Closed);
        };
        let mut failed: Option<String> = None;
        for (mut n, idxs) in out {
            n.runbook = self.runbook(&n.alert);
            for i in idxs {
                let slot = &self.slots[i];
                match senders[i].try_send(n.clone()) {
                    Ok(()) => {
                        slot.counters.enqueued.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let reason = match e {
                            mpsc::error::TrySendError::Full(_) => {
                                slot.counters.overflow.fetch_add(1, Ordering::Relaxed);
                                format!("queue full ({} waiting)", slot.capacity)
                            }
                            mpsc::error::TrySendError::Closed(_) => "sink task stopped".to_string(),
                        };
                        tracing::warn!(sink = %slot.name, alert = %n.alert.id, %reason, "alert to dead-letter file");
                        match self.dead_letter.write(&slot.name, &reason, &n) {
                            Ok(()) => {
                                slot.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                self.dead_letter_errors.fetch_add(1, Ordering::Relaxed);
                                failed = Some(format!("{reason}; dead-letter write failed: {e}"));
                            }
                        }
                    }
                }
            }
        }
        match failed {
            Some(m) => Err(HandoffError::Overflow(m)),
            None => Ok(()),
        }
    }
}

impl AlertHandoff for Dispatcher {
    fn handoff(&self, alert: &Alert) -> Result<(), HandoffError> {
        let s = &self.shared;
        s.received.fetch_add(1, Ordering::Relaxed);
        let mut st = s.state.lock().map_err(|_| HandoffError::Closed)?;
        if st.senders.is_none() {
            return Err(HandoffError::Closed);
        }
        if !st.dedup.first_time(&alert.id) {
            s.duplicates.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut result = Ok(());
        let wants_revoke = alert.actions.iter().any(|a| a == "revoke" || a == "revoke:dry-run");
        if wants_revoke {
            let force_dry_run = alert.actions.iter().any(|a| a == "revoke:dry-run");
            if let (Some(tx), Some(c)) = (&st.revoke_tx, &s.revoke_counters) {
                match tx.try_send((alert.clone(), force_dry_run)) {
                    Ok(()) => {
                        c.enqueued.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        c.overflow.fetch_add(1, Ordering::Relaxed);
                        let reason = format!("revocation queue full ({} waiting)", s.revoke_capacity);
                        match s.dead_letter.write("revoke", &reason, &Notification::firing(alert.clone())) {
                            Ok(()) => {
                                c.dead_lettered.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                s.dead_letter_errors.fetch_add(1, Ordering::Relaxed);
                                result =
                                    Err(HandoffError::Overflow(format!("{reason}; dead-letter write failed: {e}")));
                            }
                        }
                    }
                }
            }
        }
        let sinks = s.route(alert);
        if sinks.is_empty() {
            return result;
        }
        let out = st.grouper.on_alert(alert.clone(), sinks, Instant::now());
        if out.is_empty() {
            s.grouped.fetch_add(1, Ordering::Relaxed);
        }
        s.enqueue(&mut st, out).and(result)
    }
}

struct SinkWorker {
    name: String,
    sink: Arc<dyn Sink>,
    delivery: DeliveryConfig,
    counters: Arc<SinkCounters>,
    dead_letter: Arc<DeadLetter>,
    stop: watch::Receiver<bool>,
}

impl SinkWorker {
    async fn run(mut self, mut rx: mpsc::Receiver<Notification>) {
        let d = self.delivery.clone();
        let mut rate = d.rate_per_minute.map(|r| RateLimiter::new(r, d.burst));
        let mut breaker = CircuitBreaker::new(d.breaker_failures, d.breaker_open_for);
        let mut rng = rand::rngs::SmallRng::from_entropy();
        while let Some(n) = rx.recv().await {
            self.counters.dequeued.fetch_add(1, Ordering::Relaxed);
            if *self.stop.borrow() {
                self.dead_letter(&n, "shutdown before delivery");
                continue;
            }
            if let Some(r) = &mut rate {
                let mut stopped = false;
                while let Some(w) = r.try_take(Instant::now()) {
                    if self.sleep_or_stop(w).await {
                        stopped = true;
                        break;
                    }
                }
                if stopped {
                    self.dead_letter(&n, "shutdown before delivery (rate limited)");
                    continue;
                }
            }
            let mut attempt = 0u32;
            loop {
                let wait = breaker.wait(Instant::now());
                if !wait.is_zero() {
                    self.set_circuit(CircuitState::Open);
                    if self.sleep_or_stop(wait).await {
                        self.dead_letter(&n, "shutdown while the circuit was open");
                        break;
                    }
                }
                self.set_circuit(breaker.state(Instant::now()));
                attempt += 1;
                let mut stop = self.stop.clone();
                let res = tokio::select! {
                    r = tokio::time::timeout(d.timeout, self.sink.send(&n)) => match r {
                        Ok(r) => r,
                        Err(_) => Err(SinkError::retryable(format!("timed out after {:?}", d.timeout))),
                    },
                    _ = stopped(&mut stop) => {
                        // It may have arrived: at-least-once, and the idempotency key lets
                        // the receiver drop a replay.
                        self.dead_letter(&n, "shutdown during delivery (may have been delivered)");
                        break;
                    }
                };
                match res {
                    Ok(()) => {
                        breaker.on_success();
                        self.set_circuit(CircuitState::Closed);
                        self.counters.sent.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(e) if !e.retryable => {
                        // The receiver answered: it is up, it just refuses this one.
                        breaker.on_success();
                        self.set_circuit(CircuitState::Closed);
                        self.counters.failed.fetch_add(1, Ordering::Relaxed);
                        self.dead_letter(&n, &format!("rejected: {e}"));
                        break;
                    }
                    Err(e) => {
                        breaker.on_failure(Instant::now());
                        self.set_circuit(breaker.state(Instant::now()));
                        if attempt >= d.max_attempts {
                            self.counters.failed.fetch_add(1, Ordering::Relaxed);
                            self.dead_letter(&n, &format!("gave up after {attempt} attempts: {e}"));
                            break;
                        }
                        self.counters.retried.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(sink = %self.name, alert = %n.alert.id, attempt, error = %e, "delivery failed, retrying");
                        let w = backoff(d.initial_backoff, d.max_backoff, attempt, rng.gen::<f64>())
                            .max(e.retry_after.unwrap_or_default().min(d.max_backoff));
                        if self.sleep_or_stop(w).await {
                            self.dead_letter(&n, &format!("shutdown while retrying: {e}"));
                            break;
                        }
                    }
                }
            }
        }
    }

    fn set_circuit(&self, s: CircuitState) {
        self.counters.circuit.store(s.as_u8(), Ordering::Relaxed);
    }

    /// Sleeps; `true` if the hard stop came first.
    async fn sleep_or_stop(&mut self, d: Duration) -> bool {
        if *self.stop.borrow() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            r = self.stop.changed() => r.is_ok() && *self.stop.borrow(),
        }
    }

    fn dead_letter(&self, n: &Notification, reason: &str) {
        tracing::warn!(sink = %self.name, alert = %n.alert.id, %reason, "alert to dead-letter file");
        match self.dead_letter.write(&self.name, reason, n) {
            Ok(()) => {
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(sink = %self.name, alert = %n.alert.id, error = %e, "dead-letter write failed"),
        }
    }
}

/// Completes once the hard stop is signalled (never, if the sender is gone without it).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn revoke_worker(
    revoker: Arc<Revoker>,
    mut rx: mpsc::Receiver<(Alert, bool)>,
    counters: Arc<SinkCounters>,
    dead_letter: Arc<DeadLetter>,
    stop: watch::Receiver<bool>,
) {
    while let Some((alert, force_dry_run)) = rx.recv().await {
        counters.dequeued.fetch_add(1, Ordering::Relaxed);
        if *stop.borrow() {
            if dead_letter
                .write("revoke", "shutdown before the revocation decision", &Notification::firing(alert))
                .is_ok()
            {
                counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let outcome = revoker.handle_alert(&alert, force_dry_run, now).await;
        if !outcome.audited {
            // Nothing was decided for good: keep the alert where an operator can replay it.
            counters.failed.fetch_add(1, Ordering::Relaxed);
            if dead_letter
                .write("revoke", "the revocation audit log could not be written", &Notification::firing(alert))
                .is_ok()
            {
                counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        counters.sent.fetch_add(1, Ordering::Relaxed);
        if outcome.target_failures > 0 {
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

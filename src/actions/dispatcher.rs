//! The alert dispatcher: takes alerts from the engine ([`AlertHandoff`]) and delivers them
//! to the sinks their `actions` name, without ever making detection wait for a sink.
//!
//! `handoff` de-duplicates by alert id and writes the alert to the durable queue
//! ([`super::queue`]) of each sink it goes to; once it returns `Ok` the alert is on disk
//! (synced per `queue_fsync`) and the source may commit its input. A full queue sends the
//! notification to the dead-letter file with the reason. Each sink has its own tokio task
//! that takes batches from its queue (a backlog drains as one notification per entity and
//! detector, with a count), with a rate limit, retries with exponential backoff and jitter
//! until the notification is older than `expire_after`, and a circuit breaker that keeps
//! probing while open. So a slow or dead sink only fills its own queue, and what it holds
//! is still there after a restart. Shutdown lets every sink send for a grace period; what is
//! left stays queued for the next start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::{ActionsConfig, DeliveryConfig, SinkConfig};
use super::deadletter::DeadLetter;
use super::lifecycle::{backoff, CircuitBreaker, CircuitState, Dedup, Notification, RateLimiter, Resolver};
use super::queue::{Batch, DurableQueue, Next, PushError, QueueLimits};
use super::revocation::Revoker;
use super::sink::{DirectSink, Sink, SinkError};
use super::sinks::{BuildContext, SinkRuntime};
use super::{AlertHandoff, AlertJournal, AttemptOutcome, HandoffError, Happening};
use crate::event::{Alert, Severity};

/// Counters of one sink, updated by `handoff` and the sink's task.
#[derive(Debug, Default)]
pub struct SinkCounters {
    enqueued: AtomicU64,
    dequeued: AtomicU64,
    sent: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    expired: AtomicU64,
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
    /// Notifications put in the queue by this process.
    pub queued: u64,
    /// Notifications waiting now (those from before a restart included).
    pub queue_depth: u64,
    /// Bytes of the notifications waiting (their records on disk).
    pub queue_bytes: u64,
    /// Bytes of the queue's files on disk.
    pub queue_disk_bytes: u64,
    /// When the oldest waiting notification was queued (Unix ms).
    pub oldest_queued_ms: Option<i64>,
    /// How long the oldest waiting notification has waited, when this snapshot was taken.
    pub oldest_age: Option<Duration>,
    /// Deliveries (a batch drained after an outage is one).
    pub sent: u64,
    /// Retries (attempts after the first).
    pub retried: u64,
    /// Rejected by the receiver (a 4xx that retrying cannot fix); each is in the dead-letter file.
    pub failed: u64,
    /// Not delivered within `expire_after`; each is in the dead-letter file.
    pub expired: u64,
    /// Refused by a full queue; each is in the dead-letter file.
    pub overflow: u64,
    /// Written to the dead-letter file for any reason.
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
    /// Alerts folded into another's notification (sent as part of a count) instead of alone.
    pub grouped: u64,
    /// Dead-letter writes that failed (the handoff returned an error for those).
    pub dead_letter_errors: u64,
    pub sinks: Vec<SinkStats>,
}

impl SinkCounters {
    fn snapshot(&self, name: &str, kind: &str, queue: Option<&DurableQueue>) -> SinkStats {
        let enq = self.enqueued.load(Ordering::Relaxed);
        let deq = self.dequeued.load(Ordering::Relaxed);
        let q = queue.map(|q| q.stats()).unwrap_or_default();
        SinkStats {
            name: name.to_string(),
            kind: kind.to_string(),
            queued: enq,
            queue_depth: if queue.is_some() { q.items } else { enq.saturating_sub(deq) },
            queue_bytes: q.bytes,
            queue_disk_bytes: q.disk_bytes,
            oldest_queued_ms: q.oldest_enqueued_ms,
            oldest_age: q.oldest_enqueued_ms.map(|t| Duration::from_millis((now_ms() - t).max(0) as u64)),
            sent: self.sent.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
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
    pub sink: SinkRuntime,
}

/// Builds the sinks of a config (each kind's runtime, `sinks::SinkKind::build`).
pub fn build_sinks(sinks: &[SinkConfig]) -> Result<Vec<SinkEntry>, String> {
    let ctx = BuildContext { http: http_client()? };
    let mut out = Vec::new();
    for s in sinks {
        let sink = s.kind.build(&s.delivery, &ctx).map_err(|m| format!("{}: {m}", s.name))?;
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

/// The directory of a sink's queue under `queue_dir`: `webhook/secops` for `webhook:secops`.
/// Anything but letters, digits, `-`, `_` and `.` in a name is written as `%XX`, so a name
/// can neither leave the directory nor meet another sink's.
pub fn queue_path(queue_dir: &Path, sink: &str) -> PathBuf {
    let mut p = queue_dir.to_path_buf();
    for part in sink.splitn(2, ':') {
        let mut safe = String::with_capacity(part.len());
        for b in part.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !safe.is_empty()) {
                safe.push(b as char);
            } else {
                safe.push_str(&format!("%{b:02X}"));
            }
        }
        p.push(safe);
    }
    p
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

struct Slot {
    name: String,
    kind: String,
    min_severity: Option<Severity>,
    counters: Arc<SinkCounters>,
    queue: Arc<DurableQueue>,
}

/// A [`DirectSink`]: delivered inside `handoff`, with its own breaker.
struct DirectSlot {
    name: String,
    kind: String,
    min_severity: Option<Severity>,
    timeout: Duration,
    counters: Arc<SinkCounters>,
    sink: Arc<dyn DirectSink>,
    /// The breaker, since when deliveries fail (one log line when it starts, one when it
    /// ends), and the attempts made so far per alert not yet delivered.
    health: Mutex<DirectHealth>,
}

struct DirectHealth {
    breaker: CircuitBreaker,
    failing_since: Option<Instant>,
    attempts: std::collections::HashMap<String, u32>,
}

struct State {
    dedup: Dedup,
    resolver: Option<Resolver>,
    open: bool,
    revoke_tx: Option<mpsc::Sender<(Alert, bool, Enforce)>>,
}

struct Shared {
    slots: Vec<Slot>,
    direct: Vec<DirectSlot>,
    revoke_counters: Option<Arc<SinkCounters>>,
    revoke_capacity: usize,
    state: Mutex<State>,
    dead_letter: Arc<DeadLetter>,
    received: AtomicU64,
    duplicates: AtomicU64,
    grouped: Arc<AtomicU64>,
    dead_letter_errors: AtomicU64,
    journal: Option<Arc<dyn AlertJournal>>,
}

/// Tells `journal`, if any, what became of alert `id`.
fn note(journal: &Option<Arc<dyn AlertJournal>>, id: &str, what: impl FnOnce() -> Happening) {
    if let Some(j) = journal {
        j.note(id, now_ms(), what());
    }
}

/// The dispatcher. Create it inside a tokio runtime; `handoff` may be called from any thread.
pub struct Dispatcher {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    ticker: Mutex<Option<JoinHandle<()>>>,
    draining: watch::Sender<bool>,
    hard_stop: watch::Sender<bool>,
}

impl Dispatcher {
    /// Starts a dispatcher with the sinks of `cfg`, plus `extra` sinks (a test double) and an
    /// optional revoker for alerts whose actions say `revoke`. Each sink's queue is opened
    /// under `cfg.queue_dir`; what it held from before is sent again.
    pub fn start(
        cfg: &ActionsConfig,
        extra: Vec<SinkEntry>,
        revoker: Option<Arc<Revoker>>,
    ) -> Result<Dispatcher, String> {
        Self::start_with_receipts(cfg, extra, revoker, None)
    }

    /// [`Dispatcher::start`], also sending a [`Receipt`] for every delivery that ended.
    pub fn start_with_receipts(
        cfg: &ActionsConfig,
        extra: Vec<SinkEntry>,
        revoker: Option<Arc<Revoker>>,
        receipts: Option<mpsc::UnboundedSender<Receipt>>,
    ) -> Result<Dispatcher, String> {
        Self::start_inner(cfg, extra, revoker, receipts, None)
    }

    /// [`Dispatcher::start`], telling `journal` what becomes of every alert: each queueing,
    /// delivery attempt, grouping, dead-lettering, resolution and enforcement decision.
    pub fn start_with_journal(
        cfg: &ActionsConfig,
        extra: Vec<SinkEntry>,
        revoker: Option<Arc<Revoker>>,
        journal: Arc<dyn AlertJournal>,
    ) -> Result<Dispatcher, String> {
        Self::start_inner(cfg, extra, revoker, None, Some(journal))
    }

    fn start_inner(
        cfg: &ActionsConfig,
        extra: Vec<SinkEntry>,
        revoker: Option<Arc<Revoker>>,
        receipts: Option<mpsc::UnboundedSender<Receipt>>,
        journal: Option<Arc<dyn AlertJournal>>,
    ) -> Result<Dispatcher, String> {
        let mut entries = build_sinks(&cfg.sinks)?;
        entries.extend(extra);
        let only_direct = revoker.is_none() && entries.iter().all(|e| matches!(e.sink, SinkRuntime::Direct(_)));
        let dead_letter = Arc::new(if only_direct {
            DeadLetter::lazy(&cfg.dead_letter)
        } else {
            DeadLetter::open(&cfg.dead_letter)
                .map_err(|e| format!("cannot open dead-letter file {}: {e}", cfg.dead_letter.display()))?
        });
        let (hard_stop, stop_rx) = watch::channel(false);
        let (draining, draining_rx) = watch::channel(false);
        let runbooks = Arc::new(cfg.runbooks.clone());
        let grouped = Arc::new(AtomicU64::new(0));
        let mut dedup = Dedup::new(cfg.dedup_capacity);
        let mut slots = Vec::new();
        let mut direct = Vec::new();
        let mut workers = Vec::new();
        for e in entries {
            let sink = match e.sink {
                SinkRuntime::Queued(s) => s,
                SinkRuntime::Direct(d) => {
                    direct.push(DirectSlot {
                        name: e.name,
                        kind: e.kind,
                        min_severity: e.delivery.min_severity,
                        timeout: e.delivery.timeout,
                        counters: Arc::new(SinkCounters::default()),
                        sink: d,
                        health: Mutex::new(DirectHealth {
                            breaker: CircuitBreaker::new(e.delivery.breaker_failures, e.delivery.breaker_open_for),
                            failing_since: None,
                            attempts: Default::default(),
                        }),
                    });
                    continue;
                }
            };
            let dir = queue_path(&cfg.queue_dir, &e.name);
            let limits = QueueLimits {
                max_items: e.delivery.queue,
                max_bytes: e.delivery.queue_bytes,
                expire_after: e.delivery.expire_after,
                order: e.delivery.drain_order,
                group_window: cfg.group_window,
            };
            let (queue, reopened) = DurableQueue::open(&dir, limits, cfg.queue_segment_bytes, cfg.queue_fsync)
                .map_err(|err| format!("cannot open the queue of {} in {}: {err}", e.name, dir.display()))?;
            if reopened.pending > 0 {
                tracing::info!(sink = %e.name, waiting = reopened.pending, "notifications queued before the restart are sent again");
            }
            if reopened.torn_bytes > 0 || reopened.corrupt > 0 {
                tracing::warn!(
                    sink = %e.name,
                    torn_bytes = reopened.torn_bytes,
                    corrupt_records = reopened.corrupt,
                    "the queue had a write cut short by a crash or unreadable records; they were skipped"
                );
            }
            for id in &reopened.alert_ids {
                dedup.first_time(id);
            }
            let queue = Arc::new(queue);
            let counters = Arc::new(SinkCounters::default());
            slots.push(Slot {
                name: e.name.clone(),
                kind: e.kind.clone(),
                min_severity: e.delivery.min_severity,
                counters: counters.clone(),
                queue: queue.clone(),
            });
            let worker = SinkWorker {
                name: e.name,
                sink,
                delivery: e.delivery,
                counters,
                dead_letter: dead_letter.clone(),
                queue,
                runbooks: runbooks.clone(),
                grouped: grouped.clone(),
                stop: stop_rx.clone(),
                draining: draining_rx.clone(),
                receipts: receipts.clone(),
                journal: journal.clone(),
            };
            workers.push(tokio::spawn(worker.run()));
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
                    journal.clone(),
                )));
                (Some(tx), Some(counters))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            slots,
            direct,
            revoke_counters,
            revoke_capacity,
            state: Mutex::new(State {
                dedup,
                resolver: cfg.resolve_after.map(|r| Resolver::new(r, 100_000)),
                open: true,
                revoke_tx,
            }),
            dead_letter,
            received: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            grouped,
            dead_letter_errors: AtomicU64::new(0),
            journal,
        });
        let ticker = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut iv = tokio::time::interval(Duration::from_millis(250));
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    iv.tick().await;
                    let due = {
                        let mut st = match shared.state.lock() {
                            Ok(s) => s,
                            Err(_) => return,
                        };
                        if !st.open {
                            return;
                        }
                        st.resolver.as_mut().map(|r| r.tick(Instant::now())).unwrap_or_default()
                    };
                    for (n, sinks) in due {
                        let _ = shared.enqueue(&n, &sinks);
                    }
                    for s in &shared.slots {
                        if let Err(e) = s.queue.sync_if_due() {
                            tracing::error!(sink = %s.name, error = %e, "queue sync failed");
                        }
                    }
                }
            })
        };
        Ok(Dispatcher { shared, workers: Mutex::new(workers), ticker: Mutex::new(Some(ticker)), draining, hard_stop })
    }

    /// Counters for the telemetry layer.
    pub fn stats(&self) -> DispatcherStats {
        let s = &self.shared;
        let mut sinks: Vec<SinkStats> =
            s.slots.iter().map(|sl| sl.counters.snapshot(&sl.name, &sl.kind, Some(&sl.queue))).collect();
        sinks.extend(s.direct.iter().map(|d| d.counters.snapshot(&d.name, &d.kind, None)));
        if let Some(c) = &s.revoke_counters {
            sinks.push(c.snapshot("revoke", "revoke", None));
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

    /// Queues a notification for one sink by name, as `handoff` would (redrive uses this).
    pub fn enqueue_for(&self, sink: &str, n: &Notification) -> Result<(), HandoffError> {
        let i = self
            .shared
            .slots
            .iter()
            .position(|s| s.name == sink)
            .ok_or_else(|| HandoffError::Overflow(format!("no sink named {sink}")))?;
        self.shared.enqueue(n, &[i])
    }

    /// `true` once no sink has anything waiting.
    pub fn is_idle(&self) -> bool {
        self.shared.slots.iter().all(|s| s.queue.is_empty())
    }

    /// Stops taking alerts and lets every sink send what waits (group windows ended) for up
    /// to `grace`. What is still queued after that stays in the queue for the next start; a
    /// call cut off mid-way may have arrived, and is sent again with the same idempotency key.
    pub async fn shutdown(&self, grace: Duration) {
        {
            let mut st = match self.shared.state.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            st.open = false;
            st.revoke_tx = None;
        }
        if let Some(t) = self.ticker.lock().ok().and_then(|mut t| t.take()) {
            t.abort();
        }
        let _ = self.draining.send(true);
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
        for s in &self.shared.slots {
            if let Err(e) = s.queue.sync() {
                tracing::error!(sink = %s.name, error = %e, "queue sync at shutdown failed");
            }
            let left = s.queue.stats().items;
            if left > 0 {
                tracing::info!(sink = %s.name, waiting = left, "notifications stay queued for the next start");
            }
        }
    }
}

/// Whether an alert goes to a sink: its `actions` name the sink or its kind, or its severity
/// reaches the sink's `min_severity`.
fn routed(alert: &Alert, name: &str, kind: &str, min_severity: Option<Severity>) -> bool {
    alert.actions.iter().any(|a| a == name || a == kind) || min_severity.is_some_and(|m| alert.severity >= m)
}

impl Shared {
    /// Indices of the queued sinks an alert goes to.
    fn route(&self, alert: &Alert) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| {
                let s = &self.slots[i];
                routed(alert, &s.name, &s.kind, s.min_severity)
            })
            .collect()
    }

    /// Delivers an alert to the direct sinks it goes to, each once. Any failure fails the
    /// handoff (the source retries it): what one already acknowledged may then get a copy.
    fn deliver_direct(&self, alert: &Alert) -> Result<(), HandoffError> {
        for d in self.direct.iter().filter(|d| routed(alert, &d.name, &d.kind, d.min_severity)) {
            let attempt = {
                let mut h = d.health.lock().map_err(|_| HandoffError::Closed)?;
                let now = Instant::now();
                if h.breaker.state(now) == CircuitState::Open {
                    return Err(HandoffError::Undelivered(format!(
                        "{}: circuit open after repeated failures; next try in {:?}",
                        d.name,
                        h.breaker.wait(now)
                    )));
                }
                let n = h.attempts.entry(alert.id.clone()).or_insert(0);
                *n += 1;
                *n
            };
            d.counters.enqueued.fetch_add(1, Ordering::Relaxed);
            let result = d.sink.deliver(alert, d.timeout);
            d.counters.dequeued.fetch_add(1, Ordering::Relaxed);
            let mut h = d.health.lock().map_err(|_| HandoffError::Closed)?;
            let now = Instant::now();
            match result {
                Ok(()) => {
                    d.counters.sent.fetch_add(1, Ordering::Relaxed);
                    h.breaker.on_success();
                    h.attempts.remove(&alert.id);
                    if let Some(since) = h.failing_since.take() {
                        tracing::info!(sink = %d.name, failing_for = %human(since.elapsed()), "delivery works again");
                    }
                    note(&self.journal, &alert.id, || Happening::Attempt {
                        sink: d.name.clone(),
                        attempt,
                        outcome: AttemptOutcome::Delivered,
                        detail: None,
                    });
                }
                Err(e) => {
                    d.counters.retried.fetch_add(1, Ordering::Relaxed);
                    h.breaker.on_failure(now);
                    if h.attempts.len() > 10_000 {
                        // Alerts retried by a source that then stopped: forget their counts.
                        h.attempts.clear();
                    }
                    if h.failing_since.is_none() {
                        h.failing_since = Some(now);
                        tracing::warn!(sink = %d.name, error = %e, "delivery failing; the input waits and is retried");
                    }
                    note(&self.journal, &alert.id, || Happening::Attempt {
                        sink: d.name.clone(),
                        attempt,
                        outcome: AttemptOutcome::Failed,
                        detail: Some(e.message.clone()),
                    });
                    d.counters.circuit.store(h.breaker.state(now).as_u8(), Ordering::Relaxed);
                    return Err(HandoffError::Undelivered(format!("{}: {e}", d.name)));
                }
            }
            d.counters.circuit.store(h.breaker.state(now).as_u8(), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Puts a notification in its sinks' queues; one that cannot be queued goes to the
    /// dead-letter file. Errors only when a dead-letter write failed too.
    fn enqueue(&self, n: &Notification, sinks: &[usize]) -> Result<(), HandoffError> {
        let mut failed: Option<String> = None;
        let now = now_ms();
        for &i in sinks {
            let slot = &self.slots[i];
            let reason = match slot.queue.push(n, now) {
                Ok(()) => {
                    slot.counters.enqueued.fetch_add(1, Ordering::Relaxed);
                    note(&self.journal, &n.alert.id, || match n.status {
                        super::Status::Resolved => Happening::Resolved { sink: slot.name.clone() },
                        super::Status::Firing => Happening::Queued { sink: slot.name.clone() },
                    });
                    continue;
                }
                Err(PushError::Full(reason)) => {
                    slot.counters.overflow.fetch_add(1, Ordering::Relaxed);
                    reason
                }
                Err(e @ PushError::Io(_)) => e.to_string(),
            };
            tracing::warn!(sink = %slot.name, alert = %n.alert.id, %reason, "alert to dead-letter file");
            note(&self.journal, &n.alert.id, || Happening::DeadLettered {
                sink: slot.name.clone(),
                reason: reason.clone(),
            });
            match self.dead_letter.write(&slot.name, &reason, n) {
                Ok(()) => {
                    slot.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    self.dead_letter_errors.fetch_add(1, Ordering::Relaxed);
                    failed = Some(format!("{reason}; dead-letter write failed: {e}"));
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
        let sinks = s.route(alert);
        let mut result = Ok(());
        if !s.direct.is_empty() {
            // Outside the lock, and before the id is remembered: a failed delivery fails the
            // handoff, and its retry must not be taken for a duplicate.
            {
                let st = s.state.lock().map_err(|_| HandoffError::Closed)?;
                if !st.open {
                    return Err(HandoffError::Closed);
                }
                if st.dedup.seen(&alert.id) {
                    s.duplicates.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
            s.deliver_direct(alert)?;
        }
        {
            let mut st = s.state.lock().map_err(|_| HandoffError::Closed)?;
            if !st.open {
                return Err(HandoffError::Closed);
            }
            if !st.dedup.first_time(&alert.id) {
                s.duplicates.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            let asked = |verb: &str| {
                let dry = format!("{verb}:dry-run");
                alert.actions.iter().any(|a| *a == verb || *a == dry).then(|| alert.actions.contains(&dry))
            };
            for (what, force_dry_run) in [(Enforce::Revoke, asked("revoke")), (Enforce::Ban, asked("ban"))]
                .into_iter()
                .filter_map(|(w, d)| d.map(|d| (w, d)))
            {
                if let (Some(tx), Some(c)) = (&st.revoke_tx, &s.revoke_counters) {
                    match tx.try_send((alert.clone(), force_dry_run, what)) {
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
            if sinks.is_empty() {
                return result;
            }
            if let Some(r) = &mut st.resolver {
                r.on_alert(alert, &sinks, Instant::now());
            }
        }
        // Outside the lock: a queue write (and its fsync) holds up only this caller.
        s.enqueue(&Notification::firing(alert.clone()), &sinks).and(result)
    }
}

/// What became of the notifications of one delivery, for a caller that follows them
/// ([`Dispatcher::start_with_receipts`]: `gatewatch redrive`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub sink: String,
    /// `true`: delivered; `false`: in the dead-letter file again (rejected or expired).
    pub delivered: bool,
    /// The idempotency key of each notification the delivery stood for.
    pub keys: Vec<String>,
}

/// How one batch ended.
enum Outcome {
    Delivered,
    /// The receiver refused it; retrying cannot help.
    Rejected(SinkError),
    /// Still undelivered when its oldest notification passed `expire_after`.
    Expired(String),
    /// The hard stop came first; the batch stays queued.
    Stopped,
}

struct SinkWorker {
    name: String,
    sink: Arc<dyn Sink>,
    delivery: DeliveryConfig,
    counters: Arc<SinkCounters>,
    dead_letter: Arc<DeadLetter>,
    queue: Arc<DurableQueue>,
    runbooks: Arc<BTreeMap<String, String>>,
    grouped: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
    draining: watch::Receiver<bool>,
    receipts: Option<mpsc::UnboundedSender<Receipt>>,
    journal: Option<Arc<dyn AlertJournal>>,
}

struct Retry {
    rate: Option<RateLimiter>,
    breaker: CircuitBreaker,
    rng: rand::rngs::SmallRng,
    /// Since when deliveries have been failing (one line when it starts, one when it ends).
    failing_since: Option<Instant>,
}

impl SinkWorker {
    async fn run(mut self) {
        let d = self.delivery.clone();
        let mut retry = Retry {
            rate: d.rate_per_minute.map(|r| RateLimiter::new(r, d.burst)),
            breaker: CircuitBreaker::new(d.breaker_failures, d.breaker_open_for),
            rng: rand::rngs::SmallRng::from_entropy(),
            failing_since: None,
        };
        let mut draining = false;
        let mut last_expiry = None::<Instant>;
        loop {
            if *self.stop.borrow() {
                return;
            }
            if !draining && *self.draining.borrow() {
                draining = true;
                self.queue.end_cooldowns();
            }
            if last_expiry.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_expiry = Some(Instant::now());
                self.expire_waiting();
            }
            let next = match self.queue.next(Instant::now()) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(sink = %self.name, error = %e, "cannot read the queue; retrying in 1s");
                    if self.sleep_or_stop(Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            };
            match next {
                Next::Wait(until) => {
                    if draining {
                        return;
                    }
                    let nap = until
                        .map(|u| u.saturating_duration_since(Instant::now()))
                        .unwrap_or(Duration::from_secs(1))
                        .min(Duration::from_secs(1));
                    tokio::select! {
                        _ = self.queue.pushed() => {}
                        _ = tokio::time::sleep(nap) => {}
                        _ = self.draining.changed() => {}
                        _ = self.stop.changed() => {}
                    }
                }
                Next::Send(batch) => {
                    let outcome = self.deliver(&batch, &mut retry).await;
                    self.finish(&batch, outcome);
                    if *self.stop.borrow() {
                        return;
                    }
                }
            }
        }
    }

    fn finish(&self, batch: &Batch, outcome: Outcome) {
        if let Some(tx) = &self.receipts {
            if !matches!(outcome, Outcome::Stopped) {
                let keys = match self.queue.members(batch) {
                    Ok(m) => m.iter().map(|n| n.idempotency_key()).collect(),
                    Err(_) => vec![batch.notification.idempotency_key()],
                };
                let delivered = matches!(outcome, Outcome::Delivered);
                let _ = tx.send(Receipt { sink: self.name.clone(), delivered, keys });
            }
        }
        if self.journal.is_some() && batch.len() > 1 && matches!(outcome, Outcome::Delivered) {
            let head = batch.notification.alert.id.clone();
            if let Ok(members) = self.queue.members(batch) {
                for m in members.iter().filter(|m| m.alert.id != head) {
                    note(&self.journal, &m.alert.id, || Happening::Grouped {
                        sink: self.name.clone(),
                        head: head.clone(),
                        count: batch.len(),
                    });
                }
            }
        }
        let result = match outcome {
            Outcome::Delivered => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
                self.grouped.fetch_add(batch.len() as u64 - 1, Ordering::Relaxed);
                self.queue.done(batch, Instant::now())
            }
            Outcome::Rejected(e) => {
                self.counters.failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.dead_letter_batch(batch, &format!("rejected: {e}"));
                self.queue.drop_batch(batch)
            }
            Outcome::Expired(e) => {
                let why =
                    format!("expired: not delivered within {}; last error: {e}", human(self.delivery.expire_after));
                self.dead_letter_batch(batch, &why);
                // Counted once its dead letters are written: whoever sees the count can read them.
                self.counters.expired.fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.queue.drop_batch(batch)
            }
            Outcome::Stopped => {
                self.queue.release(batch);
                return;
            }
        };
        self.counters.dequeued.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Err(e) = result {
            tracing::error!(sink = %self.name, error = %e, "queue write failed after a delivery");
        }
    }

    /// Dead-letters each notification of a batch on its own, so each alert is in the file.
    fn dead_letter_batch(&self, batch: &Batch, reason: &str) {
        match self.queue.members(batch) {
            Ok(members) => {
                for n in &members {
                    self.dead_letter(n, reason);
                }
            }
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "cannot read a batch back; dead-lettering it as one");
                self.dead_letter(&batch.notification, reason);
            }
        }
    }

    /// Dead-letters what waited past `expire_after` without being tried.
    fn expire_waiting(&self) {
        match self.queue.expire(now_ms()) {
            Ok(old) => {
                for n in &old {
                    let why = format!("expired: not delivered within {}", human(self.delivery.expire_after));
                    self.dead_letter(n, &why);
                    self.counters.expired.fetch_add(1, Ordering::Relaxed);
                    self.counters.dequeued.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::error!(sink = %self.name, error = %e, "queue write failed while expiring"),
        }
    }

    async fn deliver(&mut self, batch: &Batch, r: &mut Retry) -> Outcome {
        let d = self.delivery.clone();
        let mut n = batch.notification.clone();
        n.runbook = self.runbooks.get(&n.alert.rule).or_else(|| self.runbooks.get(&n.alert.detector)).cloned();
        let expires_at = batch.oldest_enqueued_ms.saturating_add(d.expire_after.as_millis() as i64);
        if let Some(rate) = &mut r.rate {
            while let Some(w) = rate.try_take(Instant::now()) {
                if self.sleep_or_stop(w).await {
                    return Outcome::Stopped;
                }
            }
        }
        let mut attempt = 0u32;
        let mut last_error = String::new();
        loop {
            if now_ms() >= expires_at {
                return Outcome::Expired(last_error);
            }
            let wait = r.breaker.wait(Instant::now());
            if !wait.is_zero() {
                self.set_circuit(CircuitState::Open);
                if self.sleep_or_stop(wait).await {
                    return Outcome::Stopped;
                }
            }
            self.set_circuit(r.breaker.state(Instant::now()));
            attempt += 1;
            let mut stop = self.stop.clone();
            let res = tokio::select! {
                r = tokio::time::timeout(d.timeout, self.sink.send(&n)) => match r {
                    Ok(r) => r,
                    Err(_) => Err(SinkError::retryable(format!("timed out after {:?}", d.timeout))),
                },
                // It may have arrived: it stays queued and goes again with the same key.
                _ = stopped(&mut stop) => return Outcome::Stopped,
            };
            note(&self.journal, &n.alert.id, || Happening::Attempt {
                sink: self.name.clone(),
                attempt,
                outcome: match &res {
                    Ok(()) => AttemptOutcome::Delivered,
                    Err(e) if !e.retryable => AttemptOutcome::Rejected,
                    Err(_) => AttemptOutcome::Failed,
                },
                detail: res.as_ref().err().map(|e| e.to_string()),
            });
            match res {
                Ok(()) => {
                    r.breaker.on_success();
                    self.set_circuit(CircuitState::Closed);
                    self.recovered(r);
                    return Outcome::Delivered;
                }
                Err(e) if !e.retryable => {
                    // The receiver answered: it is up, it just refuses this one.
                    r.breaker.on_success();
                    self.set_circuit(CircuitState::Closed);
                    self.recovered(r);
                    return Outcome::Rejected(e);
                }
                Err(e) => {
                    r.breaker.on_failure(Instant::now());
                    self.set_circuit(r.breaker.state(Instant::now()));
                    self.counters.retried.fetch_add(1, Ordering::Relaxed);
                    if r.failing_since.is_none() {
                        r.failing_since = Some(Instant::now());
                        tracing::warn!(
                            sink = %self.name,
                            error = %e,
                            waiting = self.queue.stats().items,
                            "delivery failing; notifications stay queued and are retried until {} old",
                            human(d.expire_after)
                        );
                    } else {
                        tracing::debug!(sink = %self.name, alert = %n.alert.id, attempt, error = %e, "delivery failed, retrying");
                    }
                    last_error = e.to_string();
                    let w = backoff(d.initial_backoff, d.max_backoff, attempt, r.rng.gen::<f64>())
                        .max(e.retry_after.unwrap_or_default().min(d.max_backoff));
                    let until_expiry = Duration::from_millis(expires_at.saturating_sub(now_ms()).max(0) as u64);
                    if self.sleep_or_stop(w.min(until_expiry)).await {
                        return Outcome::Stopped;
                    }
                }
            }
        }
    }

    fn recovered(&self, r: &mut Retry) {
        if let Some(since) = r.failing_since.take() {
            tracing::info!(
                sink = %self.name,
                failing_for = %human(since.elapsed()),
                waiting = self.queue.stats().items,
                "delivery works again; draining the queue"
            );
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
        note(&self.journal, &n.alert.id, || Happening::DeadLettered { sink: self.name.clone(), reason: reason.into() });
        match self.dead_letter.write(&self.name, reason, n) {
            Ok(()) => {
                self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(sink = %self.name, alert = %n.alert.id, error = %e, "dead-letter write failed"),
        }
    }
}

/// `90s`, `5m`, `24h`: a duration as people write it.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else if s > 0 {
        format!("{s}s")
    } else {
        format!("{}ms", d.as_millis())
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

/// What an alert's actions ask the revoker for: its token revoked, or its address banned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Enforce {
    Revoke,
    Ban,
}

async fn revoke_worker(
    revoker: Arc<Revoker>,
    mut rx: mpsc::Receiver<(Alert, bool, Enforce)>,
    counters: Arc<SinkCounters>,
    dead_letter: Arc<DeadLetter>,
    stop: watch::Receiver<bool>,
    journal: Option<Arc<dyn AlertJournal>>,
) {
    while let Some((alert, force_dry_run, what)) = rx.recv().await {
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
        let outcome = match what {
            Enforce::Revoke => revoker.handle_alert(&alert, force_dry_run, now).await,
            Enforce::Ban => {
                let req = crate::actions::revocation::RevocationRequest::ban_from_alert(&alert, force_dry_run);
                revoker.handle(req, now).await
            }
        };
        note(&journal, &alert.id, || Happening::Enforcement {
            action: match what {
                Enforce::Revoke => "revoke",
                Enforce::Ban => "ban",
            }
            .into(),
            verdict: outcome.decision.verdict.as_str().to_string(),
            dry_run: outcome.decision.dry_run,
            detail: if outcome.audited {
                outcome.decision.detail.clone()
            } else {
                "the revocation audit log could not be written: nothing was done".into()
            },
            target_failures: outcome.target_failures,
        });
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

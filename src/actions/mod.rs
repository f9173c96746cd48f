//! Actions: where alerts go once a detector raised them (sinks, revocation).
//!
//! The source (Kafka or a file) hands every alert to an [`AlertHandoff`] and
//! commits the input offset only once the handoff returned `Ok`: at-least-once.
//! [`Dispatcher`] is the live handoff: de-duplication, grouping, per-sink queues,
//! retries, circuit breakers, a dead-letter file, and revocation through
//! [`revocation::Revoker`].

pub mod config;
pub mod deadletter;
pub mod dispatcher;
pub mod lifecycle;
pub mod queue;
pub mod revocation;
pub mod secret;
pub mod siem;
pub mod sink;
pub mod sinks;

pub use sinks::{alertmanager, email, file, webhook};

pub use config::ActionsSettings;
pub use dispatcher::{Dispatcher, DispatcherStats, Receipt, SinkEntry, SinkStats};
pub use lifecycle::{CircuitState, Notification, Status};
pub use sink::{DirectSink, Sink, SinkError};

use crate::event::Alert;

/// Why an alert could not be handed off.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// The bounded queue is full and the overflow output failed too.
    #[error("alert queue full and overflow output failed: {0}")]
    Overflow(String),
    /// A sink delivered to inside the handoff (the Kafka alerts topic) did not acknowledge it.
    #[error("{0}")]
    Undelivered(String),
    /// The dispatcher is shutting down.
    #[error("alert dispatcher is shut down")]
    Closed,
}

/// Takes alerts from the engine. `handoff` returns once the alert is queued
/// (or written to the overflow/dead-letter output), so the caller may commit
/// the input that caused it. It must never block detection for long: a slow
/// sink is the dispatcher's business, not the source's.
pub trait AlertHandoff: Send + Sync {
    fn handoff(&self, alert: &Alert) -> Result<(), HandoffError>;
}

/// What became of an alert after its handoff, for the console's timeline
/// (`GET /api/v1/alerts/{id}`). Details are the sinks' own error messages, which name no
/// secret.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Happening {
    /// Put in a sink's queue.
    Queued { sink: String },
    /// One try to deliver it (or the group it went in) to a sink.
    Attempt { sink: String, attempt: u32, outcome: AttemptOutcome, detail: Option<String> },
    /// Sent in one notification with other alerts of its group, under `head`'s.
    Grouped { sink: String, head: String, count: usize },
    /// Given up on: written to the dead-letter file.
    DeadLettered { sink: String, reason: String },
    /// Its `resolved` notification was queued (no alert like it for `resolve_after`).
    Resolved { sink: String },
    /// A revocation or ban decision asked by the alert's actions.
    Enforcement { action: String, verdict: String, dry_run: bool, detail: String, target_failures: u32 },
}

/// How one delivery attempt went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Delivered,
    /// The receiver refused it; it is not tried again.
    Rejected,
    /// It failed in a way worth retrying.
    Failed,
}

/// Where the dispatcher tells what became of each alert ([`crate::admin::history`]).
pub trait AlertJournal: Send + Sync {
    /// `at`: wall-clock milliseconds.
    fn note(&self, alert_id: &str, at: crate::event::Millis, what: Happening);
}

/// Writes alerts as JSON lines to a writer; used by replay and as the simplest handoff.
pub struct JsonLinesHandoff<W: std::io::Write + Send> {
    out: std::sync::Mutex<W>,
}

impl<W: std::io::Write + Send> JsonLinesHandoff<W> {
    pub fn new(w: W) -> Self {
        JsonLinesHandoff { out: std::sync::Mutex::new(w) }
    }
}

impl<W: std::io::Write + Send> AlertHandoff for JsonLinesHandoff<W> {
    fn handoff(&self, alert: &Alert) -> Result<(), HandoffError> {
        let mut w = self.out.lock().map_err(|_| HandoffError::Closed)?;
        serde_json::to_writer(&mut *w, alert).map_err(|e| HandoffError::Overflow(e.to_string()))?;
        w.write_all(b"\n").and_then(|_| w.flush()).map_err(|e| HandoffError::Overflow(e.to_string()))
    }
}

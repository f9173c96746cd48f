//! The alert dispatcher's and the revoker's counters as Prometheus metrics, read
//! when `/metrics` is scraped (the dispatcher keeps its own atomics; nothing is
//! counted twice). Label values are sink names from the config and closed sets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use crate::actions::revocation::Revoker;
use crate::actions::Dispatcher;

/// Registers with a [`prometheus::Registry`]; see the README's metric table.
pub struct ActionsCollector {
    dispatcher: Arc<Dispatcher>,
    revoker: Option<Arc<Revoker>>,
    notifications: IntCounterVec,
    queue_depth: IntGaugeVec,
    queue_bytes: IntGaugeVec,
    queue_oldest_age: prometheus::GaugeVec,
    circuit_open: IntGaugeVec,
    alerts: IntCounterVec,
    revocations: IntCounterVec,
    state_write_failures: IntCounterVec,
    /// Last value seen per series, so counters advance by the difference.
    seen: Mutex<HashMap<(&'static str, String), u64>>,
}

impl ActionsCollector {
    pub fn new(dispatcher: Arc<Dispatcher>, revoker: Option<Arc<Revoker>>) -> prometheus::Result<Self> {
        Ok(ActionsCollector {
            dispatcher,
            revoker,
            notifications: IntCounterVec::new(
                Opts::new("gatewatch_notifications_total", "Notifications per sink, by result"),
                &["sink", "result"],
            )?,
            queue_depth: IntGaugeVec::new(
                Opts::new("gatewatch_notification_queue_depth", "Notifications waiting in each sink's queue"),
                &["sink"],
            )?,
            queue_bytes: IntGaugeVec::new(
                Opts::new(
                    "gatewatch_notification_queue_bytes",
                    "Bytes of the notifications waiting in each sink's durable queue",
                ),
                &["sink"],
            )?,
            queue_oldest_age: prometheus::GaugeVec::new(
                Opts::new(
                    "gatewatch_notification_queue_oldest_age_seconds",
                    "Age of the oldest notification waiting in each sink's queue (0 when empty)",
                ),
                &["sink"],
            )?,
            circuit_open: IntGaugeVec::new(
                Opts::new("gatewatch_sink_circuit_open", "1 while a sink's circuit breaker is open or half-open"),
                &["sink"],
            )?,
            alerts: IntCounterVec::new(
                Opts::new("gatewatch_dispatcher_alerts_total", "Alerts given to the dispatcher, by outcome"),
                &["outcome"],
            )?,
            revocations: IntCounterVec::new(
                Opts::new("gatewatch_revocation_decisions_total", "Revocation decisions, by verdict"),
                &["verdict"],
            )?,
            state_write_failures: IntCounterVec::new(
                Opts::new(
                    "gatewatch_revocation_state_write_failures_total",
                    "Revocation state snapshots that could not be written",
                ),
                &[],
            )?,
            seen: Mutex::new(HashMap::new()),
        })
    }

    fn advance(&self, counter: &IntCounterVec, name: &'static str, labels: &[&str], now: u64) {
        let Ok(mut seen) = self.seen.lock() else { return };
        let last = seen.entry((name, labels.join("\u{1f}"))).or_insert(0);
        if now > *last {
            counter.with_label_values(labels).inc_by(now - *last);
            *last = now;
        } else {
            counter.with_label_values(labels);
        }
    }

    fn refresh(&self) {
        let st = self.dispatcher.stats();
        for s in &st.sinks {
            for (result, v) in [
                ("sent", s.sent),
                ("retried", s.retried),
                ("failed", s.failed),
                ("expired", s.expired),
                ("overflow", s.overflow),
                ("dead_lettered", s.dead_lettered),
            ] {
                self.advance(&self.notifications, "notifications", &[&s.name, result], v);
            }
            self.queue_depth.with_label_values(&[&s.name]).set(s.queue_depth as i64);
            if s.kind != "revoke" {
                self.queue_bytes.with_label_values(&[&s.name]).set(s.queue_bytes as i64);
                let age = s.oldest_age.map_or(0.0, |a| a.as_secs_f64());
                self.queue_oldest_age.with_label_values(&[&s.name]).set(age);
            }
            let open = !matches!(s.circuit, crate::actions::lifecycle::CircuitState::Closed);
            self.circuit_open.with_label_values(&[&s.name]).set(open as i64);
        }
        for (outcome, v) in [("received", st.received), ("duplicate", st.duplicates), ("grouped", st.grouped)] {
            self.advance(&self.alerts, "alerts", &[outcome], v);
        }
        if let Some(r) = &self.revoker {
            let stats = r.stats();
            for verdict in crate::actions::revocation::policy::Verdict::ALL {
                let v = stats.get(&verdict).copied().unwrap_or(0);
                self.advance(&self.revocations, "revocations", &[verdict.as_str()], v);
            }
            self.advance(&self.state_write_failures, "state_write_failures", &[], r.state_write_failures());
        }
    }
}

impl Collector for ActionsCollector {
    fn desc(&self) -> Vec<&Desc> {
        [
            self.notifications.desc(),
            self.queue_depth.desc(),
            self.queue_bytes.desc(),
            self.queue_oldest_age.desc(),
            self.circuit_open.desc(),
            self.alerts.desc(),
            self.revocations.desc(),
            self.state_write_failures.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.refresh();
        [
            self.notifications.collect(),
            self.queue_depth.collect(),
            self.queue_bytes.collect(),
            self.queue_oldest_age.collect(),
            self.circuit_open.collect(),
            self.alerts.collect(),
            self.revocations.collect(),
            self.state_write_failures.collect(),
        ]
        .concat()
    }
}

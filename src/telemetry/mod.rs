//! Metric definitions. The Prometheus registry is passed in (never global), every
//! handle is registered once at start-up, and no label takes an unbounded value:
//! labels are reject reasons (a closed set), detector kinds and detector ids
//! (bounded by the detector files) and fixed words.

pub mod actions;
pub mod admin;
pub mod labels;

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::normalize::RejectReason;
use labels::{Direction, Outcome, Rebalance, RepartitionRecord};

/// Every metric the live pipeline exports.
#[derive(Clone)]
pub struct Metrics {
    /// Kafka messages read (live, not rebuild).
    pub messages: IntCounter,
    /// Detector reloads (SIGHUP), by result (`ok`, `error`).
    pub detector_reloads: IntCounterVec,
    /// 1 if the last detector reload succeeded (or none was asked for), 0 if it failed.
    pub detector_reload_ok: IntGauge,
    /// When the rule set in force was loaded, in Unix seconds.
    pub detector_loaded_at: Gauge,
    /// Rules in force, by detector kind (`sigma`: one per Sigma rule or correlation).
    pub rules_loaded: IntGaugeVec,
    /// Records normalized into events (live).
    pub events: IntCounter,
    /// Records rejected, by reason.
    pub rejected: IntCounterVec,
    /// Alerts handed off, by detector kind.
    pub alerts: IntCounterVec,
    /// Alerts raised while rebuilding state below the committed offset (already sent before).
    pub alerts_muted: IntCounter,
    /// Handoff attempts that failed (retried with backoff).
    pub handoff_failures: IntCounter,
    /// Records sent to the dead-letter topic.
    pub dead_letters: IntCounter,
    /// Dead-letter records the broker did not accept.
    pub dead_letter_failures: IntCounter,
    /// Scrubbed copies sent to the scrubbed-copy topic, and those the broker did not accept.
    pub scrubbed_records: IntCounter,
    pub scrubbed_record_failures: IntCounter,
    /// Secrets replaced in the record copies gatewatch writes (scrubbed-copy and dead-letter
    /// topics), by kind and place class. Labels are closed sets; never a secret or fingerprint.
    pub secrets_scrubbed: IntCounterVec,
    /// Credentials found where they do not belong (a token in the URL, basic auth, a key in a
    /// path), by kind and place class, counted on every live record.
    pub credential_exposures: IntCounterVec,
    /// Messages re-read to rebuild state after an assignment.
    pub rebuild_messages: IntCounter,
    /// Events dropped for arriving later than the allowed lateness.
    pub late_events: IntCounter,
    /// Events whose time was ahead of their Kafka timestamp by more than `max_future_skew`,
    /// clamped to it; and events refused for a time outside year 1970–9999.
    pub clamped_future_events: IntCounter,
    pub out_of_range_events: IntCounter,
    /// Messages that were not valid UTF-8, read with the invalid bytes replaced.
    pub lossy_utf8_messages: IntCounter,
    /// Events waiting in reorder buffers, by stage ([`crate::source::kafka::Stage`]).
    pub buffered_events: IntGaugeVec,
    /// Keys held in detector state across assigned partitions, by stage.
    pub state_keys: IntGaugeVec,
    /// Keys evicted from detector state, by detector id (the file's `id`) and reason
    /// ([`crate::state::EvictionReason`]: idle, cap, cap_protected).
    pub state_evictions: IntCounterVec,
    /// Sum and maximum of (high watermark − next offset) over assigned partitions, by stage.
    pub lag_messages: IntGaugeVec,
    pub lag_max_messages: IntGaugeVec,
    /// Partitions this instance holds, and how many of them are still rebuilding, by stage.
    pub assigned_partitions: IntGaugeVec,
    pub rebuilding_partitions: IntGaugeVec,
    /// Each consumer's part of the per-stage gauges above: a process may run several consumers
    /// of one stage (`[kafka] consumers`), and the gauges show their sum.
    pub consumers: std::sync::Arc<ConsumerTotals>,
    /// Repartition records and their bytes, by direction (sent, received) and kind (event, heartbeat).
    pub repartition_records: IntCounterVec,
    pub repartition_bytes: IntCounterVec,
    /// Repartition records dropped: sent again by an ingest that restarted, or unreadable.
    pub repartition_duplicates: IntCounter,
    pub repartition_undecodable: IntCounter,
    /// Repartition records the broker did not accept (after librdkafka's retries).
    pub repartition_failures: IntCounter,
    /// Largest spread of upstream watermarks seen by one detect partition (seconds).
    pub watermark_skew: Gauge,
    /// Detect partitions that have not yet heard from every input partition (time stands still there).
    pub detect_waiting_partitions: IntGauge,
    /// Rebalance events, by kind (assign, revoke, lost, error).
    pub rebalances: IntCounterVec,
    /// Offset commits, by result (ok, error).
    pub commits: IntCounterVec,
    /// Wall time from the Kafka timestamp of the message that completed a detection to the alert handoff.
    pub alert_latency: Histogram,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        }
        fn gauge_vec(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["stage"])?;
            r.register(Box::new(g.clone()))?;
            Ok(g)
        }
        fn counter_vec(r: &Registry, name: &str, help: &str, label: &str) -> prometheus::Result<IntCounterVec> {
            counter_vec_n(r, name, help, &[label])
        }
        fn counter_vec_n(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        }
        let r = registry;
        let m = Metrics {
            consumers: Default::default(),
            messages: counter(r, "gatewatch_kafka_messages_total", "Kafka messages read (excluding state rebuild)")?,
            events: counter(r, "gatewatch_events_total", "Access-log records normalized into events")?,
            rejected: counter_vec(
                r,
                "gatewatch_records_rejected_total",
                "Records that could not be read, by reason",
                "reason",
            )?,
            alerts: counter_vec(r, "gatewatch_alerts_total", "Alerts handed off, by detector kind", "detector")?,
            alerts_muted: counter(
                r,
                "gatewatch_alerts_muted_total",
                "Alerts raised while rebuilding state below the committed offset (already handed off before)",
            )?,
            handoff_failures: counter(
                r,
                "gatewatch_alert_handoff_failures_total",
                "Alert handoffs that failed and were retried",
            )?,
            dead_letters: counter(
                r,
                "gatewatch_dead_letter_records_total",
                "Rejected records sent to the dead-letter topic",
            )?,
            dead_letter_failures: counter(
                r,
                "gatewatch_dead_letter_failures_total",
                "Dead-letter records the broker did not accept after retries",
            )?,
            scrubbed_records: counter(
                r,
                "gatewatch_scrubbed_records_total",
                "Scrubbed copies of records sent to the scrubbed-copy topic",
            )?,
            scrubbed_record_failures: counter(
                r,
                "gatewatch_scrubbed_record_failures_total",
                "Scrubbed copies the broker did not accept after retries",
            )?,
            detector_reloads: counter_vec(
                r,
                "gatewatch_detector_reloads_total",
                "Reloads of the detector files asked for by SIGHUP, by result (error: the running set was kept)",
                "result",
            )?,
            detector_reload_ok: gauge(
                r,
                "gatewatch_detector_last_reload_successful",
                "1 if the last reload of the detector files succeeded (or none was asked for), 0 if it failed",
            )?,
            detector_loaded_at: {
                let g = Gauge::new(
                    "gatewatch_detector_last_reload_success_timestamp_seconds",
                    "When the detector files in force were loaded (start or last successful reload), Unix seconds",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            rules_loaded: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "gatewatch_rules_loaded",
                        "Rules in force, by detector kind (sigma: one per Sigma rule or correlation that raises alerts)",
                    ),
                    &["kind"],
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            secrets_scrubbed: counter_vec_n(
                r,
                "gatewatch_secrets_scrubbed_total",
                "Secrets replaced by a marker in record copies gatewatch writes, by kind and place",
                &["kind", "place"],
            )?,
            credential_exposures: counter_vec_n(
                r,
                "gatewatch_credential_exposures_total",
                "Credentials found where they do not belong (URL, path, user agent, basic auth), by kind and place",
                &["kind", "place"],
            )?,
            rebuild_messages: counter(
                r,
                "gatewatch_kafka_rebuild_messages_total",
                "Messages re-read to rebuild state after an assignment",
            )?,
            late_events: counter(r, "gatewatch_late_events_total", "Events dropped for arriving behind the watermark")?,
            clamped_future_events: counter(
                r,
                "gatewatch_clamped_future_events_total",
                "Events whose time was ahead of their Kafka timestamp by more than max_future_skew, clamped to it",
            )?,
            out_of_range_events: counter(
                r,
                "gatewatch_out_of_range_events_total",
                "Events refused for an event time before 1970 or after 9999",
            )?,
            lossy_utf8_messages: counter(
                r,
                "gatewatch_lossy_utf8_messages_total",
                "Messages that were not valid UTF-8, read with the invalid bytes replaced",
            )?,
            buffered_events: gauge_vec(
                r,
                "gatewatch_buffered_events",
                "Events waiting in the event-time reorder buffers, by stage",
            )?,
            state_keys: gauge_vec(r, "gatewatch_state_keys", "Keys held in detector state, by stage")?,
            state_evictions: counter_vec_n(
                r,
                "gatewatch_state_evictions_total",
                "Keys evicted from detector state, by detector id and reason (idle; cap; cap_protected: \
                 a key with a recent failure, evicted because every key had one)",
                &["detector", "reason"],
            )?,
            lag_messages: gauge_vec(
                r,
                "gatewatch_kafka_lag_messages",
                "Messages behind the high watermark, summed over assigned partitions, by stage",
            )?,
            lag_max_messages: gauge_vec(
                r,
                "gatewatch_kafka_lag_max_messages",
                "Messages behind the high watermark on the furthest-behind partition, by stage",
            )?,
            assigned_partitions: gauge_vec(
                r,
                "gatewatch_kafka_assigned_partitions",
                "Partitions assigned to this instance, by stage",
            )?,
            rebuilding_partitions: gauge_vec(
                r,
                "gatewatch_kafka_rebuilding_partitions",
                "Assigned partitions still re-reading below their committed offset, by stage",
            )?,
            repartition_records: counter_vec_n(
                r,
                "gatewatch_repartition_records_total",
                "Repartition-topic records, by direction (sent by ingest, received by detect) and kind (event, heartbeat)",
                &["direction", "kind"],
            )?,
            repartition_bytes: counter_vec(
                r,
                "gatewatch_repartition_bytes_total",
                "Bytes of repartition-topic records (before compression), by direction",
                "direction",
            )?,
            repartition_duplicates: counter(
                r,
                "gatewatch_repartition_duplicates_total",
                "Repartition records dropped because an ingest that restarted sent them again",
            )?,
            repartition_undecodable: counter(
                r,
                "gatewatch_repartition_undecodable_total",
                "Repartition records that could not be read (another encoding version, corruption), skipped",
            )?,
            repartition_failures: counter(
                r,
                "gatewatch_repartition_failures_total",
                "Repartition records the broker did not accept after retries (their input offsets are not committed)",
            )?,
            watermark_skew: {
                let g = Gauge::new(
                    "gatewatch_watermark_skew_seconds",
                    "Largest spread between the newest and oldest input-partition watermark one detect partition hears",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            detect_waiting_partitions: gauge(
                r,
                "gatewatch_detect_waiting_partitions",
                "Detect partitions that have not heard from every input partition yet (their time stands still)",
            )?,
            rebalances: counter_vec(
                r,
                "gatewatch_kafka_rebalances_total",
                "Consumer-group rebalance events, by kind",
                "kind",
            )?,
            commits: counter_vec(r, "gatewatch_kafka_commits_total", "Offset commits, by result", "result")?,
            alert_latency: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "gatewatch_alert_latency_seconds",
                        "Wall time from the Kafka timestamp of the message that completed a detection to its handoff",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                    ]),
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
        };
        // Pre-create the closed label sets so dashboards see zeros, not gaps.
        for reason in RejectReason::ALL {
            m.rejected.with_label_values(&[reason.as_str()]);
        }
        for kind in crate::detectors::kinds() {
            m.alerts.with_label_values(&[kind]);
            m.rules_loaded.with_label_values(&[kind]);
        }
        for kind in Rebalance::ALL {
            m.rebalances.with_label_values(&[kind.as_str()]);
        }
        for result in Outcome::ALL {
            m.commits.with_label_values(&[result.as_str()]);
            m.detector_reloads.with_label_values(&[result.as_str()]);
        }
        m.detector_reload_ok.set(1);
        #[allow(clippy::disallowed_methods)] // wall time of the load, for operators
        m.detector_loaded_at.set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        let build = IntGaugeVec::new(
            Opts::new("gatewatch_build_info", "1, labelled with the version of gatewatch running"),
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        r.register(Box::new(build))?;
        for direction in Direction::ALL {
            m.repartition_bytes.with_label_values(&[direction.as_str()]);
            for kind in RepartitionRecord::ALL {
                m.repartition_records.with_label_values(&[direction.as_str(), kind.as_str()]);
            }
        }
        Ok(m)
    }
}

/// What one consumer holds now, as the per-stage gauges count it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsumerPart {
    pub assigned: i64,
    pub rebuilding: i64,
    pub lag_sum: i64,
    pub lag_max: i64,
    pub keys: i64,
    pub buffered: i64,
}

/// The parts of every consumer in the process, by stage.
#[derive(Debug, Default)]
pub struct ConsumerTotals {
    next: std::sync::atomic::AtomicU64,
    parts: std::sync::Mutex<std::collections::HashMap<u64, (&'static str, ConsumerPart)>>,
}

impl ConsumerTotals {
    /// A new consumer's id.
    pub fn id(&self) -> u64 {
        self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Records consumer `id`'s part and returns its stage's totals: sums, and the largest lag.
    pub fn publish(&self, id: u64, stage: &'static str, part: ConsumerPart) -> ConsumerPart {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        parts.insert(id, (stage, part));
        parts.values().filter(|(s, _)| *s == stage).fold(ConsumerPart::default(), |t, (_, p)| ConsumerPart {
            assigned: t.assigned + p.assigned,
            rebuilding: t.rebuilding + p.rebuilding,
            lag_sum: t.lag_sum + p.lag_sum,
            lag_max: t.lag_max.max(p.lag_max),
            keys: t.keys + p.keys,
            buffered: t.buffered + p.buffered,
        })
    }

    /// Consumer `id` has ended: its part no longer counts.
    pub fn remove(&self, id: u64) {
        self.parts.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

impl Metrics {
    /// Creates the scrub and exposure series of every kind the scrubber reports at zero, so
    /// their panels show 0 from the start, not "No data" (the place label is one of the closed
    /// set; the panels sum over it).
    pub fn init_kinds(&self, kinds: &[&str]) {
        for kind in kinds {
            self.secrets_scrubbed.with_label_values(&[kind, crate::scrub::PlaceClass::Text.as_str()]);
            self.credential_exposures.with_label_values(&[kind, crate::scrub::PlaceClass::Query.as_str()]);
        }
    }

    /// Creates a stage's gauges at zero: a scrape before its first assignment shows 0.
    pub fn init_stage(&self, stage: &str) {
        for g in [
            &self.buffered_events,
            &self.state_keys,
            &self.lag_messages,
            &self.lag_max_messages,
            &self.assigned_partitions,
            &self.rebuilding_partitions,
        ] {
            g.with_label_values(&[stage]);
        }
    }

    /// Sets `gatewatch_rules_loaded` from the kinds of the rules in force.
    pub fn set_rules_loaded<'a>(&self, kinds: impl IntoIterator<Item = &'a str>) {
        let mut n: std::collections::BTreeMap<&str, i64> =
            crate::detectors::kinds().into_iter().map(|k| (k, 0)).collect();
        for k in kinds {
            *n.entry(k).or_insert(0) += 1;
        }
        for (k, v) in n {
            self.rules_loaded.with_label_values(&[k]).set(v);
        }
    }

    /// Creates the eviction counters of each detector id at zero, for every reason.
    pub fn init_rules<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            for reason in crate::state::EvictionReason::ALL {
                self.state_evictions.with_label_values(&[id, reason.as_str()]);
            }
        }
    }

    /// Messages behind, summed over every stage's assigned partitions.
    pub fn lag_total(&self) -> i64 {
        ["single", "ingest", "detect"].iter().map(|s| self.lag_messages.with_label_values(&[s]).get()).sum()
    }

    /// Adds what a scrubber replaced to `gatewatch_secrets_scrubbed_total`.
    pub fn record_scrubbed(&self, stats: &crate::scrub::ScrubStats) {
        for (kind, place, n) in stats.by_kind_and_place() {
            self.secrets_scrubbed.with_label_values(&[kind, place]).inc_by(n);
        }
    }

    /// Counts an event's exposures in `gatewatch_credential_exposures_total`.
    pub fn record_exposures(&self, exposures: &[crate::event::Exposure]) {
        for e in exposures {
            let place = crate::scrub::PlaceClass::of_place(&e.place).as_str();
            // Kinds are rule names from the code and the config, never text from a record.
            self.credential_exposures.with_label_values(&[e.kind.as_str(), place]).inc();
        }
    }
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let enc = prometheus::TextEncoder::new();
    if enc.encode(&registry.gather(), &mut buf).is_err() {
        return String::new();
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_and_renders_closed_label_sets() {
        let r = Registry::new();
        let m = Metrics::register(&r).unwrap();
        m.events.inc_by(3);
        let text = render(&r);
        assert!(text.contains("gatewatch_events_total 3"), "{text}");
        assert!(text.contains("gatewatch_records_rejected_total{reason=\"not_json\"} 0"));
        assert!(text.contains("gatewatch_alerts_total{detector=\"token_reuse\"} 0"));
        let mut st = crate::scrub::ScrubStats::default();
        st.record("jwt", crate::scrub::PlaceClass::Query);
        st.record("jwt", crate::scrub::PlaceClass::Query);
        m.record_scrubbed(&st);
        let fp = crate::scrub::Fingerprinter::new(b"k").fingerprint(b"secret");
        let ex = |kind: &str| crate::event::Exposure {
            kind: kind.into(),
            place: "query:access_token".into(),
            fingerprint: fp,
        };
        m.record_exposures(&[ex("jwt"), ex("basic_auth")]);
        let text = render(&r);
        assert!(text.contains("gatewatch_secrets_scrubbed_total{kind=\"jwt\",place=\"query\"} 2"), "{text}");
        assert!(text.contains("gatewatch_credential_exposures_total{kind=\"jwt\",place=\"query\"} 1"), "{text}");
        assert!(text.contains("gatewatch_credential_exposures_total{kind=\"basic_auth\",place=\"query\"} 1"), "{text}");
        // A second registration in the same registry is refused, not duplicated.
        assert!(Metrics::register(&r).is_err());
    }
}

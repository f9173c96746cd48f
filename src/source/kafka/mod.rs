//! The Kafka source: a consumer-group member that runs one [`Pipeline`] per
//! assigned partition and stores an offset only once everything the message
//! caused is handed off (at-least-once).
//!
//! How it fits together:
//! - One thread owns a `BaseConsumer` and does all the work: poll, normalize,
//!   detect, hand off, store offsets. Processing is synchronous, so a slow
//!   handoff slows polling and librdkafka's bounded prefetch queue fills: that
//!   is the backpressure, nothing else buffers.
//! - [`SourceContext::rebalance`] runs inside `poll` on that same thread. On
//!   assignment it reads the committed offset `c` and the Kafka time `T` stored
//!   with it, seeks each partition back to the first offset at `T - horizon`
//!   (`offsets_for_times`; by count when the broker cannot look up by time),
//!   and marks offsets below `c` as *rebuild*: processed to rebuild detector
//!   state, alerts muted (they were handed off before `c` was committed). On
//!   revocation it stores and commits what was handed off, then drops the state.
//! - Offsets are stored with `enable.auto.offset.store=false` and committed by
//!   librdkafka's auto-commit, plus a synchronous commit after an alert, on
//!   revocation and at shutdown. The stored metadata `gatewatch:ts=<ms>` is the
//!   Kafka timestamp of the last handled message: the next owner's `T`.
//!
//! Guarantees and limits are spelled out in the README, *Running on Kafka*.

pub mod config;
pub mod dead_letter;
pub mod output;
#[cfg(feature = "simulate")]
pub mod produce;
pub mod repartition;
pub mod revocations;
pub mod scrubbed_copy;
pub mod trouble;
pub mod worker;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use crate::actions::AlertHandoff;
use crate::engine::PipelineFactory;
use crate::event::Alert;
use crate::scrub::message::scrub_message;
use crate::scrub::ScrubStats;
use crate::state::EvictionReason;
use crate::telemetry::labels::{Outcome, Rebalance};
use crate::telemetry::Metrics;

pub use config::{KafkaSettings, StartFrom};
pub use dead_letter::DeadLetter;
pub use worker::{Incoming, NewWorker, PartitionWorker, Stage};

/// Builds a fresh pipeline (normalizer, engine, rules) for each newly assigned partition.
pub type NewPipeline = Arc<PipelineFactory>;

/// Why the source could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error("could not start the consumer thread: {0}")]
    Thread(std::io::Error),
    #[error("consumer thread panicked")]
    Panicked,
    #[error(
        "shutdown grace period ({0:?}) exceeded; exiting without a final commit (uncommitted messages will be re-read)"
    )]
    GraceExceeded(Duration),
}

/// Prefix of the commit metadata gatewatch writes.
const META_PREFIX: &str = "gatewatch:ts=";
/// Alert ids remembered per partition from the rebuild, to skip re-raising them just after it.
const MUTED_IDS_CAP: usize = 10_000;

/// Readiness as the HTTP endpoints see it.
pub struct Health {
    assigned: AtomicI64,
    rebuilding: AtomicI64,
    /// Largest lag over assigned partitions; -1 while some partition's lag is unknown.
    lag_max: AtomicI64,
    running: AtomicBool,
    ready_max_lag: i64,
    stage: Stage,
}

impl Health {
    pub fn new(ready_max_lag: i64) -> Self {
        Self::for_stage(ready_max_lag, Stage::Single)
    }

    pub fn for_stage(ready_max_lag: i64, stage: Stage) -> Self {
        Health {
            assigned: AtomicI64::new(0),
            rebuilding: AtomicI64::new(0),
            lag_max: AtomicI64::new(-1),
            running: AtomicBool::new(false),
            ready_max_lag,
            stage,
        }
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The consumer thread is alive.
    pub fn live(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// `Ok` when partitions are assigned and every one is within the configured lag.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.live() {
            return Err("consumer is not running".into());
        }
        let assigned = self.assigned.load(Ordering::Relaxed);
        if assigned == 0 {
            return Err("no partitions assigned".into());
        }
        match self.lag_max.load(Ordering::Relaxed) {
            lag if lag < 0 => Err("lag not known yet".into()),
            lag if lag > self.ready_max_lag => Err(format!("lag {lag} > ready_max_lag {}", self.ready_max_lag)),
            _ => Ok(()),
        }
    }

    pub fn assigned(&self) -> i64 {
        self.assigned.load(Ordering::Relaxed)
    }
}

/// One assigned partition's pipeline and position.
struct PartitionState {
    pipeline: Box<dyn PartitionWorker>,
    /// Offsets below this were handled by an earlier owner: alerts are muted.
    mute_below: i64,
    /// The earlier owner's event-time watermark at that commit: it had handed off every alert
    /// completed before it, so such an alert is muted here too, wherever it is raised again (a
    /// rebuilt detect partition can reach the same time later, once it has heard from every
    /// input partition again).
    handed_off_before: i64,
    /// While rebuilding, messages older than this (Kafka time) are skipped unread.
    skip_before_ts: i64,
    /// Offset after the last message handled; -1 before the first.
    next_offset: i64,
    /// Last offset stored for commit.
    stored: i64,
    /// Kafka timestamp of the last message handled.
    last_ts: i64,
    /// From librdkafka statistics: the partition's high watermark and fetch position.
    high: i64,
    fetch_pos: i64,
    /// Statistics reports since the consumer thread last came back from a stall. The first
    /// report after a stall may have been measured during it, so the lag counts as known
    /// again only from the second ([`PartitionState::caught_up`]).
    reports_since_stall: u8,
    muted_ids: HashSet<String>,
    muted_order: VecDeque<String>,
    was_rebuilding: bool,
    seen_late: u64,
    seen_out_of_range: u64,
    /// Per rule (in `pipeline.rules()` order), evictions already counted, by `EvictionReason::ALL`.
    seen_evicted: Vec<[u64; EvictionReason::ALL.len()]>,
}

impl PartitionState {
    fn new(pipeline: Box<dyn PartitionWorker>, mute_below: i64, skip_before_ts: i64) -> Self {
        PartitionState {
            pipeline,
            mute_below,
            handed_off_before: i64::MIN,
            skip_before_ts,
            next_offset: -1,
            stored: -1,
            last_ts: 0,
            high: -1,
            fetch_pos: -1,
            reports_since_stall: 0,
            muted_ids: HashSet::new(),
            muted_order: VecDeque::new(),
            was_rebuilding: mute_below >= 0,
            seen_late: 0,
            seen_out_of_range: 0,
            seen_evicted: Vec::new(),
        }
    }

    fn remember_muted(&mut self, id: &str) {
        if self.muted_ids.insert(id.to_string()) {
            self.muted_order.push_back(id.to_string());
            if self.muted_order.len() > MUTED_IDS_CAP {
                if let Some(old) = self.muted_order.pop_front() {
                    self.muted_ids.remove(&old);
                }
            }
        }
    }

    fn lag(&self) -> Option<i64> {
        if self.high < 0 {
            return None;
        }
        let pos = if self.next_offset >= 0 { self.next_offset } else { self.fetch_pos };
        (pos >= 0).then(|| (self.high - pos).max(0))
    }

    /// A statistics report: the partition's high watermark and fetch position.
    fn note_statistics(&mut self, high: i64, fetch_pos: i64) {
        self.high = high;
        self.fetch_pos = fetch_pos;
        self.reports_since_stall = self.reports_since_stall.saturating_add(1);
    }

    /// The consumer thread came back from a stall: what the statistics said may be stale.
    fn note_stall(&mut self) {
        self.reports_since_stall = 0;
    }

    /// Read to its end, as measured after the consumer thread last stalled. A thread blocked
    /// for seconds (a flush to a slow broker, a handoff being retried) holds statistics from
    /// before the block, when the partition may still have looked empty: judged on those, a
    /// partition with records waiting would be called idle, and its events would arrive late
    /// at every detect partition that stopped waiting for it.
    fn caught_up(&self) -> bool {
        self.reports_since_stall >= 2 && self.lag() == Some(0)
    }
}

/// A gap this long between two ticks of a consumer thread (normally 100 ms apart) is a stall.
const STALL: Duration = Duration::from_secs(1);

type PartitionKey = (String, i32);

/// Everything the consumer thread and the rebalance callback share.
struct Shared {
    parts: Mutex<HashMap<PartitionKey, PartitionState>>,
    new_worker: NewWorker,
    stage: Stage,
    settings: KafkaSettings,
    metrics: Metrics,
    handoff: Arc<dyn AlertHandoff>,
    dead_letter: Option<Arc<DeadLetter>>,
    scrubbed_copy: Option<Arc<output::OutputProducer>>,
    /// Outputs flushed, with the dead letters and scrubbed copies, before offsets are stored
    /// (the repartition topic, for ingest).
    outputs: Vec<Arc<output::OutputProducer>>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
    /// This consumer's id in `metrics.consumers` (its part of the stage gauges).
    consumer_id: u64,
}

/// The consumer's context: rebalances, statistics and logs.
pub struct SourceContext {
    shared: Arc<Shared>,
}

pub(crate) fn log_librdkafka(client: &str, level: RDKafkaLogLevel, fac: &str, msg: &str) {
    // The producers share the consumer's [kafka.librdkafka] table; consumer-only
    // properties there are expected, not worth a warning per producer.
    let level = if fac == "CONFWARN" && client != "consumer" { RDKafkaLogLevel::Debug } else { level };
    // Connection failures come through the error callback as well, rate-limited there.
    let level = if trouble::is_connection_log(fac) { RDKafkaLogLevel::Debug } else { level };
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(client, facility = fac, "librdkafka: {msg}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(client, facility = fac, "librdkafka: {msg}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug => {
            tracing::debug!(client, facility = fac, "librdkafka: {msg}")
        }
    }
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        log_librdkafka("consumer", level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_error("consumer", &error, reason);
    }

    fn stats(&self, stats: Statistics) {
        let mut parts = self.shared.parts.lock().expect("partition lock");
        for (topic, t) in &stats.topics {
            for (p, s) in &t.partitions {
                if let Some(st) = parts.get_mut(&(topic.clone(), *p)) {
                    st.note_statistics(s.hi_offset, s.next_offset);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                trouble::BROKERS.answered();
                self.shared.metrics.rebalances.with_label_values(&[Rebalance::Assign.as_str()]).inc();
                self.shared.on_assign(consumer, tpl);
                let r = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if let Err(e) = r {
                    tracing::error!(error = %e, "could not apply the partition assignment");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                self.shared
                    .metrics
                    .rebalances
                    .with_label_values(&[if lost { Rebalance::Lost } else { Rebalance::Revoke }.as_str()])
                    .inc();
                self.shared.on_revoke(consumer, tpl, lost);
                let r = if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
                if let Err(e) = r {
                    tracing::error!(error = %e, "could not release revoked partitions");
                }
            }
            other => {
                self.shared.metrics.rebalances.with_label_values(&[Rebalance::Error.as_str()]).inc();
                let code: RDKafkaErrorCode = other.into();
                tracing::error!(error = %code, "rebalance error");
                let _ = consumer.unassign();
                self.shared.parts.lock().expect("partition lock").clear();
            }
        }
        self.shared.update_gauges();
    }
}

/// An error reported by a Kafka client's error callback or a poll: connectivity errors go
/// through the rate limit of [`trouble::BROKERS`], one broker's transport failure is a debug
/// line (librdkafka reconnects with backoff), anything else a warning.
pub(crate) fn client_error(client: &str, error: &KafkaError, reason: &str) {
    if trouble::is_connectivity(error) {
        trouble::BROKERS.report(client, error);
    } else if trouble::is_transport(error) {
        tracing::debug!(client, %error, "kafka {client}: {reason}");
    } else {
        tracing::warn!(client, %error, "kafka {client}: {reason}");
    }
}

fn now_ms() -> i64 {
    // Wall clock: only to pick where to start reading when no commit says so. Detection never sees it.
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The Kafka time in the commit metadata (`gatewatch:ts=<ms>[;wm=<ms>]`).
fn parse_meta(meta: &str) -> Option<i64> {
    meta.strip_prefix(META_PREFIX)?.split(';').next()?.parse().ok()
}

/// The event-time watermark the committing owner had reached (`;wm=<ms>`): it had handed off
/// every alert completed before it.
fn parse_meta_watermark(meta: &str) -> Option<i64> {
    meta.strip_prefix(META_PREFIX)?.split(';').find_map(|kv| kv.strip_prefix("wm=")?.parse().ok())
}

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl Shared {
    /// Plans where each newly assigned partition starts, and creates its state.
    fn on_assign(&self, consumer: &BaseConsumer<SourceContext>, tpl: &mut TopicPartitionList) {
        let committed = match consumer.committed_offsets(tpl.clone(), CALL_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                // No way to know what was handed off: start at librdkafka's default position
                // without muting. Nothing is lost; alerts may repeat (same ids).
                tracing::warn!(error = %e, "could not read committed offsets; not rebuilding state");
                TopicPartitionList::new()
            }
        };
        // (topic, partition, committed, target time)
        let mut plans: Vec<(String, i32, i64, i64)> = Vec::new();
        let mut times = TopicPartitionList::new();
        let mut parts = self.parts.lock().expect("partition lock");
        for el in tpl.elements() {
            let key = (el.topic().to_string(), el.partition());
            let committed_el = committed.find_partition(el.topic(), el.partition());
            let meta = committed_el.as_ref().map(|c| c.metadata().to_string()).unwrap_or_default();
            match committed_el.as_ref().map(|c| (c.offset(), parse_meta(&meta))) {
                Some((Offset::Offset(c), t)) if c >= 0 => {
                    let target = t.unwrap_or_else(now_ms).saturating_sub(self.settings.rebuild_horizon_ms);
                    if self.settings.rebuild_horizon_ms > 0 {
                        let _ = times.add_partition_offset(el.topic(), el.partition(), Offset::Offset(target));
                    }
                    plans.push((key.0.clone(), key.1, c, target));
                    let mut st = PartitionState::new((self.new_worker)(el.topic(), el.partition()), c, target);
                    st.handed_off_before = parse_meta_watermark(&meta).unwrap_or(i64::MIN);
                    parts.insert(key, st);
                }
                _ => {
                    tracing::info!(
                        topic = el.topic(),
                        partition = el.partition(),
                        consumer = self.consumer_id,
                        "partition assigned (nothing committed)"
                    );
                    parts.insert(key, PartitionState::new((self.new_worker)(el.topic(), el.partition()), -1, i64::MIN));
                }
            }
        }
        drop(parts);
        let found = if times.count() > 0 {
            consumer.offsets_for_times(times, CALL_TIMEOUT).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "offsets_for_times failed; rebuilding by message count");
                TopicPartitionList::new()
            })
        } else {
            TopicPartitionList::new()
        };
        for (topic, p, c, target) in plans {
            let start = if self.settings.rebuild_horizon_ms == 0 {
                c
            } else {
                match found.find_partition(&topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) if o >= 0 => o.min(c),
                    // The broker found nothing at or after the target time, or cannot look up
                    // by time (some Kafka-compatible brokers): go back by count, skipping
                    // messages older than the target as they come.
                    _ => {
                        let low = consumer.fetch_watermarks(&topic, p, CALL_TIMEOUT).map(|(l, _)| l).unwrap_or(0);
                        low.max(c - self.settings.max_rebuild_messages).min(c)
                    }
                }
            };
            tracing::info!(
                topic,
                partition = p,
                committed = c,
                start,
                rebuild_from_ms = target,
                consumer = self.consumer_id,
                "partition assigned"
            );
            if let Err(e) = tpl.set_partition_offset(&topic, p, Offset::Offset(start)) {
                tracing::warn!(error = %e, topic, partition = p, "could not set the start offset");
            }
        }
    }

    /// Stores and commits what was handed off on the revoked partitions, then drops their state.
    fn on_revoke(&self, consumer: &BaseConsumer<SourceContext>, tpl: &TopicPartitionList, lost: bool) {
        if !lost {
            self.checkpoint(consumer, Some(CommitMode::Sync));
        } else {
            tracing::warn!("partitions lost (session timed out): not committing; the new owner re-reads them");
        }
        let mut parts = self.parts.lock().expect("partition lock");
        for el in tpl.elements() {
            parts.remove(&(el.topic().to_string(), el.partition()));
            tracing::info!(topic = el.topic(), partition = el.partition(), "partition revoked");
        }
    }

    /// Flushes dead letters and scrubbed copies, stores every handled offset, and commits if asked.
    /// Returns false if an output could not be flushed (nothing stored then).
    fn checkpoint(&self, consumer: &BaseConsumer<SourceContext>, commit: Option<CommitMode>) -> bool {
        let outputs = [self.dead_letter.as_deref().map(DeadLetter::output), self.scrubbed_copy.as_deref()];
        for out in outputs.into_iter().flatten().chain(self.outputs.iter().map(|o| &**o)) {
            if out.has_pending() && !out.flush(Duration::from_secs(5)) {
                return false;
            }
        }
        let mut parts = self.parts.lock().expect("partition lock");
        let mut tpl = TopicPartitionList::new();
        for ((topic, p), st) in parts.iter() {
            // Only live progress: never store an offset below what an earlier owner committed.
            if st.next_offset > st.stored && st.next_offset > st.mute_below {
                let mut el = tpl.add_partition(topic, *p);
                if el.set_offset(Offset::Offset(st.next_offset)).is_ok() {
                    match st.pipeline.watermark() {
                        Some(wm) if wm != i64::MIN => el.set_metadata(format!("{META_PREFIX}{};wm={wm}", st.last_ts)),
                        _ => el.set_metadata(format!("{META_PREFIX}{}", st.last_ts)),
                    }
                }
            }
        }
        if tpl.count() > 0 {
            match consumer.store_offsets(&tpl) {
                Ok(()) => {
                    for el in tpl.elements() {
                        if let (Some(st), Offset::Offset(o)) =
                            (parts.get_mut(&(el.topic().to_string(), el.partition())), el.offset())
                        {
                            st.stored = o;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not store offsets"),
            }
        }
        drop(parts);
        if let Some(mode) = commit {
            match consumer.commit_consumer_state(mode) {
                Ok(()) => self.metrics.commits.with_label_values(&[Outcome::Ok.as_str()]).inc(),
                // Nothing stored since the last commit.
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => {
                    self.metrics.commits.with_label_values(&[Outcome::Error.as_str()]).inc();
                    tracing::warn!(error = %e, "offset commit failed");
                }
            }
        }
        true
    }

    fn update_gauges(&self) {
        let mut parts = self.parts.lock().expect("partition lock");
        let (mut lag_sum, mut lag_max, mut unknown) = (0i64, 0i64, false);
        let (mut keys, mut buffered, mut rebuilding) = (0usize, 0usize, 0i64);
        let (mut skew_max, mut waiting) = (0i64, 0i64);
        for st in parts.values_mut() {
            st.pipeline.publish(&self.metrics);
            if let Some((skew, waits)) = st.pipeline.watermark_status() {
                skew_max = skew_max.max(skew);
                waiting += waits as i64;
            }
            match st.lag() {
                Some(l) => {
                    lag_sum += l;
                    lag_max = lag_max.max(l);
                }
                None => unknown = true,
            }
            if st.next_offset < st.mute_below {
                rebuilding += 1;
            }
            let es = st.pipeline.engine_stats();
            buffered += es.buffered;
            if es.late > st.seen_late {
                self.metrics.late_events.inc_by(es.late - st.seen_late);
                st.seen_late = es.late;
            }
            if es.out_of_range > st.seen_out_of_range {
                self.metrics.out_of_range_events.inc_by(es.out_of_range - st.seen_out_of_range);
                st.seen_out_of_range = es.out_of_range;
            }
            keys += st.pipeline.state_size().keys;
            let rules = st.pipeline.rules();
            st.seen_evicted.resize(rules.len(), [0; EvictionReason::ALL.len()]);
            for (rule, seen) in rules.iter().zip(st.seen_evicted.iter_mut()) {
                let stats = rule.stats();
                for (reason, seen) in EvictionReason::ALL.iter().zip(seen.iter_mut()) {
                    let n = stats.evicted(*reason);
                    // inc_by(0) too: every detector's series exists from the first scrape
                    self.metrics
                        .state_evictions
                        .with_label_values(&[&rule.id, reason.as_str()])
                        .inc_by(n.saturating_sub(*seen));
                    *seen = n;
                }
            }
        }
        let n = parts.len() as i64;
        let stage = [self.stage.as_str()];
        let m = &self.metrics;
        let part = crate::telemetry::ConsumerPart {
            assigned: n,
            rebuilding,
            lag_sum,
            lag_max,
            keys: keys as i64,
            buffered: buffered as i64,
        };
        let t = m.consumers.publish(self.consumer_id, self.stage.as_str(), part);
        m.assigned_partitions.with_label_values(&stage).set(t.assigned);
        m.rebuilding_partitions.with_label_values(&stage).set(t.rebuilding);
        m.lag_messages.with_label_values(&stage).set(t.lag_sum);
        m.lag_max_messages.with_label_values(&stage).set(t.lag_max);
        m.state_keys.with_label_values(&stage).set(t.keys);
        m.buffered_events.with_label_values(&stage).set(t.buffered);
        if self.stage == Stage::Detect {
            m.watermark_skew.set(skew_max as f64 / 1000.0);
            m.detect_waiting_partitions.set(waiting);
        }
        self.health.assigned.store(n, Ordering::Relaxed);
        self.health.rebuilding.store(rebuilding, Ordering::Relaxed);
        self.health.lag_max.store(if unknown { -1 } else { lag_max }, Ordering::Relaxed);
    }

    /// Handles one message. Returns false if an alert could not be handed off
    /// before shutdown: the message is then left unstored, to be read again.
    fn handle(&self, consumer: &BaseConsumer<SourceContext>, m: &BorrowedMessage<'_>) -> bool {
        let key = (m.topic().to_string(), m.partition());
        let mut parts = self.parts.lock().expect("partition lock");
        let Some(st) = parts.get_mut(&key) else {
            // A message fetched before its partition was revoked: its new owner reads it.
            return true;
        };
        let offset = m.offset();
        let ts = m.timestamp().to_millis();
        let rebuilding = offset < st.mute_below;
        if rebuilding {
            self.metrics.rebuild_messages.inc();
            if ts.is_some_and(|t| t < st.skip_before_ts) {
                st.next_offset = offset + 1;
                return true;
            }
        } else {
            if self.stage != Stage::Detect {
                self.metrics.messages.inc();
            }
            if st.was_rebuilding {
                st.was_rebuilding = false;
                tracing::info!(topic = %key.0, partition = key.1, offset, "state rebuilt; alerts live from here");
            }
        }
        let payload = m.payload().unwrap_or_default();
        let mut alerts: Vec<Alert> = Vec::new();
        let done = st.pipeline.process(&Incoming { payload, ts, offset, wall_ms: now_ms() }, &mut alerts);
        if !rebuilding {
            self.metrics.events.inc_by(done.events);
            self.metrics.clamped_future_events.inc_by(done.clamped_future);
            if done.lossy_utf8 {
                self.metrics.lossy_utf8_messages.inc();
            }
            self.metrics.record_exposures(&done.exposures);
            for rej in &done.rejects {
                self.metrics.rejected.with_label_values(&[rej.reason.as_str()]).inc();
            }
            let dead_letters = if done.rejects.is_empty() { None } else { self.dead_letter.as_deref() };
            let scrubber = st.pipeline.scrubber().filter(|_| self.scrubbed_copy.is_some() || dead_letters.is_some());
            if let Some(sc) = scrubber {
                // Whatever leaves gatewatch carrying record text is scrubbed first.
                let mut scrubbed = ScrubStats::default();
                let record = scrub_message(sc, payload, &mut scrubbed);
                if let Some(copy) = &self.scrubbed_copy {
                    let key = m.key().map(|k| scrub_message(sc, k, &mut scrubbed));
                    copy.send(key.as_deref().map(str::as_bytes), record.as_bytes(), ts);
                }
                if let Some(dl) = dead_letters {
                    for rej in &done.rejects {
                        let detail = sc.scrub_line(&rej.detail, &mut scrubbed);
                        dl.send(rej, &detail, (m.topic(), m.partition(), offset), ts, &record);
                    }
                }
                if scrubbed.total() > 0 {
                    self.metrics.record_scrubbed(&scrubbed);
                }
            }
        }
        // Alerts an earlier owner already handed off are muted; the rest leave the lock.
        alerts.retain(|a| {
            let muted = rebuilding || a.window_end < st.handed_off_before || st.muted_ids.contains(&a.id);
            if rebuilding {
                st.remember_muted(&a.id);
            }
            if muted {
                self.metrics.alerts_muted.inc();
            }
            !muted
        });
        drop(parts);
        // The handoff may wait on a sink; nothing else needs the partition state meanwhile.
        for a in &alerts {
            if !self.handoff_with_retry(a) {
                return false;
            }
            self.metrics.alerts.with_label_values(&[a.detector.as_str()]).inc();
            tracing::debug!(alert = %a.id, topic = %key.0, partition = key.1, offset, "alert handed off");
            if let Some(t) = ts {
                self.metrics.alert_latency.observe((now_ms() - t).max(0) as f64 / 1000.0);
            }
        }
        let mut parts = self.parts.lock().expect("partition lock");
        if let Some(st) = parts.get_mut(&key) {
            st.next_offset = offset + 1;
            if let Some(t) = ts {
                st.last_ts = t;
            }
        }
        drop(parts);
        if !alerts.is_empty() {
            // Narrow the window in which a crash would repeat this alert.
            self.checkpoint(consumer, Some(CommitMode::Async));
        }
        true
    }

    /// Retries a failing handoff with backoff until it succeeds or shutdown is requested.
    fn handoff_with_retry(&self, a: &Alert) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.handoff.handoff(a) {
                Ok(()) => return true,
                Err(e) => {
                    self.metrics.handoff_failures.inc();
                    tracing::warn!(error = %e, alert = %a.id, "alert handoff failed; retrying in {backoff:?}");
                    if self.stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// The librdkafka configuration shared by the consumer and the producers.
pub fn base_client_config(s: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &s.brokers);
    c.set("client.id", "gatewatch");
    for (k, v) in &s.librdkafka {
        c.set(k, v);
    }
    c
}

/// A running Kafka source.
pub struct KafkaSource {
    thread: Option<JoinHandle<Result<(), SourceError>>>,
    stop: Arc<AtomicBool>,
    health: Arc<Health>,
    /// Disconnected when the consumer thread ends (for the blocking [`Self::shutdown`]).
    done: std::sync::mpsc::Receiver<()>,
    /// Closed when the consumer thread ends (for the async [`Self::ended`]).
    ended: tokio::sync::watch::Receiver<()>,
    /// The partitions' rules, for `/api/v1/entities` (weak: the source's end frees them).
    shared: std::sync::Weak<Shared>,
}

/// A source's partitions, asked what their rules hold about an entity.
struct PartitionRules(std::sync::Weak<Shared>);

impl crate::admin::entities::EntitySource for PartitionRules {
    fn describe(&self, entity: &crate::event::Entity) -> Vec<crate::admin::entities::RuleState> {
        let Some(shared) = self.0.upgrade() else { return Vec::new() };
        let Ok(parts) = shared.parts.lock() else { return Vec::new() };
        let mut keys: Vec<&PartitionKey> = parts.keys().collect();
        keys.sort();
        keys.into_iter()
            .flat_map(|k| {
                let rules = parts[k].pipeline.rules();
                crate::admin::entities::describe_rules(rules, entity, &format!("{}/{}", k.0, k.1))
            })
            .collect()
    }
}

impl KafkaSource {
    /// Subscribes and starts consuming on a thread of its own: the whole pipeline per partition.
    pub fn start(
        settings: KafkaSettings,
        new_pipeline: NewPipeline,
        handoff: Arc<dyn AlertHandoff>,
        metrics: Metrics,
    ) -> Result<KafkaSource, SourceError> {
        let new_worker: NewWorker = Arc::new(move |_, _| Box::new(new_pipeline.pipeline()) as Box<dyn PartitionWorker>);
        Self::start_stage(settings, Stage::Single, new_worker, Vec::new(), handoff, metrics)
    }

    /// Subscribes and starts consuming one stage on a thread of its own. `outputs` are flushed
    /// before any offset is stored.
    pub fn start_stage(
        settings: KafkaSettings,
        stage: Stage,
        new_worker: NewWorker,
        outputs: Vec<Arc<output::OutputProducer>>,
        handoff: Arc<dyn AlertHandoff>,
        metrics: Metrics,
    ) -> Result<KafkaSource, SourceError> {
        metrics.init_stage(stage.as_str());
        let base = base_client_config(&settings);
        let dead_letter = match &settings.dead_letter_topic {
            Some(t) => Some(DeadLetter::new(&base, t, settings.dead_letter_max_record_bytes, &metrics)?),
            None => None,
        };
        let scrubbed_copy = match &settings.scrubbed_topic {
            Some(t) => Some(scrubbed_copy::scrubbed_copy_producer(&base, t, &metrics)?),
            None => None,
        };
        let mut cc = base.clone();
        cc.set("group.id", &settings.group_id)
            .set("enable.auto.offset.store", "false")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", settings.commit_interval.as_millis().to_string())
            .set("auto.offset.reset", settings.start_from.as_librdkafka())
            .set("enable.partition.eof", "false");
        if !settings.librdkafka.contains_key("statistics.interval.ms") {
            cc.set("statistics.interval.ms", "1000");
        }
        if !settings.librdkafka.contains_key("fetch.wait.max.ms") {
            // librdkafka waits up to 500 ms for a fetch to fill; on a quiet topic that is
            // latency before every alert.
            cc.set("fetch.wait.max.ms", "100");
        }
        if !settings.librdkafka.contains_key("queued.max.messages.kbytes") {
            // Bounded prefetch per partition: the backpressure when processing falls behind.
            cc.set("queued.max.messages.kbytes", "16384");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let health = Arc::new(Health::for_stage(settings.ready_max_lag, stage));
        let consumer_id = metrics.consumers.id();
        let shared = Arc::new(Shared {
            parts: Mutex::new(HashMap::new()),
            new_worker,
            stage,
            settings: settings.clone(),
            metrics,
            handoff,
            dead_letter,
            scrubbed_copy,
            outputs,
            health: health.clone(),
            stop: stop.clone(),
            consumer_id,
        });
        let weak = Arc::downgrade(&shared);
        let consumer: BaseConsumer<SourceContext> = cc.create_with_context(SourceContext { shared: shared.clone() })?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        tracing::info!(
            brokers = %settings.brokers,
            topics = %settings.topics.join(","),
            group = %settings.group_id,
            stage = stage.as_str(),
            consumer = consumer_id,
            "consuming"
        );
        health.running.store(true, Ordering::Relaxed);
        // The thread holds both senders and drops them as it ends, however it ends: waiting on
        // either channel is then told so directly (no polling).
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        let (ended_tx, ended) = tokio::sync::watch::channel(());
        let thread = std::thread::Builder::new()
            .name("gatewatch-kafka".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    let _ended = (done_tx, ended_tx);
                    let r = consume(&consumer, &shared, &stop);
                    shared.health.running.store(false, Ordering::Relaxed);
                    shared.metrics.consumers.remove(shared.consumer_id);
                    // Dropping the consumer leaves the group (revocation commits what was stored).
                    drop(consumer);
                    r
                }
            })
            .map_err(SourceError::Thread)?;
        Ok(KafkaSource { thread: Some(thread), stop, health, done, ended, shared: weak })
    }

    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// What the rules of this source's partitions hold about an entity, for the admin API.
    pub fn entity_source(&self) -> Arc<dyn crate::admin::entities::EntitySource> {
        Arc::new(PartitionRules(self.shared.clone()))
    }

    /// The consumer thread ended (on its own: an error, or after `stop`).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Resolves when the consumer thread has ended (on its own, or after `stop`).
    pub async fn ended(&self) {
        let mut rx = self.ended.clone();
        while rx.changed().await.is_ok() {}
    }

    /// Asks the consumer to stop fetching; it finishes the message in hand,
    /// flushes dead letters and scrubbed copies, stores and commits, and leaves the group.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops and waits up to `grace` for the final commit.
    pub fn shutdown(mut self, grace: Duration) -> Result<(), SourceError> {
        self.request_stop();
        let Some(t) = self.thread.take() else { return Ok(()) };
        match self.done.recv_timeout(grace) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Err(SourceError::GraceExceeded(grace)),
            // Disconnected: the thread dropped its sender on the way out.
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
        }
        t.join().map_err(|_| SourceError::Panicked)?
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn consume(consumer: &BaseConsumer<SourceContext>, shared: &Shared, stop: &AtomicBool) -> Result<(), SourceError> {
    let store_every = (shared.settings.commit_interval / 2).max(Duration::from_millis(50));
    let mut last_store = Instant::now();
    let mut last_gauges = Instant::now();
    let mut last_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                trouble::BROKERS.answered();
                if !shared.handle(consumer, &m) {
                    break;
                }
            }
            Some(Err(e)) => client_error("consumer", &e, "poll"),
            None => {}
        }
        if last_store.elapsed() >= store_every {
            shared.checkpoint(consumer, None);
            last_store = Instant::now();
        }
        if last_tick.elapsed() >= Duration::from_millis(100) {
            let wall = now_ms();
            let stalled = last_tick.elapsed() >= STALL;
            for st in shared.parts.lock().expect("partition lock").values_mut() {
                if stalled {
                    st.note_stall();
                }
                st.pipeline.tick(wall, st.caught_up());
            }
            last_tick = Instant::now();
        }
        if last_gauges.elapsed() >= Duration::from_secs(1) {
            shared.update_gauges();
            last_gauges = Instant::now();
        }
    }
    // Graceful end: what was handed off is stored and committed before leaving the group.
    shared.checkpoint(consumer, Some(CommitMode::Sync));
    consumer.unsubscribe();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_running_assigned_and_within_lag() {
        let h = Health::new(100);
        assert!(h.readiness().is_err(), "not running");
        h.running.store(true, Ordering::Relaxed);
        assert_eq!(h.readiness().unwrap_err(), "no partitions assigned");
        h.assigned.store(2, Ordering::Relaxed);
        assert_eq!(h.readiness().unwrap_err(), "lag not known yet");
        h.lag_max.store(101, Ordering::Relaxed);
        assert!(h.readiness().unwrap_err().contains("lag 101"));
        h.lag_max.store(100, Ordering::Relaxed);
        assert!(h.readiness().is_ok());
    }

    struct Idle;
    impl PartitionWorker for Idle {
        fn process(&mut self, _: &Incoming<'_>, _: &mut Vec<Alert>) -> crate::engine::Processed {
            crate::engine::Processed::default()
        }
    }

    #[test]
    fn after_a_stall_a_partition_is_caught_up_only_on_the_second_fresh_report() {
        let mut st = PartitionState::new(Box::new(Idle), -1, 0);
        st.note_statistics(10, 10);
        assert!(!st.caught_up(), "one report may predate the consumer's start");
        st.note_statistics(10, 10);
        assert!(st.caught_up());
        st.note_statistics(12, 10);
        assert!(!st.caught_up(), "records waiting");
        st.note_statistics(12, 12);
        assert!(st.caught_up());
        // The thread was blocked: what it knew may be older than the records now waiting.
        st.note_stall();
        st.note_statistics(12, 12);
        assert!(!st.caught_up(), "the first report after a stall may have been taken during it");
        st.note_statistics(12, 12);
        assert!(st.caught_up());
    }

    #[test]
    fn commit_metadata_round_trips() {
        assert_eq!(parse_meta(&format!("{META_PREFIX}1795255200000")), Some(1_795_255_200_000));
        assert_eq!(parse_meta("something else"), None);
        assert_eq!(parse_meta(&format!("{META_PREFIX}17;wm=12")), Some(17));
        assert_eq!(parse_meta_watermark(&format!("{META_PREFIX}17;wm=12")), Some(12));
        assert_eq!(parse_meta_watermark(&format!("{META_PREFIX}17")), None);
        assert_eq!(parse_meta(""), None);
    }
}

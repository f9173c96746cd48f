//! The repartition topic on Kafka: `[kafka.repartition]`, the topic's creation, and the
//! workers the two stages run on each partition ([`crate::repartition`] holds the logic).
//!
//! ```toml
//! [kafka.repartition]
//! enabled = "auto"          # auto: repartition when the input topics have more than one partition
//! topic = "gatewatch-repartition"   # default: <group_id>-repartition
//! partitions = 12           # when gatewatch creates it; an existing topic keeps its own count
//! replication_factor = -1   # -1: the broker's default
//! retention = "1h"          # default and minimum: twice [kafka] rebuild_horizon
//! detect_group_id = "gatewatch-detect"   # default: <group_id>-detect
//! heartbeat_interval = "200ms"
//! idle_after = "5s"         # an input partition quiet this long stops holding time back
//! ```

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use super::output::OutputProducer;
use super::worker::{Incoming, NewWorker, PartitionWorker};
use super::KafkaSettings;
use crate::config::{ConfigError, DurationStr};
use crate::detectors::Rule;
use crate::engine::{Engine, EngineStats, LiveRules, PipelineFactory, Processed};
use crate::event::{Alert, Millis};
use crate::repartition::wire::upstream_id;
use crate::repartition::{Detect, DetectStats, HeartbeatTiming, Ingest, IngestStats, RecordSink};
use crate::scrub::Scrubber;
use crate::telemetry::labels::{Direction, RepartitionRecord};
use crate::telemetry::Metrics;

/// Whether `gatewatch run` repartitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enabled {
    /// When the input topics have more than one partition in all (or that cannot be told).
    Auto,
    Always,
    Never,
}

/// The validated `[kafka.repartition]` table.
#[derive(Clone, Debug)]
pub struct RepartitionSettings {
    pub enabled: Enabled,
    topic: Option<String>,
    pub partitions: u32,
    pub replication_factor: i32,
    retention_ms: Option<i64>,
    detect_group_id: Option<String>,
    pub timing: HeartbeatTiming,
}

impl Default for RepartitionSettings {
    fn default() -> Self {
        RepartitionSettings {
            enabled: Enabled::Auto,
            topic: None,
            partitions: 12,
            replication_factor: -1,
            retention_ms: None,
            detect_group_id: None,
            timing: crate::repartition::DEFAULT_TIMING,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    enabled: Option<Enabled>,
    topic: Option<String>,
    partitions: Option<u32>,
    replication_factor: Option<i32>,
    retention: Option<DurationStr>,
    detect_group_id: Option<String>,
    heartbeat_interval: Option<DurationStr>,
    idle_after: Option<DurationStr>,
}

impl RepartitionSettings {
    /// Reads `[kafka.repartition]`; `rebuild_horizon_ms` bounds the retention from below.
    pub fn from_value(v: &toml::Value, rebuild_horizon_ms: i64, file: &Path) -> Result<Self, Vec<ConfigError>> {
        let field = |f: &str| format!("kafka.repartition.{f}");
        let raw = RawSettings::deserialize(v.clone())
            .map_err(|e| vec![ConfigError::new(file, "kafka.repartition", e.message().to_string())])?;
        let mut s = RepartitionSettings::default();
        let mut errs = Vec::new();
        if let Some(e) = raw.enabled {
            s.enabled = e;
        }
        if let Some(t) = raw.topic {
            if super::config::valid_topic(&t) {
                s.topic = Some(t);
            } else {
                errs.push(ConfigError::new(file, field("topic"), "must be a topic name ([A-Za-z0-9._-])"));
            }
        }
        if let Some(p) = raw.partitions {
            if (1..=10_000).contains(&p) {
                s.partitions = p;
            } else {
                errs.push(ConfigError::new(file, field("partitions"), "must be between 1 and 10000"));
            }
        }
        if let Some(r) = raw.replication_factor {
            if r == -1 || (1..=32).contains(&r) {
                s.replication_factor = r;
            } else {
                errs.push(ConfigError::new(
                    file,
                    field("replication_factor"),
                    "must be -1 (broker default) or 1 to 32",
                ));
            }
        }
        if let Some(r) = raw.retention {
            if r.0 >= 2 * rebuild_horizon_ms {
                s.retention_ms = Some(r.0);
            } else {
                errs.push(ConfigError::new(
                    file,
                    field("retention"),
                    "must be at least twice [kafka] rebuild_horizon: detect rebuilds its state from the topic",
                ));
            }
        }
        if let Some(g) = raw.detect_group_id {
            if g.is_empty() {
                errs.push(ConfigError::new(file, field("detect_group_id"), "must not be empty"));
            } else {
                s.detect_group_id = Some(g);
            }
        }
        if let Some(h) = raw.heartbeat_interval {
            if (10..=10_000).contains(&h.0) {
                s.timing.interval_ms = h.0;
            } else {
                errs.push(ConfigError::new(file, field("heartbeat_interval"), "must be between 10ms and 10s"));
            }
        }
        if let Some(i) = raw.idle_after {
            if (100..=3_600_000).contains(&i.0) {
                s.timing.idle_after_ms = i.0;
            } else {
                errs.push(ConfigError::new(file, field("idle_after"), "must be between 100ms and 1h"));
            }
        }
        if errs.is_empty() {
            Ok(s)
        } else {
            Err(errs)
        }
    }

    /// The topic: as configured, or `<group_id>-repartition`.
    pub fn topic(&self, group_id: &str) -> String {
        self.topic.clone().unwrap_or_else(|| format!("{group_id}-repartition"))
    }

    /// The detect stage's consumer group: as configured, or `<group_id>-detect`.
    pub fn detect_group_id(&self, group_id: &str) -> String {
        self.detect_group_id.clone().unwrap_or_else(|| format!("{group_id}-detect"))
    }

    /// Retention of the topic: as configured, or twice the rebuild horizon (at least 1h).
    pub fn retention_ms(&self, rebuild_horizon_ms: i64) -> i64 {
        self.retention_ms.unwrap_or((2 * rebuild_horizon_ms).max(3_600_000))
    }

    pub fn with_topic(mut self, topic: &str) -> Self {
        self.topic = Some(topic.to_string());
        self
    }
}

/// Partitions of `topics` in all, from the broker's metadata.
pub fn count_partitions(base: &ClientConfig, topics: &[String], timeout: Duration) -> Result<u32, String> {
    let c: BaseConsumer = base.create().map_err(|e| e.to_string())?;
    let mut n = 0u32;
    for t in topics {
        let md = c.fetch_metadata(Some(t), timeout).map_err(|e| e.to_string())?;
        match md.topics().first() {
            Some(mt) if mt.error().is_none() && !mt.partitions().is_empty() => n += mt.partitions().len() as u32,
            _ => return Err(format!("topic `{t}` not found")),
        }
    }
    Ok(n)
}

/// The repartition topic, once it is known to exist: its partition count.
pub struct RepartitionTopic {
    pub name: String,
    partitions: Mutex<Option<u32>>,
    known: Condvar,
}

impl RepartitionTopic {
    /// Creates the topic when absent (partitions, replication and retention from the settings),
    /// on a thread of its own, retrying with backoff while the brokers cannot be reached.
    /// An existing topic keeps its own partition count.
    pub fn ensure(settings: &KafkaSettings, stop: Arc<std::sync::atomic::AtomicBool>) -> Arc<RepartitionTopic> {
        let r = &settings.repartition;
        let topic = Arc::new(RepartitionTopic {
            name: r.topic(&settings.group_id),
            partitions: Mutex::new(None),
            known: Condvar::new(),
        });
        let base = super::base_client_config(settings);
        let (want, rf, retention) =
            (r.partitions, r.replication_factor, r.retention_ms(settings.rebuild_horizon_ms).to_string());
        let handle = tokio::runtime::Handle::try_current().ok();
        let t = topic.clone();
        let spawned = std::thread::Builder::new().name("gatewatch-repartition-topic".into()).spawn(move || {
            let mut backoff = Duration::from_secs(1);
            let mut warned = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match create_or_describe(&base, &t.name, want, rf, &retention, handle.as_ref()) {
                    Ok(n) => {
                        if n != want {
                            tracing::warn!(topic = %t.name, partitions = n, configured = want, "the repartition topic exists with another partition count; using it as it is");
                        }
                        tracing::info!(topic = %t.name, partitions = n, "repartition topic ready");
                        *t.partitions.lock().expect("topic lock") = Some(n);
                        t.known.notify_all();
                        return;
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(topic = %t.name, error = %e, "cannot create or find the repartition topic yet; retrying with backoff");
                            warned = true;
                        } else {
                            tracing::debug!(topic = %t.name, error = %e, "repartition topic still not ready");
                        }
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the repartition-topic thread");
        }
        topic
    }

    /// A topic known to have `partitions` (tests, the in-process stages).
    pub fn known(name: &str, partitions: u32) -> Arc<RepartitionTopic> {
        Arc::new(RepartitionTopic {
            name: name.to_string(),
            partitions: Mutex::new(Some(partitions)),
            known: Condvar::new(),
        })
    }

    /// The partition count, waiting up to `timeout` for the topic to be ready.
    pub fn partitions(&self, timeout: Duration) -> Option<u32> {
        let g = self.partitions.lock().expect("topic lock");
        let (g, _) = self.known.wait_timeout_while(g, timeout, |p| p.is_none()).expect("topic lock");
        *g
    }
}

fn create_or_describe(
    base: &ClientConfig,
    topic: &str,
    partitions: u32,
    replication_factor: i32,
    retention_ms: &str,
    handle: Option<&tokio::runtime::Handle>,
) -> Result<u32, String> {
    if let Some(h) = handle {
        let admin: AdminClient<DefaultClientContext> = base.create().map_err(|e| e.to_string())?;
        let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(replication_factor))
            .set("retention.ms", retention_ms)
            .set("cleanup.policy", "delete");
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        match h.block_on(admin.create_topics([&new], &opts)) {
            Ok(results) => match results.into_iter().next() {
                Some(Ok(_)) => {}
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => {}
                // Brokers that do not offer CreateTopics (or deny it): the topic may exist anyway.
                Some(Err((_, code))) => tracing::debug!(topic, error = %code, "create repartition topic"),
                None => {}
            },
            Err(e) => tracing::debug!(topic, error = %e, "create repartition topic"),
        }
    }
    count_partitions(base, &[topic.to_string()], Duration::from_secs(10))
}

/// Sends ingest records to the repartition topic, to the partition the shard key chose.
struct KafkaSink {
    producer: Arc<OutputProducer>,
    partitions: u32,
}

impl RecordSink for KafkaSink {
    fn partitions(&self) -> u32 {
        self.partitions
    }
    fn send(&mut self, partition: i32, payload: &[u8]) {
        self.producer.send_to(Some(partition), None, payload, None);
    }
}

/// The ingest stage's worker for one input partition.
struct IngestWorker {
    ingest: Ingest,
    /// The rule set followed (for its shard keys), and the generation running.
    live: Arc<LiveRules>,
    generation: u64,
    sink: KafkaSink,
    published: IngestStats,
}

impl PartitionWorker for IngestWorker {
    fn process(&mut self, msg: &Incoming<'_>, _alerts: &mut Vec<Alert>) -> Processed {
        self.ingest.process(msg.payload, msg.ts, msg.offset, msg.wall_ms, &mut self.sink)
    }
    fn tick(&mut self, wall_ms: i64, caught_up: bool) {
        if let Some((g, rules)) = self.live.newer(self.generation) {
            self.generation = g;
            self.ingest.set_rules(rules);
        }
        self.ingest.heartbeat(wall_ms, caught_up, &mut self.sink);
    }
    fn scrubber(&self) -> Option<&Scrubber> {
        Some(self.ingest.reader().scrubber())
    }
    fn publish(&mut self, m: &Metrics) {
        let now = self.ingest.stats().clone();
        let was = &self.published;
        m.repartition_records
            .with_label_values(&[Direction::Sent.as_str(), RepartitionRecord::Event.as_str()])
            .inc_by(now.records - was.records);
        m.repartition_records
            .with_label_values(&[Direction::Sent.as_str(), RepartitionRecord::Heartbeat.as_str()])
            .inc_by(now.heartbeats - was.heartbeats);
        m.repartition_bytes.with_label_values(&[Direction::Sent.as_str()]).inc_by(now.bytes - was.bytes);
        m.late_events.inc_by(now.late - was.late);
        m.out_of_range_events.inc_by(now.out_of_range - was.out_of_range);
        self.published = now;
    }
}

/// Input partitions in all, learned from the brokers and cached for a minute.
struct UpstreamCount {
    base: ClientConfig,
    topics: Vec<String>,
    cached: Mutex<Option<(u32, Instant)>>,
}

impl UpstreamCount {
    fn get(&self) -> u32 {
        let mut c = self.cached.lock().expect("count lock");
        if let Some((n, at)) = *c {
            if at.elapsed() < Duration::from_secs(60) {
                return n;
            }
        }
        match count_partitions(&self.base, &self.topics, Duration::from_secs(10)) {
            Ok(n) => {
                *c = Some((n, Instant::now()));
                n
            }
            Err(e) => {
                // Assigned, so the brokers answer; keep the last count, or let every partition count.
                tracing::warn!(error = %e, "could not count the input partitions");
                c.map_or(1, |(n, _)| n)
            }
        }
    }
}

/// The ingest stage's worker factory.
pub fn ingest_workers(
    factory: Arc<PipelineFactory>,
    settings: &KafkaSettings,
    topic: Arc<RepartitionTopic>,
    producer: Arc<OutputProducer>,
) -> NewWorker {
    let timing = settings.repartition.timing;
    let configured = settings.repartition.partitions;
    let upstreams = Arc::new(UpstreamCount {
        base: super::base_client_config(settings),
        topics: settings.topics.clone(),
        cached: Mutex::new(None),
    });
    Arc::new(move |t: &str, p: i32| {
        let partitions = topic.partitions(Duration::from_secs(30)).unwrap_or_else(|| {
            tracing::warn!(topic = %topic.name, "the repartition topic is not ready; assuming the configured partition count");
            configured
        });
        let lateness = factory.config().engine.allowed_lateness.0;
        let (live, generation) = (factory.live().clone(), factory.live().generation());
        let ingest = Ingest::new(factory.reader(), live.rules(), lateness, upstream_id(t, p), upstreams.get(), timing);
        Box::new(IngestWorker {
            ingest,
            live,
            generation,
            sink: KafkaSink { producer: producer.clone(), partitions },
            published: IngestStats::default(),
        }) as Box<dyn PartitionWorker>
    })
}

/// The detect stage's worker for one repartition partition.
struct DetectWorker {
    detect: Detect,
    /// The rule set followed, and the generation running.
    live: Arc<LiveRules>,
    generation: u64,
    published: DetectStats,
    bytes: u64,
    published_bytes: u64,
    /// Why unreadable records were refused, each logged once.
    logged: HashSet<String>,
}

impl PartitionWorker for DetectWorker {
    fn process(&mut self, msg: &Incoming<'_>, alerts: &mut Vec<Alert>) -> Processed {
        self.bytes += msg.payload.len() as u64;
        if let Err(e) = self.detect.process(msg.payload, alerts) {
            let why = e.to_string();
            if self.logged.len() < 16 && self.logged.insert(why.clone()) {
                tracing::warn!(offset = msg.offset, error = %why, "skipping a repartition record that cannot be read");
            }
        }
        Processed::default()
    }
    fn tick(&mut self, _wall_ms: i64, _caught_up: bool) {
        if let Some((g, rules)) = self.live.newer(self.generation) {
            self.generation = g;
            self.detect.reconfigure(rules);
        }
    }
    fn engine_stats(&self) -> EngineStats {
        self.detect.engine_stats()
    }
    fn watermark(&self) -> Option<Millis> {
        Some(self.detect.engine().watermark())
    }
    fn rules(&self) -> &[Rule] {
        self.detect.engine().rules()
    }
    fn publish(&mut self, m: &Metrics) {
        let now = self.detect.stats().clone();
        let was = &self.published;
        m.repartition_records
            .with_label_values(&[Direction::Received.as_str(), RepartitionRecord::Event.as_str()])
            .inc_by(now.records - was.records);
        m.repartition_records
            .with_label_values(&[Direction::Received.as_str(), RepartitionRecord::Heartbeat.as_str()])
            .inc_by(now.heartbeats - was.heartbeats);
        m.repartition_bytes
            .with_label_values(&[Direction::Received.as_str()])
            .inc_by(self.bytes - self.published_bytes);
        m.repartition_duplicates.inc_by(now.duplicates - was.duplicates);
        m.repartition_undecodable.inc_by(now.undecodable - was.undecodable);
        self.published = now;
        self.published_bytes = self.bytes;
    }
    fn watermark_status(&self) -> Option<(i64, bool)> {
        let u = self.detect.upstreams();
        let (heard, expected) = u.heard();
        Some((u.skew(), u.current().is_none() || (heard as u32) < expected))
    }
}

/// The detect stage's worker factory.
pub fn detect_workers(factory: Arc<PipelineFactory>) -> NewWorker {
    Arc::new(move |_: &str, _: i32| {
        let (live, generation) = (factory.live().clone(), factory.live().generation());
        Box::new(DetectWorker {
            detect: Detect::new(Engine::new(
                live.rules(),
                factory.config().engine.allowed_lateness.0,
                factory.config().engine.max_buffered_events,
            )),
            live,
            generation,
            published: DetectStats::default(),
            bytes: 0,
            published_bytes: 0,
            logged: HashSet::new(),
        }) as Box<dyn PartitionWorker>
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KafkaSettings, Vec<ConfigError>> {
        let cfg: crate::config::GatewatchConfig = toml::from_str(text).unwrap();
        KafkaSettings::from_config(&cfg)
    }

    #[test]
    fn repartition_settings_default_from_the_group_and_refuse_bad_values_by_field() {
        let s = parse("[kafka]\nbrokers = \"k:9092\"\ntopics = [\"logs\"]\ngroup_id = \"gw\"\n").unwrap();
        assert_eq!(s.repartition.enabled, Enabled::Auto);
        assert_eq!(s.repartition.topic("gw"), "gw-repartition");
        assert_eq!(s.repartition.detect_group_id("gw"), "gw-detect");
        assert_eq!(s.repartition.retention_ms(s.rebuild_horizon_ms), 3_600_000, "twice the 30m horizon");
        let errs = parse(
            "[kafka]\nbrokers = \"k:9092\"\ntopics = [\"logs\"]\nrebuild_horizon = \"2h\"\n[kafka.repartition]\n\
             enabled = \"always\"\npartitions = 0\nretention = \"3h\"\nidle_after = \"1ms\"\n",
        )
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["kafka.repartition.partitions", "kafka.repartition.retention", "kafka.repartition.idle_after"],
            "{errs:?}"
        );
        let unknown =
            parse("[kafka]\nbrokers = \"k\"\ntopics = [\"l\"]\n[kafka.repartition]\nparts = 3\n").unwrap_err();
        assert!(unknown[0].to_string().contains("unknown field `parts`"), "{unknown:?}");
    }
}

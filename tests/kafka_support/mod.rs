//! Shared helpers for the Kafka integration tests: an in-process librdkafka
//! `MockCluster` (real sockets on 127.0.0.1), a small-batch producer, readers
//! for output topics, synthetic access-log traffic with known attacks, and a
//! handoff that records what it was given.
#![allow(clippy::disallowed_methods)] // times sockets and timeouts, not detection
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gatewatch::actions::{AlertHandoff, HandoffError};
use gatewatch::config::GatewatchConfig;
use gatewatch::event::{format_ts, Alert};
use gatewatch::source::kafka::NewPipeline;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// 2026-11-21T10:00:00Z
pub const T0: i64 = 1_795_255_200_000;
pub const KEY: &str = "integration-test-fingerprint-key";

pub fn cluster(topics: &[(&str, i32)]) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let c = MockCluster::new(1).expect("mock cluster");
    for (t, n) in topics {
        c.create_topic(t, *n, 1).expect("create topic");
    }
    c
}

/// One record to produce: partition, key, payload, Kafka timestamp.
#[derive(Clone, Debug)]
pub struct Rec {
    pub partition: i32,
    pub key: String,
    pub payload: String,
    pub ts: i64,
}

/// Produces with small batches (the mock broker is slow with large ones) and waits for every ack.
pub fn produce(bootstrap: &str, topic: &str, recs: &[Rec]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("batch.num.messages", "200")
        .set("linger.ms", "2")
        .create()
        .expect("producer");
    for r in recs {
        let mut rec = BaseRecord::to(topic).partition(r.partition).key(&r.key).payload(&r.payload).timestamp(r.ts);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).expect("flush");
}

/// Every message of a topic (all partitions, from the beginning), read until `done` says so or the timeout.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    timeout: Duration,
    done: impl Fn(&[(i32, i64, Vec<u8>)]) -> bool,
) -> Vec<(i32, i64, Vec<u8>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while Instant::now() < deadline && !done(&out) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push((m.partition(), m.offset(), m.payload().unwrap_or_default().to_vec()));
        }
    }
    out
}

/// The group's committed offsets, one per partition (-1 when none).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    match c.committed_offsets(tpl, Duration::from_secs(5)) {
        Ok(t) => (0..partitions)
            .map(|p| match t.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            })
            .collect(),
        Err(_) => vec![-1; partitions as usize],
    }
}

/// Waits (bounded) until `cond` holds; returns whether it did.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// A handoff that keeps every alert it is given.
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<Alert>>);

impl AlertHandoff for Collect {
    fn handoff(&self, a: &Alert) -> Result<(), HandoffError> {
        self.0.lock().unwrap().push(a.clone());
        Ok(())
    }
}

impl Collect {
    pub fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|a| a.id.clone()).collect()
    }
    pub fn has_ip(&self, ip: &str) -> bool {
        self.0.lock().unwrap().iter().any(|a| a.entity.id == ip)
    }
}

pub fn detectors_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("detectors")
}

/// The service config the tests run with: generic JSON input, the shipped detectors.
pub fn test_config() -> GatewatchConfig {
    let mut cfg: GatewatchConfig = toml::from_str("[input]\nformat = \"generic\"\n").unwrap();
    cfg.detectors.dir = Some(detectors_dir());
    cfg
}

pub fn pipelines() -> NewPipeline {
    gatewatch::app::run::pipeline_factory(&test_config(), KEY.as_bytes()).expect("pipeline factory")
}

/// One generic-JSON access-log record.
pub fn record(ts: i64, ip: &str, path: &str, status: u16) -> String {
    let method = if path.contains("login") { "POST" } else { "GET" };
    format!(
        r#"{{"ts":"{}","source_ip":"{ip}","method":"{method}","path":"{path}","status":{status},"latency_ms":20,"request_id":"r-{ip}-{ts}"}}"#,
        format_ts(ts)
    )
}

/// Which partition a key goes to in these tests (explicit, so tests know).
pub fn partition_of(key: &str, partitions: i32) -> i32 {
    (key.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32)) % partitions as u32) as i32
}

/// `n` failed logins from `ip`, one every `every_ms` from `start`, keyed by the address.
pub fn brute_force(ip: &str, start: i64, n: usize, every_ms: i64, partitions: i32) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let ts = start + i as i64 * every_ms;
            Rec { partition: partition_of(ip, partitions), key: ip.into(), payload: record(ts, ip, "/login", 401), ts }
        })
        .collect()
}

/// Benign traffic in `[from, to)`: `clients` addresses, each one successful call every `every_ms`,
/// plus one heartbeat per partition per `every_ms` so every partition's watermark advances.
pub fn benign(from: i64, to: i64, clients: usize, every_ms: i64, partitions: i32) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut ts = from;
    while ts < to {
        for c in 0..clients {
            let ip = format!("198.51.100.{}", c + 1);
            let t = ts + c as i64 * 37 % every_ms;
            out.push(Rec {
                partition: partition_of(&ip, partitions),
                key: ip.clone(),
                payload: record(t, &ip, "/v1/orders", 200),
                ts: t,
            });
        }
        for p in 0..partitions {
            let ip = format!("192.0.2.{}", p + 1);
            out.push(Rec { partition: p, key: ip.clone(), payload: record(ts, &ip, "/v1/health-check", 200), ts });
        }
        ts += every_ms;
    }
    out
}

/// Merges record lists into Kafka-time order (what a shipper would deliver).
pub fn merge(mut lists: Vec<Vec<Rec>>) -> Vec<Rec> {
    let mut all: Vec<Rec> = lists.drain(..).flatten().collect();
    all.sort_by_key(|r| r.ts);
    all
}

pub fn count_by_partition(recs: &[Rec], partitions: i32) -> HashMap<i32, i64> {
    let mut m = HashMap::new();
    for p in 0..partitions {
        m.insert(p, 0);
    }
    for r in recs {
        *m.get_mut(&r.partition).unwrap() += 1;
    }
    m
}

/// The value of an un-labelled counter or gauge in a registry.
pub fn metric(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.get_name() == name)
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value() + m.get_gauge().get_value()))
        .sum()
}

/// High watermarks of every partition of a topic.
pub fn topic_ends(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("consumer");
    (0..partitions)
        .map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(5)).map(|(_, h)| h).unwrap_or(-1))
        .collect()
}

/// Low watermarks of every partition of a topic (above 0 once the broker dropped records).
pub fn topic_starts(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("consumer");
    (0..partitions)
        .map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(5)).map(|(l, _)| l).unwrap_or(-1))
        .collect()
}

/// Reads a whole topic up to its current end.
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<(i32, i64, Vec<u8>)> {
    let total: i64 = topic_ends(bootstrap, topic, partitions).iter().sum();
    read_topic(bootstrap, topic, partitions, Duration::from_secs(30), |m| m.len() as i64 >= total)
}

/// Per-partition record counts as a vector (the end offsets once produced to an empty topic).
pub fn ends_of(recs: &[Rec], partitions: i32) -> Vec<i64> {
    (0..partitions).map(|p| recs.iter().filter(|r| r.partition == p).count() as i64).collect()
}

/// `gatewatch run --config <config>`, its log (at info) to `log`, its stdout discarded.
pub fn spawn_run(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["run", "--config"])
        .arg(config)
        .env("GATEWATCH_LOG", "info")
        .env_remove("GATEWATCH_FINGERPRINT_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("gatewatch run starts")
}

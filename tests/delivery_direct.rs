//! The Kafka alerts topic is a sink of the dispatcher (`kafka:alerts`), delivered inside the
//! handoff: each alert alone on the topic (no grouping, no resolved notification), keyed by
//! its entity, once per alert id, while a queued sink beside it still groups. A delivery that
//! fails fails the handoff, and the source's retry of the same alert is tried again, not
//! dropped as a duplicate; after repeated failures the breaker fails the handoff fast.
#![allow(clippy::disallowed_methods)] // times a breaker, not detection

mod kafka_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatewatch::actions::config::{ActionsConfig, DeliveryConfig, KafkaSinkConfig, SinkConfig, SinkKind};
use gatewatch::actions::sinks::SinkRuntime;
use gatewatch::actions::{AlertHandoff, AlertJournal, DirectSink, Dispatcher, Happening, SinkEntry, SinkError};
use gatewatch::event::{Alert, Entity, EntityKind, Severity};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn alert(entity: &str, window_end: i64) -> Alert {
    let e = Entity::new(EntityKind::SourceIp, entity);
    Alert {
        id: Alert::make_id("auth-failure-default", &e, window_end),
        detector: "auth_failure_spike".into(),
        rule: "auth-failure-default".into(),
        severity: Severity::Medium,
        entity: e,
        client_id: None,
        client_id_source: Default::default(),
        token_fingerprint: None,
        window_start: window_end - 300_000,
        window_end,
        summary: format!("failed logins from {entity}"),
        evidence: Default::default(),
        actions: vec![],
    }
}

fn kafka_sink(bootstrap: &str, timeout: Duration) -> SinkConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", bootstrap);
    SinkConfig {
        name: "kafka:alerts".into(),
        delivery: DeliveryConfig { min_severity: Some(Severity::Info), timeout, ..DeliveryConfig::default() },
        kind: SinkKind::Kafka(KafkaSinkConfig { topic: "alerts".into(), format: Default::default(), client }),
    }
}

/// (key, alert id) of every record on the topic.
fn records(bootstrap: &str, want: usize) -> Vec<(String, String)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "delivery-direct-reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("alerts", 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline && out.len() < want {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            out.push((String::from_utf8(m.key().unwrap().to_vec()).unwrap(), v["id"].as_str().unwrap().to_string()));
        }
    }
    // Anything beyond `want` would be a copy: give it a moment to show.
    let until = std::time::Instant::now() + Duration::from_millis(500);
    while std::time::Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            out.push((String::from_utf8(m.key().unwrap().to_vec()).unwrap(), v["id"].as_str().unwrap().to_string()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_is_its_own_record_once_while_a_queued_sink_groups() {
    let mc = kafka_support::cluster(&[("alerts", 1)]);
    let bootstrap = mc.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ActionsConfig::new(dir.path().join("dead-letter.jsonl"));
    cfg.sinks.push(kafka_sink(&bootstrap, Duration::from_secs(10)));
    cfg.sinks.push(SinkConfig {
        name: "file:grouped".into(),
        delivery: DeliveryConfig { min_severity: Some(Severity::Info), ..DeliveryConfig::default() },
        kind: SinkKind::File(gatewatch::actions::config::FileConfig { path: dir.path().join("grouped.jsonl") }),
    });
    let d = Dispatcher::start(&cfg, Vec::new(), None).unwrap();
    let burst: Vec<Alert> = (1..=5).map(|i| alert("203.0.113.9", 1_000_000 + i * 1000)).collect();
    for a in &burst {
        tokio::task::block_in_place(|| d.handoff(a)).unwrap();
    }
    // The source may hand off the same alert again (a retry after a crash): one record.
    tokio::task::block_in_place(|| d.handoff(&burst[0])).unwrap();
    let got = tokio::task::block_in_place(|| records(&bootstrap, 5));
    let ids: Vec<&str> = got.iter().map(|(_, id)| id.as_str()).collect();
    let want: Vec<&str> = burst.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, want, "each alert alone, in order, once");
    assert!(got.iter().all(|(k, _)| k == "source_ip:203.0.113.9"), "keyed by entity: {got:?}");
    let stats = d.stats();
    let k = stats.sinks.iter().find(|s| s.name == "kafka:alerts").expect("the topic is a sink in the stats");
    assert_eq!((k.kind.as_str(), k.sent, k.queue_depth), ("kafka", 5, 0));
    assert_eq!(stats.duplicates, 1);
    // The queued sink beside it folded the burst (first alone, the rest with a count).
    d.shutdown(Duration::from_secs(5)).await;
    let lines = std::fs::read_to_string(dir.path().join("grouped.jsonl")).unwrap();
    assert!(lines.lines().count() < 5, "the file sink groups: {lines}");
    let counted: u64 =
        lines.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 5);
}

/// Fails its first `fail` deliveries, then acknowledges.
struct Flaky {
    fail: usize,
    calls: AtomicUsize,
}

impl DirectSink for Flaky {
    fn deliver(&self, _: &Alert, _: Duration) -> Result<(), SinkError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail {
            Err(SinkError::retryable("broker unreachable"))
        } else {
            Ok(())
        }
    }
}

#[derive(Default)]
struct Journal(Mutex<Vec<(String, Happening)>>);

impl AlertJournal for Journal {
    fn note(&self, id: &str, _at: i64, what: Happening) {
        self.0.lock().unwrap().push((id.to_string(), what));
    }
}

#[test]
fn a_failed_delivery_fails_the_handoff_and_its_retry_is_tried_again() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _g = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let cfg = ActionsConfig::new(dir.path().join("dead-letter.jsonl"));
    let sink = Arc::new(Flaky { fail: 2, calls: AtomicUsize::new(0) });
    let entry = SinkEntry {
        name: "kafka:alerts".into(),
        kind: "kafka".into(),
        delivery: DeliveryConfig { min_severity: Some(Severity::Info), ..DeliveryConfig::default() },
        sink: SinkRuntime::Direct(sink.clone()),
    };
    let journal = Arc::new(Journal::default());
    let d = Dispatcher::start_with_journal(&cfg, vec![entry], None, journal.clone()).unwrap();
    let a = alert("198.51.100.7", 2_000_000);
    let e = d.handoff(&a).unwrap_err();
    assert!(e.to_string().contains("kafka:alerts: broker unreachable"), "{e}");
    assert!(d.handoff(&a).is_err());
    d.handoff(&a).expect("the third try is acknowledged");
    assert_eq!(sink.calls.load(Ordering::SeqCst), 3, "a retry is not taken for a duplicate");
    d.handoff(&a).unwrap();
    assert_eq!(sink.calls.load(Ordering::SeqCst), 3, "once delivered, a copy is");
    let attempts: Vec<(u32, String)> = journal
        .0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(id, h)| match h {
            Happening::Attempt { sink, attempt, outcome, .. } if *id == a.id && sink == "kafka:alerts" => {
                Some((*attempt, format!("{outcome:?}")))
            }
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![(1, "Failed".into()), (2, "Failed".into()), (3, "Delivered".into())]);
    // Nothing was dead-lettered, so no file was made beside the config.
    assert!(!dir.path().join("dead-letter.jsonl").exists());
}

#[test]
fn the_breaker_fails_handoffs_fast_while_the_receiver_is_down() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _g = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let cfg = ActionsConfig::new(dir.path().join("dead-letter.jsonl"));
    let sink = Arc::new(Flaky { fail: usize::MAX, calls: AtomicUsize::new(0) });
    let entry = SinkEntry {
        name: "kafka:alerts".into(),
        kind: "kafka".into(),
        delivery: DeliveryConfig {
            min_severity: Some(Severity::Info),
            breaker_failures: 3,
            breaker_open_for: Duration::from_secs(3600),
            ..DeliveryConfig::default()
        },
        sink: SinkRuntime::Direct(sink.clone()),
    };
    let d = Dispatcher::start(&cfg, vec![entry], None).unwrap();
    for i in 0..10 {
        let e = d.handoff(&alert("192.0.2.1", 3_000_000 + i)).unwrap_err();
        if i >= 3 {
            assert!(e.to_string().contains("circuit open"), "{e}");
        }
    }
    assert_eq!(sink.calls.load(Ordering::SeqCst), 3, "no call while the breaker is open");
    let k = d.stats().sinks.into_iter().find(|s| s.name == "kafka:alerts").unwrap();
    assert_eq!(k.circuit, gatewatch::actions::CircuitState::Open);
    assert_eq!((k.sent, k.retried), (0, 3));
}

//! Kafka source throughput and detection latency over librdkafka's in-process
//! MockCluster (loopback sockets).
//!
//! 1. Throughput: simulated Kong traffic is produced first, then one instance
//!    consumes it from the beginning (one consumer thread; the topic has as
//!    many partitions as the mock broker's 5 MB-per-partition log needs): events/s (wall) and
//!    events per CPU-second. The CPU time is the whole process's, which includes
//!    the mock broker serving the fetches, so it overstates gatewatch's share.
//! 2. Latency: traffic is produced live (Kafka timestamp = append time) with
//!    event time compressed 10x, and `gatewatch_alert_latency_seconds` measures
//!    append of the message that completed a detection → alert handed off.
//!    (The allowed lateness, 30 s of event time, comes on top in real time.)
//!
//! `cargo bench --bench kafka_throughput` (GATEWATCH_BENCH_MINUTES=simulated minutes, default 20;
//! GATEWATCH_BENCH_CONSUMERS=consumers of the group in the process, default 1).
//!
//! With `GATEWATCH_BENCH_BROKERS=host:port` it runs against that broker instead (a real one:
//! `scripts/bench-kafka-real.sh` starts `tansu` on loopback). Topics get a fresh suffix per
//! run; the CPU time is then gatewatch's alone (the broker is another process).
#![allow(clippy::disallowed_methods)] // times sockets and timeouts, not detection

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatewatch::actions::{AlertHandoff, HandoffError};
use gatewatch::config::{GatewatchConfig, DEV_FINGERPRINT_KEY};
use gatewatch::event::Alert;
use gatewatch::normalize::Format;
use gatewatch::simulate::{render, simulate, SimConfig};
use gatewatch::source::kafka::{KafkaSettings, KafkaSource, StartFrom};
use gatewatch::telemetry::Metrics;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::{cpu_seconds, create_topics, send_retrying};

#[derive(Default)]
struct Count(AtomicUsize);
impl AlertHandoff for Count {
    fn handoff(&self, _: &Alert) -> Result<(), HandoffError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Records how long the broker took to acknowledge each message (delivery report time minus
/// the message's create time): the part of the append → alert latency spent in the broker's produce path.
#[derive(Default)]
struct AckLatency {
    sum_ms: AtomicUsize,
    max_ms: AtomicUsize,
    n: AtomicUsize,
}

impl rdkafka::ClientContext for AckLatency {}

impl rdkafka::producer::ProducerContext for AckLatency {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        use rdkafka::Message;
        if let Ok(m) = r {
            if let Some(ts) = m.timestamp().to_millis() {
                let now =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
                let ms = (now - ts).max(0) as usize;
                self.sum_ms.fetch_add(ms, Ordering::Relaxed);
                self.max_ms.fetch_max(ms, Ordering::Relaxed);
                self.n.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn producer(bootstrap: &str) -> BaseProducer<AckLatency> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("batch.num.messages", "100")
        .set("linger.ms", "5")
        .create_with_context(AckLatency::default())
        .expect("producer")
}

fn send(p: &BaseProducer<AckLatency>, topic: &str, partition: Option<i32>, payload: &str, key: &str) {
    let mut rec = BaseRecord::to(topic).payload(payload).key(key);
    if let Some(part) = partition {
        rec = rec.partition(part);
    }
    send_retrying(p, rec);
}

/// `GATEWATCH_BENCH_CONSUMERS` consumers (default 1) of one group in this process, as
/// `[kafka] consumers` starts them: each with partitions and a thread of its own.
fn source(bootstrap: &str, topic: &str, group: &str) -> (Vec<KafkaSource>, Metrics, Arc<Count>) {
    let mut cfg = GatewatchConfig::default();
    cfg.detectors.dir = Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("detectors"));
    cfg.input.format = "kong".into();
    let pipelines = gatewatch::app::run::pipeline_factory(&cfg, DEV_FINGERPRINT_KEY.as_bytes()).expect("detectors");
    let mut s = KafkaSettings::new(bootstrap, vec![topic.into()], group);
    s.start_from = StartFrom::Earliest;
    // GATEWATCH_BENCH_LIBRDKAFKA="fetch.wait.max.ms=100,fetch.min.bytes=1": consumer tuning to compare.
    for kv in std::env::var("GATEWATCH_BENCH_LIBRDKAFKA").unwrap_or_default().split(',').filter(|kv| !kv.is_empty()) {
        if let Some((k, v)) = kv.split_once('=') {
            s.librdkafka.insert(k.trim().into(), v.trim().into());
        }
    }
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let count = Arc::new(Count::default());
    let n: usize = std::env::var("GATEWATCH_BENCH_CONSUMERS").ok().and_then(|n| n.parse().ok()).unwrap_or(1);
    let srcs = (0..n.max(1))
        .map(|_| KafkaSource::start(s.clone(), pipelines.clone(), count.clone(), metrics.clone()).expect("source"))
        .collect();
    (srcs, metrics, count)
}

fn quantile_upper_bound(h: &prometheus::Histogram, q: f64) -> Option<f64> {
    use prometheus::core::Collector;
    let mf = h.collect();
    let m = mf.first()?.get_metric().first()?;
    let hist = m.get_histogram();
    let total = hist.get_sample_count() as f64;
    if total == 0.0 {
        return None;
    }
    hist.get_bucket().iter().find(|b| b.get_cumulative_count() as f64 >= q * total).map(|b| b.get_upper_bound())
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: run only when benched.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let minutes: i64 = std::env::var("GATEWATCH_BENCH_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(20);
    let sim = simulate(&SimConfig {
        duration_ms: minutes * 60_000,
        clients: 200,
        attack_rounds: (minutes as usize / 10).clamp(1, 20),
        ..SimConfig::default()
    });
    let payloads: Vec<(String, String)> = sim
        .records
        .iter()
        .map(|r| (render(r, Format::Kong), r.client_id.as_deref().unwrap_or("anon").to_string()))
        .collect();
    let bytes: usize = payloads.iter().map(|(p, _)| p.len()).sum();
    // The mock broker keeps at most 5 MB per partition: spread the bulk load so none is truncated.
    let bulk_partitions = (bytes / 3_000_000 + 1) as i32;
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (bulk, live) = (format!("bulk-{run}"), format!("live-{run}"));
    let mut _cluster = None;
    let bootstrap = match std::env::var("GATEWATCH_BENCH_BROKERS") {
        Ok(b) => {
            create_topics(&b, &[(&bulk, bulk_partitions), (&live, 1)]);
            println!("broker: {b} (external)");
            b
        }
        Err(_) => {
            let cluster = MockCluster::new(1).expect("mock cluster");
            cluster.create_topic(&bulk, bulk_partitions, 1).unwrap();
            cluster.create_topic(&live, 1, 1).unwrap();
            let b = cluster.bootstrap_servers();
            _cluster = Some(cluster);
            println!("broker: librdkafka MockCluster (in-process)");
            b
        }
    };
    let (bulk, live) = (bulk.as_str(), live.as_str());

    // 1. Throughput.
    let p = producer(&bootstrap);
    let t = Instant::now();
    // Round-robin: keyed placement would overfill the heavy clients' partitions.
    for (i, (payload, key)) in payloads.iter().enumerate() {
        send(&p, bulk, Some(i as i32 % bulk_partitions), payload, key);
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(300)).unwrap();
    println!(
        "produced {} Kong records ({:.1} MB) over {bulk_partitions} partitions in {:.1}s",
        payloads.len(),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let (src, metrics, alerts) = source(&bootstrap, bulk, &format!("{bulk}-group"));
    let n = payloads.len() as u64;
    // Start the clock at the first message: the group join is not throughput.
    let joined = Instant::now();
    while metrics.messages.get() == 0 && joined.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let first_batch = metrics.messages.get();
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let mut shown = Instant::now();
    while metrics.messages.get() < n && t.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(20));
        if shown.elapsed() > Duration::from_secs(10) {
            eprintln!("  … {} of {n} messages", metrics.messages.get());
            shown = Instant::now();
        }
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let assigns = metrics.rebalances.with_label_values(&["assign"]).get();
    let consumers = src.len();
    for src in src {
        src.shutdown(Duration::from_secs(10)).unwrap();
    }
    println!(
        "throughput: {} events in {wall:.2}s after the group join = {:.0} events/s wall ({:.1} MB/s); {cpu:.2} CPU-s = {:.0} events per CPU-second ({}); {} alerts",
        n - first_batch,
        (n - first_batch) as f64 / wall,
        bytes as f64 / 1e6 / wall,
        (n - first_batch) as f64 / cpu.max(1e-9),
        if _cluster.is_some() { "incl. the in-process mock broker" } else { "gatewatch alone: the broker is another process" },
        alerts.0.load(Ordering::Relaxed)
    );
    println!("  {assigns} assignments (rebalances seen by a member) over {consumers} consumer(s)");

    // 2. Latency: live production at 10x event-time speed.
    let p = producer(&bootstrap);
    let (src, metrics, _) = source(&bootstrap, live, &format!("{live}-group"));
    std::thread::sleep(Duration::from_secs(3));
    let first = sim.records.first().map(|r| r.arrival).unwrap_or(0);
    let t = Instant::now();
    for (r, (payload, key)) in sim.records.iter().zip(&payloads) {
        let due = Duration::from_secs_f64((r.arrival - first).max(0) as f64 / 1000.0 / 10.0);
        if let Some(w) = due.checked_sub(t.elapsed()) {
            p.poll(w);
        }
        send(&p, live, None, payload, key);
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).unwrap();
    while metrics.messages.get() < n && t.elapsed() < Duration::from_secs(900) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for src in src {
        src.shutdown(Duration::from_secs(10)).unwrap();
    }
    let h = &metrics.alert_latency;
    println!(
        "latency (append -> alert handed off, {} alerts, live at {:.0} msg/s): mean {:.3}s, p50 <= {:?}s, p99 <= {:?}s (histogram bucket bounds)",
        h.get_sample_count(),
        n as f64 / t.elapsed().as_secs_f64(),
        h.get_sample_sum() / h.get_sample_count().max(1) as f64,
        quantile_upper_bound(h, 0.5),
        quantile_upper_bound(h, 0.99)
    );
    let ack = p.context();
    println!(
        "  of which the broker's produce acknowledgement: mean {:.3}s, max {:.3}s over {} messages (linger.ms=5 included)",
        ack.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0 / ack.n.load(Ordering::Relaxed).max(1) as f64,
        ack.max_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        ack.n.load(Ordering::Relaxed)
    );
}

//! Both stages through the repartition topic, beside the single stage as the reference, in one
//! run on one broker: `GATEWATCH_BENCH_BROKERS=host:port cargo bench --bench repartition`
//! (a real broker: `tansu broker --storage-engine memory://tansu/`; without it, librdkafka's
//! in-process MockCluster, which keeps only ~5 MB per partition, so keep the run short).
//!
//! 1. Throughput: simulated Kong traffic (GATEWATCH_BENCH_MINUTES, default 20) is produced to a
//!    12-partition topic, one record per random partition (unkeyed). Then, from the beginning:
//!    the single stage in one process (the reference: each partition detected alone, which is
//!    wrong for unkeyed input but is the cost to compare with), and both stages in one process,
//!    until detect has taken every record ingest sent. Records per second wall, records per
//!    CPU-second (the process's), repartition bytes per input byte.
//! 2. Latency: records produced live at GATEWATCH_BENCH_RATE per second (default 1000; event
//!    time runs faster than wall time then), allowed lateness 0: wall time from the append of
//!    the record that completed a detection to the alert's handoff, both stages.
#![allow(clippy::disallowed_methods)] // times sockets and processes, not detection

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatewatch::actions::{AlertHandoff, HandoffError};
use gatewatch::app::run::{RunAs, Service, ServiceParts};
use gatewatch::config::{GatewatchConfig, DEV_FINGERPRINT_KEY};
use gatewatch::event::Alert;
use gatewatch::normalize::Format;
use gatewatch::simulate::{render, simulate, SimConfig};
use gatewatch::source::kafka::{KafkaSettings, StartFrom};
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::{cpu_seconds, create_topics, send_retrying};

const P: i32 = 12;

/// Keeps every alert with the wall time it was handed off.
#[derive(Default)]
struct Handed(Mutex<Vec<(Alert, Instant)>>);

impl AlertHandoff for Handed {
    fn handoff(&self, a: &Alert) -> Result<(), HandoffError> {
        self.0.lock().unwrap().push((a.clone(), Instant::now()));
        Ok(())
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("batch.num.messages", "500")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

fn send(p: &BaseProducer, topic: &str, partition: i32, payload: &str) {
    send_retrying(p, BaseRecord::<(), str>::to(topic).payload(payload).partition(partition));
}

struct Running {
    service: Service,
    handed: Arc<Handed>,
}

fn start(rt: &tokio::runtime::Runtime, bootstrap: &str, topic: &str, run_as: RunAs, lateness_ms: i64) -> Running {
    // A group (and repartition topic) of its own per run: each reads the topic from the start.
    let group = format!("{topic}-{run_as:?}").to_lowercase();
    let mut cfg = GatewatchConfig::default();
    cfg.detectors.dir = Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("detectors"));
    cfg.input.format = "kong".into();
    cfg.engine.allowed_lateness.0 = lateness_ms;
    let new_pipeline = gatewatch::app::run::pipeline_factory(&cfg, DEV_FINGERPRINT_KEY.as_bytes()).expect("detectors");
    let mut s = KafkaSettings::new(bootstrap, vec![topic.into()], group);
    s.start_from = StartFrom::Earliest;
    s.repartition = s.repartition.clone().with_topic(&format!("{topic}-repartition"));
    let handed = Arc::new(Handed::default());
    let parts = ServiceParts {
        settings: s,
        run_as,
        listen: "127.0.0.1:0".parse().unwrap(),
        new_pipeline,
        handoff: handed.clone(),
        registry: Arc::new(prometheus::Registry::new()),
        admin: None,
        admin_limits: Default::default(),
        dispatcher: None,
        entities: None,
    };
    let service = rt.block_on(Service::start(parts)).expect("service starts");
    Running { service, handed }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let minutes: i64 = std::env::var("GATEWATCH_BENCH_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(20);
    let rate: f64 = std::env::var("GATEWATCH_BENCH_RATE").ok().and_then(|m| m.parse().ok()).unwrap_or(1000.0);
    let sim = simulate(&SimConfig {
        duration_ms: minutes * 60_000,
        clients: 200,
        attack_rounds: (minutes as usize / 10).clamp(1, 20),
        ..SimConfig::default()
    });
    let payloads: Vec<String> = sim.records.iter().map(|r| render(r, Format::Kong)).collect();
    let bytes: usize = payloads.iter().map(String::len).sum();
    let run = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let (bulk, live) = (format!("bulk-{run}"), format!("live-{run}"));
    let topics = [
        (bulk.clone(), P),
        (format!("{bulk}-repartition"), 12),
        (live.clone(), P),
        (format!("{live}-repartition"), 12),
    ];
    let topic_refs: Vec<(&str, i32)> = topics.iter().map(|(t, n)| (t.as_str(), *n)).collect();
    let mut _cluster = None;
    let bootstrap = match std::env::var("GATEWATCH_BENCH_BROKERS") {
        Ok(b) => {
            create_topics(&b, &topic_refs);
            println!("broker: {b} (external)");
            b
        }
        Err(_) => {
            let cluster = MockCluster::new(1).expect("mock cluster");
            for (t, n) in &topic_refs {
                cluster.create_topic(t, *n, 1).unwrap();
            }
            let b = cluster.bootstrap_servers();
            _cluster = Some(cluster);
            println!("broker: librdkafka MockCluster (in-process)");
            b
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // 1. Throughput.
    let p = producer(&bootstrap);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(5);
    for payload in &payloads {
        send(&p, &bulk, rng.gen_range(0..P), payload);
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(300)).unwrap();
    println!("produced {} Kong records ({:.1} MB) over {P} partitions, unkeyed", payloads.len(), bytes as f64 / 1e6);
    let n = payloads.len() as u64;
    for (what, run_as) in [("single stage (reference)", RunAs::Single), ("both stages", RunAs::Both)] {
        let r = start(&rt, &bootstrap, &bulk, run_as, 30_000);
        let m = r.service.metrics.clone();
        let joined = Instant::now();
        while m.messages.get() == 0 && joined.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let first = m.messages.get();
        let (cpu0, t) = (cpu_seconds(), Instant::now());
        let sent = || m.repartition_records.with_label_values(&["sent", "event"]).get();
        let got = || m.repartition_records.with_label_values(&["received", "event"]).get();
        let done = || m.messages.get() >= n && (run_as == RunAs::Single || (sent() > 0 && got() >= sent()));
        while !done() && t.elapsed() < Duration::from_secs(900) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
        let ratio = m.repartition_bytes.with_label_values(&["sent"]).get() as f64 / bytes as f64;
        rt.block_on(r.service.stop()).unwrap();
        let alerts = r.handed.0.lock().unwrap().len();
        println!(
            "{what}: {} records in {wall:.2}s after the group join = {:.0} records/s wall; {cpu:.2} CPU-s = {:.0} records per CPU-second; repartition {ratio:.3} bytes per input byte (before compression); {alerts} alerts; peak RSS so far {:.0} MB",
            n - first,
            (n - first) as f64 / wall,
            (n - first) as f64 / cpu.max(1e-9),
            peak_rss_mb()
        );
    }
    // The bulk topics are no longer read; a second group starting now would stall on them.
    drop(p);

    // 2. Latency, both stages, records produced live at `rate` per second.
    let r = start(&rt, &bootstrap, &live, RunAs::Both, 0);
    std::thread::sleep(Duration::from_secs(5));
    let p = producer(&bootstrap);
    let mut appended: HashMap<i64, Instant> = HashMap::new();
    let t = Instant::now();
    for (i, (rec, payload)) in sim.records.iter().zip(&payloads).enumerate() {
        let due = Duration::from_secs_f64(i as f64 / rate);
        if let Some(w) = due.checked_sub(t.elapsed()) {
            std::thread::sleep(w);
        }
        send(&p, &live, rng.gen_range(0..P), payload);
        appended.entry(rec.ts).or_insert_with(Instant::now);
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).unwrap();
    let produced_for = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(10));
    rt.block_on(r.service.stop()).unwrap();
    let handed = r.handed.0.lock().unwrap();
    let mut lat: Vec<f64> = handed
        .iter()
        .filter_map(|(a, at)| appended.get(&a.window_end).map(|app| at.saturating_duration_since(*app).as_secs_f64()))
        .collect();
    lat.sort_by(f64::total_cmp);
    let q = |f: f64| lat.get(((lat.len() as f64 * f).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    println!(
        "latency, both stages, live at {:.0} records/s, allowed_lateness 0: {} of {} alerts timed; append of the completing record -> handoff p50 {:.3}s, p99 {:.3}s, max {:.3}s",
        n as f64 / produced_for,
        lat.len(),
        handed.len(),
        q(0.5),
        q(0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
}

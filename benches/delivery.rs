//! Alert delivery: what a durable queue costs per alert handed off (fsync on every push, and
//! without it), how fast a queue drains on its own, and how fast a backlog piled up during an
//! outage reaches a real HTTP receiver on 127.0.0.1 once it is back (alerts and notifications
//! per second, grouped per entity). Prints the disk bytes each queued notification takes.
#![allow(clippy::disallowed_methods)] // times deliveries

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gatewatch::actions::config::{ActionsConfig, DeliveryConfig, SinkConfig, SinkKind, WebhookConfig, WebhookFormat};
use gatewatch::actions::lifecycle::Notification;
use gatewatch::actions::queue::segment::Fsync;
use gatewatch::actions::queue::{DrainOrder, DurableQueue, Next, QueueLimits};
use gatewatch::actions::{AlertHandoff, Dispatcher};
use gatewatch::event::{Alert, Entity, EntityKind, Severity};

fn alert(entity: usize, i: i64) -> Alert {
    let e = Entity::new(EntityKind::Token, format!("{:016x}", entity as u64 * 0x9e37_79b9));
    let window_start = 1_800_000_000_000 + i * 60_000;
    let mut evidence = serde_json::Map::new();
    evidence.insert("distinct_networks".into(), 7.into());
    evidence.insert("networks".into(), serde_json::json!(["198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24"]));
    Alert {
        id: Alert::make_id("token-reuse-default", &e, window_start),
        detector: "token_reuse".into(),
        rule: "token-reuse-default".into(),
        severity: Severity::High,
        entity: e,
        client_id: Some(format!("app-{entity}")),
        client_id_source: Default::default(),
        token_fingerprint: None,
        window_start,
        window_end: window_start + 300_000,
        summary: "token used from 7 networks in 5m (limit 3)".into(),
        evidence,
        actions: vec!["webhook:secops".into()],
    }
}

fn limits() -> QueueLimits {
    QueueLimits {
        max_items: 10_000_000,
        max_bytes: 1 << 34,
        expire_after: Duration::from_secs(86_400),
        order: DrainOrder::OldestFirst,
        group_window: Duration::ZERO,
    }
}

fn push(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(1));
    for (name, fsync) in [("push_fsync_always", Fsync::Always), ("push_fsync_never", Fsync::Never)] {
        let dir = tempfile::tempdir().unwrap();
        let (q, _) = DurableQueue::open(dir.path(), limits(), 8 << 20, fsync).unwrap();
        let mut i = 0i64;
        g.bench_function(name, |b| {
            b.iter(|| {
                q.push(&Notification::firing(alert(i as usize % 1000, i)), i).unwrap();
                i += 1;
            })
        });
        let s = q.stats();
        eprintln!(
            "{name}: {} notifications queued, {} bytes of records, {} on disk: {} bytes per notification",
            s.items,
            s.bytes,
            s.disk_bytes,
            s.disk_bytes / s.items.max(1)
        );
    }
    g.finish();
}

fn drain(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    const N: usize = 10_000;
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function("drain_10k_in_1000_groups", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let (q, _) = DurableQueue::open(dir.path(), limits(), 8 << 20, Fsync::Never).unwrap();
                for i in 0..N {
                    q.push(&Notification::firing(alert(i % 1000, i as i64)), i as i64).unwrap();
                }
                (dir, q)
            },
            |(_dir, q)| {
                let now = Instant::now();
                let mut batches = 0;
                while let Next::Send(b) = q.next(now).unwrap() {
                    q.done(&b, now).unwrap();
                    batches += 1;
                }
                assert_eq!(batches, 1000);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

#[derive(Clone, Default)]
struct Receiver {
    down: Arc<AtomicBool>,
    alerts: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap) -> StatusCode {
    if r.down.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let n: u64 = headers.get("x-gatewatch-count").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(1);
    r.alerts.fetch_add(n, Ordering::Relaxed);
    r.requests.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

/// A backlog of `alerts` alerts over `entities` entities piles up while the receiver answers
/// 503; the clock runs from the moment it answers again until the last is delivered.
fn drain_after_outage(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let r = Receiver::default();
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/hook", post(receive)).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    let mut g = c.benchmark_group("delivery");
    g.sample_size(10);
    for (alerts, entities) in [(5_000usize, 5_000usize), (5_000, 100)] {
        g.throughput(Throughput::Elements(alerts as u64));
        let name = format!("drain_after_outage_{alerts}_alerts_{entities}_entities");
        g.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let mut cfg = ActionsConfig::new(dir.path().join("dl.jsonl"));
                    cfg.group_window = Duration::ZERO;
                    cfg.queue_fsync = Fsync::Never;
                    cfg.sinks.push(SinkConfig {
                        name: "webhook:secops".into(),
                        delivery: DeliveryConfig {
                            initial_backoff: Duration::from_millis(1),
                            max_backoff: Duration::from_millis(5),
                            breaker_open_for: Duration::from_millis(5),
                            ..DeliveryConfig::default()
                        },
                        kind: SinkKind::Webhook(WebhookConfig {
                            url: format!("http://{addr}/hook"),
                            format: WebhookFormat::Json,
                            secret: None,
                            headers: Default::default(),
                        }),
                    });
                    r.down.store(true, Ordering::Relaxed);
                    r.alerts.store(0, Ordering::Relaxed);
                    r.requests.store(0, Ordering::Relaxed);
                    let d = rt.block_on(async { Dispatcher::start(&cfg, vec![], None).unwrap() });
                    for i in 0..alerts {
                        d.handoff(&alert(i % entities, i as i64)).unwrap();
                    }
                    let start = Instant::now();
                    r.down.store(false, Ordering::Relaxed);
                    while r.alerts.load(Ordering::Relaxed) < alerts as u64 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    total += start.elapsed();
                    let requests = r.requests.load(Ordering::Relaxed);
                    eprintln!(
                        "{name}: {requests} notifications for {alerts} alerts in {:.3}s",
                        start.elapsed().as_secs_f64()
                    );
                    rt.block_on(d.shutdown(Duration::from_secs(1)));
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, push, drain, drain_after_outage);
criterion_main!(benches);

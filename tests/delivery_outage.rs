//! Alerts outlive a sink outage: over real sockets, a webhook receiver that answers 503 for
//! an outage (five minutes of the default backoff and breaker, shortened by configuration to
//! a second) while alerts keep coming, and an SMTP relay (aiosmtpd) that refuses with 451 for
//! a while, each get every alert once the outage ends: each notification once by idempotency
//! key, the counts adding up to the alerts raised, nothing in the dead-letter file. A queue
//! that reaches its byte bound dead-letters and counts the overflow, and memory stays flat.
#![allow(clippy::disallowed_methods)] // times sockets and outages, not detection

mod smtp_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use gatewatch::actions::config::{ActionsConfig, DeliveryConfig, SinkConfig, SinkKind, WebhookConfig, WebhookFormat};
use gatewatch::actions::{ActionsSettings, AlertHandoff, CircuitState, Dispatcher};
use gatewatch::config::GatewatchConfig;
use gatewatch::event::{Alert, Entity, EntityKind, Severity};

/// Counts live heap bytes, to show a full queue does not grow memory.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// A webhook receiver that answers 503 while `down`, and records what it accepted.
#[derive(Clone, Default)]
struct Receiver {
    down: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    /// (idempotency key, count, alert id in the body)
    accepted: Arc<Mutex<Vec<(String, u64, String)>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    if r.down.load(Ordering::SeqCst) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let hv = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("the body is the alert JSON");
    r.accepted.lock().unwrap().push((
        hv("idempotency-key"),
        hv("x-gatewatch-count").parse().expect("a count"),
        v["id"].as_str().unwrap().to_string(),
    ));
    StatusCode::OK
}

async fn start_receiver(r: Receiver) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", post(receive)).with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn alert(entity: &str, i: i64) -> Alert {
    let e = Entity::new(EntityKind::ClientId, entity);
    let window_start = 1_800_000_000_000 + i * 60_000;
    Alert {
        id: Alert::make_id("auth-failure-default", &e, window_start),
        detector: "auth_failure_spike".into(),
        rule: "auth-failure-default".into(),
        severity: Severity::High,
        entity: e,
        client_id: Some(entity.into()),
        client_id_source: Default::default(),
        token_fingerprint: None,
        window_start,
        window_end: window_start + 300_000,
        summary: format!("failed logins for {entity}, window {i}"),
        evidence: Default::default(),
        actions: vec!["webhook:secops".into()],
    }
}

/// The default retry schedule (500 ms to 1 m backoff, breaker open for 30 s) at 1/300 scale:
/// an outage of one second here is the five minutes of the issue.
fn scaled_delivery() -> DeliveryConfig {
    DeliveryConfig {
        initial_backoff: Duration::from_micros(1_700),
        max_backoff: Duration::from_millis(200),
        breaker_failures: 5,
        breaker_open_for: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
        ..DeliveryConfig::default()
    }
}

fn webhook(url: String, delivery: DeliveryConfig) -> SinkConfig {
    SinkConfig {
        name: "webhook:secops".into(),
        delivery,
        kind: SinkKind::Webhook(WebhookConfig {
            url,
            format: WebhookFormat::Json,
            secret: None,
            headers: BTreeMap::new(),
        }),
    }
}

async fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dead_letters(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead-letter line is JSON"))
        .collect()
}

/// Every alert accounted for exactly once: each key delivered once, every key an alert id,
/// and the counts of the notifications adding up to the alerts raised.
fn every_alert_once(delivered: &[(String, u64)], raised: &[Alert]) {
    let ids: BTreeSet<&str> = raised.iter().map(|a| a.id.as_str()).collect();
    let mut keys = BTreeSet::new();
    for (k, _) in delivered {
        assert!(keys.insert(k.as_str()), "key {k} delivered twice");
        assert!(ids.contains(k.as_str()), "key {k} is not an alert raised");
    }
    let total: u64 = delivered.iter().map(|(_, c)| c).sum();
    assert_eq!(total, raised.len() as u64, "the counts add up to the alerts raised: {delivered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_down_for_an_outage_gets_every_alert_once_when_back() {
    let r = Receiver::default();
    r.down.store(true, Ordering::SeqCst);
    let addr = start_receiver(r.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ActionsConfig::new(dir.path().join("dl.jsonl"));
    cfg.group_window = Duration::from_millis(300);
    cfg.sinks.push(webhook(format!("http://{addr}/hook"), scaled_delivery()));
    let d = Dispatcher::start(&cfg, vec![], None).unwrap();

    // Alerts keep coming through the outage: 5 entities, 200 alerts over about a second.
    let mut raised = Vec::new();
    let started = Instant::now();
    let mut circuit_opened = false;
    for i in 0..200 {
        let a = alert(&format!("client-{}", i % 5), i / 5);
        d.handoff(&a).expect("handoff succeeds while the receiver is down");
        raised.push(a);
        tokio::time::sleep(Duration::from_millis(5)).await;
        circuit_opened |= d.stats().sinks[0].circuit != CircuitState::Closed;
    }
    eventually("the outage to last a second", 10, || started.elapsed() >= Duration::from_secs(1)).await;
    let during = d.stats().sinks[0].clone();
    assert!(circuit_opened, "the breaker opened during the outage: {during:?}");
    assert!(r.refused.load(Ordering::SeqCst) >= 5, "the receiver was probed while down");
    assert_eq!((during.sent, during.dead_lettered, during.queue_depth), (0, 0, 200), "{during:?}");
    assert!(during.oldest_queued_ms.is_some() && during.queue_bytes > 0);

    r.down.store(false, Ordering::SeqCst);
    let total = |r: &Receiver| r.accepted.lock().unwrap().iter().map(|(_, c, _)| c).sum::<u64>();
    eventually("every alert delivered", 30, || total(&r) == 200).await;
    d.shutdown(Duration::from_secs(5)).await;

    let got = r.accepted.lock().unwrap().clone();
    every_alert_once(&got.iter().map(|(k, c, _)| (k.clone(), *c)).collect::<Vec<_>>(), &raised);
    // The backlog drained grouped: a notification per entity for the first alert (in flight
    // through the outage), then one with the count of the rest, not two hundred.
    assert!(got.len() <= 15, "{} notifications for 200 alerts: {got:?}", got.len());
    for (key, count, id) in &got {
        if *count > 1 {
            assert_ne!(key, id, "a batch is keyed by its first alert and shows its latest");
        }
    }
    assert!(dead_letters(&d.dead_letter_path()).is_empty());
    let s = &d.stats().sinks[0];
    assert_eq!((s.queue_depth, s.overflow, s.expired, s.dead_lettered), (0, 0, 0, 0), "{s:?}");
    assert_eq!(d.stats().grouped, 200 - got.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_relay_refusing_for_a_while_then_gets_every_alert_once() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp_support::start_smtp(dir.path(), "gatewatch", "relay-password-1");
    smtp.refuse(true);
    let toml_text = format!(
        r#"
        [actions]
        dead_letter = "{dl}"
        queue_dir = "{queue}"
        group_window = "300ms"
        [actions.email.oncall]
        host = "127.0.0.1"
        port = {port}
        tls = "none"
        username = "gatewatch"
        password_env = "GW_TEST_RELAY_PASSWORD"
        from = "gatewatch <gatewatch@example.com>"
        to = ["oncall@example.com"]
        initial_backoff = "2ms"
        max_backoff = "200ms"
        breaker_open_for = "100ms"
        timeout = "5s"
        "#,
        dl = dir.path().join("dl.jsonl").display(),
        queue = dir.path().join("queue").display(),
        port = smtp.port,
    );
    let mut cfg: GatewatchConfig = toml::from_str(&toml_text).unwrap();
    cfg.path = Some(dir.path().join("gatewatch.toml"));
    let env = |k: &str| (k == "GW_TEST_RELAY_PASSWORD").then(|| "relay-password-1".to_string());
    let s = ActionsSettings::from_config_with_env(&cfg, &env).unwrap();
    let d = Dispatcher::start(s.actions.as_ref().unwrap(), vec![], None).unwrap();

    let mut raised = Vec::new();
    for i in 0..30 {
        let mut a = alert(&format!("client-{}", i % 3), i / 3);
        a.actions = vec!["email:oncall".into()];
        d.handoff(&a).unwrap();
        raised.push(a);
    }
    eventually("the relay refused a few times", 30, || d.stats().sinks[0].retried >= 3).await;
    assert!(smtp.messages().is_empty());
    smtp.refuse(false);

    // Each message: its Message-ID carries the idempotency key, its subject the count.
    let delivered = || -> Vec<(String, u64)> {
        smtp.messages()
            .iter()
            .map(|m| {
                let id = m["message_id"].as_str().unwrap();
                let key = id.trim_start_matches('<').trim_end_matches("@gatewatch>").to_string();
                let subject = m["subject"].as_str().unwrap();
                let count = subject
                    .rsplit_once("(×")
                    .map_or(1, |(_, n)| n.trim_end_matches(')').parse().expect("a count in the subject"));
                (key, count)
            })
            .collect()
    };
    eventually("every alert mailed", 30, || delivered().iter().map(|(_, c)| c).sum::<u64>() == 30).await;
    d.shutdown(Duration::from_secs(5)).await;
    every_alert_once(&delivered(), &raised);
    assert!(delivered().len() <= 9, "grouped per entity: {:?}", delivered());
    assert!(dead_letters(&d.dead_letter_path()).is_empty());
    let text = std::fs::read_to_string(dir.path().join("dl.jsonl")).unwrap_or_default();
    assert!(!text.contains("relay-password-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_at_its_byte_bound_dead_letters_the_overflow_and_memory_stays_flat() {
    // Nobody listens: every call is refused, nothing drains.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ActionsConfig::new(dir.path().join("dl.jsonl"));
    cfg.queue_segment_bytes = 64 << 10;
    let bound = 256 << 10;
    let delivery = DeliveryConfig { queue_bytes: bound, ..scaled_delivery() };
    cfg.sinks.push(webhook(format!("http://127.0.0.1:{port}/hook"), delivery));
    let d = Dispatcher::start(&cfg, vec![], None).unwrap();

    let mut i = 0i64;
    let mut push = |n: usize| {
        for _ in 0..n {
            d.handoff(&alert(&format!("client-{i}"), i)).unwrap();
            i += 1;
        }
    };
    push(2000);
    let full = d.stats().sinks[0].clone();
    assert!(full.overflow > 0, "{full:?}");
    assert!(full.queue_bytes <= bound, "{full:?}");
    let before = LIVE.load(Ordering::Relaxed);
    push(5000);
    let after = LIVE.load(Ordering::Relaxed);
    let s = d.stats().sinks[0].clone();
    assert_eq!(s.overflow, full.overflow + 5000, "every alert past the bound is counted: {s:?}");
    assert_eq!(s.queue_depth, full.queue_depth);
    assert!(s.queue_disk_bytes <= bound + (64 << 10) + 4096, "disk stays near the bound: {s:?}");
    // 5000 more alerts refused: the heap keeps what the dedup set remembers (an id each),
    // well under what holding the alerts would take.
    let per_alert = (after - before) / 5000;
    let record = (s.queue_bytes / s.queue_depth) as isize;
    assert!(per_alert * 3 < record, "heap grew {per_alert} bytes per refused alert (a queued one is {record})");
    d.shutdown(Duration::from_millis(100)).await;
    let dl = dead_letters(&d.dead_letter_path());
    assert_eq!(dl.len() as u64, s.overflow);
    assert!(dl.iter().all(|r| r["reason"].as_str().unwrap().starts_with("queue full (")));
    assert_eq!(s.dead_lettered, s.overflow);
}

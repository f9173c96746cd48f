//! The dispatcher against real HTTP servers on 127.0.0.1: retries deliver each alert
//! exactly once, a dead webhook neither blocks `handoff` nor loses alerts (past the queue's
//! bound or its expiry they land in the dead-letter file with the reason), a hung sink does
//! not hold up the others and what it held is sent after a restart, and bursts are folded
//! into one notification with a count.
#![allow(clippy::disallowed_methods)] // times sockets and timeouts, not detection

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use gatewatch::actions::config::{ActionsConfig, DeliveryConfig, SinkConfig, SinkKind, WebhookConfig, WebhookFormat};
use gatewatch::actions::secret::{sign_body, Secret};
use gatewatch::actions::{AlertHandoff, Dispatcher};
use gatewatch::event::{Alert, Entity, EntityKind, Severity};

#[derive(Clone, Debug)]
struct Received {
    key: String,
    signature: Option<String>,
    count: String,
    status: String,
    body: Vec<u8>,
}

#[derive(Clone, Default)]
struct Hook {
    fail_first: usize,
    calls: Arc<Mutex<usize>>,
    accepted: Arc<Mutex<Vec<Received>>>,
    hang: bool,
}

async fn hook(State(h): State<Hook>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    if h.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let n = {
        let mut c = h.calls.lock().unwrap();
        *c += 1;
        *c
    };
    if n <= h.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let hv = |k: &str| headers.get(k).map(|v| v.to_str().unwrap().to_string());
    h.accepted.lock().unwrap().push(Received {
        key: hv("idempotency-key").unwrap_or_default(),
        signature: hv("x-gatewatch-signature"),
        count: hv("x-gatewatch-count").unwrap_or_default(),
        status: hv("x-gatewatch-status").unwrap_or_default(),
        body: body.to_vec(),
    });
    StatusCode::OK
}

async fn start_hook(h: Hook) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", post(hook)).with_state(h);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn alert(entity: &str, window_end: i64) -> Alert {
    let e = Entity::new(EntityKind::ClientId, entity);
    let mut evidence = serde_json::Map::new();
    evidence.insert("failures".into(), 42.into());
    Alert {
        id: Alert::make_id("auth-failure-default", &e, window_end - 300_000),
        detector: "auth_failure_spike".into(),
        rule: "auth-failure-default".into(),
        severity: Severity::High,
        entity: e,
        client_id: Some(entity.into()),
        client_id_source: Default::default(),
        token_fingerprint: None,
        window_start: window_end - 300_000,
        window_end,
        summary: format!("42 failed logins for {entity} in 5m"),
        evidence,
        actions: vec!["webhook:secops".into()],
    }
}

fn webhook(name: &str, url: String, secret: Option<Secret>, delivery: DeliveryConfig) -> SinkConfig {
    SinkConfig {
        name: format!("webhook:{name}"),
        delivery,
        kind: SinkKind::Webhook(WebhookConfig { url, format: WebhookFormat::Json, secret, headers: BTreeMap::new() }),
    }
}

fn fast_retries() -> DeliveryConfig {
    DeliveryConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        breaker_failures: 100,
        breaker_open_for: Duration::from_millis(50),
        timeout: Duration::from_secs(10),
        ..DeliveryConfig::default()
    }
}

/// Polls `f` until it holds, for at most 30 s (generous: timing never decides the result).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_webhook_gets_each_alert_exactly_once_signed() {
    let h = Hook { fail_first: 4, ..Hook::default() };
    let addr = start_hook(h.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ActionsConfig::new(dir.path().join("dl.jsonl"));
    let secret = Secret::new("hook-secret-for-tests");
    cfg.sinks.push(webhook("secops", format!("http://{addr}/hook"), Some(secret.clone()), fast_retries()));
    let d = Dispatcher::start(&cfg, vec![], None).unwrap();

    let alerts: Vec<Alert> = (0..3).map(|i| alert(&format!("client-{i}"), 1_800_000_000_000)).collect();
    for a in &alerts {
        d.handoff(a).unwrap();
    }
    // A replayed alert (same id) is not sent again.
    d.handoff(&alerts[0]).unwrap();

    eventually("three alerts accepted", || h.accepted.lock().unwrap().len() >= 3).await;
    d.shutdown(Duration::from_secs(10)).await;

    let got = h.accepted.lock().unwrap().clone();
    let mut keys: Vec<&str> = got.iter().map(|r| r.key.as_str()).collect();
    keys.sort();
    let mut want: Vec<&str> = alerts.iter().map(|a| a.id.as_str()).collect();
    want.sort();
    assert_eq!(keys, want, "each alert exactly once");
    for r in &got {
        let a = alerts.iter().find(|a| a.id == r.key).unwrap();
        assert_eq!(r.body, a.to_json().into_bytes(), "body is the alert contract JSON");
        assert_eq!(r.signature.as_deref(), Some(sign_body(&secret, &r.body).as_str()));
        assert_eq!((r.count.as_str(), r.status.as_str()), ("1", "firing"));
    }
    let stats = d.stats();
    assert_eq!(stats.duplicates, 1);
    let s = &stats.sinks[0];
    assert_eq!((s.sent, s.failed, s.overflow, s.dead_lettered), (3, 0, 0, 0));
    assert!(s.retried >= 4, "{s:?}");
    assert!(dead_letters(&d.dead_letter_path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_webhook_blocks_nothing_and_loses_nothing() {
    // A port with nobody listening: every call is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ActionsConfig::new(dir.path().join("dead-letter.jsonl"));
    let delivery =
        DeliveryConfig { queue: 2, expire_after: Duration::from_secs(1), breaker_failures: 2, ..fast_retries() };
    cfg.sinks.push(webhook("secops", format!("http://127.0.0.1:{port}/hook"), None, delivery));
    let d = Dispatcher::start(&cfg, vec![], None).unwrap();

    let alerts: Vec<Alert> = (0..20).map(|i| alert(&format!("client-{i}"), 1_800_000_000_000)).collect();
    let started = Instant::now();
    for a in &alerts {
        d.handoff(a).expect("handoff succeeds while the sink is down");
    }
    // handoff only enqueues; 20 of them against a dead sink take far less than this bound.
    assert!(started.elapsed() < Duration::from_secs(5), "handoff blocked: {:?}", started.elapsed());

    let path = d.dead_letter_path();
    eventually("every alert in the dead-letter file", || dead_letters(&path).len() >= alerts.len()).await;
    d.shutdown(Duration::from_secs(10)).await;

    let dl = dead_letters(&path);
    assert_eq!(dl.len(), alerts.len(), "each alert once: {dl:#?}");
    for a in &alerts {
        let rec = dl.iter().find(|r| r["alert"]["id"] == a.id.as_str()).expect("alert in dead-letter file");
        assert_eq!(rec["sink"], "webhook:secops");
        assert_eq!(rec["alert"], serde_json::to_value(a).unwrap());
        let reason = rec["reason"].as_str().unwrap();
        assert!(
            reason == "queue full (2 waiting)" || reason.starts_with("expired: not delivered within 1s"),
            "reason: {reason}"
        );
        assert!(!reason.contains("127.0.0.1"), "no URL in a reason: {reason}");
    }
    let s = &d.stats().sinks[0];
    assert_eq!(s.overflow + s.expired, alerts.len() as u64, "{s:?}");
    assert_eq!((s.expired, s.queue_depth), (2, 0), "the two queued expired: {s:?}");
    assert!(s.overflow > 0, "a queue of 2 must overflow: {s:?}");
    assert_eq!(s.dead_lettered, alerts.len() as u64);
    assert_eq!(s.sent, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_sink_does_not_hold_up_the_others_and_keeps_what_it_holds() {
    let hung = Hook { hang: true, ..Hook::default() };
    let good = Hook::default();
    let hung_addr = start_hook(hung).await;
    let good_addr = start_hook(good.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ActionsConfig::new(dir.path().join("dl.jsonl"));
    let slow = DeliveryConfig { timeout: Duration::from_secs(600), ..fast_retries() };
    cfg.sinks.push(webhook("hung", format!("http://{hung_addr}/hook"), None, slow));
    cfg.sinks.push(webhook("good", format!("http://{good_addr}/hook"), None, fast_retries()));
    let d = Dispatcher::start(&cfg, vec![], None).unwrap();
    let alerts: Vec<Alert> = (0..10)
        .map(|i| {
            let mut a = alert(&format!("c{i}"), 1_800_000_000_000);
            a.actions = vec!["webhook".into()]; // every webhook sink
            a
        })
        .collect();
    for a in &alerts {
        d.handoff(a).unwrap();
    }
    eventually("the healthy sink got all ten", || good.accepted.lock().unwrap().len() == 10).await;
    // Shutdown does not wait for the hung call beyond its grace, and loses nothing: what the
    // hung sink holds stays in its queue on disk.
    d.shutdown(Duration::from_millis(200)).await;
    assert!(dead_letters(&d.dead_letter_path()).is_empty());
    let hung_stats = d.stats().sinks.into_iter().find(|s| s.name == "webhook:hung").unwrap();
    assert_eq!((hung_stats.queue_depth, hung_stats.dead_lettered), (10, 0), "{hung_stats:?}");
    drop(d);

    // The next start, with the receiver answering again, sends all ten, keyed by alert id.
    let back = Hook::default();
    let back_addr = start_hook(back.clone()).await;
    cfg.sinks[0] = webhook("hung", format!("http://{back_addr}/hook"), None, fast_retries());
    let d = Dispatcher::start(&cfg, vec![], None).unwrap();
    eventually("the restarted sink sent what it held", || back.accepted.lock().unwrap().len() == 10).await;
    let mut keys: Vec<String> = back.accepted.lock().unwrap().iter().map(|r| r.key.clone()).collect();
    let mut want: Vec<String> = alerts.iter().map(|a| a.id.clone()).collect();
    keys.sort();
    want.sort();
    assert_eq!(keys, want);
    // Handing the same alerts again (an input replayed after the restart) queues none twice.
    for a in &alerts {
        d.handoff(a).unwrap();
    }
    d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(back.accepted.lock().unwrap().len(), 10);
    assert_eq!(good.accepted.lock().unwrap().len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_is_one_notification_then_one_with_the_count() {
    let h = Hook::default();
    let addr = start_hook(h.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ActionsConfig::new(dir.path().join("dl.jsonl"));
    cfg.group_window = Duration::from_secs(3600);
    cfg.sinks.push(webhook("secops", format!("http://{addr}/hook"), None, fast_retries()));
    let d = Dispatcher::start(&cfg, vec![], None).unwrap();
    let burst: Vec<Alert> = (0..5).map(|i| alert("client-x", 1_800_000_000_000 + i * 60_000)).collect();
    d.handoff(&burst[0]).unwrap();
    eventually("first alert", || h.accepted.lock().unwrap().len() == 1).await;
    // The rest come within the group window: held, not sent one by one.
    for a in &burst[1..] {
        d.handoff(a).unwrap();
    }
    // Shutdown sends what the window held.
    d.shutdown(Duration::from_secs(10)).await;
    let got = h.accepted.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((got[0].key.as_str(), got[0].count.as_str()), (burst[0].id.as_str(), "1"));
    // The follow-up stands for the other four: the latest alert speaks, the first one's id
    // is the key (it does not change if the batch is retried, here or after a restart).
    assert_eq!((got[1].key.as_str(), got[1].count.as_str()), (burst[1].id.as_str(), "4"));
    let body: serde_json::Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(body["id"], burst[4].id.as_str());
    assert_eq!(d.stats().grouped, 3);
}

//! `gatewatch redrive` as an operator runs it: alerts that expired while a webhook receiver
//! was down are in the dead-letter file; with the receiver back, `redrive --sink` sends each
//! one through the sink (signed, keyed by alert id), records it as redriven, and a second
//! redrive sends nothing. One the receiver rejects is dead-lettered again and the command
//! says so with a failing exit code.
#![allow(clippy::disallowed_methods)] // times sockets and processes, not detection

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use gatewatch::actions::{ActionsSettings, AlertHandoff, Dispatcher};
use gatewatch::config::GatewatchConfig;
use gatewatch::event::{Alert, Entity, EntityKind, Severity};

#[derive(Clone, Default)]
struct Receiver {
    down: Arc<AtomicBool>,
    /// Alert ids this receiver refuses with 400.
    reject: Arc<Mutex<Vec<String>>>,
    /// (idempotency key, signature present)
    accepted: Arc<Mutex<Vec<(String, bool)>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    if r.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    if r.reject.lock().unwrap().iter().any(|id| v["id"] == id.as_str()) {
        return StatusCode::BAD_REQUEST;
    }
    let key = headers.get("idempotency-key").unwrap().to_str().unwrap().to_string();
    r.accepted.lock().unwrap().push((key, headers.contains_key("x-gatewatch-signature")));
    StatusCode::OK
}

async fn start_receiver(r: Receiver) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hook", post(receive)).with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn alert(i: i64) -> Alert {
    let e = Entity::new(EntityKind::ClientId, format!("client-{i}"));
    let window_start = 1_800_000_000_000 + i * 60_000;
    Alert {
        id: Alert::make_id("auth-failure-default", &e, window_start),
        detector: "auth_failure_spike".into(),
        rule: "auth-failure-default".into(),
        severity: Severity::High,
        entity: e,
        client_id: Some(format!("client-{i}")),
        client_id_source: Default::default(),
        token_fingerprint: None,
        window_start,
        window_end: window_start + 300_000,
        summary: "failed logins".into(),
        evidence: Default::default(),
        actions: vec!["webhook:secops".into()],
    }
}

const SECRET: &str = "redrive-test-signing-secret";

fn write_config(dir: &Path, addr: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("gatewatch.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[actions]
dead_letter = "dead-letter.jsonl"
[actions.webhook.secops]
url = "http://{addr}/hook"
secret_env = "GW_REDRIVE_TEST_SECRET"
expire_after = "1s"
initial_backoff = "10ms"
max_backoff = "50ms"
breaker_open_for = "50ms"
"#
        ),
    )
    .unwrap();
    path
}

fn redrive(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["redrive", "--sink", "webhook:secops", "--timeout", "30s", "--config"])
        .arg(config)
        .env("GW_REDRIVE_TEST_SECRET", SECRET)
        .output()
        .expect("gatewatch redrive runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_sends_expired_alerts_once_when_the_receiver_is_back() {
    let r = Receiver::default();
    r.down.store(true, Ordering::SeqCst);
    let addr = start_receiver(r.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), addr);
    let dl = dir.path().join("dead-letter.jsonl");

    // The outage outlasts expire_after: every alert ends in the dead-letter file.
    let mut cfg = GatewatchConfig::load(&config).unwrap();
    cfg.path = Some(config.clone());
    let env = |k: &str| (k == "GW_REDRIVE_TEST_SECRET").then(|| SECRET.to_string());
    let settings = ActionsSettings::from_config_with_env(&cfg, &env).unwrap();
    let d = Dispatcher::start(settings.actions.as_ref().unwrap(), vec![], None).unwrap();
    let alerts: Vec<Alert> = (0..6).map(alert).collect();
    for a in &alerts {
        d.handoff(a).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.stats().sinks[0].expired < 6 {
        assert!(Instant::now() < deadline, "alerts did not expire: {:?}", d.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.shutdown(Duration::from_secs(1)).await;
    drop(d);
    assert_eq!(lines(&dl).len(), 6);
    assert!(lines(&dl).iter().all(|l| l["reason"].as_str().unwrap().starts_with("expired: not delivered within 1s")));

    // Back up, but one alert is refused for good.
    r.down.store(false, Ordering::SeqCst);
    r.reject.lock().unwrap().push(alerts[5].id.clone());
    let (ok, text) = tokio::task::spawn_blocking({
        let c = config.clone();
        move || redrive(&c)
    })
    .await
    .unwrap();
    assert!(!ok, "a notification dead-lettered again fails the command:\n{text}");
    assert!(text.contains("6 dead letters, 0 redriven before, 6 sent: 5 delivered, 1 dead-lettered again"), "{text}");
    assert!(!text.contains(SECRET));
    let mut got: Vec<String> = r.accepted.lock().unwrap().iter().map(|(k, _)| k.clone()).collect();
    got.sort();
    let mut want: Vec<String> = alerts[..5].iter().map(|a| a.id.clone()).collect();
    want.sort();
    assert_eq!(got, want, "each once, keyed by alert id");
    assert!(r.accepted.lock().unwrap().iter().all(|(_, signed)| *signed), "signed as the sink signs");
    let recs = lines(&dl);
    let redriven: Vec<&str> = recs.iter().filter_map(|l| l["redriven"].as_str()).collect();
    assert_eq!(redriven.len(), 5);
    let again =
        recs.iter().filter(|l| l["reason"].as_str().is_some_and(|r| r.starts_with("rejected: HTTP 400"))).count();
    assert_eq!(again, 1);

    // A second redrive sends only the one still pending; accepted now, it settles too.
    r.reject.lock().unwrap().clear();
    let (ok, text) = tokio::task::spawn_blocking({
        let c = config.clone();
        move || redrive(&c)
    })
    .await
    .unwrap();
    assert!(ok, "{text}");
    assert!(text.contains("1 sent: 1 delivered, 0 dead-lettered again"), "{text}");
    assert_eq!(r.accepted.lock().unwrap().len(), 6);
    let (ok, text) = tokio::task::spawn_blocking(move || redrive(&config)).await.unwrap();
    assert!(ok && text.contains("0 sent"), "{text}");
    assert_eq!(r.accepted.lock().unwrap().len(), 6);
}

#[test]
fn redrive_names_the_sinks_when_the_name_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "127.0.0.1:9".parse().unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["redrive", "--sink", "webhook:nope", "--config"])
        .arg(&config)
        .env("GW_REDRIVE_TEST_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no sink named webhook:nope in the config (sinks: webhook:secops)"), "{err}");
}

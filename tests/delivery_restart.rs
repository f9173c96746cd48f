//! An outage across a crash: `gatewatch run` raises alerts while its webhook receiver is
//! down, is killed with SIGKILL in the middle of the outage (the alerts only in its queue on
//! disk, their input offsets committed), and is started again while more attack traffic
//! arrives. When the receiver is back, every alert on the alerts topic reaches it: each
//! notification once by idempotency key, their counts adding up to the alerts raised, none
//! in the dead-letter file.

mod kafka_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use kafka_support::*;

const P: i32 = 2;
const GROUP: &str = "gw-outage-restart";

#[derive(Clone, Default)]
struct Receiver {
    down: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<(String, u64)>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap) -> StatusCode {
    if r.down.load(Ordering::SeqCst) {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let hv = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    r.accepted.lock().unwrap().push((hv("idempotency-key"), hv("x-gatewatch-count").parse().unwrap()));
    StatusCode::OK
}

/// The receiver on its own runtime thread (the test itself is blocking).
fn start_receiver(r: Receiver) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = Router::new().route("/hook", post(receive)).with_state(r);
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

fn alert_ids(bootstrap: &str) -> Vec<String> {
    read_all(bootstrap, "alerts", 1)
        .into_iter()
        .map(|(_, _, p)| serde_json::from_slice::<serde_json::Value>(&p).unwrap()["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn killed_in_the_middle_of_an_outage_every_alert_is_delivered_after_the_restart() {
    let mc = cluster(&[("logs", P), ("alerts", 1)]);
    let bootstrap = mc.bootstrap_servers();
    let r = Receiver::default();
    r.down.store(true, Ordering::SeqCst);
    let addr = start_receiver(r.clone());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatewatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[fingerprint]
key = "{KEY}"
[input]
format = "generic"
[detectors]
dir = "{detectors}"
[admin]
listen = "127.0.0.1:0"
[kafka]
brokers = "{bootstrap}"
topics = ["logs"]
group_id = "{GROUP}"
alerts_topic = "alerts"
start_from = "earliest"
commit_interval = "200ms"
shutdown_grace = "2s"
[kafka.repartition]
enabled = "never"
[kafka.librdkafka]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500
[actions]
dead_letter = "{dir}/dead-letter.jsonl"
group_window = "1s"
[actions.webhook.secops]
url = "http://{addr}/hook"
min_severity = "info"
# The default schedule at 1/300 scale: probing every 100 ms while the breaker is open.
initial_backoff = "2ms"
max_backoff = "200ms"
breaker_open_for = "100ms"
"#,
            detectors = detectors_dir().display(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();

    // Three brute forces before the crash, a fourth straddling it.
    let mut phase1 = vec![benign(T0, T0 + 300_000, 5, 10_000, P)];
    for (i, ip) in ["203.0.113.10", "203.0.113.11", "203.0.113.12"].iter().enumerate() {
        phase1.push(brute_force(ip, T0 + 30_000 + i as i64 * 20_000, 30, 5_000, P));
    }
    phase1.push(brute_force("203.0.113.20", T0 + 200_000, 15, 5_000, P));
    let phase1 = merge(phase1);
    produce(&bootstrap, "logs", &phase1);
    let ends1 = ends_of(&phase1, P);

    let mut first = spawn_run(&config, &dir.path().join("first.log"));
    let queued = wait_until(Duration::from_secs(90), || {
        r.refused.load(Ordering::SeqCst) >= 3 && committed(&bootstrap, GROUP, "logs", P) == ends1
    });
    first.kill().unwrap();
    first.wait().unwrap();
    let log1 = std::fs::read_to_string(dir.path().join("first.log")).unwrap_or_default();
    assert!(queued, "no alert queued and refused before the kill, or phase 1 not committed; log:\n{log1}");
    let before_kill = alert_ids(&bootstrap).len();
    assert!(before_kill >= 3, "the three attacks alerted before the kill; log:\n{log1}");
    assert!(r.accepted.lock().unwrap().is_empty());

    // More attack traffic while the process is down and the receiver still is.
    let phase2 = merge(vec![
        benign(T0 + 300_000, T0 + 900_000, 5, 10_000, P),
        brute_force("203.0.113.20", T0 + 275_000, 15, 5_000, P),
        brute_force("203.0.113.30", T0 + 400_000, 30, 5_000, P),
    ]);
    produce(&bootstrap, "logs", &phase2);
    let ends2: Vec<i64> = ends1.iter().zip(ends_of(&phase2, P)).map(|(x, y)| x + y).collect();

    let mut second = spawn_run(&config, &dir.path().join("second.log"));
    let caught_up = wait_until(Duration::from_secs(120), || committed(&bootstrap, GROUP, "logs", P) == ends2);
    let log2 = || std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default();
    assert!(caught_up, "second process did not catch up; log:\n{}", log2());
    let ids = alert_ids(&bootstrap);
    let want: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(want.len(), ids.len(), "an alert was handed off twice");
    assert!(want.len() > before_kill, "alerts came after the restart too");
    assert!(log2().contains("notifications queued before the restart are sent again"), "{}", log2());

    // The receiver is back: everything is delivered.
    r.down.store(false, Ordering::SeqCst);
    let total = || r.accepted.lock().unwrap().iter().map(|(_, c)| c).sum::<u64>();
    let delivered = wait_until(Duration::from_secs(60), || total() >= want.len() as u64);
    let got = r.accepted.lock().unwrap().clone();
    assert!(delivered, "{} of {} alerts delivered: {got:?}\n{}", total(), want.len(), log2());
    let mut keys = BTreeSet::new();
    for (k, _) in &got {
        assert!(keys.insert(k.as_str()), "{k} delivered twice: {got:?}");
        assert!(want.contains(k.as_str()), "{k} is not an alert on the alerts topic");
    }
    assert_eq!(total(), want.len() as u64, "the counts add up to the alerts raised: {got:?}");

    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    unsafe { libc::kill(second.id() as libc::pid_t, libc::SIGTERM) };
    let exited = wait_until(Duration::from_secs(20), || second.try_wait().unwrap().is_some());
    if !exited {
        second.kill().unwrap();
    }
    assert!(exited, "no exit after SIGTERM");
    let dl = std::fs::read_to_string(dir.path().join("dead-letter.jsonl")).unwrap_or_default();
    assert!(dl.is_empty(), "nothing dead-lettered:\n{dl}");
}

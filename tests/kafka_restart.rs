//! Crash and restart: `gatewatch run` is killed with SIGKILL (no clean
//! shutdown) in the middle of an attack and started again in the same group.
//! The attack that straddles the crash is still detected, because the new
//! process rebuilds state from before its committed offset, and the alert that
//! was already sent before the crash is not sent again, because alerts raised
//! below the committed offset are muted. Both land on the alerts topic exactly once.

mod kafka_support;

use std::collections::HashMap;
use std::time::Duration;

use kafka_support::*;

const P: i32 = 2;
const GROUP: &str = "gw-restart";

fn alerts_by_entity(bootstrap: &str) -> (HashMap<String, usize>, Vec<String>) {
    let mut by_entity = HashMap::new();
    let mut ids = Vec::new();
    for (_, _, payload) in read_all(bootstrap, "alerts", 1) {
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("alert is JSON");
        *by_entity.entry(v["entity"]["id"].as_str().unwrap().to_string()).or_insert(0) += 1;
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    (by_entity, ids)
}

#[test]
fn killed_mid_attack_and_restarted_detects_it_and_sends_each_alert_once() {
    let mc = cluster(&[("logs", P), ("alerts", 1)]);
    let bootstrap = mc.bootstrap_servers();
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
shutdown_grace = "10s"
[kafka.repartition]
# The single stage's own restart (tests/repartition_live.rs kills a two-stage instance).
enabled = "never"
[kafka.librdkafka]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500
"#,
            detectors = detectors_dir().display()
        ),
    )
    .unwrap();

    // Phase 1: attack A complete (30 failures), attack B half done (15 failures: below the threshold of 20).
    let a = "203.0.113.10";
    let b = "203.0.113.20";
    let phase1 = merge(vec![
        benign(T0, T0 + 300_000, 5, 10_000, P),
        brute_force(a, T0 + 30_000, 30, 5_000, P),
        brute_force(b, T0 + 200_000, 15, 5_000, P),
    ]);
    produce(&bootstrap, "logs", &phase1);

    let mut first = spawn_run(&config, &dir.path().join("first.log"));
    let sent_a = wait_until(Duration::from_secs(90), || alerts_by_entity(&bootstrap).0.contains_key(a));
    let ends1 = ends_of(&phase1, P);
    let committed1 = wait_until(Duration::from_secs(60), || committed(&bootstrap, GROUP, "logs", P) == ends1);
    // No clean shutdown: SIGKILL.
    first.kill().unwrap();
    first.wait().unwrap();
    let log1 = std::fs::read_to_string(dir.path().join("first.log")).unwrap_or_default();
    assert!(sent_a, "attack A not alerted before the crash; log:\n{log1}");
    assert!(
        committed1,
        "first process did not commit phase 1: {:?} vs {ends1:?}; log:\n{log1}",
        committed(&bootstrap, GROUP, "logs", P)
    );
    assert!(!alerts_by_entity(&bootstrap).0.contains_key(b), "half of attack B must not be enough to alert");

    // Phase 2: the other half of attack B (15 more failures) and traffic after it.
    let phase2 =
        merge(vec![benign(T0 + 300_000, T0 + 480_000, 5, 10_000, P), brute_force(b, T0 + 275_000, 15, 5_000, P)]);
    produce(&bootstrap, "logs", &phase2);
    let ends2: Vec<i64> = ends1.iter().zip(ends_of(&phase2, P)).map(|(x, y)| x + y).collect();

    let mut second = spawn_run(&config, &dir.path().join("second.log"));
    let done = wait_until(Duration::from_secs(120), || committed(&bootstrap, GROUP, "logs", P) == ends2);
    let log2 = std::fs::read_to_string(dir.path().join("second.log")).unwrap_or_default();
    assert!(done, "second process did not catch up; log:\n{log2}");

    // Every alert handed off before its offset was committed: the topic is complete now.
    let (by_entity, ids) = alerts_by_entity(&bootstrap);
    assert_eq!(
        by_entity.get(b),
        Some(&1),
        "attack B straddling the crash must be alerted exactly once: {by_entity:?}\n{log2}"
    );
    assert_eq!(
        by_entity.get(a),
        Some(&1),
        "attack A was sent before the crash and must not be sent again: {by_entity:?}"
    );
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "an alert id was handed off twice");
    assert!(log2.contains("state rebuilt"), "the restart did not rebuild state:\n{log2}");

    // SIGTERM: graceful exit within the grace period.
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(second.id() as libc::pid_t, libc::SIGTERM) }, 0, "SIGTERM");
    let exited = wait_until(Duration::from_secs(20), || second.try_wait().unwrap().is_some());
    if !exited {
        second.kill().unwrap();
    }
    assert!(exited, "no exit within the grace period after SIGTERM");
    assert!(second.wait().unwrap().success(), "non-zero exit after SIGTERM");
}

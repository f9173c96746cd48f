//! SIGHUP, or a change to the detector folder, reloads the detector files of a running
//! `gatewatch run`: a broken set is refused and the running one kept, a good set is taken, an
//! unchanged rule keeps its state, a new rule starts empty, and the process never dies of the
//! signal.
//!
//! Against librdkafka's in-process `MockCluster` (real protocol on 127.0.0.1): this is about
//! what a reload does, not about volume.
#![cfg(unix)]
#![allow(clippy::disallowed_methods)] // waits on a subprocess and sockets, not detection

mod kafka_support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_support::{benign, brute_force, cluster, merge, produce, wait_until, KEY, T0};

/// Failed logins from one address within 10 minutes that raise an alert.
fn rule(id: &str, threshold: u32) -> String {
    format!(
        r#"id = "{id}"
kind = "auth_failure_spike"
severity = "high"
cooldown = "15m"
actions = ["log"]
[params]
window = "10m"
keys = ["source_ip"]
[params.threshold]
source_ip = {threshold}
"#
    )
}

fn config(dir: &Path, bootstrap: &str, admin: u16) -> String {
    format!(
        r#"
[detectors]
dir = "{dir}/detectors"
[rules]
dir = "{dir}/rules"
[kafka]
brokers = "{bootstrap}"
topics = ["logs"]
group_id = "reload-test"
start_from = "earliest"
commit_interval = "500ms"
[admin]
listen = "127.0.0.1:{admin}"
"#,
        dir = dir.display()
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn metrics(admin: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(admin) else { return String::new() };
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `GET /api/v1/rules`, with a bearer token or without: the whole response.
fn rules_api(admin: &str, token: Option<&str>) -> String {
    api_get(admin, "/api/v1/rules", token)
}

/// A GET under `/api/`, with a bearer token or without: the whole response.
fn api_get(admin: &str, path: &str, token: Option<&str>) -> String {
    let mut s = std::net::TcpStream::connect(admin).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))?.rsplit(' ').next()?.parse().ok()
}

fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let o = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            o.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}

struct Gatewatch(Child);
impl Drop for Gatewatch {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hangup(child: &Child) {
    let ok = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -HUP");
}

/// The (rule, source address) of every alert printed so far.
fn alerts(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|a| (a["rule"].as_str().unwrap_or("").to_string(), a["entity"]["id"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn sighup_reloads_detector_files_and_keeps_the_state_of_unchanged_rules() {
    let dir = tempfile::tempdir().unwrap();
    let det = dir.path().join("detectors");
    std::fs::create_dir_all(&det).unwrap();
    std::fs::create_dir_all(dir.path().join("rules")).unwrap();
    std::fs::write(det.join("brute.toml"), rule("brute", 6)).unwrap();
    let mc = cluster(&[("logs", 1)]);
    let bootstrap = mc.bootstrap_servers();
    let admin = format!("127.0.0.1:{}", free_port());
    let port: u16 = admin.rsplit(':').next().unwrap().parse().unwrap();
    let cfg = dir.path().join("gatewatch.toml");
    std::fs::write(&cfg, config(dir.path(), &bootstrap, port)).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("GATEWATCH_FINGERPRINT_KEY", KEY)
        .env("GATEWATCH_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gatewatch starts");
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let mut gw = Gatewatch(child);
    let alive = |gw: &mut Gatewatch| {
        let status = gw.0.try_wait().unwrap();
        assert!(status.is_none(), "gatewatch exited ({status:?}):\n{}", stderr.lock().unwrap());
    };
    let read_up_to = |n: usize| {
        assert!(
            wait_until(Duration::from_secs(60), || metric(&metrics(&admin), "gatewatch_kafka_messages_total")
                .is_some_and(|v| v >= n as f64)),
            "gatewatch did not read {n} messages:\n{}",
            stderr.lock().unwrap()
        );
    };

    // Before any reload: the gauges say the set in force loaded fine.
    assert!(wait_until(Duration::from_secs(30), || !metrics(&admin).is_empty()), "no /metrics");
    let m = metrics(&admin);
    assert_eq!(metric(&m, "gatewatch_detector_last_reload_successful"), Some(1.0), "{m}");
    assert_eq!(metric(&m, r#"gatewatch_detector_reloads_total{result="error"}"#), Some(0.0));

    // Three failures from one address (below 6), then enough benign traffic that the
    // watermark passes them: they are in the rule's window, not in a buffer.
    let a = "203.0.113.7";
    let phase1 = merge(vec![brute_force(a, T0, 3, 1_000, 1), benign(T0, T0 + 120_000, 3, 1_000, 1)]);
    produce(&bootstrap, "logs", &phase1);
    read_up_to(phase1.len());

    // A broken file and SIGHUP (the folder watch may see it too): refused, the running set
    // kept, the process alive.
    std::fs::write(det.join("broken.toml"), "id = \"broken\"\nkind = \"no_such_kind\"\n").unwrap();
    hangup(&gw.0);
    assert!(
        wait_until(Duration::from_secs(20), || stderr
            .lock()
            .unwrap()
            .contains("not reloaded, the running set is kept")),
        "no refusal logged:\n{}",
        stderr.lock().unwrap()
    );
    alive(&mut gw);
    let m = metrics(&admin);
    assert!(metric(&m, r#"gatewatch_detector_reloads_total{result="error"}"#).unwrap() >= 1.0, "{m}");
    assert_eq!(metric(&m, "gatewatch_detector_last_reload_successful"), Some(0.0));
    assert!(stderr.lock().unwrap().contains("broken.toml"), "the error names the file");

    // A good set, no signal: the folder watch takes it. The broken file gone, a second rule
    // added, the first one unchanged.
    std::fs::remove_file(det.join("broken.toml")).unwrap();
    std::fs::write(det.join("brute-strict.toml"), rule("brute-strict", 4)).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || stderr
            .lock()
            .unwrap()
            .contains("the detector or rules folder changed: reloaded detector files from")
            && stderr.lock().unwrap().contains("added: brute-strict; 1 unchanged")),
        "no reload logged:\n{}",
        stderr.lock().unwrap()
    );
    alive(&mut gw);
    let m = metrics(&admin);
    assert_eq!(metric(&m, r#"gatewatch_detector_reloads_total{result="ok"}"#), Some(1.0), "{m}");
    assert_eq!(metric(&m, "gatewatch_detector_last_reload_successful"), Some(1.0));
    // The partition takes the new set at its next tick (100 ms).
    std::thread::sleep(Duration::from_millis(500));

    // Three more from the same address: `brute` kept its 3 and reaches 6; `brute-strict`
    // started empty and sees only 3 of its 4. A new address with 4 failures: only
    // `brute-strict` fires.
    let b = "198.18.0.9";
    let t1 = T0 + 121_000;
    let phase2 = merge(vec![
        brute_force(a, t1, 3, 1_000, 1),
        brute_force(b, t1, 4, 1_000, 1),
        benign(t1, t1 + 120_000, 3, 1_000, 1),
    ]);
    produce(&bootstrap, "logs", &phase2);
    read_up_to(phase1.len() + phase2.len());
    assert!(
        wait_until(Duration::from_secs(20), || alerts(&stdout.lock().unwrap()).len() >= 2),
        "alerts: {:?}\n{}",
        alerts(&stdout.lock().unwrap()),
        stderr.lock().unwrap()
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut got = alerts(&stdout.lock().unwrap());
    got.sort();
    assert_eq!(got, vec![("brute".to_string(), a.to_string()), ("brute-strict".to_string(), b.to_string())]);

    // SIGHUP with nothing changed: a no-op, said so.
    hangup(&gw.0);
    assert!(
        wait_until(Duration::from_secs(20), || stderr.lock().unwrap().contains("SIGHUP: reloaded detector files from")
            && stderr.lock().unwrap().contains("no change (2 rules)")),
        "{}",
        stderr.lock().unwrap()
    );
    alive(&mut gw);
}

/// A Sigma rule: a request for a WordPress admin page.
fn probe_rule(level: &str) -> String {
    format!(
        "title: WordPress admin probe\nid: 6c1f0e2a-9b8d-4f3e-a7c5-1d2e3f4a5b6c\nlogsource:\n    category: webserver\ndetection:\n    selection:\n        cs-uri-stem|startswith: /wp-admin\n    condition: selection\nlevel: {level}\n"
    )
}

/// A probe from `ip` at `ts`, among benign traffic that moves the watermark past it.
fn probe_phase(ip: &str, ts: i64) -> Vec<kafka_support::Rec> {
    let probe = kafka_support::Rec {
        partition: 0,
        key: ip.into(),
        payload: kafka_support::record(ts, ip, "/wp-admin/install.php", 404),
        ts,
    };
    merge(vec![vec![probe], benign(ts - 1_000, ts + 60_000, 2, 1_000, 1)])
}

#[test]
fn a_running_service_follows_a_sigma_rule_added_broken_fixed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let det = dir.path().join("detectors");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&det).unwrap();
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(det.join("brute.toml"), rule("brute", 1000)).unwrap();
    let mc = cluster(&[("logs", 1)]);
    let bootstrap = mc.bootstrap_servers();
    let port = free_port();
    let admin = format!("127.0.0.1:{port}");
    let cfg = dir.path().join("gatewatch.toml");
    // `[admin]` is the config's last section.
    std::fs::write(&cfg, config(dir.path(), &bootstrap, port) + "token_env = \"GW_TEST_ADMIN_TOKEN\"\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("GW_TEST_ADMIN_TOKEN", "reload-test-admin-token")
        .env("GATEWATCH_FINGERPRINT_KEY", KEY)
        .env("GATEWATCH_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gatewatch starts");
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let mut gw = Gatewatch(child);
    let mut produced = 0usize;
    let phase = |ip: &str, ts: i64, produced: &mut usize| {
        let recs = probe_phase(ip, ts);
        produce(&bootstrap, "logs", &recs);
        *produced += recs.len();
        let n = *produced;
        assert!(
            wait_until(Duration::from_secs(60), || metric(&metrics(&admin), "gatewatch_kafka_messages_total")
                .is_some_and(|v| v >= n as f64)),
            "gatewatch did not read {n} messages:\n{}",
            stderr.lock().unwrap()
        );
        // The partition has released the probe to the rules in force.
        std::thread::sleep(Duration::from_millis(300));
    };
    let wait_log = |what: &str, n: usize| {
        assert!(
            wait_until(Duration::from_secs(20), || stderr.lock().unwrap().matches(what).count() >= n),
            "no `{what}` logged:\n{}",
            stderr.lock().unwrap()
        );
        // The partition takes a new set at its next tick (100 ms).
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(wait_until(Duration::from_secs(30), || !metrics(&admin).is_empty()), "no /metrics");

    // No rule yet: the probe is not an alert.
    phase("203.0.113.1", T0, &mut produced);
    // The rule is added: the folder watch takes it.
    std::fs::write(rules.join("wp.yml"), probe_rule("medium")).unwrap();
    wait_log("added: 6c1f0e2a-9b8d-4f3e-a7c5-1d2e3f4a5b6c", 1);
    assert_eq!(metric(&metrics(&admin), r#"gatewatch_rules_loaded{kind="sigma"}"#), Some(1.0));
    phase("203.0.113.2", T0 + 120_000, &mut produced);
    // Broken: refused, naming the file; the running set (with the rule) kept.
    std::fs::write(rules.join("wp.yml"), "title: WordPress admin probe\ndetection: [not, a, mapping\n").unwrap();
    wait_log("not reloaded, the running set is kept", 1);
    assert!(stderr.lock().unwrap().contains("wp.yml"), "the error names the file");
    // The API says so too, behind its token.
    let api = rules_api(&admin, None);
    assert!(api.starts_with("HTTP/1.1 401"), "{api}");
    let api = rules_api(&admin, Some("reload-test-admin-token"));
    assert!(api.contains(r#""ok":false"#) && api.contains("wp.yml"), "{api}");
    assert!(api.contains("6c1f0e2a-9b8d-4f3e-a7c5-1d2e3f4a5b6c"), "the running set is listed: {api}");
    phase("203.0.113.3", T0 + 240_000, &mut produced);
    // Fixed (at another level): taken, SIGHUP or not.
    std::fs::write(rules.join("wp.yml"), probe_rule("high")).unwrap();
    hangup(&gw.0);
    // Its text changed, so it starts afresh (a detection rule keeps no state anyway).
    wait_log("changed, state reset: 6c1f0e2a-9b8d-4f3e-a7c5-1d2e3f4a5b6c", 1);
    phase("203.0.113.4", T0 + 360_000, &mut produced);
    // Removed: the probe is not an alert any more.
    std::fs::remove_file(rules.join("wp.yml")).unwrap();
    wait_log("removed: 6c1f0e2a-9b8d-4f3e-a7c5-1d2e3f4a5b6c", 1);
    phase("203.0.113.5", T0 + 480_000, &mut produced);
    assert!(gw.0.try_wait().unwrap().is_none(), "gatewatch exited:\n{}", stderr.lock().unwrap());

    std::thread::sleep(Duration::from_millis(500));
    let out = stdout.lock().unwrap().clone();
    let got: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|a| a["detector"] == "sigma")
        .map(|a| (a["entity"]["id"].as_str().unwrap().to_string(), a["severity"].as_str().unwrap().to_string()))
        .collect();
    // Each probe judged by the set in force when it was read: once, and only then.
    assert_eq!(
        got,
        vec![
            ("203.0.113.2".to_string(), "medium".to_string()),
            ("203.0.113.3".to_string(), "medium".to_string()),
            ("203.0.113.4".to_string(), "high".to_string()),
        ],
        "{out}"
    );
    let m = metrics(&admin);
    assert_eq!(metric(&m, "gatewatch_kafka_messages_total"), Some(produced as f64), "nothing lost");
    assert!(metric(&m, r#"gatewatch_detector_reloads_total{result="error"}"#).unwrap() >= 1.0, "{m}");
    assert_eq!(metric(&m, "gatewatch_detector_last_reload_successful"), Some(1.0));
    assert_eq!(metric(&m, r#"gatewatch_rules_loaded{kind="sigma"}"#), Some(0.0), "{m}");
    // The running service keeps them for the API too.
    let listed = api_get(&admin, "/api/v1/alerts?detector=sigma", Some("reload-test-admin-token"));
    let body: serde_json::Value = serde_json::from_str(listed.split_once("\r\n\r\n").unwrap().1).unwrap();
    let ips: Vec<&str> =
        body["alerts"].as_array().unwrap().iter().map(|a| a["entity"]["id"].as_str().unwrap()).collect();
    assert_eq!(ips, ["203.0.113.4", "203.0.113.3", "203.0.113.2"], "newest first");
    assert_eq!(metric(&m, r#"gatewatch_rules_loaded{kind="auth_failure_spike"}"#), Some(1.0), "{m}");
}

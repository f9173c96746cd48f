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
            .contains("the detector folder changed: reloaded detector files from")
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

//! A real CrowdSec bouncer enforces gatewatch's ban (issue 17): Debian's
//! `crowdsec-custom-bouncer`, pointed at gatewatch's `/v1/decisions/stream` with its own API
//! key, calls its script with `add` for an address gatewatch banned after a brute force
//! (`auth_failure_spike` with the `ban` action, enforce mode), and with `del` once the ban
//! expires. Forward-auth refuses the same address meanwhile, and a wrong bouncer key gets 403
//! and is counted.
//!
//! Kafka is librdkafka's in-process `MockCluster`: this is about the decision reaching a
//! bouncer, not about volume.
#![cfg(unix)]
#![allow(clippy::disallowed_methods)] // waits on processes, sockets and wall time

mod kafka_support;
mod process_support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use kafka_support::{benign, brute_force, cluster, merge, produce, wait_until, KEY, T0};
use process_support::{collect_stderr, free_port, Killed};

const BOUNCER_KEY: &str = "bouncer-test-key-0123456789";
const ATTACKER: &str = "203.0.113.66";

/// A GET on the admin listener with extra header lines: (status, body).
fn get(port: u16, path: &str, headers: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn a_crowdsec_bouncer_adds_and_then_deletes_an_address_gatewatch_banned() {
    let bouncer = ["/usr/bin/crowdsec-custom-bouncer", "/usr/sbin/crowdsec-custom-bouncer"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("crowdsec-custom-bouncer is not installed: run `.ci/run`, or `apt-get install -y --no-install-recommends crowdsec-custom-bouncer`");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let det = dir.path().join("detectors");
    std::fs::create_dir_all(&det).unwrap();
    std::fs::write(
        det.join("brute.toml"),
        "id = \"brute-ban\"\nkind = \"auth_failure_spike\"\nseverity = \"high\"\nactions = [\"log\", \"ban\"]\n[params]\nwindow = \"5m\"\nkeys = [\"source_ip\"]\n[params.threshold]\nsource_ip = 8\n",
    )
    .unwrap();
    let mc = cluster(&[("logs", 1)]);
    let bootstrap = mc.bootstrap_servers();
    let admin = free_port();
    std::fs::write(
        dir.path().join("gatewatch.toml"),
        format!(
            r#"
[detectors]
dir = "{d}/detectors"
[kafka]
brokers = "{bootstrap}"
topics = ["logs"]
group_id = "crowdsec-test"
start_from = "earliest"
commit_interval = "500ms"
[admin]
listen = "127.0.0.1:{admin}"
[admin.bouncers]
test-bouncer = "CS_TEST_BOUNCER_KEY"
[actions]
dead_letter = "{d}/dead-letter.jsonl"
queue_dir = "{d}/queue"
[revocation]
mode = "enforce"
audit_log = "{d}/audit.jsonl"
never_ban = ["192.0.2.0/24"]
ban_for = "8s"
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["run", "--config"])
        .arg(dir.path().join("gatewatch.toml"))
        .env("GATEWATCH_FINGERPRINT_KEY", KEY)
        .env("CS_TEST_BOUNCER_KEY", BOUNCER_KEY)
        .env("GATEWATCH_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gatewatch starts");
    let log = collect_stderr(&mut child);
    let _gw = Killed(child);
    assert!(
        wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()),
        "gatewatch does not listen:\n{}",
        log.lock().unwrap()
    );

    // The bouncer, in the foreground, calling a script that writes down what it is told.
    let calls = dir.path().join("calls.txt");
    let script = dir.path().join("record.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$1 $2\" >> {}\n", calls.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bouncer_cfg = dir.path().join("bouncer.yaml");
    std::fs::write(
        &bouncer_cfg,
        format!(
            "bin_path: {script}\nfeed_via_stdin: false\ntotal_retries: 0\nscenarios_containing: []\nscenarios_not_containing: []\norigins: []\npiddir: {d}/\nupdate_frequency: 1s\ncache_retention_duration: 1s\ndaemonize: false\nlog_mode: stdout\nlog_level: info\napi_url: http://127.0.0.1:{admin}/\napi_key: {BOUNCER_KEY}\nprometheus:\n  enabled: false\n  listen_addr: 127.0.0.1\n  listen_port: {}\n",
            free_port(),
            script = script.display()
        ),
    )
    .unwrap();
    let _bouncer = Killed(
        Command::new(bouncer)
            .args(["-c"])
            .arg(&bouncer_cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the bouncer starts"),
    );
    let called = || std::fs::read_to_string(&calls).unwrap_or_default();

    // A brute force from one address (and one from an address never banned), among benign
    // traffic that moves event time past them.
    let recs = merge(vec![
        brute_force(ATTACKER, T0, 12, 1_000, 1),
        brute_force("192.0.2.200", T0, 12, 1_000, 1),
        benign(T0, T0 + 120_000, 3, 1_000, 1),
    ]);
    produce(&bootstrap, "logs", &recs);
    assert!(
        wait_until(Duration::from_secs(60), || called().contains(&format!("add {ATTACKER}"))),
        "the bouncer was never told to add {ATTACKER}; calls: {}\ngatewatch:\n{}",
        called(),
        log.lock().unwrap()
    );
    // Meanwhile forward-auth refuses the banned address, and only it.
    assert_eq!(get(admin, "/v1/forward-auth", &format!("X-Real-IP: {ATTACKER}\r\n")).0, 403);
    assert_eq!(get(admin, "/v1/forward-auth", "X-Real-IP: 198.51.100.1\r\n").0, 200);
    // Live mode, as a bouncer without the stream asks.
    let (status, body) = get(admin, &format!("/v1/decisions?ip={ATTACKER}"), &format!("X-Api-Key: {BOUNCER_KEY}\r\n"));
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v[0]["scope"].as_str(), v[0]["type"].as_str(), v[0]["origin"].as_str()),
        (Some("Ip"), Some("ban"), Some("gatewatch"))
    );
    // A wrong key: refused, counted.
    assert_eq!(get(admin, "/v1/decisions/stream?startup=true", "X-Api-Key: not-the-key\r\n").0, 403);
    let (_, metrics) = get(admin, "/metrics", "");
    assert!(metrics.contains(r#"gatewatch_crowdsec_requests_total{result="forbidden"} 1"#), "{metrics}");
    // The ban ends (8 s): the bouncer is told to delete it.
    assert!(
        wait_until(Duration::from_secs(30), || called().contains(&format!("del {ATTACKER}"))),
        "the bouncer was never told to delete {ATTACKER}; calls: {}",
        called()
    );
    assert_eq!(get(admin, "/v1/forward-auth", &format!("X-Real-IP: {ATTACKER}\r\n")).0, 200, "the ban is over");
    assert!(!called().contains("192.0.2.200"), "never_ban holds: {}", called());
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains(r#""verdict":"allow_listed""#) && audit.contains(r#""address":"203.0.113.66""#), "{audit}");
}

//! A real gateway blocks a stolen token (issue 17): Debian's `nginx` runs on loopback in front
//! of a small upstream with `auth_request` pointed at gatewatch's `/v1/forward-auth`, its JSON
//! access log shipped line by line into Kafka (what `tail -F | kcat -P` does). A token used from
//! five far-apart networks through that NGINX is found by `token_reuse`, revoked (enforce mode,
//! through the revoker's allow-lists, caps and audit), and NGINX answers 403 to it while another
//! token still gets 200. The time from the first attacking request to the first 403 is printed.
//!
//! Kafka is librdkafka's in-process `MockCluster`: the test is about the loop closing, not about
//! broker latency; the printed time is the pipeline's (watermark, detection, revocation, lookup).
#![cfg(unix)]
#![allow(clippy::disallowed_methods)] // waits on processes, sockets and wall time

mod kafka_support;
mod process_support;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use process_support::{collect_stderr, free_port, Killed};

const KEY: &str = "enforce-nginx-test-fingerprint-key";
const OWNER: &str = "gwt_benign1_Lq8ZrT3mVx6KpW2nYc";
const STOLEN: &str = "gwt_stolen_Rk5PvM2xTg8WzL3qBn";
/// Five far-apart networks (five /16 regions) the thief uses.
const ELSEWHERE: &[&str] = &["203.0.113.5", "45.33.1.9", "91.198.174.2", "5.255.255.5", "185.199.108.1"];

fn nginx() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("`nginx` is not installed: run `.ci/run` (it installs it), or `apt-get install -y nginx`")
}

const LOG_FORMAT: &str = r#"'{"time_iso8601":"$time_iso8601","remote_addr":"$remote_addr","request":"$request","status":"$status","body_bytes_sent":"$body_bytes_sent","request_time":"$request_time","http_user_agent":"$http_user_agent","http_x_forwarded_for":"$http_x_forwarded_for","http_authorization":"$http_authorization","request_id":"$request_id"}'"#;

fn start_nginx(dir: &Path, port: u16, upstream: u16, gatewatch: u16) -> Killed {
    let d = dir.display();
    let user = if unsafe { libc::geteuid() } == 0 { "user root;" } else { "" };
    let conf = format!(
        "{user}
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path {d}/client_body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  log_format gw escape=json {LOG_FORMAT};
  access_log {d}/access.log gw flush=100ms buffer=4k;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      auth_request /_gatewatch;
      proxy_pass http://127.0.0.1:{upstream};
    }}
    location = /_gatewatch {{
      internal;
      proxy_pass http://127.0.0.1:{gatewatch}/v1/forward-auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length \"\";
      proxy_set_header X-Original-URI $request_uri;
    }}
  }}
}}
"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(nginx())
        .args(["-p", &d.to_string(), "-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf")])
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx does not listen: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Killed(child)
}

/// A one-thread HTTP upstream answering 200 to everything.
fn start_upstream() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 8192];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") => {
                            use std::io::Write;
                            let _ = s.write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}",
                            );
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    port
}

/// What `tail -F access.log | kcat -P -t logs` does: every new line, produced as it is written.
fn ship(log: PathBuf, bootstrap: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let p: BaseProducer =
            ClientConfig::new().set("bootstrap.servers", &bootstrap).set("linger.ms", "5").create().expect("producer");
        let mut pos = 0u64;
        let mut pending = String::new();
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(mut f) = std::fs::File::open(&log) {
                let _ = f.seek(SeekFrom::Start(pos));
                let mut chunk = String::new();
                if let Ok(n) = f.read_to_string(&mut chunk) {
                    pos += n as u64;
                    pending.push_str(&chunk);
                }
            }
            while let Some(i) = pending.find('\n') {
                let line: String = pending.drain(..=i).collect();
                let line = line.trim_end().to_string();
                if !line.is_empty() {
                    while p.send(BaseRecord::<(), _>::to("logs").payload(&line)).is_err() {
                        p.poll(Duration::from_millis(10));
                    }
                    sent += 1;
                }
            }
            p.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = p.flush(Duration::from_secs(10));
        sent
    })
}

/// One request through NGINX (a fresh connection): the status.
fn get(port: u16, path: &str, token: &str, from: &str) -> u16 {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to nginx");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: api.example\r\nAuthorization: Bearer {token}\r\nX-Forwarded-For: {from}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status in {out:?}"))
}

#[test]
fn nginx_refuses_a_stolen_token_once_gatewatch_revokes_it_and_lets_others_through() {
    let dir = tempfile::tempdir().unwrap();
    let det = dir.path().join("detectors");
    std::fs::create_dir_all(&det).unwrap();
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors/token-reuse.toml")).unwrap();
    std::fs::write(
        det.join("token-reuse.toml"),
        shipped.replace("actions = [\"log\"]", "actions = [\"log\", \"revoke\"]"),
    )
    .unwrap();
    let mc = kafka_support::cluster(&[("logs", 1)]);
    let bootstrap = mc.bootstrap_servers();
    let admin = free_port();
    let d = dir.path().display();
    let cfg = format!(
        r#"
[input]
format = "nginx-json"
[normalize]
trusted_proxies = ["127.0.0.1/32"]
[engine]
allowed_lateness = "1s"
[detectors]
dir = "{d}/detectors"
[kafka]
brokers = "{bootstrap}"
topics = ["logs"]
group_id = "enforce-test"
start_from = "earliest"
commit_interval = "500ms"
[admin]
listen = "127.0.0.1:{admin}"
[actions]
dead_letter = "{d}/dead-letter.jsonl"
queue_dir = "{d}/queue"
[revocation]
mode = "enforce"
audit_log = "{d}/audit.jsonl"
revoke_without_client = true
quarantine = "1h"
"#
    );
    std::fs::write(dir.path().join("gatewatch.toml"), cfg).unwrap();
    let mut gw = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["run", "--config"])
        .arg(dir.path().join("gatewatch.toml"))
        .env("GATEWATCH_FINGERPRINT_KEY", KEY)
        .env("GATEWATCH_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gatewatch starts");
    let log_err = collect_stderr(&mut gw);
    let _gw = Killed(gw);
    assert!(
        kafka_support::wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", admin))
            .is_ok()),
        "gatewatch does not listen:\n{}",
        log_err.lock().unwrap()
    );
    let upstream = start_upstream();
    let port = free_port();
    let _nginx = start_nginx(dir.path(), port, upstream, admin);
    let stop = Arc::new(AtomicBool::new(false));
    let shipper = ship(dir.path().join("access.log"), bootstrap.clone(), stop.clone());

    // The owner at home, and another customer: all allowed.
    for _ in 0..5 {
        assert_eq!(get(port, "/api/orders/103", STOLEN, "198.51.100.50"), 200);
        assert_eq!(get(port, "/api/me", OWNER, "192.0.2.44"), 200);
    }
    // The thief, from far-apart networks, until NGINX refuses (the other customer keeps going).
    let first_attack = Instant::now();
    let mut refused_after = None;
    let mut i = 0;
    while first_attack.elapsed() < Duration::from_secs(90) {
        let status = get(port, "/api/me", STOLEN, ELSEWHERE[i % ELSEWHERE.len()]);
        if status == 403 {
            refused_after = Some(first_attack.elapsed());
            break;
        }
        assert_eq!(status, 200, "before the decision");
        assert_eq!(get(port, "/api/me", OWNER, "192.0.2.44"), 200);
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(after) = refused_after else {
        panic!("NGINX never refused the stolen token:\n{}", log_err.lock().unwrap());
    };
    println!("first attacking request to first 403: {} ms ({} attacking requests)", after.as_millis(), i + 1);
    // From then on: the stolen token refused from anywhere, the other customer served.
    assert_eq!(get(port, "/api/orders/103", STOLEN, "198.51.100.50"), 403);
    assert_eq!(get(port, "/api/me", OWNER, "192.0.2.44"), 200);
    // Counted for Grafana.
    let metrics = {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    let denied = metrics
        .lines()
        .find(|l| l.starts_with(r#"gatewatch_forward_auth_total{decision="deny"}"#))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(denied.is_some_and(|n| n >= 2.0), "{metrics}");
    stop.store(true, Ordering::Relaxed);
    assert!(shipper.join().unwrap() > 20);
    // The decision is audited, without the token.
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains(r#""verdict":"revoke""#), "{audit}");
    assert!(!audit.contains(STOLEN) && !log_err.lock().unwrap().contains(STOLEN));
}

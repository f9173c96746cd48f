//! Real gateways write the test logs (issue 15): Debian's `nginx` and `haproxy` run on
//! loopback in front of a small upstream, requests go through them, and the access log each
//! gateway really wrote is replayed through gatewatch with the shipped detectors.
//!
//! - NGINX with a JSON `log_format … escape=json` (the variable names `nginx-json` reads),
//!   logging `$http_authorization` and `$http_x_forwarded_for`; gatewatch trusts loopback's
//!   forwarded addresses (`[normalize] trusted_proxies`);
//! - NGINX `combined`, with `real_ip` trusting loopback's `X-Forwarded-For` (so
//!   `$remote_addr` is the client's), and no token logged: only what the address and the
//!   query string show can be found;
//! - HAProxy `option httplog` with header captures, on stdout (`log stdout format raw`) with a
//!   configured capture order and a response capture, and behind an RFC 3164 syslog header
//!   with the default capture order.
//!
//! Each gateway serves a benign run (which must raise nothing) and an attack run, in which the
//! exact set of alerts must be found: a stolen token used from five far-apart networks, a
//! revoked token hammered from one address, one token probing admin routes (403s), one
//! enumerating orders (404s), and a token sent in a URL. No raw token may reach an event or
//! an alert, though the gateway's own log holds them.
//!
//! The tests fail (never skip) when `nginx` or `haproxy` is missing: `.ci/run` installs them.
#![allow(clippy::disallowed_methods)] // waits on gateway processes and sockets, not detection

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::StatusCode;
use gatewatch::config::GatewatchConfig;
use gatewatch::engine::Pipeline;
use gatewatch::event::Alert;
use gatewatch::normalize::{detect, Format, Normalizer};
use gatewatch::scrub::Fingerprinter;

const KEY: &[u8] = b"real-gateways-test-fingerprint-key";

mod sigma_support;

// Opaque bearer tokens the upstream accepts (each with the one order its owner may read).
const BENIGN_1: &str = "gwt_benign1_Lq8ZrT3mVx6KpW2nYc";
const BENIGN_2: &str = "gwt_benign2_Hd4YsN9cQe1JbF7uXa";
const STOLEN: &str = "gwt_stolen_Rk5PvM2xTg8WzL3qBn";
const PROBER: &str = "gwt_prober_Zc7XbV3nMa5SdF8gKm";
const ENUMERATOR: &str = "gwt_enumer_Jh2KlP9oIu6YtR4eWs";
const LEAKED: &str = "gwt_leaked_Wq3ErT8yUi1OpA5sDf";
/// A token the upstream no longer accepts: 401.
const REVOKED: &str = "gwt_revoked_Ns6QwE1rYt4UiO9pGh";
/// A JWT nobody signed (`alg: none`) claiming a customer, which the upstream wrongly accepts.
const FORGED: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJodHRwczovL2F1dGguc2hvcC5leGFtcGxlLyIsInN1YiI6InVzcl85IiwiY2xpZW50X2lkIjoic2hvcC13ZWIiLCJleHAiOjQxMDI0NDQ4MDB9.";
const TOKENS: &[&str] = &[BENIGN_1, BENIGN_2, STOLEN, PROBER, ENUMERATOR, LEAKED, REVOKED, FORGED];

fn owned_order(token: &str) -> Option<u32> {
    Some(match token {
        BENIGN_1 => 101,
        BENIGN_2 => 102,
        STOLEN => 103,
        ENUMERATOR => 7,
        PROBER => 104,
        LEAKED => 105,
        FORGED => 106,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------
// The upstream: a small API behind the gateway.

/// 401 without a valid token (in `Authorization: Bearer` or `?access_token=`), 403 on admin
/// and billing routes (no token has the scope), 200/404 on `/api/orders/{id}` (own order or
/// not), 200 elsewhere.
async fn answer(req: Request) -> StatusCode {
    // The Sigma test's attack requests say what the application answered them.
    if let Some(s) = req.headers().get("x-test-status").and_then(|v| v.to_str().ok()?.parse().ok()) {
        return StatusCode::from_u16(s).unwrap_or(StatusCode::OK);
    }
    let bearer =
        req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let query = req.uri().query().unwrap_or_default();
    let in_query = query.split('&').find_map(|p| p.strip_prefix("access_token="));
    let Some(owner) = bearer.or(in_query).and_then(owned_order) else {
        return StatusCode::UNAUTHORIZED;
    };
    let path = req.uri().path();
    if path.starts_with("/api/admin/") || path.starts_with("/api/billing/") {
        return StatusCode::FORBIDDEN;
    }
    match path.strip_prefix("/api/orders/").map(str::parse::<u32>) {
        Some(Ok(id)) if id == owner => StatusCode::OK,
        Some(_) => StatusCode::NOT_FOUND,
        None => StatusCode::OK,
    }
}

async fn start_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().fallback(answer)).await });
    addr
}

// ---------------------------------------------------------------------------------------
// The gateways.

/// The gateway binary, from `PATH` or the sbin folders Debian installs it in (not on a
/// non-root user's `PATH`). Missing: the test fails and says how to install it.
fn binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    path.into_iter()
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed, and these tests run the real gateway: run `.ci/run` \
                 (it installs nginx and haproxy), or `apt-get install -y nginx haproxy`"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Gateway {
    NginxJson,
    NginxCombined,
    /// `log stdout format raw`, captures in a configured order, and a response capture.
    HaproxyRaw,
    /// `log stdout format rfc3164` (a syslog header), the default capture order.
    HaproxySyslog,
}

impl Gateway {
    fn format(self) -> Format {
        match self {
            Gateway::NginxJson => Format::NginxJson,
            Gateway::NginxCombined => Format::Nginx,
            Gateway::HaproxyRaw | Gateway::HaproxySyslog => Format::Haproxy,
        }
    }

    /// What gatewatch is told about this gateway.
    fn config(self) -> GatewatchConfig {
        let mut cfg = GatewatchConfig::default();
        cfg.detectors.dir = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors").into());
        // the gateway (on loopback) is the proxy whose `X-Forwarded-For` is believed
        cfg.normalize.trusted_proxies = vec!["127.0.0.1/32".into()];
        if self == Gateway::HaproxyRaw {
            cfg.input.haproxy.request_captures =
                Some(["X-Request-Id", "Authorization", "X-Forwarded-For", "User-Agent"].map(String::from).to_vec());
        }
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        cfg
    }
}

const NGINX_JSON: &str = r#"'{"time_iso8601":"$time_iso8601","remote_addr":"$remote_addr","request":"$request","status":"$status","body_bytes_sent":"$body_bytes_sent","request_time":"$request_time","upstream_response_time":"$upstream_response_time","http_user_agent":"$http_user_agent","http_x_forwarded_for":"$http_x_forwarded_for","http_authorization":"$http_authorization","host":"$host","request_id":"$request_id"}'"#;

/// A running gateway: its process, its port, and where its access log goes.
struct Running {
    gateway: Gateway,
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn start(gateway: Gateway, upstream: SocketAddr) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    let port = free_port();
    let child = match gateway {
        Gateway::NginxJson | Gateway::NginxCombined => {
            let (format, log) = match gateway {
                Gateway::NginxJson => (format!("log_format gw escape=json {NGINX_JSON};"), "gw"),
                _ => ("set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;".to_string(), "combined"),
            };
            // Workers run as the master's user; as root that would be `nobody` unless told.
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
  {format}
  access_log {d}/access.log {log};
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://{upstream}; }}
  }}
}}
"
            );
            std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
            Command::new(binary("nginx"))
                .args(["-p", &d, "-e", &format!("{d}/error.log"), "-c", &format!("{d}/nginx.conf")])
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start nginx")
        }
        Gateway::HaproxyRaw | Gateway::HaproxySyslog => {
            let (log, captures) = match gateway {
                Gateway::HaproxyRaw => (
                    "raw",
                    "capture request header X-Request-Id len 64
  capture request header Authorization len 512
  capture request header X-Forwarded-For len 128
  capture request header User-Agent len 128
  capture response header Content-Length len 16",
                ),
                _ => (
                    "rfc3164",
                    "capture request header Host len 64
  capture request header User-Agent len 128
  capture request header X-Forwarded-For len 128
  capture request header Authorization len 512",
                ),
            };
            // `dontlognull`, as Debian's own haproxy.cfg has it: a connection that sends
            // nothing (the readiness probe below) is not logged as a `<BADREQ>` 400.
            let cfg = format!(
                "global
  log stdout format {log} local0
defaults
  log global
  mode http
  option httplog
  option dontlognull
  timeout connect 2s
  timeout client 10s
  timeout server 10s
frontend api
  bind 127.0.0.1:{port}
  {captures}
  default_backend upstream
backend upstream
  server app1 {upstream}
"
            );
            std::fs::write(dir.path().join("haproxy.cfg"), cfg).expect("write haproxy.cfg");
            // HAProxy's `log stdout` drops a line the pipe cannot take at once (it never
            // blocks on a log), so a pipe read by a thread lost lines on a busy machine.
            // Its stdout is a file instead: a write to a file is never refused.
            let log = std::fs::File::create(dir.path().join("access.log")).expect("create the access log");
            Command::new(binary("haproxy"))
                .args(["-f", &format!("{d}/haproxy.cfg"), "-db"])
                // HAProxy logs local time without a zone; gatewatch reads it as UTC
                .env("TZ", "UTC")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::piped())
                .spawn()
                .expect("start haproxy")
        }
    };
    let mut running = Running { gateway, child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = running.child.try_wait() {
            panic!("{gateway:?} exited at start ({status}): {}", running.diagnostics());
        }
        assert!(Instant::now() < deadline, "{gateway:?} does not listen on {port}: {}", running.diagnostics());
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

impl Running {
    fn diagnostics(&mut self) -> String {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            if self.child.try_wait().ok().flatten().is_some() {
                let _ = e.read_to_string(&mut err);
            }
        }
        let log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        format!("stderr: {err}\nerror.log: {log}")
    }

    /// Stops the gateway gracefully (NGINX `SIGQUIT`, HAProxy `SIGUSR1`: both finish what is
    /// in flight and write its log) and returns the access log it wrote.
    fn stop(mut self) -> String {
        let signal = match self.gateway {
            Gateway::NginxJson | Gateway::NginxCombined => libc::SIGQUIT,
            Gateway::HaproxyRaw | Gateway::HaproxySyslog => libc::SIGUSR1,
        };
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: a signal to the child this test started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal {:?}", self.gateway);
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let gateway = self.gateway;
                panic!("{gateway:?} did not stop: {}", self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let gateway = self.gateway;
        assert!(status.success(), "{gateway:?} exited with {status}: {}", self.diagnostics());
        std::fs::read_to_string(self.dir.path().join("access.log")).expect("the gateway wrote its access log")
    }
}

// ---------------------------------------------------------------------------------------
// The traffic.

struct Client {
    http: reqwest::Client,
    base: String,
    sent: usize,
}

impl Client {
    fn new(port: u16) -> Self {
        let http = reqwest::Client::builder().user_agent("shop-app/2.3 (real-gateway test)").build().expect("client");
        Client { http, base: format!("http://127.0.0.1:{port}"), sent: 0 }
    }

    /// One request through the gateway, as `from` (the `X-Forwarded-For` a trusted proxy
    /// in front would add), with a bearer token or none; the status must be `want`.
    async fn get(&mut self, path: &str, token: Option<&str>, from: &str, want: u16) {
        let mut req = self.http.get(format!("{}{path}", self.base)).header("X-Forwarded-For", from);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req = req.header("X-Request-Id", format!("req-{}", self.sent));
        let status = req.send().await.expect("request through the gateway").status().as_u16();
        assert_eq!(status, want, "GET {path} from {from}");
        self.sent += 1;
    }
}

/// A shop's ordinary traffic: two customers reading their own data, one moving between two
/// addresses of its provider, a mistyped order, a request whose token had expired.
async fn benign(c: &mut Client) {
    for round in 0..6 {
        let from_1 = if round < 3 { "198.51.100.7" } else { "198.51.101.9" };
        c.get("/api/me", Some(BENIGN_1), from_1, 200).await;
        c.get("/api/orders/101", Some(BENIGN_1), from_1, 200).await;
        c.get(&format!("/api/catalog?page={round}"), Some(BENIGN_1), from_1, 200).await;
        c.get("/api/me", Some(BENIGN_2), "192.0.2.44", 200).await;
        c.get("/api/orders/102", Some(BENIGN_2), "192.0.2.44", 200).await;
    }
    c.get("/api/orders/1002", Some(BENIGN_2), "192.0.2.44", 404).await;
    c.get("/api/me", Some(REVOKED), "192.0.2.44", 401).await;
    c.get("/api/me", Some(BENIGN_2), "192.0.2.44", 200).await;
}

/// Far-apart networks (five /16 regions) a stolen token is used from.
const ELSEWHERE: &[&str] = &["203.0.113.5", "45.33.1.9", "91.198.174.2", "5.255.255.5", "185.199.108.1"];
const HAMMER: &str = "203.0.113.66";
const PROBE_FROM: &str = "198.51.100.20";
const ENUM_FROM: &str = "198.51.100.30";

async fn attacks(c: &mut Client) {
    // stolen token: its owner at home, then the thief from five far-apart networks
    for _ in 0..5 {
        c.get("/api/orders/103", Some(STOLEN), "198.51.100.50", 200).await;
    }
    for from in ELSEWHERE {
        c.get("/api/me", Some(STOLEN), from, 200).await;
        c.get("/api/orders/103", Some(STOLEN), from, 200).await;
    }
    // a revoked token hammered from one address: 25 x 401
    for _ in 0..25 {
        c.get("/api/me", Some(REVOKED), HAMMER, 401).await;
    }
    // one token probing routes it has no scope for: 12 x 403 over six routes
    let admin =
        ["/api/admin/users", "/api/admin/keys", "/api/billing/invoices", "/api/admin/audit", "/api/admin/config"];
    for i in 0..12 {
        let path = if i == 11 { "/api/billing/cards" } else { admin[i % admin.len()] };
        c.get(path, Some(PROBER), PROBE_FROM, 403).await;
    }
    // one token counting through other people's orders: 59 x 404 and its own
    for id in 1..=60 {
        c.get(&format!("/api/orders/{id}"), Some(ENUMERATOR), ENUM_FROM, if id == 7 { 200 } else { 404 }).await;
    }
    // a token sent in the URL, where every log and proxy keeps it
    c.get(&format!("/api/reports?access_token={LEAKED}&month=11"), None, "198.51.100.40", 200).await;
    // an unsigned JWT the API does not check, accepted three times
    for _ in 0..3 {
        c.get("/api/orders/106", Some(FORGED), "198.51.100.60", 200).await;
    }
}

// ---------------------------------------------------------------------------------------
// Replay and checks.

fn fp(token: &str) -> String {
    Fingerprinter::new(KEY).fingerprint(token.as_bytes()).to_hex()
}

/// (detector, entity kind, entity id) of every alert.
type Found = BTreeSet<(String, String, String)>;

fn found(alerts: &[Alert]) -> Found {
    alerts.iter().map(|a| (a.detector.clone(), a.entity.kind.as_str().to_string(), a.entity.id.clone())).collect()
}

fn alert(detector: &str, kind: &str, id: &str) -> (String, String, String) {
    (detector.into(), kind.into(), id.into())
}

/// HAProxy writes its own notices to the access log's target as it stops (`Proxy api stopped
/// (cumulated conns: FE: 3, BE: 0).`); they are no request, and are rejected as such.
fn is_haproxy_notice(line: &str) -> bool {
    line.contains("Proxy ") && line.contains(" stopped (cumulated conns: ")
}

/// Replays the log the gateway wrote: every request's line is read (as the named format,
/// which is also the one auto-detection picks), every other line is a HAProxy notice, and no
/// raw token reaches an event or an alert.
fn replay(gateway: Gateway, log: &str, requests: usize) -> Vec<Alert> {
    let cfg = gateway.config();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    let normalizer = Normalizer::from_config(&cfg, gateway.format(), KEY);
    let mut events = Vec::new();
    let mut notices = 0;
    for line in &lines {
        match normalizer.normalize_record(line.as_bytes()) {
            Ok(ev) => {
                assert_eq!(detect::detect(line.as_bytes()), Some(gateway.format()), "{gateway:?}: detecting {line}");
                events.push(serde_json::to_string(&ev).expect("event serializes"));
            }
            Err(e) => {
                assert!(gateway.format() == Format::Haproxy && is_haproxy_notice(line), "{gateway:?}: {e}: {line}");
                notices += 1;
            }
        }
    }
    assert_eq!(events.len(), requests, "{gateway:?}: one event per request:\n{log}");
    let mut pipeline = Pipeline::from_config(&cfg, gateway.format(), KEY).expect("shipped detectors load");
    let mut alerts = Vec::new();
    for line in &lines {
        pipeline.process(line.as_bytes(), None, &mut alerts);
    }
    pipeline.finish(&mut alerts);
    assert_eq!(pipeline.stats().rejected_total(), notices, "{gateway:?}: every request's line reads");
    let out: Vec<String> = alerts.iter().map(Alert::to_json).chain(events).collect();
    for t in TOKENS {
        for o in &out {
            assert!(!o.contains(t), "{gateway:?}: raw token in gatewatch's output: {o}");
        }
    }
    alerts
}

#[derive(Clone, Copy, Debug)]
enum Traffic {
    Benign,
    /// The benign traffic, then the attacks.
    Attacks,
}

async fn run(gateway: Gateway, traffic: Traffic) -> (String, Vec<Alert>) {
    let upstream = start_upstream().await;
    let running = start(gateway, upstream);
    let mut client = Client::new(running.port);
    benign(&mut client).await;
    if let Traffic::Attacks = traffic {
        attacks(&mut client).await;
    }
    let sent = client.sent;
    drop(client);
    let log = tokio::task::spawn_blocking(move || running.stop()).await.expect("stop");
    // `GATEWATCH_KEEP_GATEWAY_LOGS=<dir>`: the logs the gateways wrote, kept to be read
    if let Some(dir) = std::env::var_os("GATEWATCH_KEEP_GATEWAY_LOGS") {
        let _ = std::fs::write(Path::new(&dir).join(format!("{gateway:?}-{traffic:?}.log")), &log);
    }
    let alerts = replay(gateway, &log, sent);
    (log, alerts)
}

/// What a token-logging gateway's attack run must raise, and nothing else.
fn token_attacks_found() -> Found {
    [
        alert("token_reuse", "token", &fp(STOLEN)),
        alert("auth_failure_spike", "source_ip", HAMMER),
        alert("auth_failure_spike", "token", &fp(REVOKED)),
        alert("scope_misuse", "token", &fp(PROBER)),
        // twelve refusals of one token are also a failure spike of that token
        alert("auth_failure_spike", "token", &fp(PROBER)),
        alert("object_enumeration", "token", &fp(ENUMERATOR)),
        alert("object_enumeration", "source_ip", ENUM_FROM),
        alert("credential_exposure", "token", &fp(LEAKED)),
        alert("token_claims", "token", &fp(FORGED)),
    ]
    .into_iter()
    .collect()
}

async fn check(gateway: Gateway, want: Found, tokens_in_log: &[&str]) {
    let (log, alerts) = run(gateway, Traffic::Benign).await;
    assert!(alerts.is_empty(), "{gateway:?}: benign traffic raised {:#?}\nlog:\n{log}", found(&alerts));
    let (log, alerts) = run(gateway, Traffic::Attacks).await;
    for t in tokens_in_log {
        assert!(log.contains(t), "{gateway:?}: the gateway's log should hold the raw token {t}:\n{log}");
    }
    let got = found(&alerts);
    assert_eq!(got, want, "{gateway:?}: alerts found (left) vs expected (right)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_json_log_format() {
    check(Gateway::NginxJson, token_attacks_found(), TOKENS).await;
}

/// `combined` logs no `Authorization` and no forwarded address (here `real_ip` puts the
/// client's address in `$remote_addr`): the per-address attacks and the token in the URL are
/// found; the stolen token and the probing token are not visible in this format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_combined() {
    let want = [
        alert("auth_failure_spike", "source_ip", HAMMER),
        alert("object_enumeration", "source_ip", ENUM_FROM),
        alert("credential_exposure", "token", &fp(LEAKED)),
    ]
    .into_iter()
    .collect();
    check(Gateway::NginxCombined, want, &[LEAKED]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_httplog_with_configured_captures() {
    check(Gateway::HaproxyRaw, token_attacks_found(), TOKENS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_httplog_behind_a_syslog_header_with_default_captures() {
    check(Gateway::HaproxySyslog, token_attacks_found(), TOKENS).await;
}

/// SigmaHQ's web rules (the 135 that load) on the log NGINX really wrote: each attack request
/// sent through it is found by its rule, on the address `real_ip` logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigmahq_rules_find_web_attacks_in_the_log_nginx_wrote() {
    use sigma_support::{ip_of, loadable_rules, ATTACKS};
    let upstream = start_upstream().await;
    let running = start(Gateway::NginxCombined, upstream);
    let http = reqwest::Client::new();
    for (i, a) in ATTACKS.iter().enumerate() {
        let mut req =
            http.request(a.method.parse().expect("method"), format!("http://127.0.0.1:{}{}", running.port, a.uri));
        if let Some(r) = a.referer {
            req = req.header("Referer", r);
        }
        let status = req
            .header("X-Forwarded-For", ip_of(i))
            .header("User-Agent", a.user_agent)
            .header("X-Test-Status", a.status.to_string())
            .send()
            .await
            .expect("request through nginx")
            .status()
            .as_u16();
        assert_eq!(status, a.status, "{}", a.what);
    }
    // Its kept-alive connection would hold NGINX's graceful stop.
    drop(http);
    let log = tokio::task::spawn_blocking(move || running.stop()).await.expect("stop");
    let rules = loadable_rules();
    let mut cfg = Gateway::NginxCombined.config();
    cfg.rules.dir = Some(rules.path().to_path_buf());
    let mut pipeline = Pipeline::from_config(&cfg, Format::Nginx, KEY).expect("rules load");
    let mut alerts = Vec::new();
    for line in log.lines() {
        pipeline.process(line.as_bytes(), None, &mut alerts);
    }
    pipeline.finish(&mut alerts);
    assert_eq!(pipeline.stats().rejected_total(), 0);
    let got: BTreeSet<(String, String)> =
        alerts.iter().filter(|a| a.detector == "sigma").map(|a| (a.entity.id.clone(), a.rule.clone())).collect();
    for (i, a) in ATTACKS.iter().enumerate() {
        for r in a.rules {
            assert!(got.contains(&(ip_of(i), r.to_string())), "{} not found by {r}:\n{log}\nfound: {got:#?}", a.what);
        }
    }
}

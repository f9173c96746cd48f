//! Nothing gatewatch writes carries a raw secret.
//!
//! The simulated traffic of the core issue (Kong, Envoy and NGINX JSON records from three
//! gateway nodes, with its seven attacks), plus secrets injected where gateways leak them
//! (tokens and keys in query strings, a password in a URL, a GitHub token in a user agent)
//! and malformed records that still hold a bearer token, goes through `gatewatch run` — the
//! binary, as a user starts it — on a MockCluster, with every output switched on:
//!
//! - stdout (alerts) and stderr (the service's own log, at debug level);
//! - the alerts, dead-letter, scrubbed-copy and revocations topics;
//! - a webhook, Alertmanager, email through a real SMTP server (aiosmtpd), the OAuth (RFC 7009)
//!   and HTTP revocation targets, and a broken webhook that fills the actions dead-letter file;
//! - the revocation audit log, `/metrics` and the admin API's deny-list.
//!
//! Each output must have received something (so the check cannot pass by silence), and no
//! output may hold a raw secret: neither a whole one nor any 24-byte piece of one. The
//! configuration's own secrets (SMTP password, webhook and admin tokens, IdP credentials) are
//! checked too, everywhere except in the request that must carry them to their owner.
//! Failure messages name the output and the secret's kind, never the secret.
#![allow(clippy::disallowed_methods)] // times sockets and timeouts, not detection

mod kafka_support;
mod smtp_support;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, Uri};
use gatewatch::normalize::Format;
use gatewatch::simulate::{render, simulate, SimConfig};
use kafka_support::{cluster, partition_of, produce, read_all, Rec, KEY};

/// Partitions of the input and scrubbed-copy topics. The mock broker keeps about 5 MB per
/// partition and drops the oldest records beyond that: enough partitions keep all of them.
const P: i32 = 6;
const SMTP_PASSWORD: &str = "smtp-password-for-the-leak-test";
const WEBHOOK_SECRET: &str = "webhook-hmac-secret-for-the-leak-test";
const ADMIN_TOKEN: &str = "admin-token-for-the-leak-test";
const IDP_SECRET: &str = "idp-client-secret-for-the-leak-test";
const IDP_ADMIN_TOKEN: &str = "idp-admin-token-for-the-leak-test";

/// A secret put into the input, and what it is (for failure messages).
struct Secret {
    kind: &'static str,
    value: String,
    /// The part whose pieces must not appear (a JWT's header is shared by every token: not secret).
    secret_part: usize,
}

/// Deterministic random text over `alphabet`.
fn random(state: &mut u64, alphabet: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            alphabet[(*state % alphabet.len() as u64) as usize] as char
        })
        .collect()
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Requests the fake webhook / Alertmanager / IdP received.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<(String, String)>>>);

async fn capture(
    axum::extract::State(c): axum::extract::State<Captured>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> &'static str {
    let mut text = String::new();
    for (k, v) in &headers {
        text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&body));
    c.0.lock().unwrap().push((format!("{method} {}", uri.path()), format!("{method} {uri}\n{text}")));
    "{}"
}

async fn start_capture() -> (SocketAddr, Captured) {
    let c = Captured::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(capture).with_state(c.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, c)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The simulated hour (shortened), with secrets injected, rendered per gateway node; and
/// every raw secret it holds.
fn traffic() -> (Vec<Rec>, Vec<Secret>, usize) {
    let sim = simulate(&SimConfig {
        seed: 7,
        duration_ms: 12 * 60_000,
        clients: 60,
        fingerprint_key: KEY.as_bytes().to_vec(),
        ..SimConfig::default()
    });
    let mut secrets: Vec<Secret> = Vec::new();
    let mut seen_tokens = HashSet::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut recs = Vec::new();
    let mut malformed = 0;
    for (i, r) in sim.records.iter().enumerate() {
        let mut r = r.clone();
        if let Some(t) = &r.token {
            if seen_tokens.insert(t.raw.clone()) {
                let header = t.raw.find('.').unwrap_or(0);
                secrets.push(Secret { kind: "simulated bearer token", value: t.raw.clone(), secret_part: header });
            }
        }
        let mut inject = |kind: &'static str, value: String| {
            secrets.push(Secret { kind, value: value.clone(), secret_part: 0 });
            value
        };
        match i % 40 {
            0 if i % 200 == 0 && r.token.is_some() => {
                let raw = r.token.as_ref().unwrap().raw.clone();
                r.query = Some(format!("access_token={raw}"));
            }
            7 => {
                let k = inject("stripe key in query", format!("sk_live_{}", random(&mut rng, ALNUM, 24)));
                r.query = Some(format!("page=2&api_key={k}"));
            }
            14 => {
                let k = inject(
                    "aws access key in query",
                    format!("AKIA{}", random(&mut rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
                );
                r.query = Some(format!("X-Amz-Credential={k}%2F20261121%2Fus-east-1%2Fs3%2Faws4_request"));
            }
            21 => {
                let p = inject("password in query", random(&mut rng, ALNUM, 18));
                r.query = Some(format!("user=svc-report&password={p}"));
            }
            28 => {
                let g = inject("github token in user agent", format!("ghp_{}", random(&mut rng, ALNUM, 36)));
                r.user_agent = format!("deploy-bot/2.1 (token {g})").into();
            }
            35 => {
                let p = inject("password in a URL", random(&mut rng, ALNUM, 20));
                r.user_agent = format!("sync-agent/0.9 (+https://svc-sync:{p}@repo.internal.example/hook)").into();
            }
            _ => {}
        }
        let format = match r.gateway_node % 3 {
            0 => Format::Kong,
            1 => Format::Envoy,
            _ => Format::NginxJson,
        };
        let mut payload = render(&r, format);
        // Every 150th record is cut short (a shipper that broke a line), token and all.
        if i % 150 == 75 && r.token.is_some() {
            let cut = payload.find("Bearer ").map(|b| b + 7 + 300).unwrap_or(payload.len() * 2 / 3);
            payload.truncate(cut.min(payload.len() - 1));
            malformed += 1;
        }
        let key = r.client_id.as_deref().map(str::to_string).unwrap_or_else(|| r.source_ip.to_string());
        recs.push(Rec { partition: partition_of(&key, P), key, payload, ts: r.arrival });
    }
    // A line that is no access log at all, with credentials in it.
    let jwt = secrets[0].value.clone();
    let key = inject_text_key(&mut rng, &mut secrets);
    recs.push(Rec {
        partition: 0,
        key: "shipper".into(),
        payload: format!("ERROR upstream said: Authorization: Bearer {jwt} x-api-key: {key}"),
        ts: recs.last().map(|r| r.ts).unwrap_or(0),
    });
    malformed += 1;
    (recs, secrets, malformed)
}

fn inject_text_key(rng: &mut u64, secrets: &mut Vec<Secret>) -> String {
    let k = random(rng, ALNUM, 40);
    secrets.push(Secret { kind: "api key in a header of a malformed record", value: k.clone(), secret_part: 0 });
    k
}

fn config(dir: &Path, bootstrap: &str, admin: u16, cap: SocketAddr, smtp: u16) -> String {
    format!(
        r#"
[input]
format = "auto"
[detectors]
dir = "{dir}/detectors"
[kafka]
brokers = "{bootstrap}"
topics = ["logs"]
group_id = "leak-test"
start_from = "earliest"
dead_letter_topic = "dlq"
scrubbed_topic = "logs-clean"
alerts_topic = "alerts"
revocations_topic = "revocations"
commit_interval = "500ms"
[kafka.repartition]
# Both stages, so the repartition records are read for secrets too.
enabled = "always"
topic = "leak-test-repartition"
partitions = 4
[admin]
listen = "127.0.0.1:{admin}"
token_env = "GW_LEAK_ADMIN_TOKEN"
[actions]
dead_letter = "{dir}/actions-dead-letter.jsonl"
group_window = "0s"
[actions.webhook.secops]
url = "http://{cap}/hook"
secret_env = "GW_LEAK_WEBHOOK_SECRET"
min_severity = "info"
initial_backoff = "10ms"
[actions.webhook.broken]
url = "http://127.0.0.1:{closed}/hook"
min_severity = "info"
# Past one waiting notification, the rest overflow to the dead-letter file at once.
queue = 1
expire_after = "1s"
[actions.email.oncall]
host = "127.0.0.1"
port = {smtp}
tls = "none"
username = "gatewatch"
password_env = "GW_LEAK_SMTP_PASSWORD"
from = "gatewatch <gatewatch@example.com>"
to = ["oncall@example.com"]
min_severity = "info"
initial_backoff = "10ms"
[actions.alertmanager.main]
url = "http://{cap}/am"
min_severity = "info"
[revocation]
mode = "enforce"
audit_log = "{dir}/revocations.audit.jsonl"
max_per_hour = 100
max_per_client_per_hour = 10
initial_backoff = "10ms"
[revocation.oauth]
endpoint = "http://{cap}/oauth2/revoke"
client_id = "gatewatch"
client_secret_env = "GW_LEAK_IDP_SECRET"
[revocation.http]
url = "http://{cap}/admin/clients/{{client_id}}/revoke"
bearer_env = "GW_LEAK_IDP_ADMIN_TOKEN"
"#,
        dir = dir.display(),
        closed = free_port(),
    )
}

/// The shipped detectors, with revocation added where a credential is at stake.
fn detectors(dir: &Path) {
    let out = dir.join("detectors");
    std::fs::create_dir_all(&out).unwrap();
    for e in std::fs::read_dir(kafka_support::detectors_dir()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let mut text = std::fs::read_to_string(e.path()).unwrap();
        if name == "token-reuse.toml" || name == "credential-exposure.toml" {
            assert!(text.contains("actions = [\"log\"]"), "{name} changed: update this test");
            text = text.replace("actions = [\"log\"]", "actions = [\"log\", \"revoke\"]");
        }
        std::fs::write(out.join(name), text).unwrap();
    }
}

fn http_get(addr: &str, path: &str, bearer: Option<&str>) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn pipe_to_string(mut r: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let o = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
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

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_secret_in_anything_gatewatch_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (recs, secrets, malformed) = traffic();
    let mc = cluster(&[
        ("logs", P),
        ("dlq", 1),
        ("logs-clean", P),
        ("alerts", 1),
        ("revocations", 1),
        ("leak-test-repartition", 4),
    ]);
    let bootstrap = mc.bootstrap_servers();

    let smtp = smtp_support::start_smtp(dir.path(), "gatewatch", SMTP_PASSWORD);
    let (cap, captured) = start_capture().await;
    let admin_port = free_port();
    let admin = format!("127.0.0.1:{admin_port}");
    detectors(dir.path());
    let cfg = dir.path().join("gatewatch.toml");
    std::fs::write(&cfg, config(dir.path(), &bootstrap, admin_port, cap, smtp.port)).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("GATEWATCH_FINGERPRINT_KEY", KEY)
        .env("GATEWATCH_LOG", "debug")
        .env("GW_LEAK_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("GW_LEAK_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("GW_LEAK_SMTP_PASSWORD", SMTP_PASSWORD)
        .env("GW_LEAK_IDP_SECRET", IDP_SECRET)
        .env("GW_LEAK_IDP_ADMIN_TOKEN", IDP_ADMIN_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gatewatch starts");
    let stdout = pipe_to_string(child.stdout.take().unwrap());
    let stderr = pipe_to_string(child.stderr.take().unwrap());
    let pid = child.id();
    let mut gw = Gatewatch(child);

    // Produced in chunks, each read before the next: the mock broker keeps about 5 MB per
    // partition, so the scrubbed copies are collected as they come, before it drops them.
    let metrics =
        || std::net::TcpStream::connect(&admin).map(|_| http_get(&admin, "/metrics", None)).unwrap_or_default();
    let mut copies: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
    let mut produced = 0;
    for chunk in recs.chunks(1000) {
        produce(&bootstrap, "logs", chunk);
        produced += chunk.len();
        wait_for("the chunk to be read", Duration::from_secs(180), || {
            if let Ok(Some(status)) = gw.0.try_wait() {
                panic!("gatewatch exited early ({status}):\n{}", stderr.lock().unwrap());
            }
            metric_value(&metrics(), "gatewatch_kafka_messages_total") >= produced as f64
        })
        .await;
        copies.extend(read_all(&bootstrap, "logs-clean", P).into_iter().map(|(p, o, m)| ((p, o), m)));
    }
    assert_eq!(kafka_support::topic_ends(&bootstrap, "logs", P), kafka_support::ends_of(&recs, P), "produced");
    // Let the sinks deliver: alerts keep arriving until the webhook count is stable.
    let mut last = usize::MAX;
    wait_for("the sinks to settle", Duration::from_secs(120), || {
        let now = captured.0.lock().unwrap().len() + smtp.messages().len();
        let settled = now == last && now > 0;
        last = now;
        settled
    })
    .await;
    let final_metrics = metrics();
    let deny_list = http_get(&admin, "/api/v1/revocations", Some(ADMIN_TOKEN));
    assert!(deny_list.starts_with("HTTP/1.1 200"), "admin API: {}", deny_list.lines().next().unwrap_or(""));
    assert!(http_get(&admin, "/api/v1/revocations", None).starts_with("HTTP/1.1 401"));

    // A graceful stop, as systemd or Kubernetes would ask for it.
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0, "SIGTERM");
    let exit = tokio::task::spawn_blocking(move || {
        let s = gw.0.wait();
        (s, gw)
    })
    .await
    .unwrap();
    assert!(exit.0.unwrap().success(), "gatewatch did not stop cleanly:\n{}", stderr.lock().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Everything gatewatch wrote.
    let mut outputs: Vec<(String, String)> = vec![
        ("stdout".into(), stdout.lock().unwrap().clone()),
        ("stderr (log at debug level)".into(), stderr.lock().unwrap().clone()),
        ("/metrics".into(), final_metrics.clone()),
        ("admin API deny-list".into(), deny_list),
    ];
    let mut topic_counts = BTreeMap::new();
    copies.extend(read_all(&bootstrap, "logs-clean", P).into_iter().map(|(p, o, m)| ((p, o), m)));
    topic_counts.insert("logs-clean", copies.len());
    for ((p, o), m) in copies {
        outputs.push((format!("topic logs-clean {p}/{o}"), String::from_utf8_lossy(&m).into_owned()));
    }
    for (topic, parts) in [("alerts", 1), ("dlq", 1), ("revocations", 1), ("leak-test-repartition", 4)] {
        let msgs = read_all(&bootstrap, topic, parts);
        topic_counts.insert(topic, msgs.len());
        for (p, o, m) in msgs {
            outputs.push((format!("topic {topic} {p}/{o}"), String::from_utf8_lossy(&m).into_owned()));
        }
    }
    for f in ["actions-dead-letter.jsonl", "revocations.audit.jsonl"] {
        outputs.push((f.into(), std::fs::read_to_string(dir.path().join(f)).unwrap_or_default()));
    }
    // The sinks' durable queues on disk hold alerts too.
    let mut queue_files = 0;
    let mut stack = vec![dir.path().join("gatewatch-queue")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                queue_files += 1;
                let bytes = std::fs::read(&p).unwrap_or_default();
                outputs.push((format!("queue file {}", p.display()), String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    assert!(queue_files > 0, "the sinks' queues are on disk");
    let mail = smtp.messages();
    for (i, m) in mail.iter().enumerate() {
        outputs.push((format!("email {i}"), m.to_string()));
    }
    let requests = captured.0.lock().unwrap().clone();
    for (what, text) in &requests {
        outputs.push((format!("http {what}"), text.clone()));
    }

    // Every output got something: the check below is not passed by silence.
    let stdout_alerts: Vec<serde_json::Value> =
        outputs[0].1.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let detectors: HashSet<&str> = stdout_alerts.iter().filter_map(|a| a["detector"].as_str()).collect();
    for d in ["auth_failure_spike", "token_reuse", "credential_exposure", "scope_misuse"] {
        assert!(detectors.contains(d), "no {d} alert on stdout; got {detectors:?}");
    }
    let count = |prefix: &str| requests.iter().filter(|(w, _)| w.starts_with(prefix)).count();
    assert!(
        count("POST /hook") >= stdout_alerts.len(),
        "webhook got {} of {} alerts",
        count("POST /hook"),
        stdout_alerts.len()
    );
    assert!(count("POST /am/api/v2/alerts") >= 1, "nothing reached Alertmanager");
    // RFC 7009 needs a handle the IdP knows (a credential id); without one the call is skipped
    // and audited. Either way the target was consulted.
    let audit = &outputs.iter().find(|(w, _)| w == "revocations.audit.jsonl").unwrap().1;
    let oauth_audited = audit.lines().filter(|l| l.contains("\"target\":\"oauth\"")).count();
    assert!(oauth_audited >= 1, "the OAuth target was never consulted");
    assert_eq!(
        count("POST /oauth2/revoke"),
        audit.lines().filter(|l| l.contains("\"target\":\"oauth\"") && l.contains("\"result\":\"ok\"")).count()
    );
    assert!(count("POST /admin/clients/") >= 1, "no HTTP revocation call");
    assert!(!mail.is_empty(), "no email");
    assert_eq!(topic_counts["logs-clean"], recs.len(), "one scrubbed copy per record");
    assert_eq!(topic_counts["dlq"], malformed, "one dead letter per malformed record");
    assert!(topic_counts["alerts"] >= stdout_alerts.len());
    assert!(topic_counts["revocations"] >= 1);
    assert!(topic_counts["leak-test-repartition"] > recs.len(), "events went through the repartition topic");
    for f in ["actions-dead-letter.jsonl", "revocations.audit.jsonl"] {
        assert!(outputs.iter().any(|(w, t)| w == f && !t.is_empty()), "{f} is empty");
    }
    let markers = outputs
        .iter()
        .filter(|(w, _)| w.starts_with("topic logs-clean"))
        .filter(|(_, t)| t.contains("[REDACTED:"))
        .count();
    assert!(markers > recs.len() / 2, "only {markers} scrubbed copies carry a marker");
    for (w, t) in outputs.iter().filter(|(w, _)| w.starts_with("topic dlq")) {
        let v: serde_json::Value = serde_json::from_str(t).unwrap();
        assert!(
            v["record"].as_str().is_some_and(|r| r.contains("[REDACTED:")),
            "{w}: dead letter without its scrubbed record"
        );
    }
    assert!(metric_value(&final_metrics, "gatewatch_secrets_scrubbed_total") >= markers as f64);
    assert!(metric_value(&final_metrics, "gatewatch_credential_exposures_total") > 0.0);
    // The dispatcher's and revoker's counters are exported too.
    let series = |prefix: &str| {
        final_metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert!(series("gatewatch_notifications_total{result=\"sent\",sink=\"webhook:secops\"}") >= 1.0, "{final_metrics}");
    assert!(series("gatewatch_notifications_total{result=\"sent\",sink=\"email:oncall\"}") >= 1.0);
    assert!(series("gatewatch_notifications_total{result=\"overflow\",sink=\"webhook:broken\"}") >= 1.0);
    assert!(series("gatewatch_notification_queue_bytes{sink=\"webhook:broken\"}") > 0.0, "{final_metrics}");
    assert!(series("gatewatch_revocation_decisions_total{verdict=\"revoke\"}") >= 1.0);
    assert!(series("gatewatch_dispatcher_alerts_total{outcome=\"received\"}") >= stdout_alerts.len() as f64);

    // No raw secret anywhere: whole, percent-encoded, or any 24-byte piece of it.
    const PIECE: usize = 24;
    let mut pieces: std::collections::HashMap<&[u8], &'static str> = std::collections::HashMap::new();
    for s in &secrets {
        let b = &s.value.as_bytes()[s.secret_part..];
        for w in b.windows(PIECE) {
            pieces.insert(w, s.kind);
        }
    }
    let mut leaks: BTreeMap<String, usize> = BTreeMap::new();
    for (what, text) in &outputs {
        let t = text.as_bytes();
        let mut found: Option<&str> = None;
        for s in secrets.iter().filter(|s| s.value.len() < PIECE) {
            if text.contains(&s.value) {
                found = Some(s.kind);
            }
        }
        if found.is_none() {
            found = t.windows(PIECE).find_map(|w| pieces.get(w).copied());
        }
        if let Some(kind) = found {
            *leaks.entry(format!("{kind} in {what}")).or_insert(0) += 1;
        }
    }
    assert!(leaks.is_empty(), "raw secrets in gatewatch's output: {leaks:#?}");

    // The configuration's secrets: only the IdP may see its credentials (in the request to it).
    for (name, secret) in [
        ("SMTP password", SMTP_PASSWORD),
        ("webhook secret", WEBHOOK_SECRET),
        ("admin token", ADMIN_TOKEN),
        ("IdP client secret", IDP_SECRET),
        ("IdP admin token", IDP_ADMIN_TOKEN),
    ] {
        let b64 = base64_of(secret);
        for (what, text) in &outputs {
            let to_its_owner = what.starts_with("http POST /oauth2/") || what.starts_with("http POST /admin/clients/");
            if !to_its_owner {
                assert!(!text.contains(secret) && !text.contains(&b64), "{name} in {what}");
            }
        }
    }
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

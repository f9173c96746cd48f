//! Email through a real SMTP server: Debian's `python3-aiosmtpd` on 127.0.0.1, with AUTH.
//! The server writes each message it receives (parsed) as JSON, and the test reads it back.
//! Needs `apt-get install python3-aiosmtpd`; the test fails (not skips) without it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gatewatch::actions::{ActionsSettings, AlertHandoff, Dispatcher};
use gatewatch::config::GatewatchConfig;
use gatewatch::event::{Alert, Entity, EntityKind, Fingerprint, Severity};

const SERVER: &str = r#"
import email, email.policy, json, os, sys
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, out, user = int(sys.argv[1]), sys.argv[2], sys.argv[3]
password = os.environ["SMTP_TEST_PASSWORD"]

class Auth:
    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == user and auth_data.password.decode() == password)
        return AuthResult(success=ok)

class Handler:
    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        rec = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "message_id": str(msg["message-id"]),
            "body": msg.get_body(preferencelist=("plain",)).get_content(),
            "authenticated": bool(session.authenticated),
        }
        n = len([f for f in os.listdir(out) if f.endswith(".json")])
        tmp = os.path.join(out, "%d.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(out, "%d.json" % n))
        return "250 OK"

c = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=Auth(),
               auth_required=True, auth_require_tls=False)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"#;

/// The SMTP server process; killed (by its own handle) when dropped.
struct Smtp {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> String {
    if let Ok(p) = std::env::var("GATEWATCH_TEST_PYTHON") {
        return p;
    }
    // Debian's package installs for the system interpreter, which a pyenv shim may hide.
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

fn start_smtp(dir: &Path, user: &str, password: &str) -> Smtp {
    let script = dir.join("smtp_server.py");
    std::fs::write(&script, SERVER).unwrap();
    let out = dir.join("mail");
    std::fs::create_dir_all(&out).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(python())
        .arg(&script)
        .arg(port.to_string())
        .arg(&out)
        .arg(user)
        .env("SMTP_TEST_PASSWORD", password)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "ready",
        "SMTP test server did not start: is python3-aiosmtpd installed (apt-get install python3-aiosmtpd)?"
    );
    Smtp { child, port, out }
}

fn settings(toml_text: &str, env: &dyn Fn(&str) -> Option<String>) -> ActionsSettings {
    let table: toml::Table = toml::from_str(toml_text).unwrap();
    let cfg = GatewatchConfig { other: table.into_iter().collect(), ..GatewatchConfig::default() };
    ActionsSettings::from_config_with_env(&cfg, env).expect("valid config")
}

fn alert() -> Alert {
    let fp = Fingerprint::from_hex("9b1e44c07f2a1d3e").unwrap();
    let entity = Entity::new(EntityKind::Token, fp.to_hex());
    let mut evidence = serde_json::Map::new();
    evidence.insert("distinct_networks".into(), 7.into());
    evidence.insert("source_ips".into(), serde_json::json!(["203.0.113.7", "198.51.100.9"]));
    Alert {
        id: Alert::make_id("token-reuse-default", &entity, 1_795_257_000_000),
        detector: "token_reuse".into(),
        rule: "token-reuse-default".into(),
        severity: Severity::High,
        entity,
        client_id: Some("app-69736b".into()),
        token_fingerprint: Some(fp),
        window_start: 1_795_257_000_000,
        window_end: 1_795_257_300_000,
        summary: "token used from 7 networks in 5m (limit 3)".into(),
        evidence,
        actions: vec!["email:oncall".into()],
    }
}

fn config(port: u16, dir: &Path, timeout: &str) -> String {
    format!(
        r#"
        [actions]
        dead_letter = "{dl}"
        [actions.runbooks]
        token-reuse-default = "https://runbooks.example.com/token-reuse"
        [actions.email.oncall]
        host = "127.0.0.1"
        port = {port}
        tls = "none"
        username = "gatewatch"
        password_env = "GW_TEST_SMTP_PASSWORD"
        from = "gatewatch <gatewatch@example.com>"
        to = ["oncall@example.com", "secops@example.com"]
        max_attempts = 2
        initial_backoff = "10ms"
        timeout = "{timeout}"
        "#,
        dl = dir.join("dl.jsonl").display()
    )
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_arrives_with_summary_evidence_and_runbook() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = start_smtp(dir.path(), "gatewatch", "smtp-pass-123");
    let env = |k: &str| (k == "GW_TEST_SMTP_PASSWORD").then(|| "smtp-pass-123".to_string());
    let s = settings(&config(smtp.port, dir.path(), "10s"), &env);
    let d = Dispatcher::start(s.actions.as_ref().unwrap(), vec![], None).unwrap();
    let a = alert();
    d.handoff(&a).unwrap();
    let first = smtp.out.join("0.json");
    eventually("the email", || first.exists()).await;
    d.shutdown(Duration::from_secs(10)).await;

    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&first).unwrap()).unwrap();
    assert_eq!(m["authenticated"], true);
    assert_eq!(m["mail_from"], "gatewatch@example.com");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["oncall@example.com", "secops@example.com"]));
    assert_eq!(m["subject"], "[gatewatch HIGH] token_reuse: token used from 7 networks in 5m (limit 3)");
    assert_eq!(m["message_id"], format!("<{}@gatewatch>", a.id));
    let body = m["body"].as_str().unwrap();
    for want in [
        "What:      token used from 7 networks in 5m (limit 3)",
        "Detector:  token_reuse (rule token-reuse-default)",
        "Entity:    token 9b1e44c07f2a1d3e",
        "Client:    app-69736b",
        "  distinct_networks: 7",
        "  source_ips: [\"203.0.113.7\",\"198.51.100.9\"]",
        "Runbook:   https://runbooks.example.com/token-reuse",
        &format!("Alert id:  {}", a.id),
    ] {
        assert!(body.contains(want), "missing {want:?} in:\n{body}");
    }
    assert!(!body.contains("smtp-pass-123"));
    assert_eq!(std::fs::read_dir(&smtp.out).unwrap().count(), 1, "exactly one message");
    assert_eq!(d.stats().sinks[0].sent, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_login_is_dead_lettered_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = start_smtp(dir.path(), "gatewatch", "the-right-one");
    let env = |k: &str| (k == "GW_TEST_SMTP_PASSWORD").then(|| "a-wrong-password".to_string());
    // aiosmtpd 1.4 answers a failed AUTH PLAIN with silence; a short timeout keeps this quick.
    let s = settings(&config(smtp.port, dir.path(), "1s"), &env);
    let d = Dispatcher::start(s.actions.as_ref().unwrap(), vec![], None).unwrap();
    d.handoff(&alert()).unwrap();
    let dl = d.dead_letter_path();
    eventually("the dead-letter record", || std::fs::read_to_string(&dl).map(|t| !t.is_empty()).unwrap_or(false)).await;
    d.shutdown(Duration::from_secs(10)).await;
    let text = std::fs::read_to_string(&dl).unwrap();
    let rec: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(rec["sink"], "email:oncall");
    let reason = rec["reason"].as_str().unwrap();
    assert!(reason.starts_with("rejected: smtp") || reason.starts_with("gave up"), "{reason}");
    assert!(!text.contains("a-wrong-password") && !text.contains("the-right-one"));
    assert_eq!(std::fs::read_dir(&smtp.out).unwrap().count(), 0);
}

//! Email through a real SMTP server: Debian's `python3-aiosmtpd` on 127.0.0.1, with AUTH.
//! The server writes each message it receives (parsed) as JSON, and the test reads it back.
//! Needs `apt-get install python3-aiosmtpd`; the test fails (not skips) without it.
#![allow(clippy::disallowed_methods)] // times sockets and timeouts, not detection

use std::path::Path;
use std::time::{Duration, Instant};

use gatewatch::actions::{ActionsSettings, AlertHandoff, Dispatcher};
use gatewatch::config::GatewatchConfig;
use gatewatch::event::{Alert, Entity, EntityKind, Fingerprint, Severity};

mod smtp_support;
use smtp_support::start_smtp;

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
        client_id_source: Default::default(),
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
        expire_after = "2s"
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
    assert!(reason.starts_with("rejected: smtp") || reason.starts_with("expired: not delivered within 2s"), "{reason}");
    assert!(!text.contains("a-wrong-password") && !text.contains("the-right-one"));
    assert_eq!(std::fs::read_dir(&smtp.out).unwrap().count(), 0);
}

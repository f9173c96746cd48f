//! Alertmanager and Slack-format delivery over real sockets: what arrives is what
//! Alertmanager's API v2 and Slack incoming webhooks read.
#![allow(clippy::disallowed_methods)] // times sockets and timeouts, not detection

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use gatewatch::actions::{ActionsSettings, AlertHandoff, Dispatcher};
use gatewatch::config::GatewatchConfig;
use gatewatch::event::{Alert, Entity, EntityKind, Fingerprint, Severity};

type Log = Arc<Mutex<Vec<(String, HeaderMap, serde_json::Value)>>>;

async fn record(State(log): State<Log>, uri: axum::http::Uri, headers: HeaderMap, body: String) -> StatusCode {
    log.lock().unwrap().push((uri.path().to_string(), headers, serde_json::from_str(&body).unwrap()));
    StatusCode::OK
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn alert(severity: Severity, actions: &[&str]) -> Alert {
    let fp = Fingerprint::from_hex("9b1e44c07f2a1d3e").unwrap();
    let entity = Entity::new(EntityKind::Token, fp.to_hex());
    Alert {
        id: Alert::make_id("token-reuse-default", &entity, 1_795_257_000_000),
        detector: "token_reuse".into(),
        rule: "token-reuse-default".into(),
        severity,
        entity,
        client_id: Some("app-69736b".into()),
        client_id_source: Default::default(),
        token_fingerprint: Some(fp),
        window_start: 1_795_257_000_000,
        window_end: 1_795_257_300_000,
        summary: "token used from 7 networks in 5m (limit 3)".into(),
        evidence: Default::default(),
        actions: actions.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_and_slack_receive_their_formats_and_severity_routing_applies() {
    let log: Log = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/api/v2/alerts", post(record))
        .route("/slack/T000/B000", post(record))
        .with_state(log.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
        [actions]
        dead_letter = "{dir}/dl.jsonl"
        [actions.runbooks]
        token_reuse = "https://runbooks.example.com/token-reuse"
        [actions.alertmanager.main]
        url = "http://{addr}"
        labels = {{ team = "secops" }}
        [actions.webhook.chat]
        url = "http://{addr}/slack/T000/B000"
        format = "slack"
        min_severity = "critical"
        "#,
        dir = dir.path().display()
    );
    let table: toml::Table = toml::from_str(&text).unwrap();
    let cfg = GatewatchConfig { other: table.into_iter().collect(), ..GatewatchConfig::default() };
    let s = ActionsSettings::from_config_with_env(&cfg, &|_| None).unwrap();
    let d = Dispatcher::start(s.actions.as_ref().unwrap(), vec![], None).unwrap();

    // Names only the Alertmanager sink; high is below the chat sink's min_severity.
    d.handoff(&alert(Severity::High, &["alertmanager"])).unwrap();
    // Critical: reaches the chat sink by severity although its actions do not name it.
    let mut crit = alert(Severity::Critical, &["alertmanager:main"]);
    crit.id = "critical-one".into();
    crit.entity = Entity::new(EntityKind::ClientId, "app-69736b");
    d.handoff(&crit).unwrap();

    eventually("three deliveries", || log.lock().unwrap().len() >= 3).await;
    d.shutdown(Duration::from_secs(10)).await;
    let got = log.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    let am: Vec<&serde_json::Value> = got.iter().filter(|(p, _, _)| p == "/api/v2/alerts").map(|(_, _, b)| b).collect();
    assert_eq!(am.len(), 2);
    let first = am.iter().find(|b| b[0]["labels"]["severity"] == "high").expect("high alert at Alertmanager");
    assert_eq!(first[0]["labels"]["alertname"], "gatewatch_token_reuse");
    assert_eq!(first[0]["labels"]["team"], "secops");
    assert_eq!(first[0]["labels"]["token_fingerprint"], "9b1e44c07f2a1d3e");
    assert_eq!(first[0]["annotations"]["runbook_url"], "https://runbooks.example.com/token-reuse");
    assert_eq!(first[0]["startsAt"], "2026-11-21T10:30:00Z");
    let slack: Vec<&(String, HeaderMap, serde_json::Value)> =
        got.iter().filter(|(p, _, _)| p.starts_with("/slack")).collect();
    assert_eq!(slack.len(), 1);
    let text = slack[0].2["text"].as_str().unwrap();
    assert!(text.contains("[gatewatch CRITICAL] token_reuse: token used from 7 networks"), "{text}");
    assert!(text.contains("<https://runbooks.example.com/token-reuse|Runbook>"), "{text}");
    assert_eq!(slack[0].1["idempotency-key"], "critical-one");
}

//! `/api/v1/alerts` over a real socket: the bearer token, filters, paging newest first, one
//! alert by id, the bound on what is kept, and no secret from the input in any answer.
#![allow(clippy::disallowed_methods)] // a socket and a test clock

use std::sync::Arc;

use gatewatch::actions::secret::Secret;
use gatewatch::actions::AlertHandoff;
use gatewatch::admin::history::AlertHistory;
use gatewatch::admin::{router, AdminState};
use gatewatch::event::{Alert, ClientIdSource, Entity, EntityKind, Severity};
use serde_json::Value;

const TOKEN: &str = "admin-token-0123456789";
const T0: i64 = 1_795_255_200_000;

async fn start(state: AdminState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    format!("http://{addr}")
}

fn alert(n: i64, detector: &str, severity: Severity, ip: &str) -> Alert {
    Alert {
        id: format!("{n:032x}"),
        detector: detector.into(),
        rule: format!("{detector}-default"),
        severity,
        entity: Entity { kind: EntityKind::SourceIp, id: ip.into() },
        client_id: None,
        client_id_source: ClientIdSource::Claimed,
        token_fingerprint: None,
        window_start: T0 + n * 60_000,
        window_end: T0 + n * 60_000 + 30_000,
        summary: format!("alert {n}"),
        evidence: Default::default(),
        actions: vec!["log".into()],
    }
}

async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn recent_alerts_are_listed_filtered_paged_and_found_by_id_behind_the_token() {
    let history = Arc::new(AlertHistory::new(25, Arc::new(|| T0 + 3_600_000)));
    for n in 0..30 {
        let (detector, sev) =
            if n % 3 == 0 { ("sigma", Severity::High) } else { ("auth_failure_spike", Severity::Medium) };
        history.handoff(&alert(n, detector, sev, &format!("203.0.113.{n}"))).unwrap();
    }
    // The same alert again (a rebuild after a restart): kept once.
    history.handoff(&alert(29, "sigma", Severity::High, "203.0.113.29")).unwrap();
    assert_eq!(history.len(), 25, "bounded: the 5 oldest left");
    let base = start(AdminState::new(Some(Secret::new(TOKEN)), None).with_history(history)).await;

    assert_eq!(get(&base, "/api/v1/alerts", None).await.0, 401);
    assert_eq!(get(&base, "/api/v1/alerts", Some("wrong-token-0123456789")).await.0, 401);

    // Newest first, 50 by default.
    let (status, page) = get(&base, "/api/v1/alerts", Some(TOKEN)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = page["alerts"].as_array().unwrap().iter().map(|a| a["summary"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 25);
    assert_eq!((ids[0], ids[24]), ("alert 29", "alert 5"));
    assert!(page["next"].is_null());

    // Pages of 10 cover the same alerts once each.
    let mut seen = Vec::new();
    let mut before = String::new();
    loop {
        let (_, p) = get(&base, &format!("/api/v1/alerts?limit=10{before}"), Some(TOKEN)).await;
        seen.extend(p["alerts"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()));
        match p["next"].as_u64() {
            Some(n) => before = format!("&before={n}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    seen.dedup();
    assert_eq!(seen.len(), 25);

    // Filters: detector, severity at least, entity, time.
    let (_, p) = get(&base, "/api/v1/alerts?detector=sigma", Some(TOKEN)).await;
    assert!(p["alerts"].as_array().unwrap().iter().all(|a| a["detector"] == "sigma"));
    assert_eq!(p["alerts"].as_array().unwrap().len(), 8, "alerts 6, 9, …, 27 (0 and 3 left)");
    let (_, p) = get(&base, "/api/v1/alerts?severity=high", Some(TOKEN)).await;
    assert_eq!(p["alerts"].as_array().unwrap().len(), 8);
    let (_, p) = get(&base, "/api/v1/alerts?entity_kind=source_ip&entity_id=203.0.113.7", Some(TOKEN)).await;
    assert_eq!(p["alerts"][0]["summary"], "alert 7");
    let (_, p) = get(&base, "/api/v1/alerts?since=2026-11-21T10:20:00Z&until=2026-11-21T10:23:00Z", Some(TOKEN)).await;
    let got: Vec<&str> = p["alerts"].as_array().unwrap().iter().map(|a| a["summary"].as_str().unwrap()).collect();
    assert_eq!(got, ["alert 22", "alert 21", "alert 20"]);
    assert_eq!(get(&base, "/api/v1/alerts?severity=urgent", Some(TOKEN)).await.0, 400);
    assert_eq!(get(&base, "/api/v1/alerts?colour=red", Some(TOKEN)).await.0, 400);

    // One by id, with when it was received.
    let id = format!("{:032x}", 12);
    let (status, a) = get(&base, &format!("/api/v1/alerts/{id}"), Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!((a["summary"].as_str(), a["received_at"].as_str()), (Some("alert 12"), Some("2026-11-21T11:00:00Z")));
    assert_eq!(get(&base, &format!("/api/v1/alerts/{:032x}", 2), Some(TOKEN)).await.0, 404, "no longer kept");
    assert_eq!(get(&base, &format!("/api/v1/alerts/{id}"), None).await.0, 401);
}

#[tokio::test]
async fn without_a_history_the_routes_say_so() {
    let base = start(AdminState::new(Some(Secret::new(TOKEN)), None)).await;
    assert_eq!(get(&base, "/api/v1/alerts", Some(TOKEN)).await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_notification_goes_through_the_real_sink_path() {
    use axum::routing::post;
    // A webhook receiver that keeps what it is sent.
    let got = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: axum::Json<Value>| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(body.0);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[actions]\ndead_letter = \"{dl}\"\nqueue_dir = \"{q}\"\n[actions.webhook.secops]\nurl = \"http://{hook}/hook\"\n",
        dl = dir.path().join("dl.jsonl").display(),
        q = dir.path().join("queue").display()
    );
    let mut cfg: gatewatch::config::GatewatchConfig = toml::from_str(&text).unwrap();
    cfg.path = Some(dir.path().join("gatewatch.toml"));
    let s = gatewatch::actions::ActionsSettings::from_config_with_env(&cfg, &|_| None).expect("valid");
    let d = Arc::new(gatewatch::actions::Dispatcher::start(s.actions.as_ref().unwrap(), vec![], None).unwrap());
    let base = start(AdminState::new(Some(Secret::new(TOKEN)), None).with_dispatcher(d)).await;
    let post = |path: &str, token: Option<&str>| {
        let mut r = reqwest::Client::new().post(format!("{base}{path}"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(post("/api/v1/sinks/webhook:secops/test", None).await.unwrap().status().as_u16(), 401);
    assert_eq!(post("/api/v1/sinks/webhook:nope/test", Some(TOKEN)).await.unwrap().status().as_u16(), 404);
    let resp = post("/api/v1/sinks/webhook:secops/test", Some(TOKEN)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let answer: Value = resp.json().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while got.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1, "delivered once");
    assert_eq!((got[0]["detector"].as_str(), got[0]["id"].as_str()), (Some("test"), answer["alert_id"].as_str()));
}

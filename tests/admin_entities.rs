//! The console's live answers, over real sockets against a running service on an in-process
//! Kafka (`MockCluster`): a brute force produced to the topic becomes an alert whose
//! `/api/v1/alerts/{id}` carries its timeline (queued, a failed attempt at a webhook that
//! answers 503 first, then delivered), and `/api/v1/entities/source_ip/{ip}` shows what the
//! brute-force rule holds about the address, partition by partition, with its alerts;
//! `gatewatch inspect` prints the same. 401 without the token, 400 for an unknown kind,
//! 404 for an entity nothing is held about.
#![allow(clippy::disallowed_methods)] // sockets and timeouts, not detection

mod kafka_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use gatewatch::actions::config::{ActionsConfig, DeliveryConfig, SinkConfig, SinkKind, WebhookConfig, WebhookFormat};
use gatewatch::actions::secret::Secret;
use gatewatch::actions::{AlertHandoff, Dispatcher};
use gatewatch::admin::entities::Entities;
use gatewatch::admin::history::AlertHistory;
use gatewatch::admin::AdminState;
use gatewatch::app::run::{Fanout, Service, ServiceParts};
use gatewatch::source::kafka::{KafkaSettings, StartFrom};
use kafka_support::*;
use serde_json::Value;

const TOKEN: &str = "admin-token-for-entities-test";
/// A well-formed JWT (unsigned test token) in one input record.
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtYWxsb3J5IiwiY2xpZW50X2lkIjoiZW50aXRpZXMifQ.bm90LWEtcmVhbC1zaWduYXR1cmUtanVzdC1ieXRlcw";

async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

/// A webhook receiver that answers 503 to its first request, then 200.
async fn flaky_hook() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let c = c.clone();
            async move {
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_shows_its_timeline_and_its_entity_shows_what_the_rules_hold() {
    const P: i32 = 2;
    let mc = cluster(&[("logs", P)]);
    let bootstrap = mc.bootstrap_servers();
    let attacker = "203.0.113.7";
    let mut recs =
        merge(vec![benign(T0, T0 + 6 * 60_000, 5, 10_000, P), brute_force(attacker, T0 + 60_000, 30, 5_000, P)]);
    // One of the attacker's tries carries a token in its query string: no answer may show it.
    let at = recs.iter().position(|r| r.key == attacker).unwrap() + 3;
    recs[at].payload = recs[at].payload.replace("/login", &format!("/login?access_token={JWT}"));
    produce(&bootstrap, "logs", &recs);

    let (hook, calls) = flaky_hook().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ActionsConfig::new(dir.path().join("dl.jsonl"));
    cfg.sinks.push(SinkConfig {
        name: "webhook:secops".into(),
        delivery: DeliveryConfig {
            min_severity: Some(gatewatch::event::Severity::Info),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            ..DeliveryConfig::default()
        },
        kind: SinkKind::Webhook(WebhookConfig {
            url: format!("http://{hook}/hook"),
            format: WebhookFormat::Json,
            secret: None,
            headers: BTreeMap::new(),
        }),
    });
    let history = Arc::new(AlertHistory::new(100, Arc::new(|| chrono::Utc::now().timestamp_millis())));
    let dispatcher = Arc::new(Dispatcher::start_with_journal(&cfg, vec![], None, history.clone()).unwrap());
    let entities = Arc::new(Entities::default());
    let admin = gatewatch::admin::router(
        AdminState::new(Some(Secret::new(TOKEN)), None)
            .with_history(history.clone())
            .with_dispatcher(dispatcher.clone())
            .with_entities(entities.clone()),
    );
    let mut settings = KafkaSettings::new(bootstrap.clone(), vec!["logs".into()], "g-entities");
    settings.start_from = StartFrom::Earliest;
    let outputs: Vec<Arc<dyn AlertHandoff>> = vec![history.clone(), dispatcher.clone()];
    let service = Service::start(ServiceParts {
        run_as: gatewatch::app::run::RunAs::Single,
        settings,
        listen: "127.0.0.1:0".parse().unwrap(),
        new_pipeline: pipelines(),
        handoff: Arc::new(Fanout(outputs)),
        registry: Arc::new(prometheus::Registry::new()),
        admin: Some(admin),
        admin_limits: Default::default(),
        dispatcher: Some(dispatcher.clone()),
        entities: Some(entities),
    })
    .await
    .expect("service starts");
    let base = format!("http://{}", service.addr);

    // The brute force is alerted, and its delivery retried once and then made.
    let path = format!("/api/v1/alerts?entity_kind=source_ip&entity_id={attacker}");
    let mut alert = Value::Null;
    for _ in 0..600 {
        let (_, page) = get(&base, &path, Some(TOKEN)).await;
        if let Some(a) = page["alerts"].as_array().and_then(|a| a.first()) {
            let (_, full) = get(&base, &format!("/api/v1/alerts/{}", a["id"].as_str().unwrap()), Some(TOKEN)).await;
            let delivered =
                full["notifications"].as_array().is_some_and(|n| n.iter().any(|x| x["outcome"] == "delivered"));
            if delivered {
                alert = full;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!alert.is_null(), "no delivered alert about {attacker}");
    assert!(calls.load(Ordering::SeqCst) >= 2);
    let outcomes: Vec<&str> =
        alert["notifications"].as_array().unwrap().iter().map(|n| n["outcome"].as_str().unwrap()).collect();
    // The first notification sent met the 503; later ones may go through at once.
    assert_eq!(outcomes[0], "queued", "{alert}");
    assert!(outcomes.contains(&"delivered"), "{alert}");
    assert!(alert["notifications"].as_array().unwrap().iter().all(|n| n["sink"] == "webhook:secops"));
    assert_eq!(alert["lifecycle"][0]["event"], "raised");
    assert!(alert["revocations"].as_array().unwrap().is_empty());
    let all = history.query(&Default::default()).unwrap().alerts;
    let failed_somewhere = all.iter().any(|a| {
        history.get(a["id"].as_str().unwrap()).is_some_and(|f| {
            f["notifications"].as_array().unwrap().iter().any(|n| n["outcome"] == "failed" && n["detail"] == "HTTP 503")
        })
    });
    assert!(failed_somewhere, "the 503 is in some alert's timeline");

    // What the rules hold about the address: the brute-force rule's counts, on the
    // partition the address is read from, and its alerts.
    assert_eq!(get(&base, &format!("/api/v1/entities/source_ip/{attacker}"), None).await.0, 401);
    let (status, ent) = get(&base, &format!("/api/v1/entities/source_ip/{attacker}"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{ent}");
    assert_eq!(ent["entity"], serde_json::json!({ "kind": "source_ip", "id": attacker }));
    let states = ent["state"].as_array().unwrap();
    let spike = states.iter().find(|s| s["detector"] == "auth_failure_spike").unwrap_or_else(|| panic!("{ent}"));
    assert_eq!(spike["partition"], format!("logs/{}", partition_of(attacker, P)));
    assert!(spike["held"].as_object().is_some_and(|h| !h.is_empty()), "{ent}");
    assert!(!ent["alerts"].as_array().unwrap().is_empty());

    for answer in [&alert, &ent] {
        assert!(!answer.to_string().contains(JWT) && !answer.to_string().contains("bm90LWEtcmVhbC1zaWduYXR1cmU"));
    }

    // Unknown kind, an address of a network nothing came from; a route's slashes need no escaping.
    assert_eq!(get(&base, "/api/v1/entities/planet/earth", Some(TOKEN)).await.0, 400);
    let (s, body) = get(&base, "/api/v1/entities/source_ip/198.18.7.250", Some(TOKEN)).await;
    assert_eq!(s, 404, "{body}");
    let (s, _) = get(&base, "/api/v1/entities/route/GET /v1/orders", Some(TOKEN)).await;
    assert!(s == 200 || s == 404, "{s}");

    // `gatewatch inspect` asks the same route and prints it for a person.
    let out = inspect(&base, attacker, TOKEN).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with(&format!("source_ip {attacker}\n")), "{text}");
    assert!(text.contains("(auth_failure_spike) on logs/"), "{text}");
    assert!(!text.contains(TOKEN));
    let out = inspect(&base, attacker, "not-the-admin-token-at-all").await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && !err.contains("not-the-admin-token-at-all"), "{err}");

    service.stop().await.unwrap();
}

/// `gatewatch inspect source_ip ID` against `base`, the token in an environment variable.
async fn inspect(base: &str, id: &str, token: &str) -> std::process::Output {
    let (base, id, token) = (base.to_string(), id.to_string(), token.to_string());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gatewatch"))
            .args(["inspect", "source_ip", &id, "--url", &base, "--token-env", "GW_TEST_ADMIN_TOKEN"])
            .env("GW_TEST_ADMIN_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

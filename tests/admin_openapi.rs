//! The admin listener against its OpenAPI description (`docs/openapi.yaml`): every documented
//! path and method answers, over a real socket, with one of the statuses documented for it,
//! with its credentials and without them (401 for `/api/`, 403 for the bouncer endpoints).
#![allow(clippy::disallowed_methods)] // the revoker and the history take wall time

use std::sync::Arc;

use gatewatch::actions::config::RevocationConfig;
use gatewatch::actions::revocation::Revoker;
use gatewatch::actions::secret::Secret;
use gatewatch::actions::AlertHandoff;
use gatewatch::admin::{router, AdminState};
use gatewatch::event::{Alert, ClientIdSource, Entity, EntityKind, Severity};

const TOKEN: &str = "admin-token-0123456789";
const BOUNCER: &str = "bouncer-key-0123456789";

async fn server(dir: &std::path::Path) -> (String, String) {
    let now = chrono::Utc::now().timestamp_millis();
    let mut rc = RevocationConfig::new(dir.join("audit.jsonl"));
    rc.dry_run = false;
    let revoker = Arc::new(Revoker::with_targets(&rc, vec![], now).unwrap());
    let history = Arc::new(gatewatch::admin::history::AlertHistory::new(10, Arc::new(move || now)));
    let alert = Alert {
        id: "0123456789abcdef0123456789abcdef".into(),
        detector: "auth_failure_spike".into(),
        rule: "auth-failure-default".into(),
        severity: Severity::High,
        entity: Entity { kind: EntityKind::SourceIp, id: "203.0.113.9".into() },
        client_id: None,
        client_id_source: ClientIdSource::Claimed,
        token_fingerprint: None,
        window_start: now,
        window_end: now,
        summary: "40 failures".into(),
        evidence: Default::default(),
        actions: vec![],
    };
    history.handoff(&alert).unwrap();
    let mut cfg = gatewatch::config::GatewatchConfig::default();
    cfg.detectors.dir = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors").into());
    let (files, errs) = gatewatch::engine::load_files(&cfg);
    let factory = Arc::new(gatewatch::engine::PipelineFactory::new(&cfg, files, errs, b"openapi-test-key").unwrap());
    let text = format!(
        "[actions]\ndead_letter = \"{}\"\nqueue_dir = \"{}\"\n[actions.webhook.secops]\nurl = \"http://127.0.0.1:9/hook\"\n",
        dir.join("dl.jsonl").display(),
        dir.join("queue").display()
    );
    let mut gcfg: gatewatch::config::GatewatchConfig = toml::from_str(&text).unwrap();
    gcfg.path = Some(dir.join("gatewatch.toml"));
    let s = gatewatch::actions::ActionsSettings::from_config_with_env(&gcfg, &|_| None).unwrap();
    let dispatcher =
        Arc::new(gatewatch::actions::Dispatcher::start(s.actions.as_ref().unwrap(), vec![], None).unwrap());
    let requests = prometheus::IntCounterVec::new(prometheus::Opts::new("x", "x"), &["result"]).unwrap();
    let state = AdminState::new(Some(Secret::new(TOKEN)), Some(revoker.clone()))
        .with_rules(factory)
        .with_history(history)
        .with_dispatcher(dispatcher)
        .with_entities(Arc::new(gatewatch::admin::entities::Entities::default()))
        .with_forward_auth(Arc::new(gatewatch::admin::forward_auth::ForwardAuth::new(revoker.deny_list(), b"k")))
        .with_crowdsec(Arc::new(gatewatch::admin::crowdsec::CrowdSec::new(
            revoker.deny_list(),
            vec![("test".into(), Secret::new(BOUNCER))],
            requests,
        )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    (format!("http://{addr}"), alert.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers_as_documented() {
    let spec: serde_json::Value = {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml")).unwrap();
        let y: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
        serde_json::to_value(y).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let (base, alert_id) = server(dir.path()).await;
    let http = reqwest::Client::new();
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() >= 10, "{} paths", paths.len());
    for (path, ops) in paths {
        let url_path =
            path.replace("{kind}", "source_ip").replace("{id}", &alert_id).replace("{name}", "webhook:secops");
        for (method, op) in ops.as_object().unwrap() {
            let documented: Vec<u16> =
                op["responses"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect();
            let security = op.get("security").unwrap_or(&spec["security"]);
            let scheme = security
                .as_array()
                .and_then(|s| s.first())
                .and_then(|s| s.as_object())
                .and_then(|o| o.keys().next().cloned());
            let send = |with_credentials: bool| {
                let mut r = http.request(method.to_uppercase().parse().unwrap(), format!("{base}{url_path}"));
                if method == "post" {
                    r = r.json(&serde_json::json!({ "alerts": [] }));
                }
                match (scheme.as_deref(), with_credentials) {
                    (Some("bearer"), true) => r.bearer_auth(TOKEN),
                    (Some("bouncer"), true) => r.header("X-Api-Key", BOUNCER),
                    _ => r,
                }
            };
            let status = send(true).send().await.unwrap().status().as_u16();
            assert!(documented.contains(&status), "{method} {path}: {status}, documented {documented:?}");
            let refused = match scheme.as_deref() {
                Some("bearer") => Some(401),
                Some("bouncer") => Some(403),
                _ => None,
            };
            if let Some(want) = refused {
                assert!(documented.contains(&want), "{method} {path} documents {want}");
                assert_eq!(
                    send(false).send().await.unwrap().status().as_u16(),
                    want,
                    "{method} {path} without credentials"
                );
            }
        }
    }
}

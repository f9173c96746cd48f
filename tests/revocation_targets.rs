//! Revocation end to end: alerts asking for `revoke` go through the dispatcher to the
//! policy and an RFC 7009 endpoint on 127.0.0.1. The endpoint receives exactly the expected
//! revocations (once each, after a retry), none for an allow-listed client, no more than the
//! caps; every decision is in the audit log, and the state survives a restart.
#![allow(clippy::disallowed_methods)] // times sockets and timeouts, not detection

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use gatewatch::actions::revocation::{RevocationRequest, Revoker, Verdict};
use gatewatch::actions::{ActionsSettings, AlertHandoff, Dispatcher};
use gatewatch::config::GatewatchConfig;
use gatewatch::event::{Alert, ClientIdSource, Entity, EntityKind, Fingerprint, Severity};

#[derive(Clone, Default)]
struct Idp {
    calls: Arc<Mutex<usize>>,
    /// (form body, Authorization header) of accepted calls.
    accepted: Arc<Mutex<Vec<(String, String)>>>,
}

async fn revoke(State(idp): State<Idp>, headers: HeaderMap, body: String) -> StatusCode {
    let n = {
        let mut c = idp.calls.lock().unwrap();
        *c += 1;
        *c
    };
    if n == 1 {
        return StatusCode::SERVICE_UNAVAILABLE; // the first call fails: the target retries
    }
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    idp.accepted.lock().unwrap().push((body, auth));
    StatusCode::OK
}

fn settings(text: &str) -> ActionsSettings {
    let table: toml::Table = toml::from_str(text).unwrap();
    let cfg = GatewatchConfig { other: table.into_iter().collect(), ..GatewatchConfig::default() };
    let env = |k: &str| (k == "GW_TEST_IDP_SECRET").then(|| "idp-secret-xyz".to_string());
    ActionsSettings::from_config_with_env(&cfg, &env).expect("valid config")
}

fn alert(n: usize, client: &str, jti: &str) -> Alert {
    let entity = Entity::new(EntityKind::Token, format!("cred:{jti}"));
    Alert {
        id: Alert::make_id("token-reuse-default", &entity, 1_800_000_000_000 + n as i64),
        detector: "token_reuse".into(),
        rule: "token-reuse-default".into(),
        severity: Severity::High,
        entity,
        client_id: Some(client.into()),
        client_id_source: Default::default(),
        token_fingerprint: None,
        window_start: 1_800_000_000_000,
        window_end: 1_800_000_300_000,
        summary: format!("token {jti} used from 7 networks"),
        evidence: Default::default(),
        actions: vec!["revoke".into()],
    }
}

fn audit(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc7009_endpoint_gets_exactly_the_allowed_revocations() {
    let idp = Idp::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/oauth2/revoke", post(revoke)).with_state(idp.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let s = settings(&format!(
        r#"
        [actions]
        dead_letter = "{dir}/dl.jsonl"
        [revocation]
        mode = "enforce"
        audit_log = "{dir}/audit.jsonl"
        never_revoke_clients = ["healthcheck"]
        max_per_hour = 3
        max_per_client_per_hour = 2
        quarantine = "1h"
        initial_backoff = "10ms"
        [revocation.oauth]
        endpoint = "http://{addr}/oauth2/revoke"
        client_id = "gatewatch"
        client_secret_env = "GW_TEST_IDP_SECRET"
        token_type_hint = "access_token"
        "#,
        dir = dir.path().display()
    ));
    let rev_cfg = s.revocation.clone().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let revoker = Arc::new(Revoker::open(&rev_cfg, now).unwrap());
    let d = Dispatcher::start(s.actions.as_ref().unwrap(), vec![], Some(revoker.clone())).unwrap();

    let a1 = alert(1, "app-a", "jti-a1");
    let alerts = [
        alert(0, "healthcheck", "jti-hc1"),
        a1.clone(),
        alert(2, "healthcheck", "jti-hc2"),
        alert(3, "app-a", "jti-a2"),
        alert(4, "app-a", "jti-a3"), // client cap (2 per hour)
        a1.clone(),                  // same alert again: de-duplicated, no decision
        alert(5, "app-b", "jti-b1"),
        alert(6, "app-b", "jti-b1"), // another alert, same credential: already revoked
        alert(7, "app-b", "jti-b2"), // global cap (3 per hour)
    ];
    for a in &alerts {
        d.handoff(a).unwrap();
    }
    let audit_path = rev_cfg.audit_log.clone();
    let decisions = |p: &Path| audit(p).into_iter().filter(|r| r["event"] == "decision").collect::<Vec<_>>();
    let targets = |p: &Path| audit(p).into_iter().filter(|r| r["event"] == "target").count();
    eventually("8 decisions and 3 target calls", || decisions(&audit_path).len() >= 8 && targets(&audit_path) >= 3)
        .await;
    d.shutdown(Duration::from_secs(10)).await;

    let verdicts: Vec<(String, String)> = decisions(&audit_path)
        .iter()
        .map(|r| (r["credential_id"].as_str().unwrap().to_string(), r["verdict"].as_str().unwrap().to_string()))
        .collect();
    let want = [
        ("jti-hc1", "allow_listed"),
        ("jti-a1", "revoke"),
        ("jti-hc2", "allow_listed"),
        ("jti-a2", "revoke"),
        ("jti-a3", "client_cap"),
        ("jti-b1", "revoke"),
        ("jti-b1", "already_revoked"),
        ("jti-b2", "global_cap"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(verdicts, want);

    let accepted = idp.accepted.lock().unwrap().clone();
    let mut tokens: Vec<String> = accepted.iter().map(|(b, _)| b.clone()).collect();
    tokens.sort();
    assert_eq!(
        tokens,
        [
            "token=jti-a1&token_type_hint=access_token",
            "token=jti-a2&token_type_hint=access_token",
            "token=jti-b1&token_type_hint=access_token"
        ]
    );
    // client_secret_basic: base64("gatewatch:idp-secret-xyz").
    assert!(accepted.iter().all(|(_, a)| a == "Basic Z2F0ZXdhdGNoOmlkcC1zZWNyZXQteHl6"));
    assert_eq!(*idp.calls.lock().unwrap(), 4, "three revocations plus the one failed call");
    let target_recs: Vec<_> = audit(&audit_path).into_iter().filter(|r| r["event"] == "target").collect();
    assert!(target_recs.iter().all(|r| r["result"] == "ok" && r["target"] == "oauth"));
    assert_eq!(target_recs.iter().map(|r| r["attempts"].as_u64().unwrap()).sum::<u64>(), 4);

    let text = std::fs::read_to_string(&audit_path).unwrap();
    assert!(!text.contains("idp-secret-xyz") && !text.contains("Z2F0ZXdhdGNoOmlkcC1zZWNyZXQteHl6"));
    assert_eq!(revoker.deny_list().snapshot(now).len, 3);
    assert_eq!(revoker.stats().get(&Verdict::Revoke), Some(&3));
    assert_eq!(d.stats().duplicates, 1);
}

fn req(fp: u8, client: &str, severity: Severity) -> RevocationRequest {
    RevocationRequest {
        fingerprint: Some(Fingerprint([9, 9, 9, 9, 9, 9, 9, fp])),
        credential_id: None,
        client_id: Some(client.into()),
        client_id_source: ClientIdSource::Gateway,
        address: None,
        ban_client: false,
        alert_id: format!("alert-{fp}"),
        reason: "test".into(),
        severity,
        source: "alert",
        force_dry_run: false,
    }
}

#[tokio::test]
async fn dry_run_by_default_and_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_800_000_000_000i64;
    let s = settings(&format!(
        "[revocation]\naudit_log = \"{}/audit.jsonl\"\nmax_per_hour = 2\nmax_per_client_per_hour = 2\nquarantine = \"10m\"\npermanent_at = \"critical\"\n",
        dir.path().display()
    ));
    let mut cfg = s.revocation.unwrap();
    // Default mode: nothing revoked, everything audited.
    {
        let r = Revoker::with_targets(&cfg, vec![], t0).unwrap();
        assert_eq!(r.handle(req(1, "a", Severity::High), t0).await.decision.verdict, Verdict::DryRun);
        assert_eq!(r.deny_list().snapshot(t0).len, 0);
    }
    cfg.dry_run = false;
    {
        let r = Revoker::with_targets(&cfg, vec![], t0).unwrap();
        assert_eq!(r.handle(req(1, "a", Severity::High), t0).await.decision.verdict, Verdict::Revoke);
        assert_eq!(r.handle(req(2, "b", Severity::Critical), t0 + 1).await.decision.verdict, Verdict::Revoke);
        assert_eq!(r.handle(req(3, "c", Severity::High), t0 + 2).await.decision.verdict, Verdict::GlobalCap);
    }
    // Restarted: the deny-list and the cap come back from the audit log.
    let r = Revoker::with_targets(&cfg, vec![], t0 + 1000).unwrap();
    assert_eq!(r.deny_list().snapshot(t0 + 1000).len, 2);
    assert_eq!(r.handle(req(4, "d", Severity::High), t0 + 1000).await.decision.verdict, Verdict::GlobalCap);
    assert_eq!(r.handle(req(1, "a", Severity::High), t0 + 1000).await.decision.verdict, Verdict::AlreadyRevoked);
    // The quarantine ends; the critical one is permanent.
    let later = t0 + 11 * 60_000;
    let snap = r.deny_list().snapshot(later);
    assert_eq!(snap.len, 1);
    let v: serde_json::Value = serde_json::from_slice(&snap.body).unwrap();
    assert_eq!(v["revocations"][0]["fingerprint"], "0909090909090902");
    assert!(v["revocations"][0]["expires_at"].is_null());
    // One audit line per decision, including dry-run and capped ones.
    let lines = audit(&cfg.audit_log);
    let verdicts: Vec<&str> = lines.iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["dry_run", "revoke", "revoke", "global_cap", "global_cap", "already_revoked"]);
}

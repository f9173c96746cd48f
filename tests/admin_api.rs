//! The admin API over a real socket: bearer auth on everything under /api/, the deny-list
//! with ETag/If-None-Match, and the Alertmanager receiver going through the revocation
//! safety checks.
#![allow(clippy::disallowed_methods)] // times sockets and timeouts, not detection

use std::sync::Arc;

use gatewatch::actions::config::RevocationConfig;
use gatewatch::actions::revocation::Revoker;
use gatewatch::actions::secret::Secret;
use gatewatch::admin::{router, AdminState};
use serde_json::json;

const TOKEN: &str = "admin-token-0123456789";

async fn start(state: AdminState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    format!("http://{addr}")
}

fn revoker(dir: &std::path::Path) -> Arc<Revoker> {
    let mut cfg = RevocationConfig::new(dir.join("audit.jsonl"));
    cfg.dry_run = false;
    cfg.never_revoke_clients = vec!["healthcheck".into()];
    let now = chrono::Utc::now().timestamp_millis();
    Arc::new(Revoker::with_targets(&cfg, vec![], now).unwrap())
}

#[tokio::test]
async fn api_refuses_requests_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let base = start(AdminState::new(Some(Secret::new(TOKEN)), Some(revoker(dir.path())))).await;
    let c = reqwest::Client::new();
    for (method, path) in
        [("GET", "/api/v1/revocations"), ("POST", "/api/v1/alertmanager"), ("GET", "/api/v1/nothing-here")]
    {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let none = c.request(m.clone(), format!("{base}{path}")).send().await.unwrap();
        assert_eq!(none.status(), 401, "{method} {path} without a token");
        assert_eq!(none.headers()["www-authenticate"], "Bearer");
        let wrong =
            c.request(m.clone(), format!("{base}{path}")).bearer_auth("admin-token-0123456780").send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{method} {path} with a wrong token");
        let basic = c.request(m, format!("{base}{path}")).basic_auth("admin", Some(TOKEN)).send().await.unwrap();
        assert_eq!(basic.status(), 401, "{method} {path} with basic auth");
    }
    let ok = c.get(format!("{base}/api/v1/revocations")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let unknown = c.get(format!("{base}/api/v1/nothing-here")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn api_without_a_configured_token_refuses_everything() {
    let dir = tempfile::tempdir().unwrap();
    let base = start(AdminState::new(None, Some(revoker(dir.path())))).await;
    let r = reqwest::Client::new().get(format!("{base}/api/v1/revocations")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn alertmanager_alert_revokes_through_the_safety_checks_and_the_etag_changes() {
    let dir = tempfile::tempdir().unwrap();
    let rev = revoker(dir.path());
    let base = start(AdminState::new(Some(Secret::new(TOKEN)), Some(rev.clone()))).await;
    let c = reqwest::Client::new();

    let first = c.get(format!("{base}/api/v1/revocations")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let etag0 = first.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(first.json::<serde_json::Value>().await.unwrap(), json!({"revocations": []}));
    let same = c
        .get(format!("{base}/api/v1/revocations"))
        .bearer_auth(TOKEN)
        .header("If-None-Match", &etag0)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 304);

    let payload = json!({
        "version": "4", "status": "firing", "receiver": "gatewatch", "groupKey": "{}:{}",
        "alerts": [
            {"status": "firing", "fingerprint": "aa01",
             "labels": {"alertname": "TokenAbuse", "token_fingerprint": "9B1E44C07F2A1D3E", "client_id": "app-1", "severity": "high"},
             "annotations": {"summary": "token abused"}},
            {"status": "firing", "fingerprint": "aa02",
             "labels": {"alertname": "TokenAbuse", "token_fingerprint": "1111222233334444", "client_id": "healthcheck"}},
            {"status": "resolved", "fingerprint": "aa03",
             "labels": {"alertname": "TokenAbuse", "token_fingerprint": "5555666677778888", "client_id": "app-2"}},
            {"status": "firing", "fingerprint": "aa04",
             "labels": {"alertname": "TokenAbuse", "token_fingerprint": "not-hex", "client_id": "app-3"}},
            {"status": "firing", "fingerprint": "aa05", "labels": {"alertname": "HighLatency"}}
        ]
    });
    let r = c.post(format!("{base}/api/v1/alertmanager")).bearer_auth(TOKEN).json(&payload).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let verdicts: Vec<&str> =
        body["results"].as_array().unwrap().iter().map(|r| r["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["revoke", "allow_listed", "ignored", "invalid", "no_credential"]);

    let after = c
        .get(format!("{base}/api/v1/revocations"))
        .bearer_auth(TOKEN)
        .header("If-None-Match", &etag0)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    assert_ne!(after.headers()["etag"].to_str().unwrap(), etag0);
    let list: serde_json::Value = after.json().await.unwrap();
    let entries = list["revocations"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["fingerprint"], "9b1e44c07f2a1d3e");
    // An Alertmanager label is nobody's verified client: listed as claimed, never as one to act on.
    assert!(entries[0]["client_id"].is_null());
    assert_eq!(entries[0]["claimed_client_id"], "app-1");
    assert_eq!(entries[0]["alert_id"], "am:aa01");
    assert!(entries[0]["expires_at"].is_string());
    assert!(entries[0]["reason"].as_str().unwrap().contains("token abused"));

    let bad = c.post(format!("{base}/api/v1/alertmanager")).bearer_auth(TOKEN).body("{}").send().await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn endpoints_say_when_revocation_is_not_configured() {
    let base = start(AdminState::new(Some(Secret::new(TOKEN)), None)).await;
    let r = reqwest::Client::new().get(format!("{base}/api/v1/revocations")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 503);
}

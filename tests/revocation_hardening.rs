//! Issue 12 (hardening), items 6 and 7, over real sockets: an IdP admin API on 127.0.0.1
//! records every call the revoker makes, and each test reproduces one finding of the probe
//! of the release binary by an attacker who controls log content.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use gatewatch::actions::config::{HttpTargetConfig, RevocationConfig};
use gatewatch::actions::revocation::{HttpTarget, RevocationRequest, RevocationTarget, Revoker, Verdict};
use gatewatch::actions::secret::Secret;
use gatewatch::event::{Fingerprint, Severity};

const T0: i64 = 1_800_000_000_000;
const IDP_BEARER: &str = "idp-admin-bearer-0123456789";

/// What the IdP admin API saw: `METHOD /path` and whether the bearer came with it.
#[derive(Clone, Default)]
struct Idp {
    calls: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Idp {
    async fn start() -> (Idp, String) {
        let idp = Idp::default();
        let seen = idp.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let bearer = headers
                    .get("authorization")
                    .is_some_and(|v| v.to_str().unwrap_or_default() == format!("Bearer {IDP_BEARER}"));
                seen.calls.lock().unwrap().push((format!("{method} {}", uri.path()), bearer));
                StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (idp, format!("http://{addr}"))
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|(c, _)| c.clone()).collect()
    }
}

fn enforcing(dir: &std::path::Path) -> RevocationConfig {
    let mut c = RevocationConfig::new(dir.join("audit.jsonl"));
    c.dry_run = false;
    c.max_per_hour = 100;
    c.max_per_client_per_hour = 100;
    c.initial_backoff = std::time::Duration::from_millis(5);
    c
}

fn revoke_by_client(base: &str) -> Arc<dyn RevocationTarget> {
    Arc::new(HttpTarget::new(
        HttpTargetConfig {
            url: format!("{base}/admin/clients/{{client_id}}/revoke"),
            method: "POST".into(),
            bearer: Some(Secret::new(IDP_BEARER)),
            secret: None,
        },
        reqwest::Client::new(),
    ))
}

fn req(n: u8, client: &str) -> RevocationRequest {
    RevocationRequest {
        fingerprint: Some(Fingerprint([0x12, 0, 0, 0, 0, 0, 0, n])),
        credential_id: None,
        client_id: Some(client.into()),
        alert_id: format!("alert-{n}"),
        reason: "token used from 7 networks".into(),
        severity: Severity::High,
        source: "alert",
        force_dry_run: false,
    }
}

/// Item 6: a client id of `..` or `.` became `POST /admin/revoke` / `POST /admin/clients/revoke`
/// with the IdP bearer. Now such a value never reaches the path, and `.` is encoded.
#[tokio::test]
async fn dot_segment_client_ids_never_move_the_call() {
    let (idp, base) = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rev = Revoker::with_targets(&enforcing(dir.path()), vec![revoke_by_client(&base)], T0).unwrap();
    for (n, client) in [(1, ".."), (2, "."), (3, "app.v2")] {
        let out = rev.handle(req(n, client), T0 + n as i64).await;
        assert_eq!(out.decision.verdict, Verdict::Revoke, "{client}: the token itself is still revoked");
        assert_eq!(out.target_failures, 0);
    }
    assert_eq!(idp.calls(), ["POST /admin/clients/app%2Ev2/revoke"]);
    assert!(idp.calls.lock().unwrap().iter().all(|(_, bearer)| *bearer));
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let skipped = audit.lines().filter(|l| l.contains("\"target\":\"http\"") && l.contains("\"result\":\"skipped\""));
    assert_eq!(skipped.count(), 2, "{audit}");
    assert!(!audit.contains(IDP_BEARER));
}

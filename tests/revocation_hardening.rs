//! Issue 12 (hardening), items 6 and 7, over real sockets: an IdP admin API on 127.0.0.1
//! records every call the revoker makes, and each test reproduces one finding of the probe
//! of the release binary by an attacker who controls log content.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use gatewatch::actions::config::{HttpTargetConfig, RevocationConfig};
use gatewatch::actions::revocation::{HttpTarget, RevocationRequest, RevocationTarget, Revoker, Verdict};
use gatewatch::actions::secret::Secret;
use gatewatch::config::{DetectorFile, GatewatchConfig};
use gatewatch::detectors::{build_rule, Limits};
use gatewatch::engine::Pipeline;
use gatewatch::event::{format_ts, Alert, ClientIdSource, Fingerprint, Severity};
use gatewatch::normalize::{Format, Normalizer};

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
            method: gatewatch::actions::config::HttpMethod::Post,
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
        client_id_source: ClientIdSource::Gateway,
        address: None,
        ban_client: false,
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

/// A JWT nobody signed (`alg: none`): gatewatch reads its claims but cannot trust them.
fn unsigned_jwt(claims: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(claims))
}

/// The shipped token-reuse detector, acting on `revoke`, over the records as one stream.
fn alerts_from(format: Format, records: &[String]) -> Vec<Alert> {
    let text = include_str!("../detectors/token-reuse.toml").replace("actions = [\"log\"]", "actions = [\"revoke\"]");
    let file = DetectorFile::parse(&text, std::path::Path::new("token-reuse.toml")).unwrap();
    let rule = build_rule(&file, Limits::default()).unwrap();
    let mut p = Pipeline::new(Normalizer::new(format, b"0123456789abcdef"), vec![rule], &GatewatchConfig::default());
    let mut out = Vec::new();
    for r in records {
        p.process(r.as_bytes(), None, &mut out);
    }
    p.finish(&mut out);
    out
}

/// One token from five regions: what token_reuse calls stolen.
const REGIONS: [&str; 5] = ["203.0.113.5", "45.33.1.9", "91.198.174.2", "5.255.255.5", "185.199.108.1"];

/// Item 6: a forged `alg:none` JWT whose `client_id` claim names `billing-prod` raised an alert
/// that a revoke-by-client target acted on. The token is still revoked (by its fingerprint, on
/// the deny-list); the client it claims is never a target.
#[tokio::test]
async fn a_client_named_only_by_an_unverified_jwt_is_never_revoked_by_client() {
    let token = unsigned_jwt(r#"{"client_id":"billing-prod","sub":"mallory"}"#);
    let envoy: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"start_time":"{}","method":"GET","path":"/v1/me","response_code":200,"downstream_remote_address":"{}:4431","authorization":"Bearer {token}"}}"#,
                format_ts(T0 + i * 10_000),
                REGIONS[i as usize % 5]
            )
        })
        .collect();
    let alerts = alerts_from(Format::Envoy, &envoy);
    assert!(!alerts.is_empty(), "the forged token's use from five regions raises an alert");
    assert_eq!(alerts[0].client_id.as_deref(), Some("billing-prod"), "the alert still says what the token claims");

    let (idp, base) = Idp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rev = Revoker::with_targets(&enforcing(dir.path()), vec![revoke_by_client(&base)], T0).unwrap();
    for a in &alerts {
        assert_eq!(rev.handle_alert(a, false, T0 + 300_000).await.decision.verdict, Verdict::Revoke);
    }
    assert_eq!(idp.calls(), Vec::<String>::new(), "no revoke-by-client call for a claimed client");
    let snap = rev.deny_list().snapshot(T0 + 300_000);
    let v: serde_json::Value = serde_json::from_slice(&snap.body).unwrap();
    assert_eq!(snap.len, 1, "{v}");
    assert!(v["revocations"][0]["fingerprint"].is_string());
    assert!(v["revocations"][0]["client_id"].is_null(), "an unverified client is not one to act on: {v}");
    assert_eq!(v["revocations"][0]["claimed_client_id"], "billing-prod");

    // The same traffic through Kong, which authenticated the consumer itself: that client is
    // the gateway's word, and the revoke-by-client call is made.
    let kong: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"started_at":{},"client_ip":"{}","request":{{"method":"GET","uri":"/v1/me","headers":{{"authorization":"Bearer {token}"}}}},"response":{{"status":200}},"consumer":{{"id":"billing-prod","username":"billing-prod"}}}}"#,
                T0 + i * 10_000,
                REGIONS[i as usize % 5]
            )
        })
        .collect();
    let alerts = alerts_from(Format::Kong, &kong);
    assert!(!alerts.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let rev = Revoker::with_targets(&enforcing(dir.path()), vec![revoke_by_client(&base)], T0).unwrap();
    for a in &alerts {
        assert_eq!(rev.handle_alert(a, false, T0 + 300_000).await.decision.verdict, Verdict::Revoke);
    }
    assert_eq!(idp.calls(), ["POST /admin/clients/billing-prod/revoke"]);
}

fn capped(dir: &std::path::Path, max_per_hour: u32) -> RevocationConfig {
    let mut c = enforcing(dir);
    c.max_per_hour = max_per_hour;
    c.max_per_client_per_hour = max_per_hour;
    c
}

/// Item 7d: after rotating `audit.jsonl` and restarting, the deny-list was empty and the caps
/// were whole again. The state now lives in a snapshot beside the audit log.
#[tokio::test]
async fn rotating_the_audit_log_loses_no_revocation_and_no_cap() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = capped(dir.path(), 2);
    {
        let rev = Revoker::with_targets(&cfg, vec![], T0).unwrap();
        assert_eq!(rev.handle(req(1, "app-a"), T0).await.decision.verdict, Verdict::Revoke);
        assert_eq!(rev.handle(req(2, "app-b"), T0 + 1).await.decision.verdict, Verdict::Revoke);
    }
    // logrotate's default: the file is renamed, a new one is started.
    std::fs::rename(dir.path().join("audit.jsonl"), dir.path().join("audit.jsonl.1")).unwrap();
    let rev = Revoker::with_targets(&cfg, vec![], T0 + 60_000).unwrap();
    assert_eq!(rev.deny_list().snapshot(T0 + 60_000).len, 2, "the deny-list survived the rotation");
    assert_eq!(rev.handle(req(1, "app-a"), T0 + 60_001).await.decision.verdict, Verdict::AlreadyRevoked);
    assert_eq!(rev.handle(req(3, "app-c"), T0 + 60_002).await.decision.verdict, Verdict::GlobalCap, "the cap too");
    // copytruncate: same file, emptied in place.
    std::fs::write(dir.path().join("audit.jsonl"), b"").unwrap();
    let rev = Revoker::with_targets(&cfg, vec![], T0 + 120_000).unwrap();
    assert_eq!(rev.deny_list().snapshot(T0 + 120_000).len, 2);
    assert_eq!(rev.handle(req(4, "app-d"), T0 + 120_001).await.decision.verdict, Verdict::GlobalCap);
    // An hour on, the cap has room again and the quarantines have ended.
    let later = T0 + 2 * 3_600_000;
    let rev = Revoker::with_targets(&cfg, vec![], later).unwrap();
    assert_eq!(rev.deny_list().snapshot(later).len, 0);
    assert_eq!(rev.handle(req(5, "app-e"), later).await.decision.verdict, Verdict::Revoke);
}

/// Item 7d, the other half: a decision audited but not yet in the snapshot (a crash in
/// between) comes back from the audit lines that follow the snapshot, and only once.
#[tokio::test]
async fn a_decision_the_snapshot_missed_comes_back_from_the_audit_log_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = capped(dir.path(), 3);
    let state = dir.path().join("audit.state.json");
    {
        let rev = Revoker::with_targets(&cfg, vec![], T0).unwrap();
        assert_eq!(rev.handle(req(1, "app-a"), T0).await.decision.verdict, Verdict::Revoke);
        let before = std::fs::read(&state).unwrap();
        assert_eq!(rev.handle(req(2, "app-b"), T0 + 1).await.decision.verdict, Verdict::Revoke);
        // As if the process died after the second audit line, before its snapshot.
        std::fs::write(&state, before).unwrap();
    }
    let rev = Revoker::with_targets(&cfg, vec![], T0 + 10).unwrap();
    let r = rev.restored();
    assert!(r.snapshot);
    assert_eq!(r.decisions, 1, "only the decision after the snapshot is replayed: {r:?}");
    assert_eq!(rev.deny_list().snapshot(T0 + 10).len, 2);
    // Two of three used, not four: nothing was counted twice.
    assert_eq!(rev.handle(req(3, "app-c"), T0 + 11).await.decision.verdict, Verdict::Revoke);
    assert_eq!(rev.handle(req(4, "app-d"), T0 + 12).await.decision.verdict, Verdict::GlobalCap);
}

/// Item 7e: every refused decision was appended and read back at start (5,000 refusals,
/// 2.2 MB). Refusals are audited and counted by verdict, but the start does not read them.
#[tokio::test]
async fn refusals_are_audited_and_counted_but_not_read_back_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = capped(dir.path(), 1);
    cfg.never_revoke_clients = vec!["healthcheck".into()];
    const REFUSALS: u8 = 250;
    {
        let rev = Revoker::with_targets(&cfg, vec![], T0).unwrap();
        assert_eq!(rev.handle(req(0, "app-a"), T0).await.decision.verdict, Verdict::Revoke);
        for n in 1..=REFUSALS {
            let client = if n % 2 == 0 { "healthcheck" } else { "app-b" };
            assert_ne!(rev.handle(req(n, client), T0 + n as i64).await.decision.verdict, Verdict::Revoke);
        }
        let stats = rev.stats();
        assert_eq!(stats.get(&Verdict::AllowListed), Some(&(REFUSALS as u64 / 2)));
        assert_eq!(stats.get(&Verdict::GlobalCap), Some(&(REFUSALS as u64 / 2)));
    }
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 1 + REFUSALS as usize, "every refusal is audited");
    assert!(audit.len() > 100_000, "{} bytes of refusals", audit.len());
    let state = std::fs::read_to_string(dir.path().join("audit.state.json")).unwrap();
    assert!(!state.contains("allow_listed") && !state.contains("global_cap") && state.len() < 2_000, "{state}");

    let rev = Revoker::with_targets(&cfg, vec![], T0 + 1000).unwrap();
    let r = rev.restored();
    assert!(r.snapshot && r.decisions == 0, "{r:?}");
    assert!(r.audit_records < REFUSALS as usize / 2, "{} of {REFUSALS} refusals read back at start", r.audit_records);
    assert_eq!(rev.deny_list().snapshot(T0 + 1000).len, 1);
    assert_eq!(rev.handle(req(99, "app-z"), T0 + 1001).await.decision.verdict, Verdict::GlobalCap);
}

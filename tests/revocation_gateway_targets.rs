//! Gateway-native revocation targets (`[revocation.kong]`, `[revocation.tyk]`) against real
//! HTTP servers on 127.0.0.1: the method, the percent-encoded path and the credential header
//! each gateway receives; the calls never made (an unverified or missing consumer, no
//! credential id); failures audited with their attempts and without the secret; and config
//! errors named by their field.
#![allow(clippy::disallowed_methods)] // the audit log's `ts` is wall time; detection is not involved

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use gatewatch::actions::config::KongPlugin;
use gatewatch::actions::revocation::{RevocationRequest, Revoker, Verdict};
use gatewatch::actions::ActionsSettings;
use gatewatch::config::{ConfigError, GatewatchConfig};
use gatewatch::event::{ClientIdSource, Fingerprint, Severity};

const KONG_TOKEN: &str = "kong-rbac-token-0a1b2c";
const TYK_SECRET: &str = "tyk-gateway-secret-3d4e5f";
const T0: i64 = 1_800_000_000_000;

/// One request a fake gateway received.
#[derive(Clone, Debug)]
struct Call {
    method: Method,
    /// Path and query exactly as sent (still percent-encoded).
    target: String,
    kong_token: Option<String>,
    tyk_secret: Option<String>,
}

/// A gateway admin API that records every request and answers with `status`.
#[derive(Clone)]
struct FakeGateway {
    status: Arc<Mutex<StatusCode>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl FakeGateway {
    async fn start(status: StatusCode) -> (Self, std::net::SocketAddr) {
        let g = FakeGateway { status: Arc::new(Mutex::new(status)), calls: Arc::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(record).with_state(g.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (g, addr)
    }

    fn answer(&self, status: StatusCode) {
        *self.status.lock().unwrap() = status;
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

async fn record(State(g): State<FakeGateway>, method: Method, uri: Uri, headers: HeaderMap) -> StatusCode {
    let header = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
    g.calls.lock().unwrap().push(Call {
        method,
        target: uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default(),
        kong_token: header("kong-admin-token"),
        tyk_secret: header("x-tyk-authorization"),
    });
    *g.status.lock().unwrap()
}

fn env(k: &str) -> Option<String> {
    match k {
        "GW_TEST_KONG_TOKEN" => Some(KONG_TOKEN.into()),
        "GW_TEST_TYK_SECRET" => Some(TYK_SECRET.into()),
        "GW_TEST_NEWLINE_SECRET" => Some("multi\nline-secret".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<ActionsSettings, Vec<ConfigError>> {
    let table: toml::Table = toml::from_str(text).unwrap();
    let cfg = GatewatchConfig {
        other: table.into_iter().collect(),
        path: Some("/etc/gatewatch/gatewatch.toml".into()),
        ..GatewatchConfig::default()
    };
    ActionsSettings::from_config_with_env(&cfg, &env)
}

/// An enforcing revoker with the given target sections, its targets built from the config.
fn revoker(dir: &Path, targets: &str) -> Revoker {
    let s = parse(&format!(
        r#"
        [revocation]
        mode = "enforce"
        audit_log = "{dir}/audit.jsonl"
        max_per_hour = 20
        max_per_client_per_hour = 10
        max_attempts = 3
        initial_backoff = "10ms"
        timeout = "5s"
        {targets}
        "#,
        dir = dir.display()
    ))
    .expect("valid config");
    Revoker::open(&s.revocation.unwrap(), T0).unwrap()
}

fn req(n: u8, client: Option<(&str, ClientIdSource)>, credential: Option<&str>) -> RevocationRequest {
    RevocationRequest {
        fingerprint: Some(Fingerprint([0x6b, 0, 0, 0, 0, 0, 0, n])),
        credential_id: credential.map(Into::into),
        client_id: client.map(|c| c.0.to_string()),
        client_id_source: client.map(|c| c.1).unwrap_or_default(),
        address: None,
        ban_client: false,
        alert_id: format!("alert-{n}"),
        reason: "token used from 9 networks".into(),
        severity: Severity::High,
        source: "alert",
        force_dry_run: false,
    }
}

/// The `event = "target"` lines: (target, alert, result, attempts, detail).
fn target_lines(dir: &Path) -> Vec<(String, String, String, u64, String)> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "target")
        .map(|r| {
            (
                r["target"].as_str().unwrap().to_string(),
                r["alert_id"].as_str().unwrap().to_string(),
                r["result"].as_str().unwrap().to_string(),
                r["attempts"].as_u64().unwrap(),
                r["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn summary(lines: &[(String, String, String, u64, String)]) -> Vec<(&str, &str, &str, u64)> {
    lines.iter().map(|(t, a, r, n, _)| (t.as_str(), a.as_str(), r.as_str(), *n)).collect()
}

#[tokio::test]
async fn kong_deletes_the_verified_consumers_credential_and_never_guesses() {
    let (kong, addr) = FakeGateway::start(StatusCode::NO_CONTENT).await;
    let dir = tempfile::tempdir().unwrap();
    let r = revoker(
        dir.path(),
        &format!(
            r#"[revocation.kong]
            admin_url = "http://{addr}/"
            token_env = "GW_TEST_KONG_TOKEN"
            plugin = "key-auth"
            workspace = "team a""#
        ),
    );
    let gw = ClientIdSource::Gateway;
    // An awkward consumer and credential: a slash, dot segments, a space, a non-ASCII
    // letter, `%`, `?` and `#` must all stay inside their own path segment.
    let out = r.handle(req(1, Some(("ops/../admin ü%2F", gw)), Some("4f1c?x=1#y")), T0).await;
    assert_eq!((out.decision.verdict, out.target_failures), (Verdict::Revoke, 0));
    // A client the token only claims: never used as the consumer.
    r.handle(req(2, Some(("app-claimed", ClientIdSource::Claimed)), Some("cred-2")), T0 + 1).await;
    // A verified consumer but no credential id (the token was fingerprinted only).
    r.handle(req(3, Some(("c-3", gw)), None), T0 + 2).await;
    // gatewatch's own name for an API key is no Kong consumer.
    let key_client = format!("key:{}", Fingerprint([0x6b, 0, 0, 0, 0, 0, 0, 4]).to_hex());
    r.handle(req(4, Some((&key_client, ClientIdSource::ApiKey)), Some("cred-4")), T0 + 3).await;
    // Already deleted: 404 is success.
    kong.answer(StatusCode::NOT_FOUND);
    let out = r.handle(req(5, Some(("c-5", gw)), Some("cred-5")), T0 + 4).await;
    assert_eq!((out.decision.verdict, out.target_failures), (Verdict::Revoke, 0));

    let calls = kong.calls();
    let seen: Vec<(&Method, &str)> = calls.iter().map(|c| (&c.method, c.target.as_str())).collect();
    assert_eq!(
        seen,
        [
            (&Method::DELETE, "/team%20a/consumers/ops%2F%2E%2E%2Fadmin%20%C3%BC%252F/key-auth/4f1c%3Fx%3D1%23y"),
            (&Method::DELETE, "/team%20a/consumers/c-5/key-auth/cred-5"),
        ]
    );
    assert!(calls.iter().all(|c| c.kong_token.as_deref() == Some(KONG_TOKEN) && c.tyk_secret.is_none()));

    let lines = target_lines(dir.path());
    assert_eq!(
        summary(&lines),
        [
            ("kong", "alert-1", "ok", 1),
            ("kong", "alert-2", "skipped", 1),
            ("kong", "alert-3", "skipped", 1),
            ("kong", "alert-4", "skipped", 1),
            ("kong", "alert-5", "ok", 1),
        ]
    );
    assert!(lines[1].4.contains("unverified"), "{}", lines[1].4);
    assert!(lines[2].4.contains("no credential id"), "{}", lines[2].4);
    assert!(lines[3].4.contains("API key"), "{}", lines[3].4);
}

#[tokio::test]
async fn tyk_deletes_the_key_by_hash_with_the_gateway_secret() {
    let (tyk, addr) = FakeGateway::start(StatusCode::OK).await;
    let dir = tempfile::tempdir().unwrap();
    let r = revoker(
        dir.path(),
        &format!("[revocation.tyk]\ngateway_url = \"http://{addr}\"\nsecret_env = \"GW_TEST_TYK_SECRET\"\n"),
    );
    let gw = Some(("portal-app", ClientIdSource::Gateway));
    assert_eq!(r.handle(req(1, gw, Some("5a1e9c0d2b3f4a6e")), T0).await.target_failures, 0);
    // No credential id: nothing to delete, nothing sent.
    r.handle(req(2, gw, None), T0 + 1).await;
    tyk.answer(StatusCode::NOT_FOUND);
    assert_eq!(r.handle(req(3, gw, Some("org1/k=+")), T0 + 2).await.target_failures, 0);

    // `hashed = false`: the key id as it is, and no `hashed` parameter at all.
    let dir2 = tempfile::tempdir().unwrap();
    let r2 = revoker(
        dir2.path(),
        &format!(
            "[revocation.tyk]\ngateway_url = \"http://{addr}/\"\nsecret_env = \"GW_TEST_TYK_SECRET\"\nhashed = false\n"
        ),
    );
    tyk.answer(StatusCode::OK);
    assert_eq!(r2.handle(req(4, gw, Some("key-4")), T0).await.target_failures, 0);

    let calls = tyk.calls();
    let seen: Vec<(&Method, &str)> = calls.iter().map(|c| (&c.method, c.target.as_str())).collect();
    assert_eq!(
        seen,
        [
            (&Method::DELETE, "/tyk/keys/5a1e9c0d2b3f4a6e?hashed=true"),
            (&Method::DELETE, "/tyk/keys/org1%2Fk%3D%2B?hashed=true"),
            (&Method::DELETE, "/tyk/keys/key-4"),
        ]
    );
    assert!(calls.iter().all(|c| c.tyk_secret.as_deref() == Some(TYK_SECRET) && c.kong_token.is_none()));
    let lines = target_lines(dir.path());
    assert_eq!(
        summary(&lines),
        [("tyk", "alert-1", "ok", 1), ("tyk", "alert-2", "skipped", 1), ("tyk", "alert-3", "ok", 1)]
    );
    assert!(lines[1].4.contains("no credential id"), "{}", lines[1].4);
    assert_eq!(summary(&target_lines(dir2.path())), [("tyk", "alert-4", "ok", 1)]);
}

#[tokio::test]
async fn refused_credentials_fail_at_once_outages_are_retried_and_no_secret_leaks() {
    let (gw, addr) = FakeGateway::start(StatusCode::UNAUTHORIZED).await;
    let dir = tempfile::tempdir().unwrap();
    let r = revoker(
        dir.path(),
        &format!(
            r#"[revocation.kong]
            admin_url = "http://{addr}"
            token_env = "GW_TEST_KONG_TOKEN"
            plugin = "jwt"
            [revocation.tyk]
            gateway_url = "http://{addr}"
            secret_env = "GW_TEST_TYK_SECRET""#
        ),
    );
    let client = Some(("c-1", ClientIdSource::Gateway));
    // 401: the credentials are wrong; retrying cannot help, so one attempt each.
    let out = r.handle(req(1, client, Some("cred-1")), T0).await;
    assert_eq!((out.decision.verdict, out.target_failures), (Verdict::Revoke, 2));
    assert_eq!(gw.calls().len(), 2, "one call per target, no retry of a 401");
    // 503: an outage; retried up to max_attempts = 3.
    gw.answer(StatusCode::SERVICE_UNAVAILABLE);
    let out = r.handle(req(2, client, Some("cred-2")), T0 + 1).await;
    assert_eq!(out.target_failures, 2);

    let calls = gw.calls();
    let targets: Vec<&str> = calls.iter().map(|c| c.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/consumers/c-1/jwt/cred-1",
            "/tyk/keys/cred-1?hashed=true",
            "/consumers/c-1/jwt/cred-2",
            "/consumers/c-1/jwt/cred-2",
            "/consumers/c-1/jwt/cred-2",
            "/tyk/keys/cred-2?hashed=true",
            "/tyk/keys/cred-2?hashed=true",
            "/tyk/keys/cred-2?hashed=true",
        ]
    );
    // The secrets were sent, and only to their own gateway...
    assert!(calls
        .iter()
        .filter(|c| c.target.starts_with("/consumers/"))
        .all(|c| { c.kong_token.as_deref() == Some(KONG_TOKEN) && c.tyk_secret.is_none() }));
    assert!(calls
        .iter()
        .filter(|c| c.target.starts_with("/tyk/"))
        .all(|c| { c.tyk_secret.as_deref() == Some(TYK_SECRET) && c.kong_token.is_none() }));

    let lines = target_lines(dir.path());
    assert_eq!(
        summary(&lines),
        [
            ("kong", "alert-1", "failed", 1),
            ("tyk", "alert-1", "failed", 1),
            ("kong", "alert-2", "failed", 3),
            ("tyk", "alert-2", "failed", 3),
        ]
    );
    assert!(lines[0].4.starts_with("HTTP 401") && lines[0].4.contains("token_env"), "{}", lines[0].4);
    assert!(lines[1].4.starts_with("HTTP 401") && lines[1].4.contains("secret_env"), "{}", lines[1].4);
    assert_eq!((lines[2].4.as_str(), lines[3].4.as_str()), ("HTTP 503", "HTTP 503"));
    // ...and are nowhere in the audit log, the errors in it, or the config's Debug.
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let debug = format!("{:?}", r.config());
    for secret in [KONG_TOKEN, TYK_SECRET] {
        assert!(!audit.contains(secret), "{secret} in the audit log");
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn every_config_error_is_reported_with_its_field() {
    let fields = |text: &str| -> Vec<(String, String)> {
        let errs = parse(text).expect_err("invalid config");
        assert!(errs.iter().all(|e| e.file == Path::new("/etc/gatewatch/gatewatch.toml")));
        errs.into_iter().map(|e| (e.field, e.message)).collect()
    };
    let errs = fields(
        r#"
        [revocation]
        [revocation.kong]
        token_env = "GW_TEST_UNSET_TOKEN"
        plugin = "ldap-auth"
        workspace = ".."
        [revocation.tyk]
        gateway_url = "http://tyk:8080/?x=1"
        "#,
    );
    let find = |errs: &[(String, String)], f: &str| {
        errs.iter()
            .find(|(field, _)| field == f)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("no {f} in {errs:?}"))
    };
    assert_eq!(find(&errs, "revocation.kong.admin_url"), "is required");
    let plugin = find(&errs, "revocation.kong.plugin");
    assert!(plugin.contains("ldap-auth") && plugin.contains("key-auth") && plugin.contains("hmac-auth"), "{plugin}");
    assert!(find(&errs, "revocation.kong.token_env").contains("`GW_TEST_UNSET_TOKEN` is not set"));
    find(&errs, "revocation.kong.workspace");
    assert!(find(&errs, "revocation.tyk.gateway_url").contains("without a query"));
    assert_eq!(find(&errs, "revocation.tyk.secret_env"), "is required");
    assert_eq!(errs.len(), 6, "{errs:?}");

    let errs = fields(
        r#"
        [revocation.kong]
        admin_url = "ftp://kong:8001"
        plugin = "jwt"
        token_env = "GW_TEST_NEWLINE_SECRET"
        [revocation.tyk]
        gateway_url = "http://tyk:8080"
        secret_env = "GW_TEST_UNSET_SECRET"
        hashed = "yes"
        "#,
    );
    assert!(find(&errs, "revocation.kong.admin_url").contains("http:// or https://"));
    let newline = find(&errs, "revocation.kong.token_env");
    assert!(newline.contains("GW_TEST_NEWLINE_SECRET") && !newline.contains("line-secret"), "{newline}");
    // A field of the wrong type or an unknown field stops that section at its own path.
    find(&errs, "revocation.tyk");
    let errs = fields("[revocation.tyk]\ngateway_url = \"http://tyk\"\nsecret_env = \"GW_TEST_UNSET_SECRET\"\n");
    assert!(find(&errs, "revocation.tyk.secret_env").contains("`GW_TEST_UNSET_SECRET` is not set"));
    let errs = fields("[revocation.kong]\nadmin_url = \"http://kong\"\nplugins = \"jwt\"\n");
    assert!(find(&errs, "revocation.kong").contains("plugins"));

    // Every plugin Kong names, and nothing else.
    for (name, plugin) in [
        ("jwt", KongPlugin::Jwt),
        ("key-auth", KongPlugin::KeyAuth),
        ("oauth2", KongPlugin::Oauth2),
        ("basic-auth", KongPlugin::BasicAuth),
        ("hmac-auth", KongPlugin::HmacAuth),
    ] {
        let s = parse(&format!("[revocation.kong]\nadmin_url = \"http://kong:8001/\"\nplugin = \"{name}\"\n")).unwrap();
        let k = s.revocation.unwrap().kong.unwrap();
        assert_eq!((k.plugin, k.plugin.as_str(), k.admin_url.as_str()), (plugin, name, "http://kong:8001"));
        assert!(k.token.is_none() && k.workspace.is_none());
    }
    let t = parse("[revocation.tyk]\ngateway_url = \"http://tyk\"\nsecret_env = \"GW_TEST_TYK_SECRET\"\n").unwrap();
    assert!(t.revocation.unwrap().tyk.unwrap().hashed, "hashed by default");
}

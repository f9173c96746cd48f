//! The admin HTTP API (axum). This module holds the revocation endpoints and the bearer
//! auth of everything under `/api/`; `/metrics`, `/healthz` and `/readyz` are mounted
//! beside [`router`] by the telemetry side (`Router::merge`) and stay open to the scraper.
//! [`serve`] ([`listener`]) is the server all of them run on, with the `[admin]` timeouts
//! and connection cap.
//!
//! - `GET /api/v1/revocations`: the deny-list, with `ETag` / `If-None-Match`.
//! - `GET /api/v1/rules`: the rules in force (detector files and Sigma rules) and whether
//!   the last reload was refused, with its errors.
//! - `POST /api/v1/alertmanager`: an Alertmanager webhook receiver; a firing alert whose
//!   labels name a token fingerprint (or credential id) and client asks for a revocation,
//!   through the same safety checks as a detector's `revoke`.

pub mod crowdsec;
pub mod entities;
pub mod forward_auth;
pub mod history;
pub mod listener;
pub mod ui;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::actions::revocation::{RevocationRequest, Revoker};
use crate::actions::secret::{constant_time_eq, Secret};
use crate::event::{ClientIdSource, Fingerprint, Millis, Severity};

pub use listener::serve;

/// Wall clock in milliseconds; injectable for tests.
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

#[derive(Clone)]
pub struct AdminState {
    /// Bearer token for `/api/`; `None`: every `/api/` request is refused.
    pub token: Option<Secret>,
    /// `None` when `[revocation]` is not configured: the endpoints answer 503.
    pub revoker: Option<Arc<Revoker>>,
    pub clock: Clock,
    /// The rule sets in force; `None`: `/api/v1/rules` answers 503.
    pub rules: Option<Arc<crate::engine::PipelineFactory>>,
    /// The forward-auth endpoint (`/v1/forward-auth`), when revocation is configured.
    pub forward_auth: Option<Arc<forward_auth::ForwardAuth>>,
    /// The CrowdSec decisions endpoints, when revocation and bouncers are configured.
    pub crowdsec: Option<Arc<crowdsec::CrowdSec>>,
    /// The recent alerts (`/api/v1/alerts`); `None`: those routes answer 503.
    pub history: Option<Arc<history::AlertHistory>>,
    /// The sinks, for `POST /api/v1/sinks/{name}/test`; `None` without `[actions]`.
    pub dispatcher: Option<Arc<crate::actions::Dispatcher>>,
    /// The rules' state, for `/api/v1/entities/{kind}/{id}`; `None`: that route answers 503.
    pub entities: Option<Arc<entities::Entities>>,
}

impl AdminState {
    pub fn new(token: Option<Secret>, revoker: Option<Arc<Revoker>>) -> Self {
        AdminState {
            token,
            revoker,
            clock: Arc::new(|| chrono::Utc::now().timestamp_millis()),
            rules: None,
            forward_auth: None,
            crowdsec: None,
            history: None,
            dispatcher: None,
            entities: None,
        }
    }

    /// Serves `/api/v1/entities/{kind}/{id}` from the sources attached to `entities`.
    pub fn with_entities(mut self, entities: Arc<entities::Entities>) -> Self {
        self.entities = Some(entities);
        self
    }

    /// Serves `POST /api/v1/sinks/{name}/test` through `dispatcher`.
    pub fn with_dispatcher(mut self, dispatcher: Arc<crate::actions::Dispatcher>) -> Self {
        self.dispatcher = Some(dispatcher);
        self
    }

    /// Serves `/api/v1/alerts` from `history`.
    pub fn with_history(mut self, history: Arc<history::AlertHistory>) -> Self {
        self.history = Some(history);
        self
    }

    /// Serves the CrowdSec decisions endpoints (`/v1/decisions...`).
    pub fn with_crowdsec(mut self, cs: Arc<crowdsec::CrowdSec>) -> Self {
        self.crowdsec = Some(cs);
        self
    }

    /// Serves `/v1/forward-auth` from the revoker's deny-list.
    pub fn with_forward_auth(mut self, fa: Arc<forward_auth::ForwardAuth>) -> Self {
        self.forward_auth = Some(fa);
        self
    }

    /// Serves `/api/v1/rules` from `factory`.
    pub fn with_rules(mut self, factory: Arc<crate::engine::PipelineFactory>) -> Self {
        self.rules = Some(factory);
        self
    }
}

/// The `/api/` routes, all behind the bearer token.
pub fn router(state: AdminState) -> Router {
    // Gateways ask before they proxy: outside `/api/`, no bearer token (see `forward_auth`).
    let gateways = match &state.forward_auth {
        Some(fa) => Router::new()
            .route("/v1/forward-auth", any(forward_auth::handle))
            .route("/v1/forward-auth/{*rest}", any(forward_auth::handle))
            .with_state((fa.clone(), state.clock.clone())),
        None => Router::new(),
    };
    // Bouncers authenticate with their own `X-Api-Key` (see `crowdsec`).
    let bouncers = match &state.crowdsec {
        Some(cs) => Router::new()
            .route("/v1/decisions/stream", get(crowdsec::stream))
            .route("/v1/decisions", get(crowdsec::decisions))
            .with_state((cs.clone(), state.clock.clone())),
        None => Router::new(),
    };
    Router::new()
        .route("/api/v1/revocations", get(get_revocations))
        .route("/api/v1/alertmanager", post(post_alertmanager))
        .route("/api/v1/rules", get(get_rules))
        .route("/api/v1/detectors", get(get_rules))
        .route("/api/v1/alerts", get(get_alerts))
        .route("/api/v1/alerts/{id}", get(get_alert))
        .route("/api/v1/entities/{kind}/{*id}", get(get_entity))
        .route("/api/v1/sinks/{name}/test", post(post_sink_test))
        // Unknown API paths need the token too before they learn they do not exist.
        .route("/api/{*rest}", any(|| async { StatusCode::NOT_FOUND }))
        .layer(middleware::from_fn_with_state(state.clone(), require_bearer))
        .with_state(state)
        .merge(gateways)
        .merge(bouncers)
        .merge(ui::router())
}

async fn require_bearer(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    let Some(token) = &st.token else {
        return unauthorized("the admin API has no token configured ([admin] token_env)");
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match presented {
        Some(p) if constant_time_eq(p.trim().as_bytes(), token.expose().as_bytes()) => next.run(req).await,
        _ => unauthorized("a valid bearer token is required"),
    }
}

fn unauthorized(msg: &str) -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Json(json!({ "error": msg }))).into_response()
}

fn not_configured() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "revocation is not configured ([revocation])" })))
        .into_response()
}

async fn get_revocations(State(st): State<AdminState>, headers: HeaderMap) -> Response {
    let Some(rev) = &st.revoker else { return not_configured() };
    let snap = rev.deny_list().snapshot((st.clock)());
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == snap.etag || t.trim() == "*"));
    let mut resp = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = Response::new(Body::from(snap.body));
        r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
        r
    };
    if let Ok(v) = header::HeaderValue::from_str(&snap.etag) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    resp
}

fn no_history() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "no alert history in this process" }))).into_response()
}

/// `GET /api/v1/alerts?detector=&rule=&severity=&entity_kind=&entity_id=&since=&until=&limit=&before=`:
/// the recent alerts, newest first, a page at a time.
async fn get_alerts(
    State(st): State<AdminState>,
    q: Result<axum::extract::Query<history::Filter>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(h) = &st.history else { return no_history() };
    let Ok(axum::extract::Query(f)) = q else {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "unknown or malformed query parameter (detector, rule, severity, entity_kind, entity_id, since, until, limit, before)" }))).into_response();
    };
    match h.query(&f) {
        Ok(page) => Json(page).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
    }
}

/// `GET /api/v1/alerts/{id}`: one alert, while it is kept.
async fn get_alert(State(st): State<AdminState>, axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    let Some(h) = &st.history else { return no_history() };
    match h.get(&id) {
        Some(a) => Json(a).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": "no such alert (or no longer kept)" }))).into_response(),
    }
}

/// `GET /api/v1/entities/{kind}/{id}`: what each rule holds about the entity now (per
/// partition), and its recent alerts. The id is everything after the kind (a route's `/`s
/// need no escaping). 404 when nothing is held and no alert is kept.
async fn get_entity(
    State(st): State<AdminState>,
    axum::extract::Path((kind, id)): axum::extract::Path<(String, String)>,
) -> Response {
    let Some(ents) = st.entities.clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "no detection in this process" })))
            .into_response();
    };
    let Some(kind) = crate::event::EntityKind::parse(&kind) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "the entity kind is one of client_id, source_ip, token, route" })),
        )
            .into_response();
    };
    let entity = crate::event::Entity::new(kind, id);
    let asked = entity.clone();
    // The partitions answer between messages, under their lock: not on the runtime's threads.
    let state = match tokio::task::spawn_blocking(move || ents.describe(&asked)).await {
        Ok(s) => s,
        Err(_) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": "the state could not be read" })))
                .into_response()
        }
    };
    let alerts = st
        .history
        .as_ref()
        .and_then(|h| {
            h.query(&history::Filter {
                entity_kind: Some(entity.kind.as_str().into()),
                entity_id: Some(entity.id.clone()),
                limit: Some(20),
                ..Default::default()
            })
            .ok()
        })
        .map(|p| p.alerts)
        .unwrap_or_default();
    let body = json!({ "entity": entity, "state": state, "alerts": alerts });
    if state_is_empty(&body) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "gatewatch holds nothing about this entity", "entity": body["entity"] })),
        )
            .into_response();
    }
    Json(body).into_response()
}

fn state_is_empty(body: &serde_json::Value) -> bool {
    body["state"].as_array().is_none_or(|s| s.is_empty()) && body["alerts"].as_array().is_none_or(|a| a.is_empty())
}

/// `POST /api/v1/sinks/{name}/test`: a test notification (detector `test`, severity `info`)
/// through the real path of the sink named (`webhook:secops`): its queue, retries, rate limit
/// and breaker. 202 once queued, with the test alert's id; 404 for an unknown sink.
async fn post_sink_test(
    State(st): State<AdminState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    let Some(d) = &st.dispatcher else {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "no sinks configured ([actions])" })))
            .into_response();
    };
    let now = (st.clock)();
    let entity = crate::event::Entity { kind: crate::event::EntityKind::Route, id: "gatewatch/test".into() };
    let alert = crate::event::Alert {
        id: crate::event::Alert::make_id("sink-test", &entity, now),
        detector: "test".into(),
        rule: "sink-test".into(),
        severity: Severity::Info,
        entity,
        client_id: None,
        client_id_source: ClientIdSource::Claimed,
        token_fingerprint: None,
        window_start: now,
        window_end: now,
        summary: format!("gatewatch test notification for {name}"),
        evidence: Default::default(),
        actions: vec![name.clone()],
    };
    match d.enqueue_for(&name, &crate::actions::Notification::firing(alert.clone())) {
        Ok(()) => {
            (StatusCode::ACCEPTED, Json(json!({ "queued": true, "sink": name, "alert_id": alert.id }))).into_response()
        }
        Err(e) if e.to_string().contains("no sink named") => {
            (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no sink named `{name}`") }))).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": e.to_string() }))).into_response(),
    }
}

async fn get_rules(State(st): State<AdminState>) -> Response {
    let Some(f) = &st.rules else {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "no rule set in this process" })))
            .into_response();
    };
    let rules: Vec<serde_json::Value> = f
        .live()
        .files()
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "kind": r.kind, "severity": r.severity.as_str(), "description": r.description,
                "file": r.path.display().to_string(), "actions": r.actions,
            })
        })
        .collect();
    let refusal = f.last_refusal();
    Json(json!({
        "rules": rules,
        "last_reload": { "ok": refusal.is_none(), "errors": refusal.unwrap_or_default() },
    }))
    .into_response()
}

/// Alertmanager's webhook payload (version 4), the parts we read.
#[derive(Deserialize)]
struct AmWebhook {
    alerts: Vec<AmAlert>,
}

#[derive(Deserialize)]
struct AmAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    fingerprint: String,
}

async fn post_alertmanager(State(st): State<AdminState>, body: axum::body::Bytes) -> Response {
    let Some(rev) = &st.revoker else { return not_configured() };
    let payload: AmWebhook = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": format!("not an Alertmanager webhook payload: {e}") })),
            )
                .into_response()
        }
    };
    // The revocations run in a task of their own: a request timeout or a client that hangs
    // up drops this handler, and must not cut a revocation between its audit record and its
    // target calls (a retry would find it `already_revoked` and never call the targets).
    let work = tokio::spawn(handle_am_alerts(rev.clone(), payload.alerts, (st.clock)()));
    match work.await {
        Ok(results) => (StatusCode::OK, Json(json!({ "results": results }))).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "alertmanager receiver: the revocation task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": "the revocation task failed" }))).into_response()
        }
    }
}

/// One verdict per alert of an Alertmanager payload.
async fn handle_am_alerts(rev: Arc<Revoker>, alerts: Vec<AmAlert>, now: Millis) -> Vec<serde_json::Value> {
    let cfg = rev.config();
    let mut results = Vec::new();
    for a in alerts {
        let alertname = a.labels.get("alertname").cloned().unwrap_or_default();
        if a.status != "firing" {
            results.push(
                json!({ "alertname": alertname, "verdict": "ignored", "detail": format!("status {}", a.status) }),
            );
            continue;
        }
        let fp_label = a.labels.get(&cfg.alertmanager_fingerprint_label);
        let fingerprint = fp_label.and_then(|f| Fingerprint::from_hex(&f.to_ascii_lowercase()));
        if fp_label.is_some() && fingerprint.is_none() {
            results.push(json!({
                "alertname": alertname, "verdict": "invalid",
                "detail": format!("label `{}` is not a token fingerprint (16 hex digits)", cfg.alertmanager_fingerprint_label),
            }));
            continue;
        }
        let severity = a
            .labels
            .get("severity")
            .and_then(|s| serde_json::from_value::<Severity>(json!(s.to_ascii_lowercase())).ok())
            .unwrap_or(Severity::High);
        let alert_id = if a.fingerprint.is_empty() {
            let mut h = Vec::new();
            for (k, v) in &a.labels {
                h.extend_from_slice(k.as_bytes());
                h.push(0);
                h.extend_from_slice(v.as_bytes());
                h.push(0);
            }
            use sha2::{Digest, Sha256};
            format!("am:{}", crate::actions::secret::hex(&Sha256::digest(&h)[..8]))
        } else {
            format!("am:{}", a.fingerprint)
        };
        let summary =
            a.annotations.get("summary").or_else(|| a.annotations.get("description")).cloned().unwrap_or_default();
        let req = RevocationRequest {
            fingerprint,
            credential_id: a.labels.get(&cfg.alertmanager_credential_label).cloned(),
            client_id: a.labels.get(&cfg.alertmanager_client_label).cloned(),
            // A label says nothing of where its value came from (gatewatch's own Alertmanager
            // sink passes on clients that tokens merely claim): never acted on by client.
            client_id_source: ClientIdSource::Claimed,
            address: None,
            ban_client: false,
            alert_id: alert_id.clone(),
            reason: format!("alertmanager {alertname}: {summary}"),
            severity,
            source: "alertmanager",
            force_dry_run: false,
        };
        let out = rev.handle(req, now).await;
        results.push(json!({
            "alertname": alertname,
            "alert_id": alert_id,
            "verdict": out.decision.verdict.as_str(),
            "dry_run": out.decision.dry_run,
            "detail": out.decision.detail,
            "target_failures": out.target_failures,
        }));
    }
    results
}

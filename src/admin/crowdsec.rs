//! The CrowdSec Local API's decisions endpoints, so every stock CrowdSec bouncer (NGINX and
//! OpenResty, Traefik, HAProxy, the firewall bouncers, Cloudflare, the custom bouncer)
//! enforces gatewatch's address bans with no code of its own.
//!
//! - `GET|HEAD /v1/decisions/stream?startup=true|false[&scopes=ip,range]`: `{"new": [...],
//!   "deleted": [...]}`. Each bouncer (known by its `X-Api-Key`) has its own cursor: what it
//!   was last told is active. `startup=true` starts it afresh with every active decision.
//! - `GET /v1/decisions?ip=…` (or `range=`, `scope=&value=`): the active decisions covering it,
//!   or `null`, for bouncers in live mode.
//!
//! Decisions are shaped as the LAPI shapes them: `id`, `origin` (`gatewatch`), `type` (`ban`),
//! `scope` (`Ip` or `Range`), `value`, `duration` (time left), `scenario`, `simulated`.
//! Bans come from the revoker's deny-list (the `ban` action, after its allow-list, caps and
//! audit). Token revocations are offered under the custom scope `gatewatch/token` (value: the
//! fingerprint) to a bouncer that asks for that scope; stock bouncers act on `Ip` and `Range`.
//! A wrong or missing key gets 403 and is counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::Clock;
use crate::actions::revocation::{DenyEntry, DenyList};
use crate::actions::secret::{constant_time_eq, Secret};
use crate::event::Millis;
use crate::telemetry::labels::CrowdsecResult;

/// The custom scope token revocations are offered under.
pub const TOKEN_SCOPE: &str = "gatewatch/token";
/// The custom scope client bans are offered under.
pub const CLIENT_SCOPE: &str = "gatewatch/client";

pub struct CrowdSec {
    deny: Arc<DenyList>,
    bouncers: Vec<(String, Secret)>,
    /// Per bouncer: decision id → the decision as it was last sent.
    told: Mutex<HashMap<String, BTreeMap<u64, Value>>>,
    /// Requests by result (`ok`, `forbidden`).
    requests: prometheus::IntCounterVec,
}

impl CrowdSec {
    pub fn new(deny: Arc<DenyList>, bouncers: Vec<(String, Secret)>, requests: prometheus::IntCounterVec) -> Self {
        for r in CrowdsecResult::ALL {
            requests.with_label_values(&[r.as_str()]);
        }
        CrowdSec { deny, bouncers, told: Mutex::new(HashMap::new()), requests }
    }

    fn bouncer(&self, headers: &HeaderMap) -> Option<&str> {
        let key = headers.get("x-api-key")?.to_str().ok()?.trim();
        self.bouncers
            .iter()
            .find(|(_, k)| constant_time_eq(key.as_bytes(), k.expose().as_bytes()))
            .map(|(n, _)| n.as_str())
    }
}

/// A decision's id: stable for one entry (its key and when it was taken), below 2^52 so every
/// JSON reader keeps it exact.
fn decision_id(e: &DenyEntry) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("{}\u{0}{}", e.key(), e.revoked_at).as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) >> 12
}

/// `59m58s`-style time left, as Go's `time.ParseDuration` reads it.
fn go_duration(ms: Millis) -> String {
    let s = ms.max(0) / 1000;
    format!("{}h{}m{}s", s / 3600, (s % 3600) / 60, s % 60)
}

/// `entry` as the LAPI shapes a decision, if a bouncer asking for `scopes` acts on it.
fn decision(e: &DenyEntry, now: Millis, scopes: &[String]) -> Option<Value> {
    let (scope, value) = match (&e.address, &e.fingerprint) {
        (Some(a), _) if a.contains('/') => ("Range", a.clone()),
        (Some(a), _) => ("Ip", a.clone()),
        (None, Some(fp)) => (TOKEN_SCOPE, fp.clone()),
        (None, None) if e.is_ban() && e.client_id.is_some() => (CLIENT_SCOPE, e.client_id.clone().unwrap_or_default()),
        _ => return None,
    };
    if !scopes.iter().any(|s| s.eq_ignore_ascii_case(scope)) {
        return None;
    }
    // `auth_failure_spike (auth-failure-default): …`: the detector and rule name the scenario.
    let scenario = e.reason.split(':').next().unwrap_or("alert").trim();
    let left = e.expires_at.map_or(365 * 24 * 3_600_000, |x| x - now);
    Some(json!({
        "id": decision_id(e),
        "origin": "gatewatch",
        "type": "ban",
        "scope": scope,
        "value": value,
        "duration": go_duration(left),
        "scenario": format!("gatewatch/{scenario}"),
        "simulated": false,
    }))
}

fn scopes_of(q: &HashMap<String, String>) -> Vec<String> {
    q.get("scopes").map_or_else(
        || vec!["Ip".into(), "Range".into()],
        |s| s.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect(),
    )
}

fn forbidden(cs: &CrowdSec) -> Response {
    cs.requests.with_label_values(&[CrowdsecResult::Forbidden.as_str()]).inc();
    (StatusCode::FORBIDDEN, Json(json!({ "message": "access forbidden" }))).into_response()
}

type St = State<(Arc<CrowdSec>, Clock)>;

pub async fn stream(
    State((cs, clock)): St,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(bouncer) = cs.bouncer(&headers).map(str::to_string) else { return forbidden(&cs) };
    cs.requests.with_label_values(&[CrowdsecResult::Ok.as_str()]).inc();
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    let now = clock();
    let scopes = scopes_of(&q);
    let active: BTreeMap<u64, Value> =
        cs.deny.active(now).iter().filter_map(|e| decision(e, now, &scopes).map(|d| (decision_id(e), d))).collect();
    let startup = q.get("startup").is_some_and(|v| v == "true");
    let Ok(mut told) = cs.told.lock() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let before = if startup { BTreeMap::new() } else { told.remove(&bouncer).unwrap_or_default() };
    let new: Vec<&Value> = active.iter().filter(|(id, _)| !before.contains_key(id)).map(|(_, d)| d).collect();
    let deleted: Vec<Value> = before
        .iter()
        .filter(|(id, _)| !active.contains_key(id))
        .map(|(_, d)| {
            let mut d = d.clone();
            d["duration"] = "0h0m0s".into();
            d
        })
        .collect();
    let body = json!({ "new": new, "deleted": deleted });
    told.insert(bouncer, active);
    Json(body).into_response()
}

pub async fn decisions(
    State((cs, clock)): St,
    method: Method,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if cs.bouncer(&headers).is_none() {
        return forbidden(&cs);
    }
    cs.requests.with_label_values(&[CrowdsecResult::Ok.as_str()]).inc();
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    let now = clock();
    let wanted = q.get("ip").or(q.get("range")).or(q.get("value"));
    let Some(wanted) = wanted else { return Json(Value::Null).into_response() };
    let scopes = vec!["Ip".to_string(), "Range".to_string(), TOKEN_SCOPE.to_string()];
    let hits: Vec<Value> = match wanted.parse::<std::net::IpAddr>() {
        Ok(ip) => cs.deny.bans(ip, now).into_iter().filter_map(|e| decision(&e, now, &scopes)).collect(),
        Err(_) => cs
            .deny
            .active(now)
            .iter()
            .filter(|e| {
                e.fingerprint.as_deref() == Some(wanted.as_str()) || e.address.as_deref() == Some(wanted.as_str())
            })
            .filter_map(|e| decision(e, now, &scopes))
            .collect(),
    };
    // The LAPI answers `null`, not `[]`, when nothing matches; bouncers expect that.
    if hits.is_empty() {
        Json(Value::Null).into_response()
    } else {
        Json(hits).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_have_the_lapi_shape() {
        let e = DenyEntry {
            fingerprint: None,
            credential_id: None,
            address: Some("203.0.113.7".into()),
            client_id: None,
            claimed_client_id: None,
            reason: "auth_failure_spike (auth-failure-default): 40 failures in 5m".into(),
            alert_id: "a".into(),
            revoked_at: 1_000,
            expires_at: Some(1_000 + 3_600_000),
        };
        let d = decision(&e, 2_000, &["ip".into(), "range".into()]).unwrap();
        assert_eq!(d["scope"], "Ip");
        assert_eq!(d["value"], "203.0.113.7");
        assert_eq!(d["type"], "ban");
        assert_eq!(d["duration"], "0h59m59s");
        assert_eq!(d["scenario"], "gatewatch/auth_failure_spike (auth-failure-default)");
        assert!(d["id"].as_u64().unwrap() < 1 << 52);
        assert!(decision(&e, 2_000, &[TOKEN_SCOPE.into()]).is_none(), "a bouncer gets the scopes it asks for");
        let range = DenyEntry { address: Some("203.0.113.0/24".into()), ..e };
        assert_eq!(decision(&range, 2_000, &["Range".into()]).unwrap()["scope"], "Range");
    }
}

//! Prometheus Alertmanager sink: `POST {url}/api/v2/alerts`, so teams that route alerts
//! there keep doing so. Alertmanager groups, silences and inhibits by labels; the alert id,
//! summary, count and runbook go in annotations.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::SinkKind;
use crate::actions::config::Parser;
use crate::actions::lifecycle::{Notification, Status};
use crate::actions::secret::{redact_url, Secret};
use crate::actions::sink::{retry_after, SendFuture, Sink, SinkError};
use crate::event::format_ts;

/// `[actions.alertmanager.NAME]`, parsed.
#[derive(Clone)]
pub struct AlertmanagerConfig {
    /// Base URL; alerts go to `{url}/api/v2/alerts`. `Debug` shows its scheme and host only
    /// (it may carry basic-auth credentials).
    pub url: String,
    /// Static labels added to every alert (`team = "secops"`).
    pub labels: BTreeMap<String, String>,
    /// Optional bearer token for an Alertmanager behind an authenticating proxy.
    pub bearer: Option<Secret>,
}

impl std::fmt::Debug for AlertmanagerConfig {
    // Hand-written: the URL may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertmanagerConfig")
            .field("url", &redact_url(&self.url))
            .field("labels", &self.labels)
            .field("bearer", &self.bearer)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// `[actions.alertmanager.NAME]` as written (delivery fields apart).
struct RawAlertmanager {
    /// Alertmanager's base URL (`http://alertmanager:9093`).
    url: String,
    /// Labels added to every alert (`team = "secops"`).
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Environment variable holding a bearer token for an authenticating proxy.
    bearer_env: Option<String>,
}

/// Parses `[actions.alertmanager.NAME]` (its delivery fields already taken out).
pub(crate) fn parse(p: &mut Parser<'_>, field: &str, v: &toml::Value) -> Option<SinkKind> {
    let raw: RawAlertmanager = p.de(field, v)?;
    let before = p.errs.len();
    p.url(&format!("{field}.url"), &raw.url);
    for k in raw.labels.keys() {
        let valid = !k.is_empty()
            && k.chars().enumerate().all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if !valid {
            p.err(format!("{field}.labels.{k}"), "not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)");
        }
    }
    let bearer = p.secret(&format!("{field}.bearer_env"), &raw.bearer_env);
    (p.errs.len() == before).then_some(SinkKind::Alertmanager(AlertmanagerConfig {
        url: raw.url.trim_end_matches('/').to_string(),
        labels: raw.labels,
        bearer,
    }))
}

/// Posts each notification to Alertmanager's v2 API.
pub struct AlertmanagerSink {
    cfg: AlertmanagerConfig,
    client: reqwest::Client,
}

impl AlertmanagerSink {
    pub fn new(cfg: AlertmanagerConfig, client: reqwest::Client) -> Self {
        AlertmanagerSink { cfg, client }
    }

    /// The postable alert list (one alert). `now_ms` is wall time, used as `endsAt` of a
    /// resolved notification.
    pub fn payload(cfg: &AlertmanagerConfig, n: &Notification, now_ms: i64) -> serde_json::Value {
        let a = &n.alert;
        let mut labels: BTreeMap<String, String> = cfg.labels.clone();
        labels.insert("alertname".into(), format!("gatewatch_{}", a.detector));
        labels.insert("detector".into(), a.detector.clone());
        labels.insert("rule".into(), a.rule.clone());
        labels.insert("severity".into(), a.severity.as_str().into());
        labels.insert("entity_kind".into(), a.entity.kind.as_str().into());
        labels.insert("entity".into(), a.entity.id.clone());
        if let Some(c) = &a.client_id {
            labels.insert("client_id".into(), c.clone());
        }
        if let Some(fp) = &a.token_fingerprint {
            labels.insert("token_fingerprint".into(), fp.to_hex());
        }
        let mut annotations = BTreeMap::new();
        annotations.insert("summary".to_string(), a.summary.clone());
        annotations.insert("alert_id".to_string(), a.id.clone());
        annotations.insert("count".to_string(), n.count.to_string());
        annotations.insert("evidence".to_string(), serde_json::Value::Object(a.evidence.clone()).to_string());
        if let Some(r) = &n.runbook {
            annotations.insert("runbook_url".to_string(), r.clone());
        }
        let mut alert = json!({
            "labels": labels,
            "annotations": annotations,
            "startsAt": format_ts(n.first_window_start),
        });
        if n.status == Status::Resolved {
            alert["endsAt"] = json!(format_ts(now_ms.max(a.window_end)));
        }
        json!([alert])
    }
}

impl Sink for AlertmanagerSink {
    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let now_ms = chrono::Utc::now().timestamp_millis();
            let body = Self::payload(&self.cfg, n, now_ms);
            let mut req = self.client.post(format!("{}/api/v2/alerts", self.cfg.url)).json(&body);
            if let Some(b) = &self.cfg.bearer {
                req = req.bearer_auth(b.expose());
            }
            let resp = req.send().await.map_err(SinkError::from_reqwest)?;
            let status = resp.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(SinkError::from_status(status, retry_after(resp.headers())))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_labels_and_resolution() {
        let cfg = AlertmanagerConfig {
            url: "http://am".into(),
            labels: [("team".to_string(), "secops".to_string())].into(),
            bearer: None,
        };
        let mut n = Notification::firing(crate::actions::sink::tests_support::sample());
        let p = AlertmanagerSink::payload(&cfg, &n, 0);
        assert_eq!(p[0]["labels"]["alertname"], "gatewatch_token_reuse");
        assert_eq!(p[0]["labels"]["team"], "secops");
        assert_eq!(p[0]["labels"]["token_fingerprint"], "9b1e44c07f2a1d3e");
        assert!(p[0].get("endsAt").is_none());
        n.status = Status::Resolved;
        let p = AlertmanagerSink::payload(&cfg, &n, 1_900_000_000_000);
        assert_eq!(p[0]["endsAt"], format_ts(1_900_000_000_000));
    }
}

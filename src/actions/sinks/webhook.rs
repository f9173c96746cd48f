//! Webhook sink: the alert JSON of the contract (or a Slack-compatible text message),
//! signed with `X-Gatewatch-Signature: sha256=HMAC(secret, body)` and carrying
//! `Idempotency-Key` so a receiver can drop the copies that retries may produce.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::SinkKind;
use crate::actions::config::Parser;
use crate::actions::lifecycle::{Notification, Status};
use crate::actions::secret::{redact_url, sign_body, Secret};
use crate::actions::sink::{retry_after, SendFuture, Sink, SinkError};

/// Body format of a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The alert object of the contract, unchanged.
    Json,
    /// `{"text": "..."}`: Slack incoming webhooks, Mattermost, Rocket.Chat.
    Slack,
    /// A SIEM schema: OCSF Detection Finding or ECS alert (see `actions::siem`).
    Siem(crate::actions::siem::AlertFormat),
}

/// `[actions.webhook.NAME]`, parsed.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Where alerts are posted. May carry a credential (a Slack webhook path is one), so
    /// `Debug` shows its scheme and host only.
    pub url: String,
    pub format: WebhookFormat,
    /// HMAC key for `X-Gatewatch-Signature`.
    pub secret: Option<Secret>,
    /// Extra headers (meant to be non-secret; `Debug` shows their names only, in case one is not).
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for WebhookConfig {
    // Hand-written: the URL and header values may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("format", &self.format)
            .field("secret", &self.secret)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// `[actions.webhook.NAME]` as written (delivery fields apart).
struct RawWebhook {
    /// http:// or https:// URL the notification is POSTed to.
    url: String,
    /// `json` (default: the alert contract), `slack`, `ocsf` or `ecs`.
    #[serde(default)]
    format: Option<String>,
    /// Environment variable holding the HMAC key of `X-Gatewatch-Signature`.
    secret_env: Option<String>,
    /// Extra request headers (not for secrets: use `secret_env`).
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Parses `[actions.webhook.NAME]` (its delivery fields already taken out).
pub(crate) fn parse(p: &mut Parser<'_>, field: &str, v: &toml::Value) -> Option<SinkKind> {
    let raw: RawWebhook = p.de(field, v)?;
    let before = p.errs.len();
    p.url(&format!("{field}.url"), &raw.url);
    let format = match raw.format.as_deref() {
        None | Some("json") => WebhookFormat::Json,
        Some("slack") => WebhookFormat::Slack,
        Some(f @ ("ocsf" | "ecs")) => WebhookFormat::Siem(crate::actions::siem::AlertFormat::parse(f).expect("listed")),
        Some(other) => {
            p.err(format!("{field}.format"), format!("`{other}`: one of json, slack, ocsf, ecs"));
            WebhookFormat::Json
        }
    };
    let secret = p.secret(&format!("{field}.secret_env"), &raw.secret_env);
    for k in raw.headers.keys() {
        if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
            p.err(format!("{field}.headers.{k}"), "not a valid header name");
        }
    }
    (p.errs.len() == before).then_some(SinkKind::Webhook(WebhookConfig {
        url: raw.url,
        format,
        secret,
        headers: raw.headers,
    }))
}

/// Posts each notification to the webhook's URL.
pub struct WebhookSink {
    cfg: WebhookConfig,
    client: reqwest::Client,
}

impl WebhookSink {
    pub fn new(cfg: WebhookConfig, client: reqwest::Client) -> Self {
        WebhookSink { cfg, client }
    }

    /// The request body for a notification.
    pub fn body(format: WebhookFormat, n: &Notification) -> Vec<u8> {
        match format {
            WebhookFormat::Json => n.alert.to_json().into_bytes(),
            WebhookFormat::Slack => serde_json::to_vec(&serde_json::json!({ "text": slack_text(n) })).expect("json"),
            WebhookFormat::Siem(f) => f.render(n),
        }
    }
}

/// Slack mrkdwn: a bold headline, the essentials, and the runbook link.
pub fn slack_text(n: &Notification) -> String {
    let a = &n.alert;
    let icon = match n.status {
        Status::Resolved => ":white_check_mark:",
        Status::Firing => match a.severity {
            crate::event::Severity::Critical | crate::event::Severity::High => ":rotating_light:",
            _ => ":warning:",
        },
    };
    let mut t = format!("{icon} *{}*\n", crate::actions::sink::subject(n));
    t += &format!("*Entity:* {} `{}`", a.entity.kind.as_str(), a.entity.id);
    if let Some(c) = &a.client_id {
        t += &format!("  *Client:* `{c}`");
    }
    t += &format!(
        "\n*Window:* {} to {}",
        crate::event::format_ts(a.window_start),
        crate::event::format_ts(a.window_end)
    );
    if !a.evidence.is_empty() {
        t += &format!("\n*Evidence:* `{}`", serde_json::Value::Object(a.evidence.clone()));
    }
    if let Some(r) = &n.runbook {
        t += &format!("\n<{r}|Runbook>");
    }
    t += &format!("  alert `{}`", a.id);
    t
}

impl Sink for WebhookSink {
    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let body = Self::body(self.cfg.format, n);
            let mut req = self
                .client
                .post(&self.cfg.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("Idempotency-Key", n.idempotency_key())
                .header("X-Gatewatch-Alert-Id", &n.alert.id)
                .header("X-Gatewatch-Status", n.status.as_str())
                .header("X-Gatewatch-Count", n.count.to_string());
            for (k, v) in &self.cfg.headers {
                req = req.header(k, v);
            }
            if let Some(secret) = &self.cfg.secret {
                req = req.header("X-Gatewatch-Signature", sign_body(secret, &body));
            }
            let resp = req.body(body).send().await.map_err(SinkError::from_reqwest)?;
            let status = resp.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(SinkError::from_status(status, retry_after(resp.headers())))
            }
        })
    }
}

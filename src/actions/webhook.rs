//! Webhook sink: the alert JSON of the contract (or a Slack-compatible text message),
//! signed with `X-Gatewatch-Signature: sha256=HMAC(secret, body)` and carrying
//! `Idempotency-Key` so a receiver can drop the copies that retries may produce.

use super::config::{WebhookConfig, WebhookFormat};
use super::lifecycle::{Notification, Status};
use super::secret::sign_body;
use super::sink::{retry_after, SendFuture, Sink, SinkError};

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
    let mut t = format!("{icon} *{}*\n", super::sink::subject(n));
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

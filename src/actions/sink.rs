//! What a sink is: something that delivers one [`Notification`], and says whether a failure
//! is worth retrying. The human rendering shared by email and chat lives here too.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::lifecycle::{Notification, Status};
use crate::event::format_ts;

/// Why a delivery failed. Messages never carry a URL or a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkError {
    /// `false` when retrying cannot help (the receiver rejected the request as invalid).
    pub retryable: bool,
    pub message: String,
    /// The receiver asked us to wait this long (HTTP 429/503 `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl SinkError {
    pub fn retryable(message: impl Into<String>) -> Self {
        SinkError { retryable: true, message: message.into(), retry_after: None }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        SinkError { retryable: false, message: message.into(), retry_after: None }
    }

    /// Classifies an HTTP status: 408, 425, 429 and 5xx are worth retrying, other 4xx not.
    pub fn from_status(status: reqwest::StatusCode, retry_after: Option<Duration>) -> Self {
        let retryable = status.is_server_error() || matches!(status.as_u16(), 408 | 425 | 429);
        SinkError { retryable, message: format!("HTTP {}", status.as_u16()), retry_after }
    }

    /// A transport error, without the URL (which may carry a secret, as Slack's do).
    pub fn from_reqwest(e: reqwest::Error) -> Self {
        let timed_out = e.is_timeout();
        let e = e.without_url();
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        if timed_out && !msg.contains("timed out") {
            msg.push_str(" (timed out)");
        }
        SinkError::retryable(msg)
    }
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SinkError>> + Send + 'a>>;

/// A destination for notifications, fed from its own durable queue: the dispatcher's task for
/// the sink calls `send` with one notification at a time (a group drained after an outage is
/// one, with a count), and owns the timeout, retries, rate limit and circuit breaker. A sink
/// only delivers and says whether a failure is worth retrying ([`SinkError`]). Kinds are
/// registered in `actions::sinks`.
pub trait Sink: Send + Sync + 'static {
    /// Delivers one notification. The dispatcher owns timeouts, retries and the breaker.
    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a>;
}

/// A destination that is durable itself and acknowledges each alert (a Kafka topic): the
/// dispatcher delivers to it inside `handoff`, on the caller's thread, so the input offset is
/// committed only once the receiver has the alert. Every alert goes alone (no grouping, no
/// resolved notifications). A failure fails the handoff, and the source retries it with
/// backoff; the dispatcher's circuit breaker fails fast while the receiver is down.
pub trait DirectSink: Send + Sync + 'static {
    /// Delivers one alert, waiting at most `timeout` for the receiver's acknowledgement.
    fn deliver(&self, alert: &crate::event::Alert, timeout: Duration) -> Result<(), SinkError>;
}

/// Parses `Retry-After` given in seconds.
pub fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// One line: `[gatewatch HIGH] token_reuse: token used from 7 networks (×5)`.
pub fn subject(n: &Notification) -> String {
    let a = &n.alert;
    let tag = match n.status {
        Status::Firing => a.severity.as_str().to_ascii_uppercase(),
        Status::Resolved => "RESOLVED".to_string(),
    };
    let count = if n.count > 1 { format!(" (×{})", n.count) } else { String::new() };
    format!("[gatewatch {tag}] {}: {}{count}", a.detector, one_line(&a.summary))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A plain-text body a person on call can act on.
pub fn text_body(n: &Notification) -> String {
    use std::fmt::Write;
    let a = &n.alert;
    let mut b = String::new();
    match n.status {
        Status::Firing => {
            let _ = writeln!(b, "gatewatch raised a {} alert.", a.severity.as_str());
        }
        Status::Resolved => {
            let _ = writeln!(b, "Resolved: no new alert for this entity and detector since the one below.");
        }
    }
    let _ = writeln!(b);
    let _ = writeln!(b, "What:      {}", one_line(&a.summary));
    let _ = writeln!(b, "Detector:  {} (rule {})", a.detector, a.rule);
    let _ = writeln!(b, "Entity:    {} {}", a.entity.kind.as_str(), a.entity.id);
    if let Some(c) = &a.client_id {
        let _ = writeln!(b, "Client:    {c}");
    }
    if let Some(fp) = &a.token_fingerprint {
        let _ = writeln!(b, "Token:     fingerprint {fp}");
    }
    let _ = writeln!(b, "Window:    {} to {}", format_ts(a.window_start), format_ts(a.window_end));
    if n.count > 1 {
        let _ = writeln!(
            b,
            "Count:     {} alerts for this entity and detector since {} (this is the latest)",
            n.count,
            format_ts(n.first_window_start)
        );
    }
    if !a.actions.is_empty() {
        let _ = writeln!(b, "Actions:   {}", a.actions.join(", "));
    }
    if !a.evidence.is_empty() {
        let _ = writeln!(b);
        let _ = writeln!(b, "Evidence:");
        for (k, v) in &a.evidence {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = writeln!(b, "  {k}: {v}");
        }
    }
    let _ = writeln!(b);
    match &n.runbook {
        Some(r) => {
            let _ = writeln!(b, "Runbook:   {r}");
        }
        None => {
            let _ = writeln!(b, "Runbook:   none configured for rule {} ([actions.runbooks])", a.rule);
        }
    }
    let _ = writeln!(b, "Alert id:  {}", a.id);
    b
}

#[cfg(test)]
pub(crate) mod tests_support {
    use crate::event::{Alert, Entity, EntityKind, Fingerprint, Severity};

    pub(crate) fn sample() -> Alert {
        let fp = Fingerprint::from_hex("9b1e44c07f2a1d3e").unwrap();
        let mut evidence = serde_json::Map::new();
        evidence.insert("distinct_networks".into(), 7.into());
        Alert {
            id: "3f9c00".into(),
            detector: "token_reuse".into(),
            rule: "token-reuse-default".into(),
            severity: Severity::High,
            entity: Entity::new(EntityKind::Token, fp.to_hex()),
            client_id: Some("app-69736b".into()),
            client_id_source: Default::default(),
            token_fingerprint: Some(fp),
            window_start: 1_763_720_400_000,
            window_end: 1_763_720_700_000,
            summary: "token used from 7 networks in 5m (limit 3)".into(),
            evidence,
            actions: vec!["email:oncall".into()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::sample;
    use super::*;

    #[test]
    fn subject_and_body_read_well() {
        let mut n = Notification::firing(sample());
        n.count = 3;
        n.runbook = Some("https://wiki/token-reuse".into());
        assert_eq!(subject(&n), "[gatewatch HIGH] token_reuse: token used from 7 networks in 5m (limit 3) (×3)");
        let b = text_body(&n);
        for want in [
            "What:      token used from 7 networks in 5m (limit 3)",
            "Entity:    token 9b1e44c07f2a1d3e",
            "Client:    app-69736b",
            "Count:     3 alerts",
            "  distinct_networks: 7",
            "Runbook:   https://wiki/token-reuse",
            "Alert id:  3f9c00",
        ] {
            assert!(b.contains(want), "missing {want:?} in\n{b}");
        }
        n.status = Status::Resolved;
        assert!(subject(&n).starts_with("[gatewatch RESOLVED] token_reuse"));
    }

    #[test]
    fn http_statuses_classify() {
        use reqwest::StatusCode;
        assert!(SinkError::from_status(StatusCode::INTERNAL_SERVER_ERROR, None).retryable);
        assert!(SinkError::from_status(StatusCode::TOO_MANY_REQUESTS, None).retryable);
        assert!(!SinkError::from_status(StatusCode::BAD_REQUEST, None).retryable);
    }
}

//! Email sink over SMTP (lettre): STARTTLS, implicit TLS, or plain for a local relay; login
//! with a password from the environment. Subject and plain-text body are made for the
//! person on call: summary, entity, evidence, runbook link.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use serde::Deserialize;

use super::SinkKind;
use crate::actions::config::Parser;
use crate::actions::lifecycle::Notification;
use crate::actions::secret::Secret;
use crate::actions::sink::{subject, text_body, SendFuture, Sink, SinkError};

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required). Port 587.
    Starttls,
    /// TLS from the first byte (SMTPS). Port 465.
    Tls,
    /// No TLS at all: only for a local relay or tests.
    None,
}

/// `[actions.email.NAME]`, parsed.
#[derive(Clone, Debug)]
pub struct EmailConfig {
    /// SMTP relay host.
    pub host: String,
    /// 587 for STARTTLS, 465 for TLS, 25 for none unless set.
    pub port: u16,
    pub tls: SmtpTls,
    /// Login name; set together with the password.
    pub username: Option<String>,
    /// From `password_env`.
    pub password: Option<Secret>,
    /// Sender address.
    pub from: String,
    /// Recipients (at least one).
    pub to: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// `[actions.email.NAME]` as written (delivery fields apart).
struct RawEmail {
    /// SMTP relay host name.
    host: String,
    /// Default from `tls`: 587, 465 or 25.
    port: Option<u16>,
    /// `starttls` (default), `tls`, `none`.
    tls: Option<String>,
    /// Login name; needs `password_env`.
    username: Option<String>,
    /// Environment variable holding the login password.
    password_env: Option<String>,
    /// Sender address (`gatewatch <gw@example.com>`).
    from: String,
    /// Recipient addresses.
    to: Vec<String>,
}

/// Parses `[actions.email.NAME]` (its delivery fields already taken out).
pub(crate) fn parse(p: &mut Parser<'_>, field: &str, v: &toml::Value) -> Option<SinkKind> {
    let raw: RawEmail = p.de(field, v)?;
    let before = p.errs.len();
    let tls = match raw.tls.as_deref() {
        None | Some("starttls") => SmtpTls::Starttls,
        Some("tls") => SmtpTls::Tls,
        Some("none") => SmtpTls::None,
        Some(other) => {
            p.err(format!("{field}.tls"), format!("`{other}`: one of starttls, tls, none"));
            SmtpTls::Starttls
        }
    };
    let port = raw.port.unwrap_or(match tls {
        SmtpTls::Starttls => 587,
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
    });
    if raw.host.is_empty() {
        p.err(format!("{field}.host"), "must not be empty");
    }
    if raw.from.parse::<lettre::message::Mailbox>().is_err() {
        p.err(format!("{field}.from"), format!("`{}` is not an email address", raw.from));
    }
    if raw.to.is_empty() {
        p.err(format!("{field}.to"), "needs at least one address");
    }
    for (i, t) in raw.to.iter().enumerate() {
        if t.parse::<lettre::message::Mailbox>().is_err() {
            p.err(format!("{field}.to[{i}]"), format!("`{t}` is not an email address"));
        }
    }
    let password = p.secret(&format!("{field}.password_env"), &raw.password_env);
    if password.is_some() && raw.username.is_none() {
        p.err(format!("{field}.username"), "required when password_env is set");
    }
    if raw.username.is_some() && raw.password_env.is_none() {
        p.err(format!("{field}.password_env"), "required when username is set");
    }
    (p.errs.len() == before).then_some(SinkKind::Email(EmailConfig {
        host: raw.host,
        port,
        tls,
        username: raw.username,
        password,
        from: raw.from,
        to: raw.to,
    }))
}

/// Sends each notification as one mail over SMTP.
pub struct EmailSink {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl EmailSink {
    /// Builds the transport. Addresses were validated with the config; an error here is an
    /// invalid host name for TLS.
    pub fn new(cfg: &EmailConfig, timeout: std::time::Duration) -> Result<Self, String> {
        let builder = match cfg.tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
                .map_err(|e| format!("smtp host `{}`: {e}", cfg.host))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host)
                .map_err(|e| format!("smtp host `{}`: {e}", cfg.host))?,
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
        };
        let mut builder = builder.port(cfg.port).timeout(Some(timeout));
        if let (Some(user), Some(pass)) = (&cfg.username, &cfg.password) {
            builder = builder.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
        }
        let from: Mailbox = cfg.from.parse().map_err(|_| format!("`{}` is not an email address", cfg.from))?;
        let to = cfg
            .to
            .iter()
            .map(|t| t.parse::<Mailbox>().map_err(|_| format!("`{t}` is not an email address")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EmailSink { transport: builder.build(), from, to })
    }

    /// The message for a notification.
    pub fn message(&self, n: &Notification) -> Result<Message, SinkError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject(n))
            .message_id(Some(format!("<{}@gatewatch>", n.idempotency_key())))
            .header(ContentType::TEXT_PLAIN);
        for t in &self.to {
            b = b.to(t.clone());
        }
        b.body(text_body(n)).map_err(|e| SinkError::permanent(format!("cannot build message: {e}")))
    }
}

impl Sink for EmailSink {
    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let msg = self.message(n)?;
            match self.transport.send(msg).await {
                Ok(_) => Ok(()),
                // 5xx from the server (bad recipient, auth refused): retrying will not help.
                Err(e) if e.is_permanent() => Err(SinkError::permanent(format!("smtp: {e}"))),
                Err(e) => Err(SinkError::retryable(format!("smtp: {e}"))),
            }
        })
    }
}

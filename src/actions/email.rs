//! Email sink over SMTP (lettre): STARTTLS, implicit TLS, or plain for a local relay; login
//! with a password from the environment. Subject and plain-text body are made for the
//! person on call: summary, entity, evidence, runbook link.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{EmailConfig, SmtpTls};
use super::lifecycle::Notification;
use super::sink::{subject, text_body, SendFuture, Sink, SinkError};

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

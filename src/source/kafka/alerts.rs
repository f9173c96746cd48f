//! The alerts topic: every alert as one JSON object (the alert contract), keyed
//! by its entity so one entity's alerts stay in order on one partition.
//!
//! [`KafkaAlertHandoff::handoff`] returns only once the broker acknowledged the
//! alert, so the source may then store the input offset (at-least-once).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::actions::{AlertHandoff, HandoffError};
use crate::event::Alert;

type Ack = mpsc::SyncSender<Result<(), String>>;

pub struct AlertsContext;

impl ClientContext for AlertsContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        super::log_librdkafka("alerts producer", level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        super::client_error("alerts producer", &error, reason);
    }
}

impl ProducerContext for AlertsContext {
    type DeliveryOpaque = Box<Ack>;
    fn delivery(&self, result: &DeliveryResult<'_>, ack: Box<Ack>) {
        let r = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.to_string()),
        };
        let _ = ack.try_send(r);
    }
}

/// Produces alerts to a Kafka topic and waits for each acknowledgement.
pub struct KafkaAlertHandoff {
    producer: ThreadedProducer<AlertsContext>,
    topic: String,
    timeout: Duration,
    format: crate::actions::siem::AlertFormat,
}

/// The message key of an alert: `kind:id` of its entity.
pub fn alert_key(a: &Alert) -> String {
    format!("{}:{}", a.entity.kind.as_str(), a.entity.id)
}

impl KafkaAlertHandoff {
    pub fn new(base: &ClientConfig, topic: &str, timeout: Duration) -> Result<Self, KafkaError> {
        let mut cfg = base.clone();
        // Alerts are rare and each waits for its ack: no point lingering.
        cfg.set("linger.ms", "0");
        cfg.set("enable.idempotence", "true");
        let producer = cfg.create_with_context(AlertsContext)?;
        Ok(KafkaAlertHandoff { producer, topic: topic.to_string(), timeout, format: Default::default() })
    }

    /// Writes alerts in `format` (an OCSF finding or ECS event per alert) instead of the
    /// contract's JSON.
    pub fn with_format(mut self, format: crate::actions::siem::AlertFormat) -> Self {
        self.format = format;
        self
    }
}

impl AlertHandoff for KafkaAlertHandoff {
    fn handoff(&self, alert: &Alert) -> Result<(), HandoffError> {
        let payload = match self.format {
            crate::actions::siem::AlertFormat::Json => {
                serde_json::to_vec(alert).map_err(|e| HandoffError::Overflow(e.to_string()))?
            }
            f => f.render(&crate::actions::lifecycle::Notification::firing(alert.clone())),
        };
        let key = alert_key(alert);
        let deadline = Instant::now() + self.timeout;
        let (tx, rx) = mpsc::sync_channel(1);
        let record = BaseRecord::with_opaque_to(&self.topic, Box::new(tx)).payload(&payload).key(&key);
        super::output::send_until(&self.producer, record, deadline)
            .map_err(|e| HandoffError::Overflow(format!("alerts topic {}: {e}", self.topic)))?;
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(HandoffError::Overflow(format!("alerts topic {}: {e}", self.topic))),
            Err(_) => Err(HandoffError::Overflow(format!(
                "alerts topic {}: no acknowledgement in {:?}",
                self.topic, self.timeout
            ))),
        }
    }
}

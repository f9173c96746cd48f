//! The Kafka alerts topic (`[kafka] alerts_topic`): every alert as one record, in the alert
//! contract's JSON (or an OCSF finding or ECS event, `alerts_format`), keyed `kind:id` by its
//! entity so one entity's alerts stay in order on one partition.
//!
//! A [`DirectSink`]: the brokers' acknowledgement is the durable handoff, so the dispatcher
//! delivers inside `handoff` and the source commits the input offset only after it. No local
//! queue is kept, grouping and resolved notifications do not apply, and instances of a
//! consumer group keep no state of their own for it.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::actions::siem::AlertFormat;
use crate::actions::sink::{DirectSink, SinkError};
use crate::event::Alert;

/// The alerts topic, parsed from `[kafka]`.
#[derive(Clone)]
pub struct KafkaSinkConfig {
    /// The topic alerts are written to.
    pub topic: String,
    /// `json` (the contract), `ocsf` or `ecs`.
    pub format: AlertFormat,
    /// The brokers and librdkafka settings of `[kafka]` (may hold SASL credentials: `Debug`
    /// leaves them out).
    pub client: ClientConfig,
}

impl std::fmt::Debug for KafkaSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSinkConfig").field("topic", &self.topic).field("format", &self.format).finish()
    }
}

type Ack = mpsc::SyncSender<Result<(), String>>;

struct AlertsContext;

impl ClientContext for AlertsContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        crate::source::kafka::log_librdkafka("alerts producer", level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        crate::source::kafka::client_error("alerts producer", &error, reason);
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
pub struct KafkaSink {
    producer: ThreadedProducer<AlertsContext>,
    topic: String,
    format: AlertFormat,
}

/// The record key of an alert: `kind:id` of its entity.
pub fn alert_key(a: &Alert) -> String {
    format!("{}:{}", a.entity.kind.as_str(), a.entity.id)
}

impl KafkaSink {
    pub fn new(cfg: &KafkaSinkConfig) -> Result<Self, String> {
        let mut client = cfg.client.clone();
        // Alerts are rare and each waits for its ack: no point lingering.
        client.set("linger.ms", "0");
        client.set("enable.idempotence", "true");
        let producer = client
            .create_with_context(AlertsContext)
            .map_err(|e| format!("creating the producer of alerts topic {}: {e}", cfg.topic))?;
        Ok(KafkaSink { producer, topic: cfg.topic.clone(), format: cfg.format })
    }
}

impl DirectSink for KafkaSink {
    fn deliver(&self, alert: &Alert, timeout: Duration) -> Result<(), SinkError> {
        let payload = match self.format {
            AlertFormat::Json => serde_json::to_vec(alert).map_err(|e| SinkError::permanent(e.to_string()))?,
            f => f.render(&crate::actions::lifecycle::Notification::firing(alert.clone())),
        };
        let key = alert_key(alert);
        let deadline = Instant::now() + timeout;
        let (tx, rx) = mpsc::sync_channel(1);
        let record = BaseRecord::with_opaque_to(&self.topic, Box::new(tx)).payload(&payload).key(&key);
        crate::source::kafka::output::send_until(&self.producer, record, deadline)
            .map_err(|e| SinkError::retryable(format!("alerts topic {}: {e}", self.topic)))?;
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SinkError::retryable(format!("alerts topic {}: {e}", self.topic))),
            Err(_) => {
                Err(SinkError::retryable(format!("alerts topic {}: no acknowledgement in {timeout:?}", self.topic)))
            }
        }
    }
}

//! The revocations topic: every enforced revocation (a deny-list entry: fingerprint,
//! client, reason, alert id, expiry) produced as JSON, keyed by what it revokes, so
//! gateway plugins and other consumers can apply it. A revocation target like the
//! RFC 7009 and HTTP ones: it goes through the same safety checks and audit log.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::actions::revocation::denylist::DenyEntry;
use crate::actions::revocation::targets::{RevocationTarget, TargetFuture, TargetOutcome};
use crate::actions::sink::SinkError;

pub struct KafkaRevocationsTopic {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl KafkaRevocationsTopic {
    pub fn new(base: &ClientConfig, topic: &str, timeout: Duration) -> Result<Self, KafkaError> {
        let mut cfg = base.clone();
        cfg.set("linger.ms", "0");
        cfg.set("enable.idempotence", "true");
        Ok(KafkaRevocationsTopic { producer: cfg.create()?, topic: topic.to_string(), timeout })
    }
}

impl RevocationTarget for KafkaRevocationsTopic {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn revoke<'a>(&'a self, e: &'a DenyEntry) -> TargetFuture<'a> {
        Box::pin(async move {
            let payload = serde_json::to_vec(e).map_err(|err| SinkError {
                retryable: false,
                message: format!("cannot encode the entry: {err}"),
                retry_after: None,
            })?;
            let key = e.key();
            let record = FutureRecord::to(&self.topic).payload(&payload).key(&key);
            match self.producer.send(record, self.timeout).await {
                Ok(_) => Ok(TargetOutcome::Done),
                // The broker's error code only: no payload, no secret.
                Err((err, _)) => {
                    Err(SinkError { retryable: true, message: format!("kafka: {err}"), retry_after: None })
                }
            }
        })
    }
}

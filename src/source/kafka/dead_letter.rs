//! The dead-letter topic: one JSON record per rejected access-log record, with
//! the reason and where it came from.
//!
//! Until the scrubber is wired in, the raw record is **withheld** (never sent):
//! a rejected record may be half a secret-bearing log line, and the scrubbing
//! invariant (no raw token reaches a dead-letter destination) comes first. The
//! source position lets an operator find the original in the input topic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::normalize::Reject;
use crate::telemetry::Metrics;

/// Counts deliveries the broker refused (after librdkafka's own retries).
pub struct DeadLetterContext {
    failed: AtomicU64,
    metrics: Metrics,
}

impl ClientContext for DeadLetterContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        super::log_librdkafka("dead-letter producer", level, fac, msg);
    }
}

impl ProducerContext for DeadLetterContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.metrics.dead_letter_failures.inc();
            tracing::warn!(error = %e, "dead-letter record not accepted by the broker");
        }
    }
}

/// Producer of dead-letter records.
pub struct DeadLetter {
    producer: ThreadedProducer<DeadLetterContext>,
    topic: String,
    /// Records sent since the last [`DeadLetter::flush`].
    pending: AtomicBool,
    metrics: Metrics,
}

/// What one dead-letter record says. The raw record is never included.
pub fn dead_letter_json(rej: &Reject, topic: &str, partition: i32, offset: i64, kafka_ts: Option<i64>) -> Vec<u8> {
    let v = serde_json::json!({
        "reason": rej.reason.as_str(),
        "detail": rej.detail,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "kafka_timestamp": kafka_ts.map(crate::event::format_ts),
        "record": null,
        "record_withheld": "the raw record is not copied until it can be scrubbed; read it at source.offset",
    });
    serde_json::to_vec(&v).expect("json value serializes")
}

impl DeadLetter {
    pub fn new(base: &ClientConfig, topic: &str, metrics: Metrics) -> Result<Arc<Self>, KafkaError> {
        let mut cfg = base.clone();
        cfg.set("linger.ms", "20");
        let producer =
            cfg.create_with_context(DeadLetterContext { failed: AtomicU64::new(0), metrics: metrics.clone() })?;
        Ok(Arc::new(DeadLetter { producer, topic: topic.to_string(), pending: AtomicBool::new(false), metrics }))
    }

    /// Queues one dead-letter record, keyed by its source partition so the
    /// dead letters of one partition stay in order. Waits while librdkafka's
    /// queue is full (backpressure), never drops silently.
    pub fn send(&self, rej: &Reject, topic: &str, partition: i32, offset: i64, kafka_ts: Option<i64>) {
        let payload = dead_letter_json(rej, topic, partition, offset, kafka_ts);
        let key = format!("{topic}/{partition}");
        let mut record = BaseRecord::to(&self.topic).payload(&payload).key(&key);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) if Instant::now() < deadline => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    self.metrics.dead_letter_failures.inc();
                    tracing::warn!(error = %e, "could not queue a dead-letter record");
                    return;
                }
            }
        }
        self.pending.store(true, Ordering::Relaxed);
        self.metrics.dead_letters.inc();
    }

    /// True when records were sent since the last successful flush.
    pub fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Waits until every queued dead-letter record is delivered (or failed for good).
    /// Returns false on timeout: the caller must not store offsets past those records.
    pub fn flush(&self, timeout: Duration) -> bool {
        match self.producer.flush(timeout) {
            Ok(()) => {
                self.pending.store(false, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "dead-letter flush timed out");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::RejectReason;

    #[test]
    fn record_carries_reason_and_position_never_the_raw_record() {
        let rej = Reject::new(RejectReason::NotJson, "Syntax error at line 1 column 3");
        let v: serde_json::Value = serde_json::from_slice(&dead_letter_json(&rej, "logs", 2, 41, Some(0))).unwrap();
        assert_eq!(v["reason"], "not_json");
        assert_eq!(v["source"]["partition"], 2);
        assert_eq!(v["source"]["offset"], 41);
        assert!(v["record"].is_null());
    }
}

//! A producer for the per-record output topics (dead letters, scrubbed copies):
//! queues with backpressure, counts what the broker refused, and flushes before
//! the consumer stores offsets past the records it was given.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

/// Counts deliveries the broker refused (after librdkafka's own retries).
pub struct OutputContext {
    /// `dead-letter producer`, `scrubbed-copy producer`: names the client in logs.
    name: &'static str,
    failed: IntCounter,
}

impl ClientContext for OutputContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        super::log_librdkafka(self.name, level, fac, msg);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        super::client_error(self.name, &error, reason);
    }
}

impl ProducerContext for OutputContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.inc();
            // The error names the topic and cause; the payload is never logged.
            tracing::warn!(client = self.name, error = %e, "record not accepted by the broker");
        }
    }
}

/// Queues `record`, waiting while librdkafka's queue is full (backpressure) until
/// `deadline`; any other refusal, or the deadline, is returned.
pub(crate) fn send_until<C, K, P>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
    deadline: Instant,
) -> Result<(), KafkaError>
where
    C: ProducerContext + 'static,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) if Instant::now() < deadline => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// One output topic's producer.
pub struct OutputProducer {
    producer: ThreadedProducer<OutputContext>,
    topic: String,
    /// Records sent since the last successful [`OutputProducer::flush`].
    pending: AtomicBool,
    sent: IntCounter,
    failed: IntCounter,
    name: &'static str,
}

impl OutputProducer {
    /// `sent` counts records queued, `failed` records the broker (or the queue) refused.
    pub fn new(
        base: &ClientConfig,
        topic: &str,
        name: &'static str,
        sent: IntCounter,
        failed: IntCounter,
    ) -> Result<Arc<Self>, KafkaError> {
        let mut cfg = base.clone();
        if !cfg.config_map().contains_key("linger.ms") {
            cfg.set("linger.ms", "20");
        }
        let producer = cfg.create_with_context(OutputContext { name, failed: failed.clone() })?;
        Ok(Arc::new(OutputProducer {
            producer,
            topic: topic.to_string(),
            pending: AtomicBool::new(false),
            sent,
            failed,
            name,
        }))
    }

    /// Queues one record. Waits while librdkafka's queue is full (backpressure),
    /// up to 30 s; never drops silently (a refusal is counted and logged).
    pub fn send(&self, key: Option<&[u8]>, payload: &[u8], timestamp: Option<i64>) {
        self.send_to(None, key, payload, timestamp)
    }

    /// As [`Self::send`], to a chosen partition (`None`: the partitioner's choice by key).
    pub fn send_to(&self, partition: Option<i32>, key: Option<&[u8]>, payload: &[u8], timestamp: Option<i64>) {
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic).payload(payload);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(t) = timestamp {
            record = record.timestamp(t);
        }
        if let Err(e) = send_until(&self.producer, record, Instant::now() + Duration::from_secs(30)) {
            self.failed.inc();
            tracing::warn!(client = self.name, error = %e, "could not queue a record");
            return;
        }
        self.pending.store(true, Ordering::Relaxed);
        self.sent.inc();
    }

    /// True when records were sent since the last successful flush.
    pub fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Waits until every queued record is delivered (or failed for good).
    /// Returns false on timeout: the caller must not store offsets past those records.
    pub fn flush(&self, timeout: Duration) -> bool {
        match self.producer.flush(timeout) {
            Ok(()) => {
                self.pending.store(false, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::warn!(client = self.name, error = %e, "flush timed out");
                false
            }
        }
    }
}

//! The scrubbed-copy topic: every live record, with every secret replaced by
//! its `[REDACTED:<kind>:<fingerprint>]` marker and all other bytes unchanged,
//! so a team can ship clean logs to a SIEM or data lake from there.
//!
//! The copy keeps the record's Kafka timestamp and its key (scrubbed too: some
//! gateways key by API key). Kafka headers are not copied (they may carry
//! credentials and are not scrubbed). Partitioning follows the key, so records
//! of one key stay in order; unkeyed records go where the partitioner puts them.
//! A record is copied once its source offset is live (not while rebuilding
//! state below the committed offset: those were copied by the previous owner).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use super::output::OutputProducer;
use crate::telemetry::Metrics;

pub struct ScrubbedCopy {
    out: Arc<OutputProducer>,
}

impl ScrubbedCopy {
    pub fn new(base: &ClientConfig, topic: &str, metrics: &Metrics) -> Result<Arc<Self>, KafkaError> {
        let out = OutputProducer::new(
            base,
            topic,
            "scrubbed-copy producer",
            metrics.scrubbed_records.clone(),
            metrics.scrubbed_record_failures.clone(),
        )?;
        Ok(Arc::new(ScrubbedCopy { out }))
    }

    /// Queues one copy; `key` and `record` are already scrubbed.
    pub fn send(&self, key: Option<&str>, record: &str, kafka_ts: Option<i64>) {
        self.out.send(key.map(str::as_bytes), record.as_bytes(), kafka_ts);
    }

    pub fn has_pending(&self) -> bool {
        self.out.has_pending()
    }

    pub fn flush(&self, timeout: Duration) -> bool {
        self.out.flush(timeout)
    }
}

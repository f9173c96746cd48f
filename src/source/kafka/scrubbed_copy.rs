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

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use super::output::OutputProducer;
use crate::telemetry::Metrics;

/// The producer of the scrubbed-copy topic. The caller sends the scrubbed key and record
/// with the source record's Kafka timestamp.
pub fn scrubbed_copy_producer(
    base: &ClientConfig,
    topic: &str,
    metrics: &Metrics,
) -> Result<Arc<OutputProducer>, KafkaError> {
    OutputProducer::new(
        base,
        topic,
        "scrubbed-copy producer",
        metrics.scrubbed_records.clone(),
        metrics.scrubbed_record_failures.clone(),
    )
}

//! The dead-letter topic: one JSON record per rejected access-log record, with
//! the reason, where it came from, and the record itself **scrubbed** (every
//! secret replaced by its marker, as in the scrubbed-copy topic), cut after
//! `[kafka] dead_letter_max_record_bytes`.
//!
//! ```json
//! {"reason":"not_json","detail":"…","source":{"topic":"logs","partition":2,"offset":41},
//!  "kafka_timestamp":"2026-11-21T10:00:00.000Z","record":"{\"authorization\":\"[REDACTED:jwt:9b1e…]\"…",
//!  "record_truncated":false}
//! ```

use std::sync::Arc;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use super::output::OutputProducer;
use crate::normalize::Reject;
use crate::scrub::message::truncate_scrubbed;
use crate::telemetry::Metrics;

/// Producer of dead-letter records.
pub struct DeadLetter {
    out: Arc<OutputProducer>,
    max_record_bytes: usize,
}

/// What one dead-letter record says. `record` must already be scrubbed; it is
/// cut to `max_record_bytes` (0: no record at all).
pub fn dead_letter_json(
    rej: &Reject,
    detail: &str,
    source: (&str, i32, i64),
    kafka_ts: Option<i64>,
    record: &str,
    max_record_bytes: usize,
) -> Vec<u8> {
    let (topic, partition, offset) = source;
    let (record, truncated) = if max_record_bytes == 0 {
        (None, true)
    } else {
        let (r, t) = truncate_scrubbed(record, max_record_bytes);
        (Some(r), t)
    };
    let v = serde_json::json!({
        "reason": rej.reason.as_str(),
        "detail": detail,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "kafka_timestamp": kafka_ts.map(crate::event::format_ts),
        "record": record,
        "record_truncated": truncated,
    });
    serde_json::to_vec(&v).expect("json value serializes")
}

impl DeadLetter {
    pub fn new(
        base: &ClientConfig,
        topic: &str,
        max_record_bytes: usize,
        metrics: &Metrics,
    ) -> Result<Arc<Self>, KafkaError> {
        let out = OutputProducer::new(
            base,
            topic,
            "dead-letter producer",
            metrics.dead_letters.clone(),
            metrics.dead_letter_failures.clone(),
        )?;
        Ok(Arc::new(DeadLetter { out, max_record_bytes }))
    }

    /// Queues one dead-letter record, keyed by its source partition so the dead
    /// letters of one partition stay in order. `record` and `detail` are already scrubbed.
    pub fn send(&self, rej: &Reject, detail: &str, source: (&str, i32, i64), kafka_ts: Option<i64>, record: &str) {
        let payload = dead_letter_json(rej, detail, source, kafka_ts, record, self.max_record_bytes);
        let key = format!("{}/{}", source.0, source.1);
        self.out.send(Some(key.as_bytes()), &payload, None);
    }

    /// The producer, to flush before offsets are stored past these dead letters.
    pub fn output(&self) -> &OutputProducer {
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::RejectReason;

    #[test]
    fn record_carries_reason_position_and_the_scrubbed_record_cut_to_size() {
        let rej = Reject::new(RejectReason::NotJson, "Syntax error at line 1 column 3");
        let rec = r#"{"authorization":"[REDACTED:jwt:0123456789abcdef]","uri":"/v1/items"#;
        let v: serde_json::Value =
            serde_json::from_slice(&dead_letter_json(&rej, &rej.detail, ("logs", 2, 41), Some(0), rec, 1024)).unwrap();
        assert_eq!(v["reason"], "not_json");
        assert_eq!(v["source"]["partition"], 2);
        assert_eq!(v["source"]["offset"], 41);
        assert_eq!(v["record"], rec);
        assert_eq!(v["record_truncated"], false);
        let v: serde_json::Value =
            serde_json::from_slice(&dead_letter_json(&rej, "", ("logs", 2, 41), None, rec, 30)).unwrap();
        assert_eq!(v["record"], r#"{"authorization":""#, "cut before the marker, never inside it");
        assert_eq!(v["record_truncated"], true);
        let v: serde_json::Value =
            serde_json::from_slice(&dead_letter_json(&rej, "", ("logs", 2, 41), None, rec, 0)).unwrap();
        assert!(v["record"].is_null());
    }
}

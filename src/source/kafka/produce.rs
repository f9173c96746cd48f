//! Produces simulated gateway traffic to a Kafka topic: `gatewatch demo` (into its
//! embedded broker) and `gatewatch simulate --brokers` (into yours). Records go in
//! arrival order, keyed as the README advises (client id, else the source address),
//! optionally paced so event time runs `speed` times faster than the clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::normalize::Format;
use crate::simulate::{render, SimRecord};

/// What was produced: records sent and the largest event time among them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Produced {
    pub records: usize,
    pub last_event_ts: i64,
}

/// Sends `records` rendered in `format` to `topic`. `speed`: pace by arrival time
/// (`Some(10.0)`: ten simulated seconds per second), or as fast as the broker takes
/// them (`None`). Stops early when `stop` is set. Waits for every acknowledgement.
pub fn produce_simulated(
    base: &ClientConfig,
    topic: &str,
    records: &[SimRecord],
    format: Format,
    speed: Option<f64>,
    stop: &AtomicBool,
) -> Result<Produced, KafkaError> {
    let mut cfg = base.clone();
    cfg.set("batch.num.messages", "200").set("linger.ms", "5");
    let p: BaseProducer = cfg.create()?;
    // Fail at once, with one error, when the brokers cannot be reached (librdkafka would
    // otherwise queue every record and time out at the end).
    p.client().fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let began = Instant::now();
    let first = records.first().map(|r| r.arrival).unwrap_or(0);
    let mut out = Produced { records: 0, last_event_ts: i64::MIN };
    for r in records {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(speed) = speed {
            let due = Duration::from_secs_f64(((r.arrival - first).max(0) as f64 / 1000.0) / speed.max(0.001));
            if let Some(wait) = due.checked_sub(began.elapsed()) {
                p.poll(wait.min(Duration::from_millis(200)));
                if wait > Duration::from_millis(200) {
                    std::thread::sleep(wait - Duration::from_millis(200));
                }
            }
        }
        let payload = render(r, format);
        let key = r.client_id.as_deref().map(str::to_string).unwrap_or_else(|| r.source_ip.to_string());
        let mut rec = BaseRecord::to(topic).payload(&payload).key(&key);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    p.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e),
            }
        }
        p.poll(Duration::ZERO);
        out.records += 1;
        out.last_event_ts = out.last_event_ts.max(r.ts);
    }
    p.flush(Duration::from_secs(60))?;
    Ok(out)
}

//! What one assigned partition runs, by stage: the whole pipeline (one stage), the ingest
//! half (normalize, scrub, repartition) or the detect half (engine and rules over the
//! repartition topic). The source owns offsets, commits, rebuilds and the handoff; a worker
//! only turns one message into what it caused.

use std::sync::Arc;

use crate::detectors::Rule;
use crate::engine::{state_size, EngineStats, Pipeline, Processed, StateSize};
use crate::event::{Alert, Millis};
use crate::scrub::Scrubber;
use crate::telemetry::Metrics;

/// Which part of the run a source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Normalize, detect and hand off in one consumer: right for a one-partition input.
    Single,
    /// Read the input topics; send normalized events to the repartition topic.
    Ingest,
    /// Read the repartition topic; detect and hand off.
    Detect,
}

impl Stage {
    /// The `stage` label of the per-partition gauges.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Single => "single",
            Stage::Ingest => "ingest",
            Stage::Detect => "detect",
        }
    }

    pub const ALL: [Stage; 3] = [Stage::Single, Stage::Ingest, Stage::Detect];
}

/// One message as the source read it.
pub struct Incoming<'a> {
    pub payload: &'a [u8],
    /// Kafka timestamp (ms).
    pub ts: Option<i64>,
    pub offset: i64,
    /// Wall time (ms since the epoch) when it was handled: heartbeat and idle timing only.
    pub wall_ms: i64,
}

/// The work of one assigned partition.
pub trait PartitionWorker: Send {
    /// One message; alerts raised are appended to `alerts`.
    fn process(&mut self, msg: &Incoming<'_>, alerts: &mut Vec<Alert>) -> Processed;
    /// Called about every 100 ms of wall time, between messages; `caught_up`: the partition
    /// was read to its end when last measured.
    fn tick(&mut self, _wall_ms: i64, _caught_up: bool) {}
    fn engine_stats(&self) -> EngineStats {
        EngineStats::default()
    }
    /// The event-time watermark: every alert completed before it has been raised.
    fn watermark(&self) -> Option<Millis> {
        None
    }
    /// The rules this worker drives (none for ingest).
    fn rules(&self) -> &[Rule] {
        &[]
    }
    fn state_size(&self) -> StateSize {
        state_size(self.rules())
    }
    /// The scrubber for record text that leaves gatewatch; `None` where no raw record is read.
    fn scrubber(&self) -> Option<&Scrubber> {
        None
    }
    /// Adds what happened since the last call to the stage's own metrics (about once a second).
    fn publish(&mut self, _metrics: &Metrics) {}
    /// Detect: largest upstream watermark spread (ms), and whether time still waits to hear
    /// from every input partition.
    fn watermark_status(&self) -> Option<(i64, bool)> {
        None
    }
}

/// Builds the worker of a newly assigned partition (topic, partition).
pub type NewWorker = Arc<dyn Fn(&str, i32) -> Box<dyn PartitionWorker> + Send + Sync>;

impl PartitionWorker for Pipeline {
    fn process(&mut self, msg: &Incoming<'_>, alerts: &mut Vec<Alert>) -> Processed {
        Pipeline::process(self, msg.payload, msg.ts, alerts)
    }
    fn tick(&mut self, _wall_ms: i64, _caught_up: bool) {
        self.follow_reloads();
    }
    fn engine_stats(&self) -> EngineStats {
        Pipeline::engine_stats(self)
    }
    fn watermark(&self) -> Option<Millis> {
        Some(Pipeline::watermark(self))
    }
    fn rules(&self) -> &[Rule] {
        Pipeline::rules(self)
    }
    fn state_size(&self) -> StateSize {
        Pipeline::state_size(self)
    }
    fn scrubber(&self) -> Option<&Scrubber> {
        Some(Pipeline::scrubber(self))
    }
}

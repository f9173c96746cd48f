//! Repartitioning: every detector sees each entity whole, however the input is keyed.
//!
//! A detector keeps state per key of one entity kind, a [`Shard`] (source network, client,
//! token, route), and names for each event the key it keeps it under
//! ([`crate::detectors::Detector::shard_key`]). The run is then two stages, in the way of
//! Kafka Streams' repartition topics:
//!
//! - **ingest** ([`ingest`]) reads the input partitions however they are keyed, normalizes
//!   and scrubs, and sends one compact record ([`wire`]) per distinct (shard, key) the
//!   loaded detectors name, to the repartition partition of that key;
//! - **detect** ([`detect`]) reads one repartition partition: its engine hands each event
//!   only to the rules that keep it under the record's key, so a key's state is whole on the
//!   one partition that owns it.
//!
//! Event time crosses the shuffle with the records: each carries its input partition's
//! watermark, ingest sends heartbeats to every repartition partition, and a detect
//! partition's watermark is the minimum over the input partitions it has heard from
//! ([`detect::UpstreamWatermarks`]). Alert ids depend on rule, entity and window start only,
//! so they do not depend on how many partitions or instances there are.
//!
//! [`run_in_memory`] runs both stages over in-memory partitions: the same code the Kafka
//! stages run, without a broker (tests, and to compare with `replay`).

pub mod detect;
pub mod ingest;
pub mod wire;

use crate::engine::PipelineFactory;
use crate::event::{Alert, Millis};

pub use detect::{Detect, DetectStats, UpstreamWatermarks};
pub use ingest::{HeartbeatTiming, Ingest, IngestStats, RecordSink};

/// Default heartbeat timing: a heartbeat round every 200 ms; quiet for 5 s is idle.
pub const DEFAULT_TIMING: HeartbeatTiming = HeartbeatTiming { interval_ms: 200, idle_after_ms: 5_000 };

/// Repartition partitions held in memory.
pub struct MemoryPartitions(pub Vec<Vec<Vec<u8>>>);

impl MemoryPartitions {
    pub fn new(partitions: u32) -> Self {
        MemoryPartitions(vec![Vec::new(); partitions.max(1) as usize])
    }

    pub fn bytes(&self) -> u64 {
        self.0.iter().flatten().map(|r| r.len() as u64).sum()
    }
}

impl RecordSink for MemoryPartitions {
    fn partitions(&self) -> u32 {
        self.0.len() as u32
    }

    fn send(&mut self, partition: i32, payload: &[u8]) {
        self.0[partition as usize].push(payload.to_vec());
    }
}

/// What a repartitioned run in memory did.
#[derive(Debug, Default)]
pub struct MemoryRun {
    pub alerts: Vec<Alert>,
    /// Bytes of the input messages, and of the repartition records (events and heartbeats).
    pub input_bytes: u64,
    pub repartition_bytes: u64,
    /// Event records sent, per shard.
    pub records_by_shard: std::collections::BTreeMap<&'static str, u64>,
    pub heartbeats: u64,
    /// Events dropped as late at ingest, and at detect.
    pub late_at_ingest: u64,
    pub late_at_detect: u64,
}

/// Runs ingest over `inputs` (each a partition: messages with their Kafka time), taking one
/// message from each input partition in turn, with a heartbeat round after every `per_beat`
/// rounds; then detect over each repartition partition. Every stage is the one the Kafka
/// stages run.
pub fn run_in_memory(
    factory: &PipelineFactory,
    inputs: &[Vec<(Vec<u8>, Option<Millis>)>],
    repartitions: u32,
    per_beat: usize,
) -> MemoryRun {
    let cfg = factory.config();
    let lateness = cfg.engine.allowed_lateness.0;
    let mut sink = MemoryPartitions::new(repartitions);
    let mut ingests: Vec<Ingest> = (0..inputs.len())
        .map(|i| {
            Ingest::new(
                factory.reader(),
                factory.rules(),
                lateness,
                wire::upstream_id("memory", i as i32),
                inputs.len() as u32,
                DEFAULT_TIMING,
            )
        })
        .collect();
    let mut run = MemoryRun::default();
    let longest = inputs.iter().map(Vec::len).max().unwrap_or(0);
    let wall = |round: usize| round as i64 * DEFAULT_TIMING.interval_ms;
    for round in 0..longest {
        for (i, input) in inputs.iter().enumerate() {
            if let Some((msg, ts)) = input.get(round) {
                run.input_bytes += msg.len() as u64;
                // A round takes one heartbeat interval of (pretended) wall time.
                ingests[i].process(msg, *ts, round as i64, wall(round), &mut sink);
            }
        }
        if per_beat > 0 && round % per_beat == per_beat - 1 {
            for (i, ing) in ingests.iter_mut().enumerate() {
                ing.heartbeat(wall(round), round + 1 >= inputs[i].len(), &mut sink);
            }
        }
    }
    for ing in &mut ingests {
        ing.finish(&mut sink);
        let s = ing.stats();
        for (k, n) in &s.by_shard {
            *run.records_by_shard.entry(k).or_insert(0) += n;
        }
        run.heartbeats += s.heartbeats;
        run.late_at_ingest += s.late + s.out_of_range;
    }
    run.repartition_bytes = sink.bytes();
    for records in &sink.0 {
        let mut d = Detect::new(factory.engine());
        for r in records {
            d.process(r, &mut run.alerts).expect("records this build wrote");
        }
        d.finish(&mut run.alerts);
        run.late_at_detect += d.engine_stats().late;
    }
    run
}

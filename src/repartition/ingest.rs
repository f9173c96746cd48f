//! The ingest stage: one input partition's messages → normalized, scrubbed events → one
//! repartition record per shard key the loaded detectors name, plus the partition's
//! watermark, sent with every record and in heartbeats to every repartition partition.

use std::collections::BTreeMap;

use super::wire::{partition_of, EventRecord, Record, Upstream, WireEvent};
use crate::detectors::Rule;
use crate::engine::{Frontier, MessageReader, Processed, MAX_TS, MIN_TS};
use crate::event::{Millis, Shard};

/// Where the ingest stage's records go: the repartition topic, or in-memory partitions.
pub trait RecordSink {
    /// How many repartition partitions there are.
    fn partitions(&self) -> u32;
    /// Queues one record for `partition`. Its Kafka time is when it is sent (the producer's
    /// clock), whatever the input's: detect rebuilds seek the repartition topic by it, so its
    /// times must grow with its offsets, heartbeats and events alike.
    fn send(&mut self, partition: i32, payload: &[u8]);
}

/// Running totals of one input partition's ingest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Event records sent, and their bytes.
    pub records: u64,
    pub bytes: u64,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Events dropped for being behind this partition's watermark, or out of range.
    pub late: u64,
    pub out_of_range: u64,
    /// Event records sent per shard.
    pub by_shard: BTreeMap<&'static str, u64>,
}

/// How often heartbeats go out, and when a quiet partition counts as idle (wall time, ms).
#[derive(Clone, Copy, Debug)]
pub struct HeartbeatTiming {
    pub interval_ms: i64,
    pub idle_after_ms: i64,
}

/// The ingest of one input partition.
pub struct Ingest {
    reader: MessageReader,
    /// The loaded rules, asked only which shard keys they keep each event under.
    rules: Vec<Rule>,
    frontier: Frontier,
    watermark: Millis,
    upstream: Upstream,
    timing: HeartbeatTiming,
    /// Wall time of the last message and the last heartbeat round; what the last round said.
    last_message_wall: Option<i64>,
    last_heartbeat_wall: Option<i64>,
    last_said: Option<(Millis, bool)>,
    stats: IngestStats,
    keys: Vec<(Shard, String)>,
    buf: Vec<u8>,
}

impl Ingest {
    /// `upstream`: this input partition's id, and how many input partitions there are.
    pub fn new(
        reader: MessageReader,
        rules: Vec<Rule>,
        allowed_lateness: Millis,
        upstream_id: u64,
        upstreams: u32,
        timing: HeartbeatTiming,
    ) -> Self {
        Ingest {
            reader,
            rules,
            frontier: Frontier::new(allowed_lateness),
            watermark: Millis::MIN,
            upstream: Upstream { id: upstream_id, count: upstreams, watermark: Millis::MIN },
            timing,
            last_message_wall: None,
            last_heartbeat_wall: None,
            last_said: None,
            stats: IngestStats::default(),
            keys: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Takes a reloaded rule set: from the next record on, it is routed by the keys the new
    /// rules keep state under.
    pub fn set_rules(&mut self, rules: Vec<Rule>) {
        self.rules = rules;
    }

    pub fn reader(&self) -> &MessageReader {
        &self.reader
    }

    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    pub fn watermark(&self) -> Millis {
        self.watermark
    }

    /// One input message at `offset`: every event it holds goes out once per shard key.
    pub fn process(
        &mut self,
        msg: &[u8],
        received: Option<Millis>,
        offset: i64,
        wall_ms: i64,
        sink: &mut dyn RecordSink,
    ) -> Processed {
        self.last_message_wall = Some(wall_ms);
        let Ingest { reader, rules, frontier, watermark, upstream, stats, keys, buf, .. } = self;
        let partitions = sink.partitions();
        let mut sub = 0u32;
        reader.read(msg, received, &mut |ev| {
            if !(MIN_TS..=MAX_TS).contains(&ev.ts) {
                stats.out_of_range += 1;
                return;
            }
            if ev.ts < *watermark {
                stats.late += 1;
                return;
            }
            *watermark = (*watermark).max(frontier.observe(ev.ts));
            upstream.watermark = *watermark;
            keys.clear();
            for shard in Shard::ALL {
                for r in rules.iter() {
                    if let Some(k) = r.shard_key(&ev, shard) {
                        if !keys.iter().any(|(s, key)| *s == shard && *key == k) {
                            keys.push((shard, k));
                        }
                    }
                }
            }
            if keys.is_empty() {
                return;
            }
            let tie = ev.tiebreak();
            let mut record = Box::new(EventRecord {
                upstream_id: upstream.id,
                upstream_count: upstream.count,
                watermark_lag: ev.ts.saturating_sub(*watermark),
                offset,
                sub: 0,
                shard: Shard::Source,
                key_hash: 0,
                tie,
                event: WireEvent::from_event(&ev, rules.iter().any(Rule::reads_request)),
            });
            for (shard, key) in keys.drain(..) {
                record.sub = sub;
                sub += 1;
                record.shard = shard;
                record.key_hash = shard.key_hash(&key);
                let p = partition_of(record.key_hash, partitions);
                let rec = Record::Event(record);
                rec.encode_into(buf);
                let Record::Event(r) = rec else { unreachable!("built as an event") };
                record = r;
                sink.send(p, buf);
                stats.records += 1;
                stats.bytes += buf.len() as u64;
                *stats.by_shard.entry(shard.as_str()).or_insert(0) += 1;
            }
        })
    }

    /// Called now and then with the wall time: every `interval`, tells every repartition
    /// partition where this input partition's time stands, and whether it has gone idle: read
    /// to its end (`caught_up`) and quiet for `idle_after`. A partition with records still to
    /// read is never idle, however long the consumer took to come back to it.
    pub fn heartbeat(&mut self, wall_ms: i64, caught_up: bool, sink: &mut dyn RecordSink) {
        let due = self.last_heartbeat_wall.is_none_or(|t| wall_ms - t >= self.timing.interval_ms);
        if !due {
            return;
        }
        let quiet_since = *self.last_message_wall.get_or_insert(wall_ms);
        let idle = caught_up && wall_ms - quiet_since >= self.timing.idle_after_ms;
        let said = (self.watermark, idle);
        // Unchanged news goes out less often; it still goes out, for detect partitions that
        // rebuild from the topic and must hear from every input partition.
        let refresh = self.last_heartbeat_wall.is_none_or(|t| wall_ms - t >= 10 * self.timing.interval_ms);
        if self.last_said == Some(said) && !refresh {
            return;
        }
        self.send_heartbeats(idle, sink);
        self.last_said = Some(said);
        self.last_heartbeat_wall = Some(wall_ms);
    }

    fn send_heartbeats(&mut self, idle: bool, sink: &mut dyn RecordSink) {
        self.upstream.watermark = self.watermark;
        Record::Heartbeat { upstream: self.upstream, idle }.encode_into(&mut self.buf);
        for p in 0..sink.partitions() as i32 {
            sink.send(p, &self.buf);
            self.stats.heartbeats += 1;
        }
    }

    /// End of input (replay of a file, tests): says idle to every partition at once, so that
    /// detect partitions stop waiting for this one.
    pub fn finish(&mut self, sink: &mut dyn RecordSink) {
        self.send_heartbeats(true, sink);
    }
}

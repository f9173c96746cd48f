//! The detect stage: one repartition partition's records → the event-time engine, whose
//! watermark is the minimum over the input partitions it hears from.

use std::collections::HashMap;

use super::wire::{DecodeError, Record, Upstream};
use crate::engine::{Engine, EngineStats};
use crate::event::{Alert, Millis};

/// The watermarks of the input partitions one detect partition hears from.
///
/// Time moves on only once every input partition has been heard from (the count travels in
/// every record), and then to the oldest watermark among those not idle: a slow input
/// partition holds windows open rather than see its events arrive late; a quiet one, once it
/// says it is idle, no longer holds anything up. When every one is idle, time moves to the
/// newest watermark any of them gave.
#[derive(Debug, Default)]
pub struct UpstreamWatermarks {
    expected: u32,
    by: HashMap<u64, (Millis, bool)>,
}

impl UpstreamWatermarks {
    /// Notes what `up` said; a watermark never goes back.
    pub fn update(&mut self, up: &Upstream, idle: bool) {
        self.expected = self.expected.max(up.count);
        let e = self.by.entry(up.id).or_insert((Millis::MIN, idle));
        e.0 = e.0.max(up.watermark);
        e.1 = idle;
    }

    /// The watermark the detect partition may move to, or `None` while some input partition
    /// has not been heard from.
    pub fn current(&self) -> Option<Millis> {
        if self.by.is_empty() || (self.by.len() as u32) < self.expected {
            return None;
        }
        let active = self.by.values().filter(|(_, idle)| !idle).map(|(wm, _)| *wm).min();
        Some(active.unwrap_or_else(|| self.by.values().map(|(wm, _)| *wm).max().unwrap_or(Millis::MIN)))
    }

    /// Newest minus oldest watermark among the active input partitions (ms): how far apart
    /// upstream time is. 0 with fewer than two.
    pub fn skew(&self) -> Millis {
        let active = || self.by.values().filter(|(wm, idle)| !idle && *wm != Millis::MIN).map(|(wm, _)| *wm);
        match (active().min(), active().max()) {
            (Some(lo), Some(hi)) => hi.saturating_sub(lo),
            _ => 0,
        }
    }

    /// Input partitions heard from, and how many there are.
    pub fn heard(&self) -> (usize, u32) {
        (self.by.len(), self.expected)
    }
}

/// Running totals of one detect partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetectStats {
    pub records: u64,
    pub heartbeats: u64,
    /// Records sent again by an ingest that restarted, dropped.
    pub duplicates: u64,
    /// Records that could not be read (another version, corruption), skipped.
    pub undecodable: u64,
}

/// The detect side of one repartition partition.
pub struct Detect {
    engine: Engine,
    upstreams: UpstreamWatermarks,
    /// Per input partition, the last (offset, sub) taken: anything not after it is a repeat.
    last: HashMap<u64, (i64, u32)>,
    stats: DetectStats,
}

impl Detect {
    pub fn new(engine: Engine) -> Self {
        Detect { engine, upstreams: UpstreamWatermarks::default(), last: HashMap::new(), stats: DetectStats::default() }
    }

    /// One repartition record. Alerts raised are appended to `alerts`.
    pub fn process(&mut self, payload: &[u8], alerts: &mut Vec<Alert>) -> Result<(), DecodeError> {
        let rec = match Record::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                self.stats.undecodable += 1;
                return Err(e);
            }
        };
        match rec {
            Record::Heartbeat { upstream, idle } => {
                self.stats.heartbeats += 1;
                self.upstreams.update(&upstream, idle);
            }
            Record::Event(r) => {
                let pos = (r.offset, r.sub);
                let upstream = r.upstream();
                match self.last.get(&upstream.id) {
                    Some(last) if pos <= *last => {
                        self.stats.duplicates += 1;
                        self.upstreams.update(&upstream, false);
                        return Ok(());
                    }
                    _ => {}
                }
                self.last.insert(upstream.id, pos);
                self.stats.records += 1;
                let ev = r.event.into_event();
                self.engine.push_routed(ev, r.tie, r.shard, r.key_hash, alerts);
                self.upstreams.update(&upstream, false);
            }
        }
        if let Some(wm) = self.upstreams.current() {
            self.engine.advance_to(wm, alerts);
        }
        Ok(())
    }

    /// End of input: release everything and close every window.
    pub fn finish(&mut self, alerts: &mut Vec<Alert>) {
        self.engine.flush(alerts);
    }

    /// Takes a reloaded rule set ([`Engine::reconfigure`]).
    pub fn reconfigure(&mut self, rules: Vec<crate::detectors::Rule>) {
        self.engine.reconfigure(rules);
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn engine_stats(&self) -> EngineStats {
        self.engine.stats()
    }

    pub fn upstreams(&self) -> &UpstreamWatermarks {
        &self.upstreams
    }

    pub fn stats(&self) -> &DetectStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(id: u64, count: u32, watermark: Millis) -> Upstream {
        Upstream { id, count, watermark }
    }

    #[test]
    fn time_waits_for_every_input_partition_then_follows_the_slowest() {
        let mut w = UpstreamWatermarks::default();
        w.update(&up(1, 3, 5_000), false);
        w.update(&up(2, 3, 9_000), false);
        assert_eq!(w.current(), None, "one input partition not heard from yet");
        w.update(&up(3, 3, 7_000), false);
        assert_eq!(w.current(), Some(5_000));
        assert_eq!(w.skew(), 4_000);
        w.update(&up(1, 3, 4_000), false);
        assert_eq!(w.current(), Some(5_000), "a watermark never goes back");
    }

    #[test]
    fn a_record_an_ingest_sends_again_after_a_restart_is_taken_once() {
        use crate::event::{Event, Shard};
        use crate::repartition::wire::{EventRecord, WireEvent};
        let rec = |offset: i64, sub: u32| {
            let ev = Event { ts: 10_000 + offset, ..Event::default() };
            Record::Event(Box::new(EventRecord {
                upstream_id: 1,
                upstream_count: 1,
                watermark_lag: 0,
                offset,
                sub,
                shard: Shard::Route,
                key_hash: 7,
                tie: ev.tiebreak(),
                event: WireEvent::from_event(&ev, false),
            }))
            .encode()
        };
        let mut d = Detect::new(Engine::new(Vec::new(), 0, 1000));
        let mut alerts = Vec::new();
        for (o, s) in [(1, 0), (1, 1), (2, 0), (1, 1), (2, 0), (3, 0)] {
            d.process(&rec(o, s), &mut alerts).unwrap();
        }
        assert_eq!(d.stats().records, 4);
        assert_eq!(d.stats().duplicates, 2);
        assert_eq!(d.engine_stats().accepted, 4);
        assert!(d.process(&[0xff], &mut alerts).is_err());
        assert_eq!(d.stats().undecodable, 1);
    }

    #[test]
    fn an_idle_input_partition_holds_nothing_up_until_it_sends_again() {
        let mut w = UpstreamWatermarks::default();
        w.update(&up(1, 2, 1_000), true);
        w.update(&up(2, 2, 60_000), false);
        assert_eq!(w.current(), Some(60_000));
        w.update(&up(1, 2, 1_000), false);
        assert_eq!(w.current(), Some(1_000), "active again: its time counts");
        w.update(&up(2, 2, 60_000), true);
        w.update(&up(1, 2, 2_000), true);
        assert_eq!(w.current(), Some(60_000), "all idle: the newest");
    }
}

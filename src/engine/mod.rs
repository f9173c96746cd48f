//! The event-time engine: orders events, keeps the watermark, drives the rules.
//!
//! Events wait in a reorder buffer (a binary heap, O(log n) per event however
//! disordered the input) until the watermark passes them, then go to every rule
//! in `(ts, content hash)` order. So the order the detectors see, and therefore
//! the alerts, do not depend on how events were interleaved on the way in, as
//! long as none is later than the allowed lateness. Later events are counted
//! and dropped. Replay and the live service run this same code.
//!
//! The watermark is the *frontier* minus the allowed lateness, and the frontier
//! is the [`WATERMARK_QUORUM`]-th newest event time seen, not the newest: one
//! record (or a few) with a timestamp far in the future, which anyone who can
//! write a log line may send, cannot move time on by itself and so cannot make
//! every honest event after it "late". Time arithmetic saturates everywhere; an
//! event time outside [`MIN_TS`, `MAX_TS`] is refused before it reaches the buffer.

pub mod pipeline;

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::detectors::Rule;
use crate::event::{Alert, Event, Millis, Shard};

pub use pipeline::{
    load_files, load_rules, state_size, LiveRules, MessageReader, Pipeline, PipelineFactory, PipelineStats, Processed,
    ReloadReport, StateSize,
};

/// How many events must reach a time before the watermark follows it.
pub const WATERMARK_QUORUM: usize = 3;
/// Earliest event time accepted: the Unix epoch.
pub const MIN_TS: Millis = 0;
/// Latest event time accepted: 9999-12-31T23:59:59.999Z.
pub const MAX_TS: Millis = 253_402_300_799_999;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events accepted into the buffer.
    pub accepted: u64,
    /// Events dropped for arriving behind the watermark.
    pub late: u64,
    /// Events refused for a time outside [`MIN_TS`, `MAX_TS`].
    pub out_of_range: u64,
    /// Events released to the rules.
    pub released: u64,
    /// Times the buffer cap forced the watermark forward.
    pub forced_releases: u64,
    /// Events waiting now.
    pub buffered: usize,
}

struct Pending {
    ts: Millis,
    tie: u64,
    /// Arrival order, so that equal `(ts, tie)` pairs leave in the order they came.
    seq: u64,
    /// Boxed: the heap moves entries on every push and pop, and an event is a few hundred bytes.
    ev: Box<Event>,
    /// Repartitioned: the shard and key ([`Shard::key_hash`]) the event was routed by; it goes
    /// only to the rules that keep it under that very key. `None`: every rule sees it whole.
    routed: Option<(Shard, u64)>,
}

impl Pending {
    fn key(&self) -> (Millis, u64, u64) {
        (self.ts, self.tie, self.seq)
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// Where event time stands in one stream: the [`WATERMARK_QUORUM`] newest event times seen,
/// and the watermark they allow (the oldest of them minus the allowed lateness).
#[derive(Clone, Debug)]
pub struct Frontier {
    /// The newest times seen, oldest first.
    newest: [Millis; WATERMARK_QUORUM],
    /// Newest event time seen at all.
    max_ts: Millis,
    lateness: Millis,
}

impl Frontier {
    pub fn new(allowed_lateness: Millis) -> Self {
        Frontier { newest: [Millis::MIN; WATERMARK_QUORUM], max_ts: Millis::MIN, lateness: allowed_lateness.max(0) }
    }

    /// Counts `ts` in and returns the watermark the stream allows now.
    pub fn observe(&mut self, ts: Millis) -> Millis {
        if self.max_ts == Millis::MIN {
            // The first event stands for the quorum until others come.
            self.newest = [ts; WATERMARK_QUORUM];
        }
        self.max_ts = self.max_ts.max(ts);
        if ts > self.newest[0] {
            self.newest[0] = ts;
            self.newest.sort_unstable();
        }
        self.newest[0].saturating_sub(self.lateness)
    }

    /// Newest event time seen, `Millis::MIN` before the first.
    pub fn max_ts(&self) -> Millis {
        self.max_ts
    }
}

/// The event-time engine of one stream: a reorder buffer, a watermark and the rules it drives.
pub struct Engine {
    rules: Vec<Rule>,
    buffer: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    max_buffered: usize,
    frontier: Frontier,
    /// Newest event time pushed (closes windows at the end of input).
    max_ts: Millis,
    /// Everything strictly before this has been released.
    watermark: Millis,
    last_tick: Millis,
    stats: EngineStats,
}

/// How often (in event time) rules get a watermark tick.
const TICK: Millis = 1_000;

impl Engine {
    pub fn new(rules: Vec<Rule>, allowed_lateness: Millis, max_buffered: usize) -> Self {
        Engine {
            rules,
            buffer: BinaryHeap::new(),
            seq: 0,
            max_buffered: max_buffered.max(1),
            frontier: Frontier::new(allowed_lateness),
            max_ts: Millis::MIN,
            watermark: Millis::MIN,
            last_tick: Millis::MIN,
            stats: EngineStats::default(),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Takes a reloaded rule set: a rule whose id and [`Rule::state_digest`] are unchanged
    /// keeps its state and adopts the new settings; a new or changed rule starts empty; a
    /// rule no longer there is dropped with its open windows. Buffered events are kept and
    /// go to the new set.
    pub fn reconfigure(&mut self, fresh: Vec<Rule>) {
        let mut old: std::collections::HashMap<String, Rule> =
            self.rules.drain(..).map(|r| (r.id.clone(), r)).collect();
        self.rules = fresh
            .into_iter()
            .map(|f| match old.remove(&f.id) {
                Some(mut kept) if kept.state_digest == f.state_digest => {
                    kept.adopt_settings(&f);
                    kept
                }
                _ => f,
            })
            .collect();
    }

    pub fn watermark(&self) -> Millis {
        self.watermark
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats { buffered: self.buffer.len(), ..self.stats }
    }

    /// Offers one event; the watermark follows the events offered ([`Frontier`]). Returns
    /// `false` if it was dropped: too late, or out of range.
    pub fn push(&mut self, ev: Event, out: &mut Vec<Alert>) -> bool {
        let ts = ev.ts;
        let tie = ev.tiebreak();
        if !self.buffer_event(ev, tie, None) {
            return false;
        }
        let target = self.frontier.observe(ts);
        self.release_before(target, out);
        self.enforce_cap(out);
        true
    }

    /// Offers one repartitioned event, routed by `shard` and a key (its hash), whose order among equal
    /// times (`tie`, [`Event::tiebreak`] of the whole event) was taken before the fields the
    /// rules do not read were left behind. The watermark moves only by [`Self::advance_to`]:
    /// it is the upstream partitions' to set. Returns `false` if the event was dropped.
    pub fn push_routed(&mut self, ev: Event, tie: u64, shard: Shard, key_hash: u64, out: &mut Vec<Alert>) -> bool {
        if !self.buffer_event(ev, tie, Some((shard, key_hash))) {
            return false;
        }
        self.enforce_cap(out);
        true
    }

    fn buffer_event(&mut self, ev: Event, tie: u64, routed: Option<(Shard, u64)>) -> bool {
        if !(MIN_TS..=MAX_TS).contains(&ev.ts) {
            self.stats.out_of_range += 1;
            return false;
        }
        if ev.ts < self.watermark {
            self.stats.late += 1;
            return false;
        }
        self.stats.accepted += 1;
        let ts = ev.ts;
        self.seq += 1;
        self.buffer.push(Reverse(Pending { ts, tie, seq: self.seq, ev: Box::new(ev), routed }));
        self.max_ts = self.max_ts.max(ts);
        true
    }

    /// Past the buffer cap, time is forced forward to the oldest waiting event.
    fn enforce_cap(&mut self, out: &mut Vec<Alert>) {
        while self.buffer.len() > self.max_buffered {
            self.stats.forced_releases += 1;
            let ts = self.buffer.peek().map(|p| p.0.ts).unwrap_or(self.watermark);
            self.release_before(ts.saturating_add(1), out);
        }
    }

    /// Moves the watermark to `wm` (never backwards), releasing what precedes it.
    pub fn advance_to(&mut self, wm: Millis, out: &mut Vec<Alert>) {
        self.release_before(wm, out);
    }

    /// End of input: release everything and let rules close their windows.
    pub fn flush(&mut self, out: &mut Vec<Alert>) {
        let end = self.watermark.max(self.max_ts.saturating_add(1));
        self.release_before(end, out);
        // Close every window still open.
        let final_wm = end.saturating_add(24 * 3_600_000);
        for r in &mut self.rules {
            r.on_watermark(final_wm, out);
        }
    }

    fn release_before(&mut self, target: Millis, out: &mut Vec<Alert>) {
        if target <= self.watermark {
            return;
        }
        while self.buffer.peek().is_some_and(|p| p.0.ts < target) {
            let Reverse(p) = self.buffer.pop().expect("peeked");
            self.tick(p.ts, out);
            match &p.routed {
                None => {
                    for r in &mut self.rules {
                        r.on_event(&p.ev, out);
                    }
                }
                Some((shard, key_hash)) => {
                    for r in &mut self.rules {
                        if r.shard_key(&p.ev, *shard).is_some_and(|k| shard.key_hash(&k) == *key_hash) {
                            r.on_shard_event(&p.ev, *shard, out);
                        }
                    }
                }
            }
            self.stats.released += 1;
        }
        self.watermark = target;
        self.tick(target, out);
    }

    fn tick(&mut self, now: Millis, out: &mut Vec<Alert>) {
        if self.last_tick == Millis::MIN || now.saturating_sub(self.last_tick) >= TICK {
            self.last_tick = now;
            for r in &mut self.rules {
                r.on_watermark(now, out);
            }
        }
    }
}

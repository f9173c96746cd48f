//! The event-time engine: orders events, keeps the watermark, drives the rules.
//!
//! Events wait in a reorder buffer until the watermark (newest event time seen
//! minus the allowed lateness) passes them, then go to every rule in
//! `(ts, content hash)` order. So the order the detectors see, and therefore
//! the alerts, do not depend on how events were interleaved on the way in, as
//! long as none is later than the allowed lateness. Later events are counted
//! and dropped. Replay and the live service run this same code.

use std::collections::VecDeque;

use crate::detectors::Rule;
use crate::event::{Alert, Event, Millis};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Events accepted into the buffer.
    pub accepted: u64,
    /// Events dropped for arriving behind the watermark.
    pub late: u64,
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
    ev: Event,
}

pub struct Engine {
    rules: Vec<Rule>,
    buffer: VecDeque<Pending>,
    lateness: Millis,
    max_buffered: usize,
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
            buffer: VecDeque::new(),
            lateness: allowed_lateness.max(0),
            max_buffered: max_buffered.max(1),
            max_ts: Millis::MIN,
            watermark: Millis::MIN,
            last_tick: Millis::MIN,
            stats: EngineStats::default(),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn watermark(&self) -> Millis {
        self.watermark
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats { buffered: self.buffer.len(), ..self.stats }
    }

    /// Offers one event. Returns `false` if it was too late and dropped.
    pub fn push(&mut self, ev: Event, out: &mut Vec<Alert>) -> bool {
        if ev.ts < self.watermark {
            self.stats.late += 1;
            return false;
        }
        self.stats.accepted += 1;
        let p = Pending { ts: ev.ts, tie: ev.tiebreak(), ev };
        // Nearly sorted input: find the slot from the back.
        let key = (p.ts, p.tie);
        let mut i = self.buffer.len();
        while i > 0 {
            let q = &self.buffer[i - 1];
            if (q.ts, q.tie) <= key {
                break;
            }
            i -= 1;
        }
        if p.ts > self.max_ts {
            self.max_ts = p.ts;
        }
        self.buffer.insert(i, p);
        let target = self.max_ts.saturating_sub(self.lateness);
        self.release_before(target, out);
        while self.buffer.len() > self.max_buffered {
            self.stats.forced_releases += 1;
            let ts = self.buffer.front().map(|p| p.ts).unwrap_or(self.watermark);
            self.release_before(ts + 1, out);
        }
        true
    }

    /// Moves the watermark to `wm` (never backwards), releasing what precedes it.
    pub fn advance_to(&mut self, wm: Millis, out: &mut Vec<Alert>) {
        self.release_before(wm, out);
    }

    /// End of input: release everything and let rules close their windows.
    pub fn flush(&mut self, out: &mut Vec<Alert>) {
        let end = self.buffer.back().map(|p| p.ts + 1).unwrap_or(self.watermark).max(self.max_ts.saturating_add(1));
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
        while self.buffer.front().is_some_and(|p| p.ts < target) {
            let p = self.buffer.pop_front().expect("front exists");
            self.tick(p.ts, out);
            for r in &mut self.rules {
                r.on_event(&p.ev, out);
            }
            self.stats.released += 1;
        }
        self.watermark = target;
        self.tick(target, out);
    }

    fn tick(&mut self, now: Millis, out: &mut Vec<Alert>) {
        if self.last_tick == Millis::MIN || now - self.last_tick >= TICK {
            self.last_tick = now;
            for r in &mut self.rules {
                r.on_watermark(now, out);
            }
        }
    }
}

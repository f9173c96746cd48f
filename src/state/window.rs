//! Sliding windows over event time, fed in time order.

use std::collections::VecDeque;

use crate::event::Millis;

/// Counts events in the last `window`, remembering at most `cap` timestamps
/// (enough to know the count reached a threshold).
#[derive(Clone, Debug, Default)]
pub struct SlidingCount {
    times: VecDeque<Millis>,
}

impl SlidingCount {
    pub fn push(&mut self, ts: Millis, window: Millis, cap: usize) {
        self.expire(ts, window);
        if self.times.len() >= cap {
            self.times.pop_front();
        }
        self.times.push_back(ts);
    }

    pub fn expire(&mut self, now: Millis, window: Millis) {
        while self.times.front().is_some_and(|t| *t <= now - window) {
            self.times.pop_front();
        }
    }

    pub fn count(&self) -> usize {
        self.times.len()
    }

    pub fn first(&self) -> Option<Millis> {
        self.times.front().copied()
    }

    pub fn clear(&mut self) {
        self.times.clear();
    }

    /// Read-only: the events held that are still in the `window` ending at `now` (what
    /// [`SlidingCount::count`] is once expired at `now`), and the earliest of them.
    pub fn within(&self, now: Millis, window: Millis) -> (usize, Option<Millis>) {
        let from = now.saturating_sub(window);
        let mut live = self.times.iter().filter(|t| **t > from);
        let first = live.next().copied();
        (first.map_or(0, |_| 1 + live.count()), first)
    }
}

/// Distinct values seen in the last `window`, each with its last-seen time and a count.
#[derive(Clone, Debug)]
pub struct SlidingSet<T> {
    items: Vec<(T, Millis, Millis, u32)>, // value, first seen, last seen, hits
}

impl<T> Default for SlidingSet<T> {
    fn default() -> Self {
        SlidingSet { items: Vec::new() }
    }
}

impl<T: PartialEq + Clone> SlidingSet<T> {
    /// Records `v` at `ts`; keeps at most `cap` distinct values (oldest dropped).
    pub fn insert(&mut self, v: T, ts: Millis, window: Millis, cap: usize) {
        self.expire(ts, window);
        if let Some(e) = self.items.iter_mut().find(|e| e.0 == v) {
            e.2 = ts;
            e.3 += 1;
            return;
        }
        if self.items.capacity() == 0 {
            // Most keys only ever see one value: do not allocate room for four.
            self.items.reserve_exact(1);
        }
        if self.items.len() >= cap {
            let oldest = self.items.iter().enumerate().min_by_key(|(_, e)| e.2).map(|(i, _)| i).unwrap_or(0);
            self.items.remove(oldest);
        }
        self.items.push((v, ts, ts, 1));
    }

    pub fn expire(&mut self, now: Millis, window: Millis) {
        self.items.retain(|e| e.2 > now - window);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// (value, first seen, last seen, hits)
    pub fn iter(&self) -> impl Iterator<Item = &(T, Millis, Millis, u32)> {
        self.items.iter()
    }

    pub fn earliest(&self) -> Option<Millis> {
        self.items.iter().map(|e| e.1).min()
    }

    /// Read-only: the values still in the `window` ending at `now` (those
    /// [`SlidingSet::expire`] at `now` would keep), as (value, first seen, last seen, hits).
    pub fn within(&self, now: Millis, window: Millis) -> impl Iterator<Item = &(T, Millis, Millis, u32)> {
        let from = now.saturating_sub(window);
        self.items.iter().filter(move |e| e.2 > from)
    }
}

/// Two counts (`total`, `hits`) over a sliding window, kept in fixed time
/// buckets: memory per key is bounded by the bucket count, whatever the rate.
#[derive(Clone, Debug, Default)]
pub struct BucketCounter {
    buckets: VecDeque<(Millis, u32, u32)>, // bucket start, total, hits
    total: u64,
    hits: u64,
}

impl BucketCounter {
    /// Adds one event at `ts`; `hit` says whether it counts toward `hits`.
    pub fn add(&mut self, ts: Millis, hit: bool, window: Millis, bucket: Millis) {
        self.expire(ts, window);
        // Most events land in the newest bucket: found without a division (a 64-bit
        // `rem_euclid` per call was most of this function's time).
        if let Some(b) = self.buckets.back_mut().filter(|b| ts >= b.0 && ts - b.0 < bucket) {
            b.1 += 1;
            b.2 += hit as u32;
            self.total += 1;
            self.hits += hit as u64;
            return;
        }
        let start = ts - ts.rem_euclid(bucket);
        match self.buckets.back_mut() {
            Some(b) if b.0 == start => {
                b.1 += 1;
                b.2 += hit as u32;
            }
            _ => {
                if self.buckets.capacity() == 0 {
                    // Under a flood most keys see one event: one bucket, not room for four.
                    self.buckets.reserve_exact(1);
                }
                self.buckets.push_back((start, 1, hit as u32))
            }
        }
        self.total += 1;
        self.hits += hit as u64;
    }

    pub fn expire(&mut self, now: Millis, window: Millis) {
        while let Some(b) = self.buckets.front() {
            if b.0 <= now - window {
                self.total -= b.1 as u64;
                self.hits -= b.2 as u64;
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Start of the earliest bucket holding a hit.
    pub fn first_hit(&self) -> Option<Millis> {
        self.buckets.iter().find(|b| b.2 > 0).map(|b| b.0)
    }

    /// Read-only: (`total`, `hits`, start of the earliest bucket holding a hit) over the
    /// buckets still in the `window` ending at `now` (what they are once expired at `now`).
    pub fn within(&self, now: Millis, window: Millis) -> (u64, u64, Option<Millis>) {
        let from = now.saturating_sub(window);
        let (mut total, mut hits, mut first_hit) = (0u64, 0u64, None);
        for b in self.buckets.iter().filter(|b| b.0 > from) {
            total += b.1 as u64;
            hits += b.2 as u64;
            if b.2 > 0 && first_hit.is_none() {
                first_hit = Some(b.0);
            }
        }
        (total, hits, first_hit)
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any times (late ones and negative ones too) give the buckets a division per call
        /// gives: each event counted in the bucket its time falls in.
        #[test]
        fn bucket_counter_buckets_as_dividing_each_time_would(
            steps in proptest::collection::vec((-3_000i64..20_000, proptest::bool::ANY), 1..200),
            start in -100_000i64..100_000,
            bucket in 1i64..5_000,
        ) {
            let window = bucket * 6;
            let mut c = BucketCounter::default();
            let mut model: VecDeque<(Millis, u32, u32)> = VecDeque::new();
            let mut ts = start;
            for (step, hit) in steps {
                ts += step;
                c.add(ts, hit, window, bucket);
                while model.front().is_some_and(|b| b.0 <= ts - window) {
                    model.pop_front();
                }
                let at = ts - ts.rem_euclid(bucket);
                match model.back_mut() {
                    Some(b) if b.0 == at => {
                        b.1 += 1;
                        b.2 += hit as u32;
                    }
                    _ => model.push_back((at, 1, hit as u32)),
                }
                proptest::prop_assert_eq!(&c.buckets, &model);
                proptest::prop_assert_eq!(c.total(), model.iter().map(|b| b.1 as u64).sum::<u64>());
                proptest::prop_assert_eq!(c.hits(), model.iter().map(|b| b.2 as u64).sum::<u64>());
            }
        }
    }

    #[test]
    fn bucket_counter_slides() {
        let mut c = BucketCounter::default();
        for t in 0..100 {
            c.add(t * 1000, t % 2 == 0, 60_000, 10_000);
        }
        // window (39s, 99s]: buckets starting 40s..90s survive
        assert_eq!(c.total(), 60);
        assert_eq!(c.hits(), 30);
        assert_eq!(c.first_hit(), Some(40_000));
    }

    #[test]
    fn sliding_count_expires() {
        let mut c = SlidingCount::default();
        for t in 0..10 {
            c.push(t * 1000, 5000, 100);
        }
        assert_eq!(c.count(), 5);
        assert_eq!(c.first(), Some(5000));
        c.push(100_000, 5000, 100);
        assert_eq!(c.count(), 1);
    }

    #[test]
    fn within_reads_what_expiring_would_keep_without_expiring() {
        let mut c = BucketCounter::default();
        for t in 0..100 {
            c.add(t * 1000, t % 2 == 0, 60_000, 10_000);
        }
        assert_eq!(c.within(99_000, 60_000), (60, 30, Some(40_000)));
        assert_eq!(c.within(200_000, 60_000), (0, 0, None));
        assert_eq!((c.total(), c.hits()), (60, 30), "nothing expired");
        let mut n = SlidingCount::default();
        for t in 0..10 {
            n.push(t * 1000, 100_000, 100);
        }
        assert_eq!(n.within(12_000, 5000), (2, Some(8000)));
        assert_eq!(n.count(), 10);
        let mut s = SlidingSet::default();
        s.insert("a", 0, 10_000, 8);
        s.insert("b", 5000, 10_000, 8);
        assert_eq!(s.within(12_000, 10_000).map(|e| e.0).collect::<Vec<_>>(), ["b"]);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn sliding_set_counts_distinct_and_expires() {
        let mut s = SlidingSet::default();
        s.insert("a", 0, 10_000, 8);
        s.insert("b", 1000, 10_000, 8);
        s.insert("a", 2000, 10_000, 8);
        assert_eq!(s.len(), 2);
        s.insert("c", 11_500, 10_000, 8);
        assert_eq!(s.len(), 2); // b expired (last seen 1000), a last seen 2000 kept
    }
}

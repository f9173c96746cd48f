//! Per-key state with a cap and idle eviction.
//!
//! Beyond the cap, the least recently seen of a small sample of keys is evicted
//! (Redis-style approximate LRU): O(1) per insert, so a flood of distinct keys
//! degrades detection for the quietest keys first and shows in [`StateStats`].

use std::hash::Hash;

use indexmap::IndexMap;

use crate::event::Millis;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateStats {
    pub keys: usize,
    pub evicted_idle: u64,
    pub evicted_cap: u64,
}

pub struct KeyedState<K, V> {
    map: IndexMap<K, (Millis, V)>,
    cap: usize,
    idle: Millis,
    last_sweep: Millis,
    rng: u64,
    stats: StateStats,
}

const SAMPLE: usize = 8;

impl<K: Hash + Eq + Clone, V> KeyedState<K, V> {
    pub fn new(cap: usize, idle_timeout: Millis) -> Self {
        KeyedState {
            map: IndexMap::new(),
            cap: cap.max(1),
            idle: idle_timeout,
            last_sweep: Millis::MIN,
            rng: 0x9e37_79b9_7f4a_7c15,
            stats: StateStats::default(),
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: deterministic, so eviction (and thus alerts) is reproducible.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The state for `key`, created with `init` if absent; marks it seen at `now`.
    pub fn entry(&mut self, key: &K, now: Millis, init: impl FnOnce() -> V) -> &mut V {
        if let Some(i) = self.map.get_index_of(key) {
            let (_, slot) = self.map.get_index_mut(i).expect("index valid");
            slot.0 = slot.0.max(now);
            return &mut slot.1;
        }
        if self.map.len() >= self.cap {
            self.evict_one();
        }
        let (i, _) = self.map.insert_full(key.clone(), (now, init()));
        &mut self.map.get_index_mut(i).expect("just inserted").1 .1
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key).map(|(_, v)| v)
    }

    fn evict_one(&mut self) {
        let n = self.map.len();
        if n == 0 {
            return;
        }
        let mut victim = (self.next_rand() as usize) % n;
        for _ in 1..SAMPLE.min(n) {
            let i = (self.next_rand() as usize) % n;
            if self.map[i].0 < self.map[victim].0 {
                victim = i;
            }
        }
        self.map.swap_remove_index(victim);
        self.stats.evicted_cap += 1;
    }

    /// Drops keys idle for longer than the idle timeout. Cheap to call often:
    /// it scans at most once per tenth of the timeout of event time.
    pub fn sweep(&mut self, now: Millis) {
        if self.last_sweep != Millis::MIN && now - self.last_sweep < (self.idle / 10).max(1000) {
            return;
        }
        self.last_sweep = now;
        let before = self.map.len();
        let idle = self.idle;
        self.map.retain(|_, (seen, _)| now - *seen <= idle);
        self.stats.evicted_idle += (before - self.map.len()) as u64;
    }

    /// Drops keys for which `keep` says no.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.map.retain(|k, (_, v)| keep(k, v));
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.map.iter_mut().map(|(k, (_, v))| (k, v))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn stats(&self) -> StateStats {
        StateStats { keys: self.map.len(), ..self.stats }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_never_exceeded_and_recent_keys_survive() {
        let mut s: KeyedState<u32, u32> = KeyedState::new(100, 1_000_000);
        // a hot key touched every step survives a flood of one-off keys
        for i in 0..10_000u32 {
            *s.entry(&0, i as i64, || 0) += 1;
            s.entry(&(i + 1), i as i64, || 0);
            assert!(s.len() <= 100);
        }
        assert_eq!(s.get(&0), Some(&10_000));
        assert!(s.stats().evicted_cap > 9000);
    }

    #[test]
    fn idle_keys_are_swept() {
        let mut s: KeyedState<u32, ()> = KeyedState::new(100, 10_000);
        s.entry(&1, 0, || ());
        s.entry(&2, 9_000, || ());
        s.sweep(15_000);
        assert!(s.get(&1).is_none());
        assert!(s.get(&2).is_some());
        assert_eq!(s.stats().evicted_idle, 1);
    }
}

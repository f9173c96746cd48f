//! Per-key state with a cap and idle eviction.
//!
//! Keys live in two tiers. A key touched with a *hit* ([`KeyedState::entry_hit`]; for
//! `auth_failure_spike` a hit is a failed authentication) is **protected** for the hit
//! protection time after its last hit (the detector's window: as long as the hit still counts);
//! every other key is unprotected. Beyond the cap, the victim is an unprotected key whenever
//! there is one, and a protected key only when every key is protected. Within a tier the victim
//! is the least recently seen of a small sample of keys (Redis-style approximate LRU).
//!
//! So a flood of distinct one-off keys (2M addresses each calling once) evicts other one-off
//! keys, never a slow brute force whose failures are still in the window; and it shows in
//! [`StateStats`], with the evictions that had to take a protected key counted apart.
//!
//! Layout: one [`IndexMap`] whose first `hot` entries are the protected tier and the rest the
//! unprotected one. Moving a key between tiers swaps it with the entry at the border
//! ([`IndexMap::swap_indices`]), so lookups, inserts, promotions and evictions are O(1);
//! protection that ran out is taken back by a scan of the protected tier at most once per tenth
//! of the protection time of event time (amortised O(1) per event), or at once when such a key
//! is seen again without a hit.

use std::hash::Hash;

use indexmap::IndexMap;

use crate::event::Millis;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateStats {
    pub keys: usize,
    /// Keys dropped for having been idle longer than the idle timeout.
    pub evicted_idle: u64,
    /// Keys dropped to stay under the cap (including `evicted_cap_protected`).
    pub evicted_cap: u64,
    /// Of `evicted_cap`, keys that were protected by a recent hit: every key held one, so the
    /// cap is too small for what is under attack and detection degrades.
    pub evicted_cap_protected: u64,
}

impl std::ops::Add for StateStats {
    type Output = StateStats;

    fn add(self, o: StateStats) -> StateStats {
        StateStats {
            keys: self.keys + o.keys,
            evicted_idle: self.evicted_idle + o.evicted_idle,
            evicted_cap: self.evicted_cap + o.evicted_cap,
            evicted_cap_protected: self.evicted_cap_protected + o.evicted_cap_protected,
        }
    }
}

/// Why keys left a detector's state: the closed set of the `reason` label of
/// `gatewatch_state_evictions_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EvictionReason {
    /// Idle longer than the idle timeout.
    Idle,
    /// Evicted at the cap, without a recent hit.
    Cap,
    /// Evicted at the cap although protected by a recent hit (every key was).
    CapProtected,
}

impl EvictionReason {
    pub const ALL: [EvictionReason; 3] = [EvictionReason::Idle, EvictionReason::Cap, EvictionReason::CapProtected];

    pub fn as_str(self) -> &'static str {
        match self {
            EvictionReason::Idle => "idle",
            EvictionReason::Cap => "cap",
            EvictionReason::CapProtected => "cap_protected",
        }
    }
}

impl StateStats {
    /// Keys evicted for `reason` (the reasons are disjoint; they sum to every eviction).
    pub fn evicted(&self, reason: EvictionReason) -> u64 {
        match reason {
            EvictionReason::Idle => self.evicted_idle,
            EvictionReason::Cap => self.evicted_cap - self.evicted_cap_protected,
            EvictionReason::CapProtected => self.evicted_cap_protected,
        }
    }
}

struct Slot<V> {
    /// Latest event time the key was seen at.
    seen: Millis,
    /// The key is protected from cap eviction while event time is before this.
    protected_until: Millis,
    value: V,
}

pub struct KeyedState<K, V> {
    /// Entries `..hot` are protected, entries `hot..` are not.
    /// Iterated in insertion order, never hash order, so the hasher changes no result.
    map: IndexMap<K, Slot<V>, ahash::RandomState>,
    hot: usize,
    cap: usize,
    idle: Millis,
    /// How long a hit protects its key; 0 = [`KeyedState::entry_hit`] protects nothing.
    protect: Millis,
    last_sweep: Millis,
    last_unprotect: Millis,
    rng: u64,
    stats: StateStats,
}

const SAMPLE: usize = 8;

impl<K: Hash + Eq + Clone, V> KeyedState<K, V> {
    pub fn new(cap: usize, idle_timeout: Millis) -> Self {
        KeyedState {
            map: IndexMap::with_hasher(ahash::RandomState::new()),
            hot: 0,
            cap: cap.max(1),
            idle: idle_timeout,
            protect: 0,
            last_sweep: Millis::MIN,
            last_unprotect: Millis::MIN,
            rng: 0x9e37_79b9_7f4a_7c15,
            stats: StateStats::default(),
        }
    }

    /// A hit (see [`KeyedState::entry_hit`]) protects its key from cap eviction for `protect`
    /// of event time: the detector's window, as long as the hit counts.
    pub fn with_hit_protection(mut self, protect: Millis) -> Self {
        self.protect = protect.max(0);
        self
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: deterministic, so eviction (and thus alerts) is reproducible.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The state for `key`, created with `init` if absent; marks it seen at `now`.
    ///
    /// `key` may be a borrowed form of the key (`&str` for a `String` key): it is copied only
    /// when the key is new.
    pub fn entry<Q>(&mut self, key: &Q, now: Millis, init: impl FnOnce() -> V) -> &mut V
    where
        Q: ?Sized + Hash + indexmap::Equivalent<K> + ToOwned<Owned = K>,
    {
        self.entry_hit(key, now, false, init)
    }

    /// As [`KeyedState::entry`]; a `hit` also protects the key from cap eviction for the hit
    /// protection time from `now`.
    pub fn entry_hit<Q>(&mut self, key: &Q, now: Millis, hit: bool, init: impl FnOnce() -> V) -> &mut V
    where
        Q: ?Sized + Hash + indexmap::Equivalent<K> + ToOwned<Owned = K>,
    {
        self.entry_hit_by(key, |k| k.to_owned(), now, hit, init)
    }

    /// As [`KeyedState::entry_hit`], for a borrowed form that `ToOwned` cannot express (an enum
    /// whose variants borrow their strings): `owned` makes the key, only when it is new. `key`
    /// must hash as the key it stands for.
    pub fn entry_hit_by<Q>(
        &mut self,
        key: &Q,
        owned: impl FnOnce(&Q) -> K,
        now: Millis,
        hit: bool,
        init: impl FnOnce() -> V,
    ) -> &mut V
    where
        Q: ?Sized + Hash + indexmap::Equivalent<K>,
    {
        let hit = hit && self.protect > 0;
        if let Some(mut i) = self.map.get_index_of(key) {
            let slot = &mut self.map[i];
            slot.seen = slot.seen.max(now);
            if hit {
                slot.protected_until = slot.protected_until.max(now.saturating_add(self.protect));
            }
            let protected = slot.protected_until > now;
            if i >= self.hot && protected {
                i = self.protect_at(i);
            } else if i < self.hot && !protected {
                i = self.unprotect_at(i);
            }
            return &mut self.map[i].value;
        }
        if self.map.len() >= self.cap {
            self.evict_one(now);
        }
        let protected_until = if hit { now.saturating_add(self.protect) } else { Millis::MIN };
        let (mut i, _) = self.map.insert_full(owned(key), Slot { seen: now, protected_until, value: init() });
        if hit {
            i = self.protect_at(i);
        }
        &mut self.map[i].value
    }

    /// Moves the unprotected entry at `i` into the protected tier; returns its new index.
    fn protect_at(&mut self, i: usize) -> usize {
        debug_assert!(i >= self.hot);
        self.map.swap_indices(i, self.hot);
        self.hot += 1;
        self.hot - 1
    }

    /// Moves the protected entry at `i` into the unprotected tier; returns its new index.
    fn unprotect_at(&mut self, i: usize) -> usize {
        debug_assert!(i < self.hot);
        self.hot -= 1;
        self.map.swap_indices(i, self.hot);
        self.hot
    }

    /// Whether `key` is held, looked up by a borrowed form (`&str` for a `String` key).
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + indexmap::Equivalent<K>,
    {
        self.map.contains_key(key)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|s| &s.value)
    }

    /// As [`KeyedState::get`], looked up by a borrowed form of the key (`&str` for a `String`
    /// key). Read-only: the key is not marked seen.
    pub fn get_by<Q>(&self, key: &Q) -> Option<&V>
    where
        Q: ?Sized + Hash + indexmap::Equivalent<K>,
    {
        self.map.get(key).map(|s| &s.value)
    }

    /// The latest event time `key` was seen at, if it is held. Read-only.
    pub fn last_seen<Q>(&self, key: &Q) -> Option<Millis>
    where
        Q: ?Sized + Hash + indexmap::Equivalent<K>,
    {
        self.map.get(key).map(|s| s.seen)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key).map(|s| &mut s.value)
    }

    fn evict_one(&mut self, now: Millis) {
        let n = self.map.len();
        if n == 0 {
            return;
        }
        let victim = if self.hot < n {
            // the least recently seen of a sample of unprotected keys
            let m = n - self.hot;
            let mut victim = self.hot + (self.next_rand() as usize) % m;
            for _ in 1..SAMPLE.min(m) {
                let i = self.hot + (self.next_rand() as usize) % m;
                if self.map[i].seen < self.map[victim].seen {
                    victim = i;
                }
            }
            victim
        } else {
            // every key is protected: one whose protection ran out since the last scan first,
            // then the least recently seen
            let rank = |s: &Slot<V>| (s.protected_until > now, s.seen);
            let mut victim = (self.next_rand() as usize) % n;
            for _ in 1..SAMPLE.min(n) {
                let i = (self.next_rand() as usize) % n;
                if rank(&self.map[i]) < rank(&self.map[victim]) {
                    victim = i;
                }
            }
            if self.map[victim].protected_until > now {
                self.stats.evicted_cap_protected += 1;
            }
            self.unprotect_at(victim)
        };
        // The last entry moves into the victim's place: both are unprotected (or the last is
        // the victim), so the protected tier stays a prefix.
        self.map.swap_remove_index(victim);
        self.stats.evicted_cap += 1;
    }

    /// Drops keys idle for longer than the idle timeout, and takes back protection that ran
    /// out. Cheap to call often: each scan runs at most once per tenth of its timeout of event
    /// time.
    pub fn sweep(&mut self, now: Millis) {
        if self.hot > 0
            && (self.last_unprotect == Millis::MIN || now - self.last_unprotect >= (self.protect / 10).max(1000))
        {
            self.last_unprotect = now;
            // From the top of the protected tier down: what is above `i` is checked and kept.
            for i in (0..self.hot).rev() {
                if self.map[i].protected_until <= now {
                    self.unprotect_at(i);
                }
            }
        }
        if self.last_sweep != Millis::MIN && now - self.last_sweep < (self.idle / 10).max(1000) {
            return;
        }
        self.last_sweep = now;
        let before = self.map.len();
        let idle = self.idle;
        self.retain_slots(|_, s| now - s.seen <= idle);
        self.stats.evicted_idle += (before - self.map.len()) as u64;
    }

    /// Drops keys for which `keep` says no.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.retain_slots(|k, s| keep(k, &mut s.value));
    }

    /// `IndexMap::retain` keeps the order, so the protected tier stays a prefix: count what
    /// is kept of it.
    fn retain_slots(&mut self, mut keep: impl FnMut(&K, &mut Slot<V>) -> bool) {
        let (hot, mut seen, mut kept_hot) = (self.hot, 0usize, 0usize);
        self.map.retain(|k, s| {
            let kept = keep(k, s);
            if seen < hot && kept {
                kept_hot += 1;
            }
            seen += 1;
            kept
        });
        self.hot = kept_hot;
    }

    /// Every key held and its state, read-only (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, s)| (k, &s.value))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.map.iter_mut().map(|(k, s)| (k, &mut s.value))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Keys protected by a recent hit (as of the last scan or touch).
    pub fn protected(&self) -> usize {
        self.hot
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

    #[test]
    fn a_key_with_a_recent_hit_outlives_a_flood_of_newer_keys() {
        let mut s: KeyedState<u32, u32> = KeyedState::new(100, 10_000_000).with_hit_protection(600_000);
        // key 0 is hit once, then never seen again while 100k newer keys go through the cap
        *s.entry_hit(&0, 0, true, || 0) += 1;
        for i in 1..100_000u32 {
            s.entry(&i, i as i64, || 0);
            assert!(s.len() <= 100);
        }
        assert_eq!(s.get(&0), Some(&1), "protected for 10 minutes of event time");
        assert_eq!(s.protected(), 1);
        let st = s.stats();
        assert_eq!((st.evicted_cap, st.evicted_cap_protected), (100_000 - 100, 0));
        // once its protection ran out (and the scan took it back) it is an ordinary old key
        s.sweep(700_000);
        assert_eq!(s.protected(), 0);
        for i in 0..1_000u32 {
            s.entry(&(200_000 + i), 700_000 + i as i64, || 0);
        }
        assert!(s.get(&0).is_none());
    }

    #[test]
    fn protected_keys_are_evicted_only_when_every_key_is_protected() {
        let mut s: KeyedState<u32, ()> = KeyedState::new(10, 10_000_000).with_hit_protection(600_000);
        for k in 0..10u32 {
            s.entry_hit(&k, k as i64, k < 9, || ());
        }
        assert_eq!(s.protected(), 9);
        // new unprotected keys only ever replace the one unprotected slot
        for k in 10..1_000u32 {
            s.entry(&k, k as i64, || ());
            assert!((0..9).all(|p| s.get(&p).is_some()), "a protected key was evicted for {k}");
        }
        assert_eq!(s.stats().evicted_cap_protected, 0);
        // a new protected key with every slot protected: the least recently seen one goes
        s.entry_hit(&999, 1_000, true, || ());
        s.entry_hit(&5_000, 2_000, true, || ());
        assert_eq!(s.len(), 10);
        assert_eq!(s.stats().evicted_cap_protected, 1);
        assert_eq!(s.protected(), 10);
    }

    #[test]
    fn a_protected_key_seen_again_after_its_protection_is_unprotected_at_once() {
        let mut s: KeyedState<u32, ()> = KeyedState::new(10, 10_000_000).with_hit_protection(1_000);
        s.entry_hit(&1, 0, true, || ());
        s.entry_hit(&2, 0, true, || ());
        assert_eq!(s.protected(), 2);
        s.entry(&1, 500, || ());
        assert_eq!(s.protected(), 2, "still within its protection");
        s.entry(&1, 1_000, || ());
        assert_eq!(s.protected(), 1);
        s.entry_hit(&1, 1_500, true, || ());
        assert_eq!(s.protected(), 2);
        // retain and idle sweeps keep the tiers consistent
        s.entry(&3, 1_500, || ());
        s.retain(|k, _| *k != 2);
        assert_eq!((s.len(), s.protected()), (2, 1));
        s.sweep(20_000_000);
        assert_eq!((s.len(), s.protected()), (0, 0));
    }

    #[test]
    fn read_only_lookups_change_nothing() {
        let mut s: KeyedState<String, u32> = KeyedState::new(2, 10_000);
        *s.entry("a", 5, || 0) += 1;
        s.entry("b", 7, || 0);
        assert_eq!(s.get_by("a"), Some(&1));
        assert_eq!(s.last_seen("b"), Some(7));
        assert_eq!((s.get_by("c"), s.last_seen("c")), (None, None));
        let mut all: Vec<(&String, &u32)> = s.iter().collect();
        all.sort();
        assert_eq!(all, [(&"a".to_string(), &1), (&"b".to_string(), &0)]);
        // looking did not mark `a` seen
        assert_eq!(s.last_seen("a"), Some(5));
    }

    #[test]
    fn without_hit_protection_a_hit_protects_nothing() {
        let mut s: KeyedState<u32, ()> = KeyedState::new(10, 10_000_000);
        s.entry_hit(&1, 0, true, || ());
        assert_eq!(s.protected(), 0);
    }
}

//! Field values a scrubber found clean, remembered so that the same value is not scanned again.
//!
//! A gateway's user agents, hosts and referers repeat: the simulated hour of NGINX traffic has
//! 150,000 lines and a few hundred distinct user agents, and a clean 100-byte user agent costs
//! a scan of about 900 instructions. A value found here costs a hash and a byte comparison.
//!
//! - **Exact.** A hit compares every byte; a hash only names the slot. A value that differs
//!   from a clean one by one byte is scanned.
//! - **Only clean values** are kept: a value in which anything was found is scanned each time,
//!   so its exposures are reported each time.
//! - **One scrubber at a time.** A value is clean for the rules that judged it. The cache
//!   belongs to the scrubber that last used it on this thread, and starts afresh when another
//!   one does.
//! - **Per thread**: the reading threads share one scrubber and never wait for each other here.
//! - **Bounded**: direct-mapped (a value goes in the slot its hash names, replacing what was
//!   there) with [`SLOTS`] slots of at most [`MAX_LEN`] bytes, 188 KiB per thread, allocated
//!   on first use. Longer values are always scanned.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots in a thread's cache.
pub const SLOTS: usize = 1024;
/// The longest value kept (bytes); most user agents fit.
pub const MAX_LEN: usize = 184;

struct Cache {
    owner: u64,
    hasher: ahash::RandomState,
    /// Each slot's length; 0 is an empty slot (an empty value is never kept).
    lens: Box<[u8; SLOTS]>,
    bytes: Box<[[u8; MAX_LEN]; SLOTS]>,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// A new scrubber's name in the cache: never the same twice in a process.
pub fn new_owner() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn with_cache<R>(owner: u64, f: impl FnOnce(&mut Cache) -> R) -> R {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let cache = c.get_or_insert_with(|| Cache {
            owner,
            hasher: ahash::RandomState::new(),
            lens: Box::new([0; SLOTS]),
            bytes: vec![[0u8; MAX_LEN]; SLOTS].into_boxed_slice().try_into().expect("SLOTS slots"),
        });
        if cache.owner != owner {
            cache.owner = owner;
            cache.lens.fill(0);
        }
        f(cache)
    })
}

impl Cache {
    fn slot(&self, v: &[u8]) -> usize {
        (self.hasher.hash_one(v) as usize) % SLOTS
    }
}

/// Whether `owner` found `v` clean before, on this thread, and it is still remembered.
pub fn known_clean(owner: u64, v: &[u8]) -> bool {
    if v.is_empty() || v.len() > MAX_LEN {
        return false;
    }
    with_cache(owner, |c| {
        let i = c.slot(v);
        usize::from(c.lens[i]) == v.len() && &c.bytes[i][..v.len()] == v
    })
}

/// Remembers that `owner` found `v` clean.
pub fn remember_clean(owner: u64, v: &[u8]) {
    if v.is_empty() || v.len() > MAX_LEN {
        return;
    }
    with_cache(owner, |c| {
        let i = c.slot(v);
        c.lens[i] = v.len() as u8;
        c.bytes[i][..v.len()].copy_from_slice(v);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_bytes_for_the_same_owner_are_known() {
        let (a, b) = (new_owner(), new_owner());
        assert_ne!(a, b);
        assert!(!known_clean(a, b"Mozilla/5.0"));
        remember_clean(a, b"Mozilla/5.0");
        assert!(known_clean(a, b"Mozilla/5.0"));
        assert!(!known_clean(a, b"Mozilla/5.1"), "one byte differs");
        assert!(!known_clean(a, b"Mozilla/5.0 "), "longer");
        assert!(!known_clean(a, b"Mozilla/5."), "shorter");
        // another scrubber: a value is clean for the rules that judged it
        assert!(!known_clean(b, b"Mozilla/5.0"));
        assert!(!known_clean(a, b"Mozilla/5.0"), "the cache started afresh for b");
    }

    #[test]
    fn empty_and_long_values_are_never_kept() {
        let a = new_owner();
        remember_clean(a, b"");
        assert!(!known_clean(a, b""));
        let long = vec![b'x'; MAX_LEN + 1];
        remember_clean(a, &long);
        assert!(!known_clean(a, &long));
        let fits = vec![b'x'; MAX_LEN];
        remember_clean(a, &fits);
        assert!(known_clean(a, &fits));
    }

    #[test]
    fn a_colliding_value_replaces_the_slot_and_is_never_mistaken_for_it() {
        let a = new_owner();
        let values: Vec<String> = (0..4 * SLOTS).map(|i| format!("agent/{i}")).collect();
        for v in &values {
            remember_clean(a, v.as_bytes());
            assert!(known_clean(a, v.as_bytes()));
        }
        // many were evicted, none is mistaken for another, nothing else is known
        let kept = values.iter().filter(|v| known_clean(a, v.as_bytes())).count();
        assert!(kept > 0 && kept <= SLOTS, "{kept}");
        assert!(!known_clean(a, b"agent/never-seen"));
    }
}

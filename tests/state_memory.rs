//! What detector state costs under a flood of distinct keys, measured by counting the heap
//! bytes alive (a counting global allocator), not estimated. The figures are in README.md
//! (Memory under a flood); this test prints them and fails when per-key memory grows past
//! what is written there.
//!
//! One test function: the allocator counts the whole process, so measurements must not run
//! alongside one another.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};

use gatewatch::detectors::testing::{ev, file_from_toml};
use gatewatch::detectors::{auth_failure_spike, Detector, Limits};
use gatewatch::engine::{load_rules, Engine};
use gatewatch::event::{Event, Fingerprint};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const MIN: i64 = 60_000;

/// The `i`-th of a flood of distinct addresses, scattered over the IPv4 space (so nearly every
/// one is in its own /24 too: the worst case for the network key).
fn addr(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)))
}

/// Flood event `i`: a distinct address, a distinct token, one call to one route, `status`.
fn flood_event(i: u32, ts: i64, status: u16) -> Event {
    let mut e = ev(ts).get("/v1/items").status(status).build();
    e.source_ip = Some(addr(i));
    e.token_fingerprint = Some(Fingerprint((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes()));
    e
}

/// Heap bytes per key of an `auth_failure_spike` at `cap` after a flood of `n` events.
fn auth_failure_spike_bytes_per_key(cap: usize, n: u32, status: u16) -> (f64, usize) {
    let file = file_from_toml("auth_failure_spike", "");
    let before = live();
    let mut d: Box<dyn Detector> =
        auth_failure_spike::build(&file, Limits { max_keys: cap, idle_timeout: 2 * 3_600_000 }).expect("valid");
    let mut out = Vec::new();
    let span = 10 * MIN;
    for i in 0..n {
        let ts = i as i64 * span / n as i64;
        if i % 1000 == 0 {
            d.on_watermark(ts, &mut out);
        }
        d.on_event(&flood_event(i, ts, status), &mut out);
    }
    drop(out);
    let keys = d.stats().keys;
    let bytes = (live() - before) as f64;
    drop(d);
    (bytes / keys as f64, keys)
}

#[test]
fn state_memory_per_key_and_under_a_flood() {
    // auth_failure_spike alone, at the default cap: every address, network and token is a key
    let cap = Limits::default().max_keys;
    let (ok_per_key, keys) = auth_failure_spike_bytes_per_key(cap, 1_000_000, 200);
    eprintln!("auth_failure_spike, 1M distinct addresses+tokens, one success each: {keys} keys, {ok_per_key:.0} B/key");
    assert_eq!(keys, cap);
    let (fail_per_key, _) = auth_failure_spike_bytes_per_key(cap, 1_000_000, 401);
    eprintln!("auth_failure_spike, 1M distinct addresses+tokens, one failure each: {fail_per_key:.0} B/key");
    assert!(ok_per_key <= 300.0, "{ok_per_key:.0} bytes per key (README says at most 300)");
    assert!(fail_per_key <= 300.0, "{fail_per_key:.0} bytes per key (README says at most 300)");

    // the five shipped detectors at the default cap: 2M distinct addresses and tokens in 20 minutes
    let mut cfg = gatewatch::config::GatewatchConfig::default();
    cfg.detectors.dir = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors").into());
    let before = live();
    let mut engine = Engine::new(load_rules(&cfg).expect("shipped detectors"), 0, usize::MAX);
    let mut alerts = Vec::new();
    let n = 2_000_000u32;
    for i in 0..n {
        let ts = 1_800_000_000_000 + i as i64 * 20 * MIN / n as i64;
        engine.push(flood_event(i, ts, 200), &mut alerts);
    }
    let total = (live() - before) as f64 / 1e6;
    let keys: usize = engine.rules().iter().map(|r| r.stats().keys).sum();
    let per_rule: Vec<String> = engine.rules().iter().map(|r| format!("{} {}", r.id, r.stats().keys)).collect();
    eprintln!("shipped detectors, 2M distinct addresses+tokens: {total:.1} MB live for {keys} keys ({per_rule:?})");
    assert!(alerts.is_empty(), "one success per address and token is not an attack");
    assert!(total < 120.0, "{total:.1} MB (README says under 120 MB)");
}

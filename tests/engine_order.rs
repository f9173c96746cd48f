//! Property: shuffling events within the allowed lateness yields identical alerts
//! (same ids, same order), because the engine orders by event time behind the
//! watermark. Uses the shipped detector files.

use gatewatch::config::GatewatchConfig;
use gatewatch::detectors::testing::ev;
use gatewatch::engine::load_rules;
use gatewatch::engine::Engine;
use gatewatch::event::{Alert, Event};
use proptest::prelude::*;

const LATENESS: i64 = 30_000;

fn rules() -> Vec<gatewatch::detectors::Rule> {
    let mut cfg = GatewatchConfig::default();
    cfg.detectors.dir = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors").into());
    load_rules(&cfg).expect("shipped detectors load")
}

/// Traffic with a brute force, a stolen token and a 403 burst hidden in it.
fn traffic(seed: u64) -> Vec<Event> {
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    for i in 0..1500i64 {
        let ts = i * 400 + (rnd() % 400) as i64;
        let c = (rnd() % 40) as u8;
        let status = if rnd() % 50 == 0 { 401 } else { 200 };
        out.push(
            ev(ts)
                .ip(&format!("198.51.{}.{}", c, 10 + c))
                .client(&format!("app-{c}"))
                .token(c)
                .scopes(&["orders:read"])
                .get(&format!("/v1/orders/{}", rnd() % 1000))
                .status(status)
                .build(),
        );
    }
    for i in 0..40i64 {
        out.push(ev(100_000 + i * 3_000).ip("203.0.113.66").post("/login").status(401).build());
    }
    for (i, net) in [11u8, 45, 91, 150, 185, 201].iter().enumerate() {
        out.push(
            ev(200_000 + i as i64 * 10_000)
                .ip(&format!("{net}.20.30.40"))
                .client("app-7")
                .token(7)
                .scopes(&["orders:read"])
                .get("/v1/orders/1")
                .build(),
        );
    }
    for i in 0..15i64 {
        out.push(
            ev(300_000 + i * 2_000)
                .client("app-9")
                .token(9)
                .scopes(&["orders:read"])
                .get("/admin/keys")
                .status(403)
                .build(),
        );
    }
    out.sort_by_key(|e| e.ts);
    out
}

fn run(events: Vec<Event>) -> Vec<Alert> {
    let mut engine = Engine::new(rules(), LATENESS, usize::MAX);
    let mut alerts = Vec::new();
    for e in events {
        assert!(engine.push(e, &mut alerts), "no event may be late in this test");
    }
    engine.flush(&mut alerts);
    alerts
}

#[test]
fn the_planted_attacks_are_found() {
    let alerts = run(traffic(42));
    let kinds: Vec<(&str, &str)> = alerts.iter().map(|a| (a.detector.as_str(), a.entity.kind.as_str())).collect();
    assert!(kinds.contains(&("auth_failure_spike", "source_ip")), "{kinds:?}");
    assert!(kinds.contains(&("token_reuse", "token")), "{kinds:?}");
    assert!(kinds.contains(&("scope_misuse", "token")), "{kinds:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn shuffling_within_lateness_changes_nothing(seed in 1u64..u64::MAX, delays in proptest::collection::vec(0i64..LATENESS, 1600)) {
        let events = traffic(seed);
        let expected = run(events.clone());
        // arrival time = event time + a delay below the allowed lateness
        let mut arrivals: Vec<(i64, usize, Event)> =
            events.into_iter().enumerate().map(|(i, e)| (e.ts + delays[i % delays.len()], i, e)).collect();
        arrivals.sort_by_key(|(t, i, _)| (*t, *i));
        let shuffled = run(arrivals.into_iter().map(|(_, _, e)| e).collect());
        prop_assert_eq!(expected, shuffled);
    }
}

#[test]
fn events_beyond_the_lateness_are_counted_and_dropped() {
    let mut engine = Engine::new(rules(), LATENESS, usize::MAX);
    let mut alerts = Vec::new();
    assert!(engine.push(ev(100_000).ip("192.0.2.1").get("/a").build(), &mut alerts));
    assert!(!engine.push(ev(100_000 - LATENESS - 1).ip("192.0.2.1").get("/a").build(), &mut alerts));
    assert!(engine.push(ev(100_000 - LATENESS + 1).ip("192.0.2.1").get("/a").build(), &mut alerts));
    assert_eq!(engine.stats().late, 1);
    assert_eq!(engine.stats().accepted, 2);
}

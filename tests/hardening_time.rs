//! Issue 12, findings 1–4: whoever writes a log line controls its timestamp and its
//! bytes. One record must not blind detection, hang the engine, or hide itself.
//!
//! Each test replays the simulated hour (Kong format, 7 attacks) through the same
//! pipeline as `gatewatch replay`, with hostile records mixed in, and compares the
//! alerts with those of the clean hour: same ids, same order.

use std::sync::mpsc;
use std::time::Duration;

use gatewatch::app::replay::{replay, ReplaySummary};
use gatewatch::config::{GatewatchConfig, DEV_FINGERPRINT_KEY};
use gatewatch::engine::Pipeline;
use gatewatch::event::Alert;
use gatewatch::normalize::Format;
use gatewatch::simulate::{render::render, simulate, SimConfig, Simulation};

fn config() -> GatewatchConfig {
    let mut cfg = GatewatchConfig::default();
    cfg.detectors.dir = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors").into());
    cfg
}

fn lines(sim: &Simulation) -> Vec<String> {
    sim.records.iter().map(|r| render(r, Format::Kong)).collect()
}

fn run_with(cfg: &GatewatchConfig, lines: &[String]) -> (Vec<Alert>, ReplaySummary) {
    replay_with(cfg, Format::Kong, (lines.join("\n") + "\n").as_bytes())
}

fn replay_bytes(format: Format, input: &[u8]) -> (Vec<Alert>, ReplaySummary) {
    replay_with(&config(), format, input)
}

fn replay_with(cfg: &GatewatchConfig, format: Format, input: &[u8]) -> (Vec<Alert>, ReplaySummary) {
    let mut pipeline = Pipeline::from_config(cfg, format, DEV_FINGERPRINT_KEY.as_bytes()).expect("config");
    let mut alerts = Vec::new();
    let summary = replay(
        &mut pipeline,
        input,
        &mut |a| {
            alerts.push(a.clone());
            Ok(())
        },
        &mut |_| {},
    )
    .expect("replay");
    (alerts, summary)
}

fn ids(alerts: &[Alert]) -> Vec<String> {
    alerts.iter().map(|a| format!("{} {} {}", a.id, a.detector, a.entity.id)).collect()
}

/// A copy of a Kong line with its time replaced by `ts` (a JSON value).
fn with_time(line: &str, ts: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["started_at"] = serde_json::from_str(ts).unwrap();
    v.to_string()
}

#[test]
fn a_record_from_the_far_future_does_not_blind_detection() {
    let sim = simulate(&SimConfig::default());
    let clean = lines(&sim);
    let (reference, _) = run_with(&config(), &clean);
    assert!(reference.len() >= 7, "the clean hour alerts");
    let start = sim.records[0].ts;
    for ahead in [
        // 9999-12-31T23:59:59Z, and two hours ahead: either used to drop what came after it
        253_402_300_799_000 - start,
        2 * 3_600_000,
    ] {
        let mut hostile = clean.clone();
        hostile.insert(1, with_time(&clean[1], &(start + ahead).to_string()));
        let (alerts, summary) = run_with(&config(), &hostile);
        assert!(summary.engine.late <= 1, "{ahead} ms ahead: {} events dropped as late", summary.engine.late);
        // Every alert of the clean hour, and nothing else but what the copied record itself
        // says: a token accepted two hours after it expired (token_claims, `expired`).
        let (got, want) = (ids(&alerts), ids(&reference));
        assert!(want.iter().all(|w| got.contains(w)), "{ahead} ms ahead: the clean hour's alerts:\n{got:#?}");
        let extra: Vec<&Alert> = alerts.iter().filter(|a| !reference.iter().any(|r| r.id == a.id)).collect();
        assert!(
            extra.iter().all(|a| a.detector == "token_claims" && a.evidence["check"] == "expired"),
            "{ahead} ms ahead: nothing but the record's own expired token: {extra:#?}"
        );
        assert!(extra.len() <= 1, "{extra:#?}");
    }
}

#[test]
fn a_saturating_timestamp_cannot_hang_the_engine() {
    // `1e300` used to saturate to i64::MAX; with a full buffer the release then wrapped and
    // never ended. Run it on a thread: a hang fails the test instead of stalling CI.
    let sim = simulate(&SimConfig::default());
    let mut input = lines(&sim);
    input.truncate(1000);
    let normal = input[10].clone();
    for _ in 0..50 {
        input.push(with_time(&normal, "1e300"));
        input.push(with_time(&normal, "9.2e25"));
        input.push(with_time(&normal, "-5"));
    }
    input.extend(lines(&sim).into_iter().skip(1000).take(500));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut cfg = config();
        cfg.engine.max_buffered_events = 5;
        let _ = tx.send(run_with(&cfg, &input));
    });
    let (_, summary) = rx.recv_timeout(Duration::from_secs(120)).expect("replay finishes");
    assert_eq!(summary.stats.events, 1500, "the hostile times are refused, the rest read");
    assert_eq!(summary.stats.rejected.get("bad_timestamp").copied().unwrap_or(0), 150, "{:?}", summary.stats);
}

#[test]
fn the_kafka_time_bounds_a_record_time() {
    // Live, a record time ahead of its Kafka timestamp by more than max_future_skew is
    // clamped to it: three forged records cannot move time either.
    let sim = simulate(&SimConfig::default());
    let clean = lines(&sim);
    let run = |msgs: &[(String, i64)]| {
        let mut p = Pipeline::from_config(&config(), Format::Kong, DEV_FINGERPRINT_KEY.as_bytes()).unwrap();
        let mut alerts = Vec::new();
        let mut clamped = 0;
        for (m, received) in msgs {
            clamped += p.process(m.as_bytes(), Some(*received), &mut alerts).clamped_future;
        }
        p.finish(&mut alerts);
        (alerts, clamped, p.engine_stats().late)
    };
    let msgs: Vec<(String, i64)> = clean.iter().cloned().zip(sim.records.iter().map(|r| r.ts + 500)).collect();
    let (reference, clamped, _) = run(&msgs);
    assert_eq!(clamped, 0, "honest records are never clamped");
    let mut hostile = msgs.clone();
    let far = (sim.records[0].ts + 30 * 86_400_000).to_string();
    for i in 0..20 {
        let (line, received) = &msgs[100 + i];
        let forged = with_time(line, &far);
        hostile.insert(101 + 2 * i, (forged, *received));
    }
    let (alerts, clamped, late) = run(&hostile);
    assert_eq!(clamped, 20);
    assert_eq!(late, 0);
    assert_eq!(
        alerts.iter().filter(|a| ids(&reference).contains(&format!("{} {} {}", a.id, a.detector, a.entity.id))).count(),
        reference.len(),
        "every alert of the clean hour still raised"
    );
}

#[test]
fn a_byte_that_is_not_utf8_does_not_hide_a_record() {
    // 40 failed logins whose user agent holds \xff used to be rejected `not_json`.
    let t0 = 1_795_257_000_000i64;
    let mut input = Vec::new();
    for i in 0..40 {
        input.extend_from_slice(
            format!(
                r#"{{"started_at":{},"client_ip":"203.0.113.9","request":{{"method":"POST","uri":"/login","url":"http://api/login","headers":{{"user-agent":"curl"#,
                t0 + i * 5_000
            )
            .as_bytes(),
        );
        input.push(0xff);
        input.extend_from_slice(br#"/8"}},"response":{"status":401},"latencies":{"request":12,"kong":1,"proxy":10}}"#);
        input.push(b'\n');
    }
    let (alerts, summary) = replay_bytes(Format::Kong, &input);
    assert_eq!(summary.stats.rejected_total(), 0, "{:?}", summary.stats.rejected);
    assert_eq!(summary.stats.lossy_utf8, 40);
    assert!(
        alerts.iter().any(|a| a.detector == "auth_failure_spike" && a.entity.id == "203.0.113.9"),
        "the brute force is found: {alerts:?}"
    );
    // NGINX text likewise
    let mut nginx = Vec::new();
    for i in 0..40 {
        let t = chrono::DateTime::from_timestamp_millis(t0 + i * 5_000).unwrap().format("%d/%b/%Y:%H:%M:%S +0000");
        nginx.extend_from_slice(
            format!("203.0.113.10 - - [{t}] \"POST /login HTTP/1.1\" 401 12 \"-\" \"curl").as_bytes(),
        );
        nginx.push(0xfe);
        nginx.extend_from_slice(b"\"\n");
    }
    let (alerts, summary) = replay_bytes(Format::Nginx, &nginx);
    assert_eq!(summary.stats.rejected_total(), 0, "{:?}", summary.stats.rejected);
    assert!(alerts.iter().any(|a| a.entity.id == "203.0.113.10"), "NGINX brute force found");
}

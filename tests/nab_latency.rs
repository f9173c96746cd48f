//! `latency_anomaly` on real series from the Numenta Anomaly Benchmark (tests/data/nab/).
//!
//! Each NAB series becomes one route's traffic: every 5-minute row turns into 150 requests
//! (30 a minute, spread evenly over the row's interval) whose latencies follow a fixed
//! log-normal shape around the row's value, so a bucket's p50 is the row's value and its p95
//! about 1.5× it. No randomness: the same file gives the same events. Values are rescaled so
//! the median of the series' NAB probation period (its first 15 %, at most 750 rows) is
//! 200 ms, a typical API route; the rescaling uses only data the detector would have seen.
//!
//! The traffic goes through `Engine` + `Rule` built from detector-file TOML text, and each
//! alert's detection time (its `window_end`, when it is raised) is matched to the labelled
//! windows (labels/combined_windows.json): a window is caught if an alert is raised inside
//! it; an alert raised outside every window is a false alert. The table is printed; the
//! assertions are floors on what the detector catches today and ceilings on false alerts.
//!
//! Run with `cargo test --release --test nab_latency -- --nocapture` to see the table
//! (about 7 million events; release takes ~10 s).
//!
//! In debug builds this currently panics inside `Rule::on_watermark` (src/detectors/rule.rs):
//! its first cooldown sweep computes `wm - Millis::MIN`, which overflows. In release the
//! subtraction wraps, the sweep never runs and `last_fired` is never pruned. That is a bug
//! in the rule wrapper, not here; once fixed this test runs in debug too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gatewatch::config::DetectorFile;
use gatewatch::detectors::{build_rule, Limits};
use gatewatch::engine::Engine;
use gatewatch::event::{Alert, Event, Millis};

mod nab_support;
use nab_support::inv_norm;

const EVENTS_PER_ROW: usize = 150;
const ROW: Millis = 5 * 60_000;
const TARGET_MEDIAN_MS: f64 = 200.0;
/// Log-normal shape of request latencies within a row (σ of ln latency).
const SIGMA: f64 = 0.25;

/// The series used, with the role each plays.
const SERIES: &[&str] = &[
    // A real request-latency series (AWS CloudWatch), three labelled failures.
    "realKnownCause/ec2_request_latency_system_failure.csv",
    // Resource series read as latency (CPU load and request latency move together).
    "realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv",
    "realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv",
    // No labelled anomaly: every alert is a false one.
    "realAWSCloudwatch/ec2_cpu_utilization_c6585a.csv",
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nab")
}

fn load_series(name: &str) -> Vec<(Millis, f64)> {
    nab_support::load_series(&data_dir().join(name))
}

fn load_windows() -> BTreeMap<String, Vec<(Millis, Millis)>> {
    nab_support::load_windows(&data_dir().join("combined_windows.json"))
}

/// One route's requests for a series: `EVENTS_PER_ROW` per row, latencies log-normal
/// around the rescaled row value, in a fixed shuffled order.
fn traffic(series: &[(Millis, f64)], route: &str) -> Vec<Event> {
    let probation = ((series.len() as f64 * 0.15) as usize).clamp(1, 750);
    let mut head: Vec<f64> = series[..probation].iter().map(|r| r.1).collect();
    head.sort_by(f64::total_cmp);
    let median = head[head.len() / 2];
    let scale = if median > 0.0 { TARGET_MEDIAN_MS / median } else { 1.0 };
    let shape: Vec<f64> =
        (0..EVENTS_PER_ROW).map(|j| (SIGMA * inv_norm((j as f64 + 0.5) / EVENTS_PER_ROW as f64)).exp()).collect();
    let mut out = Vec::with_capacity(series.len() * EVENTS_PER_ROW);
    for (i, &(ts, value)) in series.iter().enumerate() {
        let next = series.get(i + 1).map(|r| r.0).unwrap_or(ts + ROW);
        let span = if next > ts { (next - ts).min(ROW) } else { ROW };
        let level = (value * scale).max(0.5);
        for j in 0..EVENTS_PER_ROW {
            // 37 is coprime with 150: every shape value once per row, in a scattered order.
            let k = (j * 37 + i * 11) % EVENTS_PER_ROW;
            out.push(Event {
                ts: ts + (j as Millis * span) / EVENTS_PER_ROW as Millis,
                gateway: "generic",
                method: Some("GET".into()),
                path: Some("/nab".into()),
                route: Some(route.into()),
                status: Some(200),
                latency_ms: Some(level * shape[k]),
                request_id: Some(format!("{i}-{j}").into()),
                ..Default::default()
            });
        }
    }
    // Rows sharing a timestamp (the latency series has a few) overlap; deliver in time order
    // as a gateway's log would be.
    out.sort_by_key(|e| e.ts);
    out
}

fn run(detector_toml: &str, events: Vec<Event>) -> Vec<Alert> {
    let file = DetectorFile::parse(detector_toml, Path::new("nab.toml")).expect("detector file parses");
    let rule = build_rule(&file, Limits::default()).expect("rule builds");
    let mut engine = Engine::new(vec![rule], 30_000, 100_000);
    let mut alerts = Vec::new();
    for e in events {
        assert!(engine.push(e, &mut alerts), "no event is late");
    }
    engine.flush(&mut alerts);
    alerts
}

#[derive(Debug, Default, Clone, Copy)]
struct Score {
    windows: usize,
    caught: usize,
    alerts: usize,
    outside: usize,
}

fn score(alerts: &[Alert], windows: &[(Millis, Millis)]) -> Score {
    let inside = |t: Millis| windows.iter().any(|(a, b)| *a <= t && t <= *b);
    Score {
        windows: windows.len(),
        caught: windows.iter().filter(|(a, b)| alerts.iter().any(|x| *a <= x.window_end && x.window_end <= *b)).count(),
        alerts: alerts.len(),
        outside: alerts.iter().filter(|x| !inside(x.window_end)).count(),
    }
}

/// The shipped defaults, verbatim.
fn shipped() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("detectors/latency-anomaly.toml"))
        .expect("shipped detector file")
}

/// A more sensitive profile (a slow bucket is +25 % and 3σ over baseline, at least 20 ms),
/// fixed before looking at the results, for routes where smaller regressions matter.
const SENSITIVE: &str = r#"
id = "latency-anomaly-sensitive"
kind = "latency_anomaly"
cooldown = "30m"
[params]
factor = 1.25
min_increase_ms = 20.0
dispersion_z = 3.0
"#;

fn evaluate(name: &str, toml: &str) -> (BTreeMap<&'static str, Score>, Vec<String>) {
    let windows = load_windows();
    let mut table = BTreeMap::new();
    let mut lines = Vec::new();
    for series in SERIES {
        let rows = load_series(series);
        let route = format!("GET /nab/{}", series.rsplit('/').next().unwrap().trim_end_matches(".csv"));
        let alerts = run(toml, traffic(&rows, &route));
        for a in &alerts {
            assert_eq!(a.entity.id, route);
            assert_eq!(a.detector, "latency_anomaly");
            lines.push(format!("  [{name}] {series} {} {}", gatewatch::event::format_ts(a.window_end), a.summary));
        }
        table.insert(*series, score(&alerts, &windows[*series]));
    }
    (table, lines)
}

fn print_table(name: &str, t: &BTreeMap<&str, Score>) {
    println!("\nlatency_anomaly on NAB, profile `{name}`");
    println!("{:<58} {:>16} {:>7} {:>16}", "series", "windows caught", "alerts", "outside windows");
    let mut total = Score::default();
    for (s, x) in t {
        println!("{:<58} {:>12} / {:<2} {:>7} {:>16}", s, x.caught, x.windows, x.alerts, x.outside);
        total.windows += x.windows;
        total.caught += x.caught;
        total.alerts += x.alerts;
        total.outside += x.outside;
    }
    println!("{:<58} {:>12} / {:<2} {:>7} {:>16}", "total", total.caught, total.windows, total.alerts, total.outside);
}

#[test]
fn nab_windows_caught_and_false_alerts() {
    let (shipped_t, shipped_l) = evaluate("shipped", &shipped());
    let (sens_t, sens_l) = evaluate("sensitive", SENSITIVE);
    print_table("shipped (detectors/latency-anomaly.toml)", &shipped_t);
    print_table("sensitive", &sens_t);
    println!("\nalerts:");
    for l in shipped_l.iter().chain(&sens_l) {
        println!("{l}");
    }

    let sum = |t: &BTreeMap<&str, Score>| t.values().fold((0, 0), |(c, o), x| (c + x.caught, o + x.outside));
    let (shipped_caught, shipped_outside) = sum(&shipped_t);
    let (sens_caught, sens_outside) = sum(&sens_t);
    // Floors and ceilings from what the detector does today (printed above); a change that
    // catches less or cries wolf more fails here.
    assert!(shipped_caught >= SHIPPED_CAUGHT_FLOOR, "shipped caught {shipped_caught}");
    assert!(shipped_outside <= SHIPPED_OUTSIDE_CEILING, "shipped false alerts {shipped_outside}");
    assert!(sens_caught >= SENSITIVE_CAUGHT_FLOOR, "sensitive caught {sens_caught}");
    assert!(sens_outside <= SENSITIVE_OUTSIDE_CEILING, "sensitive false alerts {sens_outside}");
    // The real latency series: the failure on 2014-03-18 (rows at 1.2–2.2× the usual latency
    // over half an hour, peaking at 99 ms against ~45 ms) is caught by both profiles.
    for t in [&shipped_t, &sens_t] {
        let ec2 = t["realKnownCause/ec2_request_latency_system_failure.csv"];
        assert!(ec2.caught >= 1, "{ec2:?}");
    }
    // The series without labelled anomalies stays quiet.
    assert_eq!(shipped_t["realAWSCloudwatch/ec2_cpu_utilization_c6585a.csv"].alerts, 0);
    assert_eq!(sens_t["realAWSCloudwatch/ec2_cpu_utilization_c6585a.csv"].alerts, 0);
}

// What the detector does today (see the table): 8 of 11 windows with 3 false alerts (shipped),
// 8 of 11 with 6 (sensitive). Before record highs: 6 of 11 with 1, and 6 of 11 with 2. The
// sensitive profile's sixth came with `widen_up_to` 2 h (was 30 min): the 64-minute gap in
// `ec2_request_latency_system_failure` (2014-03-09) is now walked bucket by bucket, not skipped,
// and the highs after it differ: one small record moved a day earlier, and one more (+1 %,
// 2014-03-11) passes the sensitive profile's 20 ms floor.
const SHIPPED_CAUGHT_FLOOR: usize = 8;
const SHIPPED_OUTSIDE_CEILING: usize = 3;
const SENSITIVE_CAUGHT_FLOOR: usize = 8;
const SENSITIVE_OUTSIDE_CEILING: usize = 6;

//! Normalize + engine + every shipped detector, single thread, on simulated
//! traffic (realistic records: 300 clients, token rotation, attacks), per format.
//! Also the engine and detectors alone, on already-normalized events, so the
//! parse cost and the detection cost can be told apart.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gatewatch::config::{GatewatchConfig, DEV_FINGERPRINT_KEY};
use gatewatch::engine::load_rules;
use gatewatch::engine::Engine;
use gatewatch::engine::Pipeline;
use gatewatch::normalize::{Format, Normalizer};
use gatewatch::simulate::{render::render, simulate, SimConfig};

/// The allocator the binary ships with (src/main.rs), so figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn config() -> GatewatchConfig {
    let mut cfg = GatewatchConfig::default();
    cfg.detectors.dir = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors").into());
    cfg
}

fn bench(c: &mut Criterion) {
    let sim = simulate(&SimConfig { duration_ms: 20 * 60_000, ..SimConfig::default() });
    let cfg = config();
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    for format in [Format::Kong, Format::Envoy, Format::Generic] {
        let lines: Vec<String> = sim.records.iter().map(|r| render(r, format)).collect();
        let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        for (unit, tp) in [("records", Throughput::Elements(lines.len() as u64)), ("bytes", Throughput::Bytes(bytes))] {
            g.throughput(tp);
            g.bench_with_input(BenchmarkId::new(format.name(), unit), &lines, |b, lines| {
                b.iter(|| {
                    let mut p = Pipeline::from_config(&cfg, format, DEV_FINGERPRINT_KEY.as_bytes()).unwrap();
                    let mut alerts = Vec::new();
                    for l in lines {
                        p.process(l.as_bytes(), None, &mut alerts);
                    }
                    p.finish(&mut alerts);
                    assert!(!alerts.is_empty());
                    alerts.len()
                })
            });
        }
    }
    g.finish();

    // Detection alone: events already normalized.
    let n = Normalizer::from_config(&cfg, Format::Kong, DEV_FINGERPRINT_KEY.as_bytes());
    let events: Vec<_> =
        sim.records.iter().map(|r| n.normalize_record(render(r, Format::Kong).as_bytes()).expect("reads")).collect();
    let mut g = c.benchmark_group("engine+detectors");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events.len() as u64));
    // Loading the detector files and compiling the Sigma rules is set-up, not detection.
    g.bench_function("events", |b| {
        b.iter_batched(
            || (events.clone(), load_rules(&cfg).unwrap()),
            |(events, rules)| {
                let mut e = Engine::new(rules, 30_000, 2_000_000);
                let mut alerts = Vec::new();
                for ev in events {
                    e.push(ev, &mut alerts);
                }
                e.flush(&mut alerts);
                alerts.len()
            },
            criterion::BatchSize::LargeInput,
        )
    });
    // The reorder buffer under disorder: the same events in reverse order within the
    // allowed lateness (a buffer that scans for its slot is quadratic here).
    let mut reversed: Vec<_> = events.iter().take(20_000).cloned().collect();
    let first = reversed[0].ts;
    let n = reversed.len() as i64;
    for (i, ev) in reversed.iter_mut().enumerate() {
        ev.ts = first + (n - 1 - i as i64) * 29_000 / n;
    }
    g.throughput(Throughput::Elements(reversed.len() as u64));
    g.bench_function("events reversed within lateness", |b| {
        b.iter_batched(
            || reversed.clone(),
            |events| {
                let mut e = Engine::new(Vec::new(), 30_000, 2_000_000);
                let mut alerts = Vec::new();
                for ev in events {
                    e.push(ev, &mut alerts);
                }
                e.flush(&mut alerts);
                e.stats().released
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

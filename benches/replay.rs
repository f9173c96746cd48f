//! The whole replay, as `gatewatch replay` runs it, over a generated file: an
//! hour of simulated Kong traffic (300 clients, ~150k records, ~390 MB) read
//! from disk. Peak memory is measured by `scripts/bench-replay.sh`.

use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gatewatch::app::replay::replay;
use gatewatch::config::{GatewatchConfig, DEV_FINGERPRINT_KEY};
use gatewatch::engine::Pipeline;
use gatewatch::normalize::Format;
use gatewatch::simulate::{render::render, simulate, SimConfig};

fn bench(c: &mut Criterion) {
    let sim = simulate(&SimConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kong-hour.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for r in &sim.records {
        writeln!(f, "{}", render(r, Format::Kong)).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let size = std::fs::metadata(&path).unwrap().len();
    let mut cfg = GatewatchConfig::default();
    cfg.detectors.dir = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors").into());

    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(sim.records.len() as u64));
    g.bench_function("kong-hour/records", |b| {
        b.iter(|| {
            let mut p = Pipeline::from_config(&cfg, Format::Auto, DEV_FINGERPRINT_KEY.as_bytes()).unwrap();
            let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path).unwrap());
            let mut n = 0;
            let s = replay(
                &mut p,
                input,
                &mut |_| {
                    n += 1;
                    Ok(())
                },
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(s.stats.events as usize, sim.records.len());
            n
        })
    });
    g.throughput(Throughput::Bytes(size));
    g.bench_function("kong-hour/bytes", |b| {
        b.iter(|| {
            let mut p = Pipeline::from_config(&cfg, Format::Auto, DEV_FINGERPRINT_KEY.as_bytes()).unwrap();
            let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&path).unwrap());
            replay(&mut p, input, &mut |_| Ok(()), &mut |_| {}).unwrap().stats.events
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

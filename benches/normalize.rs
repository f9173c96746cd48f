//! Normalization throughput per format, single thread: records/s and MB/s.
//!
//! Each format reads its real sample records (tests/fixtures/gateways), repeated
//! to a batch of ~1000 records, so a bench iteration is one batch and criterion
//! reports both element (record) and byte throughput. The format is named, as in
//! production with `--format`; `auto` runs the mixed file to include detection.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gatewatch::event::Millis;
use gatewatch::normalize::{Format, Normalizer};

const KEY: &[u8] = b"gatewatch-bench-key";
const RECEIVED: Millis = 1_738_368_000_000;
const BATCH: usize = 1000;

fn fixture(name: &str) -> Vec<String> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gateways").join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

fn bench(c: &mut Criterion) {
    let cases: &[(&str, Format, &str, &[usize])] = &[
        // (label, format, fixture, lines to use — records that normalize to events)
        ("kong", Format::Kong, "kong.jsonl", &[0, 1, 2, 3]),
        ("envoy-json", Format::Envoy, "envoy.jsonl", &[1, 2]),
        ("nginx-text", Format::Nginx, "nginx.log", &[0, 1, 2]),
        ("ingress-nginx-text", Format::Nginx, "nginx-ingress.log", &[0, 1, 2, 3]),
        ("envoy-text", Format::EnvoyText, "envoy.log", &[0, 1, 2]),
        ("aws", Format::Aws, "aws_apigateway.jsonl", &[0, 1, 2]),
        ("traefik", Format::Traefik, "traefik.jsonl", &[0, 1]),
        ("apisix", Format::Apisix, "apisix.jsonl", &[0, 1]),
        ("tyk-text", Format::Tyk, "tyk.log", &[0]),
        ("auto-mixed", Format::Auto, "mixed.log", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
    ];
    let mut g = c.benchmark_group("normalize");
    for (label, format, file, pick) in cases {
        let lines = fixture(file);
        let recs: Vec<&[u8]> = (0..BATCH).map(|i| lines[pick[i % pick.len()]].as_bytes()).collect();
        let bytes: usize = recs.iter().map(|r| r.len()).sum();
        let n = Normalizer::new(*format, KEY);
        // Every benched record must be an event: a bench of rejections measures nothing useful.
        for r in &recs {
            n.normalize_message_at(r, Some(RECEIVED), &mut |x| assert!(x.is_ok(), "{label}: {:?}", x.err()));
        }
        for (unit, tp) in [("records", Throughput::Elements(BATCH as u64)), ("bytes", Throughput::Bytes(bytes as u64))]
        {
            g.throughput(tp);
            g.bench_with_input(BenchmarkId::new(*label, unit), &recs, |b, recs| {
                b.iter(|| {
                    let mut ok = 0usize;
                    for r in recs.iter() {
                        n.normalize_message_at(r, Some(RECEIVED), &mut |x| ok += x.is_ok() as usize);
                    }
                    assert_eq!(ok, BATCH);
                    ok
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);

//! Repartitioned, the detectors raise exactly what one engine over the whole input raises.
//!
//! An hour of simulated Kong traffic with one attack of each kind is split over input
//! partitions the way producers split it (unkeyed, by client id, by source address), run
//! through the ingest and detect stages over in-memory partitions (the code the Kafka stages
//! run), and compared with `replay` of the same records: the same alert ids, each once.

use std::collections::{BTreeMap, HashMap};

use gatewatch::config::{DetectorSource, GatewatchConfig, DEV_FINGERPRINT_KEY};
use gatewatch::engine::PipelineFactory;
use gatewatch::event::{Alert, Millis};
use gatewatch::normalize::Format;
use gatewatch::repartition::run_in_memory;
use gatewatch::simulate::{render::render, simulate, SimConfig, SimRecord};
use rand::{Rng, SeedableRng};

fn factory() -> PipelineFactory {
    let mut cfg = GatewatchConfig::default();
    cfg.detectors.dir = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors").into());
    cfg.input.format = "kong".into();
    let (files, errs) = DetectorSource::for_config(&cfg).load();
    PipelineFactory::new(&cfg, files, errs, DEV_FINGERPRINT_KEY.as_bytes()).expect("shipped detectors")
}

type Message = (Vec<u8>, Option<Millis>);

fn messages(records: &[SimRecord]) -> Vec<(Message, &SimRecord)> {
    records.iter().map(|r| ((render(r, Format::Kong).into_bytes(), Some(r.ts)), r)).collect()
}

fn replay_alerts(f: &PipelineFactory, msgs: &[(Message, &SimRecord)]) -> Vec<Alert> {
    let mut p = f.pipeline();
    let mut alerts = Vec::new();
    for ((m, ts), _) in msgs {
        p.process(m, *ts, &mut alerts);
    }
    p.finish(&mut alerts);
    alerts
}

#[derive(Clone, Copy, Debug)]
enum Keying {
    Unkeyed,
    ClientId,
    SourceIp,
}

fn split(msgs: &[(Message, &SimRecord)], partitions: usize, keying: Keying) -> Vec<Vec<Message>> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut out = vec![Vec::new(); partitions];
    let hash = |s: &str| s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    for (m, r) in msgs {
        let p = match keying {
            Keying::Unkeyed => rng.gen_range(0..partitions),
            Keying::ClientId => match &r.client_id {
                Some(c) => (hash(c) % partitions as u64) as usize,
                None => rng.gen_range(0..partitions),
            },
            Keying::SourceIp => (hash(&r.source_ip.to_string()) % partitions as u64) as usize,
        };
        out[p].push(m.clone());
    }
    out
}

fn ids(alerts: &[Alert]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for a in alerts {
        *m.entry(a.id.clone()).or_insert(0) += 1;
    }
    m
}

fn describe(alerts: &[Alert]) -> HashMap<String, String> {
    alerts
        .iter()
        .map(|a| (a.id.clone(), format!("{} {} {}: {}", a.detector, a.entity.kind.as_str(), a.entity.id, a.summary)))
        .collect()
}

#[test]
fn repartitioned_stages_raise_exactly_what_replay_raises() {
    // the seven default attacks, an object enumeration (keyed on the token and the address) and
    // a forged token used on many routes (its claims judged on the token shard, the routes it
    // is accepted on learned on the route shard), and a scrape (a principal's volumes, whole on
    // the token shard)
    let sim =
        simulate(&SimConfig { with: vec!["object_enumeration", "forged_token", "scraping"], ..SimConfig::default() });
    let f = factory();
    let msgs = messages(&sim.records);
    let reference = replay_alerts(&f, &msgs);
    let want = ids(&reference);
    assert!(want.len() >= 8, "the reference finds the attacks: {}", want.len());
    assert!(reference.iter().any(|a| a.detector == "object_enumeration"), "the enumeration is in the reference");
    assert!(reference.iter().any(|a| a.detector == "token_claims"), "the forged token is in the reference");
    assert!(reference.iter().any(|a| a.detector == "volume_anomaly"), "the scrape is in the reference");
    assert!(want.values().all(|n| *n == 1), "replay raises each alert once");
    let names = describe(&reference);
    for (partitions, keying) in [
        (1, Keying::Unkeyed),
        (4, Keying::Unkeyed),
        (12, Keying::Unkeyed),
        (12, Keying::ClientId),
        (12, Keying::SourceIp),
    ] {
        let inputs = split(&msgs, partitions, keying);
        let run = run_in_memory(&f, &inputs, 12, 50);
        let got = ids(&run.alerts);
        let extra = describe(&run.alerts);
        let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).map(|k| &names[k]).collect();
        let unexpected: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).map(|k| &extra[k]).collect();
        let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).map(|(k, n)| format!("{n}× {}", extra[k])).collect();
        assert!(
            missing.is_empty() && unexpected.is_empty() && twice.is_empty(),
            "{partitions} input partitions, {keying:?}:\nmissing {missing:#?}\nunexpected {unexpected:#?}\nrepeated {twice:#?}"
        );
        assert_eq!((run.late_at_ingest, run.late_at_detect), (0, 0), "{partitions} {keying:?}: nothing late");
        let ratio = run.repartition_bytes as f64 / run.input_bytes as f64;
        eprintln!(
            "{partitions:>2} input partitions, {keying:?}: {} alerts; repartition {:.3} bytes per input byte; records {:?}; {} heartbeats",
            run.alerts.len(),
            ratio,
            run.records_by_shard,
            run.heartbeats
        );
    }
}

/// Input partitions read one after the other, not side by side (the most skew there can be
/// between them): detect partitions wait for the slowest, and still raise replay's alerts.
#[test]
fn input_partitions_read_one_after_another_raise_what_replay_raises() {
    use gatewatch::repartition::wire::upstream_id;
    use gatewatch::repartition::{Detect, Ingest, MemoryPartitions, RecordSink, DEFAULT_TIMING};
    let sim = simulate(&SimConfig { duration_ms: 20 * 60_000, clients: 60, ..SimConfig::default() });
    let f = factory();
    let msgs = messages(&sim.records);
    let want = ids(&replay_alerts(&f, &msgs));
    let inputs = split(&msgs, 12, Keying::ClientId);
    let mut sink = MemoryPartitions::new(12);
    for (i, input) in inputs.iter().enumerate() {
        let mut ing = Ingest::new(f.reader(), f.rules(), 30_000, upstream_id("m", i as i32), 12, DEFAULT_TIMING);
        for (n, (m, ts)) in input.iter().enumerate() {
            ing.process(m, *ts, n as i64, 0, &mut sink);
            if n % 50 == 0 {
                ing.heartbeat(n as i64 * 1000, false, &mut sink);
            }
            assert_eq!(sink.partitions(), 12);
        }
        ing.finish(&mut sink);
    }
    let mut alerts = Vec::new();
    let mut late = 0;
    for records in &sink.0 {
        let mut d = Detect::new(f.engine());
        for r in records {
            d.process(r, &mut alerts).unwrap();
        }
        d.finish(&mut alerts);
        late += d.engine_stats().late;
    }
    let got = ids(&alerts);
    let names = describe(&replay_alerts(&f, &msgs));
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).map(|k| &names[k]).collect();
    assert!(missing.is_empty() && got.len() == want.len(), "late {late} missing {missing:?} got {}", got.len());
}

//! The benign world looks like real gateway traffic, deterministically, and is
//! delivered out of order only within the documented bound.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use gatewatch::normalize::Format;
use gatewatch::simulate::{render, simulate, SimConfig, SimRecord, Simulation, MAX_DISORDER_MS};

fn hour() -> &'static Simulation {
    static S: OnceLock<Simulation> = OnceLock::new();
    S.get_or_init(|| simulate(&SimConfig::default()))
}

fn benign(s: &Simulation) -> impl Iterator<Item = &SimRecord> {
    s.records.iter().filter(|r| r.attack.is_none())
}

fn digest(s: &Simulation) -> Vec<u64> {
    use std::hash::{Hash, Hasher};
    [Format::Kong, Format::Envoy, Format::Generic]
        .into_iter()
        .map(|f| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for r in &s.records {
                render(r, f).hash(&mut h);
            }
            for l in &s.labels {
                l.to_json().hash(&mut h);
            }
            h.finish()
        })
        .collect()
}

#[test]
fn same_seed_same_output_other_seed_other_output() {
    let cfg = SimConfig { duration_ms: 15 * 60_000, clients: 50, ..SimConfig::default() };
    let a = simulate(&cfg);
    let b = simulate(&cfg);
    assert_eq!(a.records, b.records);
    assert_eq!(a.labels, b.labels);
    assert_eq!(digest(&a), digest(&b));
    let c = simulate(&SimConfig { seed: cfg.seed + 1, ..cfg.clone() });
    assert_ne!(digest(&a), digest(&c));
    assert_ne!(a.labels, c.labels);
    // the start instant shifts event times, nothing else
    let later = simulate(&SimConfig { start: cfg.start + 86_400_000, ..cfg.clone() });
    assert_eq!(later.records.len(), a.records.len());
    assert!(later.records.iter().zip(&a.records).all(|(x, y)| x.ts == y.ts + 86_400_000 && x.route == y.route));
}

#[test]
fn records_arrive_out_of_order_but_within_the_bound() {
    let s = hour();
    assert!(s.records.windows(2).all(|w| w[0].arrival <= w[1].arrival), "emitted in arrival order");
    let d = s.max_disorder_ms();
    assert!(d > 1_000, "records should be out of event-time order (max {d} ms)");
    assert!(d <= MAX_DISORDER_MS, "max disorder {d} ms");
    let nodes: HashSet<_> = s.records.iter().map(|r| r.gateway_node).collect();
    assert_eq!(nodes.len(), 3);
    let cfg = SimConfig::default();
    assert!(s.records.iter().all(|r| r.ts >= cfg.start && r.ts < cfg.end() && r.arrival > r.ts));
}

#[test]
fn an_hour_of_a_few_hundred_clients() {
    let s = hour();
    let n = s.records.len();
    assert!((80_000..400_000).contains(&n), "{n} records");
    let clients: HashSet<_> = benign(s).filter_map(|r| r.subject.clone()).collect();
    assert!(clients.len() >= 250, "{} active subjects", clients.len());
    let share = |pred: &dyn Fn(&SimRecord) -> bool| benign(s).filter(|r| pred(r)).count() as f64 / n as f64 * 100.0;
    let p404 = share(&|r| r.status == 404);
    let p5xx = share(&|r| r.status >= 500);
    let p429 = share(&|r| r.status == 429);
    let p403 = share(&|r| r.status == 403);
    assert!((1.0..5.0).contains(&p404), "404s {p404:.2} %");
    assert!((0.2..2.0).contains(&p5xx), "5xx {p5xx:.2} %");
    assert!((0.3..3.0).contains(&p429), "429s {p429:.2} %");
    assert!(p403 > 0.0 && p403 < 0.2, "benign 403s {p403:.3} %");
    let routes: HashSet<_> = s.records.iter().map(|r| r.route).collect();
    let upstreams: HashSet<_> = s.records.iter().map(|r| r.upstream).collect();
    assert!(routes.len() >= 20 && upstreams.len() >= 5, "{} routes, {} upstreams", routes.len(), upstreams.len());
}

#[test]
fn route_latency_profiles_differ_and_some_drift_upwards() {
    let s = hour();
    let start = SimConfig::default().start;
    let median = |route: &str, from: i64, to: i64| {
        let mut v: Vec<u32> = benign(s)
            .filter(|r| r.route == route && r.status < 400 && r.ts >= start + from && r.ts < start + to)
            .filter_map(|r| r.upstream_latency_ms)
            .collect();
        v.sort_unstable();
        assert!(v.len() >= 30, "{route}: {} samples", v.len());
        v[v.len() / 2]
    };
    let fast = median("GET /v1/catalog/products/{id}", 0, 3_600_000);
    let slow = median("POST /v1/payments", 0, 3_600_000);
    assert!((10..40).contains(&fast) && (100..300).contains(&slow), "p50 {fast} vs {slow}");
    let early = median("GET /v1/search", 0, 900_000) as f64;
    let late = median("GET /v1/search", 2_700_000, 3_600_000) as f64;
    assert!(late >= 1.08 * early && late <= 1.4 * early, "search p50 {early} -> {late}");
}

#[test]
fn tokens_rotate_hourly_with_at_most_a_couple_of_401s() {
    let s = hour();
    let mut per_subject: HashMap<&str, HashSet<_>> = HashMap::new();
    let mut rejected: HashMap<_, usize> = HashMap::new();
    for r in benign(s) {
        if let (Some(sub), Some(fp)) = (r.subject.as_deref(), r.token_fingerprint()) {
            per_subject.entry(sub).or_default().insert(fp);
            if r.status == 401 {
                *rejected.entry(fp).or_default() += 1;
                assert!(r.ts >= r.token.as_ref().unwrap().expires_at, "a benign 401 is an expired token");
            }
        }
    }
    let rotated = per_subject.values().filter(|t| t.len() >= 2).count();
    assert!(rotated * 10 >= per_subject.len() * 6, "{rotated} of {} clients rotated", per_subject.len());
    assert!(!rejected.is_empty(), "some clients only refresh on a 401");
    assert!(rejected.values().all(|n| *n <= 2), "{:?}", rejected.values().max());
    // a refresh is a call to the token endpoint
    assert!(benign(s).filter(|r| r.route == "POST /oauth/token" && r.status == 200).count() >= rotated);
}

#[test]
fn mobile_nat_and_cloud_clients_look_like_themselves() {
    let s = hour();
    let mut nets16: HashMap<&str, HashSet<[u8; 2]>> = HashMap::new();
    let mut nets24: HashMap<&str, HashSet<[u8; 3]>> = HashMap::new();
    let mut subjects_per_ip: HashMap<_, HashSet<&str>> = HashMap::new();
    for r in benign(s) {
        let Some(sub) = r.subject.as_deref() else { continue };
        let o = r.source_ip.octets();
        nets16.entry(sub).or_default().insert([o[0], o[1]]);
        nets24.entry(sub).or_default().insert([o[0], o[1], o[2]]);
        subjects_per_ip.entry(r.source_ip).or_default().insert(sub);
    }
    // mobile users hop /24s inside one carrier /16
    let mobile: Vec<&str> = nets16.keys().copied().filter(|k| k.starts_with("usr_")).collect();
    assert!(mobile.len() >= 100);
    assert!(mobile.iter().all(|m| nets16[m].len() == 1));
    assert!(mobile.iter().filter(|m| nets24[*m].len() >= 3).count() >= 20);
    // one office NAT address shared by the staff
    let (_, staff) = subjects_per_ip.iter().max_by_key(|(_, v)| v.len()).unwrap();
    assert!(staff.len() >= 30, "{} subjects behind the busiest address", staff.len());
    assert!(staff.iter().all(|s| s.starts_with("staff_")));
    // the cloud client egresses through three networks
    assert_eq!(nets16["logistics-cloud"].len(), 3);
    // no benign token is used from more than three networks
    let mut per_token: HashMap<_, HashSet<[u8; 2]>> = HashMap::new();
    for r in benign(s) {
        if let Some(fp) = r.token_fingerprint() {
            let o = r.source_ip.octets();
            per_token.entry(fp).or_default().insert([o[0], o[1]]);
        }
    }
    assert!(per_token.values().all(|n| n.len() <= 3));
}

#[test]
fn a_heavy_batch_client_and_a_morning_ramp() {
    let s = hour();
    let batch = benign(s).filter(|r| r.subject.as_deref() == Some("inventory-sync")).count();
    assert!(batch as f64 / 3600.0 >= 2.5, "batch client {batch} req/h");
    let limited = benign(s).filter(|r| r.subject.as_deref() == Some("inventory-sync") && r.status == 429).count();
    assert!(limited >= 100, "batch client bursts into its rate limit ({limited} 429s)");
    let start = SimConfig::default().start;
    let first = benign(s).filter(|r| r.ts < start + 900_000).count();
    let last = benign(s).filter(|r| r.ts >= start + 2_700_000).count();
    assert!(last > first, "traffic ramps up through the morning: {first} -> {last}");
    // a few clients are light, one is heavy
    let mut per: HashMap<&str, usize> = HashMap::new();
    for r in benign(s) {
        if let Some(sub) = r.subject.as_deref() {
            *per.entry(sub).or_default() += 1;
        }
    }
    let mut counts: Vec<usize> = per.values().copied().collect();
    counts.sort_unstable();
    assert!(counts[counts.len() / 10] < 100 && counts[counts.len() - 1] > 20 * counts[counts.len() / 2]);
}

#[test]
fn rejects_configs_it_cannot_honour() {
    let ok = SimConfig::default();
    assert!(ok.validate().is_ok());
    assert!(SimConfig { clients: 3, ..ok.clone() }.validate().is_err());
    assert!(SimConfig { duration_ms: 5 * 60_000, ..ok.clone() }.validate().is_err());
    assert!(SimConfig { duration_ms: 5 * 60_000, attacks: false, ..ok.clone() }.validate().is_ok());
    assert!(SimConfig { attack_rounds: 0, ..ok }.validate().is_err());
}

#[test]
fn cli_writes_records_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.jsonl");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["simulate", "--minutes", "12", "--clients", "30", "--seed", "3", "--format", "envoy", "--labels"])
        .arg(&labels)
        .args(["--start", "2026-03-02T08:00:00Z"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lib = simulate(&SimConfig {
        seed: 3,
        start: 1_772_438_400_000,
        duration_ms: 12 * 60_000,
        clients: 30,
        ..SimConfig::default()
    });
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), lib.records.len());
    assert_eq!(lines[0], render(&lib.records[0], Format::Envoy));
    assert!(lines[0].starts_with("{\"start_time\":\"2026-03-02T08:00:"));
    let labels = std::fs::read_to_string(labels).unwrap();
    let want: Vec<String> = lib.labels.iter().map(|l| l.to_json()).collect();
    assert_eq!(labels.lines().collect::<Vec<_>>(), want);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["simulate", "--format", "auto"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

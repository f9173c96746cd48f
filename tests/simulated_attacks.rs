//! End to end: an hour of simulated gateway traffic for 300 clients, with one
//! attack of each kind injected, replayed through the same pipeline as
//! `gatewatch replay` with the shipped `detectors/` defaults, in each of the
//! three core formats. Every attack must be found, nothing else may fire, and
//! no raw token may appear in anything gatewatch writes.

use std::collections::HashSet;

use gatewatch::app::replay::{replay, ReplaySummary};
use gatewatch::config::{GatewatchConfig, DEV_FINGERPRINT_KEY};
use gatewatch::engine::Pipeline;
use gatewatch::event::Alert;
use gatewatch::normalize::Format;
use gatewatch::simulate::{render::render, simulate, Label, SimConfig, Simulation};

/// How far outside the attack's own span an alert about it may fall (detection
/// windows start before the last attack request and alerts close after it).
const SLACK_MS: i64 = 15 * 60_000;

fn config() -> GatewatchConfig {
    let mut cfg = GatewatchConfig::default();
    cfg.detectors.dir = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors").into());
    cfg
}

fn run(sim: &Simulation, format: Format) -> (Vec<Alert>, ReplaySummary, String) {
    run_with(&config(), sim, format)
}

/// The shipped detectors, with `impossible_travel` given MaxMind's test databases; the folder
/// lives as long as the returned guard.
fn config_with_geoip() -> (GatewatchConfig, tempfile::TempDir) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(root.join("detectors")).unwrap() {
        let f = f.unwrap().path();
        let text = std::fs::read_to_string(&f).unwrap();
        let geo = root.join("tests/data/geoip");
        let text = text
            .replace("city_db = \"\"", &format!("city_db = {:?}", geo.join("GeoIP2-City-Test.mmdb")))
            .replace("asn_db = \"\"", &format!("asn_db = {:?}", geo.join("GeoLite2-ASN-Test.mmdb")));
        std::fs::write(dir.path().join(f.file_name().unwrap()), text).unwrap();
    }
    let mut cfg = GatewatchConfig::default();
    cfg.detectors.dir = Some(dir.path().to_path_buf());
    (cfg, dir)
}

fn run_with(cfg: &GatewatchConfig, sim: &Simulation, format: Format) -> (Vec<Alert>, ReplaySummary, String) {
    let mut input = String::new();
    for r in &sim.records {
        input.push_str(&render(r, format));
        input.push('\n');
    }
    let mut pipeline = Pipeline::from_config(cfg, format, DEV_FINGERPRINT_KEY.as_bytes()).expect("shipped config");
    let mut alerts = Vec::new();
    let summary = replay(
        &mut pipeline,
        input.as_bytes(),
        &mut |a| {
            alerts.push(a.clone());
            Ok(())
        },
        &mut |_| {},
    )
    .expect("replay");
    (alerts, summary, input)
}

fn names(alert: &Alert, label: &Label) -> bool {
    let same =
        |d: &str, k: &str, id: &str| alert.detector == d && alert.entity.kind.as_str() == k && alert.entity.id == id;
    same(label.detector, label.entity_kind.as_str(), &label.entity_id)
        || label.related.iter().any(|r| same(r.detector, r.entity_kind.as_str(), &r.entity_id))
}

fn explains(alert: &Alert, label: &Label) -> bool {
    names(alert, label) && alert.window_end >= label.start - SLACK_MS && alert.window_start <= label.end + SLACK_MS
}

/// Every label found by an alert about its main entity, every alert explained by a label.
fn assert_all_found_nothing_else(sim: &Simulation, alerts: &[Alert], what: &str) {
    let mut report = String::new();
    for l in &sim.labels {
        let main = alerts.iter().any(|a| explains(a, l) && a.detector == l.detector);
        if !main {
            report += &format!("MISSED {} ({} on {} {})\n", l.attack, l.detector, l.entity_kind.as_str(), l.entity_id);
        }
    }
    for a in alerts {
        if !sim.labels.iter().any(|l| explains(a, l)) {
            report +=
                &format!("UNEXPECTED {} on {} {}: {}\n", a.detector, a.entity.kind.as_str(), a.entity.id, a.summary);
        }
    }
    assert!(report.is_empty(), "{what}:\n{report}");
}

fn assert_no_raw_token(sim: &Simulation, outputs: &[&str]) {
    let raw: HashSet<&str> = sim.records.iter().filter_map(|r| r.token.as_ref().map(|t| t.raw.as_str())).collect();
    assert!(raw.len() > 100, "the simulation carries tokens");
    for out in outputs {
        for t in &raw {
            // the signature part alone is as secret as the whole token
            let sig = t.rsplit('.').next().unwrap();
            assert!(!out.contains(t) && !out.contains(sig), "a raw token leaked into gatewatch output");
        }
    }
}

#[test]
fn every_attack_is_found_and_nothing_else_fires_in_each_format() {
    let sim = simulate(&SimConfig::default());
    assert_eq!(sim.labels.len(), 7, "one attack of each kind");
    let mut kong_alerts = None;
    for format in [Format::Kong, Format::Envoy, Format::Generic] {
        let (alerts, summary, input) = run(&sim, format);
        assert_eq!(summary.stats.rejected_total(), 0, "{format:?}: every simulated record reads");
        assert_eq!(summary.engine.late, 0, "{format:?}: disorder stays within the allowed lateness");
        assert_all_found_nothing_else(&sim, &alerts, format.name());
        let alert_text: String = alerts.iter().map(|a| a.to_json() + "\n").collect();
        assert!(
            input.contains(&sim.records.iter().find_map(|r| r.token.as_ref()).unwrap().raw),
            "input has raw tokens"
        );
        assert_no_raw_token(&sim, &[&alert_text, &summary.render()]);
        let set: HashSet<(String, String)> = alerts.iter().map(|a| (a.detector.clone(), a.entity.id.clone())).collect();
        match &kong_alerts {
            None => kong_alerts = Some(set),
            Some(k) => {
                // the attacks found are the same whatever the format; entity ids that depend
                // on the format's identity fields (Kong consumer UUIDs) may differ
                let main: HashSet<_> =
                    sim.labels.iter().map(|l| (l.detector.to_string(), l.entity_id.clone())).collect();
                assert_eq!(
                    k.intersection(&main).collect::<HashSet<_>>(),
                    set.intersection(&main).collect::<HashSet<_>>(),
                    "{format:?} finds the same attacks as Kong"
                );
            }
        }
    }
}

#[test]
fn another_seed_is_also_clean() {
    let sim = simulate(&SimConfig { seed: 3, ..SimConfig::default() });
    let (alerts, _, _) = run(&sim, Format::Kong);
    assert_all_found_nothing_else(&sim, &alerts, "seed 3, kong");
}

#[test]
fn an_hour_without_attacks_raises_no_alert() {
    let sim = simulate(&SimConfig { seed: 11, attacks: false, ..SimConfig::default() });
    assert!(sim.labels.is_empty());
    let (alerts, summary, _) = run(&sim, Format::Envoy);
    assert!(summary.stats.events > 100_000);
    let text: Vec<String> = alerts.iter().map(|a| format!("{} {} {}", a.detector, a.entity.id, a.summary)).collect();
    assert!(alerts.is_empty(), "false alerts on benign traffic:\n{}", text.join("\n"));
}

#[test]
fn an_object_enumeration_asked_for_is_found_and_nothing_else_fires() {
    let sim = simulate(&SimConfig { with: vec!["object_enumeration"], ..SimConfig::default() });
    assert_eq!(sim.labels.len(), 8, "the seven kinds and the one asked for");
    let label = sim.labels.iter().find(|l| l.attack == "object_enumeration").expect("injected");
    for format in [Format::Kong, Format::Envoy] {
        let (alerts, _, _) = run(&sim, format);
        assert_all_found_nothing_else(&sim, &alerts, format.name());
        let found: Vec<&Alert> = alerts.iter().filter(|a| a.detector == "object_enumeration").collect();
        assert!(
            found.iter().any(|a| a.entity.id == label.entity_id && a.evidence["route"] == "GET /v1/orders/{id}"),
            "{format:?}: the culprit's token on the orders route: {found:?}"
        );
    }
    // without asking, the plan is the one every other test was measured with
    let plain = simulate(&SimConfig::default());
    assert!(plain.labels.iter().all(|l| l.attack != "object_enumeration"));
}

#[test]
fn a_forged_unsigned_token_asked_for_is_found_and_nothing_else_fires() {
    let sim = simulate(&SimConfig { with: vec!["forged_token"], ..SimConfig::default() });
    assert_eq!(sim.labels.len(), 8, "the seven kinds and the one asked for");
    let label = sim.labels.iter().find(|l| l.attack == "forged_token").expect("injected");
    for format in [Format::Kong, Format::Envoy] {
        let (alerts, _, _) = run(&sim, format);
        assert_all_found_nothing_else(&sim, &alerts, format.name());
        let found: Vec<&Alert> = alerts.iter().filter(|a| a.detector == "token_claims").collect();
        assert_eq!(found.len(), 1, "{format:?}: one alert for the forged token: {found:?}");
        assert_eq!(found[0].entity.id, label.entity_id);
        assert_eq!(found[0].evidence["check"], "unsigned");
        assert_eq!(found[0].evidence["issuer"], "https://auth.shopfront.example/", "claims are shown");
    }
}

#[test]
fn impossible_travel_asked_for_is_found_with_a_database_and_nothing_else_fires() {
    let sim = simulate(&SimConfig { with: vec!["impossible_travel"], ..SimConfig::default() });
    assert_eq!(sim.labels.len(), 8, "the seven kinds and the one asked for");
    let label = sim.labels.iter().find(|l| l.attack == "impossible_travel").expect("injected");
    let (cfg, _dir) = config_with_geoip();
    for format in [Format::Kong, Format::Envoy] {
        let (alerts, _, _) = run_with(&cfg, &sim, format);
        assert_all_found_nothing_else(&sim, &alerts, format.name());
        let found: Vec<&Alert> = alerts.iter().filter(|a| a.detector == "impossible_travel").collect();
        assert_eq!(found.len(), 1, "{format:?}: {found:?}");
        assert_eq!(found[0].entity.id, label.entity_id);
        assert_eq!(
            (found[0].evidence["from"]["country"].as_str(), found[0].evidence["to"]["country"].as_str()),
            (Some("GB"), Some("CN"))
        );
    }
    // Shipped without a database: the same hour, and the rule judges nothing.
    let (alerts, _, _) = run(&sim, Format::Kong);
    assert!(alerts.iter().all(|a| a.detector != "impossible_travel"));
}

#[test]
fn a_scrape_asked_for_is_found_by_volume_anomaly_and_nothing_else_fires() {
    let sim = simulate(&SimConfig { with: vec!["scraping"], ..SimConfig::default() });
    assert_eq!(sim.labels.len(), 8, "the seven kinds and the one asked for");
    let label = sim.labels.iter().find(|l| l.attack == "scraping").expect("injected");
    assert!(label.start - SimConfig::default().start >= 35 * 60_000, "after the token is learned: {label:?}");
    for format in [Format::Kong, Format::Envoy] {
        let (alerts, _, _) = run(&sim, format);
        assert_all_found_nothing_else(&sim, &alerts, format.name());
        let found: Vec<&Alert> = alerts.iter().filter(|a| a.detector == "volume_anomaly").collect();
        assert_eq!(found.len(), 1, "{format:?}: one alert for the scrape: {found:?}");
        assert_eq!(found[0].entity.id, label.entity_id);
        assert_eq!(found[0].evidence["check"], "requests");
        assert!(found[0].window_end <= label.end, "found while it runs: {:?}", found[0]);
    }
    // without asking, the plan is the one every other test was measured with
    let plain = simulate(&SimConfig::default());
    assert!(plain.labels.iter().all(|l| l.attack != "scraping"));
}

//! Users' Sigma rules: SigmaHQ's own web and proxy rules load (the ones that can), find real
//! attack requests written by NGINX and Kong, stay quiet on an hour of benign traffic; Sigma
//! correlations fire on event time whatever the order within the allowed lateness, with the
//! same alert ids on 1 and 12 repartition partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use gatewatch::config::GatewatchConfig;

mod sigma_support;
use gatewatch::engine::{Pipeline, PipelineFactory};
use gatewatch::event::{Alert, Millis};
use gatewatch::normalize::Format;
use gatewatch::simulate::{render, simulate, SimConfig};
use sigma_support::{config, corpus, ip_of, loadable_rules, walk, Attack, ATTACKS, BROWSER};

const KEY: &[u8] = b"sigma-test-fingerprint-key";
/// 2026-12-06T10:00:00Z
const T0: Millis = 1_796_551_200_000;

/// The fields of SigmaHQ's web and proxy rules that no gateway access log here carries, each
/// with how many rules name it.
const UNSUPPORTED: &[(&str, usize)] = &[("cs-cookie", 1), ("cs-content-type", 1), ("dst_ip", 1)];

#[test]
fn sigmahq_web_and_proxy_rules_load_except_those_naming_fields_no_access_log_has() {
    let l = gatewatch::sigma::load::load(&config(&corpus()));
    let files = walk(&corpus());
    assert_eq!(files.len(), 142, "the corpus: every SigmaHQ rule of category webserver or proxy");
    assert_eq!(l.files.len(), 139, "rules that load");
    assert!(l.skipped.is_empty(), "{:?}", l.skipped);
    // Every refusal names its rule and the field, all at once.
    assert_eq!(l.errors.len(), 3, "{:#?}", l.errors);
    for (field, n) in UNSUPPORTED {
        let named = l.errors.iter().filter(|e| e.message.contains(&format!("field `{field}`"))).count();
        assert_eq!(named, *n, "rules refused for `{field}`");
    }
    assert!(l.errors.iter().all(|e| e.field.starts_with("rule `")), "{:#?}", l.errors);
    for f in &l.files {
        assert_eq!(f.kind, "sigma");
        assert!(uuid_like(&f.id), "a SigmaHQ rule's id is its UUID: {}", f.id);
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn nginx_line(i: usize, a: &Attack) -> String {
    let ts = chrono_clf(T0 + i as Millis * 1000);
    let referer = a.referer.unwrap_or("-");
    format!(
        "{} - - [{ts}] \"{} {} HTTP/1.1\" {} 512 \"{referer}\" \"{}\"",
        ip_of(i),
        a.method,
        a.uri,
        a.status,
        a.user_agent
    )
}

fn kong_line(i: usize, a: &Attack) -> String {
    let mut headers = serde_json::json!({"host": "api.example.com", "user-agent": a.user_agent});
    if let Some(r) = a.referer {
        headers["referer"] = r.into();
    }
    serde_json::json!({
        "started_at": T0 + i as Millis * 1000,
        "client_ip": ip_of(i),
        "request": {"method": a.method, "uri": a.uri, "size": 310, "headers": headers},
        "response": {"status": a.status, "size": 512},
        "latencies": {"request": 12, "proxy": 9, "kong": 3},
        "service": {"name": "shop"}
    })
    .to_string()
}

/// `06/Dec/2026:10:00:00 +0000`
fn chrono_clf(ms: Millis) -> String {
    let secs = (ms - T0) / 1000;
    format!("06/Dec/2026:10:{:02}:{:02} +0000", secs / 60, secs % 60)
}

fn replay(cfg: &GatewatchConfig, format: Format, lines: &[String]) -> Vec<Alert> {
    let mut p = Pipeline::from_config(cfg, format, KEY).expect("rules load");
    let mut out = Vec::new();
    for l in lines {
        p.process(l.as_bytes(), None, &mut out);
    }
    p.finish(&mut out);
    assert_eq!(p.stats().rejected_total(), 0, "every line reads");
    out.into_iter().filter(|a| a.detector == "sigma").collect()
}

#[test]
fn real_attack_requests_in_nginx_and_kong_logs_are_each_found_by_their_sigmahq_rule() {
    let rules = loadable_rules();
    let cfg = config(rules.path());
    for (format, render) in [(Format::Nginx, nginx_line as fn(usize, &Attack) -> String), (Format::Kong, kong_line)] {
        let lines: Vec<String> = ATTACKS.iter().enumerate().map(|(i, a)| render(i, a)).collect();
        let alerts = replay(&cfg, format, &lines);
        let mut by_ip: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for a in &alerts {
            assert_eq!(a.entity.kind.as_str(), "source_ip");
            by_ip.entry(a.entity.id.clone()).or_default().insert(a.rule.clone());
            // The alert carries what a reader needs: title, level, tags, the request.
            assert!(a.evidence["title"].is_string() && a.evidence["request"].is_string(), "{a:?}");
        }
        for (i, a) in ATTACKS.iter().enumerate() {
            let got = by_ip.get(&ip_of(i)).cloned().unwrap_or_default();
            for r in a.rules {
                assert!(got.contains(*r), "{format:?}: {} ({}) not found by {r}; found by {got:?}", a.what, a.uri);
            }
        }
    }
}

#[test]
fn an_hour_of_benign_traffic_fires_none_of_them() {
    let rules = loadable_rules();
    let cfg = config(rules.path());
    let s = simulate(&SimConfig {
        seed: 5,
        duration_ms: 3_600_000,
        clients: 40,
        attacks: false,
        fingerprint_key: KEY.to_vec(),
        ..SimConfig::default()
    });
    assert!(s.records.len() > 10_000, "{} records", s.records.len());
    for (format, render) in [
        (Format::Nginx, render::render_nginx_combined as fn(&gatewatch::simulate::SimRecord) -> String),
        (Format::Kong, render::render_kong),
    ] {
        let lines: Vec<String> = s.records.iter().map(render).collect();
        let alerts = replay(&cfg, format, &lines);
        let fired: BTreeMap<&str, usize> = alerts.iter().fold(BTreeMap::new(), |mut m, a| {
            *m.entry(a.evidence["title"].as_str().unwrap_or("?")).or_insert(0) += 1;
            m
        });
        assert!(alerts.is_empty(), "{format:?}: benign traffic fired {fired:?}");
    }
}

// --- correlations -------------------------------------------------------------------------

const BRUTE_FORCE: &str = r#"
title: Failed login
id: 0b7d2b5e-4a6f-4f7e-9d65-1f0c2b1e8a01
name: failed_login
logsource:
    category: webserver
detection:
    selection:
        cs-method: POST
        cs-uri-stem|endswith: /login
        sc-status:
            - 401
            - 403
    condition: selection
level: low
---
title: Password guessing from one address
id: 5f0a4d1c-2b8e-4c3a-9f11-7d2e6a9b0c02
correlation:
    type: event_count
    rules:
        - failed_login
    group-by:
        - c-ip
    timespan: 5m
    condition:
        gte: 10
level: high
tags:
    - attack.credential-access
    - attack.t1110.001
"#;

const SPRAYING: &str = r#"
title: Login attempt
id: 9a3c1e7f-5b2d-4e8a-a0c4-3f6b8d1e2a03
name: login_attempt
logsource:
    category: webserver
detection:
    selection:
        cs-method: POST
        cs-uri-stem: /api/v1/login
    condition: selection
---
title: Password spraying, one address, many usernames
id: 2d8e6b4a-1c3f-4a5e-8b7d-9e0f1a2b3c04
correlation:
    type: value_count
    rules:
        - login_attempt
    group-by:
        - c-ip
    timespan: 10m
    condition:
        field: cs-username
        gte: 8
level: high
tags:
    - attack.credential-access
    - attack.t1110.003
"#;

/// Generic-format records: `ts`, address, method, path, status, user.
fn generic(ts: Millis, ip: &str, method: &str, path: &str, status: u16, user: &str) -> String {
    serde_json::json!({
        "ts": gatewatch::event::format_ts(ts), "source_ip": ip, "method": method, "path": path,
        "status": status, "subject": user, "user_agent": BROWSER
    })
    .to_string()
}

/// An attack on each rule, among benign logins: (records, what must fire).
fn correlation_traffic() -> Vec<(Millis, String)> {
    let mut recs = Vec::new();
    // 12 failed logins from one address within 2 minutes: one alert (gte 10 reached at the 10th).
    for i in 0..12 {
        recs.push((T0 + i * 10_000, generic(T0 + i * 10_000, "198.51.100.20", "POST", "/api/v1/login", 401, "admin")));
    }
    // 9 failures spread over 30 minutes from another address: never 10 in 5 minutes.
    for i in 0..9 {
        recs.push((T0 + i * 200_000, generic(T0 + i * 200_000, "198.51.100.21", "POST", "/login", 401, "bob")));
    }
    // One address trying 9 usernames in 6 minutes; another trying 3 many times.
    for i in 0..9 {
        let t = T0 + 60_000 + i * 40_000;
        recs.push((t, generic(t, "198.51.100.30", "POST", "/api/v1/login", 401, &format!("user{i}"))));
    }
    for i in 0..30 {
        let t = T0 + i * 20_000;
        recs.push((
            t,
            generic(t, "198.51.100.31", "POST", "/api/v1/login", 200, ["ann", "ben", "cat"][i as usize % 3]),
        ));
    }
    recs.sort_by_key(|r| r.0);
    recs
}

fn correlation_rules() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("brute-force.yml"), BRUTE_FORCE).unwrap();
    std::fs::write(dir.path().join("spraying.yml"), SPRAYING).unwrap();
    dir
}

fn ids(alerts: &[Alert]) -> BTreeSet<(String, String, String, Millis)> {
    alerts
        .iter()
        .filter(|a| a.detector == "sigma")
        .map(|a| (a.id.clone(), a.rule.clone(), a.entity.id.clone(), a.window_end))
        .collect()
}

#[test]
fn correlations_fire_at_the_right_event_time_whatever_the_order_within_the_lateness() {
    let rules = correlation_rules();
    let cfg = config(rules.path());
    let recs = correlation_traffic();
    let lines: Vec<String> = recs.iter().map(|r| r.1.clone()).collect();
    let alerts = replay(&cfg, Format::Generic, &lines);
    let want = ids(&alerts);
    let got: Vec<(&str, &str, Millis)> =
        alerts.iter().map(|a| (a.rule.as_str(), a.entity.id.as_str(), a.window_end)).collect();
    assert_eq!(
        got,
        vec![
            // the 10th failure, 90 s in
            ("5f0a4d1c-2b8e-4c3a-9f11-7d2e6a9b0c02", "198.51.100.20", T0 + 90_000),
            // the 8th username, 60 s + 7 × 40 s in
            ("2d8e6b4a-1c3f-4a5e-8b7d-9e0f1a2b3c04", "198.51.100.30", T0 + 340_000),
        ],
        "{alerts:#?}"
    );
    let a = &alerts[0];
    assert_eq!(a.evidence["correlation_type"], "event_count");
    assert_eq!(a.evidence["count"], 10);
    assert_eq!(a.window_start, T0);
    assert_eq!(a.severity.as_str(), "high");
    assert_eq!(a.evidence["tags"][1], "attack.t1110.001");
    assert_eq!(alerts[1].evidence["values"].as_array().unwrap().len(), 8);
    // The lateness allowed by default is 30 s: shuffling within 20 s changes nothing.
    let lateness = cfg.engine.allowed_lateness.0;
    assert!(lateness >= 20_000);
    for seed in 0..8u64 {
        // Each record arrives up to 20 s after its time: sorted by time plus a random delay.
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut delayed: Vec<(Millis, (Millis, String))> = recs
            .iter()
            .map(|r| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (r.0 + (rng % 20_001) as Millis, r.clone())
            })
            .collect();
        delayed.sort_by_key(|d| d.0);
        let shuffled: Vec<(Millis, String)> = delayed.into_iter().map(|d| d.1).collect();
        assert_ne!(shuffled, recs, "seed {seed} shuffled something");
        let lines: Vec<String> = shuffled.iter().map(|r| r.1.clone()).collect();
        assert_eq!(ids(&replay(&cfg, Format::Generic, &lines)), want, "seed {seed}");
    }
}

#[test]
fn correlations_give_the_same_alert_ids_on_1_and_12_partitions() {
    let rules = correlation_rules();
    let cfg = config(rules.path());
    let lines: Vec<String> = correlation_traffic().into_iter().map(|r| r.1).collect();
    let want = ids(&replay(&cfg, Format::Generic, &lines));
    assert_eq!(want.len(), 2);
    let factory =
        PipelineFactory::new(&cfg, gatewatch::engine::load_files(&cfg).0, Vec::new(), KEY).expect("rules load");
    // The input keyed by anything but the address: round-robin over 4 input partitions.
    let mut inputs: Vec<Vec<(Vec<u8>, Option<Millis>)>> = vec![Vec::new(); 4];
    for (i, l) in lines.iter().enumerate() {
        inputs[i % 4].push((l.clone().into_bytes(), None));
    }
    for partitions in [1, 12] {
        let run = gatewatch::repartition::run_in_memory(&factory, &inputs, partitions, 3);
        assert_eq!(ids(&run.alerts), want, "{partitions} repartition partitions");
        assert!(run.records_by_shard.get("group").copied().unwrap_or(0) > 0, "{:?}", run.records_by_shard);
    }
}

#[test]
fn a_broken_rule_is_refused_with_every_error_and_a_good_one_carries_its_tests() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yml"),
        "title: Needs a referer\nid: r-1\nlogsource:\n    category: webserver\ndetection:\n    s:\n        cs-cookie|contains: evil\n        cs-content-type: x\n    condition: s\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("windows.yml"),
        "title: Not ours\nid: r-2\nlogsource:\n    product: windows\n    category: process_creation\ndetection:\n    s:\n        Image|endswith: cmd.exe\n    condition: s\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("corr.yml"),
        "title: Count by host\nid: r-3\ncorrelation:\n    type: event_count\n    rules: [missing]\n    group-by: [cs-host]\n    timespan: 1m\n    condition:\n        gte: 3\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("admin.yml"),
        "title: Admin console probe\nid: r-4\nlogsource:\n    category: webserver\ndetection:\n    s:\n        cs-uri-stem|startswith: /admin\n        sc-status: 404\n    condition: s\nlevel: low\ngatewatch-actions: [log]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("admin.tests.toml"),
        "[[tests]]\nname = \"a probe\"\nevents = [{ event = { source_ip = \"192.0.2.1\", method = \"GET\", path = \"/admin/login\", status = 404 } }]\nexpect = [{ entity_kind = \"source_ip\", entity_id = \"192.0.2.1\" }]\n\n[[tests]]\nname = \"the real console\"\nevents = [{ event = { source_ip = \"192.0.2.1\", method = \"GET\", path = \"/admin/login\", status = 200 } }]\nexpect = []\n",
    )
    .unwrap();
    let l = gatewatch::sigma::load::load(&config(dir.path()));
    let msgs: Vec<String> = l.errors.iter().map(|e| e.to_string()).collect();
    assert!(msgs.iter().any(|m| m.contains("Needs a referer") && m.contains("`cs-content-type`")), "{msgs:#?}");
    assert!(msgs.iter().any(|m| m.contains("Needs a referer") && m.contains("`cs-cookie`")), "{msgs:#?}");
    assert!(msgs.iter().any(|m| m.contains("Count by host") && m.contains("`missing`")), "{msgs:#?}");
    assert_eq!(l.skipped.len(), 1, "the Windows rule is skipped, not an error");
    assert_eq!(l.files.len(), 1);
    assert_eq!(l.files[0].actions, vec!["log".to_string()]);
    assert_eq!(l.files[0].tests.len(), 2);
    // `gatewatch check` runs the tests beside the rule.
    std::fs::remove_file(dir.path().join("bad.yml")).unwrap();
    std::fs::remove_file(dir.path().join("corr.yml")).unwrap();
    let conf = dir.path().join("gatewatch.toml");
    std::fs::write(
        &conf,
        format!(
            "[detectors]\ndir = \"{}\"\n[rules]\ndir = \"{}\"\n",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("detectors").display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let report = gatewatch::app::check::check(Some(&conf));
    let text = report.render();
    assert!(report.ok(), "{text}");
    assert!(text.contains("ok    ") && text.contains("[r-4] a probe (1 alert(s))"), "{text}");
    assert!(text.contains("[r-4] the real console (0 alert(s))"), "{text}");
    assert!(text.contains("1 loaded, 0 feeding correlations, 1 skipped"), "{text}");
}

#[test]
fn a_secret_in_the_query_or_the_referer_is_a_marker_before_any_rule_reads_it() {
    let token = "ghp_R2d9Xk3LmQ7vT1pZs8WnB4cY6hJf0aEgUiOq";
    let line = format!(
        "198.51.100.9 - - [06/Dec/2026:10:00:00 +0000] \"GET /api/v1/search?q=shoes&access_token={token} HTTP/1.1\" 200 12 \"https://app.example/?token={token}\" \"{BROWSER}\""
    );
    let n = gatewatch::normalize::Normalizer::new(Format::Nginx, KEY);
    let ev = n.normalize_record(line.as_bytes()).unwrap();
    let (q, r) = (ev.query.clone().unwrap(), ev.referer.clone().unwrap());
    assert!(q.starts_with("q=shoes&access_token=") && !q.contains(token), "{q}");
    assert!(r.starts_with("https://app.example/?token=") && !r.contains(token), "{r}");
    // A rule that matches on them sees, and puts in its alert, the markers only.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tok.yml"),
        "title: Token in a URL\nid: t-1\nlogsource: {category: webserver}\ndetection:\n  s: {cs-uri-query|contains: access_token=, cs-referer|contains: token=}\n  condition: s\n",
    )
    .unwrap();
    let alerts = replay(&config(dir.path()), Format::Nginx, &[line]);
    assert_eq!(alerts.len(), 1);
    let json = alerts[0].to_json();
    assert!(!json.contains(token) && json.contains("access_token="), "{json}");
}

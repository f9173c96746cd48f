//! Detection with what gateways really log by default (issue 15, "principal fallback"):
//! Kong 3 writes `authorization: REDACTED` and batches records into JSON arrays; Traefik's
//! default header handling drops `Authorization` and names the caller only in
//! `ClientUsername`. Neither record carries a token, so every token-keyed detection must
//! fall back to the best principal the record carries (Kong's credential id, Traefik's user
//! name) and say so, without turning a credential that every user of a public app shares
//! (Kong's JWT credential of `shop-ios`) into a stolen token.
//!
//! The simulated hour of `simulated_formats` (seed 3, 40 clients, every kind of attack),
//! rewritten as those gateways write it and replayed with the shipped detectors.

use std::collections::BTreeSet;

use gatewatch::config::GatewatchConfig;
use gatewatch::engine::Pipeline;
use gatewatch::event::{Alert, EntityKind};
use gatewatch::normalize::Format;
use gatewatch::simulate::render::{render_kong, render_traefik};
use gatewatch::simulate::{simulate, SimConfig, SimRecord, Simulation};
use serde_json::Value;

const KEY: &[u8] = b"principal-fallback-test-key";
/// How far outside the attack's own span an alert about it may fall.
const SLACK_MS: i64 = 15 * 60_000;

/// Kong 3's default: the `Authorization` header's value is logged as `REDACTED`.
fn kong3(rec: &SimRecord) -> String {
    let mut v: Value = serde_json::from_str(&render_kong(rec)).unwrap();
    if let Some(h) = v["request"]["headers"].as_object_mut() {
        if h.contains_key("authorization") {
            h.insert("authorization".into(), "REDACTED".into());
        }
    }
    v.to_string()
}

/// Traefik's default header handling: no `request_Authorization`; the caller's user name in
/// `ClientUsername` (also on a refused call, as the caller wrote it).
fn traefik_default(rec: &SimRecord) -> String {
    let mut v: Value = serde_json::from_str(&render_traefik(rec)).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("request_Authorization");
    let user = rec.token.as_ref().map_or("-".to_string(), |t| t.subject.to_string());
    o.insert("ClientUsername".into(), user.into());
    v.to_string()
}

/// The entity ids a format names a record's caller by, when it logs no token: Kong's
/// credential id; Traefik's user name, as a principal and as the client id it also is.
fn kong3_principal(rec: &SimRecord) -> Vec<String> {
    rec.consumer.iter().map(|c| format!("cred:{}", c.credential_id)).collect()
}

fn traefik_principal(rec: &SimRecord) -> Vec<String> {
    rec.token.iter().flat_map(|t| [format!("user:{}", t.subject), t.subject.to_string()]).collect()
}

struct Variant {
    name: &'static str,
    format: Format,
    render: fn(&SimRecord) -> String,
    principal: fn(&SimRecord) -> Vec<String>,
    /// Records per Kafka message (Kong's batched log plugins send JSON arrays).
    batch: usize,
}

const VARIANTS: [Variant; 2] = [
    Variant { name: "kong-3", format: Format::Kong, render: kong3, principal: kong3_principal, batch: 20 },
    Variant {
        name: "traefik-default",
        format: Format::Traefik,
        render: traefik_default,
        principal: traefik_principal,
        batch: 1,
    },
];

fn config() -> GatewatchConfig {
    let mut cfg = GatewatchConfig::default();
    cfg.detectors.dir = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors").into());
    cfg
}

fn replay(s: &Simulation, v: &Variant) -> Vec<Alert> {
    let mut p = Pipeline::from_config(&config(), v.format, KEY).expect("shipped detectors load");
    let mut out = Vec::new();
    for chunk in s.records.chunks(v.batch) {
        let lines: Vec<String> = chunk.iter().map(v.render).collect();
        let msg = if v.batch > 1 { format!("[{}]", lines.join(",")) } else { lines.concat() };
        for t in chunk.iter().filter_map(|r| r.token.as_ref()).filter(|t| t.raw.len() > 40) {
            // a token in the query string (an exposure attack) may stay; none in a header
            let at = msg.find(&t.raw[..40]).unwrap_or(0);
            assert!(at == 0 || msg[..at].ends_with('='), "{}: a token in the record's headers", v.name);
        }
        p.process(msg.as_bytes(), None, &mut out);
    }
    p.finish(&mut out);
    assert_eq!(p.stats().rejected_total(), 0, "{}: every record reads", v.name);
    out
}

/// The entity ids an alert about label `li` may name in `v`: the label's own and related
/// ones, and the principals the attack's records carry.
fn names(s: &Simulation, li: usize, v: &Variant) -> BTreeSet<String> {
    let l = &s.labels[li];
    let mut out: BTreeSet<String> =
        std::iter::once(l.entity_id.clone()).chain(l.related.iter().map(|r| r.entity_id.clone())).collect();
    out.extend(s.records.iter().filter(|r| r.attack == Some(li as u16)).flat_map(v.principal));
    out
}

fn explains(s: &Simulation, li: usize, v: &Variant, a: &Alert) -> bool {
    let l = &s.labels[li];
    let detector = a.detector == l.detector || l.related.iter().any(|r| r.detector == a.detector);
    detector
        && names(s, li, v).contains(&a.entity.id)
        && a.window_end >= l.start - SLACK_MS
        && a.window_start <= l.end + SLACK_MS
}

#[test]
fn attacks_are_found_on_the_principal_when_the_gateway_logs_no_token() {
    let s = simulate(&SimConfig {
        seed: 3,
        duration_ms: 3_600_000,
        clients: 40,
        fingerprint_key: KEY.to_vec(),
        ..SimConfig::default()
    });
    // what each gateway must find although it logs no token
    let must: [(&str, &[&str]); 2] =
        [("kong-3", &["scope_probing", "stolen_token"]), ("traefik-default", &["stolen_token", "scope_probing"])];
    let mut failures = Vec::new();
    for (v, (name, wanted)) in VARIANTS.iter().zip(must) {
        assert_eq!(v.name, name);
        let alerts = replay(&s, v);
        for attack in wanted {
            let (li, l) = s.labels.iter().enumerate().find(|(_, l)| l.attack == *attack).expect("injected");
            let on_principal = alerts
                .iter()
                .find(|a| a.detector == l.detector && explains(&s, li, v, a) && a.entity.kind == EntityKind::Token);
            match on_principal {
                None => failures.push(format!("{}: {attack} missed", v.name)),
                Some(a) => {
                    let keyed_on = a.evidence["keyed_on"].as_str().unwrap_or_default();
                    let want = if v.name == "kong-3" { "credential" } else { "user" };
                    if keyed_on != want {
                        failures.push(format!("{}: {attack} keyed on {keyed_on:?}, want {want}", v.name));
                    }
                }
            }
        }
        // nothing fires that no attack explains: no shared credential taken for a stolen token
        for a in &alerts {
            if !(0..s.labels.len()).any(|li| explains(&s, li, v, a)) {
                failures.push(format!("{}: unexpected {} on {}: {}", v.name, a.detector, a.entity.id, a.summary));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Twenty attack-free hours of a shop's traffic in each way of logging. A credential every user
/// of a public app presents must not look stolen; the one case left (a small app's credential
/// gaining users in four new carrier regions within ten minutes of its first window, which no
/// count of regions can tell from a thief) is bounded, not hidden: at most one such alert.
#[test]
fn hours_without_attacks_raise_at_most_one_alert_in_twenty_when_the_gateway_logs_no_token() {
    let mut false_alerts = Vec::new();
    for seed in 1..=20 {
        let s = simulate(&SimConfig {
            seed,
            duration_ms: 3_600_000,
            clients: 60,
            attacks: false,
            fingerprint_key: KEY.to_vec(),
            ..SimConfig::default()
        });
        for v in &VARIANTS {
            for a in replay(&s, v) {
                false_alerts.push(format!("seed {seed}, {}: {} {} {}", v.name, a.detector, a.entity.id, a.summary));
            }
        }
    }
    // measured: one, seed 11 on Kong 3 (shop-android's credential); none on Traefik
    assert!(false_alerts.len() <= 1, "false alerts on benign traffic:\n{}", false_alerts.join("\n"));
    assert!(false_alerts.iter().all(|a| a.contains("kong-3: token_reuse cred:")), "{false_alerts:?}");
}

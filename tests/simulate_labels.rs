//! The labels tell the truth: each names an entity that really occurs in the
//! records, over the window the attack really spans, at a realistic intensity.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use gatewatch::event::EntityKind;
use gatewatch::simulate::{simulate, Label, SimConfig, SimRecord, Simulation};

fn hour() -> &'static Simulation {
    static S: OnceLock<Simulation> = OnceLock::new();
    S.get_or_init(|| simulate(&SimConfig::default()))
}

fn attack_records(s: &Simulation, i: usize) -> Vec<&SimRecord> {
    s.records.iter().filter(|r| r.attack == Some(i as u16)).collect()
}

fn net16(r: &SimRecord) -> [u8; 2] {
    let o = r.source_ip.octets();
    [o[0], o[1]]
}

fn label<'a>(s: &'a Simulation, attack: &str) -> (usize, &'a Label) {
    s.labels.iter().enumerate().find(|(_, l)| l.attack == attack).unwrap_or_else(|| panic!("no {attack} label"))
}

#[test]
fn one_label_per_attack_kind_spread_over_the_hour() {
    let s = hour();
    let kinds: BTreeSet<&str> = s.labels.iter().map(|l| l.attack).collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "brute_force",
            "credential_stuffing",
            "latency_regression",
            "scope_escalation",
            "scope_probing",
            "stolen_token",
            "token_replay"
        ]
    );
    let start = SimConfig::default().start;
    let mut starts: Vec<i64> = s.labels.iter().map(|l| (l.start - start) / 60_000).collect();
    starts.sort_unstable();
    assert!(starts[0] >= 5 && *starts.last().unwrap() >= 45, "attack start minutes {starts:?}");
    for l in &s.labels {
        assert!(l.start < l.end && l.end < start + 3_600_000, "{l:?}");
        assert!(!l.description.is_empty());
    }
}

#[test]
fn every_label_names_an_entity_its_records_carry() {
    let s = hour();
    for (i, l) in s.labels.iter().enumerate() {
        let recs = attack_records(s, i);
        if l.attack == "latency_regression" {
            assert!(recs.is_empty(), "a regression is a change in benign traffic");
            let on_route =
                s.records.iter().filter(|r| r.route == l.entity_id && r.ts >= l.start && r.ts <= l.end).count();
            assert!(on_route > 100, "{on_route} requests on {} during the regression", l.entity_id);
            continue;
        }
        assert!(!recs.is_empty(), "{}: no records", l.attack);
        assert_eq!(recs.iter().map(|r| r.ts).min(), Some(l.start), "{}", l.attack);
        assert_eq!(recs.iter().map(|r| r.ts).max(), Some(l.end), "{}", l.attack);
        for r in &recs {
            let id = match l.entity_kind {
                EntityKind::SourceIp => r.source_ip.to_string(),
                EntityKind::Token => r.token_fingerprint().expect("token attack carries a token").to_hex(),
                EntityKind::Route => r.route.to_string(),
                EntityKind::ClientId => r.client_id.as_deref().unwrap_or_default().to_string(),
            };
            assert_eq!(id, l.entity_id, "{}", l.attack);
        }
        for rel in &l.related {
            let occurs = s.records.iter().any(|r| match rel.entity_kind {
                EntityKind::SourceIp => r.source_ip.to_string() == rel.entity_id,
                EntityKind::Token => r.token_fingerprint().map(|f| f.to_hex()) == Some(rel.entity_id.clone()),
                EntityKind::Route => r.route == rel.entity_id,
                EntityKind::ClientId => {
                    r.client_id.as_deref() == Some(rel.entity_id.as_str())
                        || r.consumer.as_ref().is_some_and(|c| c.id == rel.entity_id)
                }
            });
            assert!(occurs, "{}: related {:?} never occurs", l.attack, rel);
        }
        let json: serde_json::Value = serde_json::from_str(&l.to_json()).unwrap();
        assert_eq!(json["entity"]["id"], l.entity_id);
        assert_eq!(json["entity"]["kind"], l.entity_kind.as_str());
    }
}

#[test]
fn token_labels_use_the_configured_fingerprint_key() {
    let a = simulate(&SimConfig { duration_ms: 12 * 60_000, clients: 40, ..SimConfig::default() });
    let b = simulate(&SimConfig {
        duration_ms: 12 * 60_000,
        clients: 40,
        fingerprint_key: b"other".to_vec(),
        ..SimConfig::default()
    });
    let fp = gatewatch::scrub::Fingerprinter::new(gatewatch::config::DEV_FINGERPRINT_KEY.as_bytes());
    let mut tokens = 0;
    for (la, lb) in a.labels.iter().zip(&b.labels) {
        if la.entity_kind == EntityKind::Token {
            tokens += 1;
            assert_ne!(la.entity_id, lb.entity_id, "{}", la.attack);
            let rec = a
                .records
                .iter()
                .find(|r| r.token_fingerprint().map(|f| f.to_hex()) == Some(la.entity_id.clone()))
                .unwrap();
            assert_eq!(fp.fingerprint(rec.token.as_ref().unwrap().raw.as_bytes()).to_hex(), la.entity_id);
        }
    }
    assert!(tokens >= 3, "{tokens} token labels");
}

#[test]
fn brute_force_is_one_address_failing_for_minutes() {
    let s = hour();
    let (i, l) = label(s, "brute_force");
    let recs = attack_records(s, i);
    assert!((40..=200).contains(&recs.len()), "{} attempts", recs.len());
    assert!(recs.iter().all(|r| r.status == 401 && r.token.is_none()));
    assert!(recs.iter().all(|r| r.route == "POST /oauth/token" || r.route == "POST /v1/auth/login"));
    assert!(l.end - l.start >= 3 * 60_000);
    // the attacker's address is nobody else's
    assert!(s.records.iter().filter(|r| r.source_ip.to_string() == l.entity_id).all(|r| r.attack == Some(i as u16)));
}

#[test]
fn credential_stuffing_comes_from_many_addresses_a_few_tries_each() {
    let s = hour();
    let (i, _) = label(s, "credential_stuffing");
    let recs = attack_records(s, i);
    let mut per_ip: HashMap<_, usize> = HashMap::new();
    for r in &recs {
        *per_ip.entry(r.source_ip).or_default() += 1;
    }
    assert!(per_ip.len() >= 40, "{} addresses", per_ip.len());
    assert!(per_ip.values().all(|n| *n <= 6));
    let failed = recs.iter().filter(|r| r.status == 401).count();
    assert!(failed * 100 >= recs.len() * 90, "{failed}/{}", recs.len());
    let nets: HashSet<_> = recs.iter().map(|r| net16(r)).collect();
    assert!(nets.len() >= 30, "{} /16 networks", nets.len());
}

#[test]
fn replayed_token_had_expired_and_is_always_rejected() {
    let s = hour();
    let (i, l) = label(s, "token_replay");
    let recs = attack_records(s, i);
    assert!((30..=80).contains(&recs.len()), "{}", recs.len());
    let tok = recs[0].token.clone().unwrap();
    assert!(tok.expires_at < l.start, "token still valid at the replay");
    assert!(recs.iter().all(|r| r.status == 401 && r.answered_by_gateway));
    let ips: HashSet<_> = recs.iter().map(|r| r.source_ip).collect();
    assert!((1..=3).contains(&ips.len()));
}

#[test]
fn stolen_token_is_used_from_far_networks_while_its_owner_carries_on() {
    let s = hour();
    let (i, l) = label(s, "stolen_token");
    let recs = attack_records(s, i);
    let nets: HashSet<_> = recs.iter().map(|r| net16(r)).collect();
    let first_octets: HashSet<_> = recs.iter().map(|r| r.source_ip.octets()[0]).collect();
    assert!(nets.len() >= 6 && first_octets.len() >= 5, "{nets:?}");
    assert!(l.end - l.start <= 7 * 60_000, "spread over {} ms", l.end - l.start);
    let tok = recs[0].token.clone().unwrap();
    assert!(tok.expires_at > l.end, "the stolen token is valid throughout");
    let ok = recs.iter().filter(|r| r.status < 400).count();
    assert!(ok * 10 >= recs.len() * 8, "{ok}/{}", recs.len());
    let owner: Vec<_> = s
        .records
        .iter()
        .filter(|r| {
            r.attack.is_none() && r.token_fingerprint() == Some(tok.fingerprint) && r.ts >= l.start && r.ts <= l.end
        })
        .collect();
    assert!(owner.len() >= 5, "owner made {} calls during the theft", owner.len());
    let owner_nets: HashSet<_> = owner.iter().map(|r| net16(r)).collect();
    assert!(owner_nets.is_disjoint(&nets));
}

#[test]
fn latency_regression_triples_the_routes_p95() {
    let s = hour();
    let (_, l) = label(s, "latency_regression");
    let p95 = |from: i64, to: i64| {
        let mut v: Vec<u32> = s
            .records
            .iter()
            .filter(|r| r.route == l.entity_id && r.ts >= from && r.ts < to && r.status < 400)
            .filter_map(|r| r.upstream_latency_ms)
            .collect();
        v.sort_unstable();
        assert!(v.len() >= 50, "{} samples", v.len());
        v[v.len() * 95 / 100] as f64
    };
    let before = p95(l.start - 10 * 60_000, l.start);
    let during = p95(l.start + 60_000, l.end);
    let after = p95(l.end + 1_000, l.end + 5 * 60_000);
    assert!(during >= 2.3 * before, "p95 before {before} during {during}");
    assert!(after <= 1.5 * before, "p95 before {before} after {after}");
    assert!(l.end - l.start >= 8 * 60_000);
}

#[test]
fn scope_escalation_deletes_users_without_admin() {
    let s = hour();
    let (i, _) = label(s, "scope_escalation");
    let recs = attack_records(s, i);
    assert!((5..=12).contains(&recs.len()));
    for r in &recs {
        assert_eq!(r.route, "DELETE /v1/users/{id}");
        assert!((200..300).contains(&r.status));
        assert!(!r.scopes().contains(&"admin"));
    }
    // from the culprit's own addresses: an insider, not a thief
    let tok = recs[0].token_fingerprint();
    let own: HashSet<_> =
        s.records.iter().filter(|r| r.attack.is_none() && r.token_fingerprint() == tok).map(|r| r.source_ip).collect();
    assert!(recs.iter().all(|r| own.contains(&r.source_ip)));
}

#[test]
fn scope_probing_is_a_burst_of_403s_outside_the_tokens_scopes() {
    let s = hour();
    let (i, l) = label(s, "scope_probing");
    let recs = attack_records(s, i);
    assert!((25..=60).contains(&recs.len()));
    assert!(recs.iter().all(|r| r.status == 403));
    assert!(l.end - l.start <= 5 * 60_000 + 1_000);
    let routes: HashSet<_> = recs.iter().map(|r| r.route).collect();
    assert!(routes.len() >= 4, "{routes:?}");
}

#[test]
fn attack_rounds_repeat_every_kind_with_distinct_entities() {
    let s = simulate(&SimConfig { attack_rounds: 2, clients: 120, ..SimConfig::default() });
    assert_eq!(s.labels.len(), 14);
    let ids: HashSet<_> =
        s.labels.iter().filter(|l| l.entity_kind != EntityKind::Route).map(|l| &l.entity_id).collect();
    assert_eq!(ids.len(), s.labels.iter().filter(|l| l.entity_kind != EntityKind::Route).count());
    let none = simulate(&SimConfig { attacks: false, clients: 120, ..SimConfig::default() });
    assert!(none.labels.is_empty());
    assert!(none.records.iter().all(|r| r.attack.is_none()));
}

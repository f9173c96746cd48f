//! Cross-check of simulator and normalizers: every simulated record, rendered in
//! each gateway format, must read back (explicit format and `auto`) as its ground truth.

use gatewatch::config::GatewatchConfig;
use gatewatch::event::Event;
use gatewatch::normalize::{Format, Normalizer, RouteTemplater};
use gatewatch::scrub::Fingerprinter;
use gatewatch::simulate::{render, simulate, SimConfig, SimRecord};

const KEY: &[u8] = b"roundtrip-test-key";

fn sim() -> gatewatch::simulate::Simulation {
    simulate(&SimConfig {
        seed: 11,
        duration_ms: 15 * 60_000,
        clients: 60,
        fingerprint_key: KEY.to_vec(),
        attacks: true,
        ..SimConfig::default()
    })
}

/// What gatewatch must read from `rec` rendered as `format`. Kong names the
/// application by its consumer when it authenticated the request (the contract's
/// precedence: gateway consumer, then JWT claims).
fn check(
    rec: &SimRecord,
    format: Format,
    ev: &Event,
    fp: &Fingerprinter,
    templater: &RouteTemplater,
) -> Result<(), String> {
    let mut errs = Vec::new();
    macro_rules! eq {
        ($name:literal, $got:expr, $want:expr) => {
            if $got != $want {
                errs.push(format!("{}: got {:?}, want {:?}", $name, $got, $want));
            }
        };
    }
    let kong_consumer = if format == Format::Kong { rec.consumer.as_ref() } else { None };
    eq!("gateway", ev.gateway, format.name());
    eq!("ts", ev.ts, rec.ts);
    let want_client = match kong_consumer {
        Some(c) => Some(c.id.clone()),
        None => rec.client_id.as_deref().map(str::to_string),
    };
    eq!("client_id", ev.client_id.as_deref().map(str::to_string), want_client);
    let want_subject = match kong_consumer {
        Some(c) => Some(c.username.to_string()),
        None => rec.subject.as_deref().map(str::to_string),
    };
    eq!("subject", ev.subject.as_deref().map(str::to_string), want_subject);
    // the fingerprint recomputed from the raw token, not taken from the simulator
    let want_fp = rec.token.as_ref().map(|t| fp.fingerprint(t.raw.as_bytes()));
    eq!("token_fingerprint", ev.token_fingerprint, want_fp);
    eq!("token_fingerprint (simulator)", ev.token_fingerprint, rec.token_fingerprint());
    let want_scopes: Vec<String> = rec.scopes().iter().map(|s| s.to_string()).collect();
    eq!("scopes", ev.scopes, want_scopes);
    eq!("source_ip", ev.source_ip, Some(std::net::IpAddr::V4(rec.source_ip)));
    eq!("method", ev.method.as_deref(), Some(rec.method));
    eq!("host", ev.host.as_deref(), Some(rec.host));
    eq!("path", ev.path.as_deref(), Some(rec.path.as_str()));
    eq!("route", ev.route.as_deref(), Some(rec.route));
    eq!("route (templater)", templater.route(Some(rec.method), &rec.path), rec.route);
    eq!("status", ev.status, Some(rec.status));
    eq!("latency_ms", ev.latency_ms, Some(rec.latency_ms as f64));
    eq!("upstream_latency_ms", ev.upstream_latency_ms, rec.upstream_latency_ms.map(|u| u as f64));
    eq!("bytes_sent", ev.bytes_sent, Some(rec.bytes_sent));
    eq!("user_agent", ev.user_agent.as_deref(), Some(&*rec.user_agent));
    eq!("request_id", ev.request_id.as_deref(), Some(rec.request_id.as_str()));
    let want_upstream = match format {
        Format::Kong => Some(rec.upstream.to_string()),
        Format::Envoy => {
            (!rec.answered_by_gateway).then(|| format!("outbound|8080||{}.prod.svc.cluster.local", rec.upstream))
        }
        _ => (!rec.answered_by_gateway).then(|| rec.upstream.to_string()),
    };
    // Envoy: with no cluster selected (`-`, the gateway answered itself) there is no upstream;
    // a route name is not an upstream.
    eq!("upstream", ev.upstream.as_deref().map(str::to_string), want_upstream);
    // bearer tokens in the Authorization header are where they belong: no exposure
    eq!("exposures", ev.exposures.len(), 0);
    if let Some(t) = &rec.token {
        let printed = serde_json::to_string(ev).unwrap();
        let sig = &t.raw[t.raw.rfind('.').unwrap() + 1..];
        if printed.contains(sig) || printed.contains(&t.raw[..60]) {
            errs.push("raw token in the normalized event".into());
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

#[test]
fn every_record_reads_back_as_its_ground_truth_in_every_format() {
    let s = sim();
    assert!(s.records.len() > 5_000, "{} records", s.records.len());
    let fp = Fingerprinter::new(KEY);
    let templater = RouteTemplater::default();
    let mut failures = Vec::new();
    for format in [Format::Kong, Format::Envoy, Format::Generic] {
        // as `gatewatch normalize` / `replay` build it (the default config)
        let explicit = Normalizer::from_config(&GatewatchConfig::default(), format, KEY);
        let auto = Normalizer::from_config(&GatewatchConfig::default(), Format::Auto, KEY);
        for (i, rec) in s.records.iter().enumerate() {
            let line = render(rec, format);
            for (how, n) in [("explicit", &explicit), ("auto", &auto)] {
                match n.normalize_record(line.as_bytes()) {
                    Ok(ev) => {
                        if let Err(e) = check(rec, format, &ev, &fp, &templater) {
                            failures.push(format!("{} {how} record {i}: {e}\n  {line}", format.name()));
                        }
                    }
                    Err(rej) => failures.push(format!("{} {how} record {i}: rejected {rej}\n  {line}", format.name())),
                }
            }
        }
    }
    let mut kinds = std::collections::BTreeMap::new();
    for f in &failures {
        let head = f.lines().next().unwrap_or("");
        let (fmt, rest) = head.split_once(" record ").unwrap_or((head, ""));
        for field in
            rest.split(": ").nth(1).into_iter().chain(rest.split("; ").skip(1).filter_map(|x| x.split(':').next()))
        {
            *kinds.entry(format!("{fmt} {field}")).or_insert(0) += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatching records by format and field: {kinds:?}\nfirst ones:\n{}",
        failures.len(),
        failures[..failures.len().min(4)].join("\n")
    );
}

#[test]
fn batched_kong_messages_read_back_record_by_record() {
    // kafka-log with max_batch_size > 1 sends a JSON array per message
    let s = sim();
    let fp = Fingerprinter::new(KEY);
    let templater = RouteTemplater::default();
    let n = Normalizer::from_config(&GatewatchConfig::default(), Format::Auto, KEY);
    for chunk in s.records.chunks(50).take(40) {
        let msg = format!("[{}]", chunk.iter().map(|r| render(r, Format::Kong)).collect::<Vec<_>>().join(","));
        let mut got = Vec::new();
        n.normalize_message(msg.as_bytes(), &mut |r| got.push(r.expect("batched record reads")));
        assert_eq!(got.len(), chunk.len());
        for (rec, ev) in chunk.iter().zip(&got) {
            check(rec, Format::Kong, ev, &fp, &templater).unwrap();
        }
    }
}

#[test]
fn rendered_lines_are_single_line_json_objects_shaped_like_each_gateway() {
    let s = sim();
    let rec = s.records.iter().find(|r| r.token.is_some() && r.status == 200 && r.query.is_some()).unwrap();
    let kong: serde_json::Value = serde_json::from_str(&render(rec, Format::Kong)).unwrap();
    assert_eq!(kong["started_at"], rec.ts);
    assert_eq!(kong["request"]["uri"], rec.uri());
    assert_eq!(kong["latencies"]["request"], rec.latency_ms);
    assert!(kong["request"]["headers"]["authorization"].as_str().unwrap().starts_with("Bearer eyJ"));
    assert!(kong["consumer"]["id"].is_string());
    let envoy: serde_json::Value = serde_json::from_str(&render(rec, Format::Envoy)).unwrap();
    assert_eq!(envoy["response_code"], rec.status.to_string());
    assert!(envoy["start_time"].as_str().unwrap().ends_with('Z'));
    assert!(envoy["downstream_remote_address"].as_str().unwrap().starts_with(&rec.source_ip.to_string()));
    let generic: serde_json::Value = serde_json::from_str(&render(rec, Format::Generic)).unwrap();
    assert_eq!(generic["status"], rec.status);
    assert_eq!(generic["path"], rec.uri());
    for f in [Format::Kong, Format::Envoy, Format::Generic] {
        for r in s.records.iter().step_by(97) {
            assert!(!render(r, f).contains('\n'));
        }
    }
    // unauthenticated and rejected requests carry no consumer
    let rejected = s.records.iter().find(|r| r.status == 401 && r.token.is_some()).unwrap();
    let kong: serde_json::Value = serde_json::from_str(&render(rejected, Format::Kong)).unwrap();
    assert!(kong.get("consumer").is_none());
    assert_eq!(kong["latencies"]["proxy"], -1);
}

/// `Normalizer::new` (used by library callers, tests and benches) must read the
/// same as the config-built normalizer. Ignored until the normalizer is fixed:
/// `GenericMap::default()` has `latency_scale == 0.0`, so every generic latency reads as 0.
#[test]
fn normalizer_new_reads_generic_latency_like_the_config_built_one() {
    let s = sim();
    let a = Normalizer::new(Format::Generic, KEY);
    let b = Normalizer::from_config(&GatewatchConfig::default(), Format::Generic, KEY);
    for rec in s.records.iter().take(500) {
        let line = render(rec, Format::Generic);
        assert_eq!(a.normalize_record(line.as_bytes()), b.normalize_record(line.as_bytes()));
    }
}

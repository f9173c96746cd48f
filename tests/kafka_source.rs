//! The live service against an in-process Kafka (`MockCluster`, real sockets):
//! an attack produced to the topic comes out as an alert; a malformed record
//! goes to the dead-letter topic and the records after it are still processed;
//! `/metrics` and `/readyz` answer over HTTP; shutdown commits everything.
#![allow(clippy::disallowed_methods)] // times sockets and timeouts, not detection

mod kafka_support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatewatch::app::run::{Service, ServiceParts};
use gatewatch::source::kafka::{KafkaSettings, StartFrom};
use kafka_support::*;

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cond()
}

/// A well-formed JWT (unsigned test token) inside the malformed record.
const BAD_JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtYWxsb3J5IiwiY2xpZW50X2lkIjoiZGVhZC1sZXR0ZXIifQ.bm90LWEtcmVhbC1zaWduYXR1cmUtanVzdC1ieXRlcw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_is_alerted_and_a_malformed_record_goes_to_dead_letter() {
    const P: i32 = 2;
    let mc = cluster(&[("logs", P), ("dlq", 1), ("logs-clean", P)]);
    let bootstrap = mc.bootstrap_servers();

    let attacker = "203.0.113.7";
    let mut recs =
        merge(vec![benign(T0, T0 + 6 * 60_000, 5, 10_000, P), brute_force(attacker, T0 + 60_000, 30, 5_000, P)]);
    // A malformed record in the attacker's partition, in the middle of the attack.
    let bad_partition = partition_of(attacker, P);
    let pos = recs.iter().position(|r| r.partition == bad_partition && r.ts >= T0 + 90_000).unwrap();
    let bad_offset = recs[..pos].iter().filter(|r| r.partition == bad_partition).count() as i64;
    recs.insert(
        pos,
        Rec {
            partition: bad_partition,
            key: attacker.into(),
            payload: format!("this is not json, Authorization: Bearer {BAD_JWT}"),
            ts: T0 + 90_000,
        },
    );
    produce(&bootstrap, "logs", &recs);
    let good = (recs.len() - 1) as f64;

    let mut settings = KafkaSettings::new(bootstrap.clone(), vec!["logs".into()], "g-attack");
    settings.start_from = StartFrom::Earliest;
    settings.dead_letter_topic = Some("dlq".into());
    settings.scrubbed_topic = Some("logs-clean".into());
    settings.commit_interval = Duration::from_millis(200);
    let handoff = Arc::new(Collect::default());
    let registry = Arc::new(prometheus::Registry::new());
    let service = Service::start(ServiceParts {
        run_as: gatewatch::app::run::RunAs::Single,
        settings,
        listen: "127.0.0.1:0".parse().unwrap(),
        new_pipeline: pipelines(),
        handoff: handoff.clone(),
        registry: registry.clone(),
        admin: Some(gatewatch::admin::router(gatewatch::admin::AdminState::new(
            Some(gatewatch::actions::secret::Secret::new("admin-token-for-this-test")),
            None,
        ))),
        admin_limits: Default::default(),
        dispatcher: None,
        entities: None,
    })
    .await
    .expect("service starts");

    assert!(eventually(Duration::from_secs(90), || handoff.has_ip(attacker)).await, "no alert for the brute force");
    assert!(
        eventually(Duration::from_secs(60), || metric(&registry, "gatewatch_events_total") >= good).await,
        "records after the malformed one were not all processed: {} of {good}",
        metric(&registry, "gatewatch_events_total")
    );
    let alert = handoff.0.lock().unwrap().iter().find(|a| a.entity.id == attacker).cloned().unwrap();
    assert_eq!(alert.detector, "auth_failure_spike");

    // The dead letter: reason, position and the record scrubbed.
    let dl = read_topic(&bootstrap, "dlq", 1, Duration::from_secs(30), |m| !m.is_empty());
    assert_eq!(dl.len(), 1, "one dead letter expected");
    let v: serde_json::Value = serde_json::from_slice(&dl[0].2).unwrap();
    let bad = format!("this is not json, Authorization: Bearer {BAD_JWT}");
    let mut expected = String::new();
    gatewatch::normalize::Normalizer::new(gatewatch::normalize::Format::Generic, KEY.as_bytes())
        .normalize_message(bad.as_bytes(), &mut |r| expected = r.unwrap_err().reason.as_str().to_string());
    assert_eq!(v["reason"], expected.as_str());
    assert_eq!(v["source"]["partition"], bad_partition);
    assert_eq!(v["source"]["offset"], bad_offset);
    let record = v["record"].as_str().expect("the scrubbed record is carried");
    assert!(record.starts_with("this is not json, Authorization: Bearer [REDACTED:jwt:"), "{record}");
    assert!(!String::from_utf8_lossy(&dl[0].2).contains(BAD_JWT), "raw token leaked to the dead-letter topic");

    // The scrubbed copy: every record (the malformed one too), same keys, same timestamps.
    let copies = read_topic(&bootstrap, "logs-clean", P, Duration::from_secs(60), |m| m.len() >= recs.len());
    assert_eq!(copies.len(), recs.len(), "one scrubbed copy per record");
    assert!(copies.iter().any(|c| c.2.starts_with(b"this is not json, Authorization: Bearer [REDACTED:jwt:")));
    assert!(copies.iter().all(|c| !String::from_utf8_lossy(&c.2).contains(BAD_JWT)));
    let originals: std::collections::HashSet<&str> = recs.iter().map(|r| r.payload.as_str()).collect();
    let unchanged = copies.iter().filter(|c| originals.contains(String::from_utf8_lossy(&c.2).as_ref())).count();
    assert_eq!(unchanged, recs.len() - 1, "clean records are copied byte for byte");

    // Over HTTP: metrics and readiness.
    let (code, body) = http_get(service.addr, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains(&format!("gatewatch_records_rejected_total{{reason=\"{expected}\"}} 1")), "{body}");
    assert!(body.contains("gatewatch_alerts_total{detector=\"auth_failure_spike\"}"), "{body}");
    assert!(body.contains("gatewatch_kafka_assigned_partitions{stage=\"single\"} 2"), "{body}");
    // evictions per detector id and reason, every series present from the first scrape
    for reason in ["idle", "cap", "cap_protected"] {
        let series =
            format!("gatewatch_state_evictions_total{{detector=\"auth-failure-default\",reason=\"{reason}\"}}");
        assert!(body.contains(&series), "{series} missing:\n{body}");
    }
    assert!(body.contains(&format!("gatewatch_scrubbed_records_total {}", recs.len())), "{body}");
    assert!(body.contains("gatewatch_secrets_scrubbed_total{kind=\"jwt\","), "{body}");
    assert!(!body.contains(BAD_JWT));
    assert_eq!(http_get(service.addr, "/healthz").0, 200);
    // The admin API shares the listener; everything under /api/ needs the bearer token.
    assert_eq!(http_get(service.addr, "/api/v1/revocations").0, 401, "the admin API must refuse an anonymous caller");
    assert!(
        eventually(Duration::from_secs(30), || http_get(service.addr, "/readyz").0 == 200).await,
        "not ready: {}",
        http_get(service.addr, "/readyz").1
    );

    // Graceful stop commits everything that was handled.
    let addr = service.addr;
    service.stop().await.expect("graceful stop");
    let ends: Vec<i64> = (0..P).map(|p| recs.iter().filter(|r| r.partition == p).count() as i64).collect();
    assert_eq!(committed(&bootstrap, "g-attack", "logs", P), ends);
    assert!(std::net::TcpStream::connect(addr).is_err(), "HTTP endpoint still up after stop");
}

/// `gatewatch simulate --brokers` produces exactly what it would print, keyed by client.
#[test]
fn simulate_produces_its_records_to_a_topic() {
    const PARTS: i32 = 4;
    let mc = cluster(&[("sim", PARTS)]);
    let b = mc.bootstrap_servers();
    let args = ["simulate", "--minutes", "10", "--clients", "20", "--format", "generic"];
    let gw = env!("CARGO_BIN_EXE_gatewatch");
    let out = std::process::Command::new(gw).args(args).args(["--brokers", &b, "--topic", "sim"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "records go to Kafka, not stdout");
    let printed = std::process::Command::new(gw).args(args).output().unwrap();
    let mut want: Vec<String> = String::from_utf8(printed.stdout).unwrap().lines().map(str::to_string).collect();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("gatewatch simulate: {} generic records produced to sim", want.len())),
        "{stderr}"
    );
    let mut got: Vec<String> =
        read_all(&b, "sim", PARTS).into_iter().map(|(_, _, m)| String::from_utf8(m).unwrap()).collect();
    assert_eq!(got.len(), want.len());
    got.sort();
    want.sort();
    assert!(got == want, "the produced records differ from the printed ones");
}

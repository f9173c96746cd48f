//! The revocations topic: an enforced revocation is produced to Kafka (real protocol,
//! in-process `MockCluster`) as a deny-list entry keyed by the fingerprint; a dry-run,
//! an allow-listed client and a capped one produce nothing.

mod kafka_support;

use std::sync::Arc;
use std::time::Duration;

use gatewatch::actions::revocation::policy::RevocationRequest;
use gatewatch::actions::revocation::targets::RevocationTarget;
use gatewatch::actions::revocation::{Revoker, Verdict};
use gatewatch::actions::ActionsSettings;
use gatewatch::config::GatewatchConfig;
use gatewatch::event::{ClientIdSource, Fingerprint, Severity};
use gatewatch::source::kafka::revocations::KafkaRevocationsTopic;
use kafka_support::*;
use rdkafka::config::ClientConfig;

fn revocation(dir: &std::path::Path, mode: &str) -> gatewatch::actions::config::RevocationConfig {
    let text = format!(
        "[revocation]\nmode = \"{mode}\"\naudit_log = \"{}/audit.jsonl\"\nnever_revoke_clients = [\"ops-bot\"]\nmax_per_hour = 2\nmax_per_client_per_hour = 1\n",
        dir.display()
    );
    let table: toml::Table = toml::from_str(&text).unwrap();
    let cfg = GatewatchConfig { other: table.into_iter().collect(), ..GatewatchConfig::default() };
    ActionsSettings::from_config_with_env(&cfg, &|_| None).expect("valid").revocation.expect("section")
}

fn req(n: u8, client: &str) -> RevocationRequest {
    RevocationRequest {
        fingerprint: Some(Fingerprint([0xab, 0, 0, 0, 0, 0, 0, n])),
        credential_id: None,
        client_id: Some(client.into()),
        client_id_source: ClientIdSource::Gateway,
        address: None,
        ban_client: false,
        alert_id: format!("alert-{n}"),
        reason: "token used from 7 regions".into(),
        severity: Severity::High,
        source: "alert",
        force_dry_run: false,
    }
}

fn target(bootstrap: &str) -> Arc<dyn RevocationTarget> {
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", bootstrap);
    Arc::new(KafkaRevocationsTopic::new(&base, "revocations", Duration::from_secs(10)).expect("producer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforced_revocations_reach_the_topic_and_nothing_else_does() {
    let cluster = cluster(&[("revocations", 1)]);
    let bootstrap = cluster.bootstrap_servers();
    let t0 = T0;

    // Dry-run (the default mode): decided and audited, nothing published.
    let dir = tempfile::tempdir().unwrap();
    let dry = Revoker::open_with(&revocation(dir.path(), "dry-run"), vec![target(&bootstrap)], t0).unwrap();
    assert_eq!(dry.handle(req(1, "app-1"), t0).await.decision.verdict, Verdict::DryRun);

    // Enforcing: two revocations published; an allow-listed client and one beyond the cap are not.
    let dir = tempfile::tempdir().unwrap();
    let rev = Revoker::open_with(&revocation(dir.path(), "enforce"), vec![target(&bootstrap)], t0).unwrap();
    assert_eq!(rev.handle(req(2, "app-2"), t0).await.decision.verdict, Verdict::Revoke);
    assert_ne!(rev.handle(req(3, "ops-bot"), t0 + 1).await.decision.verdict, Verdict::Revoke);
    assert_eq!(rev.handle(req(4, "app-4"), t0 + 2).await.decision.verdict, Verdict::Revoke);
    assert_ne!(rev.handle(req(5, "app-5"), t0 + 3).await.decision.verdict, Verdict::Revoke, "global cap of 2 per hour");

    let got = tokio::task::spawn_blocking(move || {
        read_topic(&bootstrap, "revocations", 1, Duration::from_secs(60), |recs| recs.len() >= 2)
    })
    .await
    .unwrap();
    // Give a straggler the chance to show up before asserting there is none.
    let entries: Vec<serde_json::Value> =
        got.iter().map(|(_, _, v)| serde_json::from_slice(v).expect("JSON entry")).collect();
    let fps: Vec<&str> = entries.iter().map(|e| e["fingerprint"].as_str().unwrap()).collect();
    assert_eq!(fps, vec!["ab00000000000002", "ab00000000000004"], "{entries:#?}");
    assert_eq!(entries[0]["client_id"], "app-2");
    assert_eq!(entries[0]["alert_id"], "alert-2");
    assert_eq!(entries[0]["reason"], "token used from 7 regions");
    assert!(entries[0]["expires_at"].is_string() || entries[0]["expires_at"].is_null());
}

//! Scale-out: two instances in one consumer group, the second joining in the
//! middle of the stream (a rebalance moves partitions and their state), hand
//! off exactly the alerts a single instance does: the same set, none twice.

mod kafka_support;

use std::sync::Arc;
use std::time::Duration;

use gatewatch::source::kafka::{KafkaSettings, KafkaSource, StartFrom};
use gatewatch::telemetry::Metrics;
use kafka_support::*;

const P: i32 = 4;

fn instance(bootstrap: &str, group: &str) -> (KafkaSource, Arc<Collect>, Arc<prometheus::Registry>) {
    let mut s = KafkaSettings::new(bootstrap, vec!["logs".into()], group);
    s.start_from = StartFrom::Earliest;
    s.commit_interval = Duration::from_millis(200);
    s.librdkafka.insert("session.timeout.ms".into(), "6000".into());
    s.librdkafka.insert("heartbeat.interval.ms".into(), "500".into());
    let registry = Arc::new(prometheus::Registry::new());
    let metrics = Metrics::register(&registry).unwrap();
    let handoff = Arc::new(Collect::default());
    let src = KafkaSource::start(s, pipelines(), handoff.clone(), metrics).expect("source starts");
    (src, handoff, registry)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn two_instances_in_one_group_alert_like_one() {
    let mc = cluster(&[("logs", P)]);
    let bootstrap = mc.bootstrap_servers();
    let attackers: Vec<Vec<Rec>> = (0..6)
        .map(|i| brute_force(&format!("203.0.113.{}", 31 + i), T0 + 30_000 + i as i64 * 60_000, 30, 5_000, P))
        .collect();
    let mut lists = vec![benign(T0, T0 + 540_000, 8, 10_000, P)];
    lists.extend(attackers);
    let all = merge(lists);
    let (phase1, phase2): (Vec<Rec>, Vec<Rec>) = all.iter().cloned().partition(|r| r.ts < T0 + 300_000);
    let ends = ends_of(&all, P);

    // Two instances: the second joins after the first has read phase 1.
    produce(&bootstrap, "logs", &phase1);
    let (a, alerts_a, reg_a) = instance(&bootstrap, "two");
    assert!(
        wait_until(Duration::from_secs(60), || metric(&reg_a, "gatewatch_kafka_messages_total") >= phase1.len() as f64),
        "first instance did not read phase 1"
    );
    let (b, alerts_b, _reg_b) = instance(&bootstrap, "two");
    assert!(
        wait_until(Duration::from_secs(60), || a.health().assigned() > 0
            && b.health().assigned() > 0
            && a.health().assigned() + b.health().assigned() == P as i64),
        "the group did not split the partitions: {} + {}",
        a.health().assigned(),
        b.health().assigned()
    );
    produce(&bootstrap, "logs", &phase2);
    assert!(
        wait_until(Duration::from_secs(120), || committed(&bootstrap, "two", "logs", P) == ends),
        "two instances did not finish: {:?} vs {ends:?}",
        committed(&bootstrap, "two", "logs", P)
    );
    b.shutdown(Duration::from_secs(20)).unwrap();
    a.shutdown(Duration::from_secs(20)).unwrap();
    let two: Vec<String> = alerts_a.ids().into_iter().chain(alerts_b.ids()).collect();

    // One instance over the same topic.
    let (one, alerts_one, _) = instance(&bootstrap, "one");
    assert!(
        wait_until(Duration::from_secs(120), || committed(&bootstrap, "one", "logs", P) == ends),
        "single instance did not finish"
    );
    one.shutdown(Duration::from_secs(20)).unwrap();
    let one = sorted(alerts_one.ids());

    assert!(one.len() >= 6, "every brute force should alert: {} alerts", one.len());
    assert!(!alerts_b.ids().is_empty(), "the second instance should have raised some of the alerts");
    let two = sorted(two);
    let mut dedup = two.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), two.len(), "an alert was handed off twice across the rebalance");
    assert_eq!(two, one, "two instances and one instance disagree");
}

//! `[kafka]` and `[admin] listen` in `gatewatch.toml`, parsed into settings the
//! running source can trust (durations converted, ranges checked, every error
//! reported at once with its file and field).
//!
//! ```toml
//! [kafka]
//! brokers = "kafka-1:9092,kafka-2:9092"   # bootstrap servers (required)
//! topics = ["gateway-access-logs"]         # required, one or more
//! group_id = "gatewatch"                    # consumer group; instances in one group share partitions
//! consumers = 1                             # group members per stage in this process, a thread each
//! dead_letter_topic = "gatewatch-dead-letter"   # optional: rejected records (reason, position, scrubbed record)
//! dead_letter_max_record_bytes = 65536          # scrubbed record in a dead letter is cut beyond this
//! scrubbed_topic = "gateway-access-logs-clean"  # optional: a scrubbed copy of every record, for SIEMs
//! alerts_topic = "gatewatch-alerts"             # optional: every alert as JSON, keyed by entity
//! alerts_format = "json"                         # or "ocsf", "ecs": the alerts topic's schema
//! revocations_topic = "gatewatch-revocations"   # optional: every enforced revocation (deny-list entry)
//! start_from = "latest"                     # where a new group starts: latest or earliest
//! rebuild_horizon = "30m"                   # how far back state is rebuilt on assignment
//! max_rebuild_messages = 1000000            # cap on the rebuild when the broker cannot look up by time
//! ready_max_lag = 10000                     # /readyz is false beyond this many messages behind
//! commit_interval = "1s"
//! shutdown_grace = "10s"
//! alert_delivery_timeout = "30s"
//! [kafka.librdkafka]                        # passed to librdkafka verbatim (SASL, SSL, tuning)
//! "security.protocol" = "SASL_SSL"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{parse_duration, ConfigError, GatewatchConfig};

/// librdkafka properties gatewatch sets itself; overriding them would break the
/// at-least-once contract, so `[kafka.librdkafka]` may not name them.
pub const MANAGED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "enable.auto.offset.store",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "enable.partition.eof",
];

/// Where a new consumer group starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
}

impl StartFrom {
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        }
    }
}

/// The validated `[kafka]` section.
#[derive(Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topics: Vec<String>,
    pub group_id: String,
    /// Consumers per stage in this process (default 1), each a member of the group with
    /// partitions and a thread of its own; never more than there are partitions. Each joins
    /// the group on its own: more than one helps only when gatewatch, not the broker, is the
    /// limit (README, *Running on Kafka*).
    pub consumers: usize,
    pub dead_letter_topic: Option<String>,
    /// The scrubbed record carried in a dead letter is cut after this many bytes.
    pub dead_letter_max_record_bytes: usize,
    /// A scrubbed copy of every live message is produced here (same key, scrubbed; same timestamp).
    pub scrubbed_topic: Option<String>,
    pub alerts_topic: Option<String>,
    /// How alerts are written to `alerts_topic`: `json` (the contract), `ocsf`, `ecs`.
    pub alerts_format: crate::actions::siem::AlertFormat,
    /// Every enforced revocation, as a deny-list entry keyed by fingerprint/credential.
    pub revocations_topic: Option<String>,
    pub start_from: StartFrom,
    /// State is rebuilt from this far (in Kafka message time) before the committed position.
    pub rebuild_horizon_ms: i64,
    /// Upper bound on messages re-read per partition when the broker cannot find offsets by time.
    pub max_rebuild_messages: i64,
    /// Readiness requires every assigned partition to be at most this many messages behind.
    pub ready_max_lag: i64,
    pub commit_interval: Duration,
    pub shutdown_grace: Duration,
    /// How long the alerts-topic handoff waits for the broker to acknowledge an alert.
    pub alert_delivery_timeout: Duration,
    /// Verbatim librdkafka properties (may hold secrets: never log the values).
    pub librdkafka: BTreeMap<String, String>,
    /// `[kafka.repartition]`: the two-stage run.
    pub repartition: super::repartition::RepartitionSettings,
}

impl std::fmt::Debug for KafkaSettings {
    // Hand-written so the librdkafka values (passwords, keys) never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("group_id", &self.group_id)
            .field("consumers", &self.consumers)
            .field("dead_letter_topic", &self.dead_letter_topic)
            .field("scrubbed_topic", &self.scrubbed_topic)
            .field("alerts_topic", &self.alerts_topic)
            .field("revocations_topic", &self.revocations_topic)
            .field("librdkafka", &self.librdkafka.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KafkaSettings {
    /// Settings for tests and the demo: everything default but the brokers and topics.
    pub fn new(brokers: impl Into<String>, topics: Vec<String>, group_id: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            topics,
            group_id: group_id.into(),
            consumers: 1,
            dead_letter_topic: None,
            dead_letter_max_record_bytes: 64 * 1024,
            scrubbed_topic: None,
            alerts_topic: None,
            alerts_format: crate::actions::siem::AlertFormat::Json,
            revocations_topic: None,
            start_from: StartFrom::Latest,
            rebuild_horizon_ms: 30 * 60_000,
            max_rebuild_messages: 1_000_000,
            ready_max_lag: 10_000,
            commit_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            alert_delivery_timeout: Duration::from_secs(30),
            librdkafka: BTreeMap::new(),
            repartition: Default::default(),
        }
    }

    /// Reads `[kafka]` from the config. A missing section is an error: `gatewatch run` needs it.
    pub fn from_config(cfg: &GatewatchConfig) -> Result<Self, Vec<ConfigError>> {
        let file = config_file(cfg);
        let Some(section) = cfg.other.get("kafka") else {
            return Err(vec![ConfigError::new(
                &file,
                "kafka",
                "missing: `gatewatch run` needs [kafka] brokers and topics",
            )]);
        };
        Self::from_table(section, &file)
    }

    fn from_table(section: &toml::Value, file: &PathBuf) -> Result<Self, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let Some(table) = section.as_table() else {
            return Err(vec![ConfigError::new(file, "kafka", "must be a table")]);
        };
        let mut s = KafkaSettings::new(String::new(), Vec::new(), "gatewatch");
        let mut err = |field: &str, msg: String| errs.push(ConfigError::new(file, format!("kafka.{field}"), msg));
        for (k, v) in table {
            match k.as_str() {
                "brokers" => match v.as_str() {
                    Some(b) if !b.trim().is_empty() => s.brokers = b.trim().to_string(),
                    _ => err(k, "must be a non-empty string like `host:9092,host2:9092`".into()),
                },
                "topics" => match v.as_array() {
                    Some(a) if !a.is_empty() => {
                        for (i, t) in a.iter().enumerate() {
                            match t.as_str() {
                                Some(t) if valid_topic(t) => s.topics.push(t.to_string()),
                                _ => err(&format!("topics[{i}]"), "must be a topic name ([A-Za-z0-9._-], at most 249 characters)".into()),
                            }
                        }
                    }
                    _ => err(k, "must be a non-empty array of topic names".into()),
                },
                "group_id" => match v.as_str() {
                    Some(g) if !g.is_empty() => s.group_id = g.to_string(),
                    _ => err(k, "must be a non-empty string".into()),
                },
                "dead_letter_topic" | "alerts_topic" | "revocations_topic" | "scrubbed_topic" => match v.as_str() {
                    Some(t) if valid_topic(t) => match k.as_str() {
                        "dead_letter_topic" => s.dead_letter_topic = Some(t.to_string()),
                        "alerts_topic" => s.alerts_topic = Some(t.to_string()),
                        "scrubbed_topic" => s.scrubbed_topic = Some(t.to_string()),
                        _ => s.revocations_topic = Some(t.to_string()),
                    },
                    _ => err(k, "must be a topic name ([A-Za-z0-9._-], at most 249 characters)".into()),
                },
                "alerts_format" => match v.as_str().and_then(crate::actions::siem::AlertFormat::parse) {
                    Some(f) => s.alerts_format = f,
                    None => err(k, "one of json, ocsf, ecs".into()),
                },
                "consumers" => match v.as_integer() {
                    Some(n) if (1..=256).contains(&n) => s.consumers = n as usize,
                    _ => err(k, "must be an integer between 1 and 256".into()),
                },
                "start_from" => match v.as_str() {
                    Some("earliest") => s.start_from = StartFrom::Earliest,
                    Some("latest") => s.start_from = StartFrom::Latest,
                    _ => err(k, "must be `latest` or `earliest`".into()),
                },
                "rebuild_horizon" => match duration(v) {
                    Ok(ms) if (0..=7 * 86_400_000).contains(&ms) => s.rebuild_horizon_ms = ms,
                    Ok(_) => err(k, "must be between 0s and 7d".into()),
                    Err(e) => err(k, e),
                },
                "commit_interval" | "shutdown_grace" | "alert_delivery_timeout" => match duration(v) {
                    Ok(ms) if (100..=3_600_000).contains(&ms) => {
                        let d = Duration::from_millis(ms as u64);
                        match k.as_str() {
                            "commit_interval" => s.commit_interval = d,
                            "shutdown_grace" => s.shutdown_grace = d,
                            _ => s.alert_delivery_timeout = d,
                        }
                    }
                    Ok(_) => err(k, "must be between 100ms and 1h".into()),
                    Err(e) => err(k, e),
                },
                "dead_letter_max_record_bytes" => match v.as_integer() {
                    Some(n) if (0..=16 * 1024 * 1024).contains(&n) => s.dead_letter_max_record_bytes = n as usize,
                    _ => err(k, "must be an integer between 0 (no record) and 16777216".into()),
                },
                "max_rebuild_messages" | "ready_max_lag" => match v.as_integer() {
                    Some(n) if n >= 0 => {
                        if k == "ready_max_lag" {
                            s.ready_max_lag = n
                        } else {
                            s.max_rebuild_messages = n
                        }
                    }
                    _ => err(k, "must be a non-negative integer".into()),
                },
                // Read after the loop: its retention depends on rebuild_horizon.
                "repartition" => {}
                "librdkafka" => match v.as_table() {
                    Some(t) => {
                        for (name, val) in t {
                            if MANAGED_PROPERTIES.contains(&name.as_str()) {
                                err(&format!("librdkafka.\"{name}\""), "is set by gatewatch (use the [kafka] fields instead)".into());
                                continue;
                            }
                            let text = match val {
                                toml::Value::String(x) => x.clone(),
                                toml::Value::Integer(n) => n.to_string(),
                                toml::Value::Boolean(b) => b.to_string(),
                                toml::Value::Float(f) => f.to_string(),
                                _ => {
                                    err(&format!("librdkafka.\"{name}\""), "must be a string, number or boolean".into());
                                    continue;
                                }
                            };
                            s.librdkafka.insert(name.clone(), text);
                        }
                    }
                    None => err(k, "must be a table of librdkafka properties".into()),
                },
                other => err(
                    other,
                    "unknown field (brokers, topics, group_id, consumers, dead_letter_topic, dead_letter_max_record_bytes, scrubbed_topic, alerts_topic, alerts_format, revocations_topic, start_from, rebuild_horizon, max_rebuild_messages, ready_max_lag, commit_interval, shutdown_grace, alert_delivery_timeout, librdkafka, repartition)".into(),
                ),
            }
        }
        if !table.contains_key("brokers") {
            err("brokers", "missing: bootstrap servers, e.g. `kafka-1:9092`".into());
        }
        if !table.contains_key("topics") {
            err("topics", "missing: the topic(s) the gateways write access logs to".into());
        }
        for t in [&s.dead_letter_topic, &s.alerts_topic, &s.revocations_topic, &s.scrubbed_topic].into_iter().flatten()
        {
            if s.topics.contains(t) {
                err("topics", format!("`{t}` is also an output topic: gatewatch would read its own output"));
            }
        }
        if let Some(r) = table.get("repartition") {
            match super::repartition::RepartitionSettings::from_value(r, s.rebuild_horizon_ms, file) {
                Ok(r) => s.repartition = r,
                Err(mut e) => errs.append(&mut e),
            }
        }
        if errs.is_empty() {
            Ok(s)
        } else {
            Err(errs)
        }
    }
}

/// `[admin] listen`: where `/metrics`, `/healthz` and `/readyz` are served.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9977";

/// Reads `[admin] listen` only; the rest of `[admin]` belongs to the admin API.
pub fn admin_listen(cfg: &GatewatchConfig) -> Result<SocketAddr, Vec<ConfigError>> {
    let file = config_file(cfg);
    let listen = cfg.other.get("admin").and_then(|a| a.get("listen"));
    match listen {
        None => Ok(DEFAULT_ADMIN_LISTEN.parse().expect("valid default")),
        Some(v) => match v.as_str().map(|s| s.parse::<SocketAddr>()) {
            Some(Ok(a)) => Ok(a),
            _ => Err(vec![ConfigError::new(&file, "admin.listen", "must be an address like `127.0.0.1:9977`")]),
        },
    }
}

fn config_file(cfg: &GatewatchConfig) -> PathBuf {
    cfg.path.clone().unwrap_or_else(|| PathBuf::from("gatewatch.toml"))
}

fn duration(v: &toml::Value) -> Result<i64, String> {
    match v.as_str() {
        Some(s) => parse_duration(s),
        None => Err("must be a duration string like `30s`, `5m`, `1h`".into()),
    }
}

pub(crate) fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<KafkaSettings, Vec<ConfigError>> {
        let cfg: GatewatchConfig = toml::from_str(text).unwrap();
        KafkaSettings::from_config(&cfg)
    }

    #[test]
    fn consumers_default_to_one_and_are_bounded() {
        let s = parse("[kafka]\nbrokers = \"k:9092\"\ntopics = [\"logs\"]\n").unwrap();
        assert_eq!(s.consumers, 1);
        let s = parse("[kafka]\nbrokers = \"k:9092\"\ntopics = [\"logs\"]\nconsumers = 3\n").unwrap();
        assert_eq!(s.consumers, 3);
        for bad in ["0", "257", "\"all\""] {
            let errs =
                parse(&format!("[kafka]\nbrokers = \"k:9092\"\ntopics = [\"logs\"]\nconsumers = {bad}\n")).unwrap_err();
            assert_eq!(errs[0].field, "kafka.consumers", "{errs:?}");
        }
    }

    #[test]
    fn the_alerts_topic_takes_a_siem_format() {
        let s = parse(
            "[kafka]\nbrokers = \"k:9092\"\ntopics = [\"logs\"]\nalerts_topic = \"a\"\nalerts_format = \"ocsf\"\n",
        )
        .unwrap();
        assert_eq!(s.alerts_format, crate::actions::siem::AlertFormat::Ocsf);
        let errs = parse("[kafka]\nbrokers = \"k:9092\"\ntopics = [\"logs\"]\nalerts_format = \"cef\"\n").unwrap_err();
        assert!(errs.iter().any(|e| e.to_string().contains("one of json, ocsf, ecs")), "{errs:?}");
    }

    #[test]
    fn full_section_parses() {
        let s = parse(
            r#"
[kafka]
brokers = "k1:9092,k2:9092"
topics = ["logs"]
group_id = "gw"
dead_letter_topic = "dlq"
dead_letter_max_record_bytes = 4096
scrubbed_topic = "logs-clean"
alerts_topic = "alerts"
start_from = "earliest"
rebuild_horizon = "15m"
ready_max_lag = 50
[kafka.librdkafka]
"security.protocol" = "SASL_SSL"
"sasl.password" = "hunter2-secret"
"fetch.max.bytes" = 1048576
"#,
        )
        .unwrap();
        assert_eq!(s.brokers, "k1:9092,k2:9092");
        assert_eq!(s.topics, vec!["logs"]);
        assert_eq!(s.start_from, StartFrom::Earliest);
        assert_eq!(s.rebuild_horizon_ms, 15 * 60_000);
        assert_eq!(s.ready_max_lag, 50);
        assert_eq!(s.scrubbed_topic.as_deref(), Some("logs-clean"));
        assert_eq!(s.dead_letter_max_record_bytes, 4096);
        assert_eq!(s.librdkafka["fetch.max.bytes"], "1048576");
        // Debug never shows librdkafka values.
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("sasl.password"));
    }

    #[test]
    fn every_error_is_listed_with_its_field() {
        let errs = parse(
            r#"
[kafka]
topics = ["ok", "bad topic"]
rebuild_horizon = "soon"
start_from = "middle"
alerts_topic = "ok"
bogus = 1
[kafka.librdkafka]
"enable.auto.offset.store" = true
"#,
        )
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "kafka.brokers",
            "kafka.topics[1]",
            "kafka.rebuild_horizon",
            "kafka.start_from",
            "kafka.bogus",
            "kafka.librdkafka.\"enable.auto.offset.store\"",
            "kafka.topics",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn missing_section_is_an_error_and_admin_listen_defaults() {
        let cfg = GatewatchConfig::default();
        assert_eq!(KafkaSettings::from_config(&cfg).unwrap_err()[0].field, "kafka");
        assert_eq!(admin_listen(&cfg).unwrap().to_string(), DEFAULT_ADMIN_LISTEN);
        let cfg: GatewatchConfig = toml::from_str("[admin]\nlisten = \"nope\"\ntoken = \"x\"").unwrap();
        assert_eq!(admin_listen(&cfg).unwrap_err()[0].field, "admin.listen");
    }
}

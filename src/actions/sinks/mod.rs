//! The sinks: where the dispatcher delivers alerts. One file per kind, each holding what a
//! user writes (`[actions.<kind>.<name>]`, a `Raw*` struct with `deny_unknown_fields`), the
//! parsed config struct, its `parse` function, the runtime that delivers, and its tests.
//! Every kind is registered once, in [`KINDS`] (what `[actions]` accepts) and in
//! [`SinkKind`] (what the dispatcher builds, [`SinkKind::build`]).
//!
//! Adding a sink kind `foo` (see README, *Contributing*):
//! 1. `sinks/foo.rs`: `FooConfig`, `RawFoo`, `pub(crate) fn parse(..) -> Option<SinkKind>`, and a
//!    type implementing [`Sink`] (queued: retried from a durable queue on disk) or
//!    [`DirectSink`] (a receiver that is durable itself, acknowledged inside the handoff);
//! 2. here: `pub mod foo;`, a variant `SinkKind::Foo(FooConfig)` with its arm in
//!    [`SinkKind::as_str`] and [`SinkKind::build`], and a row in [`KINDS`];
//! 3. a test beside the sink, and the sink's section in the README.
//!
//! The delivery fields every sink table accepts (queue, rate, retries, breaker, timeout) are
//! read apart, into [`super::config::DeliveryConfig`].

pub mod alertmanager;
pub mod email;
pub mod file;
pub mod kafka;
pub mod webhook;

use std::sync::Arc;

use super::config::{DeliveryConfig, Parser};
use super::sink::{DirectSink, Sink};

/// One configured sink.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// `webhook:secops`, `email:oncall`, `alertmanager:main`: what detector `actions` name.
    pub name: String,
    pub delivery: DeliveryConfig,
    pub kind: SinkKind,
}

/// Every kind of sink, with its parsed config.
#[derive(Clone, Debug)]
pub enum SinkKind {
    Webhook(webhook::WebhookConfig),
    Email(email::EmailConfig),
    Alertmanager(alertmanager::AlertmanagerConfig),
    File(file::FileConfig),
    /// `[kafka] alerts_topic`: every alert, keyed by entity (configured in `[kafka]`, which
    /// names the brokers).
    Kafka(kafka::KafkaSinkConfig),
}

impl SinkKind {
    /// The kind's name: the first half of a sink's name, and accepted alone in `actions`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SinkKind::Webhook(_) => "webhook",
            SinkKind::Email(_) => "email",
            SinkKind::Alertmanager(_) => "alertmanager",
            SinkKind::File(_) => "file",
            SinkKind::Kafka(_) => "kafka",
        }
    }

    /// Makes the runtime that delivers to this sink.
    pub fn build(&self, delivery: &DeliveryConfig, ctx: &BuildContext) -> Result<SinkRuntime, String> {
        Ok(match self {
            SinkKind::Webhook(w) => {
                SinkRuntime::Queued(Arc::new(webhook::WebhookSink::new(w.clone(), ctx.http.clone())))
            }
            SinkKind::Email(e) => SinkRuntime::Queued(Arc::new(email::EmailSink::new(e, delivery.timeout)?)),
            SinkKind::Alertmanager(a) => {
                SinkRuntime::Queued(Arc::new(alertmanager::AlertmanagerSink::new(a.clone(), ctx.http.clone())))
            }
            SinkKind::File(f) => SinkRuntime::Queued(Arc::new(
                file::FileSink::open(&f.path).map_err(|e| format!("cannot open {}: {e}", f.path.display()))?,
            )),
            SinkKind::Kafka(k) => SinkRuntime::Direct(Arc::new(kafka::KafkaSink::new(k)?)),
        })
    }
}

/// What building a sink may need besides its own config.
pub struct BuildContext {
    /// The HTTP client every HTTP sink shares.
    pub http: reqwest::Client,
}

/// How the dispatcher delivers to a sink.
#[derive(Clone)]
pub enum SinkRuntime {
    /// Through a durable queue on disk and the sink's own task: retries with backoff until
    /// `expire_after`, a rate limit, a circuit breaker, grouping per entity and detector.
    Queued(Arc<dyn Sink>),
    /// Inside the handoff, each alert alone: the receiver acknowledges it before the input
    /// offset is committed, so the receiver is the durable store (a Kafka topic).
    Direct(Arc<dyn DirectSink>),
}

/// A sink kind that `[actions]` accepts: `[actions.<name>.<sink name>]`.
pub struct KindSpec {
    pub name: &'static str,
    /// Parses one sink table, its delivery fields already taken out; `None` after reporting
    /// errors to the parser.
    pub(crate) parse: fn(&mut Parser<'_>, &str, &toml::Value) -> Option<SinkKind>,
}

/// The sink kinds configured in `[actions]`, in the order their sinks are listed: the same
/// names, in the same order, as `config::SINK_KINDS` (what a detector's `actions` may name;
/// a test holds them together). The Kafka alerts topic is configured in `[kafka]`, beside the
/// brokers, and takes every alert.
pub const KINDS: &[KindSpec] = &[
    KindSpec { name: "webhook", parse: webhook::parse },
    KindSpec { name: "email", parse: email::parse },
    KindSpec { name: "alertmanager", parse: alertmanager::parse },
    KindSpec { name: "file", parse: file::parse },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_are_the_ones_detector_files_may_name() {
        // `config::SINK_KINDS` is what a detector's `actions` may name (checked when the file
        // is loaded); a kind missing there could be configured but never chosen.
        let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        assert_eq!(names, crate::config::SINK_KINDS);
    }

    #[test]
    fn every_kind_in_the_table_names_itself_as_its_parse_does() {
        // A row whose name differs from the variant its parse makes would accept tables under
        // one name and route `actions` under another.
        let env = |k: &str| (k == "S").then(|| "a-secret-of-enough-length".to_string());
        let table: toml::Table = toml::from_str(
            r#"
[actions.webhook.a]
url = "https://hooks.example.com/x"
[actions.email.a]
host = "smtp.example.com"
from = "gw@example.com"
to = ["oncall@example.com"]
[actions.alertmanager.a]
url = "http://am:9093"
[actions.file.a]
path = "/tmp/gatewatch-alerts.jsonl"
"#,
        )
        .unwrap();
        let cfg = crate::config::GatewatchConfig { other: table.into_iter().collect(), ..Default::default() };
        let s = super::super::ActionsSettings::from_config_with_env(&cfg, &env).unwrap();
        let sinks = s.actions.unwrap().sinks;
        assert_eq!(sinks.len(), KINDS.len(), "one test table per kind");
        for (spec, sink) in KINDS.iter().zip(&sinks) {
            assert_eq!(spec.name, sink.kind.as_str());
            assert_eq!(sink.name, format!("{}:a", spec.name));
        }
    }
}

//! The one runner: normalize → engine → rules, for one stream of messages.
//!
//! Every stage that turns gateway records into alerts calls [`Pipeline::process`]
//! once per message and [`Pipeline::finish`] at the end of its input: `replay`
//! over a file, and the Kafka source once per assigned partition. What a message
//! caused comes back as a [`Processed`], so callers count and route it (metrics,
//! dead letters, handoff) without reaching into the pipeline.

use std::collections::BTreeMap;

use super::{Engine, EngineStats};
use crate::config::{ConfigError, DetectorFile, DetectorSource, GatewatchConfig};
use crate::detectors::{build_rule, Limits, Rule};
use crate::event::{Alert, Event, Exposure, Millis};
use crate::normalize::{Format, Normalizer, Reject, Utf8};
use crate::scrub::Scrubber;

/// Running totals of one pipeline, as the replay summary prints them.
#[derive(Clone, Debug, Default)]
pub struct PipelineStats {
    /// Messages (lines) read.
    pub messages: u64,
    /// Records normalized into events.
    pub events: u64,
    /// Records rejected, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Events whose time was ahead of the received time by more than
    /// `[engine] max_future_skew`, clamped to it.
    pub clamped_future: u64,
    /// Messages that were not valid UTF-8, read with the invalid bytes replaced.
    pub lossy_utf8: u64,
    /// Alerts raised, by detector kind.
    pub alerts: BTreeMap<String, u64>,
    /// Normalized fields the records did not carry, per (gateway, field, why).
    pub missing: crate::normalize::missing::MissingCounts,
}

impl PipelineStats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
    pub fn alerts_total(&self) -> u64 {
        self.alerts.values().sum()
    }
}

/// What one message caused, besides the alerts appended to the caller's vector.
/// Nothing is allocated for a message without rejects or exposures.
#[derive(Debug, Default)]
pub struct Processed {
    /// Records of the message that became events.
    pub events: u64,
    /// Of those, events whose time was clamped to the received time (see [`PipelineStats::clamped_future`]).
    pub clamped_future: u64,
    /// The message was not valid UTF-8 and was read with the invalid bytes replaced.
    pub lossy_utf8: bool,
    /// Records of the message that were rejected; their detail never quotes record values.
    pub rejects: Vec<Reject>,
    /// Credentials the scrubber found where they do not belong, over all of the message's events.
    pub exposures: Vec<Exposure>,
}

/// Sizes of what the rules hold, summed over them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Keys held now.
    pub keys: usize,
    /// Keys evicted so far, for the cap or for idleness.
    pub evicted: u64,
}

/// The reading half of a pipeline: messages in, events out, with the totals of what was read.
/// The whole [`Pipeline`] hands its events to the engine; the ingest stage of a repartitioned
/// run hands them to the repartition topic.
pub struct MessageReader {
    normalizer: Normalizer,
    stats: PipelineStats,
    max_future_skew: Millis,
}

impl MessageReader {
    pub fn new(normalizer: Normalizer, cfg: &GatewatchConfig) -> Self {
        MessageReader {
            normalizer,
            stats: PipelineStats::default(),
            max_future_skew: cfg.engine.max_future_skew.0.max(0),
        }
    }

    /// One message (a line, a Kafka message value) that holds one record, a batch of
    /// them or an envelope. `received` is when it was received (the Kafka timestamp),
    /// the event time of formats that log none. Each event goes to `on_event`, its time
    /// clamped to `received + [engine] max_future_skew`; the rest is returned.
    pub fn read(&mut self, msg: &[u8], received: Option<Millis>, on_event: &mut dyn FnMut(Event)) -> Processed {
        self.stats.messages += 1;
        let mut done = Processed::default();
        let MessageReader { normalizer, stats, max_future_skew } = self;
        let latest = received.map(|r| r.saturating_add(*max_future_skew));
        let utf8 = normalizer.normalize_message_at(msg, received, &mut |r| match r {
            Ok(mut ev) => {
                done.events += 1;
                if let (Some(latest), Some(r)) = (latest, received) {
                    if ev.ts > latest {
                        ev.ts = r;
                        done.clamped_future += 1;
                    }
                }
                stats.missing.record(&ev);
                done.exposures.extend_from_slice(&ev.exposures);
                on_event(ev);
            }
            Err(rej) => {
                *stats.rejected.entry(rej.reason.as_str()).or_insert(0) += 1;
                done.rejects.push(rej);
            }
        });
        if utf8 == Utf8::Replaced {
            self.stats.lossy_utf8 += 1;
            done.lossy_utf8 = true;
        }
        self.stats.events += done.events;
        self.stats.clamped_future += done.clamped_future;
        done
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// The scrubber the normalizer uses, for record text that leaves gatewatch
    /// (scrubbed copies, dead letters).
    pub fn scrubber(&self) -> &Scrubber {
        &self.normalizer.scrubber
    }
}

/// One stream's runner: its reader, its event-time engine and rules, and its totals.
pub struct Pipeline {
    reader: MessageReader,
    engine: Engine,
}

/// Builds pipelines, rules and readers from one checked configuration: one per assigned
/// partition, for either stage.
pub struct PipelineFactory {
    cfg: GatewatchConfig,
    files: Vec<DetectorFile>,
    limits: Limits,
    format: Format,
    key: Vec<u8>,
}

impl PipelineFactory {
    /// Checks every enabled detector file once, up front; every error is returned.
    pub fn new(
        cfg: &GatewatchConfig,
        files: Vec<DetectorFile>,
        mut errs: Vec<ConfigError>,
        key: &[u8],
    ) -> Result<Self, Vec<ConfigError>> {
        let format = Format::parse(&cfg.input.format).unwrap_or(Format::Auto);
        let limits = Limits { max_keys: cfg.engine.max_keys_per_detector, idle_timeout: cfg.engine.idle_timeout.0 };
        let files: Vec<DetectorFile> = files.into_iter().filter(|f| f.enabled).collect();
        for f in &files {
            if let Err(mut e) = build_rule(f, limits) {
                errs.append(&mut e);
            }
        }
        if files.is_empty() && errs.is_empty() {
            errs.push(ConfigError::new(
                cfg.detectors_dir(),
                "",
                "no enabled detector files (run from a checkout, or set [detectors] dir)",
            ));
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(PipelineFactory { cfg: cfg.clone(), files, limits, format, key: key.to_vec() })
    }

    pub fn config(&self) -> &GatewatchConfig {
        &self.cfg
    }

    /// A fresh set of the rules, in file order.
    pub fn rules(&self) -> Vec<Rule> {
        self.files.iter().map(|f| build_rule(f, self.limits).expect("detector files were checked at start")).collect()
    }

    pub fn reader(&self) -> MessageReader {
        MessageReader::new(Normalizer::from_config(&self.cfg, self.format, &self.key), &self.cfg)
    }

    pub fn pipeline(&self) -> Pipeline {
        Pipeline::new(Normalizer::from_config(&self.cfg, self.format, &self.key), self.rules(), &self.cfg)
    }

    /// An engine over fresh rules, for the detect stage.
    pub fn engine(&self) -> Engine {
        Engine::new(self.rules(), self.cfg.engine.allowed_lateness.0, self.cfg.engine.max_buffered_events)
    }
}

/// Loads and builds every enabled rule of the configured detector files
/// ([`DetectorSource::for_config`]: the configured folder, or the built-in set).
pub fn load_rules(cfg: &GatewatchConfig) -> Result<Vec<Rule>, Vec<ConfigError>> {
    let (files, mut errs) = DetectorSource::for_config(cfg).load();
    let limits = Limits { max_keys: cfg.engine.max_keys_per_detector, idle_timeout: cfg.engine.idle_timeout.0 };
    let mut rules = Vec::new();
    for f in files.iter().filter(|f| f.enabled) {
        match build_rule(f, limits) {
            Ok(r) => rules.push(r),
            Err(mut e) => errs.append(&mut e),
        }
    }
    if errs.is_empty() {
        Ok(rules)
    } else {
        Err(errs)
    }
}

impl Pipeline {
    pub fn new(normalizer: Normalizer, rules: Vec<Rule>, cfg: &GatewatchConfig) -> Self {
        Pipeline {
            reader: MessageReader::new(normalizer, cfg),
            engine: Engine::new(rules, cfg.engine.allowed_lateness.0, cfg.engine.max_buffered_events),
        }
    }

    /// Builds the whole pipeline from the configuration.
    pub fn from_config(cfg: &GatewatchConfig, format: Format, key: &[u8]) -> Result<Self, Vec<ConfigError>> {
        let rules = load_rules(cfg)?;
        Ok(Pipeline::new(Normalizer::from_config(cfg, format, key), rules, cfg))
    }

    /// One message (a line, a Kafka message value) that holds one record, a batch of
    /// them or an envelope. `received` is when it was received (the Kafka timestamp),
    /// the event time of formats that log none. Alerts raised are appended to `alerts`;
    /// the rest of what the message caused is returned.
    pub fn process(&mut self, msg: &[u8], received: Option<Millis>, alerts: &mut Vec<Alert>) -> Processed {
        let before = alerts.len();
        let Pipeline { reader, engine } = self;
        let done = reader.read(msg, received, &mut |ev| {
            engine.push(ev, alerts);
        });
        count_alerts(&mut self.reader.stats, &alerts[before..]);
        done
    }

    /// End of input: release every buffered event and close every window.
    pub fn finish(&mut self, alerts: &mut Vec<Alert>) {
        let before = alerts.len();
        self.engine.flush(alerts);
        count_alerts(&mut self.reader.stats, &alerts[before..]);
    }

    pub fn stats(&self) -> &PipelineStats {
        self.reader.stats()
    }

    /// The engine's watermark: everything before it has gone to the rules.
    pub fn watermark(&self) -> Millis {
        self.engine.watermark()
    }

    pub fn engine_stats(&self) -> EngineStats {
        self.engine.stats()
    }

    /// The rules this pipeline drives, in load order.
    pub fn rules(&self) -> &[Rule] {
        self.engine.rules()
    }

    /// What the rules hold now, summed.
    pub fn state_size(&self) -> StateSize {
        state_size(self.rules())
    }

    /// The scrubber this pipeline's normalizer uses, for record text that leaves
    /// gatewatch (scrubbed copies, dead letters).
    pub fn scrubber(&self) -> &Scrubber {
        self.reader.scrubber()
    }
}

/// What the rules of `rules` hold now, summed.
pub fn state_size(rules: &[Rule]) -> StateSize {
    rules.iter().map(Rule::stats).fold(StateSize::default(), |acc, s| StateSize {
        keys: acc.keys + s.keys,
        evicted: acc.evicted + s.evicted_cap + s.evicted_idle,
    })
}

fn count_alerts(stats: &mut PipelineStats, alerts: &[Alert]) {
    for a in alerts {
        *stats.alerts.entry(a.detector.clone()).or_insert(0) += 1;
    }
}

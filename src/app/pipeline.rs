//! One pipeline: normalize → engine → rules. The live service runs one per
//! Kafka partition; replay runs one over a file. Same code either way.

use std::collections::BTreeMap;

use crate::config::{ConfigError, DetectorFile, GatewatchConfig};
use crate::detectors::{build_rule, Limits, Rule};
use crate::engine::{Engine, EngineStats};
use crate::event::Alert;
use crate::normalize::{Format, Normalizer};

#[derive(Clone, Debug, Default)]
pub struct PipelineStats {
    /// Messages (lines) read.
    pub messages: u64,
    /// Records normalized into events.
    pub events: u64,
    /// Records rejected, by reason.
    pub rejected: BTreeMap<&'static str, u64>,
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

pub struct Pipeline {
    pub normalizer: Normalizer,
    pub engine: Engine,
    pub stats: PipelineStats,
    /// Rejected records as (reason, detail); the caller drains it to the dead-letter output.
    pub rejects: Vec<crate::normalize::Reject>,
    pub keep_rejects: bool,
}

/// Loads and builds every enabled rule in the configured detector directory.
pub fn load_rules(cfg: &GatewatchConfig) -> Result<Vec<Rule>, Vec<ConfigError>> {
    let (files, mut errs) = DetectorFile::load_dir(&cfg.detectors_dir());
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
            normalizer,
            engine: Engine::new(rules, cfg.engine.allowed_lateness.0, cfg.engine.max_buffered_events),
            stats: PipelineStats::default(),
            rejects: Vec::new(),
            keep_rejects: false,
        }
    }

    /// Builds the whole pipeline from the configuration.
    pub fn from_config(cfg: &GatewatchConfig, format: Format, key: &[u8]) -> Result<Self, Vec<ConfigError>> {
        let rules = load_rules(cfg)?;
        Ok(Pipeline::new(Normalizer::from_config(cfg, format, key), rules, cfg))
    }

    /// One message (a line, a Kafka message value); alerts are appended to `out`.
    pub fn process(&mut self, msg: &[u8], out: &mut Vec<Alert>) {
        self.stats.messages += 1;
        let before = out.len();
        let Pipeline { normalizer, engine, stats, rejects, keep_rejects } = self;
        normalizer.normalize_message(msg, &mut |r| match r {
            Ok(ev) => {
                stats.events += 1;
                stats.missing.record(&ev);
                engine.push(ev, out);
            }
            Err(rej) => {
                *stats.rejected.entry(rej.reason.as_str()).or_insert(0) += 1;
                if *keep_rejects {
                    rejects.push(rej);
                }
            }
        });
        self.count_alerts(&out[before..]);
    }

    /// End of input: release every buffered event and close every window.
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        let before = out.len();
        self.engine.flush(out);
        self.count_alerts(&out[before..]);
    }

    fn count_alerts(&mut self, alerts: &[Alert]) {
        for a in alerts {
            *self.stats.alerts.entry(a.detector.clone()).or_insert(0) += 1;
        }
    }

    pub fn engine_stats(&self) -> EngineStats {
        self.engine.stats()
    }
}

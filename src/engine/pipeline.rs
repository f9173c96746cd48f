//! The one runner: normalize → engine → rules, for one stream of messages.
//!
//! Every stage that turns gateway records into alerts calls [`Pipeline::process`]
//! once per message and [`Pipeline::finish`] at the end of its input: `replay`
//! over a file, and the Kafka source once per assigned partition. What a message
//! caused comes back as a [`Processed`], so callers count and route it (metrics,
//! dead letters, handoff) without reaching into the pipeline.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::{Engine, EngineStats};
use crate::config::{ConfigError, DetectorFile, DetectorSource, GatewatchConfig};
use crate::detectors::{build_rule, state_digest, Limits, Rule};
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

    /// Adds the reading totals of `other`: messages, events, rejects and what they lacked
    /// (another reader of the same stream, as in a parallel replay). Alerts are not read, so
    /// they are not added.
    pub fn add_read(&mut self, other: &PipelineStats) {
        self.messages += other.messages;
        self.events += other.events;
        for (k, v) in &other.rejected {
            *self.rejected.entry(k).or_insert(0) += v;
        }
        self.clamped_future += other.clamped_future;
        self.lossy_utf8 += other.lossy_utf8;
        self.missing.add(&other.missing);
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
    /// Shared by the readers of one replay (`replay --threads`): the scrubber is compiled
    /// once, and normalizing takes `&self`.
    normalizer: std::sync::Arc<Normalizer>,
    stats: PipelineStats,
    max_future_skew: Millis,
}

impl MessageReader {
    pub fn new(normalizer: impl Into<std::sync::Arc<Normalizer>>, cfg: &GatewatchConfig) -> Self {
        MessageReader {
            normalizer: normalizer.into(),
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
    /// The rule set this pipeline follows and the generation it runs (built by a factory).
    live: Option<(Arc<LiveRules>, u64)>,
}

/// The detector files in force, replaced whole by a reload. Pipelines and engines hold one
/// and take a newer set between messages ([`LiveRules::newer`]).
pub struct LiveRules {
    limits: Limits,
    generation: AtomicU64,
    files: RwLock<Arc<Vec<DetectorFile>>>,
}

impl LiveRules {
    fn new(files: Vec<DetectorFile>, limits: Limits) -> Self {
        LiveRules { limits, generation: AtomicU64::new(0), files: RwLock::new(Arc::new(files)) }
    }

    /// Bumped by every reload that changed something.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The files in force.
    pub fn files(&self) -> Arc<Vec<DetectorFile>> {
        self.files.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A fresh set of the rules in force, in file order.
    pub fn rules(&self) -> Vec<Rule> {
        self.files()
            .iter()
            .map(|f| build_rule(f, self.limits).expect("detector files are checked before use"))
            .collect()
    }

    /// The rules in force and their generation, if newer than `seen`.
    pub fn newer(&self, seen: u64) -> Option<(u64, Vec<Rule>)> {
        let g = self.generation();
        (g != seen).then(|| (g, self.rules()))
    }

    fn replace(&self, files: Vec<DetectorFile>) {
        *self.files.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(files);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// What a reload changed, by rule id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Rules that were not there before.
    pub added: Vec<String>,
    /// Rules whose kind, parameters or allow-list changed: they start with empty state.
    pub reset: Vec<String>,
    /// Rules whose severity, cooldown, actions or runbook changed: state kept.
    pub updated: Vec<String>,
    /// Rules no longer there (removed or disabled).
    pub removed: Vec<String>,
    /// Rules as they were.
    pub unchanged: usize,
}

impl ReloadReport {
    pub fn changed(&self) -> bool {
        !(self.added.is_empty() && self.reset.is_empty() && self.updated.is_empty() && self.removed.is_empty())
    }
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.changed() {
            return write!(f, "no change ({} rules)", self.unchanged);
        }
        let mut parts = Vec::new();
        for (what, ids) in [
            ("added", &self.added),
            ("changed, state reset", &self.reset),
            ("settings changed, state kept", &self.updated),
            ("removed", &self.removed),
        ] {
            if !ids.is_empty() {
                parts.push(format!("{what}: {}", ids.join(", ")));
            }
        }
        parts.push(format!("{} unchanged", self.unchanged));
        f.write_str(&parts.join("; "))
    }
}

/// Builds pipelines, rules and readers from one checked configuration: one per assigned
/// partition, for either stage. The detector files can be reloaded ([`Self::reload`]); the
/// rest of the configuration is fixed for the life of the process.
pub struct PipelineFactory {
    cfg: GatewatchConfig,
    live: Arc<LiveRules>,
    /// The errors of the last reload, if it was refused; `None` when it succeeded (or none
    /// was asked for).
    refused: std::sync::Mutex<Option<Vec<String>>>,
    limits: Limits,
    format: Format,
    key: Vec<u8>,
    /// The one normalizer every reader and pipeline shares, built at the first use: compiling
    /// the scrubber's patterns takes about 0.45 G instructions, which a Kafka source would
    /// otherwise spend again on every partition it is assigned.
    normalizer: std::sync::OnceLock<Arc<Normalizer>>,
}

impl PipelineFactory {
    /// Checks every enabled detector file once, up front; every error is returned.
    pub fn new(
        cfg: &GatewatchConfig,
        files: Vec<DetectorFile>,
        errs: Vec<ConfigError>,
        key: &[u8],
    ) -> Result<Self, Vec<ConfigError>> {
        let format = Format::parse(&cfg.input.format).unwrap_or(Format::Auto);
        let limits = Limits { max_keys: cfg.engine.max_keys_per_detector, idle_timeout: cfg.engine.idle_timeout.0 };
        let files = checked_files(cfg, files, errs, limits)?;
        Ok(PipelineFactory {
            cfg: cfg.clone(),
            live: Arc::new(LiveRules::new(files, limits)),
            refused: std::sync::Mutex::new(None),
            limits,
            format,
            key: key.to_vec(),
            normalizer: std::sync::OnceLock::new(),
        })
    }

    /// The shared normalizer (one compiled scrubber for the process). It holds no state of a
    /// stream: its token cache is keyed by token and is never waited for.
    pub fn normalizer(&self) -> Arc<Normalizer> {
        self.normalizer.get_or_init(|| Arc::new(Normalizer::from_config(&self.cfg, self.format, &self.key))).clone()
    }

    pub fn config(&self) -> &GatewatchConfig {
        &self.cfg
    }

    /// The rule set in force, shared with every pipeline built from here.
    pub fn live(&self) -> &Arc<LiveRules> {
        &self.live
    }

    /// Reads the detector files again ([`DetectorSource::for_config`]) and, if every one is
    /// valid, puts them in force; running pipelines take them within about 100 ms. With any
    /// error nothing changes and every error is returned.
    pub fn reload(&self) -> Result<ReloadReport, Vec<ConfigError>> {
        let (files, errs) = load_files(&self.cfg);
        let checked = checked_files(&self.cfg, files, errs, self.limits);
        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) =
            checked.as_ref().err().map(|errs| errs.iter().map(ToString::to_string).collect());
        let files = checked?;
        let before = self.live.files();
        let old: std::collections::HashMap<&str, &DetectorFile> = before.iter().map(|f| (f.id.as_str(), f)).collect();
        let mut report = ReloadReport::default();
        for f in &files {
            match old.get(f.id.as_str()) {
                None => report.added.push(f.id.clone()),
                Some(o) if state_digest(o) != state_digest(f) => report.reset.push(f.id.clone()),
                Some(o)
                    if (o.severity, o.cooldown.0, &o.actions, &o.runbook)
                        != (f.severity, f.cooldown.0, &f.actions, &f.runbook) =>
                {
                    report.updated.push(f.id.clone())
                }
                Some(_) => report.unchanged += 1,
            }
        }
        let now: std::collections::HashSet<&str> = files.iter().map(|f| f.id.as_str()).collect();
        report.removed = before.iter().filter(|f| !now.contains(f.id.as_str())).map(|f| f.id.clone()).collect();
        if report.changed() {
            self.live.replace(files);
        }
        Ok(report)
    }

    /// A fresh set of the rules in force, in file order.
    pub fn rules(&self) -> Vec<Rule> {
        self.live.rules()
    }

    /// Why the last reload was refused (every error), or `None` if it was taken.
    pub fn last_refusal(&self) -> Option<Vec<String>> {
        self.refused.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn reader(&self) -> MessageReader {
        MessageReader::new(self.normalizer(), &self.cfg)
    }

    /// A pipeline over the rules in force, following reloads.
    pub fn pipeline(&self) -> Pipeline {
        let (generation, rules) = (self.live.generation(), self.live.rules());
        let mut p = Pipeline::new(self.normalizer(), rules, &self.cfg);
        p.live = Some((self.live.clone(), generation));
        p
    }

    /// An engine over fresh rules, for the detect stage.
    pub fn engine(&self) -> Engine {
        Engine::new(self.rules(), self.cfg.engine.allowed_lateness.0, self.cfg.engine.max_buffered_events)
    }
}

/// The enabled files of `files`, each built once to check it; `errs` and every build error
/// are returned together.
fn checked_files(
    cfg: &GatewatchConfig,
    files: Vec<DetectorFile>,
    mut errs: Vec<ConfigError>,
    limits: Limits,
) -> Result<Vec<DetectorFile>, Vec<ConfigError>> {
    let files: Vec<DetectorFile> = files.into_iter().filter(|f| f.enabled).collect();
    for f in &files {
        match build_rule(f, limits) {
            Err(mut e) => errs.append(&mut e),
            Ok(r) => {
                if let Some(why) = r.off_reason() {
                    tracing::warn!(rule = %r.id, file = %f.path.display(), "detector rule {} is off: {why}", r.id);
                }
            }
        }
    }
    if files.is_empty() && errs.is_empty() {
        errs.push(ConfigError::new(
            cfg.detectors_dir(),
            "",
            "no enabled detector files (run from a checkout, or set [detectors] dir)",
        ));
    }
    if errs.is_empty() {
        Ok(files)
    } else {
        Err(errs)
    }
}

/// The detector files in force ([`DetectorSource::for_config`]) and, after them, one per
/// Sigma rule of the rules folder ([`crate::sigma::load`]); every error of both.
pub fn load_files(cfg: &GatewatchConfig) -> (Vec<DetectorFile>, Vec<ConfigError>) {
    let (mut files, mut errs) = DetectorSource::for_config(cfg).load();
    let sigma = crate::sigma::load::load(cfg);
    for (path, title, why) in &sigma.skipped {
        tracing::debug!(file = %path.display(), "Sigma rule `{title}` skipped: {why}");
    }
    files.extend(sigma.files);
    errs.extend(sigma.errors);
    (files, errs)
}

/// Loads and builds every enabled rule of the configured detector files
/// ([`DetectorSource::for_config`]: the configured folder, or the built-in set).
pub fn load_rules(cfg: &GatewatchConfig) -> Result<Vec<Rule>, Vec<ConfigError>> {
    let (files, mut errs) = load_files(cfg);
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
    pub fn new(normalizer: impl Into<Arc<Normalizer>>, rules: Vec<Rule>, cfg: &GatewatchConfig) -> Self {
        Pipeline {
            reader: MessageReader::new(normalizer, cfg),
            engine: Engine::new(rules, cfg.engine.allowed_lateness.0, cfg.engine.max_buffered_events),
            live: None,
        }
    }

    /// Takes the rule set in force if it was reloaded since this pipeline last looked
    /// ([`Engine::reconfigure`]). Cheap when nothing changed: one atomic load.
    pub fn follow_reloads(&mut self) {
        if let Some((live, seen)) = &mut self.live {
            if let Some((g, rules)) = live.newer(*seen) {
                *seen = g;
                self.engine.reconfigure(rules);
            }
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
        let Pipeline { reader, engine, .. } = self;
        let done = reader.read(msg, received, &mut |ev| {
            engine.push(ev, alerts);
        });
        count_alerts(&mut self.reader.stats, &alerts[before..]);
        done
    }

    /// Events read by another [`MessageReader`] of this stream, in stream order, as if this
    /// pipeline had read them; the reader's totals are added with [`Self::add_read_stats`].
    pub fn push_events(&mut self, events: impl IntoIterator<Item = Event>, alerts: &mut Vec<Alert>) {
        let before = alerts.len();
        for ev in events {
            self.engine.push(ev, alerts);
        }
        count_alerts(&mut self.reader.stats, &alerts[before..]);
    }

    /// Adds the totals of a reader whose events went through [`Self::push_events`].
    pub fn add_read_stats(&mut self, stats: &PipelineStats) {
        self.reader.stats.add_read(stats);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, name: &str, severity: &str, threshold: u32) {
        let text = format!(
            "id = \"{name}\"\nkind = \"auth_failure_spike\"\nseverity = \"{severity}\"\n[params]\nkeys = [\"source_ip\"]\n[params.threshold]\nsource_ip = {threshold}\n"
        );
        std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
    }

    fn factory(dir: &std::path::Path) -> PipelineFactory {
        let cfg: GatewatchConfig =
            toml::from_str(&format!("[detectors]\ndir = \"{}\"\n", dir.display())).expect("config");
        let (files, errs) = load_files(&cfg);
        PipelineFactory::new(&cfg, files, errs, b"unit-test-key-0123456789").expect("factory")
    }

    #[test]
    fn every_pipeline_and_reader_shares_one_normalizer() {
        // A Kafka source makes a pipeline per assigned partition: each compiling the scrubber
        // again cost about 0.15 CPU-s per partition at every assignment.
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", "high", 5);
        let f = factory(dir.path());
        let (p, q, r) = (f.pipeline(), f.pipeline(), f.reader());
        assert!(Arc::ptr_eq(&p.reader.normalizer, &q.reader.normalizer));
        assert!(Arc::ptr_eq(&p.reader.normalizer, &r.normalizer));
        assert!(Arc::ptr_eq(&p.reader.normalizer, &f.normalizer()));
    }

    #[test]
    fn a_reload_reports_what_changed_and_refuses_a_broken_set() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", "high", 5);
        write(dir.path(), "b", "high", 5);
        write(dir.path(), "c", "high", 5);
        let f = factory(dir.path());
        let g0 = f.live().generation();
        assert_eq!(f.reload().unwrap(), ReloadReport { unchanged: 3, ..Default::default() });
        assert_eq!(f.live().generation(), g0, "nothing changed, nothing to take");

        write(dir.path(), "a", "low", 5); // settings only
        write(dir.path(), "b", "high", 9); // params: state reset
        std::fs::remove_file(dir.path().join("c.toml")).unwrap();
        write(dir.path(), "d", "high", 5);
        let r = f.reload().unwrap();
        assert_eq!(
            (r.updated, r.reset, r.removed, r.added),
            (vec!["a".into()], vec!["b".into()], vec!["c".into()], vec!["d".into()])
        );
        assert_eq!(f.live().generation(), g0 + 1);

        std::fs::write(
            dir.path().join("e.toml"),
            "id = \"e\"\nkind = \"auth_failure_spike\"\n[params]\nwindow = \"soon\"\n",
        )
        .unwrap();
        let errs = f.reload().unwrap_err();
        assert!(errs.iter().any(|e| e.file.ends_with("e.toml")), "{errs:?}");
        assert_eq!(f.live().generation(), g0 + 1, "a broken set is not taken");
        assert_eq!(f.rules().iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["a", "b", "d"]);
    }

    #[test]
    fn an_engine_keeps_the_state_of_rules_whose_digest_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", "high", 5);
        write(dir.path(), "b", "high", 5);
        let f = factory(dir.path());
        let mut p = f.pipeline();
        let mut alerts = Vec::new();
        for i in 0..40 {
            let line = format!(
                r#"{{"time":"2026-03-08T14:{:02}:{:02}Z","source_ip":"203.0.113.{}","method":"POST","path":"/login","status":401}}"#,
                i / 60,
                i % 60,
                i % 4
            );
            p.process(line.as_bytes(), None, &mut alerts);
        }
        let keys =
            |p: &Pipeline| p.rules().iter().map(|r| (r.id.clone(), r.stats().keys, r.severity)).collect::<Vec<_>>();
        let before = keys(&p);
        assert!(before.iter().all(|(_, k, _)| *k > 0), "{before:?}");
        write(dir.path(), "a", "low", 5);
        write(dir.path(), "b", "high", 7);
        f.reload().unwrap();
        p.follow_reloads();
        let after = keys(&p);
        assert_eq!(after[0], ("a".into(), before[0].1, crate::event::Severity::Low), "settings taken, state kept");
        assert_eq!(after[1].1, 0, "params changed: b starts empty");
    }
}

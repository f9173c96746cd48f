//! A rule: one detector instance from one file, with what every kind shares:
//! allow-list, severity, cooldown per entity, actions, and the alert id.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::Detector;
use crate::config::DetectorFile;
use crate::event::{Alert, Entity, EntityKind, Event, Finding, Fingerprint, Millis, PrincipalKind, Severity, Shard};
use crate::state::StateStats;

/// The allow-lists' sets are looked up on every event of every rule: ahash (keys random per
/// process) rather than SipHash (with scope_misuse's counts, 1.7 % of a Kong replay's instructions).
type FastSet<T> = HashSet<T, ahash::RandomState>;

/// Entities a rule never alerts on and never learns from.
#[derive(Clone, Debug, Default)]
pub struct Allow {
    client_ids: FastSet<String>,
    nets: Vec<IpNet>,
    tokens: FastSet<Fingerprint>,
    routes: FastSet<String>,
    route_prefixes: Vec<String>,
}

impl Allow {
    pub fn from_file(f: &DetectorFile) -> Self {
        let a = &f.allow;
        Allow {
            client_ids: a.client_ids.iter().cloned().collect(),
            nets: a
                .source_ips
                .iter()
                .filter_map(|c| c.parse::<IpNet>().ok().or_else(|| c.parse::<IpAddr>().ok().map(IpNet::from)))
                .collect(),
            tokens: a.tokens.iter().filter_map(|t| Fingerprint::from_hex(t)).collect(),
            routes: a.routes.iter().filter(|r| !r.ends_with('*')).cloned().collect(),
            route_prefixes: a.routes.iter().filter_map(|r| r.strip_suffix('*').map(str::to_string)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.client_ids.is_empty()
            && self.nets.is_empty()
            && self.tokens.is_empty()
            && self.routes.is_empty()
            && self.route_prefixes.is_empty()
    }

    pub fn allows(&self, ev: &Event) -> bool {
        if let Some(c) = &ev.client_id {
            if self.client_ids.contains(c.as_str()) {
                return true;
            }
        }
        if let Some(ip) = &ev.source_ip {
            if self.nets.iter().any(|n| n.contains(ip)) {
                return true;
            }
        }
        if let Some(fp) = &ev.token_fingerprint {
            if self.tokens.contains(fp) {
                return true;
            }
        }
        if let Some(r) = &ev.route {
            if self.routes.contains(r.as_str()) || self.route_prefixes.iter().any(|p| r.starts_with(p.as_str())) {
                return true;
            }
        }
        false
    }
}

/// One loaded rule: a detector file (or a Sigma rule) made live. It wraps the kind's
/// [`Detector`] with what every kind shares: the allow-list (events it never sees), the
/// cooldown per entity (findings about an entity it alerted on within `cooldown` are counted
/// in `suppressed`, not raised), and turning findings into alerts under the alert contract
/// (id, severity, actions, runbook). The engine drives it in event-time order; a reload keeps
/// its state when [`Rule::state_digest`] is unchanged ([`Rule::adopt_settings`]).
pub struct Rule {
    /// The file's `id` (a Sigma rule's id): the alert's `rule`.
    pub id: String,
    /// The detector kind (`auth_failure_spike`, `sigma`, …): the alert's `detector`.
    pub kind: &'static str,
    /// The severity of its alerts.
    pub severity: Severity,
    /// No second alert about the same entity from this rule within this time (event time).
    pub cooldown: Millis,
    /// What its alerts ask for (sinks, `revoke`, `ban`, their dry-run forms), as the file says.
    pub actions: Vec<String>,
    /// A link for the people its alerts reach.
    pub runbook: Option<String>,
    /// What the rule's state depends on (kind, params, allow-list), hashed: a reload keeps
    /// the state of a rule whose digest is unchanged.
    pub state_digest: u64,
    allow: Allow,
    detector: Box<dyn Detector>,
    last_fired: HashMap<(Entity, Option<String>), Millis>,
    last_cooldown_sweep: Millis,
    findings: Vec<Finding>,
    /// Alerts held back by the cooldown.
    pub suppressed: u64,
    /// Events skipped by the allow-list.
    pub allowed: u64,
}

impl Rule {
    pub fn new(file: &DetectorFile, kind: &'static str, detector: Box<dyn Detector>) -> Self {
        Rule {
            id: file.id.clone(),
            kind,
            severity: file.severity,
            cooldown: file.cooldown.0,
            actions: file.actions.clone(),
            runbook: file.runbook.clone(),
            state_digest: state_digest(file),
            allow: Allow::from_file(file),
            detector,
            last_fired: HashMap::new(),
            last_cooldown_sweep: Millis::MIN,
            findings: Vec::new(),
            suppressed: 0,
            allowed: 0,
        }
    }

    /// Takes the settings that do not shape state (severity, cooldown, actions, runbook) from
    /// `fresh`, a rule built from a reloaded file with the same [`Rule::state_digest`].
    pub fn adopt_settings(&mut self, fresh: &Rule) {
        self.severity = fresh.severity;
        self.cooldown = fresh.cooldown;
        self.actions.clone_from(&fresh.actions);
        self.runbook.clone_from(&fresh.runbook);
    }

    pub fn on_event(&mut self, ev: &Event, out: &mut Vec<Alert>) {
        if !self.allow.is_empty() && self.allow.allows(ev) {
            self.allowed += 1;
            return;
        }
        self.detector.on_event(ev, &mut self.findings);
        if !self.findings.is_empty() {
            self.emit(out);
        }
    }

    /// The key this rule keeps `ev` under in `shard` ([`super::Detector::shard_key`]).
    pub fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String> {
        self.detector.shard_key(ev, shard)
    }

    /// `ev`, repartitioned: delivered under `shard` only ([`super::Detector::on_shard_event`]).
    /// An alert's entity is of the shard that raised it, so the cooldown per entity, like the
    /// detector's state, is whole on the instance that owns the key.
    pub fn on_shard_event(&mut self, ev: &Event, shard: Shard, out: &mut Vec<Alert>) {
        if !self.allow.is_empty() && self.allow.allows(ev) {
            self.allowed += 1;
            return;
        }
        self.detector.on_shard_event(ev, shard, &mut self.findings);
        if !self.findings.is_empty() {
            self.emit(out);
        }
    }

    pub fn on_watermark(&mut self, wm: Millis, out: &mut Vec<Alert>) {
        self.detector.on_watermark(wm, &mut self.findings);
        if !self.findings.is_empty() {
            self.emit(out);
        }
        if wm.saturating_sub(self.last_cooldown_sweep) > self.cooldown.max(60_000) {
            let cd = self.cooldown;
            self.last_fired.retain(|_, t| wm - *t < cd);
            self.last_cooldown_sweep = wm;
        }
    }

    pub fn stats(&self) -> StateStats {
        self.detector.stats()
    }

    /// Whether repartition records must carry the request line for this rule
    /// ([`super::Detector::reads_request`]).
    pub fn reads_request(&self) -> bool {
        self.detector.reads_request()
    }

    /// What this rule holds about `entity` ([`super::Detector::describe`]), with when it last
    /// alerted about it while the cooldown remembers that; `None` when it holds nothing.
    pub fn describe(&self, entity: &Entity) -> Option<serde_json::Value> {
        let last = self.last_fired.iter().filter(|((e, _), _)| e == entity).map(|(_, t)| *t).max();
        let held = self.detector.describe(entity);
        if held.is_none() && last.is_none() {
            return None;
        }
        let mut v = held.unwrap_or_else(|| serde_json::json!({}));
        if let (Some(t), Some(o)) = (last, v.as_object_mut()) {
            o.insert("last_alert_at".into(), crate::event::format_ts(t).into());
            o.insert("cooldown_ms".into(), self.cooldown.into());
        }
        Some(v)
    }

    /// Why this rule judges nothing, if it cannot ([`super::Detector::off_reason`]).
    pub fn off_reason(&self) -> Option<&str> {
        self.detector.off_reason()
    }

    fn emit(&mut self, out: &mut Vec<Alert>) {
        for f in self.findings.drain(..) {
            let cooldown_key = (f.entity.clone(), f.within.clone());
            if let Some(last) = self.last_fired.get(&cooldown_key) {
                if f.window_end - *last < self.cooldown {
                    self.suppressed += 1;
                    continue;
                }
            }
            self.last_fired.insert(cooldown_key, f.window_end);
            let mut evidence = f.evidence;
            if f.entity.kind == EntityKind::Token {
                // What the token entity names: the token, or the principal it fell back to.
                evidence.insert("keyed_on".into(), PrincipalKind::of(&f.entity.id).as_str().into());
            }
            // A Sigma correlation may group by more than its entity: each group is its own alert.
            let id = match (&f.within, self.kind == crate::sigma::KIND) {
                (Some(w), true) => Alert::make_id(&format!("{}\u{0}{w}", self.id), &f.entity, f.window_start),
                _ => Alert::make_id(&self.id, &f.entity, f.window_start),
            };
            out.push(Alert {
                id,
                detector: self.kind.to_string(),
                rule: self.id.clone(),
                severity: self.severity,
                entity: f.entity,
                client_id: f.client_id,
                client_id_source: f.client_id_source,
                token_fingerprint: f.token_fingerprint,
                window_start: f.window_start,
                window_end: f.window_end,
                summary: f.summary,
                evidence,
                actions: self.actions.clone(),
            });
        }
    }
}

/// Hash of what a rule's state depends on: its kind, its parameters and its allow-list.
/// (`toml::Table` is ordered, so the same file gives the same digest.)
pub fn state_digest(file: &DetectorFile) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (file.kind.as_str(), format!("{:?}", file.params), format!("{:?}", file.allow)).hash(&mut h);
    h.finish()
}

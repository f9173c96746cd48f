//! `gatewatch check`: validates the config and every detector file, then runs
//! the test cases the detector files carry. Every problem is listed.

use std::path::Path;

use crate::config::{ConfigError, DetectorFile, GatewatchConfig, TestCase};
use crate::detectors::{build_rule, Limits};
use crate::engine::Engine;
use crate::event::{Alert, EntityKind, Event, Millis};
use crate::normalize::{time::parse_rfc3339, Format, Normalizer};

/// Result of one test case.
#[derive(Debug)]
pub struct CaseResult {
    pub file: String,
    pub rule: String,
    pub case: String,
    pub failures: Vec<String>,
    pub alerts: usize,
    /// Not run: the rule is off (a database it needs is not configured), and why.
    pub skipped: Option<String>,
}

#[derive(Debug, Default)]
pub struct CheckReport {
    /// Which detector files were checked, in a user's words.
    pub detectors: String,
    pub errors: Vec<ConfigError>,
    pub rules: usize,
    /// Rules that load but judge nothing, and why: (file, rule id, reason).
    pub off: Vec<(String, String, String)>,
    /// The Sigma rules folder, and per rule: (file, id, title) of those loaded.
    pub sigma_dir: String,
    pub sigma_loaded: Vec<(String, String, String)>,
    /// Detection rules that only feed correlations.
    pub sigma_feeding: usize,
    /// Sigma rules left out (another log source): (file, title, why).
    pub sigma_skipped: Vec<(String, String, String)>,
    pub cases: Vec<CaseResult>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.cases.iter().all(|c| c.failures.is_empty())
    }

    pub fn render(&self) -> String {
        let mut s = format!("checking {}\n", self.detectors);
        for e in &self.errors {
            s += &format!("error: {e}\n");
        }
        for (file, rule, why) in &self.off {
            s += &format!("off   {file} [{rule}] {why}\n");
        }
        for (file, id, title) in &self.sigma_loaded {
            s += &format!("sigma {file} [{id}] {title}\n");
        }
        for (file, title, why) in &self.sigma_skipped {
            s += &format!("skip  {file} `{title}`: {why}\n");
        }
        if !self.sigma_dir.is_empty() {
            s += &format!(
                "Sigma rules in {}: {} loaded, {} feeding correlations, {} skipped (other log sources)\n",
                self.sigma_dir,
                self.sigma_loaded.len(),
                self.sigma_feeding,
                self.sigma_skipped.len()
            );
        }
        for c in &self.cases {
            if let Some(why) = &c.skipped {
                s += &format!("skip  {} [{}] {} (the rule is off: {why})\n", c.file, c.rule, c.case);
            } else if c.failures.is_empty() {
                s += &format!("ok    {} [{}] {} ({} alert(s))\n", c.file, c.rule, c.case, c.alerts);
            } else {
                for f in &c.failures {
                    s += &format!("FAIL  {} [{}] {}: {f}\n", c.file, c.rule, c.case);
                }
            }
        }
        let failed = self.cases.iter().filter(|c| !c.failures.is_empty()).count();
        let skipped = self.cases.iter().filter(|c| c.skipped.is_some()).count();
        s += &format!(
            "{} rule(s), {} config error(s), {} test case(s): {} passed, {} failed{}\n",
            self.rules,
            self.errors.len(),
            self.cases.len(),
            self.cases.len() - failed - skipped,
            failed,
            if skipped > 0 { format!(", {skipped} skipped (rule off)") } else { String::new() }
        );
        s
    }
}

/// Checks a config file (or the defaults) and its detector directory.
pub fn check(config: Option<&Path>) -> CheckReport {
    let mut report = CheckReport::default();
    let cfg = match GatewatchConfig::load_default(config) {
        Ok(c) => c,
        Err(e) => {
            report.errors = e;
            // Still check the detectors next to it, with defaults.
            GatewatchConfig { path: config.map(Path::to_path_buf), ..Default::default() }
        }
    };
    let source = crate::config::DetectorSource::for_config(&cfg);
    let (mut files, mut errs) = source.load();
    report.detectors = source.describe();
    report.errors.append(&mut errs);
    let sigma = crate::sigma::load::load(&cfg);
    if cfg.rules_dir().is_dir() || !sigma.errors.is_empty() {
        report.sigma_dir = cfg.rules_dir().display().to_string();
    }
    report.sigma_loaded = sigma
        .files
        .iter()
        .map(|f| (f.path.display().to_string(), f.id.clone(), f.description.clone().unwrap_or_default()))
        .collect();
    report.sigma_feeding = sigma.feeding;
    report.sigma_skipped =
        sigma.skipped.iter().map(|(p, t, w)| (p.display().to_string(), t.clone(), w.clone())).collect();
    report.errors.extend(sigma.errors);
    files.extend(sigma.files);
    // Sinks, revocation and admin sections, and every detector's `actions` naming something configured.
    match crate::actions::ActionsSettings::from_config(&cfg) {
        Ok(settings) => {
            let refs: Vec<_> = files.iter().map(|f| (f.path.clone(), f.actions.clone())).collect();
            report.errors.extend(crate::actions::config::check_action_refs(&settings, &refs));
        }
        Err(mut e) => report.errors.append(&mut e),
    }
    let limits = Limits { max_keys: cfg.engine.max_keys_per_detector, idle_timeout: cfg.engine.idle_timeout.0 };
    let normalizer = Normalizer::from_config(&cfg, Format::Generic, b"gatewatch-check-key");
    for f in &files {
        match build_rule(f, limits) {
            Err(mut e) => {
                report.errors.append(&mut e);
                continue;
            }
            Ok(r) => {
                if let Some(why) = r.off_reason() {
                    report.off.push((f.path.display().to_string(), f.id.clone(), why.to_string()));
                }
            }
        }
        report.rules += 1;
        for case in &f.tests {
            report.cases.push(run_case(f, case, limits, &normalizer));
        }
    }
    report
}

const DEFAULT_START: &str = "2026-01-01T00:00:00Z";

/// Builds the events of a case from its templates, through the generic normalizer.
pub fn case_events(f: &DetectorFile, case: &TestCase, normalizer: &Normalizer) -> Result<Vec<Event>, String> {
    let start = parse_rfc3339(case.start.as_deref().unwrap_or(DEFAULT_START))
        .ok_or_else(|| format!("{}: test `{}`: start is not RFC 3339", f.path.display(), case.name))?;
    let mut events = Vec::new();
    for (i, spec) in case.events.iter().enumerate() {
        let at = spec.at.map_or(0, |d| d.0);
        let every = spec.every.map_or(1000, |d| d.0);
        for n in 0..spec.repeat {
            let ts: Millis = start + at + every * n as i64;
            let mut obj = serde_json::Map::new();
            for (k, v) in &spec.event {
                let v = match v {
                    toml::Value::Array(a) if k != "scopes" && k != "exposures" && !a.is_empty() => {
                        a[n % a.len()].clone()
                    }
                    other => other.clone(),
                };
                obj.insert(k.clone(), toml_to_json(v));
            }
            obj.insert("ts".into(), serde_json::json!(crate::event::format_ts(ts)));
            // Exposures are what the scrubber records while normalizing; a test case may
            // state them directly: `exposures = [{ kind, place, fingerprint }]`.
            let exposures = match obj.remove("exposures") {
                Some(v) => parse_exposures(&v).map_err(|e| format!("events[{i}].exposures: {e}"))?,
                None => Vec::new(),
            };
            let line = serde_json::Value::Object(obj).to_string();
            let mut ev = normalizer
                .normalize_record(line.as_bytes())
                .map_err(|e| format!("events[{i}] does not read as an event: {e}"))?;
            ev.exposures.extend(exposures);
            events.push(ev);
        }
    }
    events.sort_by_key(|e| e.ts);
    Ok(events)
}

fn parse_exposures(v: &serde_json::Value) -> Result<Vec<crate::event::Exposure>, String> {
    let arr = v.as_array().ok_or("must be an array of { kind, place, fingerprint }")?;
    arr.iter()
        .map(|x| {
            let field = |k: &str| x.get(k).and_then(|v| v.as_str()).ok_or(format!("missing `{k}`"));
            Ok(crate::event::Exposure {
                kind: field("kind")?.to_string(),
                place: field("place")?.to_string(),
                fingerprint: crate::event::Fingerprint::from_hex(field("fingerprint")?)
                    .ok_or("fingerprint must be 16 hex digits")?,
            })
        })
        .collect()
}

fn toml_to_json(v: toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s),
        toml::Value::Integer(i) => serde_json::json!(i),
        toml::Value::Float(f) => serde_json::json!(f),
        toml::Value::Boolean(b) => serde_json::json!(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => serde_json::Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect()),
    }
}

fn run_case(f: &DetectorFile, case: &TestCase, limits: Limits, normalizer: &Normalizer) -> CaseResult {
    let mut result = CaseResult {
        file: f.path.display().to_string(),
        rule: f.id.clone(),
        case: case.name.clone(),
        failures: Vec::new(),
        alerts: 0,
        skipped: None,
    };
    let events = match case_events(f, case, normalizer) {
        Ok(e) => e,
        Err(e) => {
            result.failures.push(e);
            return result;
        }
    };
    let rule = match build_rule(f, limits) {
        Ok(r) if r.off_reason().is_some() => {
            result.skipped = r.off_reason().map(str::to_string);
            return result;
        }
        Ok(r) => r,
        Err(e) => {
            result.failures.extend(e.iter().map(|e| e.to_string()));
            return result;
        }
    };
    let mut engine = Engine::new(vec![rule], 0, usize::MAX);
    let mut alerts: Vec<Alert> = Vec::new();
    for ev in events {
        engine.push(ev, &mut alerts);
    }
    engine.flush(&mut alerts);
    result.alerts = alerts.len();
    let mut matched = vec![false; alerts.len()];
    for (i, exp) in case.expect.iter().enumerate() {
        let Some(kind) = EntityKind::parse(&exp.entity_kind) else {
            result.failures.push(format!("expect[{i}].entity_kind `{}` is not an entity kind", exp.entity_kind));
            continue;
        };
        let hits: Vec<usize> = alerts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.entity.kind == kind && exp.entity_id.as_ref().is_none_or(|id| &a.entity.id == id))
            .map(|(j, _)| j)
            .collect();
        let want = exp.count.unwrap_or(1);
        if hits.len() != want {
            result.failures.push(format!(
                "expected {want} alert(s) on {} {}, got {}",
                kind.as_str(),
                exp.entity_id.as_deref().unwrap_or("(any)"),
                hits.len()
            ));
        }
        for j in hits {
            matched[j] = true;
        }
    }
    for (a, m) in alerts.iter().zip(&matched) {
        if !m {
            result.failures.push(format!(
                "unexpected alert on {} {}: {}",
                a.entity.kind.as_str(),
                a.entity.id,
                a.summary
            ));
        }
    }
    result
}

//! Reading the rules folder: every Sigma file is parsed and checked, every error collected,
//! and each rule that raises alerts becomes one rule of kind `sigma`, as a detector file
//! would: the same reload, state keeping, test cases and alert path.
//!
//! A rule's "file" carries the text of the Sigma files it needs (its own, and for a
//! correlation those of the rules it references) in its parameters, so that what its state
//! depends on ([`crate::detectors::state_digest`]) changes exactly when one of them does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rsigma_parser::{CorrelationRule, CorrelationType, Detection, Level, SigmaCollection, SigmaRule};

use super::fields::Field;
use super::KIND;
use crate::config::{AllowList, ConfigError, DetectorFile, GatewatchConfig, TestCase};
use crate::event::Severity;

/// What reading the rules folder gave.
#[derive(Debug, Default)]
pub struct Loaded {
    /// One per rule or correlation that raises alerts.
    pub files: Vec<DetectorFile>,
    pub errors: Vec<ConfigError>,
    /// Rules left out on purpose (another log source): (file, title, why).
    pub skipped: Vec<(PathBuf, String, String)>,
    /// Detection rules that only feed correlations (`generate: false`).
    pub feeding: usize,
}

/// The log source categories gatewatch reads: an API gateway's access log is both.
pub const CATEGORIES: [&str; 2] = ["webserver", "proxy"];

/// Reads `[rules] dir` (or `rules/` beside the config). A folder that is not configured and
/// does not exist means no Sigma rules; a configured one must exist.
pub fn load(cfg: &GatewatchConfig) -> Loaded {
    let dir = cfg.rules_dir();
    if !dir.is_dir() {
        let mut l = Loaded::default();
        if cfg.rules.dir.is_some() {
            l.errors.push(ConfigError::new(
                &dir,
                "",
                "no such rules folder (check [rules] dir, relative to the config file)",
            ));
        }
        return l;
    }
    load_dir(&dir, cfg)
}

/// One parsed Sigma file.
struct SourceFile {
    path: PathBuf,
    text: String,
    collection: SigmaCollection,
}

/// Reads every `*.yml` / `*.yaml` under `dir`, in path order.
pub fn load_dir(dir: &Path, cfg: &GatewatchConfig) -> Loaded {
    let mut out = Loaded::default();
    let mut paths = Vec::new();
    collect_yaml(dir, &mut paths, &mut out.errors);
    paths.sort();
    let mut sources = Vec::new();
    for path in paths {
        let text = match read_small(&path) {
            Ok(t) => t,
            Err(e) => {
                out.errors.push(ConfigError::new(&path, "", e));
                continue;
            }
        };
        match rsigma_parser::parse_sigma_yaml(&text) {
            Ok(collection) => {
                for e in &collection.errors {
                    out.errors.push(ConfigError::new(&path, "", format!("not a Sigma document: {e}")));
                }
                sources.push(SourceFile { path, text, collection });
            }
            Err(e) => out.errors.push(ConfigError::new(&path, "", format!("not Sigma YAML: {e}"))),
        }
    }
    build_files(&sources, cfg, &mut out);
    out
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>, errs: &mut Vec<ConfigError>) {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            errs.push(ConfigError::new(dir, "", format!("cannot read the rules folder: {e}")));
            return;
        }
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            collect_yaml(&p, out, errs);
        } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            out.push(p);
        }
    }
}

/// A rules file is read only if it is a regular file of at most 1 MiB: a rule is text a
/// person wrote, and a folder is read again on every reload.
fn read_small(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() || meta.len() > 1 << 20 {
        return Err("not a regular file of at most 1 MiB".into());
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))
}

/// A rule's id in alerts: its `id`, else its `name`, else the file name and title.
pub fn rule_id(id: &Option<String>, name: &Option<String>, path: &Path, title: &str) -> String {
    id.clone().or_else(|| name.clone()).unwrap_or_else(|| {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{stem}:{title}")
    })
}

/// Why a detection rule cannot run here, if it cannot: its log source, or a field no record
/// carries. Every unknown field is named.
fn check_rule(rule: &SigmaRule) -> Result<(), RuleProblem> {
    let category = rule.logsource.category.as_deref().unwrap_or("");
    let ours = rule.logsource.product.as_deref() == Some("gatewatch");
    if !ours && !CATEGORIES.contains(&category) {
        let what = match (&rule.logsource.category, &rule.logsource.product, &rule.logsource.service) {
            (Some(c), ..) => format!("category `{c}`"),
            (None, Some(p), _) => format!("product `{p}`"),
            (None, None, Some(s)) => format!("service `{s}`"),
            _ => "no log source".into(),
        };
        return Err(RuleProblem::Skip(format!(
            "log source {what}: gatewatch reads category webserver or proxy (or product gatewatch)"
        )));
    }
    let mut unknown = Vec::new();
    for d in rule.detection.named.values() {
        detection_fields(d, &mut |name| {
            if Field::parse(name).is_none() && !unknown.iter().any(|u| u == name) {
                unknown.push(name.to_string());
            }
        });
    }
    if !unknown.is_empty() {
        return Err(RuleProblem::Error(unknown.iter().map(|u| unknown_field(u)).collect()));
    }
    if let Err(e) = rsigma_eval::compile_rule(rule) {
        return Err(RuleProblem::Error(vec![format!("cannot compile: {e}")]));
    }
    Ok(())
}

fn unknown_field(name: &str) -> String {
    format!("field `{name}` is not in a gateway's access log here (known: {})", Field::known())
}

enum RuleProblem {
    Skip(String),
    Error(Vec<String>),
}

/// Calls `f` with every field name a detection reads.
pub fn detection_fields(d: &Detection, f: &mut dyn FnMut(&str)) {
    match d {
        Detection::AllOf(items) => {
            for i in items {
                if let Some(n) = &i.field.name {
                    f(n);
                }
            }
        }
        Detection::AnyOf(ds) => ds.iter().for_each(|d| detection_fields(d, f)),
        Detection::Keywords(_) => {}
        Detection::And(ds) => ds.iter().for_each(|d| detection_fields(d, f)),
        // `field[any]:` blocks: no field of an access log is an array, so the array's own
        // name is what is reported.
        Detection::ArrayMatch { field, .. } => f(&format!("{field}[]")),
        Detection::Conditional { named, .. } => named.values().for_each(|d| detection_fields(d, f)),
    }
}

/// Where a rule was defined.
struct Defined<'a> {
    src: usize,
    rule: &'a SigmaRule,
    id: String,
}

fn build_files(sources: &[SourceFile], cfg: &GatewatchConfig, out: &mut Loaded) {
    // Every detection rule, by id and by name (correlations reference either).
    let mut rules: Vec<Defined> = Vec::new();
    let mut ok: Vec<bool> = Vec::new();
    let mut seen_ids: HashMap<String, PathBuf> = HashMap::new();
    let mut dup = |id: &str, path: &Path, errors: &mut Vec<ConfigError>| {
        if let Some(first) = seen_ids.get(id) {
            errors.push(ConfigError::new(path, "id", format!("rule id `{id}` is also used in {}", first.display())));
            true
        } else {
            seen_ids.insert(id.to_string(), path.to_path_buf());
            false
        }
    };
    for (si, s) in sources.iter().enumerate() {
        for r in &s.collection.rules {
            let id = rule_id(&r.id, &r.name, &s.path, &r.title);
            let mut good = !dup(&id, &s.path, &mut out.errors);
            match check_rule(r) {
                Ok(()) => {}
                Err(RuleProblem::Skip(why)) => {
                    out.skipped.push((s.path.clone(), r.title.clone(), why));
                    good = false;
                }
                Err(RuleProblem::Error(errs)) => {
                    for e in errs {
                        out.errors.push(ConfigError::new(&s.path, format!("rule `{}`", r.title), e));
                    }
                    good = false;
                }
            }
            rules.push(Defined { src: si, rule: r, id });
            ok.push(good);
        }
    }
    let find = |reference: &str| {
        rules.iter().position(|d| {
            d.id == reference || d.rule.name.as_deref() == Some(reference) || d.rule.id.as_deref() == Some(reference)
        })
    };
    // Rules a correlation consumes without `generate: true` raise no alert of their own.
    let mut quiet = vec![false; rules.len()];
    let mut correlations = Vec::new();
    for (si, s) in sources.iter().enumerate() {
        for c in &s.collection.correlations {
            let id = rule_id(&c.id, &c.name, &s.path, &c.title);
            let field = format!("correlation `{}`", c.title);
            let mut errs = Vec::new();
            if dup(&id, &s.path, &mut out.errors) {
                continue;
            }
            let mut refs = Vec::new();
            for r in &c.rules {
                match find(r) {
                    Some(i) => {
                        if !c.generate {
                            quiet[i] = true;
                        }
                        if !ok[i] {
                            errs.push(format!("references rule `{r}`, which cannot run here (see its own error)"));
                        }
                        refs.push(i);
                    }
                    None => errs.push(format!("references rule `{r}`, which is not in the rules folder")),
                }
            }
            errs.extend(check_correlation(c));
            if errs.is_empty() {
                correlations.push((si, c, id, refs));
            } else {
                out.errors.extend(errs.into_iter().map(|e| ConfigError::new(&s.path, field.clone(), e)));
            }
        }
    }
    let tests = sidecar_tests(sources, &mut out.errors);
    for (i, d) in rules.iter().enumerate() {
        if !ok[i] {
            continue;
        }
        if quiet[i] {
            out.feeding += 1;
            continue;
        }
        let s = &sources[d.src];
        let file =
            make_file(&d.id, &d.rule.title, d.rule.level, &d.rule.custom_attributes, &[&s.text], &s.path, cfg, &tests);
        match file {
            Ok(f) => out.files.push(f),
            Err(e) => out.errors.push(e),
        }
    }
    for (si, c, id, refs) in correlations {
        let s = &sources[si];
        let mut texts: Vec<&str> = vec![&s.text];
        for i in refs {
            let t = sources[rules[i].src].text.as_str();
            if !texts.contains(&t) {
                texts.push(t);
            }
        }
        match make_file(&id, &c.title, c.level, &c.custom_attributes, &texts, &s.path, cfg, &tests) {
            Ok(f) => out.files.push(f),
            Err(e) => out.errors.push(e),
        }
    }
}

/// What gatewatch cannot run in a correlation: the other types, an unknown group-by field,
/// or no field naming one of the alert contract's entities.
fn check_correlation(c: &CorrelationRule) -> Vec<String> {
    let mut errs = Vec::new();
    match c.correlation_type {
        CorrelationType::EventCount
        | CorrelationType::ValueCount
        | CorrelationType::Temporal
        | CorrelationType::TemporalOrdered => {}
        other => errs.push(format!(
            "type `{}` is not supported (event_count, value_count, temporal, temporal_ordered are)",
            other.as_str()
        )),
    }
    if !c.aliases.is_empty() {
        errs.push("field aliases are not supported: every rule here reads the same field names".into());
    }
    for g in &c.group_by {
        if Field::parse(g).is_none() {
            errs.push(format!("group-by: {}", unknown_field(g)));
        }
    }
    if let rsigma_parser::CorrelationCondition::Threshold { field, predicates, .. } = &c.condition {
        if c.correlation_type == CorrelationType::ValueCount {
            match field.as_deref() {
                Some([f]) if Field::parse(f).is_some() => {}
                Some([f]) => errs.push(format!("condition field: {}", unknown_field(f))),
                _ => errs.push("value_count needs one condition `field`".into()),
            }
        }
        if predicates.is_empty() {
            errs.push("condition needs gt, gte, lt, lte or eq".into());
        }
    }
    if c.timespan.seconds == 0 {
        errs.push("timespan must be more than 0".into());
    }
    errs
}

/// Sigma's `level` as gatewatch's severity.
pub fn severity_of(level: Option<Level>) -> Severity {
    match level {
        Some(Level::Informational) => Severity::Info,
        Some(Level::Low) => Severity::Low,
        None | Some(Level::Medium) => Severity::Medium,
        Some(Level::High) => Severity::High,
        Some(Level::Critical) => Severity::Critical,
    }
}

/// The custom attribute a rule names its own actions with.
pub const ACTIONS_ATTRIBUTE: &str = "gatewatch-actions";

#[allow(clippy::too_many_arguments)]
fn make_file(
    id: &str,
    title: &str,
    level: Option<Level>,
    custom: &HashMap<String, yaml_serde::Value>,
    texts: &[&str],
    path: &Path,
    cfg: &GatewatchConfig,
    tests: &HashMap<(PathBuf, Option<String>), Vec<TestCase>>,
) -> Result<DetectorFile, ConfigError> {
    let level_name = level.map_or("medium", |l| l.as_str());
    let actions = match custom.get(ACTIONS_ATTRIBUTE) {
        Some(v) => yaml_serde::from_value::<Vec<String>>(v.clone()).map_err(|_| {
            ConfigError::new(path, format!("rule `{title}`"), format!("{ACTIONS_ATTRIBUTE} must be a list of actions"))
        })?,
        None => cfg.rules.actions.get(level_name).cloned().unwrap_or_default(),
    };
    let mut params = toml::Table::new();
    params.insert("rule".into(), toml::Value::String(id.to_string()));
    params.insert(
        "sources".into(),
        toml::Value::Array(texts.iter().map(|t| toml::Value::String(t.to_string())).collect()),
    );
    let mut cases = tests.get(&(path.to_path_buf(), Some(id.to_string()))).cloned().unwrap_or_default();
    cases.extend(tests.get(&(path.to_path_buf(), None)).cloned().unwrap_or_default());
    Ok(DetectorFile {
        id: id.to_string(),
        kind: KIND.to_string(),
        enabled: true,
        description: Some(title.to_string()),
        severity: severity_of(level),
        cooldown: cfg.rules.cooldown,
        actions,
        runbook: None,
        allow: AllowList::default(),
        params,
        tests: cases,
        path: path.to_path_buf(),
    })
}

/// Test cases beside a rule: `name.tests.toml` next to `name.yml`, `[[tests]]` in the shape of
/// a detector file's, each with an optional `rule = "<id>"` when the file holds several rules.
fn sidecar_tests(
    sources: &[SourceFile],
    errors: &mut Vec<ConfigError>,
) -> HashMap<(PathBuf, Option<String>), Vec<TestCase>> {
    let mut out: HashMap<(PathBuf, Option<String>), Vec<TestCase>> = HashMap::new();
    for s in sources {
        let side = s.path.with_extension("tests.toml");
        let Ok(text) = read_small(&side) else { continue };
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Sidecar {
            tests: Vec<toml::Table>,
        }
        let parsed: Sidecar = match toml::from_str(&text) {
            Ok(p) => p,
            Err(e) => {
                errors.push(ConfigError::new(&side, "", e.message().to_string()));
                continue;
            }
        };
        for (i, mut t) in parsed.tests.into_iter().enumerate() {
            let rule = match t.remove("rule") {
                Some(toml::Value::String(r)) => Some(r),
                Some(_) => {
                    errors.push(ConfigError::new(&side, format!("tests[{i}].rule"), "must be a rule id"));
                    continue;
                }
                None => None,
            };
            match toml::Value::Table(t).try_into::<TestCase>() {
                Ok(case) => out.entry((s.path.clone(), rule)).or_default().push(case),
                Err(e) => errors.push(ConfigError::new(&side, format!("tests[{i}]"), e.message().to_string())),
            }
        }
    }
    out
}

//! A detector file: one detector instance (`detectors/*.toml`).
//!
//! ```toml
//! id = "auth-failure-default"     # rule id, unique, shown in alerts as `rule`
//! kind = "auth_failure_spike"     # detector kind (registry name)
//! severity = "high"
//! cooldown = "15m"                # per entity: no second alert within this
//! actions = ["webhook:secops"]
//! [allow]                         # never alert on, never learn from
//! client_ids = ["healthcheck"]
//! source_ips = ["10.0.0.0/8"]
//! [params]                        # kind-specific, validated by the kind
//! window = "5m"
//! [[tests]]                       # run by `gatewatch check`
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ConfigError, DurationStr, GatewatchConfig};
use crate::event::Severity;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorFile {
    /// Unique rule id; appears in every alert as `rule` and in the alert id hash.
    pub id: String,
    /// Detector kind, one of the registered kinds (`auth_failure_spike`, `token_reuse`, ...).
    pub kind: String,
    /// Set `false` to keep the file but not run it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Free text for humans.
    #[serde(default)]
    pub description: Option<String>,
    /// Severity of the alerts this rule raises.
    #[serde(default = "default_severity")]
    pub severity: Severity,
    /// After an alert for an entity, no second alert for it within this time. Default 15m.
    #[serde(default = "default_cooldown")]
    pub cooldown: DurationStr,
    /// Actions the alert asks for (`webhook:NAME`, `email:NAME`, `revoke`), carried in the alert.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Link to the runbook for this rule, shown in notifications.
    #[serde(default)]
    pub runbook: Option<String>,
    /// Entities this rule never alerts on and never learns from.
    #[serde(default)]
    pub allow: AllowList,
    /// Kind-specific parameters; each kind validates its own.
    #[serde(default)]
    pub params: toml::Table,
    /// Test cases run by `gatewatch check`.
    #[serde(default)]
    pub tests: Vec<TestCase>,
    /// The file this came from (set by the loader).
    #[serde(skip)]
    pub path: PathBuf,
}

fn default_true() -> bool {
    true
}
fn default_severity() -> Severity {
    Severity::Medium
}
fn default_cooldown() -> DurationStr {
    DurationStr(15 * 60_000)
}

/// Entities a rule ignores.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowList {
    /// Client ids (exact).
    #[serde(default)]
    pub client_ids: Vec<String>,
    /// Source addresses or CIDRs.
    #[serde(default)]
    pub source_ips: Vec<String>,
    /// Token fingerprints (16 hex digits).
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Templated routes (`GET /health`) or path prefixes ending in `*` (`GET /internal/*`).
    #[serde(default)]
    pub routes: Vec<String>,
}

/// A test case: events built from templates, and the alerts expected.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: String,
    /// Start time of the case (RFC 3339); default 2026-01-01T00:00:00Z.
    #[serde(default)]
    pub start: Option<String>,
    pub events: Vec<TestEventSpec>,
    /// Expected alerts; an empty list means "no alert".
    pub expect: Vec<TestExpect>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestEventSpec {
    /// Offset of the first event from the case start.
    #[serde(default)]
    pub at: Option<DurationStr>,
    /// How many events this template makes.
    #[serde(default = "default_repeat")]
    pub repeat: usize,
    /// Spacing between repeated events.
    #[serde(default)]
    pub every: Option<DurationStr>,
    /// Normalized event fields. A field given as an array (other than `scopes` and `exposures`) is cycled
    /// through, one value per repetition.
    pub event: toml::Table,
}

fn default_repeat() -> usize {
    1
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestExpect {
    /// `client_id`, `source_ip`, `token` or `route`.
    pub entity_kind: String,
    /// The entity id; any id if absent.
    #[serde(default)]
    pub entity_id: Option<String>,
    /// Exact number of alerts for this entity; default 1.
    #[serde(default)]
    pub count: Option<usize>,
}

impl DetectorFile {
    pub fn load(path: &Path) -> Result<Self, Vec<ConfigError>> {
        let text =
            std::fs::read_to_string(path).map_err(|e| vec![ConfigError::new(path, "", format!("cannot read: {e}"))])?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, Vec<ConfigError>> {
        let mut f: DetectorFile = super::parse_toml(text, path).map_err(|e| vec![e])?;
        f.path = path.to_path_buf();
        let mut errs = Vec::new();
        if f.id.trim().is_empty() {
            errs.push(ConfigError::new(path, "id", "must not be empty"));
        }
        for (i, c) in f.allow.source_ips.iter().enumerate() {
            if c.parse::<ipnet::IpNet>().is_err() && c.parse::<std::net::IpAddr>().is_err() {
                errs.push(ConfigError::new(
                    path,
                    format!("allow.source_ips[{i}]"),
                    format!("`{c}` is not an IP or CIDR"),
                ));
            }
        }
        for (i, t) in f.allow.tokens.iter().enumerate() {
            if crate::event::Fingerprint::from_hex(t).is_none() {
                errs.push(ConfigError::new(path, format!("allow.tokens[{i}]"), "must be a 16-hex-digit fingerprint"));
            }
        }
        for (i, a) in f.actions.iter().enumerate() {
            if let Err(why) = ActionRef::parse(a) {
                errs.push(ConfigError::new(path, format!("actions[{i}]"), why));
            }
        }
        if errs.is_empty() {
            Ok(f)
        } else {
            Err(errs)
        }
    }

    /// Loads every `*.toml` in a directory, sorted by file name. All errors are collected.
    pub fn load_dir(dir: &Path) -> (Vec<DetectorFile>, Vec<ConfigError>) {
        let mut files = Vec::new();
        let mut errs = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                errs.push(ConfigError::new(dir, "", format!("cannot read detector directory: {e}")));
                return (files, errs);
            }
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            match DetectorFile::load(&p) {
                Ok(f) => files.push(f),
                Err(mut e) => errs.append(&mut e),
            }
        }
        let mut seen = std::collections::HashMap::new();
        for f in &files {
            if let Some(prev) = seen.insert(f.id.clone(), f.path.clone()) {
                errs.push(ConfigError::new(
                    &f.path,
                    "id",
                    format!("duplicate rule id `{}` (also in {})", f.id, prev.display()),
                ));
            }
        }
        (files, errs)
    }
}

/// The detector files that ship, built into the binary so every command runs from any folder.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("auth-failure-spike.toml", include_str!("../../detectors/auth-failure-spike.toml")),
    ("token-reuse.toml", include_str!("../../detectors/token-reuse.toml")),
    ("scope-misuse.toml", include_str!("../../detectors/scope-misuse.toml")),
    ("latency-anomaly.toml", include_str!("../../detectors/latency-anomaly.toml")),
    ("credential-exposure.toml", include_str!("../../detectors/credential-exposure.toml")),
    ("object-enumeration.toml", include_str!("../../detectors/object-enumeration.toml")),
    ("token-claims.toml", include_str!("../../detectors/token-claims.toml")),
    ("impossible-travel.toml", include_str!("../../detectors/impossible-travel.toml")),
    ("volume-anomaly.toml", include_str!("../../detectors/volume-anomaly.toml")),
];

/// Where a command's detector files come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetectorSource {
    /// A folder: `[detectors] dir`, or `detectors/` beside the config or in the working directory.
    Dir(PathBuf),
    /// No folder was configured and `detectors/` is absent: the files built into the binary.
    BuiltIn { looked_in: PathBuf },
}

impl DetectorSource {
    /// Which set applies: an explicitly configured folder always (it must then exist);
    /// otherwise `detectors/` when present, else the built-in set.
    pub fn for_config(cfg: &GatewatchConfig) -> Self {
        let dir = cfg.detectors_dir();
        if cfg.detectors.dir.is_some() || dir.is_dir() {
            DetectorSource::Dir(dir)
        } else {
            DetectorSource::BuiltIn { looked_in: dir }
        }
    }

    /// One line for a user: which set is in force, and how to choose another.
    pub fn describe(&self) -> String {
        match self {
            DetectorSource::Dir(d) => format!("detector files from {}", d.display()),
            DetectorSource::BuiltIn { looked_in } => format!(
                "the built-in detector files ({} not found; set [detectors] dir, or pass --config, to use your own)",
                looked_in.display()
            ),
        }
    }

    /// Reads the files of this source; every error is collected.
    pub fn load(&self) -> (Vec<DetectorFile>, Vec<ConfigError>) {
        match self {
            DetectorSource::Dir(d) => {
                if !d.is_dir() {
                    let msg = "no such detector folder (check [detectors] dir, relative to the config file)";
                    return (Vec::new(), vec![ConfigError::new(d, "", msg)]);
                }
                DetectorFile::load_dir(d)
            }
            DetectorSource::BuiltIn { .. } => {
                let mut files = Vec::new();
                let mut errs = Vec::new();
                for (name, text) in BUILT_IN {
                    match DetectorFile::parse(text, Path::new(name)) {
                        Ok(f) => files.push(f),
                        Err(mut e) => errs.append(&mut e),
                    }
                }
                (files, errs)
            }
        }
    }
}

/// The kinds of sink an action can name.
pub const SINK_KINDS: [&str; 4] = ["webhook", "email", "alertmanager", "file"];

/// What one entry of a detector file's `actions` asks for. The entry's text is what alerts
/// carry (`"actions"` in the alert JSON); this is the one place that reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionRef<'a> {
    /// `log`: the alert is logged (as every alert is); names no sink.
    Log,
    /// `revoke` (as `[revocation] mode` says) or `revoke:dry-run` (always dry-run for this rule).
    Revoke { dry_run: bool },
    /// `ban` or `ban:dry-run`: the address an alert is about, banned through the same checks
    /// (mode, `never_ban`, the caps, the audit), enforced by forward-auth and the CrowdSec stream.
    Ban { dry_run: bool },
    /// `webhook`, `email`, `alertmanager`, `file`: every sink of that kind; `webhook:secops`: that one.
    Sink { kind: &'static str, name: Option<&'a str> },
}

impl<'a> ActionRef<'a> {
    pub fn parse(text: &'a str) -> Result<Self, String> {
        let (head, name) = match text.split_once(':') {
            Some((h, n)) => (h, Some(n)),
            None => (text, None),
        };
        match (head, name) {
            ("log", None) => Ok(ActionRef::Log),
            ("revoke", None) => Ok(ActionRef::Revoke { dry_run: false }),
            ("revoke", Some("dry-run")) => Ok(ActionRef::Revoke { dry_run: true }),
            ("ban", None) => Ok(ActionRef::Ban { dry_run: false }),
            ("ban", Some("dry-run")) => Ok(ActionRef::Ban { dry_run: true }),
            ("kafka", _) => {
                Err(format!("`{text}` is not an action: every alert goes to [kafka] alerts_topic when one is set"))
            }
            (kind, name) => match SINK_KINDS.iter().find(|k| **k == kind) {
                Some(k) if name.is_none_or(|n| !n.is_empty()) => Ok(ActionRef::Sink { kind: k, name }),
                _ => Err(format!(
                    "unknown action `{text}` (log, revoke, revoke:dry-run, ban, ban:dry-run, {})",
                    SINK_KINDS.map(|k| format!("{k}[:NAME]")).join(", ")
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::{build_rule, Limits};

    fn errors(text: &str) -> Vec<(String, String)> {
        let path = Path::new("d.toml");
        let errs = match DetectorFile::parse(text, path) {
            Err(e) => e,
            Ok(f) => match build_rule(&f, Limits::default()) {
                Err(e) => e,
                Ok(_) => Vec::new(),
            },
        };
        errs.into_iter().map(|e| (e.field, e.message)).collect()
    }

    #[test]
    fn nested_errors_name_their_full_field_path() {
        let head = "id = \"x\"\nkind = \"auth_failure_spike\"\n";
        let e = errors(&format!("{head}severity = \"hgh\"\n"));
        assert_eq!(e[0].0, "severity", "{e:?}");
        assert!(e[0].1.contains("unknown variant `hgh`"), "{e:?}");
        let e = errors(&format!("{head}[params]\nthreshold = {{ source_ip = \"twenty\" }}\n"));
        assert_eq!(e[0].0, "params.threshold.source_ip", "{e:?}");
        let e = errors(&format!("{head}[params]\nfailure_statuses = [401, 4030]\n"));
        assert_eq!(e, [("params.failure_statuses[1]".to_string(), "must be an HTTP status (100 to 599)".to_string())]);
        let e = errors(&format!("{head}[params\n"));
        assert_eq!(e[0].0, "line 3", "a syntax error has no field, but a line: {e:?}");
    }

    #[test]
    fn actions_are_one_closed_set() {
        assert_eq!(ActionRef::parse("log"), Ok(ActionRef::Log));
        assert_eq!(ActionRef::parse("revoke:dry-run"), Ok(ActionRef::Revoke { dry_run: true }));
        assert_eq!(ActionRef::parse("email"), Ok(ActionRef::Sink { kind: "email", name: None }));
        assert_eq!(ActionRef::parse("webhook:secops"), Ok(ActionRef::Sink { kind: "webhook", name: Some("secops") }));
        assert!(ActionRef::parse("kafka").unwrap_err().contains("alerts_topic"));
        for bad in ["revoke:now", "webhook:", "pager", ""] {
            assert!(ActionRef::parse(bad).is_err(), "{bad}");
        }
        let e = errors("id = \"x\"\nkind = \"token_reuse\"\nactions = [\"log\", \"kafka\"]\n");
        assert_eq!(e[0].0, "actions[1]", "{e:?}");
    }

    #[test]
    fn service_config_errors_name_their_section_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatewatch.toml");
        std::fs::write(&path, "[engine]\nallowed_lateness = 5\n").unwrap();
        let e = GatewatchConfig::load(&path).unwrap_err();
        assert_eq!(e[0].field, "engine.allowed_lateness", "{e:?}");
    }
}

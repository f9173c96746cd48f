//! `gatewatch.toml`: the service configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::DurationStr;

/// A published development key, used only by the offline commands (`replay`,
/// `normalize`, `scrub`, `simulate`, `demo`) when no key is configured, so their
/// output is reproducible. `gatewatch run` refuses to start with it.
pub const DEV_FINGERPRINT_KEY: &str = "gatewatch-development-key-do-not-use-in-production";

/// Top-level sections other stages own and validate themselves.
pub const OTHER_SECTIONS: &[&str] = &["scrub", "kafka", "admin", "actions", "revocation", "telemetry"];

/// The whole service configuration. Every section is optional. Unknown
/// top-level sections are reported by [`GatewatchConfig::validate`] (serde's
/// `deny_unknown_fields` cannot be combined with the flattened `other`).
///
/// `Debug` is written by hand: it names the raw sections in `other` without their values
/// (`[kafka.librdkafka]` holds passwords, sink URLs may carry tokens); each section's parsed
/// type redacts its own secrets.
#[derive(Clone, Default, Deserialize)]
pub struct GatewatchConfig {
    /// Token fingerprinting.
    #[serde(default)]
    pub fingerprint: FingerprintConfig,
    /// How records are read.
    #[serde(default)]
    pub input: InputConfig,
    /// Normalization: trusted proxies, route templates.
    #[serde(default)]
    pub normalize: NormalizeConfig,
    /// The event-time engine.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Where detector files live.
    #[serde(default)]
    pub detectors: DetectorsConfig,
    /// Users' Sigma rules.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Sections other stages read (kafka, admin, sinks...), kept as raw TOML so each stage
    /// validates its own part.
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
    /// The file this was loaded from (set by the loader).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

impl std::fmt::Debug for GatewatchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewatchConfig")
            .field("fingerprint", &self.fingerprint)
            .field("input", &self.input)
            .field("normalize", &self.normalize)
            .field("engine", &self.engine)
            .field("detectors", &self.detectors)
            .field("other", &self.other.keys().collect::<Vec<_>>())
            .field("path", &self.path)
            .finish()
    }
}

/// `Debug` shows whether a key is set, never the key.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerprintConfig {
    /// HMAC key for token fingerprints. `GATEWATCH_FINGERPRINT_KEY` overrides it.
    pub key: Option<String>,
}

impl std::fmt::Debug for FingerprintConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerprintConfig").field("key", &self.key.as_ref().map(|_| "***")).finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// `auto`, `kong`, `envoy`, `generic`, ...
    #[serde(default = "default_format")]
    pub format: String,
    /// Field map for the `generic` format.
    #[serde(default)]
    pub generic: GenericInputConfig,
    /// Which headers the `haproxy` format's `{…}` request capture block holds, in order.
    #[serde(default)]
    pub haproxy: HaproxyInputConfig,
    /// The year of record times that carry none (Tyk's text log, `time="Jan 29 08:27:09"`)
    /// where no Kafka time says it: replays of a file. Live, the receive time decides.
    #[serde(default)]
    pub year: Option<i32>,
    /// A client id names one caller (machine clients, each with its own OAuth client): where a
    /// record carries no token, credential, consumer, user or subject, token-keyed detections
    /// key on it (`client:<id>`). Off by default: a public client id (a mobile app's) is shared
    /// by all its users and legitimately appears everywhere.
    #[serde(default)]
    pub client_id_is_principal: bool,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            format: default_format(),
            generic: GenericInputConfig::default(),
            haproxy: HaproxyInputConfig::default(),
            year: None,
            client_id_is_principal: false,
        }
    }
}

fn default_format() -> String {
    "auto".into()
}

/// Field map for the `generic` JSON format: normalized field name → source field.
/// Nested fields use dots (`ctx.identity.client`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericInputConfig {
    /// normalized name (`ts`, `client_id`, `source_ip`, ...) → source path.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Unit of `latency_ms`/`upstream_latency_ms` in the source: `ms` (default), `s`, `us`, `ns`.
    #[serde(default)]
    pub latency_unit: Option<String>,
}

/// `[input.haproxy]`: HAProxy logs its `capture request header` values positionally
/// (`{v1|v2|…}`, in the order of the `capture` lines), without their names, so the
/// order is said here. Unset: `Host`, `User-Agent`, `X-Forwarded-For`, `Authorization`
/// ([`crate::normalize::haproxy::DEFAULT_REQUEST_CAPTURES`]). An empty list says the
/// frontend captures no request header, so a single `{…}` block is the response's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyInputConfig {
    /// Header names, in the order of the frontend's `capture request header` lines.
    #[serde(default)]
    pub request_captures: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Proxies whose `X-Forwarded-For` entries are trusted (CIDRs). The client address is
    /// the right-most entry not in this list; the left-most is never trusted blindly.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Route templates that win over the default `{id}` rules, e.g. `/v1/users/{user}/keys/{key}`.
    #[serde(default)]
    pub route_templates: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// How late an event may arrive (behind the newest seen) and still count.
    #[serde(default = "default_lateness")]
    pub allowed_lateness: DurationStr,
    /// Cap on keys each detector keeps; the least recently seen are evicted beyond it.
    #[serde(default = "default_max_keys")]
    pub max_keys_per_detector: usize,
    /// Keys idle longer than this are evicted.
    #[serde(default = "default_idle")]
    pub idle_timeout: DurationStr,
    /// Cap on events waiting in the reorder buffer; beyond it the watermark is forced forward.
    #[serde(default = "default_max_buffered")]
    pub max_buffered_events: usize,
    /// How far ahead of the time a message was received (its Kafka timestamp) a record's own
    /// time may be. A later time is clamped to the received time and counted: a gateway that
    /// copies a client's timestamp cannot move event time on.
    #[serde(default = "default_max_future_skew")]
    pub max_future_skew: DurationStr,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allowed_lateness: default_lateness(),
            max_keys_per_detector: default_max_keys(),
            idle_timeout: default_idle(),
            max_buffered_events: default_max_buffered(),
            max_future_skew: default_max_future_skew(),
        }
    }
}

fn default_lateness() -> DurationStr {
    DurationStr(30_000)
}
fn default_max_future_skew() -> DurationStr {
    DurationStr(5 * 60_000)
}
fn default_max_keys() -> usize {
    200_000
}
fn default_idle() -> DurationStr {
    DurationStr(2 * 3_600_000)
}
fn default_max_buffered() -> usize {
    2_000_000
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorsConfig {
    /// Directory of detector files, relative to the config file. Default `detectors`.
    pub dir: Option<PathBuf>,
}

/// `[rules]`: users' Sigma rules and correlations.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Folder of Sigma rules (`*.yml`, `*.yaml`, searched recursively), relative to the config
    /// file. Default `rules`; when not configured and absent, no Sigma rule runs.
    pub dir: Option<PathBuf>,
    /// After a Sigma alert for an entity, no second one from the same rule within this time.
    #[serde(default = "default_rules_cooldown")]
    pub cooldown: super::DurationStr,
    /// Actions per Sigma `level` (`informational`, `low`, `medium`, `high`, `critical`), for
    /// rules that do not name their own (`gatewatch-actions:` in the rule). Default: none.
    #[serde(default)]
    pub actions: BTreeMap<String, Vec<String>>,
}

fn default_rules_cooldown() -> super::DurationStr {
    super::DurationStr(10 * 60_000)
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig { dir: None, cooldown: default_rules_cooldown(), actions: BTreeMap::new() }
    }
}

impl GatewatchConfig {
    // `load`, `load_default` and `validate` are in `app::load_config`: checking a config
    // asks the modules that own its sections (scrub, Kafka, formats), which `config` does
    // not import.

    pub(crate) fn file(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(|| PathBuf::from("gatewatch.toml"))
    }

    /// Directory of detector files.
    pub fn detectors_dir(&self) -> PathBuf {
        let dir = self.detectors.dir.clone().unwrap_or_else(|| PathBuf::from("detectors"));
        if dir.is_absolute() {
            return dir;
        }
        match self.path.as_ref().and_then(|p| p.parent()) {
            Some(parent) if !parent.as_os_str().is_empty() => parent.join(dir),
            _ => dir,
        }
    }

    /// The Sigma rules folder: `[rules] dir`, else `rules` beside the config file.
    pub fn rules_dir(&self) -> PathBuf {
        let dir = self.rules.dir.clone().unwrap_or_else(|| PathBuf::from("rules"));
        if dir.is_absolute() {
            return dir;
        }
        match self.path.as_ref().and_then(|p| p.parent()) {
            Some(parent) if !parent.as_os_str().is_empty() => parent.join(dir),
            _ => dir,
        }
    }

    /// The fingerprint key: environment, then config. `None` when neither is set.
    pub fn fingerprint_key(&self) -> Option<String> {
        std::env::var("GATEWATCH_FINGERPRINT_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .or_else(|| self.fingerprint.key.clone())
    }
}

//! Detectors: pure, deterministic logic over events in event-time order.
//!
//! A detector may touch the events it is given, its own state and the findings
//! it returns. It may not read the clock, do I/O or touch global state. Time
//! advances only through event timestamps and watermarks.
//!
//! Adding a kind = one new file here + one line in [`REGISTRY`].

pub mod credential_exposure;
pub mod geoip;
mod rule;
#[doc(hidden)]
pub mod testing;

pub mod auth_failure_spike;
pub mod impossible_travel;
pub mod latency_anomaly;
pub mod object_enumeration;
pub mod scope_misuse;
pub mod token_claims;
pub mod token_reuse;
pub mod volume_anomaly;

pub use rule::{state_digest, Allow, Rule};

use serde::de::DeserializeOwned;

use crate::config::{ConfigError, DetectorFile};
use crate::event::{Event, Finding, Millis, Shard};
use crate::state::StateStats;

/// Limits every detector's keyed state obeys (from `[engine]`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_keys: usize,
    pub idle_timeout: Millis,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_keys: 200_000, idle_timeout: 2 * 3_600_000 }
    }
}

/// A detector kind's runtime.
pub trait Detector: Send {
    /// Sees every event (allow-listed ones excluded) in event-time order.
    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>);
    /// The key this detector keeps `ev`'s state under in `shard`, if it needs `ev` there at
    /// all. When events are repartitioned, `ev` reaches the detector once per shard it names a
    /// key for, through [`Detector::on_shard_event`], on the instance that owns that key; what
    /// the detector keeps for one key (and every finding about it) must therefore depend only
    /// on the events it names that key for.
    fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String>;
    /// `ev`, delivered under `shard` only: update what is kept under that shard's key and
    /// nothing else. The default suits detectors that name at most one shard per event.
    fn on_shard_event(&mut self, ev: &Event, _shard: Shard, out: &mut Vec<Finding>) {
        self.on_event(ev, out)
    }
    /// Event time has advanced to `watermark`: close windows, evict idle keys.
    fn on_watermark(&mut self, _watermark: Millis, _out: &mut Vec<Finding>) {}
    /// Keys held, evictions.
    fn stats(&self) -> StateStats;
    /// Why this rule judges nothing, when it cannot (`impossible_travel` without a database):
    /// said once when the rule is loaded, never guessed around.
    fn off_reason(&self) -> Option<&str> {
        None
    }
    /// Whether this detector reads the request line's method, host, query, user agent or
    /// subject (Sigma rules do): repartition records then carry them.
    fn reads_request(&self) -> bool {
        false
    }
    /// What this detector holds now about `entity` (counts in its open windows, what it has
    /// learned, when it last saw it), for `GET /api/v1/entities/{kind}/{id}` and `gatewatch
    /// inspect`; `None` when it holds nothing for it. Only what an alert may show: never a raw
    /// credential, only fingerprints and scrubbed values. Read-only: asking changes nothing.
    fn describe(&self, _entity: &crate::event::Entity) -> Option<serde_json::Value> {
        None
    }
}

pub type BuildFn = fn(&DetectorFile, Limits) -> Result<Box<dyn Detector>, Vec<ConfigError>>;

/// Every detector kind: name → constructor from its file.
pub const REGISTRY: &[(&str, BuildFn)] = &[
    ("auth_failure_spike", auth_failure_spike::build),
    ("token_reuse", token_reuse::build),
    ("latency_anomaly", latency_anomaly::LatencyAnomaly::build),
    ("scope_misuse", scope_misuse::build),
    ("credential_exposure", credential_exposure::build),
    ("object_enumeration", object_enumeration::build),
    ("token_claims", token_claims::build),
    ("impossible_travel", impossible_travel::build),
    ("volume_anomaly", volume_anomaly::build),
    // Built from a Sigma rule under `rules/` ([`crate::sigma`]), never from a detector file.
    (crate::sigma::KIND, crate::sigma::build),
];

/// A 128-bit state key for `ev`'s principal, in the order of [`Event::principal_entity`]
/// (the token's fingerprint, else the credential id, else the record's principal) and tagged
/// by which, without formatting it. `None` when the record names no principal.
pub fn principal_key(ev: &Event) -> Option<u128> {
    let (tag, bytes): (&[u8], &[u8]) = match (&ev.token_fingerprint, &ev.credential_id, &ev.principal) {
        (Some(fp), ..) => (b"t", &fp.0),
        (None, Some(c), _) => (b"c", c.as_bytes()),
        (None, None, Some(p)) => (b"p", p.as_bytes()),
        _ => return None,
    };
    Some(crate::state::key128(&[tag, bytes]))
}

/// The key [`principal_key`] makes for the events whose [`Event::principal_entity`] is
/// `entity` (a token entity: a fingerprint, `cred:<id>`, or a prefixed principal).
pub fn principal_key_of(entity: &crate::event::Entity) -> Option<u128> {
    if entity.kind != crate::event::EntityKind::Token {
        return None;
    }
    let id = entity.id.as_str();
    let fp = crate::event::Fingerprint::from_hex(id);
    let (tag, bytes): (&[u8], &[u8]) = match (&fp, id.strip_prefix("cred:")) {
        (Some(fp), _) => (b"t", &fp.0),
        (None, Some(c)) => (b"c", c.as_bytes()),
        (None, None) => (b"p", id.as_bytes()),
    };
    Some(crate::state::key128(&[tag, bytes]))
}

pub fn kinds() -> Vec<&'static str> {
    REGISTRY.iter().map(|(k, _)| *k).collect()
}

/// Builds a rule from its file; every error is returned.
pub fn build_rule(file: &DetectorFile, limits: Limits) -> Result<Rule, Vec<ConfigError>> {
    let Some((kind, build)) = REGISTRY.iter().find(|(k, _)| *k == file.kind) else {
        return Err(vec![ConfigError::new(
            &file.path,
            "kind",
            format!("unknown detector kind `{}` (one of: {})", file.kind, kinds().join(", ")),
        )]);
    };
    let detector = build(file, limits)?;
    Ok(Rule::new(file, kind, detector))
}

/// Parses `[params]` into a kind's parameter struct; unknown fields are errors, named with
/// their full path (`params.threshold.source_ip`).
pub fn parse_params<T: DeserializeOwned>(file: &DetectorFile) -> Result<T, Vec<ConfigError>> {
    serde_path_to_error::deserialize(toml::Value::Table(file.params.clone())).map_err(|e| {
        let path = crate::config::field_path(e.path());
        let field = if path.is_empty() { "params".to_string() } else { format!("params.{path}") };
        vec![ConfigError::new(&file.path, field, e.into_inner().message().to_string())]
    })
}

/// Collects range errors while turning params into runtime values.
pub struct Checker<'a> {
    file: &'a DetectorFile,
    pub errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    pub fn new(file: &'a DetectorFile) -> Self {
        Checker { file, errors: Vec::new() }
    }

    pub fn check(&mut self, ok: bool, field: &str, msg: &str) {
        if !ok {
            self.errors.push(ConfigError::new(&self.file.path, format!("params.{field}"), msg));
        }
    }

    pub fn finish<T>(self, value: T) -> Result<T, Vec<ConfigError>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

/// Groups an address into its network: IPv4 /`v4`, IPv6 /`v6`.
pub fn network_of(ip: std::net::IpAddr, v4: u8, v6: u8) -> ipnet::IpNet {
    match ip {
        std::net::IpAddr::V4(a) => ipnet::IpNet::V4(ipnet::Ipv4Net::new(a, v4.min(32)).expect("prefix ≤ 32").trunc()),
        std::net::IpAddr::V6(a) => ipnet::IpNet::V6(ipnet::Ipv6Net::new(a, v6.min(128)).expect("prefix ≤ 128").trunc()),
    }
}

/// Formats a duration in ms as `5m`, `90s`, `1h30m` for summaries.
pub fn human_duration(ms: Millis) -> String {
    let s = ms / 1000;
    if s % 3600 == 0 && s >= 3600 {
        format!("{}h", s / 3600)
    } else if s >= 3600 {
        format!("{}h{}m", s / 3600, (s % 3600) / 60)
    } else if s % 60 == 0 && s >= 60 {
        format!("{}m", s / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

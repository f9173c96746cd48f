//! Loading `gatewatch.toml`: parsed into [`GatewatchConfig`] (the `config` module), then
//! checked section by section, each against the module that owns it (the scrubber's rules,
//! the Kafka settings, the gateway formats and their fields). This lives with the wiring so
//! that `config` holds types and imports no runtime module; every problem is returned at
//! once, with its file and dotted field, before anything starts.

use std::path::Path;

use crate::config::{ConfigError, GatewatchConfig, OTHER_SECTIONS};

impl GatewatchConfig {
    /// Loads a config file. Syntax errors are returned as a list.
    pub fn load(path: &Path) -> Result<Self, Vec<ConfigError>> {
        let text =
            std::fs::read_to_string(path).map_err(|e| vec![ConfigError::new(path, "", format!("cannot read: {e}"))])?;
        let mut cfg: GatewatchConfig = crate::config::parse_toml(&text, path).map_err(|e| vec![e])?;
        cfg.path = Some(path.to_path_buf());
        let errs = cfg.validate();
        if errs.is_empty() {
            Ok(cfg)
        } else {
            Err(errs)
        }
    }

    /// `--config` if given, else `./gatewatch.toml` if present, else defaults.
    pub fn load_default(explicit: Option<&Path>) -> Result<Self, Vec<ConfigError>> {
        match explicit {
            Some(p) => Self::load(p),
            None if Path::new("gatewatch.toml").exists() => Self::load(Path::new("gatewatch.toml")),
            None => Ok(GatewatchConfig::default()),
        }
    }

    /// Checks values that deserialize but make no sense; every problem is returned.
    pub fn validate(&self) -> Vec<ConfigError> {
        let f = self.file();
        let mut errs = Vec::new();
        for name in self.other.keys() {
            if !OTHER_SECTIONS.contains(&name.as_str()) {
                errs.push(ConfigError::new(
                    &f,
                    name.as_str(),
                    format!(
                        "unknown section (one of: fingerprint, input, normalize, engine, detectors, {})",
                        OTHER_SECTIONS.join(", ")
                    ),
                ));
            }
        }
        if let Err(mut e) = crate::scrub::ScrubConfig::from_config(self) {
            errs.append(&mut e);
        }
        if self.other.contains_key("kafka") {
            if let Err(mut e) = crate::source::kafka::KafkaSettings::from_config(self) {
                errs.append(&mut e);
            }
        }
        for (i, cidr) in self.normalize.trusted_proxies.iter().enumerate() {
            if cidr.parse::<ipnet::IpNet>().is_err() && cidr.parse::<std::net::IpAddr>().is_err() {
                errs.push(ConfigError::new(
                    &f,
                    format!("normalize.trusted_proxies[{i}]"),
                    format!("`{cidr}` is not an IP address or CIDR"),
                ));
            }
        }
        for (i, t) in self.normalize.route_templates.iter().enumerate() {
            if !t.starts_with('/') {
                errs.push(ConfigError::new(
                    &f,
                    format!("normalize.route_templates[{i}]"),
                    format!("`{t}` must start with `/`"),
                ));
            }
        }
        if crate::normalize::Format::parse(&self.input.format).is_none() {
            errs.push(ConfigError::new(
                &f,
                "input.format",
                format!(
                    "unknown format `{}` (one of: {})",
                    self.input.format,
                    crate::normalize::Format::NAMES.join(", ")
                ),
            ));
        }
        for name in self.input.generic.fields.keys() {
            if !crate::normalize::generic::FIELD_NAMES.contains(&name.as_str()) {
                errs.push(ConfigError::new(
                    &f,
                    format!("input.generic.fields.{name}"),
                    format!("not a normalized field (one of: {})", crate::normalize::generic::FIELD_NAMES.join(", ")),
                ));
            }
        }
        for (i, name) in self.input.haproxy.request_captures.iter().flatten().enumerate() {
            if !crate::normalize::haproxy::is_header_name(name) {
                errs.push(ConfigError::new(
                    &f,
                    format!("input.haproxy.request_captures[{i}]"),
                    format!("`{name}` is not an HTTP header name"),
                ));
            }
        }
        if let Some(u) = &self.input.generic.latency_unit {
            if !["ms", "s", "us", "ns"].contains(&u.as_str()) {
                errs.push(ConfigError::new(&f, "input.generic.latency_unit", format!("`{u}`: one of ms, s, us, ns")));
            }
        }
        if self.engine.allowed_lateness.0 < 0 || self.engine.allowed_lateness.0 > 3_600_000 {
            errs.push(ConfigError::new(&f, "engine.allowed_lateness", "must be between 0s and 1h"));
        }
        if self.engine.max_future_skew.0 < 0 {
            errs.push(ConfigError::new(&f, "engine.max_future_skew", "must not be negative"));
        }
        if self.engine.max_keys_per_detector < 16 {
            errs.push(ConfigError::new(&f, "engine.max_keys_per_detector", "must be at least 16"));
        }
        if let Some(k) = &self.fingerprint.key {
            if k.len() < 16 {
                errs.push(ConfigError::new(&f, "fingerprint.key", "must be at least 16 characters"));
            }
        }
        errs
    }
}

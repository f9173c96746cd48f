//! The `[scrub]` section of `gatewatch.toml`: extra names and extra content rules.
//!
//! ```toml
//! [scrub]
//! headers = ["x-internal-auth"]        # header values always replaced
//! query_params = ["sessionkey"]        # query parameters always replaced
//! json_keys = ["card_number"]          # JSON keys whose string values are always replaced
//! disable = ["twilio_key"]             # built-in content kinds to turn off
//! [[scrub.rules]]
//! kind = "acme_key"                    # [a-z][a-z0-9_]{0,31}: shown in markers and metrics
//! prefix = "acme_"                     # distinctive literal the secret starts with (≥ 3 bytes)
//! regex = "acme_[A-Za-z0-9]{32}"       # the whole secret, starting at the prefix
//! examples = ["acme_0123456789abcdefABCDEF0123456789"]   # each must match in full
//! ```

use std::path::PathBuf;

use serde::Deserialize;

use super::rules::{NameRule, CONTENT_RULES};
use crate::config::{ConfigError, GatewatchConfig};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScrub {
    /// Header names whose values are always secrets.
    #[serde(default)]
    headers: Vec<String>,
    /// Query parameters whose values are always secrets.
    #[serde(default)]
    query_params: Vec<String>,
    /// JSON keys whose string values are always secrets.
    #[serde(default)]
    json_keys: Vec<String>,
    /// Built-in content kinds to switch off (e.g. `twilio_key`).
    #[serde(default)]
    disable: Vec<String>,
    /// Extra content rules.
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// Kind shown in markers and metrics: `[a-z][a-z0-9_]{0,31}`.
    kind: String,
    /// The literal the secret starts with.
    #[serde(default)]
    prefix: Option<String>,
    /// Several literals, when the secret can start in more than one way.
    #[serde(default)]
    prefixes: Vec<String>,
    /// Regex for the whole secret, matched from the prefix.
    regex: String,
    /// Secrets the regex must match in full (checked at load time).
    #[serde(default)]
    examples: Vec<String>,
}

/// A validated user content rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRule {
    pub kind: String,
    pub prefixes: Vec<String>,
    pub regex: String,
}

/// The scrubber's configuration, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubConfig {
    /// Extra names (headers, query parameters, JSON keys) whose values are always replaced.
    pub names: Vec<String>,
    /// Extra content rules.
    pub rules: Vec<UserRule>,
    /// Built-in content kinds switched off.
    pub disabled_kinds: Vec<String>,
}

pub(crate) fn valid_kind(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

impl ScrubConfig {
    /// Reads and validates `[scrub]`; every problem is returned, with file and field.
    pub fn from_config(cfg: &GatewatchConfig) -> Result<ScrubConfig, Vec<ConfigError>> {
        let file = cfg.path.clone().unwrap_or_else(|| PathBuf::from("gatewatch.toml"));
        match cfg.other.get("scrub") {
            None => Ok(ScrubConfig::default()),
            Some(v) => Self::from_toml(v, &file),
        }
    }

    /// Reads and validates a `[scrub]` table.
    pub fn from_toml(v: &toml::Value, file: &std::path::Path) -> Result<ScrubConfig, Vec<ConfigError>> {
        let raw = RawScrub::deserialize(v.clone())
            .map_err(|e| vec![ConfigError::new(file, "scrub", e.message().to_string())])?;
        let mut errs = Vec::new();
        let mut names = Vec::new();
        for (field, list) in
            [("headers", &raw.headers), ("query_params", &raw.query_params), ("json_keys", &raw.json_keys)]
        {
            for (i, n) in list.iter().enumerate() {
                let ok = !n.is_empty()
                    && n.len() <= 96
                    && n.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
                if ok {
                    names.push(n.clone());
                } else {
                    errs.push(ConfigError::new(
                        file,
                        format!("scrub.{field}[{i}]"),
                        "a name of 1-96 letters, digits, `_`, `-` or `.`",
                    ));
                }
            }
        }
        let known: Vec<&str> = CONTENT_RULES.iter().map(|r| r.kind).collect();
        for (i, k) in raw.disable.iter().enumerate() {
            if !known.contains(&k.as_str()) {
                let mut kinds = known.clone();
                kinds.sort();
                kinds.dedup();
                errs.push(ConfigError::new(
                    file,
                    format!("scrub.disable[{i}]"),
                    format!("unknown kind `{k}` (one of: {})", kinds.join(", ")),
                ));
            }
        }
        let mut rules = Vec::new();
        for (i, r) in raw.rules.iter().enumerate() {
            let f = |x: &str| format!("scrub.rules[{i}].{x}");
            let before = errs.len();
            if !valid_kind(&r.kind) {
                errs.push(ConfigError::new(file, f("kind"), "must match [a-z][a-z0-9_]{0,31}"));
            }
            let mut prefixes = r.prefixes.clone();
            prefixes.extend(r.prefix.clone());
            if prefixes.is_empty() {
                errs.push(ConfigError::new(
                    file,
                    f("prefix"),
                    "a content rule needs a literal prefix (`prefix` or `prefixes`)",
                ));
            }
            for p in &prefixes {
                if p.len() < 3 {
                    errs.push(ConfigError::new(
                        file,
                        f("prefix"),
                        format!("`{p}` is too short to gate a rule (at least 3 bytes)"),
                    ));
                }
            }
            match regex::Regex::new(&format!("^(?:{})", r.regex)) {
                Err(e) => errs.push(ConfigError::new(file, f("regex"), format!("does not compile: {e}"))),
                Ok(re) => {
                    for (j, ex) in r.examples.iter().enumerate() {
                        let full = re.find(ex).is_some_and(|m| m.end() == ex.len());
                        if !full {
                            errs.push(ConfigError::new(
                                file,
                                format!("scrub.rules[{i}].examples[{j}]"),
                                "not matched in full by `regex`",
                            ));
                        } else if !prefixes.iter().any(|p| ex.starts_with(p.as_str())) {
                            errs.push(ConfigError::new(
                                file,
                                format!("scrub.rules[{i}].examples[{j}]"),
                                "does not start with any prefix",
                            ));
                        }
                    }
                }
            }
            if errs.len() == before {
                rules.push(UserRule { kind: r.kind.clone(), prefixes, regex: r.regex.clone() });
            }
        }
        if errs.is_empty() {
            Ok(ScrubConfig { names, rules, disabled_kinds: raw.disable })
        } else {
            Err(errs)
        }
    }

    pub(crate) fn name_rules(&self) -> Vec<(String, NameRule)> {
        self.names.iter().map(|n| (n.clone(), NameRule::Always("secret"))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ScrubConfig, Vec<ConfigError>> {
        // The section as the loader hands it over: kept raw in `other`.
        let mut cfg = GatewatchConfig::default();
        let table: toml::Table = toml::from_str(s).unwrap();
        cfg.other.extend(table);
        cfg.path = Some("test.toml".into());
        ScrubConfig::from_config(&cfg)
    }

    #[test]
    fn absent_section_is_default() {
        assert_eq!(parse("").unwrap(), ScrubConfig::default());
    }

    #[test]
    fn valid_section() {
        let c = parse(
            r#"
[scrub]
headers = ["x-internal-auth"]
query_params = ["sessionkey"]
json_keys = ["card_number"]
disable = ["twilio_key"]
[[scrub.rules]]
kind = "acme_key"
prefix = "acme_"
regex = "acme_[A-Za-z0-9]{32}"
examples = ["acme_0123456789abcdefABCDEF0123456789"]
"#,
        )
        .unwrap();
        assert_eq!(c.names.len(), 3);
        assert_eq!(c.rules[0].kind, "acme_key");
        assert_eq!(c.disabled_kinds, vec!["twilio_key"]);
    }

    #[test]
    fn every_error_reported_with_field() {
        let errs = parse(
            r#"
[scrub]
headers = ["bad header"]
disable = ["nope"]
[[scrub.rules]]
kind = "Bad-Kind"
prefix = "a"
regex = "a("
[[scrub.rules]]
kind = "ok_kind"
prefix = "okk_"
regex = "okk_[0-9]{4}"
examples = ["okk_12"]
"#,
        )
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "scrub.headers[0]",
                "scrub.disable[0]",
                "scrub.rules[0].kind",
                "scrub.rules[0].prefix",
                "scrub.rules[0].regex",
                "scrub.rules[1].examples[0]"
            ]
        );
        assert!(errs.iter().all(|e| e.file == std::path::Path::new("test.toml")));
    }

    #[test]
    fn unknown_field_is_an_error() {
        let errs = parse("[scrub]\nheaderz = []\n").unwrap_err();
        assert_eq!(errs[0].field, "scrub");
        assert!(errs[0].message.contains("headerz"));
    }
}

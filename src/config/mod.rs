//! Service configuration (`gatewatch.toml`) and detector files (`detectors/*.toml`).
//!
//! Loading never stops at the first problem: every error is collected with the
//! file and the field it concerns, so `gatewatch check` can list them all.

mod detector_file;
mod duration;
mod service;

pub use detector_file::{
    ActionRef, AllowList, DetectorFile, DetectorSource, TestCase, TestEventSpec, TestExpect, BUILT_IN, SINK_KINDS,
};
pub use duration::{parse_duration, DurationStr};
pub use service::{
    EngineConfig, FingerprintConfig, GatewatchConfig, GenericInputConfig, HaproxyInputConfig, InputConfig,
    NormalizeConfig, DEV_FINGERPRINT_KEY, OTHER_SECTIONS,
};

use std::fmt;
use std::path::{Path, PathBuf};

/// One configuration problem: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted path of the field (`params.window`), or empty for the whole file.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: impl AsRef<Path>, field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { file: file.as_ref().to_path_buf(), field: field.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.field, self.message)
        }
    }
}

/// All the errors found, reported together.
#[derive(Debug, Default, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration error(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Turns a toml/serde error message into a field path + message. toml's messages
/// carry line/column and the key; we keep the whole message but never the value
/// of a `key` field (it may be a secret).
/// Parses TOML text into `T`, naming the full path of the field an error is in
/// (`threshold.source_ip`, `policy[2].route`), or its line when it has no path (bad syntax).
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
        let path = field_path(e.path());
        let inner = e.into_inner();
        let field = if path.is_empty() {
            inner
                .span()
                .map(|s| format!("line {}", text[..s.start.min(text.len())].matches('\n').count() + 1))
                .unwrap_or_default()
        } else {
            path
        };
        ConfigError::new(file, field, inner.message().to_string())
    })
}

/// A serde path as the config reference writes it: `a.b[2].c`.
pub(crate) fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

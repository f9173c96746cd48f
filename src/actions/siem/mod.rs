//! Findings for SIEMs: the alert of the contract rendered as an OCSF Detection Finding
//! ([`ocsf`]) or an ECS alert event ([`ecs`]), selectable per webhook sink (`format`) and for
//! the Kafka alerts topic. `tests/siem_formats.rs` checks both against the published schemas
//! (vendored under `tests/data/schemas/`).

pub mod ecs;
pub mod ocsf;

use crate::actions::lifecycle::Notification;
use crate::event::Alert;

/// How an alert is written for a machine: the contract's JSON, or a SIEM schema.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AlertFormat {
    /// The alert object of the contract, unchanged.
    #[default]
    Json,
    /// An OCSF Detection Finding ([`ocsf`]).
    Ocsf,
    /// An ECS alert event ([`ecs`]).
    Ecs,
}

impl AlertFormat {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "json" => AlertFormat::Json,
            "ocsf" => AlertFormat::Ocsf,
            "ecs" => AlertFormat::Ecs,
            _ => return None,
        })
    }

    /// `n` in this format.
    pub fn render(self, n: &Notification) -> Vec<u8> {
        match self {
            AlertFormat::Json => n.alert.to_json().into_bytes(),
            AlertFormat::Ocsf => serde_json::to_vec(&ocsf::render(n)).expect("json"),
            AlertFormat::Ecs => serde_json::to_vec(&ecs::render(n)).expect("json"),
        }
    }
}

/// MITRE ATT&CK technique ids a Sigma alert's tags name (`attack.t1110.001` → `T1110.001`).
pub fn attack_techniques(a: &Alert) -> Vec<String> {
    a.evidence
        .get("tags")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str()?.strip_prefix("attack.t"))
        .filter(|id| id.starts_with(|c: char| c.is_ascii_digit()))
        .map(|id| format!("T{}", id.to_ascii_uppercase()))
        .collect()
}

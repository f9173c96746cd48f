//! Findings for SIEMs: the alert of the contract rendered as an OCSF Detection Finding
//! ([`ocsf`]) or an ECS alert event ([`ecs`]), selectable per webhook sink (`format`) and for
//! the Kafka alerts topic. `tests/siem_formats.rs` checks both against the published schemas
//! (vendored under `tests/data/schemas/`).

pub mod ecs;
pub mod ocsf;

use crate::event::Alert;

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

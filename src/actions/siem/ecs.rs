//! ECS 9.4 alert event (`event.kind: alert`): ECS fields where ECS has one (`event.*`,
//! `rule.*`, `source.ip`, `threat.*`, `observer.*`), and what ECS has no field for (the
//! entity, the evidence, the token fingerprint) under the custom namespace `gatewatch.*`, as
//! ECS asks of custom fields.

use serde_json::{json, Value};

use crate::actions::lifecycle::{Notification, Status};
use crate::event::{format_ts, EntityKind, Severity};

pub const ECS_VERSION: &str = "9.4.0";

fn severity_number(s: Severity) -> u8 {
    // The 0–100 scale Elastic's detection rules use (low 21, medium 47, high 73, critical 99).
    match s {
        Severity::Info => 1,
        Severity::Low => 21,
        Severity::Medium => 47,
        Severity::High => 73,
        Severity::Critical => 99,
    }
}

/// `n` as an ECS document.
pub fn render(n: &Notification) -> Value {
    let a = &n.alert;
    let mut doc = json!({
        "@timestamp": format_ts(a.window_end),
        "message": a.summary,
        "ecs": { "version": ECS_VERSION },
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection"],
            "type": ["info"],
            "id": n.idempotency_key(),
            "severity": severity_number(a.severity),
            "start": format_ts(n.first_window_start),
            "end": format_ts(a.window_end),
            "module": "gatewatch",
            "dataset": "gatewatch.alerts",
            "provider": a.detector,
            "reason": a.summary,
        },
        "rule": { "id": a.rule, "name": a.rule, "ruleset": a.detector },
        "observer": { "vendor": "gatewatch", "product": "gatewatch", "type": "ids", "version": env!("CARGO_PKG_VERSION") },
        "gatewatch": {
            "alert_id": a.id,
            "status": if n.status == Status::Resolved { "resolved" } else { "firing" },
            "count": n.count,
            "entity": { "kind": a.entity.kind.as_str(), "id": a.entity.id },
            "severity": a.severity.as_str(),
            "client_id": a.client_id,
            "token_fingerprint": a.token_fingerprint.map(|f| f.to_hex()),
            "evidence": Value::Object(a.evidence.clone()),
            "actions": a.actions,
        },
    });
    if a.entity.kind == EntityKind::SourceIp && a.entity.id.parse::<std::net::IpAddr>().is_ok() {
        doc["source"] = json!({ "ip": a.entity.id });
    }
    let techniques = super::attack_techniques(a);
    if !techniques.is_empty() {
        doc["threat"] = json!({ "framework": "MITRE ATT&CK", "technique": { "id": techniques } });
    }
    doc
}

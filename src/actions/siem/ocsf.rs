//! OCSF 1.8.0 Detection Finding (class 2004, category Findings): one per notification.
//! `activity_id` 1 (Create) for a new alert, 2 (Update) for a notification that folds several,
//! 3 (Close) for a resolved one; `finding_info.uid` is the alert id, so a SIEM correlates the
//! three; the evidence travels as `evidences[].data`, the address as `src_endpoint`.

use serde_json::{json, Value};

use crate::actions::lifecycle::{Notification, Status};
use crate::event::{EntityKind, Severity};

/// The OCSF schema version these findings follow.
pub const OCSF_VERSION: &str = "1.8.0";
pub const CLASS_UID: u32 = 2004;
pub const CATEGORY_UID: u32 = 2;

fn severity_id(s: Severity) -> (u8, &'static str) {
    match s {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// `n` as an OCSF Detection Finding.
pub fn render(n: &Notification) -> Value {
    let a = &n.alert;
    let (activity_id, activity) = match (n.status, n.count) {
        (Status::Resolved, _) => (3u32, "Close"),
        (Status::Firing, 1) => (1, "Create"),
        (Status::Firing, _) => (2, "Update"),
    };
    let (sev_id, sev) = severity_id(a.severity);
    let mut evidence = json!({ "data": Value::Object(a.evidence.clone()) });
    // An address entity (not a network: `ip` is one address).
    if a.entity.kind == EntityKind::SourceIp && a.entity.id.parse::<std::net::IpAddr>().is_ok() {
        evidence["src_endpoint"] = json!({ "ip": a.entity.id });
    }
    let mut analytic = json!({ "name": a.rule, "uid": a.rule, "type_id": 1, "type": "Rule" });
    if a.detector != "sigma" {
        analytic["category"] = a.detector.clone().into();
    }
    let mut finding = json!({
        "uid": a.id,
        "title": a.summary,
        "types": [a.detector],
        "analytic": analytic,
        "first_seen_time": n.first_window_start,
        "last_seen_time": a.window_end,
    });
    let techniques = super::attack_techniques(a);
    if !techniques.is_empty() {
        finding["attacks"] = techniques
            .iter()
            .map(|t| match t.split_once('.') {
                // `T1110.001`: a sub-technique of `T1110`.
                Some((parent, _)) => json!({ "technique": { "uid": parent }, "sub_technique": { "uid": t } }),
                None => json!({ "technique": { "uid": t } }),
            })
            .collect();
    }
    json!({
        "activity_id": activity_id,
        "activity_name": activity,
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": CLASS_UID as u64 * 100 + activity_id as u64,
        "type_name": format!("Detection Finding: {activity}"),
        "severity_id": sev_id,
        "severity": sev,
        "time": a.window_end,
        "message": a.summary,
        "status_id": if n.status == Status::Resolved { 4 } else { 1 },
        "status": if n.status == Status::Resolved { "Resolved" } else { "New" },
        "is_alert": n.status == Status::Firing,
        "count": n.count,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": n.idempotency_key(),
            "product": { "name": "gatewatch", "vendor_name": "gatewatch", "version": env!("CARGO_PKG_VERSION") },
        },
        "finding_info": finding,
        "evidences": [evidence],
    })
}

//! A Sigma detection rule: one request that matches raises an alert on whoever sent it.
//!
//! Matching is rsigma-eval's (compiled once: every value modifier, keywords, the full
//! condition grammar), over the event as [`View`] shows it. The alert is about the caller:
//! its address, else its principal, else its client, else the route; the rule's cooldown
//! keeps a scanner's thousand probes to one alert per rule and address.

use rsigma_eval::CompiledRule;
use rsigma_parser::SigmaRule;
use serde_json::Value;

use super::fields::{Field, View};
use crate::detectors::Detector;
use crate::event::{Entity, EntityKind, Event, Finding, Shard};
use crate::state::StateStats;

pub struct SigmaDetection {
    compiled: CompiledRule,
    title: String,
    level: Option<rsigma_parser::Level>,
    tags: Vec<String>,
    request: bool,
    matched: u64,
}

impl SigmaDetection {
    pub fn new(rule: &SigmaRule) -> Result<Self, String> {
        let compiled = rsigma_eval::compile_rule(rule).map_err(|e| format!("cannot compile: {e}"))?;
        Ok(SigmaDetection {
            compiled,
            title: rule.title.clone(),
            level: rule.level,
            tags: rule.tags.clone(),
            request: reads_request(rule),
            matched: 0,
        })
    }

    /// Whether `ev` matches, and what matched.
    pub fn matches(&self, ev: &Event) -> Option<rsigma_eval::EvaluationResult> {
        rsigma_eval::evaluate_rule(&self.compiled, &View(ev))
    }
}

/// Whether `rule` reads a part of the request line repartition records leave behind unless
/// asked (a field of it, or keywords, which search it).
pub fn reads_request(rule: &SigmaRule) -> bool {
    let mut request = false;
    for d in rule.detection.named.values() {
        super::load::detection_fields(d, &mut |n| request |= Field::parse(n).is_none_or(Field::in_request_line));
    }
    request || rule.detection.named.values().any(has_keywords)
}

fn has_keywords(d: &rsigma_parser::Detection) -> bool {
    use rsigma_parser::Detection as D;
    match d {
        D::Keywords(_) => true,
        D::AnyOf(ds) | D::And(ds) => ds.iter().any(has_keywords),
        _ => false,
    }
}

/// The shard of [`caller`], without building the entity's id (asked for every record, every
/// shard and every Sigma rule at ingest).
fn caller_shard(ev: &Event) -> Option<Shard> {
    if ev.source_ip.is_some() {
        Some(Shard::Source)
    } else if ev.token_fingerprint.is_some() || ev.credential_id.is_some() || ev.principal.is_some() {
        Some(Shard::Token)
    } else if ev.client_id.is_some() {
        Some(Shard::ClientId)
    } else {
        ev.route.as_ref().map(|_| Shard::Route)
    }
}

/// Who an alert about `ev` is about, and the shard that keeps that entity whole: the
/// address, else the principal, else the client, else the route.
pub fn caller(ev: &Event) -> Option<(Entity, Shard)> {
    if let Some(ip) = ev.source_ip {
        return Some((Entity { kind: EntityKind::SourceIp, id: ip.to_canonical().to_string() }, Shard::Source));
    }
    if let Some(p) = ev.principal_entity() {
        return Some((Entity { kind: EntityKind::Token, id: p }, Shard::Token));
    }
    if let Some(c) = &ev.client_id {
        return Some((Entity { kind: EntityKind::ClientId, id: c.to_string() }, Shard::ClientId));
    }
    ev.route.as_ref().map(|r| (Entity { kind: EntityKind::Route, id: r.to_string() }, Shard::Route))
}

/// `GET /path?query` (scrubbed, as every field of the event is).
pub fn request_line(ev: &Event) -> String {
    let uri = Field::Uri.text(ev).unwrap_or_default();
    match &ev.method {
        Some(m) => format!("{m} {uri}"),
        None => uri.into_owned(),
    }
}

impl Detector for SigmaDetection {
    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        let Some(result) = self.matches(ev) else { return };
        let Some((entity, _)) = caller(ev) else { return };
        self.matched += 1;
        let mut evidence = super::rule_evidence(&self.title, self.level, &self.tags);
        if let Some(d) = result.as_detection() {
            let mut matched = serde_json::Map::new();
            for m in &d.matched_fields {
                matched.entry(m.field.clone()).or_insert_with(|| m.value.clone());
            }
            evidence.insert("matched".into(), Value::Object(matched));
            evidence
                .insert("selections".into(), d.matched_selections.iter().map(|s| Value::from(s.as_str())).collect());
        }
        let line = request_line(ev);
        evidence.insert("request".into(), line.clone().into());
        if let Some(s) = ev.status {
            evidence.insert("status".into(), s.into());
        }
        if let Some(ua) = &ev.user_agent {
            evidence.insert("user_agent".into(), ua.as_str().into());
        }
        out.push(Finding {
            summary: format!("{}: {} {}", self.title, entity.id, truncate(&line, 200)),
            entity,
            within: None,
            client_id: ev.client_id.as_deref().map(str::to_string),
            client_id_source: ev.client_id_source,
            token_fingerprint: ev.token_fingerprint,
            window_start: ev.ts,
            window_end: ev.ts,
            evidence,
        });
    }

    /// Only a matching event needs to travel, under its caller's key.
    fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String> {
        if caller_shard(ev)? != shard || self.matches(ev).is_none() {
            return None;
        }
        caller(ev).map(|(entity, _)| entity.id)
    }

    fn stats(&self) -> StateStats {
        StateStats::default()
    }

    fn reads_request(&self) -> bool {
        self.request
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::ev;

    #[test]
    fn the_shard_asked_for_is_the_callers_without_building_its_id() {
        let events = [
            ev(0).ip("192.0.2.1").token(1).build(),
            ev(0).token(1).client("c").build(),
            ev(0).credential("k1").build(),
            ev(0).principal("user:alice").build(),
            ev(0).client("c").get("/v1/x").build(),
            ev(0).get("/v1/x").build(),
            Event::default(),
        ];
        for e in &events {
            assert_eq!(caller_shard(e), caller(e).map(|(_, s)| s), "{e:?}");
        }
    }
}

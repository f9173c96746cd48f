//! Users' own rules, in Sigma: detection rules on single requests, and Sigma correlations
//! (`event_count`, `value_count`, `temporal`, `temporal_ordered`) on event time.
//!
//! - [`load`] reads the rules folder (`[rules] dir`, default `rules/`): each rule that raises
//!   alerts becomes a rule of kind `sigma`, with everything a detector file's rule has
//!   (reload keeping unchanged state, cooldown, actions, test cases, the alert contract with
//!   `detector = "sigma"` and the Sigma rule's id as `rule`).
//! - [`fields`] maps the W3C field names web rules use onto the normalized event.
//! - [`detection`] matches single events (rsigma-eval's compiled matchers: every modifier,
//!   keyword and the full condition grammar).
//! - [`correlation`] is gatewatch's own windowing, on event time, keyed through the
//!   repartition by the group-by values ([`crate::event::Shard::Group`]).

pub mod correlation;
pub mod detection;
pub mod fields;
pub mod load;

use rsigma_parser::{CorrelationRule, SigmaRule};
use serde::Deserialize;

use crate::config::{ConfigError, DetectorFile};
use crate::detectors::{parse_params, Detector, Limits};

/// The detector kind of every Sigma rule (`"detector"` in its alerts).
pub const KIND: &str = "sigma";

/// What [`load`] puts in a Sigma rule's parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The id of the rule (or correlation) this is.
    rule: String,
    /// The text of the Sigma files it needs: its own first, then those of rules it references.
    sources: Vec<String>,
}

/// Builds a Sigma rule's runtime from the file [`load`] made for it.
pub fn build(file: &DetectorFile, limits: Limits) -> Result<Box<dyn Detector>, Vec<ConfigError>> {
    let p: Params = parse_params(file)?;
    let err = |m: String| vec![ConfigError::new(&file.path, format!("rule `{}`", p.rule), m)];
    let mut rules: Vec<SigmaRule> = Vec::new();
    let mut correlations: Vec<CorrelationRule> = Vec::new();
    for text in &p.sources {
        let c = rsigma_parser::parse_sigma_yaml(text).map_err(|e| err(format!("not Sigma YAML: {e}")))?;
        rules.extend(c.rules);
        correlations.extend(c.correlations);
    }
    let id_of_rule = |r: &SigmaRule| load::rule_id(&r.id, &r.name, &file.path, &r.title);
    if let Some(r) = rules.iter().find(|r| id_of_rule(r) == p.rule) {
        return detection::SigmaDetection::new(r).map(|d| Box::new(d) as Box<dyn Detector>).map_err(err);
    }
    let id_of_corr = |c: &CorrelationRule| load::rule_id(&c.id, &c.name, &file.path, &c.title);
    if let Some(c) = correlations.iter().find(|c| id_of_corr(c) == p.rule) {
        return correlation::SigmaCorrelation::new(c, &rules, limits)
            .map(|d| Box::new(d) as Box<dyn Detector>)
            .map_err(err);
    }
    Err(err("no rule or correlation with this id in its sources".into()))
}

/// The evidence every Sigma alert carries: the rule's title, level and tags (ATT&CK ids).
fn rule_evidence(
    title: &str,
    level: Option<rsigma_parser::Level>,
    tags: &[String],
) -> serde_json::Map<String, serde_json::Value> {
    let mut e = serde_json::Map::new();
    e.insert("title".into(), title.into());
    e.insert("level".into(), level.map_or("medium", |l| l.as_str()).into());
    if !tags.is_empty() {
        e.insert("tags".into(), tags.iter().map(|t| serde_json::Value::from(t.as_str())).collect());
    }
    e
}

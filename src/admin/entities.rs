//! `GET /api/v1/entities/{kind}/{id}`: what every rule of this process holds about one
//! entity right now (counts in its open windows, what it has learned, when it last alerted),
//! partition by partition, with the entity's recent alerts from the history.
//!
//! The rules live with the Kafka partitions their consumer thread drives; a source attaches
//! itself here when it starts ([`Entities::attach`]) and answers under its partition lock,
//! which it holds only between messages, so a question waits for at most one message.

use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde_json::Value;

use crate::event::Entity;

/// What one rule holds about the entity, on one partition.
#[derive(Clone, Debug, Serialize)]
pub struct RuleState {
    pub rule: String,
    pub detector: String,
    /// `topic/partition` of the rules that hold it.
    pub partition: String,
    /// The detector's own description ([`crate::detectors::Detector::describe`]).
    pub held: Value,
}

/// Something that drives rules and can say what they hold (a Kafka source).
pub trait EntitySource: Send + Sync {
    fn describe(&self, entity: &Entity) -> Vec<RuleState>;
}

/// The sources of this process, attached as they start.
#[derive(Default)]
pub struct Entities {
    sources: RwLock<Vec<Arc<dyn EntitySource>>>,
}

impl Entities {
    pub fn attach(&self, source: Arc<dyn EntitySource>) {
        if let Ok(mut s) = self.sources.write() {
            s.push(source);
        }
    }

    /// Every rule's state about `entity`, over every source.
    pub fn describe(&self, entity: &Entity) -> Vec<RuleState> {
        let sources = match self.sources.read() {
            Ok(s) => s.clone(),
            Err(_) => return Vec::new(),
        };
        sources.iter().flat_map(|s| s.describe(entity)).collect()
    }
}

/// The states the rules of `rules` hold about `entity`, labelled with `partition`.
pub fn describe_rules(rules: &[crate::detectors::Rule], entity: &Entity, partition: &str) -> Vec<RuleState> {
    rules
        .iter()
        .filter_map(|r| {
            r.describe(entity).map(|held| RuleState {
                rule: r.id.clone(),
                detector: r.kind.to_string(),
                partition: partition.to_string(),
                held,
            })
        })
        .collect()
}

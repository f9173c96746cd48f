//! The recent alerts, for `/api/v1/alerts`: every alert handed off, kept in memory up to a
//! bound (the oldest leave first), each once (an alert id seen again, after a restart's
//! rebuild, is not a second alert). Alerts hold no secret by contract; nothing else is kept.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

use super::Clock;
use crate::actions::{AlertHandoff, HandoffError};
use crate::event::{Alert, Millis, Severity};

/// Alerts kept by default.
pub const DEFAULT_CAPACITY: usize = 10_000;

struct Entry {
    seq: u64,
    received_at: Millis,
    alert: Alert,
}

#[derive(Default)]
struct Inner {
    seq: u64,
    entries: VecDeque<Entry>,
    /// Alert id → its sequence number, for the entries kept.
    by_id: HashMap<String, u64>,
}

pub struct AlertHistory {
    inner: Mutex<Inner>,
    capacity: usize,
    clock: Clock,
}

/// Which alerts a listing wants. Every field set must match.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub detector: Option<String>,
    pub rule: Option<String>,
    /// At least this severity (`info`, `low`, `medium`, `high`, `critical`).
    pub severity: Option<String>,
    pub entity_kind: Option<String>,
    pub entity_id: Option<String>,
    /// Window end at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Window end before this time (RFC 3339).
    pub until: Option<String>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<usize>,
    /// The `next` of the previous page: alerts older than it.
    pub before: Option<u64>,
}

/// A page of alerts, newest first.
#[derive(Debug, serde::Serialize)]
pub struct Page {
    pub alerts: Vec<Value>,
    /// Pass as `before` for the next page; `None` on the last.
    pub next: Option<u64>,
}

impl AlertHistory {
    pub fn new(capacity: usize, clock: Clock) -> Self {
        AlertHistory { inner: Mutex::new(Inner::default()), capacity: capacity.max(1), clock }
    }

    fn view(e: &Entry) -> Value {
        let mut v = serde_json::from_str::<Value>(&e.alert.to_json()).unwrap_or(Value::Null);
        v["seq"] = e.seq.into();
        v["received_at"] = crate::event::format_ts(e.received_at).into();
        v
    }

    /// One page of the alerts `f` selects; a filter that does not parse is an error to show.
    pub fn query(&self, f: &Filter) -> Result<Page, String> {
        let time = |s: &Option<String>, name: &str| -> Result<Option<Millis>, String> {
            s.as_deref()
                .map(|t| crate::normalize::time::parse_rfc3339(t).ok_or(format!("`{name}` is not an RFC 3339 time")))
                .transpose()
        };
        let (since, until) = (time(&f.since, "since")?, time(&f.until, "until")?);
        let min_severity = f
            .severity
            .as_deref()
            .map(|s| {
                Severity::parse(s).ok_or(format!("`severity`: one of info, low, medium, high, critical, not `{s}`"))
            })
            .transpose()?;
        let limit = f.limit.unwrap_or(50).clamp(1, 500);
        let inner = self.inner.lock().map_err(|_| "history unavailable".to_string())?;
        let mut alerts = Vec::new();
        let mut next = None;
        for e in inner.entries.iter().rev() {
            if f.before.is_some_and(|b| e.seq >= b) {
                continue;
            }
            let a = &e.alert;
            let keep = f.detector.as_deref().is_none_or(|d| a.detector == d)
                && f.rule.as_deref().is_none_or(|r| a.rule == r)
                && min_severity.is_none_or(|s| a.severity >= s)
                && f.entity_kind.as_deref().is_none_or(|k| a.entity.kind.as_str() == k)
                && f.entity_id.as_deref().is_none_or(|i| a.entity.id == i)
                && since.is_none_or(|t| a.window_end >= t)
                && until.is_none_or(|t| a.window_end < t);
            if !keep {
                continue;
            }
            if alerts.len() == limit {
                next = alerts.last().and_then(|v: &Value| v["seq"].as_u64());
                break;
            }
            alerts.push(Self::view(e));
        }
        Ok(Page { alerts, next })
    }

    /// The alert with this id, if still kept.
    pub fn get(&self, id: &str) -> Option<Value> {
        let inner = self.inner.lock().ok()?;
        let seq = *inner.by_id.get(id)?;
        let first = inner.entries.front()?.seq;
        inner.entries.get((seq - first) as usize).map(Self::view)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.entries.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AlertHandoff for AlertHistory {
    fn handoff(&self, alert: &Alert) -> Result<(), HandoffError> {
        let now = (self.clock)();
        let Ok(mut inner) = self.inner.lock() else { return Ok(()) };
        if inner.by_id.contains_key(&alert.id) {
            return Ok(());
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.by_id.insert(alert.id.clone(), seq);
        inner.entries.push_back(Entry { seq, received_at: now, alert: alert.clone() });
        while inner.entries.len() > self.capacity {
            if let Some(old) = inner.entries.pop_front() {
                inner.by_id.remove(&old.alert.id);
            }
        }
        Ok(())
    }
}

//! The recent alerts, for `/api/v1/alerts` and the console: every alert handed off, kept in
//! memory up to a bound (the oldest leave first), each once (an alert id seen again, after a
//! restart's rebuild, is not a second alert), with its timeline: what the dispatcher did with
//! it ([`AlertJournal`]: queued, each delivery attempt per sink, grouped, dead-lettered,
//! resolved, each revocation or ban decision).
//!
//! Optionally also in a file (`[admin] history_file`), read back at start: JSON lines, an
//! alert or a timeline entry each, rewritten with only what is kept once it holds about three
//! times that. Alerts hold no secret by contract, and timeline details are the sinks' own
//! error messages (which never quote a URL); nothing else is kept.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::Clock;
use crate::actions::{AlertHandoff, AlertJournal, AttemptOutcome, HandoffError, Happening};
use crate::event::{format_ts, Alert, Millis, Severity};

/// Alerts kept by default.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// Timeline entries kept per alert (the latest).
const MAX_NOTES: usize = 64;

struct Entry {
    seq: u64,
    received_at: Millis,
    alert: Alert,
    notes: VecDeque<(Millis, Happening)>,
}

#[derive(Default)]
struct Inner {
    seq: u64,
    entries: VecDeque<Entry>,
    /// Alert id → its sequence number, for the entries kept.
    by_id: HashMap<String, u64>,
}

impl Inner {
    fn entry_mut(&mut self, id: &str) -> Option<&mut Entry> {
        let seq = *self.by_id.get(id)?;
        let first = self.entries.front()?.seq;
        self.entries.get_mut((seq - first) as usize)
    }

    /// Adds `alert` unless kept already; `false` when it was.
    fn add(&mut self, alert: &Alert, received_at: Millis, capacity: usize) -> bool {
        if self.by_id.contains_key(&alert.id) {
            return false;
        }
        self.seq += 1;
        let seq = self.seq;
        self.by_id.insert(alert.id.clone(), seq);
        self.entries.push_back(Entry { seq, received_at, alert: alert.clone(), notes: VecDeque::new() });
        while self.entries.len() > capacity {
            if let Some(old) = self.entries.pop_front() {
                self.by_id.remove(&old.alert.id);
            }
        }
        true
    }

    fn note(&mut self, id: &str, at: Millis, what: Happening) -> bool {
        let Some(e) = self.entry_mut(id) else { return false };
        if e.notes.len() == MAX_NOTES {
            e.notes.pop_front();
        }
        e.notes.push_back((at, what));
        true
    }
}

/// The file the history is also kept in.
struct Store {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    /// Lines written since the file was last rewritten.
    lines: usize,
    /// A write failed: said once, until one works again.
    failing: bool,
}

pub struct AlertHistory {
    inner: Mutex<Inner>,
    capacity: usize,
    clock: Clock,
    store: Mutex<Option<Store>>,
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

/// One line of the history file.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Line {
    Alert { alert: Value, received_at: Millis },
    Note { id: String, at: Millis, happened: Happening },
}

impl AlertHistory {
    /// In memory only.
    pub fn new(capacity: usize, clock: Clock) -> Self {
        AlertHistory { inner: Mutex::new(Inner::default()), capacity: capacity.max(1), clock, store: Mutex::new(None) }
    }

    /// Kept in memory and in `path`: what the file holds is read back first (lines that do
    /// not parse are skipped and counted in the returned number), then the file is rewritten
    /// with what is kept and appended to from then on.
    pub fn open(capacity: usize, clock: Clock, path: &Path) -> std::io::Result<(Self, usize)> {
        let h = Self::new(capacity, clock);
        let mut skipped = 0;
        match std::fs::File::open(path) {
            Ok(f) => {
                let mut inner = h.inner.lock().expect("fresh lock");
                for line in std::io::BufReader::new(f).split(b'\n') {
                    let line = line?;
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let ok = match serde_json::from_slice::<Line>(&line) {
                        Ok(Line::Alert { alert, received_at }) => match Alert::from_json(&alert) {
                            Ok(a) => {
                                inner.add(&a, received_at, h.capacity);
                                true
                            }
                            Err(_) => false,
                        },
                        // A note about an alert no longer kept is simply not needed.
                        Ok(Line::Note { id, at, happened }) => {
                            inner.note(&id, at, happened);
                            true
                        }
                        Err(_) => false,
                    };
                    if !ok {
                        skipped += 1;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let store = Self::rewrite(path, &h.inner.lock().expect("fresh lock"))?;
        *h.store.lock().expect("fresh lock") = Some(store);
        Ok((h, skipped))
    }

    /// Writes what is kept to `path` (through a temporary file and a rename, so a crash
    /// leaves the old file or the new one) and opens it for appending.
    fn rewrite(path: &Path, inner: &Inner) -> std::io::Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut lines = 0;
        {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            for e in &inner.entries {
                write_line(&mut w, &alert_line(&e.alert, e.received_at))?;
                lines += 1;
                for (at, n) in &e.notes {
                    write_line(&mut w, &note_line(&e.alert.id, *at, n))?;
                    lines += 1;
                }
            }
            w.flush()?;
            w.get_ref().sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        let f = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok(Store { path: path.to_path_buf(), out: std::io::BufWriter::new(f), lines, failing: false })
    }

    /// Appends `line` to the file, if there is one; rewrites it once it has grown to about
    /// three times what is kept. A failure is logged once and counted against nothing: the
    /// history is for looking, never a delivery path.
    fn persist(&self, line: Line) {
        let Ok(mut store) = self.store.lock() else { return };
        let Some(s) = store.as_mut() else { return };
        let mut r = write_line(&mut s.out, &line).and_then(|_| s.out.flush());
        s.lines += 1;
        if r.is_ok() && s.lines > 3 * self.capacity + 3 * MAX_NOTES {
            let path = s.path.clone();
            r = match self.inner.lock() {
                Ok(inner) => Self::rewrite(&path, &inner).map(|fresh| *s = fresh),
                Err(_) => Ok(()),
            };
        }
        match r {
            Ok(()) if s.failing => {
                s.failing = false;
                tracing::info!(file = %s.path.display(), "the alert history file is written again");
            }
            Ok(()) => {}
            Err(e) if !s.failing => {
                s.failing = true;
                tracing::warn!(file = %s.path.display(), error = %e, "cannot write the alert history file; alerts are kept in memory only until it works again");
            }
            Err(_) => {}
        }
    }

    fn list_view(e: &Entry) -> Value {
        let mut v = serde_json::to_value(&e.alert).unwrap_or(Value::Null);
        v["seq"] = e.seq.into();
        v["received_at"] = format_ts(e.received_at).into();
        v
    }

    /// The alert with its timeline, split the way the console shows it: `lifecycle` (raised,
    /// grouped, dead-lettered, resolved), `notifications` (queueing and every attempt, per
    /// sink) and `revocations` (each enforcement decision with its verdict).
    fn full_view(e: &Entry) -> Value {
        let mut v = Self::list_view(e);
        let mut lifecycle = vec![json!({ "at": format_ts(e.received_at), "event": "raised" })];
        let mut notifications: Vec<Value> = Vec::new();
        let mut revocations = Vec::new();
        for (at, n) in &e.notes {
            let at = format_ts(*at);
            match n {
                Happening::Queued { sink } => {
                    // The sink's worker may take a notification, and note its first attempt,
                    // before the dispatcher notes that it queued it: queueing still came first.
                    let sink_v = json!(sink);
                    let queued = notifications.iter().any(|n| n["sink"] == sink_v && n["outcome"] == "queued");
                    let first_attempt =
                        if queued { None } else { notifications.iter().position(|n| n["sink"] == sink_v) };
                    match first_attempt {
                        Some(p) => {
                            let at = notifications[p]["at"].clone();
                            notifications
                                .insert(p, json!({ "at": at, "sink": sink, "outcome": "queued", "attempt": 0 }));
                        }
                        None => {
                            notifications.push(json!({ "at": at, "sink": sink, "outcome": "queued", "attempt": 0 }))
                        }
                    }
                }
                Happening::Attempt { sink, attempt, outcome, detail } => notifications.push(json!({
                    "at": at, "sink": sink, "attempt": attempt, "detail": detail,
                    "outcome": match outcome {
                        AttemptOutcome::Delivered => "delivered",
                        AttemptOutcome::Rejected => "rejected",
                        AttemptOutcome::Failed => "failed",
                    },
                })),
                Happening::Grouped { sink, head, count } => lifecycle.push(json!({
                    "at": at, "event": "grouped", "sink": sink,
                    "detail": format!("delivered to {sink} in one notification of {count} alerts, under alert {head}"),
                })),
                Happening::DeadLettered { sink, reason } => {
                    lifecycle.push(json!({ "at": at, "event": "dead_lettered", "sink": sink, "detail": reason }));
                    notifications.push(json!({ "at": at, "sink": sink, "outcome": "dead_lettered", "detail": reason }));
                }
                Happening::Resolved { sink } => lifecycle.push(json!({
                    "at": at, "event": "resolved", "sink": sink,
                    "detail": format!("nothing like it since; resolved notification queued for {sink}"),
                })),
                Happening::Enforcement { action, verdict, dry_run, detail, target_failures } => {
                    revocations.push(json!({
                        "at": at, "action": action, "verdict": verdict, "dry_run": dry_run,
                        "detail": detail, "target_failures": target_failures,
                    }))
                }
            }
        }
        v["lifecycle"] = lifecycle.into();
        v["notifications"] = notifications.into();
        v["revocations"] = revocations.into();
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
            alerts.push(Self::list_view(e));
        }
        Ok(Page { alerts, next })
    }

    /// The alert with this id and its timeline, if still kept.
    pub fn get(&self, id: &str) -> Option<Value> {
        let mut inner = self.inner.lock().ok()?;
        inner.entry_mut(id).map(|e| Self::full_view(e))
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.entries.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn alert_line(a: &Alert, received_at: Millis) -> Line {
    Line::Alert { alert: serde_json::to_value(a).unwrap_or(Value::Null), received_at }
}

fn note_line(id: &str, at: Millis, what: &Happening) -> Line {
    Line::Note { id: id.to_string(), at, happened: what.clone() }
}

fn write_line(w: &mut impl Write, line: &Line) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, line)?;
    w.write_all(b"\n")
}

impl AlertHandoff for AlertHistory {
    fn handoff(&self, alert: &Alert) -> Result<(), HandoffError> {
        let now = (self.clock)();
        let added = match self.inner.lock() {
            Ok(mut inner) => inner.add(alert, now, self.capacity),
            Err(_) => false,
        };
        if added {
            self.persist(alert_line(alert, now));
        }
        Ok(())
    }
}

impl AlertJournal for AlertHistory {
    fn note(&self, alert_id: &str, at: Millis, what: Happening) {
        let line = note_line(alert_id, at, &what);
        let kept = match self.inner.lock() {
            Ok(mut inner) => inner.note(alert_id, at, what),
            Err(_) => false,
        };
        if kept {
            self.persist(line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ClientIdSource, Entity, EntityKind};
    use std::sync::Arc;

    fn alert(n: i64) -> Alert {
        let entity = Entity::new(EntityKind::SourceIp, format!("203.0.113.{n}"));
        Alert {
            id: Alert::make_id("r", &entity, n),
            detector: "auth_failure_spike".into(),
            rule: "r".into(),
            severity: Severity::High,
            entity,
            client_id: None,
            client_id_source: ClientIdSource::Claimed,
            token_fingerprint: None,
            window_start: n,
            window_end: n + 1000,
            summary: format!("alert {n}"),
            evidence: Default::default(),
            actions: vec!["webhook:secops".into()],
        }
    }

    fn clock() -> Clock {
        Arc::new(|| 1_700_000_000_000)
    }

    #[test]
    fn the_timeline_keeps_each_attempt_grouping_and_decision_under_its_alert() {
        let h = AlertHistory::new(10, clock());
        let a = alert(1);
        h.handoff(&a).unwrap();
        h.note(&a.id, 1, Happening::Queued { sink: "webhook:secops".into() });
        let failed = AttemptOutcome::Failed;
        h.note(
            &a.id,
            2,
            Happening::Attempt {
                sink: "webhook:secops".into(),
                attempt: 1,
                outcome: failed,
                detail: Some("HTTP 503".into()),
            },
        );
        let ok = AttemptOutcome::Delivered;
        h.note(&a.id, 3, Happening::Attempt { sink: "webhook:secops".into(), attempt: 2, outcome: ok, detail: None });
        h.note(
            &a.id,
            4,
            Happening::Enforcement {
                action: "revoke".into(),
                verdict: "dry_run".into(),
                dry_run: true,
                detail: "would revoke".into(),
                target_failures: 0,
            },
        );
        // About an alert not kept: nothing to attach it to.
        h.note("unknown", 5, Happening::Queued { sink: "x".into() });
        let v = h.get(&a.id).unwrap();
        let n = v["notifications"].as_array().unwrap();
        assert_eq!(n.len(), 3);
        assert_eq!(n[1]["outcome"], "failed");
        assert_eq!(n[1]["detail"], "HTTP 503");
        assert_eq!(n[2]["outcome"], "delivered");
        assert_eq!(n[2]["attempt"], 2);
        assert_eq!(v["revocations"][0]["verdict"], "dry_run");
        assert_eq!(v["lifecycle"][0]["event"], "raised");
        // A listing stays small: no timelines.
        let page = h.query(&Filter::default()).unwrap();
        assert!(page.alerts[0].get("notifications").is_none());
    }

    #[test]
    fn the_timeline_of_one_alert_is_bounded() {
        let h = AlertHistory::new(10, clock());
        let a = alert(1);
        h.handoff(&a).unwrap();
        for i in 0..200 {
            let outcome = AttemptOutcome::Failed;
            h.note(&a.id, i, Happening::Attempt { sink: "s".into(), attempt: i as u32, outcome, detail: None });
        }
        let v = h.get(&a.id).unwrap();
        let n = v["notifications"].as_array().unwrap();
        assert_eq!(n.len(), MAX_NOTES);
        assert_eq!(n.last().unwrap()["attempt"], 199);
    }

    #[test]
    fn queueing_comes_before_the_attempts_even_when_noted_after_them() {
        let (h, _) = AlertHistory::open(10, clock(), &tempfile::tempdir().unwrap().path().join("h.jsonl")).unwrap();
        let a = alert(1);
        h.handoff(&a).unwrap();
        // The sink's worker took it and failed once before the dispatcher noted the queueing.
        h.note(
            &a.id,
            5,
            Happening::Attempt {
                sink: "webhook:secops".into(),
                attempt: 1,
                outcome: AttemptOutcome::Failed,
                detail: None,
            },
        );
        h.note(&a.id, 6, Happening::Queued { sink: "webhook:secops".into() });
        h.note(
            &a.id,
            7,
            Happening::Attempt {
                sink: "webhook:secops".into(),
                attempt: 2,
                outcome: AttemptOutcome::Delivered,
                detail: None,
            },
        );
        let v = h.get(&a.id).unwrap();
        let n = v["notifications"].as_array().unwrap();
        let outcomes: Vec<&str> = n.iter().map(|x| x["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["queued", "failed", "delivered"], "{v}");
        assert_eq!(n[0]["at"], n[1]["at"], "queued no later than the first attempt");
    }

    #[test]
    fn the_file_brings_alerts_and_timelines_back_after_a_restart_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/history.jsonl");
        {
            let (h, skipped) = AlertHistory::open(3, clock(), &path).unwrap();
            assert_eq!(skipped, 0);
            for n in 0..5 {
                let a = alert(n);
                h.handoff(&a).unwrap();
                h.note(&a.id, n, Happening::Queued { sink: "webhook:secops".into() });
            }
        }
        // A torn last line (a crash mid-write) is skipped, not fatal.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"alert\":{\"id\"").unwrap();
        let (h, skipped) = AlertHistory::open(3, clock(), &path).unwrap();
        assert_eq!(skipped, 1);
        assert_eq!(h.len(), 3, "only the newest 3 are kept");
        let newest = h.query(&Filter::default()).unwrap();
        assert_eq!(newest.alerts[0]["summary"], "alert 4");
        let v = h.get(&alert(4).id).unwrap();
        assert_eq!(v["notifications"][0]["outcome"], "queued");
        // The same alert again (a rebuild after the restart) is not a second one.
        h.handoff(&alert(4)).unwrap();
        assert_eq!(h.len(), 3);
        // The rewritten file holds only what is kept, and grows back only to a bound.
        for n in 5..200 {
            h.handoff(&alert(n)).unwrap();
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 3 * 3 + 3 * MAX_NOTES + 1, "{lines} lines");
    }
}

//! `gatewatch redrive --sink NAME [--from FILE]`: sends a sink's dead letters again through
//! the real sink path (its queue, rate limit, retries, breaker and timeout, as configured),
//! and appends to the dead-letter file a record for each one delivered, so a second redrive
//! does not send it again.
//!
//! Which dead letters are pending: reading the file in order, a dead-letter record of the
//! sink makes its notification (by idempotency key) pending, a `redriven` record of the sink
//! settles it. What fails again is dead-lettered again by the sink, with the new reason, and
//! stays pending. Redrive uses a queue of its own in a temporary directory, so it runs beside
//! a live `gatewatch run`; if it is stopped, what it did not deliver is still pending.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::json;

use crate::actions::lifecycle::{Notification, Status};
use crate::actions::{ActionsSettings, Dispatcher, Receipt};
use crate::config::GatewatchConfig;
use crate::event::Alert;

/// What a redrive did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RedriveReport {
    /// The dead-letter file read.
    pub file: PathBuf,
    /// Dead-letter records of the sink read from the file.
    pub records: usize,
    /// Already redriven before (settled).
    pub settled: usize,
    /// Records the file holds that could not be read back (not JSON, no alert).
    pub unreadable: usize,
    pub sent: usize,
    pub delivered: usize,
    /// Dead-lettered again (rejected or expired).
    pub failed_again: usize,
    /// Not delivered when `timeout` ended: still pending.
    pub unfinished: usize,
}

/// The sink's pending dead letters, in file order, by idempotency key; and counts.
pub fn pending(path: &Path, sink: &str) -> anyhow::Result<(Vec<(String, Notification)>, RedriveReport)> {
    let f =
        std::fs::File::open(path).with_context(|| format!("cannot read the dead-letter file {}", path.display()))?;
    let mut report = RedriveReport { file: path.to_path_buf(), ..RedriveReport::default() };
    let mut open: BTreeMap<String, (usize, Notification)> = BTreeMap::new();
    let mut settled = BTreeSet::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            report.unreadable += 1;
            continue;
        };
        if v["sink"].as_str() != Some(sink) {
            continue;
        }
        if let Some(key) = v["redriven"].as_str() {
            if open.remove(key).is_some() {
                settled.insert(key.to_string());
            }
            continue;
        }
        report.records += 1;
        let Ok(alert) = Alert::from_json(&v["alert"]) else {
            report.unreadable += 1;
            continue;
        };
        let mut n = Notification::firing(alert);
        if v["status"].as_str() == Some("resolved") {
            n.status = Status::Resolved;
        }
        n.count = v["count"].as_u64().unwrap_or(1).max(1);
        let key = n.idempotency_key();
        settled.remove(&key);
        open.insert(key, (i, n));
    }
    report.settled = settled.len();
    let mut out: Vec<(usize, String, Notification)> = open.into_iter().map(|(k, (i, n))| (i, k, n)).collect();
    out.sort_by_key(|(i, _, _)| *i);
    Ok((out.into_iter().map(|(_, k, n)| (k, n)).collect(), report))
}

/// Redrives the sink's pending dead letters; waits up to `timeout` for them to be delivered.
pub async fn redrive(
    cfg: &GatewatchConfig,
    sink: &str,
    from: Option<&Path>,
    timeout: Duration,
) -> anyhow::Result<RedriveReport> {
    let settings = ActionsSettings::from_config(cfg).map_err(crate::config::ConfigErrors)?;
    let actions =
        settings.actions.ok_or_else(|| anyhow!("the config has no [actions] section: no sink to redrive to"))?;
    let Some(sink_cfg) = actions.sinks.iter().find(|s| s.name == sink).cloned() else {
        let names: Vec<&str> = actions.sinks.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "no sink named {sink} in the config (sinks: {})",
            if names.is_empty() { "none".into() } else { names.join(", ") }
        );
    };
    let file: PathBuf = from.map(Path::to_path_buf).unwrap_or_else(|| actions.dead_letter.clone());
    let (todo, mut report) = pending(&file, sink)?;
    if todo.is_empty() {
        return Ok(report);
    }
    let scratch =
        tempfile::Builder::new().prefix("gatewatch-redrive-").tempdir().context("cannot make a scratch queue")?;
    let mut one = actions.clone();
    one.sinks = vec![sink_cfg];
    one.queue_dir = scratch.path().to_path_buf();
    one.dead_letter = file.clone();
    one.resolve_after = None;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Receipt>();
    let d = Dispatcher::start_with_receipts(&one, Vec::new(), None, Some(tx)).map_err(|e| anyhow!(e))?;
    let mut waiting: BTreeMap<String, Notification> = BTreeMap::new();
    for (key, n) in todo {
        d.enqueue_for(sink, &n).map_err(|e| anyhow!("cannot queue a dead letter for {sink}: {e}"))?;
        waiting.insert(key, n);
        report.sent += 1;
    }
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .with_context(|| format!("cannot append to {}", file.display()))?;
    let deadline = tokio::time::Instant::now() + timeout;
    while !waiting.is_empty() {
        let r = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(r)) => r,
            _ => break,
        };
        for key in &r.keys {
            let Some(n) = waiting.remove(key) else { continue };
            if r.delivered {
                report.delivered += 1;
                let rec = json!({
                    "ts": crate::event::format_ts(chrono::Utc::now().timestamp_millis()),
                    "sink": sink,
                    "redriven": key,
                    "status": n.status.as_str(),
                    "alert_id": n.alert.id,
                    "result": "delivered",
                });
                writeln!(log, "{rec}").with_context(|| format!("cannot append to {}", file.display()))?;
            } else {
                report.failed_again += 1;
            }
        }
    }
    report.unfinished = waiting.len();
    d.shutdown(Duration::from_secs(2)).await;
    Ok(report)
}

impl RedriveReport {
    pub fn render(&self, sink: &str) -> String {
        let mut s = format!(
            "gatewatch redrive {sink} from {}: {} dead letters, {} redriven before, {} sent: {} delivered, {} dead-lettered again",
            self.file.display(),
            self.records,
            self.settled,
            self.sent,
            self.delivered,
            self.failed_again
        );
        if self.unfinished > 0 {
            s += &format!(", {} not delivered in time (still pending; run redrive again)", self.unfinished);
        }
        if self.unreadable > 0 {
            s += &format!("; {} lines could not be read back", self.unreadable);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::deadletter::DeadLetter;

    fn alert(id: &str) -> Alert {
        let mut a = crate::actions::sink::tests_support::sample();
        a.id = id.into();
        a
    }

    #[test]
    fn pending_is_what_was_dead_lettered_and_not_redriven_since() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.jsonl");
        let dl = DeadLetter::open(&path).unwrap();
        dl.write("webhook:a", "expired", &Notification::firing(alert("one"))).unwrap();
        dl.write("webhook:a", "expired", &Notification::firing(alert("two"))).unwrap();
        dl.write("webhook:b", "expired", &Notification::firing(alert("other-sink"))).unwrap();
        let mut resolved = Notification::firing(alert("one"));
        resolved.status = Status::Resolved;
        dl.write("webhook:a", "rejected: HTTP 400", &resolved).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"sink\":\"webhook:a\",\"redriven\":\"two\",\"result\":\"delivered\"}\nnot json\n")
            .unwrap();
        let (todo, report) = pending(&path, "webhook:a").unwrap();
        let keys: Vec<&str> = todo.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["one", "one:resolved"]);
        assert_eq!((report.records, report.settled, report.unreadable), (3, 1, 1));
        // Dead-lettered again after the redrive: pending again.
        dl.write("webhook:a", "expired", &Notification::firing(alert("two"))).unwrap();
        let (todo, report) = pending(&path, "webhook:a").unwrap();
        assert_eq!(todo.len(), 3);
        assert_eq!(report.settled, 0);
    }
}

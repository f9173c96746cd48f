//! A sink that appends each notification to a local file as one JSON line
//! (`{"status":"firing","count":1,"alert":{...}}`), for a log shipper (Filebeat, Vector,
//! Fluent Bit) to pick up. `gatewatch demo` delivers to one, so a new user sees the whole
//! delivery path (queue, attempts, timeline) without a receiver.
//!
//! ```toml
//! [actions.file.audit]
//! path = "/var/lib/gatewatch/alerts.jsonl"   # relative: beside gatewatch.toml
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

use super::SinkKind;
use crate::actions::config::Parser;
use crate::actions::lifecycle::{Notification, Status};
use crate::actions::sink::{SendFuture, Sink, SinkError};

/// `[actions.file.NAME]`, parsed.
#[derive(Clone, Debug)]
pub struct FileConfig {
    /// The JSON-lines file notifications are appended to (created with its folder).
    pub path: PathBuf,
}

/// `[actions.file.NAME]` as written (delivery fields apart).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// Where to append; a relative path is taken from the config file's folder.
    path: PathBuf,
}

/// Parses `[actions.file.NAME]` (its delivery fields already taken out).
pub(crate) fn parse(p: &mut Parser<'_>, field: &str, v: &toml::Value) -> Option<SinkKind> {
    let raw: RawFile = p.de(field, v)?;
    if raw.path.as_os_str().is_empty() {
        p.err(format!("{field}.path"), "must not be empty");
        return None;
    }
    Some(SinkKind::File(FileConfig { path: p.path(raw.path) }))
}

/// Appends each notification to a file as one JSON line.
pub struct FileSink {
    path: PathBuf,
    out: Mutex<std::fs::File>,
}

impl FileSink {
    /// Opens `path` for appending, creating it and its folder.
    pub fn open(path: &Path) -> std::io::Result<FileSink> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(FileSink { path: path.to_path_buf(), out: Mutex::new(f) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Sink for FileSink {
    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            let status = match n.status {
                Status::Firing => "firing",
                Status::Resolved => "resolved",
            };
            let mut line =
                serde_json::to_vec(&serde_json::json!({ "status": status, "count": n.count, "alert": &n.alert }))
                    .map_err(|e| SinkError::permanent(e.to_string()))?;
            line.push(b'\n');
            let mut f = self.out.lock().map_err(|_| SinkError::retryable("file sink lock poisoned"))?;
            f.write_all(&line).map_err(|e| SinkError::retryable(format!("cannot write {}: {e}", self.path.display())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Alert, ClientIdSource, Entity, EntityKind, Severity};

    #[tokio::test]
    async fn each_notification_is_one_json_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.jsonl");
        let sink = FileSink::open(&path).unwrap();
        let entity = Entity::new(EntityKind::Token, "34b884ffafcb29fd");
        let alert = Alert {
            id: Alert::make_id("r", &entity, 0),
            detector: "token_reuse".into(),
            rule: "r".into(),
            severity: Severity::High,
            entity,
            client_id: None,
            client_id_source: ClientIdSource::Claimed,
            token_fingerprint: None,
            window_start: 0,
            window_end: 1,
            summary: "token used from 7 networks".into(),
            evidence: Default::default(),
            actions: vec![],
        };
        sink.send(&Notification::firing(alert.clone())).await.unwrap();
        sink.send(&Notification::firing(alert)).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["status"], "firing");
        assert_eq!(lines[0]["alert"]["detector"], "token_reuse");
    }
}

//! A sink that appends each notification to a local file as one JSON line
//! (`{"status":"firing","count":1,"alert":{...}}`): what `gatewatch demo` delivers to, so a
//! new user sees the whole delivery path (queue, attempts, timeline) without a receiver.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::lifecycle::{Notification, Status};
use super::sink::{SendFuture, Sink, SinkError};

pub struct FileSink {
    path: PathBuf,
    out: Mutex<std::fs::File>,
}

impl FileSink {
    /// Opens `path` for appending, creating it.
    pub fn open(path: &Path) -> std::io::Result<FileSink> {
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

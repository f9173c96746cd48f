//! The dead-letter file: JSON lines of what could not be delivered, each with the sink and
//! the reason, so nothing is lost silently and an operator can replay it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use super::lifecycle::Notification;

pub struct DeadLetter {
    path: PathBuf,
    /// `None` until the first write when opened [`DeadLetter::lazy`].
    file: Mutex<Option<File>>,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

impl DeadLetter {
    /// Opens (creating, appending) the file, so a path that cannot be written is an error
    /// at start.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = open_append(path)?;
        Ok(DeadLetter { path: path.to_path_buf(), file: Mutex::new(Some(file)) })
    }

    /// A dead-letter file created only when something is written to it: for a dispatcher
    /// with nothing to dead-letter in normal operation (only sinks delivered inside the
    /// handoff), which must not leave files beside a read-only config.
    pub fn lazy(path: &Path) -> Self {
        DeadLetter { path: path.to_path_buf(), file: Mutex::new(None) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and flushes it to the OS: `{"ts", "sink", "reason", "status",
    /// "count", "alert"}`. `reason` must not carry secrets (sink errors never do).
    pub fn write(&self, sink: &str, reason: &str, n: &Notification) -> std::io::Result<()> {
        let rec = json!({
            "ts": crate::event::format_ts(chrono::Utc::now().timestamp_millis()),
            "sink": sink,
            "reason": reason,
            "status": n.status.as_str(),
            "count": n.count,
            "alert": n.alert,
        });
        let mut line = serde_json::to_vec(&rec).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = self.file.lock().map_err(|_| std::io::Error::other("dead-letter lock poisoned"))?;
        if f.is_none() {
            *f = Some(open_append(&self.path)?);
        }
        let f = f.as_mut().expect("opened above");
        f.write_all(&line)?;
        f.flush()
    }
}

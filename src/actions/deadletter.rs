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
    file: Mutex<File>,
}

impl DeadLetter {
    /// Opens (creating, appending) the file.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(DeadLetter { path: path.to_path_buf(), file: Mutex::new(file) })
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
        f.write_all(&line)?;
        f.flush()
    }
}

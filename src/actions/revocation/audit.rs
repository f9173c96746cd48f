//! The append-only audit log: one JSON line per decision (including those dry-run, an
//! allow-list or a cap prevented) and per call to a revocation target. Read back at start
//! so caps and active revocations survive a restart.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct AuditLog {
    path: PathBuf,
    /// The file and its length after the last complete record.
    file: Mutex<(File, u64)>,
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(AuditLog { path: path.to_path_buf(), file: Mutex::new((file, len)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and syncs it to disk: an audit record that can vanish in a crash
    /// after the revocation went out would defeat the point. On an error (a full disk) the
    /// record does not count, and a part of it that reached the file is cut off again where
    /// the file allows it, so the next record starts on a line of its own.
    pub fn append(&self, rec: &serde_json::Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(rec).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut guard = self.file.lock().map_err(|_| std::io::Error::other("audit log lock poisoned"))?;
        let (f, len) = &mut *guard;
        match f.write_all(&line).and_then(|_| f.sync_data()) {
            Ok(()) => {
                *len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = f.set_len(*len);
                Err(e)
            }
        }
    }

    /// Every record of an existing log; unreadable lines are skipped (and counted).
    pub fn read_all(path: &Path) -> std::io::Result<(Vec<serde_json::Value>, usize)> {
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let mut bad = 0;
        for line in BufReader::new(f).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(v) => out.push(v),
                Err(_) => bad += 1,
            }
        }
        Ok((out, bad))
    }
}

//! The append-only audit log: one JSON line per decision (including those dry-run, an
//! allow-list or a cap prevented) and per call to a revocation target. Decision lines carry
//! a sequence number (`seq`). A start reads only the lines that follow the state snapshot
//! (see [`super::state`]), so the log can be rotated and refusals are never read back.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::state::{file_id, AuditMark};

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

    /// Where the log stands: its length after the last complete record, and its identity.
    pub fn mark(&self) -> AuditMark {
        let Ok(g) = self.file.lock() else { return AuditMark::default() };
        AuditMark { offset: g.1, file: g.0.metadata().ok().as_ref().and_then(file_id) }
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

    /// Calls `each` with every record of the log that follows `after`: from that offset when
    /// the log is still the file it was then (same identity, at least as long, a line ending
    /// just before), else from its start (rotated, truncated, or no mark). Records stream
    /// through; none is kept. Returns (records read, unreadable lines skipped).
    pub fn read_after(
        path: &Path,
        after: Option<AuditMark>,
        mut each: impl FnMut(serde_json::Value),
    ) -> std::io::Result<(usize, usize)> {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(e),
        };
        let meta = f.metadata()?;
        let start = match after {
            Some(m) if m.offset > 0 && m.file.is_some() && m.file == file_id(&meta) && meta.len() >= m.offset => {
                let mut last = [0u8; 1];
                f.seek(SeekFrom::Start(m.offset - 1))?;
                f.read_exact(&mut last)?;
                if last[0] == b'\n' {
                    m.offset
                } else {
                    0
                }
            }
            _ => 0,
        };
        f.seek(SeekFrom::Start(start))?;
        let (mut read, mut bad) = (0, 0);
        for line in BufReader::new(f).split(b'\n') {
            let line = line?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice(&line) {
                Ok(v) => {
                    read += 1;
                    each(v);
                }
                Err(_) => bad += 1,
            }
        }
        Ok((read, bad))
    }
}

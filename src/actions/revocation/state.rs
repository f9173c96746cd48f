//! The revoker's state in a file of its own, beside the audit log: the ledgers (caps,
//! active revocations, dry-run included) and the deny-list entries with their expiry.
//!
//! The audit log is the record of every decision; this snapshot is what a start needs.
//! It is written whole to a temporary file, synced, and renamed over the last one, so a
//! reader sees the old snapshot or the new one, never a mix. It is written after every
//! decision that changes the state (a revocation, a dry-run one) and, after refusals, once
//! enough audit lines have piled up behind it; refusals themselves are never in it.
//!
//! A start loads the snapshot, then the audit lines that follow it: those after the
//! position it records (when the log is still the same file), of a decision with a higher
//! sequence number. A rotated or truncated log is read from its start, and still only the
//! decisions the snapshot does not hold count. So rotating the audit log loses nothing, and
//! a crash between an audit line and its snapshot loses nothing either.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::denylist::DenyEntry;
use super::policy::PolicyState;
use crate::event::Millis;

/// Bumped when the layout changes in a way an older reader cannot take.
pub const VERSION: u32 = 1;

/// The snapshot file for an audit log: `revocations.audit.jsonl` → `revocations.audit.state.json`.
pub fn path_for(audit_log: &Path) -> PathBuf {
    audit_log.with_extension("state.json")
}

/// Where the audit log stood when a snapshot was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditMark {
    /// Length of the log then: the lines after it follow the snapshot.
    pub offset: u64,
    /// The log file's identity (device, inode), to tell a rotated log from the same one.
    pub file: Option<(u64, u64)>,
}

/// One deny-list entry, times in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedEntry {
    pub fingerprint: Option<String>,
    pub credential_id: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    pub client_id: Option<String>,
    #[serde(default)]
    pub claimed_client_id: Option<String>,
    pub reason: String,
    pub alert_id: String,
    pub revoked_at: Millis,
    pub expires_at: Option<Millis>,
}

impl From<&DenyEntry> for SavedEntry {
    fn from(e: &DenyEntry) -> Self {
        SavedEntry {
            fingerprint: e.fingerprint.clone(),
            credential_id: e.credential_id.clone(),
            address: e.address.clone(),
            client_id: e.client_id.clone(),
            claimed_client_id: e.claimed_client_id.clone(),
            reason: e.reason.clone(),
            alert_id: e.alert_id.clone(),
            revoked_at: e.revoked_at,
            expires_at: e.expires_at,
        }
    }
}

impl From<SavedEntry> for DenyEntry {
    fn from(e: SavedEntry) -> Self {
        DenyEntry {
            fingerprint: e.fingerprint,
            credential_id: e.credential_id,
            address: e.address,
            client_id: e.client_id,
            claimed_client_id: e.claimed_client_id,
            reason: e.reason,
            alert_id: e.alert_id,
            revoked_at: e.revoked_at,
            expires_at: e.expires_at,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    /// Sequence number of the last decision this snapshot holds (`seq` in the audit log).
    pub seq: u64,
    pub audit: AuditMark,
    pub written_at: Millis,
    pub policy: PolicyState,
    pub deny: Vec<SavedEntry>,
}

/// Reads the snapshot; `None` when there is none yet. One that cannot be read is an error,
/// not an empty state: starting empty would forget revocations and reset the caps.
pub fn load(path: &Path) -> std::io::Result<Option<Snapshot>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let s: Snapshot = serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not a state snapshot: {e}")))?;
    if s.version != VERSION {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("state snapshot version {} (this gatewatch reads {VERSION})", s.version),
        ));
    }
    Ok(Some(s))
}

/// Writes the snapshot atomically: a temporary file beside it, synced, renamed over it, and
/// the directory synced so the rename survives a crash.
pub fn write(path: &Path, s: &Snapshot) -> std::io::Result<()> {
    let body = serde_json::to_vec(s).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// A file's identity, where the platform has one.
pub fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_sits_beside_the_audit_log() {
        assert_eq!(
            path_for(Path::new("/var/lib/gatewatch/revocations.audit.jsonl")),
            Path::new("/var/lib/gatewatch/revocations.audit.state.json")
        );
        assert_eq!(path_for(Path::new("audit")), Path::new("audit.state.json"));
    }

    #[test]
    fn write_replaces_whole_and_load_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.state.json");
        assert_eq!(load(&p).unwrap(), None);
        let mut s = Snapshot {
            version: VERSION,
            seq: 7,
            audit: AuditMark { offset: 10, file: Some((1, 2)) },
            written_at: 5,
            policy: PolicyState::default(),
            deny: vec![],
        };
        write(&p, &s).unwrap();
        s.seq = 8;
        write(&p, &s).unwrap();
        assert_eq!(load(&p).unwrap(), Some(s));
        assert!(!dir.path().join("a.state.json.tmp").exists());
        std::fs::write(&p, b"{\"version\":1,").unwrap();
        assert_eq!(load(&p).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    }
}

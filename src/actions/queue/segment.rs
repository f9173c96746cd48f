//! The on-disk half of a sink's durable queue: an append-only log split into segment files.
//!
//! A record is `len: u32 LE`, `crc32: u32 LE` (of the payload), then `len` bytes of payload:
//! `kind: u8`, `seq: u64 LE`, and for a put `enqueued_ms: i64 LE` and the body. A put adds a
//! notification; a done removes the put with the same `seq`. A done is always written after
//! its put, so it sits in the put's segment or a later one: the oldest segment can be deleted
//! once every put in it is done, and only the oldest (a later segment's dones may cancel puts
//! still in an earlier one). A sparse oldest segment has its live puts written again at the
//! head (same `seq`) and is then deleted, so disk use follows what is pending.
//!
//! On open, a record cut short or failing its checksum at the end of the newest segment is a
//! write torn by a crash: the file is truncated there. The same inside an older segment is
//! corruption: the rest of that segment is skipped and counted. Either way nothing panics.
//! A lock on `lock` in the directory keeps a second process from writing the same queue.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HEADER: usize = 8;
const KIND_PUT: u8 = 1;
const KIND_DONE: u8 = 2;
/// `kind` + `seq`.
const PAYLOAD_MIN: usize = 9;
/// A body larger than this is refused (and a length above it on disk is corruption).
pub const MAX_BODY: usize = 16 << 20;

/// When a put reaches the disk, not only the OS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Before `push` returns: an alert whose input offset was committed survives a power cut.
    Always,
    /// At most this long after the write (a process crash loses nothing; a power cut may lose
    /// this much).
    Every(Duration),
    /// When the OS decides (a process crash loses nothing).
    Never,
}

/// Where a put is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
    /// Record length, header included.
    pub len: u32,
}

/// A put read back on open, not yet done.
pub struct RecoveredPut {
    pub seq: u64,
    pub enqueued_ms: i64,
    pub body: Vec<u8>,
    pub at: Location,
}

/// What open found.
#[derive(Default)]
pub struct Recovery {
    /// Pending puts, by `seq`.
    pub puts: Vec<RecoveredPut>,
    /// Bytes cut from the end of the newest segment (a write torn by a crash).
    pub torn_bytes: u64,
    /// Records skipped as corrupt in older segments.
    pub corrupt_records: u64,
}

struct Segment {
    id: u64,
    file: File,
    len: u64,
    /// Puts in this segment not yet done.
    live: u64,
    live_bytes: u64,
}

pub struct SegmentLog {
    dir: PathBuf,
    /// Oldest first; the last one takes appends.
    segments: VecDeque<Segment>,
    segment_bytes: u64,
    fsync: Fsync,
    last_sync: Instant,
    unsynced: bool,
    _lock: File,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn encode(kind: u8, seq: u64, enqueued_ms: Option<i64>, body: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(kind);
    out.extend_from_slice(&seq.to_le_bytes());
    if let Some(ms) = enqueued_ms {
        out.extend_from_slice(&ms.to_le_bytes());
        out.extend_from_slice(body);
    }
    let payload_len = (out.len() - start - HEADER) as u32;
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// One record parsed from `buf` at its start: `(kind, seq, enqueued_ms, body, record length)`,
/// or `None` when it is cut short or fails its checksum.
fn decode(buf: &[u8]) -> Option<(u8, u64, i64, &[u8], usize)> {
    if buf.len() < HEADER {
        return None;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().ok()?);
    if !(PAYLOAD_MIN..=MAX_BODY + PAYLOAD_MIN + 8).contains(&len) || buf.len() < HEADER + len {
        return None;
    }
    let payload = &buf[HEADER..HEADER + len];
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let kind = payload[0];
    let seq = u64::from_le_bytes(payload[1..9].try_into().ok()?);
    match kind {
        KIND_PUT if len >= PAYLOAD_MIN + 8 => {
            let ms = i64::from_le_bytes(payload[9..17].try_into().ok()?);
            Some((kind, seq, ms, &payload[17..], HEADER + len))
        }
        KIND_DONE if len == PAYLOAD_MIN => Some((kind, seq, 0, &[], HEADER + len)),
        _ => None,
    }
}

impl SegmentLog {
    /// Opens (creating) the log in `dir` and reads back what is pending.
    pub fn open(dir: &Path, segment_bytes: u64, fsync: Fsync) -> io::Result<(SegmentLog, Recovery)> {
        std::fs::create_dir_all(dir)?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::other(format!(
                    "queue directory {} is in use by another gatewatch process",
                    dir.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let mut ids: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse::<u64>().ok())
            .collect();
        ids.sort_unstable();
        let mut recovery = Recovery::default();
        // seq -> (segment index, enqueued, body, location)
        let mut pending: BTreeMap<u64, RecoveredPut> = BTreeMap::new();
        let mut segments = VecDeque::new();
        for (i, &id) in ids.iter().enumerate() {
            let path = segment_path(dir, id);
            let data = std::fs::read(&path)?;
            let newest = i + 1 == ids.len();
            let mut off = 0usize;
            while off < data.len() {
                match decode(&data[off..]) {
                    Some((kind, seq, ms, body, n)) => {
                        if kind == KIND_PUT {
                            let at = Location { segment: id, offset: off as u64, len: n as u32 };
                            pending.insert(seq, RecoveredPut { seq, enqueued_ms: ms, body: body.to_vec(), at });
                        } else {
                            pending.remove(&seq);
                        }
                        off += n;
                    }
                    None if newest => {
                        recovery.torn_bytes = (data.len() - off) as u64;
                        break;
                    }
                    None => {
                        recovery.corrupt_records += 1;
                        break;
                    }
                }
            }
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            if newest && (off as u64) < data.len() as u64 {
                file.set_len(off as u64)?;
                file.sync_all()?;
            }
            let len = if newest { off as u64 } else { data.len() as u64 };
            segments.push_back(Segment { id, file, len, live: 0, live_bytes: 0 });
        }
        for p in pending.values() {
            if let Some(s) = segments.iter_mut().find(|s| s.id == p.at.segment) {
                s.live += 1;
                s.live_bytes += p.at.len as u64;
            }
        }
        recovery.puts = pending.into_values().collect();
        let mut log = SegmentLog {
            dir: dir.to_path_buf(),
            segments,
            segment_bytes: segment_bytes.max(4096),
            fsync,
            last_sync: Instant::now(),
            unsynced: false,
            _lock: lock,
        };
        if log.segments.is_empty() {
            log.rotate()?;
        } else {
            // Append after what was read; a clean start keeps the file it ended with.
            let active = log.segments.back_mut().expect("non-empty");
            let mut f = &active.file;
            use std::io::Seek;
            f.seek(io::SeekFrom::Start(active.len))?;
        }
        log.reclaim()?;
        Ok((log, recovery))
    }

    fn rotate(&mut self) -> io::Result<()> {
        let id = self.segments.back().map_or(1, |s| s.id + 1);
        let file = OpenOptions::new().create_new(true).read(true).write(true).open(segment_path(&self.dir, id))?;
        if self.fsync != Fsync::Never {
            // The new file's name must survive a power cut too.
            File::open(&self.dir)?.sync_all()?;
        }
        self.segments.push_back(Segment { id, file, len: 0, live: 0, live_bytes: 0 });
        Ok(())
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<(u64, u64)> {
        if self.segments.back().is_some_and(|s| s.len > 0 && s.len + buf.len() as u64 > self.segment_bytes) {
            self.sync()?;
            self.rotate()?;
        }
        let active = self.segments.back_mut().expect("a segment is always open");
        (&active.file).write_all(buf)?;
        let at = (active.id, active.len);
        active.len += buf.len() as u64;
        self.unsynced = true;
        Ok(at)
    }

    /// Appends a put; returns where it is. Synced per the fsync policy.
    pub fn put(&mut self, seq: u64, enqueued_ms: i64, body: &[u8]) -> io::Result<Location> {
        if body.len() > MAX_BODY {
            return Err(io::Error::other(format!(
                "notification of {} bytes is over the {MAX_BODY}-byte limit",
                body.len()
            )));
        }
        let mut buf = Vec::with_capacity(HEADER + PAYLOAD_MIN + 8 + body.len());
        encode(KIND_PUT, seq, Some(enqueued_ms), body, &mut buf);
        let (segment, offset) = self.append(&buf)?;
        let s = self.segments.back_mut().expect("active");
        s.live += 1;
        s.live_bytes += buf.len() as u64;
        match self.fsync {
            Fsync::Always => self.sync()?,
            Fsync::Every(d) if self.last_sync.elapsed() >= d => self.sync()?,
            _ => {}
        }
        Ok(Location { segment, offset, len: buf.len() as u32 })
    }

    /// Appends dones for these puts and deletes the oldest segments left with nothing pending.
    /// Not synced: a done lost in a crash means a notification sent twice, with the same
    /// idempotency key, never one lost.
    pub fn done(&mut self, puts: &[(u64, Location)]) -> io::Result<()> {
        if puts.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(puts.len() * (HEADER + PAYLOAD_MIN));
        for (seq, _) in puts {
            encode(KIND_DONE, *seq, None, &[], &mut buf);
        }
        self.append(&buf)?;
        for (_, at) in puts {
            if let Some(s) = self.segments.iter_mut().find(|s| s.id == at.segment) {
                s.live = s.live.saturating_sub(1);
                s.live_bytes = s.live_bytes.saturating_sub(at.len as u64);
            }
        }
        self.reclaim()
    }

    /// A put was written again at the head ([`SegmentLog::put`] with the same `seq`): the old
    /// record no longer counts as pending. No done is written (it would cancel the copy).
    pub fn done_moved(&mut self, at: Location) -> io::Result<()> {
        if let Some(s) = self.segments.iter_mut().find(|s| s.id == at.segment) {
            s.live = s.live.saturating_sub(1);
            s.live_bytes = s.live_bytes.saturating_sub(at.len as u64);
        }
        self.reclaim()
    }

    /// Deletes the oldest segments with nothing pending (never the one taking appends).
    fn reclaim(&mut self) -> io::Result<()> {
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.live == 0) {
            let s = self.segments.pop_front().expect("non-empty");
            std::fs::remove_file(segment_path(&self.dir, s.id))?;
        }
        Ok(())
    }

    /// The oldest segment, when less than half of it is still pending and it is not the one
    /// taking appends: its live puts are worth writing again at the head.
    pub fn sparse_oldest(&self) -> Option<u64> {
        let s = self.segments.front()?;
        (self.segments.len() > 1 && s.live > 0 && s.live_bytes * 2 < s.len).then_some(s.id)
    }

    /// Reads a put's body back, checking its checksum.
    pub fn read(&self, at: Location) -> io::Result<Vec<u8>> {
        let s = self
            .segments
            .iter()
            .find(|s| s.id == at.segment)
            .ok_or_else(|| io::Error::other(format!("segment {} is gone", at.segment)))?;
        let mut buf = vec![0u8; at.len as usize];
        s.file.read_exact_at(&mut buf, at.offset)?;
        match decode(&buf) {
            Some((KIND_PUT, _, _, body, _)) => Ok(body.to_vec()),
            _ => Err(io::Error::other(format!("record at {}:{} fails its checksum", at.segment, at.offset))),
        }
    }

    /// Flushes what was written to the disk.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced && self.fsync != Fsync::Never {
            if let Some(s) = self.segments.back() {
                s.file.sync_data()?;
            }
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// For the `Every` policy: syncs when the interval has passed.
    pub fn sync_if_due(&mut self) -> io::Result<()> {
        match self.fsync {
            Fsync::Every(d) if self.unsynced && self.last_sync.elapsed() >= d => self.sync(),
            _ => Ok(()),
        }
    }

    /// Bytes of every segment file.
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.len).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> (SegmentLog, Recovery) {
        SegmentLog::open(dir, 4096, Fsync::Always).unwrap()
    }

    #[test]
    fn puts_survive_reopen_and_dones_remove_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, rec) = open(dir.path());
        assert!(rec.puts.is_empty());
        let a = log.put(1, 10, b"one").unwrap();
        let _b = log.put(2, 20, b"two").unwrap();
        log.done(&[(1, a)]).unwrap();
        assert_eq!(log.read(_b).unwrap(), b"two");
        drop(log);
        let (_log, rec) = open(dir.path());
        assert_eq!(rec.puts.len(), 1);
        assert_eq!((rec.puts[0].seq, rec.puts[0].enqueued_ms, rec.puts[0].body.as_slice()), (2, 20, &b"two"[..]));
    }

    #[test]
    fn a_second_process_cannot_open_the_same_queue() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, _) = open(dir.path());
        let err = SegmentLog::open(dir.path(), 4096, Fsync::Never).err().expect("locked");
        assert!(err.to_string().contains("in use by another gatewatch process"), "{err}");
    }

    #[test]
    fn a_torn_tail_is_cut_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        log.put(1, 1, b"kept").unwrap();
        log.put(2, 2, b"torn").unwrap();
        drop(log);
        let path = segment_path(dir.path(), 1);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let (mut log, rec) = open(dir.path());
        assert_eq!(rec.puts.len(), 1);
        assert_eq!(rec.puts[0].body, b"kept");
        assert!(rec.torn_bytes > 0);
        // Appends continue after the cut and read back.
        let at = log.put(3, 3, b"after").unwrap();
        drop(log);
        let (log, rec) = open(dir.path());
        assert_eq!(rec.puts.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(log.read(at).unwrap(), b"after");
    }

    #[test]
    fn a_flipped_bit_is_not_read_as_a_notification() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        let at = log.put(1, 1, b"payload").unwrap();
        drop(log);
        let path = segment_path(dir.path(), 1);
        let mut data = std::fs::read(&path).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        std::fs::write(&path, &data).unwrap();
        let (log, rec) = open(dir.path());
        assert!(rec.puts.is_empty());
        assert!(log.read(at).is_err());
    }

    #[test]
    fn done_segments_are_deleted_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = open(dir.path());
        let body = vec![b'x'; 1000];
        let mut at = Vec::new();
        for seq in 0..20 {
            at.push((seq, log.put(seq, 0, &body).unwrap()));
        }
        assert!(log.segment_count() >= 5, "{}", log.segment_count());
        // Done for everything but the first put: nothing can go, the first segment pins the rest.
        log.done(&at[1..]).unwrap();
        assert!(log.segment_count() >= 5);
        assert_eq!(log.sparse_oldest(), Some(at[0].1.segment));
        log.done(&at[..1]).unwrap();
        assert_eq!(log.segment_count(), 1);
        drop(log);
        let (_log, rec) = open(dir.path());
        assert!(rec.puts.is_empty());
    }
}

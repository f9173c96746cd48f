//! A sink's durable queue: notifications waiting to be delivered, on disk ([`segment`]) so
//! they outlive a sink outage and a restart, bounded in count and bytes, expired by age.
//!
//! In memory it keeps an index only (where each notification is, its group and counts), so
//! memory follows the number waiting, not their size. Notifications are grouped by (entity,
//! detector): the sink's worker takes a [`Batch`], the whole run of firing notifications at
//! the front of one group, sent as one notification with the sum of their counts. So a
//! backlog that piled up during an outage drains as one notification per group, not hundreds.
//! After a batch is delivered its group cools down for the group window: what arrives for it
//! meanwhile waits and goes out as the next batch (the live grouping of bursts).
//!
//! Order within a group is always the order of arrival; `DrainOrder` only chooses which group
//! goes next. The idempotency key of a batch is the key of its first notification, which does
//! not change while the batch is retried, in this process or after a restart.

pub mod segment;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use self::segment::{Fsync, Location, SegmentLog};
use super::lifecycle::{Notification, Status};
use crate::event::{Alert, ClientIdSource, Millis};

/// Which group's batch goes out next when several wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainOrder {
    /// The group whose first notification is oldest (what happened first is told first).
    #[default]
    OldestFirst,
    /// The group with the newest notification (the current attack is told first).
    NewestFirst,
}

/// Bounds of one sink's queue.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueLimits {
    /// Notifications waiting, at most.
    pub max_items: usize,
    /// Bytes of the waiting notifications' records, at most.
    pub max_bytes: u64,
    /// A notification undelivered this long goes to the dead-letter file.
    pub expire_after: Duration,
    pub order: DrainOrder,
    /// After a batch of a group went out, the group's next batch waits this long.
    pub group_window: Duration,
}

/// Why a notification was not queued.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A bound was reached; the caller dead-letters the notification with this reason.
    #[error("{0}")]
    Full(String),
    /// The disk write failed.
    #[error("queue write failed: {0}")]
    Io(#[from] io::Error),
}

/// Notifications taken together for one delivery.
#[derive(Clone, Debug)]
pub struct Batch {
    /// What to send: the latest notification of the run, counting all of them.
    pub notification: Notification,
    /// Their enqueue time, oldest.
    pub oldest_enqueued_ms: i64,
    seqs: Vec<u64>,
    group: u64,
}

impl Batch {
    /// Notifications this batch stands for.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}

/// What the worker should do next.
pub enum Next {
    Send(Box<Batch>),
    /// Nothing to send before this instant (`None`: until something is pushed).
    Wait(Option<Instant>),
}

/// Counters of one queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub items: u64,
    /// Bytes of the waiting notifications' records.
    pub bytes: u64,
    /// Bytes of the segment files on disk.
    pub disk_bytes: u64,
    pub oldest_enqueued_ms: Option<i64>,
}

/// What was found on open.
#[derive(Debug, Default)]
pub struct Reopened {
    /// Notifications still waiting from before.
    pub pending: usize,
    /// Ids of the firing alerts among them (so a replayed input does not queue them twice).
    pub alert_ids: Vec<String>,
    pub torn_bytes: u64,
    /// Records skipped as corrupt or unreadable.
    pub corrupt: u64,
}

struct Entry {
    at: Location,
    enqueued_ms: i64,
    group: u64,
    status: Status,
    count: u64,
    first_window_start: Millis,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum GroupState {
    /// In `ready` when it has entries.
    Ready,
    InFlight,
    Cooling(Instant),
}

struct Group {
    seqs: VecDeque<u64>,
    state: GroupState,
}

struct Inner {
    log: SegmentLog,
    next_seq: u64,
    entries: BTreeMap<u64, Entry>,
    groups: HashMap<u64, Group>,
    /// Groups that may send, keyed by the seq that orders them (front or back).
    ready: BTreeSet<(u64, u64)>,
    cooling: BTreeSet<(Instant, u64)>,
    bytes: u64,
}

/// One sink's durable queue. `push` may be called from any thread; one worker takes batches.
pub struct DurableQueue {
    inner: Mutex<Inner>,
    limits: QueueLimits,
    wake: tokio::sync::Notify,
}

/// The grouping key of a notification: (entity, detector).
fn group_of(a: &Alert) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    a.entity.hash(&mut h);
    a.detector.hash(&mut h);
    h.finish()
}

fn encode(n: &Notification) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "status": n.status.as_str(),
        "count": n.count,
        "first_window_start": n.first_window_start,
        "idempotency_key": n.idempotency_key(),
        "client_id_source": n.alert.client_id_source,
        "alert": n.alert,
    }))
    .expect("a notification serializes")
}

fn decode(body: &[u8]) -> Result<Notification, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let mut alert = Alert::from_json(&v["alert"])?;
    if let Ok(s) = serde_json::from_value::<ClientIdSource>(v["client_id_source"].clone()) {
        alert.client_id_source = s;
    }
    let status = match v["status"].as_str() {
        Some("resolved") => Status::Resolved,
        _ => Status::Firing,
    };
    let count = v["count"].as_u64().unwrap_or(1).max(1);
    let first_window_start = v["first_window_start"].as_i64().unwrap_or(alert.window_start);
    let key = v["idempotency_key"].as_str().map(str::to_string);
    let mut n = Notification { status, alert, count, first_window_start, runbook: None, key: None };
    if key.as_deref() != Some(n.idempotency_key().as_str()) {
        n.key = key;
    }
    Ok(n)
}

impl Inner {
    fn order_key(&self, order: DrainOrder, g: &Group) -> Option<u64> {
        match order {
            DrainOrder::OldestFirst => g.seqs.front().copied(),
            DrainOrder::NewestFirst => g.seqs.back().copied(),
        }
    }

    fn add(&mut self, order: DrainOrder, seq: u64, e: Entry) {
        let gid = e.group;
        self.bytes += e.at.len as u64;
        self.entries.insert(seq, e);
        let g = self.groups.entry(gid).or_insert(Group { seqs: VecDeque::new(), state: GroupState::Ready });
        let before = match order {
            DrainOrder::OldestFirst => g.seqs.front().copied(),
            DrainOrder::NewestFirst => g.seqs.back().copied(),
        };
        g.seqs.push_back(seq);
        if g.state == GroupState::Ready {
            if let Some(b) = before {
                self.ready.remove(&(b, gid));
            }
            let g = &self.groups[&gid];
            if let Some(k) = self.order_key(order, g) {
                self.ready.insert((k, gid));
            }
        }
    }

    /// Removes entries (delivered, dead-lettered or expired) and writes their dones.
    fn remove(&mut self, order: DrainOrder, seqs: &[u64]) -> io::Result<Vec<(u64, Entry)>> {
        let mut gone = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if let Some(e) = self.entries.remove(&seq) {
                self.bytes -= e.at.len as u64;
                let gid = e.group;
                if let Some(g) = self.groups.get_mut(&gid) {
                    let old_key = match order {
                        DrainOrder::OldestFirst => g.seqs.front().copied(),
                        DrainOrder::NewestFirst => g.seqs.back().copied(),
                    };
                    // A batch and what expires are the front of their group: O(1) each.
                    if g.seqs.front() == Some(&seq) {
                        g.seqs.pop_front();
                    } else {
                        g.seqs.retain(|s| *s != seq);
                    }
                    if g.state == GroupState::Ready {
                        if let Some(k) = old_key {
                            self.ready.remove(&(k, gid));
                        }
                        let g = &self.groups[&gid];
                        if let Some(k) = self.order_key(order, g) {
                            self.ready.insert((k, gid));
                        }
                    }
                }
                gone.push((seq, e));
            }
        }
        let dones: Vec<(u64, Location)> = gone.iter().map(|(s, e)| (*s, e.at)).collect();
        self.log.done(&dones)?;
        Ok(gone)
    }

    fn forget_group_if_idle(&mut self, gid: u64) {
        if self.groups.get(&gid).is_some_and(|g| g.seqs.is_empty() && g.state == GroupState::Ready) {
            self.groups.remove(&gid);
        }
    }

    fn set_ready(&mut self, order: DrainOrder, gid: u64) {
        if let Some(g) = self.groups.get_mut(&gid) {
            g.state = GroupState::Ready;
            let g = &self.groups[&gid];
            if let Some(k) = self.order_key(order, g) {
                self.ready.insert((k, gid));
            }
        }
        self.forget_group_if_idle(gid);
    }

    /// Writes the live puts of a sparse oldest segment again at the head, so it can go.
    fn compact(&mut self) -> io::Result<()> {
        let Some(seg) = self.log.sparse_oldest() else { return Ok(()) };
        let moving: Vec<u64> = self.entries.iter().filter(|(_, e)| e.at.segment == seg).map(|(s, _)| *s).collect();
        for seq in moving {
            let (at, enq) = {
                let e = &self.entries[&seq];
                (e.at, e.enqueued_ms)
            };
            let body = self.log.read(at)?;
            let new_at = self.log.put(seq, enq, &body)?;
            // The old record stays until its segment goes; a done for it must not be written
            // (it would cancel the copy on reopen), so only the counts move.
            self.log.done_moved(at)?;
            let e = self.entries.get_mut(&seq).expect("present");
            self.bytes = self.bytes - e.at.len as u64 + new_at.len as u64;
            e.at = new_at;
        }
        Ok(())
    }
}

impl DurableQueue {
    /// Opens (creating) the queue in `dir`; what waits from before is pending again.
    pub fn open(
        dir: &Path,
        limits: QueueLimits,
        segment_bytes: u64,
        fsync: Fsync,
    ) -> io::Result<(DurableQueue, Reopened)> {
        let (log, rec) = SegmentLog::open(dir, segment_bytes, fsync)?;
        let mut inner = Inner {
            log,
            next_seq: rec.puts.last().map_or(1, |p| p.seq + 1),
            entries: BTreeMap::new(),
            groups: HashMap::new(),
            ready: BTreeSet::new(),
            cooling: BTreeSet::new(),
            bytes: 0,
        };
        let mut reopened = Reopened { torn_bytes: rec.torn_bytes, corrupt: rec.corrupt_records, ..Default::default() };
        let mut unreadable = Vec::new();
        for p in rec.puts {
            match decode(&p.body) {
                Ok(n) => {
                    if n.status == Status::Firing {
                        reopened.alert_ids.push(n.alert.id.clone());
                    }
                    let e = Entry {
                        at: p.at,
                        enqueued_ms: p.enqueued_ms,
                        group: group_of(&n.alert),
                        status: n.status,
                        count: n.count,
                        first_window_start: n.first_window_start,
                    };
                    inner.add(limits.order, p.seq, e);
                }
                Err(_) => unreadable.push((p.seq, p.at)),
            }
        }
        if !unreadable.is_empty() {
            // A record that passed its checksum but is not a notification of this version:
            // it can never be sent, so it is dropped (and counted) rather than kept forever.
            reopened.corrupt += unreadable.len() as u64;
            inner.log.done(&unreadable)?;
        }
        reopened.pending = inner.entries.len();
        Ok((DurableQueue { inner: Mutex::new(inner), limits, wake: tokio::sync::Notify::new() }, reopened))
    }

    pub fn limits(&self) -> &QueueLimits {
        &self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a notification durably (synced per the fsync policy) and wakes the worker.
    pub fn push(&self, n: &Notification, now_ms: i64) -> Result<(), PushError> {
        let body = encode(n);
        let mut st = self.lock();
        if st.entries.len() >= self.limits.max_items {
            return Err(PushError::Full(format!("queue full ({} waiting)", st.entries.len())));
        }
        let rec_len = body.len() as u64 + 25;
        if st.bytes + rec_len > self.limits.max_bytes {
            return Err(PushError::Full(format!(
                "queue full ({} bytes waiting, limit {})",
                st.bytes, self.limits.max_bytes
            )));
        }
        let seq = st.next_seq;
        let at = st.log.put(seq, now_ms, &body)?;
        st.next_seq += 1;
        let e = Entry {
            at,
            enqueued_ms: now_ms,
            group: group_of(&n.alert),
            status: n.status,
            count: n.count,
            first_window_start: n.first_window_start,
        };
        st.add(self.limits.order, seq, e);
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    /// Completes when something was pushed since the last call (or before the first).
    pub async fn pushed(&self) {
        self.wake.notified().await
    }

    /// The next batch to send, or how long to wait for one. `now` moves cooled groups back.
    pub fn next(&self, now: Instant) -> io::Result<Next> {
        let order = self.limits.order;
        let mut st = self.lock();
        while let Some(&(until, gid)) = st.cooling.first() {
            if until > now {
                break;
            }
            st.cooling.pop_first();
            st.set_ready(order, gid);
        }
        let pick = match order {
            DrainOrder::OldestFirst => st.ready.first().copied(),
            DrainOrder::NewestFirst => st.ready.last().copied(),
        };
        let Some((key, gid)) = pick else {
            return Ok(Next::Wait(st.cooling.first().map(|(t, _)| *t)));
        };
        st.ready.remove(&(key, gid));
        let st = &mut *st;
        let g = st.groups.get_mut(&gid).expect("a ready group exists");
        g.state = GroupState::InFlight;
        let mut seqs = Vec::new();
        for &seq in &g.seqs {
            let status = st.entries[&seq].status;
            if status == Status::Resolved {
                if seqs.is_empty() {
                    seqs.push(seq);
                }
                break;
            }
            seqs.push(seq);
        }
        let first = &st.entries[&seqs[0]];
        let first_at = first.at;
        let last_at = st.entries[seqs.last().expect("non-empty")].at;
        let count: u64 = seqs.iter().map(|s| st.entries[s].count).sum();
        let first_window_start = seqs.iter().map(|s| st.entries[s].first_window_start).min().unwrap_or(0);
        let oldest_enqueued_ms = seqs.iter().map(|s| st.entries[s].enqueued_ms).min().unwrap_or(0);
        let read = |at| st.log.read(at).and_then(|b| decode(&b).map_err(io::Error::other));
        let head = read(first_at)?;
        let mut n = if seqs.len() == 1 { head.clone() } else { read(last_at)? };
        n.count = count;
        n.first_window_start = first_window_start;
        n.key = Some(head.idempotency_key());
        Ok(Next::Send(Box::new(Batch { notification: n, oldest_enqueued_ms, seqs, group: gid })))
    }

    /// The batch was delivered (or dead-lettered): forget it; its group cools down.
    pub fn done(&self, b: &Batch, now: Instant) -> io::Result<()> {
        let order = self.limits.order;
        let mut st = self.lock();
        st.remove(order, &b.seqs)?;
        if let Some(g) = st.groups.get_mut(&b.group) {
            if self.limits.group_window.is_zero() {
                st.set_ready(order, b.group);
            } else {
                let until = now + self.limits.group_window;
                g.state = GroupState::Cooling(until);
                st.cooling.insert((until, b.group));
            }
        }
        st.compact()
    }

    /// The batch was not delivered and stays queued (shutdown while retrying).
    pub fn release(&self, b: &Batch) {
        let order = self.limits.order;
        let mut st = self.lock();
        st.set_ready(order, b.group);
    }

    /// Ends every cool-down now (shutdown sends what waits without the group window).
    pub fn end_cooldowns(&self) {
        let order = self.limits.order;
        let mut st = self.lock();
        while let Some((_, gid)) = st.cooling.pop_first() {
            st.set_ready(order, gid);
        }
    }

    /// Takes out what has waited past `expire_after` (not the batch in flight): the caller
    /// dead-letters them.
    pub fn expire(&self, now_ms: i64) -> io::Result<Vec<Notification>> {
        let order = self.limits.order;
        let cutoff = now_ms - self.limits.expire_after.as_millis() as i64;
        let mut st = self.lock();
        // Seqs follow enqueue time, so the expired are at the front.
        let old: Vec<u64> = st
            .entries
            .iter()
            .take_while(|(_, e)| e.enqueued_ms <= cutoff)
            .filter(|(_, e)| st.groups.get(&e.group).is_some_and(|g| g.state != GroupState::InFlight))
            .map(|(s, _)| *s)
            .collect();
        if old.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(old.len());
        for seq in &old {
            let at = st.entries[seq].at;
            if let Ok(n) = st.log.read(at).and_then(|b| decode(&b).map_err(io::Error::other)) {
                out.push(n);
            }
        }
        let gone = st.remove(order, &old)?;
        for (_, e) in gone {
            st.forget_group_if_idle(e.group);
        }
        Ok(out)
    }

    /// Takes a batch out for good (expired or rejected while in flight).
    pub fn drop_batch(&self, b: &Batch) -> io::Result<()> {
        let order = self.limits.order;
        let mut st = self.lock();
        st.remove(order, &b.seqs)?;
        st.set_ready(order, b.group);
        Ok(())
    }

    /// Each notification of a batch as it was queued (to dead-letter them one by one).
    pub fn members(&self, b: &Batch) -> io::Result<Vec<Notification>> {
        let st = self.lock();
        b.seqs
            .iter()
            .filter_map(|s| st.entries.get(s))
            .map(|e| st.log.read(e.at).and_then(|body| decode(&body).map_err(io::Error::other)))
            .collect()
    }

    /// Flushes every write to disk (shutdown).
    pub fn sync(&self) -> io::Result<()> {
        self.lock().log.sync()
    }

    /// Flushes writes to disk when the `Every` interval has passed.
    pub fn sync_if_due(&self) -> io::Result<()> {
        self.lock().log.sync_if_due()
    }

    pub fn stats(&self) -> QueueStats {
        let st = self.lock();
        QueueStats {
            items: st.entries.len() as u64,
            bytes: st.bytes,
            disk_bytes: st.log.disk_bytes(),
            oldest_enqueued_ms: st.entries.values().next().map(|e| e.enqueued_ms),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Entity, EntityKind, Severity};

    fn alert(entity: &str, i: i64) -> Alert {
        let e = Entity::new(EntityKind::ClientId, entity);
        Alert {
            id: Alert::make_id("r", &e, i),
            detector: "d".into(),
            rule: "r".into(),
            severity: Severity::High,
            entity: e,
            client_id: Some(entity.into()),
            client_id_source: ClientIdSource::Gateway,
            token_fingerprint: None,
            window_start: 1_800_000_000_000 + i * 1000,
            window_end: 1_800_000_060_000 + i * 1000,
            summary: format!("alert {i}"),
            evidence: Default::default(),
            actions: vec![],
        }
    }

    fn limits(order: DrainOrder, window: Duration) -> QueueLimits {
        QueueLimits {
            max_items: 1000,
            max_bytes: 1 << 20,
            expire_after: Duration::from_secs(3600),
            order,
            group_window: window,
        }
    }

    fn open(dir: &Path, l: QueueLimits) -> DurableQueue {
        DurableQueue::open(dir, l, 1 << 16, Fsync::Never).unwrap().0
    }

    fn send(q: &DurableQueue, now: Instant) -> Option<Batch> {
        match q.next(now).unwrap() {
            Next::Send(b) => Some(*b),
            Next::Wait(_) => None,
        }
    }

    #[test]
    fn a_backlog_drains_as_one_notification_per_group() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), limits(DrainOrder::OldestFirst, Duration::ZERO));
        let now = Instant::now();
        for i in 0..100 {
            q.push(&Notification::firing(alert("a", i)), i).unwrap();
            q.push(&Notification::firing(alert("b", i)), i).unwrap();
        }
        let first = send(&q, now).unwrap();
        assert_eq!(first.len(), 100);
        let n = &first.notification;
        assert_eq!((n.alert.entity.id.as_str(), n.count), ("a", 100));
        assert_eq!(n.alert.summary, "alert 99", "the latest alert speaks for the batch");
        assert_eq!(n.idempotency_key(), alert("a", 0).id, "the key is the first alert's");
        assert_eq!(n.first_window_start, alert("a", 0).window_start);
        assert_eq!(n.alert.client_id_source, ClientIdSource::Gateway);
        q.done(&first, now).unwrap();
        let second = send(&q, now).unwrap();
        assert_eq!((second.notification.alert.entity.id.as_str(), second.len()), ("b", 100));
        q.done(&second, now).unwrap();
        assert!(q.is_empty());
        assert!(send(&q, now).is_none());
    }

    #[test]
    fn one_group_of_a_large_backlog_is_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = limits(DrainOrder::OldestFirst, Duration::ZERO);
        l.max_items = 100_000;
        l.max_bytes = 1 << 30;
        let q = DurableQueue::open(dir.path(), l, 8 << 20, Fsync::Never).unwrap().0;
        for i in 0..30_000 {
            q.push(&Notification::firing(alert("flood", i)), i).unwrap();
        }
        let now = Instant::now();
        let b = send(&q, now).unwrap();
        assert_eq!((b.len(), b.notification.count), (30_000, 30_000));
        q.done(&b, now).unwrap();
        assert!(q.is_empty());
    }

    #[test]
    fn newest_first_picks_the_latest_group_and_keeps_order_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), limits(DrainOrder::NewestFirst, Duration::ZERO));
        let now = Instant::now();
        q.push(&Notification::firing(alert("a", 0)), 0).unwrap();
        q.push(&Notification::firing(alert("b", 1)), 1).unwrap();
        let mut resolved = Notification::firing(alert("b", 1));
        resolved.status = Status::Resolved;
        q.push(&Notification::firing(alert("b", 2)), 2).unwrap();
        q.push(&resolved, 3).unwrap();
        // b is newest; inside b, the firing run goes before the resolved one.
        let b1 = send(&q, now).unwrap();
        assert_eq!((b1.notification.alert.entity.id.as_str(), b1.len()), ("b", 2));
        assert_eq!(b1.notification.status, Status::Firing);
        q.done(&b1, now).unwrap();
        let b2 = send(&q, now).unwrap();
        assert_eq!((b2.notification.alert.entity.id.as_str(), b2.notification.status), ("b", Status::Resolved));
        q.done(&b2, now).unwrap();
        assert_eq!(send(&q, now).unwrap().notification.alert.entity.id, "a");
    }

    #[test]
    fn a_group_cools_down_after_a_batch_and_then_sends_the_rest_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(dir.path(), limits(DrainOrder::OldestFirst, Duration::from_secs(60)));
        let t0 = Instant::now();
        q.push(&Notification::firing(alert("a", 0)), 0).unwrap();
        let b = send(&q, t0).unwrap();
        q.done(&b, t0).unwrap();
        for i in 1..5 {
            q.push(&Notification::firing(alert("a", i)), i).unwrap();
        }
        q.push(&Notification::firing(alert("other", 0)), 9).unwrap();
        let o = send(&q, t0).unwrap();
        assert_eq!(o.notification.alert.entity.id, "other", "another group is not held by a's window");
        q.done(&o, t0).unwrap();
        match q.next(t0 + Duration::from_secs(30)).unwrap() {
            Next::Wait(Some(until)) => assert_eq!(until, t0 + Duration::from_secs(60)),
            _ => panic!("a is cooling"),
        }
        let rest = send(&q, t0 + Duration::from_secs(61)).unwrap();
        assert_eq!((rest.notification.count, rest.notification.alert.summary.as_str()), (4, "alert 4"));
    }

    #[test]
    fn what_waits_survives_a_reopen_and_delivered_does_not_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let now = Instant::now();
        {
            let q = open(dir.path(), limits(DrainOrder::OldestFirst, Duration::ZERO));
            for i in 0..3 {
                q.push(&Notification::firing(alert(&format!("c{i}"), i)), i).unwrap();
            }
            let b = send(&q, now).unwrap();
            q.done(&b, now).unwrap();
            // c1 is in flight when the process dies.
            let _in_flight = send(&q, now).unwrap();
        }
        let (q, reopened) =
            DurableQueue::open(dir.path(), limits(DrainOrder::OldestFirst, Duration::ZERO), 1 << 16, Fsync::Never)
                .unwrap();
        assert_eq!(reopened.pending, 2);
        assert_eq!(reopened.alert_ids, vec![alert("c1", 1).id, alert("c2", 2).id]);
        let b = send(&q, now).unwrap();
        assert_eq!(b.notification.alert.entity.id, "c1");
        assert_eq!(b.notification.idempotency_key(), alert("c1", 1).id);
    }

    #[test]
    fn bounds_refuse_with_a_reason_and_expiry_takes_the_old_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = limits(DrainOrder::OldestFirst, Duration::ZERO);
        l.max_items = 2;
        l.expire_after = Duration::from_millis(100);
        let q = open(dir.path(), l);
        q.push(&Notification::firing(alert("a", 0)), 0).unwrap();
        q.push(&Notification::firing(alert("b", 0)), 50).unwrap();
        let e = q.push(&Notification::firing(alert("c", 0)), 60).unwrap_err();
        assert_eq!(e.to_string(), "queue full (2 waiting)");
        let expired = q.expire(120).unwrap();
        assert_eq!(expired.iter().map(|n| n.alert.entity.id.as_str()).collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(q.stats().items, 1);

        let dir = tempfile::tempdir().unwrap();
        let mut l = limits(DrainOrder::OldestFirst, Duration::ZERO);
        l.max_bytes = 2000;
        let q = open(dir.path(), l);
        let mut refused = 0;
        for i in 0..20 {
            if let Err(PushError::Full(m)) = q.push(&Notification::firing(alert("a", i)), i) {
                assert!(m.contains("bytes waiting"), "{m}");
                refused += 1;
            }
        }
        assert!(refused > 0 && q.stats().bytes <= 2000, "{:?}", q.stats());
    }

    #[test]
    fn disk_use_follows_what_waits() {
        let dir = tempfile::tempdir().unwrap();
        let q = DurableQueue::open(dir.path(), limits(DrainOrder::OldestFirst, Duration::ZERO), 8192, Fsync::Never)
            .unwrap()
            .0;
        let now = Instant::now();
        // One notification stays pinned at the front while thousands come and go.
        q.push(&Notification::firing(alert("pinned", 0)), 0).unwrap();
        let pinned = send(&q, now).unwrap();
        for i in 0..2000 {
            q.push(&Notification::firing(alert(&format!("c{i}"), i)), i).unwrap();
            let b = send(&q, now).unwrap();
            q.done(&b, now).unwrap();
        }
        let s = q.stats();
        assert_eq!(s.items, 1);
        assert!(s.disk_bytes < 4 * 8192, "disk {} bytes for one waiting notification", s.disk_bytes);
        q.release(&pinned);
        drop(q);
        let (q, r) =
            DurableQueue::open(dir.path(), limits(DrainOrder::OldestFirst, Duration::ZERO), 8192, Fsync::Never)
                .unwrap();
        assert_eq!(r.pending, 1);
        assert_eq!(send(&q, now).unwrap().notification.alert.entity.id, "pinned");
    }
}

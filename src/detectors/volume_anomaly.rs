//! `volume_anomaly`: a principal calling far more, or being sent far more bytes, than it
//! itself usually does — scraping (request rate) and data exfiltration (bytes sent), by a
//! stolen credential or by its owner.
//!
//! Per principal ([`Event::principal_entity`]: the token, else the credential id, else the
//! principal the record names; a shared OAuth client id is never one), requests and response
//! bytes are counted in buckets of event time (`bucket`, 5m). A bucket is **over** on a check
//! when its count reaches `factor` × the principal's baseline (baseline at least the floor:
//! `floor_requests`, `floor_bytes`) **and** the absolute minimum (`min_requests`, `min_bytes`).
//! An alert fires as soon as the current bucket is over after `sustain - 1` over buckets in a
//! row (default: the second bucket running) — it does not wait for the bucket to close. The two
//! checks count their runs apart and the evidence says which fired (`check`: `requests` for
//! scraping, `bytes` for exfiltration; `checks` lists both when both are over).
//!
//! **The baseline** is the highest bucket the principal has shown, not a mean or a median: a
//! batch client whose hourly job is part of its history is judged against its job, not against
//! its quiet minutes. Which buckets:
//! - in its first day: every bucket since it was first seen (its peak);
//! - once it has a day of history (daily shape): the last 24 buckets (2h at 5m) and the same
//!   hour of day (UTC) on earlier days, each day's peak halved as a day passes. A key used
//!   heavily every afternoon is not an anomaly in the afternoon, and the same volume at 03:00 is.
//!
//! A bucket judged over is held out of the baseline (an attack does not teach the baseline
//! before its second bucket is judged); it is learned after all when the run ends short of an
//! alert (a one-bucket burst is ordinary for this principal from then on), and once an alert
//! fired (the episode is reported once; the detector then follows the new level).
//!
//! **Learning**: a principal is judged only after `learn` (30m) of event time since it was
//! first seen, with at least `min_learn_buckets` buckets in which it called. A new principal is
//! never anomalous by itself: a rotated key or a refreshed token starts afresh. 30m, not hours,
//! because most tokens are OAuth access tokens that live an hour: a token is judged in its
//! second half hour, a longer-lived key (API key, consumer, credential id) for as long as it lives.
//!
//! What stays quiet: a batch client whose heavy jobs are part of its history, a mobile user
//! changing carriers (addresses are not looked at), a rotated key or a new token (learning), a
//! slow ramp through the day (each bucket is close to the ones before), a near-idle principal
//! doing a modest amount (floors and minimums). A crawler or export job you run yourself that
//! is heavy by design belongs in `[allow]`.
//!
//! **Cost and memory**: one lookup of a 128-bit hash of the principal per event (no string is
//! built or allocated unless it alerts), two additions and two comparisons; the baseline and
//! thresholds are computed when a bucket closes, once per principal and bucket. A principal
//! seen in one bucket only holds its current counts inline (24 B: about 80 B per key with the
//! map's entry and index); from its second bucket on it holds a fixed history of 232 B on the
//! heap — 24 buckets and 24 hours of day, requests and bytes as 16-bit codes (a float with an
//! 11-bit mantissa: within 0.1%) — so about 310 B per principal with history, whatever its
//! volume. Keys are capped (`[engine] max_keys_per_detector`) and dropped after 25h idle (the
//! engine's `idle_timeout` if longer): the daily shape needs a day of memory.
//!
//! Touches: events, its own keyed state, the findings it returns. No clock.

use serde::Deserialize;
use serde_json::json;

use super::{human_duration, parse_params, principal_key, Checker, Detector, Limits};
use crate::config::{ConfigError, DetectorFile, DurationStr};
use crate::event::{format_ts, Entity, EntityKind, Event, Finding, Millis, PrincipalKind, Shard};
use crate::state::{KeyedState, StateStats};

/// `[params]` of a `volume_anomaly` file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Which volumes are judged: `requests` (scraping) and `bytes` (exfiltration). Default: both.
    #[serde(default = "all_checks")]
    pub checks: Vec<Check>,
    /// Bucket of event time volumes are counted in.
    #[serde(default = "default_bucket")]
    pub bucket: DurationStr,
    /// A bucket is over when it reaches this many times the baseline.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// Over buckets in a row that make an alert (the last one as soon as it is over).
    #[serde(default = "default_sustain")]
    pub sustain: u8,
    /// Event time since a principal was first seen before it is judged.
    #[serde(default = "default_learn")]
    pub learn: DurationStr,
    /// ...and at least this many buckets in which it called.
    #[serde(default = "default_learn_buckets")]
    pub min_learn_buckets: u16,
    /// The least a baseline is, in requests per bucket: a near-idle principal doing a modest
    /// amount is not an anomaly.
    #[serde(default = "default_floor_requests")]
    pub floor_requests: u64,
    /// Requests in a bucket below which nothing is an anomaly.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// The least a baseline is, in bytes sent per bucket.
    #[serde(default = "default_floor_bytes")]
    pub floor_bytes: u64,
    /// Bytes sent in a bucket below which nothing is an anomaly.
    #[serde(default = "default_min_bytes")]
    pub min_bytes: u64,
}

/// What a `volume_anomaly` rule judges: the closed set of `checks` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Requests per bucket: scraping, bulk reads.
    Requests,
    /// Response bytes per bucket: exfiltration, bulk exports.
    Bytes,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Requests => "requests",
            Check::Bytes => "bytes",
        }
    }
}

fn all_checks() -> Vec<Check> {
    vec![Check::Requests, Check::Bytes]
}
fn default_bucket() -> DurationStr {
    DurationStr(5 * 60_000)
}
fn default_factor() -> f64 {
    10.0
}
fn default_sustain() -> u8 {
    2
}
fn default_learn() -> DurationStr {
    DurationStr(30 * 60_000)
}
fn default_learn_buckets() -> u16 {
    4
}
fn default_floor_requests() -> u64 {
    20
}
fn default_min_requests() -> u64 {
    300
}
fn default_floor_bytes() -> u64 {
    1_000_000
}
fn default_min_bytes() -> u64 {
    50_000_000
}

/// Buckets of recent history kept per principal (2h at 5m).
const RING: usize = 24;
const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;
/// How long a principal is remembered without a call, at least: the daily shape needs a day.
const REMEMBER: Millis = DAY + HOUR;

/// A count as a 16-bit code: exact below 2048, else an 11-bit mantissa and an exponent
/// (relative error under 0.1%). Monotonic, so codes compare as the counts do.
fn enc(v: u64) -> u16 {
    if v < 2048 {
        return v as u16;
    }
    let e = 64 - v.leading_zeros() - 11; // ≥ 1, ≤ 53
    ((e as u64) * 1024 + (v >> e)) as u16
}

fn dec(code: u16) -> u64 {
    if code < 2048 {
        return code as u64;
    }
    let e = (code / 1024 - 1) as u32;
    let m = (code - (e as u16) * 1024) as u64;
    m << e
}

/// What a principal holds once it has closed a bucket: 232 bytes, on the heap.
struct History {
    /// The last [`RING`] closed buckets (slot = bucket index mod [`RING`]), requests and bytes.
    ring_req: [u16; RING],
    ring_bytes: [u16; RING],
    /// Per hour of day (UTC): the peak bucket of that hour, halved each day that passes.
    hour_req: [u16; 24],
    hour_bytes: [u16; 24],
    /// Ring slots judged over and not learned (yet).
    held: u32,
    /// Bucket index of the first bucket seen, and of the last one written to the ring.
    first: u32,
    last: u32,
    /// Hour index (since the epoch) last written to the hour profile: a new one halves its slot.
    last_hour: u32,
    /// Thresholds of the current bucket (`u64::MAX`: not judged).
    thr_req: u64,
    thr_bytes: u64,
    /// Buckets in which the principal called.
    active: u16,
    /// Over buckets in a row just closed, per check.
    run_req: u8,
    run_bytes: u8,
    /// An alert fired in the current run: it is not reported again, and what it does is learned.
    alerted: bool,
}

/// A principal's current bucket, inline (24 bytes), and its history once it has one.
struct Principal {
    bucket: u32,
    req: u32,
    bytes: u64,
    hist: Option<Box<History>>,
}

/// The bucket open and its counts so far, for a report.
#[derive(Clone, Copy)]
struct Now {
    bucket: u32,
    req: u64,
    bytes: u64,
}

/// What [`History`] needs of the params, in the units it counts in.
struct Cfg {
    bucket: Millis,
    factor: f64,
    learn: Millis,
    min_learn_buckets: u16,
    /// Buckets just closed that are not (yet) in the baseline: `sustain`. An attack that
    /// starts mid-bucket, under the factor, is not learned before its full buckets are judged.
    lag: u32,
    /// (floor, minimum) per check; `None` for a check not asked for.
    req: Option<(u64, u64)>,
    bytes: Option<(u64, u64)>,
}

/// The baseline a bucket is judged against, and where it came from.
#[derive(Clone, Copy)]
struct Baseline {
    req: u64,
    bytes: u64,
    daily: bool,
}

impl History {
    fn new(first: u32) -> Self {
        History {
            ring_req: [0; RING],
            ring_bytes: [0; RING],
            hour_req: [0; 24],
            hour_bytes: [0; 24],
            held: 0,
            first,
            last: first,
            last_hour: u32::MAX,
            thr_req: u64::MAX,
            thr_bytes: u64::MAX,
            active: 0,
            run_req: 0,
            run_bytes: 0,
            alerted: false,
        }
    }

    fn hour_of(b: u32, cfg: &Cfg) -> u32 {
        ((b as i64 * cfg.bucket) / HOUR) as u32
    }

    /// Learns bucket `b`'s codes into the hour profile; `fresh` when `b` is newly closed (a
    /// new hour instance halves what earlier days left in its slot first).
    fn learn_hour(&mut self, b: u32, req: u16, bytes: u16, fresh: bool, cfg: &Cfg) {
        let hour = Self::hour_of(b, cfg);
        let slot = (hour % 24) as usize;
        if fresh && hour != self.last_hour {
            self.last_hour = hour;
            self.hour_req[slot] = enc(dec(self.hour_req[slot]) / 2);
            self.hour_bytes[slot] = enc(dec(self.hour_bytes[slot]) / 2);
        }
        self.hour_req[slot] = self.hour_req[slot].max(req);
        self.hour_bytes[slot] = self.hour_bytes[slot].max(bytes);
    }

    /// The bucket index of ring slot `i`: the latest bucket ≤ `last` that lands there.
    fn bucket_of(&self, i: u32) -> u32 {
        let back = (self.last % RING as u32 + RING as u32 - i) % RING as u32;
        self.last.wrapping_sub(back)
    }

    /// The held buckets are learned after all.
    fn release_held(&mut self, cfg: &Cfg) {
        let mut held = std::mem::take(&mut self.held);
        while held != 0 {
            let i = held.trailing_zeros();
            held &= held - 1;
            let b = self.bucket_of(i);
            self.learn_hour(b, self.ring_req[i as usize], self.ring_bytes[i as usize], false, cfg);
        }
    }

    /// Learns bucket `b` from the ring into the hour profile, unless it is held.
    fn commit(&mut self, b: u32, cfg: &Cfg) {
        let i = b as usize % RING;
        if b >= self.first && b <= self.last && self.last - b < RING as u32 && self.held & (1 << i) == 0 {
            self.learn_hour(b, self.ring_req[i], self.ring_bytes[i], true, cfg);
        }
    }

    fn write(&mut self, b: u32, req: u16, bytes: u16, held: bool) {
        let i = b as usize % RING;
        self.ring_req[i] = req;
        self.ring_bytes[i] = bytes;
        self.last = b;
        if held {
            self.held |= 1 << i;
        } else {
            self.held &= !(1 << i);
        }
    }

    /// Closes bucket `b` (`req` calls, `bytes` sent); `next` is the bucket now open.
    fn close(&mut self, b: u32, req: u64, bytes: u64, next: u32, cfg: &Cfg) {
        let over_req = req >= self.thr_req;
        let over_bytes = bytes >= self.thr_bytes;
        self.write(b, enc(req), enc(bytes), (over_req || over_bytes) && !self.alerted);
        self.active = self.active.saturating_add((req > 0) as u16);
        self.run_req = if over_req { self.run_req.saturating_add(1) } else { 0 };
        self.run_bytes = if over_bytes { self.run_bytes.saturating_add(1) } else { 0 };
        let gap = next.saturating_sub(b).saturating_sub(1);
        if gap > 0 {
            self.run_req = 0;
            self.run_bytes = 0;
        }
        if self.run_req == 0 && self.run_bytes == 0 {
            // the run ended short of an alert (or after one): what it did is ordinary now
            self.release_held(cfg);
            self.alerted = false;
        }
        if gap > 0 {
            // nothing follows the buckets still in the lag: learn them now, then the silence
            for k in (0..cfg.lag.min(b - self.first + 1)).rev() {
                self.commit(b - k, cfg);
            }
            let g = gap.min(RING as u32);
            for k in 0..g {
                self.write(next - g + k, 0, 0, false);
            }
        } else if b >= self.first + cfg.lag {
            self.commit(b - cfg.lag, cfg);
        }
        let age = (next - self.first) as i64 * cfg.bucket;
        if age >= cfg.learn && self.active >= cfg.min_learn_buckets {
            let base = self.baseline(next, cfg);
            let thr = |base: u64, (floor, min): (u64, u64)| ((base.max(floor) as f64 * cfg.factor) as u64).max(min);
            self.thr_req = cfg.req.map_or(u64::MAX, |c| thr(base.req, c));
            self.thr_bytes = cfg.bytes.map_or(u64::MAX, |c| thr(base.bytes, c));
        } else {
            self.thr_req = u64::MAX;
            self.thr_bytes = u64::MAX;
        }
    }

    /// The highest learned bucket before the `lag` buckets just closed: since first seen in
    /// the first day; after, in the last [`RING`] buckets and at the same hour of day on
    /// earlier days.
    fn baseline(&self, b: u32, cfg: &Cfg) -> Baseline {
        let daily = (b - self.first) as i64 * cfg.bucket >= DAY;
        let (mut req, mut bytes) = if daily {
            let slot = (Self::hour_of(b, cfg) % 24) as usize;
            (self.hour_req[slot], self.hour_bytes[slot])
        } else {
            (self.hour_req.iter().copied().max().unwrap_or(0), self.hour_bytes.iter().copied().max().unwrap_or(0))
        };
        for i in 0..RING as u32 {
            let age = b.wrapping_sub(self.bucket_of(i));
            if self.held & (1 << i) == 0 && age > cfg.lag {
                req = req.max(self.ring_req[i as usize]);
                bytes = bytes.max(self.ring_bytes[i as usize]);
            }
        }
        Baseline { req: dec(req), bytes: dec(bytes), daily }
    }
}

pub struct VolumeAnomaly {
    cfg: Cfg,
    sustain: u8,
    /// Keyed by a 128-bit hash of the principal: nothing formatted or allocated per event.
    state: KeyedState<u128, Principal>,
    /// The latest event time seen (event or watermark): [`Detector::describe`] says whether
    /// a principal's bucket is still open.
    now: Millis,
}

pub fn build(file: &DetectorFile, limits: Limits) -> Result<Box<dyn Detector>, Vec<ConfigError>> {
    let p: Params = parse_params(file)?;
    let mut c = Checker::new(file);
    c.check(!p.checks.is_empty(), "checks", "name at least one of: requests, bytes");
    c.check((60_000..=HOUR).contains(&p.bucket.0) && HOUR % p.bucket.0 == 0, "bucket", "must divide 1h, 1m–1h");
    c.check(p.factor.is_finite() && p.factor >= 2.0, "factor", "must be at least 2");
    c.check((1..=8).contains(&p.sustain), "sustain", "must be 1–8 buckets");
    c.check(p.learn.0 >= p.bucket.0, "learn", "must be at least one bucket");
    c.check(p.min_learn_buckets >= 1, "min_learn_buckets", "must be at least 1");
    c.check(p.min_requests >= 1, "min_requests", "must be at least 1");
    c.check(p.min_bytes >= 1, "min_bytes", "must be at least 1");
    let on = |k: Check| p.checks.contains(&k);
    let cfg = Cfg {
        bucket: p.bucket.0.max(1),
        factor: p.factor,
        learn: p.learn.0,
        min_learn_buckets: p.min_learn_buckets,
        lag: p.sustain as u32,
        req: on(Check::Requests).then_some((p.floor_requests, p.min_requests)),
        bytes: on(Check::Bytes).then_some((p.floor_bytes, p.min_bytes)),
    };
    let idle = limits.idle_timeout.max(REMEMBER);
    c.finish(Box::new(VolumeAnomaly {
        cfg,
        sustain: p.sustain,
        state: KeyedState::new(limits.max_keys, idle),
        now: Millis::MIN,
    }) as Box<dyn Detector>)
}

/// Bytes for a summary: `812 kB`, `152.3 MB`, `1.2 GB`.
fn human_bytes(b: u64) -> String {
    match b {
        0..=999 => format!("{b} B"),
        1_000..=999_999 => format!("{:.0} kB", b as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", b as f64 / 1e6),
        _ => format!("{:.1} GB", b as f64 / 1e9),
    }
}

impl VolumeAnomaly {
    #[cold]
    fn report(cfg: &Cfg, sustain: u8, ev: &Event, st: Now, h: &History, fired: [bool; 2], out: &mut Vec<Finding>) {
        let Some(who) = ev.principal_entity() else { return };
        let base = h.baseline(st.bucket, cfg);
        let check = if fired[0] { Check::Requests } else { Check::Bytes };
        let checks: Vec<&str> = [(Check::Requests, st.req >= h.thr_req), (Check::Bytes, st.bytes >= h.thr_bytes)]
            .iter()
            .filter(|(_, over)| *over)
            .map(|(c, _)| c.as_str())
            .collect();
        let run = if fired[0] { h.run_req } else { h.run_bytes } as Millis;
        let bucket_start = st.bucket as Millis * cfg.bucket;
        let (value, baseline, threshold) = match check {
            Check::Requests => (st.req, base.req, h.thr_req),
            Check::Bytes => (st.bytes, base.bytes, h.thr_bytes),
        };
        let ratio = value as f64 / baseline.max(1) as f64;
        let mut evidence = serde_json::Map::new();
        evidence.insert("check".into(), json!(check.as_str()));
        evidence.insert("checks".into(), json!(checks));
        evidence.insert("bucket".into(), json!(human_duration(cfg.bucket)));
        evidence.insert("requests".into(), json!(st.req));
        evidence.insert("bytes_sent".into(), json!(st.bytes));
        evidence.insert("baseline_requests".into(), json!(base.req));
        evidence.insert("baseline_bytes".into(), json!(base.bytes));
        evidence.insert("threshold_requests".into(), json!((h.thr_req != u64::MAX).then_some(h.thr_req)));
        evidence.insert("threshold_bytes".into(), json!((h.thr_bytes != u64::MAX).then_some(h.thr_bytes)));
        evidence.insert("factor".into(), json!(cfg.factor));
        evidence.insert("ratio".into(), json!((ratio * 10.0).round() / 10.0));
        evidence.insert("buckets_over".into(), json!(run + 1));
        evidence.insert(
            "baseline_from".into(),
            json!(if base.daily { "last_2h_and_same_hour_of_day" } else { "peak_since_first_seen" }),
        );
        evidence.insert("history".into(), json!(human_duration((st.bucket - h.first) as Millis * cfg.bucket)));
        let what = PrincipalKind::of(&who).noun();
        let shown = match PrincipalKind::of(&who) {
            PrincipalKind::Token => who.clone(),
            _ => who.split_once(':').map_or(who.as_str(), |(_, v)| v).to_string(),
        };
        let client = ev.client_id.as_ref().map(|c| format!(" (client {c})")).unwrap_or_default();
        let (amount, usual, limit) = match check {
            Check::Requests => {
                (format!("made {value} requests"), format!("{baseline} requests"), threshold.to_string())
            }
            Check::Bytes => (format!("was sent {}", human_bytes(value)), human_bytes(baseline), human_bytes(threshold)),
        };
        out.push(Finding {
            within: None,
            entity: Entity::new(EntityKind::Token, who.clone()),
            client_id: ev.client_id.as_deref().map(str::to_string),
            client_id_source: ev.client_id_source,
            token_fingerprint: ev.token_fingerprint,
            window_start: bucket_start - run * cfg.bucket,
            window_end: ev.ts,
            summary: format!(
                "{what} {shown}{client} {amount} in {}, {ratio:.0}× its usual high of {usual} ({}): over its limit of {limit} ({}×) {} buckets in a row (limit {sustain})",
                human_duration(cfg.bucket),
                if base.daily { "last 2h and this hour on earlier days" } else { "since first seen" },
                cfg.factor,
                run + 1,
            ),
            evidence,
        });
    }
}

impl Detector for VolumeAnomaly {
    /// A principal's volumes are whole on the token shard.
    fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String> {
        match shard {
            Shard::Token => ev.principal_entity(),
            _ => None,
        }
    }

    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        self.now = self.now.max(ev.ts);
        let Some(key) = principal_key(ev) else { return };
        let cfg = &self.cfg;
        let b = ev.ts.div_euclid(cfg.bucket).clamp(0, u32::MAX as Millis) as u32;
        let st = self.state.entry(&key, ev.ts, || Principal { bucket: b, req: 0, bytes: 0, hist: None });
        if b > st.bucket {
            let hist = st.hist.get_or_insert_with(|| Box::new(History::new(st.bucket)));
            hist.close(st.bucket, st.req as u64, st.bytes, b, cfg);
            (st.bucket, st.req, st.bytes) = (b, 0, 0);
        }
        // an event late by less than the engine's lateness counts in the bucket open
        st.req = st.req.saturating_add(1);
        st.bytes = st.bytes.saturating_add(ev.bytes_sent.unwrap_or(0));
        let now = Now { bucket: st.bucket, req: st.req as u64, bytes: st.bytes };
        let Some(h) = st.hist.as_deref_mut() else { return };
        if h.alerted {
            return;
        }
        let need = self.sustain - 1;
        let fired = [now.req >= h.thr_req && h.run_req >= need, now.bytes >= h.thr_bytes && h.run_bytes >= need];
        if fired[0] || fired[1] {
            Self::report(cfg, self.sustain, ev, now, h, fired, out);
            h.alerted = true;
            h.release_held(cfg);
        }
    }

    fn on_watermark(&mut self, wm: Millis, _out: &mut Vec<Finding>) {
        self.now = self.now.max(wm);
        self.state.sweep(wm);
    }

    fn stats(&self) -> StateStats {
        self.state.stats()
    }

    /// A principal: its latest bucket's counts, the baseline and thresholds it is judged
    /// against (once learned), the over-buckets running, and how far its learning is.
    fn describe(&self, entity: &Entity) -> Option<serde_json::Value> {
        let key = super::principal_key_of(entity)?;
        let st = self.state.get(&key)?;
        let cfg = &self.cfg;
        let now_bucket = self.now.div_euclid(cfg.bucket);
        let start = |b: u32| format_ts(b as Millis * cfg.bucket);
        let shown = |thr: u64| (thr != u64::MAX).then_some(thr);
        let mut o = serde_json::Map::new();
        o.insert("bucket_ms".into(), json!(cfg.bucket));
        o.insert("as_of".into(), json!(format_ts(self.now)));
        o.insert(
            "bucket".into(),
            json!({
                "start": start(st.bucket),
                "open": st.bucket as Millis >= now_bucket,
                "requests": st.req,
                "bytes_sent": st.bytes,
            }),
        );
        if let Some(seen) = self.state.last_seen(&key) {
            o.insert("last_seen_at".into(), json!(format_ts(seen)));
        }
        let (first, active) = st.hist.as_ref().map_or((st.bucket, 0), |h| (h.first, h.active));
        let learned = st.hist.as_ref().is_some_and(|h| h.thr_req != u64::MAX || h.thr_bytes != u64::MAX);
        o.insert(
            "learning".into(),
            json!({
                "first_seen_at": start(first),
                "active_buckets": active,
                "learned": learned,
                "learn_ms": cfg.learn,
                "min_learn_buckets": cfg.min_learn_buckets,
            }),
        );
        if let Some(h) = &st.hist {
            let base = h.baseline(st.bucket, cfg);
            o.insert(
                "baseline".into(),
                json!({
                    "requests": base.req,
                    "bytes": base.bytes,
                    "from": if base.daily { "last_2h_and_same_hour_of_day" } else { "peak_since_first_seen" },
                }),
            );
            o.insert("threshold_requests".into(), json!(shown(h.thr_req)));
            o.insert("threshold_bytes".into(), json!(shown(h.thr_bytes)));
            o.insert("factor".into(), json!(cfg.factor));
            o.insert(
                "buckets_over_in_a_row".into(),
                json!({"requests": h.run_req, "bytes": h.run_bytes, "sustain": self.sustain}),
            );
            o.insert("alerted".into(), json!(h.alerted));
        }
        Some(serde_json::Value::Object(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::{detector_from_toml, ev, file_from_toml, run};
    use crate::event::Fingerprint;

    const M: Millis = 60_000;

    fn det() -> Box<dyn Detector> {
        detector_from_toml("volume_anomaly", "")
    }

    /// Token `n` calling `GET /v1/catalog/products` every `every` ms in `[from, to)`, each
    /// answer `bytes` long.
    fn calls(n: u8, from: Millis, to: Millis, every: Millis, bytes: u64) -> Vec<Event> {
        (0..)
            .map(|i| from + i * every)
            .take_while(|t| *t < to)
            .map(|t| {
                let mut e =
                    ev(t).ip("198.51.100.20").client("partner-acme").token(n).get("/v1/catalog/products").build();
                e.bytes_sent = Some(bytes);
                e
            })
            .collect()
    }

    fn merged(parts: Vec<Vec<Event>>) -> Vec<Event> {
        let mut all: Vec<Event> = parts.into_iter().flatten().collect();
        all.sort_by_key(|e| e.ts);
        all
    }

    #[test]
    fn counts_keep_their_order_and_size_as_16_bit_codes() {
        let mut last = 0;
        for v in (0..5000).chain((1..60).map(|s| 1u64 << s)).chain([u64::MAX, 123_456_789, 2047, 2048, 2049]) {
            let c = enc(v);
            let back = dec(c);
            assert!(back <= v && (v - back) as f64 <= v as f64 / 1024.0, "{v} -> {c} -> {back}");
            assert_eq!(enc(back), c, "{v}");
        }
        for v in (0..200_000u64).step_by(7) {
            assert!(enc(v) >= last, "monotonic at {v}");
            last = enc(v);
        }
    }

    #[test]
    fn a_partner_token_scraping_at_many_times_its_rate_is_found_in_its_second_bucket() {
        // 3 calls a minute for 50 minutes, then 10 a second for 12 minutes
        let events = merged(vec![calls(7, 0, 50 * M, 20_000, 4200), calls(7, 45 * M, 57 * M, 100, 3000)]);
        let f = run(&mut *det(), &events);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].entity, Entity::new(EntityKind::Token, Fingerprint([7; 8]).to_hex()));
        assert_eq!(f[0].evidence["check"], "requests");
        assert_eq!(f[0].evidence["checks"], json!(["requests"]), "3 kB answers: 9 MB a bucket, under min_bytes");
        assert_eq!(f[0].evidence["baseline_requests"], 15);
        assert_eq!(f[0].evidence["threshold_requests"], 300);
        assert_eq!(f[0].evidence["buckets_over"], 2);
        assert_eq!(f[0].window_start, 45 * M, "from the first bucket over");
        assert!(
            (50 * M..51 * M).contains(&f[0].window_end),
            "as soon as the second bucket is over: {}",
            f[0].window_end
        );
        assert!(
            f[0].summary
                .starts_with(&format!("token {} (client partner-acme) made 300 requests in 5m", Fingerprint([7; 8]))),
            "{}",
            f[0].summary
        );
        assert_eq!(f[0].token_fingerprint, Some(Fingerprint([7; 8])));
    }

    #[test]
    fn exfiltration_is_found_on_bytes_at_an_ordinary_request_rate() {
        let events = merged(vec![calls(8, 0, 60 * M, 30_000, 20_000), calls(8, 45 * M, 57 * M, 15_000, 8_000_000)]);
        let f = run(&mut *det(), &events);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].evidence["check"], "bytes");
        assert_eq!(f[0].evidence["checks"], json!(["bytes"]));
        let baseline = f[0].evidence["baseline_bytes"].as_u64().unwrap();
        assert!((199_800..=200_000).contains(&baseline), "10 × 20 kB, as a 16-bit code: {baseline}");
        assert!(f[0].summary.contains("was sent 56.1 MB in 5m"), "{}", f[0].summary);
        // the same with only the requests check: nothing
        let mut only_requests = detector_from_toml("volume_anomaly", r#"checks = ["requests"]"#);
        assert!(run(&mut *only_requests, &events).is_empty());
    }

    #[test]
    fn a_single_heavy_bucket_is_not_enough_and_is_learned() {
        // one 5-minute burst after learning: over once, then back to normal
        let base = calls(9, 0, 120 * M, 20_000, 4000);
        let burst = calls(9, 60 * M, 65 * M, 200, 4000);
        assert!(run(&mut *det(), &merged(vec![base.clone(), burst.clone()])).is_empty());
        // the burst was learned: the same two buckets long an hour later is within its baseline
        let again = calls(9, 90 * M, 100 * M, 200, 4000);
        assert!(run(&mut *det(), &merged(vec![base.clone(), burst, again.clone()])).is_empty());
        // without the first burst the two-bucket one fires
        assert_eq!(run(&mut *det(), &merged(vec![base, again])).len(), 1);
    }

    #[test]
    fn a_batch_client_with_hourly_jobs_stays_quiet_for_a_day_and_more() {
        // 6 calls a minute, and every hour an 8-minute job at 10 a second: 26 hours
        let mut parts = vec![calls(10, 0, 26 * 60 * M, 10_000, 2000)];
        for h in 0..26 {
            parts.push(calls(10, h * 60 * M + 7 * M, h * 60 * M + 15 * M, 100, 400));
        }
        let events = merged(parts);
        assert!(run(&mut *det(), &events).is_empty());
        // its job at 3× is within the factor; 13× over 18 minutes is not
        let mut heavier = events.clone();
        heavier.extend(calls(10, 25 * 60 * M + 7 * M, 25 * 60 * M + 15 * M, 100, 400));
        heavier.extend(calls(10, 25 * 60 * M + 7 * M + 50, 25 * 60 * M + 15 * M, 100, 400));
        heavier.sort_by_key(|e| e.ts);
        let f = run(&mut *det(), &heavier);
        assert!(f.is_empty(), "3× is under the factor of 10: {f:#?}");
        let mut ten_times = events;
        for k in 0..12 {
            ten_times.extend(calls(10, 25 * 60 * M + 7 * M + k * 8, 25 * 60 * M + 25 * M, 100, 400));
        }
        ten_times.sort_by_key(|e| e.ts);
        let f = run(&mut *det(), &ten_times);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].evidence["baseline_from"], "last_2h_and_same_hour_of_day");
    }

    #[test]
    fn the_daily_shape_allows_the_busy_hour_and_judges_the_quiet_one() {
        // first seen at 13:50, a call a minute, and a heavy hour 14:00-15:00 every day (5 a
        // second): the first one while it is learned
        let day = 24 * 60 * M;
        let mut parts = vec![calls(11, 13 * 60 * M + 50 * M, 2 * day + 16 * 60 * M, 60_000, 1000)];
        for d in 0..3 {
            parts.push(calls(11, d * day + 14 * 60 * M, d * day + 15 * 60 * M, 200, 1000));
        }
        let f = run(&mut *det(), &merged(parts.clone()));
        assert!(f.is_empty(), "the busy hour is expected every day: {f:#?}");
        // in its first day, its peak is its baseline at any hour: 03:00 the next night is quiet
        let mut first_night = parts.clone();
        first_night.push(calls(11, day + 3 * 60 * M, day + 4 * 60 * M, 200, 1000));
        assert!(run(&mut *det(), &merged(first_night)).is_empty());
        // with a day of history, the same volume at 03:00 is not what this key does at night
        parts.push(calls(11, 2 * day + 3 * 60 * M, 2 * day + 4 * 60 * M, 200, 1000));
        let f = run(&mut *det(), &merged(parts));
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!((2 * day + 3 * 60 * M..2 * day + 4 * 60 * M).contains(&f[0].window_end));
        assert_eq!(f[0].evidence["baseline_from"], "last_2h_and_same_hour_of_day");
    }

    #[test]
    fn a_slow_ramp_through_the_day_stays_quiet() {
        // from a call every 30s at 04:00 to 4 a second at 16:00 and back: ×120 in 12 hours
        let mut events = Vec::new();
        let mut t = 4 * 60 * M;
        while t < 30 * 60 * M {
            events.extend(calls(12, t, t + 1, 1, 1500));
            let h = (t as f64 / (60 * M) as f64 - 4.0) / 24.0;
            let rate = 1.0 / 30.0 + (4.0 - 1.0 / 30.0) * (0.5 - 0.5 * (std::f64::consts::TAU * h).cos());
            t += (1000.0 / rate) as Millis;
        }
        assert!(events.len() > 50_000);
        assert!(run(&mut *det(), &events).is_empty());
    }

    #[test]
    fn key_rotation_starts_afresh_and_is_not_an_anomaly() {
        // token 13 at 3 a minute; rotated at 40m to token 14, which runs at 3 a second at once
        let events = merged(vec![calls(13, 0, 40 * M, 20_000, 900), calls(14, 40 * M, 120 * M, 333, 900)]);
        assert!(run(&mut *det(), &events).is_empty());
        // the control: the same jump on the old token is found
        let same = merged(vec![calls(13, 0, 40 * M, 20_000, 900), calls(13, 40 * M, 120 * M, 333, 900)]);
        assert_eq!(run(&mut *det(), &same).len(), 1);
    }

    #[test]
    fn a_near_idle_principal_doing_a_modest_amount_is_not_an_anomaly() {
        // a call every 10 minutes, then 200 calls in each of two buckets: 40× but under 300
        let events = merged(vec![calls(15, 0, 120 * M, 10 * M, 500), calls(15, 60 * M, 70 * M, 1500, 500)]);
        assert!(run(&mut *det(), &events).is_empty());
    }

    /// A mobile user (a user name, no token logged) hopping carriers every few minutes.
    fn mobile(from: Millis, to: Millis, every: Millis) -> Vec<Event> {
        let carriers = ["100.64.1.9", "172.56.3.4", "31.94.7.7", "2a01:4c8::1"];
        (0..)
            .map(|i| (i, from + i * every))
            .take_while(|(_, t)| *t < to)
            .map(|(i, t)| {
                let mut e =
                    ev(t).ip(carriers[(t / (7 * M)) as usize % 4]).principal("user:amira").get("/v1/orders").build();
                e.bytes_sent = Some(3000 + (i as u64 % 7) * 100);
                e
            })
            .collect()
    }

    #[test]
    fn a_mobile_user_changing_carriers_is_one_principal_and_stays_quiet() {
        assert!(run(&mut *det(), &mobile(0, 3 * 60 * M, 2_000)).is_empty());
        // the same principal across carriers: a scrape from one of them is judged by its history
        let events = merged(vec![mobile(0, 3 * 60 * M, 2_000), mobile(90 * M, 105 * M, 60)]);
        let f = run(&mut *det(), &events);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].entity, Entity::new(EntityKind::Token, "user:amira"));
        assert!(f[0].summary.starts_with("user amira made"), "{}", f[0].summary);
    }

    #[test]
    fn a_crawler_you_allow_list_is_never_judged() {
        let crawler = |mut e: Event| {
            e.client_id = Some("acme-crawler".into());
            e
        };
        let events: Vec<Event> = merged(vec![calls(16, 0, 60 * M, 20_000, 4000), calls(16, 40 * M, 60 * M, 100, 4000)])
            .into_iter()
            .map(crawler)
            .collect();
        let text = "id = \"v\"\nkind = \"volume_anomaly\"\n[allow]\nclient_ids = [\"acme-crawler\"]\n";
        let file = DetectorFile::parse(text, std::path::Path::new("v.toml")).unwrap();
        let mut rule = crate::detectors::build_rule(&file, Limits::default()).unwrap();
        let mut alerts = Vec::new();
        for e in &events {
            rule.on_event(e, &mut alerts);
        }
        assert!(alerts.is_empty());
        assert_eq!(rule.allowed, events.len() as u64);
        // not allow-listed, the same crawl is found
        assert_eq!(run(&mut *det(), &events).len(), 1);
    }

    #[test]
    fn a_principal_is_judged_on_its_own_events_whatever_else_is_in_the_stream() {
        // shard equivalence: what is found for token 7 does not depend on other principals
        let alone = merged(vec![calls(7, 0, 50 * M, 20_000, 4200), calls(7, 45 * M, 57 * M, 100, 3000)]);
        let mut crowd = alone.clone();
        for n in 20..40u8 {
            crowd.extend(calls(n, n as Millis * 1000, 57 * M, 5_000 + n as Millis * 100, 1000));
        }
        crowd.sort_by_key(|e| e.ts);
        let d = det();
        let e = &alone[0];
        assert_eq!(d.shard_key(e, Shard::Token), Some(Fingerprint([7; 8]).to_hex()));
        for s in [Shard::Source, Shard::ClientId, Shard::Route] {
            assert_eq!(d.shard_key(e, s), None);
        }
        let f1 = run(&mut *det(), &alone);
        let mine: Vec<Event> = crowd
            .iter()
            .filter(|e| det().shard_key(e, Shard::Token) == d.shard_key(&alone[0], Shard::Token))
            .cloned()
            .collect();
        assert_eq!(mine.len(), alone.len());
        let mut f2 = Vec::new();
        let mut sharded = det();
        for e in &crowd {
            sharded.on_shard_event(e, Shard::Token, &mut f2);
        }
        assert_eq!(f1.len(), 1);
        assert_eq!(f2.len(), 1);
        assert_eq!(
            (&f1[0].entity, f1[0].window_start, f1[0].window_end),
            (&f2[0].entity, f2[0].window_start, f2[0].window_end)
        );
        // a shared OAuth client id names no principal
        let anon = ev(0).client("shop-web").get("/v1/orders").build();
        assert_eq!(d.shard_key(&anon, Shard::Token), None);
        assert_eq!(principal_key(&anon), None);
    }

    #[test]
    fn an_entity_names_the_state_key_its_events_do() {
        for e in [
            ev(0).token(7).credential("c-1").principal("user:a").build(),
            ev(0).credential("c-1").principal("user:a").build(),
            ev(0).principal("user:a").build(),
            ev(0).principal("consumer:0123456789abcdef").build(),
        ] {
            let entity = Entity::new(EntityKind::Token, e.principal_entity().unwrap());
            assert_eq!(super::super::principal_key_of(&entity), principal_key(&e), "{entity:?}");
        }
        assert_eq!(super::super::principal_key_of(&Entity::new(EntityKind::ClientId, "user:a")), None);
    }

    #[test]
    fn describe_shows_the_bucket_baseline_and_learning() {
        use crate::detectors::testing::{describe_twice, feed};
        // 3 calls a minute for 50 minutes, 4.2 kB each; then a minute at 10 a second
        let events = merged(vec![calls(7, 0, 50 * M, 20_000, 4200), calls(7, 50 * M, 51 * M, 100, 3000)]);
        let mut d = det();
        assert!(feed(&mut *d, &events).is_empty());
        let token = Entity::new(EntityKind::Token, Fingerprint([7; 8]).to_hex());
        let got = describe_twice(&*d, &token).expect("held");
        assert_eq!(got["bucket_ms"], json!(5 * M));
        assert_eq!(got["bucket"]["start"], json!("1970-01-01T00:50:00Z"));
        assert_eq!(got["bucket"]["open"], json!(true));
        assert_eq!(got["bucket"]["requests"], json!(600));
        assert_eq!(got["bucket"]["bytes_sent"], json!(600 * 3000));
        assert_eq!(got["learning"]["first_seen_at"], json!("1970-01-01T00:00:00Z"));
        assert_eq!(got["learning"]["active_buckets"], json!(10));
        assert_eq!(got["learning"]["learned"], json!(true));
        assert_eq!(got["baseline"]["requests"], json!(15));
        assert_eq!(got["baseline"]["from"], json!("peak_since_first_seen"));
        assert_eq!(got["threshold_requests"], json!(300));
        assert_eq!(got["buckets_over_in_a_row"]["requests"], json!(0));
        // a principal still learning, and one never seen
        let mut young = det();
        feed(&mut *young, &calls(8, 0, 10 * M, 20_000, 100));
        let got = describe_twice(&*young, &Entity::new(EntityKind::Token, Fingerprint([8; 8]).to_hex())).unwrap();
        assert_eq!(got["learning"]["learned"], json!(false));
        assert_eq!(got["threshold_requests"], json!(null));
        assert_eq!(describe_twice(&*d, &Entity::new(EntityKind::Token, Fingerprint([9; 8]).to_hex())), None);
        assert_eq!(describe_twice(&*d, &Entity::new(EntityKind::Token, "user:nobody")), None);
        // describing changed nothing: the second bucket over fires as it would have
        let f = feed(&mut *d, &calls(7, 51 * M, 56 * M, 100, 3000));
        assert_eq!(f.len(), 1, "{f:#?}");
    }

    #[test]
    fn params_out_of_range_are_reported_with_their_field() {
        let file = file_from_toml("volume_anomaly", "checks = []\nbucket = \"7m\"\nfactor = 1.0\nsustain = 0");
        let fields: Vec<String> =
            build(&file, Limits::default()).err().expect("invalid").into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["params.checks", "params.bucket", "params.factor", "params.sustain"]);
        assert!(build(&file_from_toml("volume_anomaly", "checks = [\"latency\"]"), Limits::default()).is_err());
    }
}

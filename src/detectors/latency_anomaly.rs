//! `latency_anomaly`: a route got slow, and stayed slow.
//!
//! Per templated route (optionally per route *and* upstream), every request's
//! latency goes into an HDR histogram for the current time bucket (aligned on
//! multiples of `bucket` in event time). When a bucket closes, its percentiles
//! (p50 and p95 by default) are compared with a learned baseline: the median of
//! the last `baseline_buckets` *normal* buckets, with the median absolute
//! deviation as its dispersion. A bucket is slow when one of its percentiles is
//! above every one of: `factor` × baseline, baseline + `min_increase_ms`, and
//! baseline + `dispersion_z` × dispersion. An alert is raised when
//! `alert_buckets` of the last `window_buckets` buckets are slow; the episode
//! then stays open (no second alert) until `window_buckets` buckets in a row are
//! not slow.
//!
//! What keeps it quiet on benign changes:
//! - slow buckets never enter the baseline, so an incident cannot teach the
//!   detector that slow is normal; a slow *drift* (each bucket within the
//!   threshold) is learned as it happens;
//! - percentiles do not depend on volume, so a traffic ramp alone changes
//!   nothing; a quiet route's bucket widens (the next buckets' requests join it)
//!   until it holds `min_samples` requests, up to `widen_up_to`, so a route with
//!   a few calls a minute is judged over several minutes, on as many requests as
//!   a busy route's minute; a bucket still short of them then is neither judged
//!   nor learned from;
//! - nothing is judged until `warmup_buckets` buckets have been learned;
//! - a new level that lasts longer than `relearn_after` is accepted: the
//!   baseline restarts from the recent buckets (a slower release is then the new
//!   normal, alerted once, not forever).
//!
//! A second signal catches what those thresholds are too coarse for: a **record
//! high**. The requests of each `record_for` of judged buckets (a *block*, 5
//! minutes by default) are pooled. A route watched for at least `record_after`
//! sets a record when a block's percentile goes above the highest that
//! percentile reached in any block of the last `record_over` (`record_margin`
//! further above the baseline than that high was, and at least
//! `min_increase_ms` above the baseline), and the block's own
//! buckets were above that high for at least half its time (one slow minute in
//! five can move a pooled p95, never this). A record is alerted at once. The
//! highs are kept per hour; a record run's own blocks join them when it ends, so
//! the next record has to beat this one: a rising trend is alerted at each new
//! high, not at every block, and a daily peak is no record the day after.
//!
//! It touches only the events it is given and its own per-route state (capped
//! and idle-evicted through [`KeyedState`]); it never reads the clock.

use std::collections::VecDeque;

use hdrhistogram::Histogram;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{human_duration, parse_params, Checker, Detector, Limits};
use crate::config::{ConfigError, DetectorFile, DurationStr};
use crate::event::{format_ts, Entity, EntityKind, Event, Finding, Millis, Shard};
use crate::state::{KeyedState, StateStats};

/// Which latency of a request is watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencyField {
    /// `latency_ms`: the whole request as the gateway saw it.
    Total,
    /// `upstream_latency_ms`: the time spent in the upstream service.
    Upstream,
}

/// `[params]` of a `latency_anomaly` detector file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyAnomalyParams {
    /// Length of one time bucket; each bucket's percentiles are one observation. Default `1m`.
    #[serde(default = "default_bucket")]
    pub bucket: DurationStr,
    /// Percentiles watched, each strictly between 0 and 100, at most 4. Default `[50, 95]`.
    #[serde(default = "default_percentiles")]
    pub percentiles: Vec<f64>,
    /// Which latency to watch: `total` (`latency_ms`) or `upstream` (`upstream_latency_ms`).
    /// Events without it are ignored. Default `total`.
    #[serde(default = "default_latency")]
    pub latency: LatencyField,
    /// Keep a separate baseline per (route, upstream) pair; alerts still name the route and
    /// carry the upstream in their evidence. Default `false`.
    #[serde(default = "default_per_upstream")]
    pub per_upstream: bool,
    /// Requests a bucket needs to be judged. A quieter route's bucket widens: the next
    /// buckets' requests join it until it holds this many (a route with 2 calls a minute is
    /// judged over 10 minutes), up to `widen_up_to`. Default `20`.
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// The widest a bucket grows to reach `min_samples`; one that still holds fewer requests
    /// is neither judged nor learned from. `bucket` (no widening) restores the fixed buckets.
    /// Default `2h`: a route with a dozen calls an hour (an admin or a payout route) is judged
    /// over two hours rather than never.
    #[serde(default = "default_widen_up_to")]
    pub widen_up_to: DurationStr,
    /// How many recent normal buckets the baseline is the median of. Default `60`.
    #[serde(default = "default_baseline_buckets")]
    pub baseline_buckets: usize,
    /// Buckets learned before a route can alert (at most `baseline_buckets`). Default `30`.
    #[serde(default = "default_warmup_buckets")]
    pub warmup_buckets: usize,
    /// A bucket is slow only if a percentile exceeds `factor` × its baseline (> 1). Default `1.5`.
    #[serde(default = "default_factor")]
    pub factor: f64,
    /// ... and exceeds its baseline by at least this many milliseconds. Default `50`.
    #[serde(default = "default_min_increase_ms")]
    pub min_increase_ms: f64,
    /// ... and exceeds its baseline by this many robust standard deviations of the baseline
    /// buckets (the larger of 1.4826 × MAD and (p90 − median) / 1.28), so a naturally noisy
    /// route needs a bigger jump. Default `4`.
    #[serde(default = "default_dispersion_z")]
    pub dispersion_z: f64,
    /// Alert when at least this many of the last `window_buckets` buckets are slow. Default `6`.
    #[serde(default = "default_alert_buckets")]
    pub alert_buckets: usize,
    /// The sliding window of buckets the `alert_buckets` are counted in. Default `10`.
    #[serde(default = "default_window_buckets")]
    pub window_buckets: usize,
    /// After an episode ends, a bucket is slow only if it also goes beyond that episode's
    /// peak, for this long: a slowdown that recurs at the same size (a nightly batch, a
    /// daily backup on the database behind the route) is alerted once, not at every run,
    /// while a worse one still is. `0s` turns it off. Default `24h`.
    #[serde(default = "default_recall")]
    pub recall_peaks_for: DurationStr,
    /// An episode lasting longer than this is taken as the new normal: the baseline restarts
    /// from the recent buckets (after a fresh warm-up). Default `1h`.
    #[serde(default = "default_relearn_after")]
    pub relearn_after: DurationStr,
    /// Record highs: a block (`record_for` of requests) whose percentile is above that
    /// percentile in every block of this long before it, for at least half the block, is a
    /// record, alerted at once. `0s` turns record highs off. Default `7d`.
    #[serde(default = "default_record_over")]
    pub record_over: DurationStr,
    /// How long a route has to have been judged before it can set a record. Default `1d`.
    #[serde(default = "default_record_after")]
    pub record_after: DurationStr,
    /// How much further above the baseline than the previous high a record is, as a fraction
    /// of the high's own distance from it (`0.1`: 10 % further), so a route whose spikes
    /// recur at about the same size sets no record with each. A record must also be at least
    /// `min_increase_ms` above the baseline. Default `0.1`.
    #[serde(default = "default_record_margin")]
    pub record_margin: f64,
    /// How much traffic one block pools: the judged buckets of this long (at least one).
    /// Default `5m`.
    #[serde(default = "default_record_for")]
    pub record_for: DurationStr,
    /// Most routes (or route/upstream pairs) tracked at once; beyond it the least recently
    /// seen are evicted. Also bounded by `[engine] max_keys`. Default `2000`.
    #[serde(default = "default_max_routes")]
    pub max_routes: usize,
}

fn default_bucket() -> DurationStr {
    DurationStr(60_000)
}
fn default_percentiles() -> Vec<f64> {
    vec![50.0, 95.0]
}
fn default_latency() -> LatencyField {
    LatencyField::Total
}
fn default_per_upstream() -> bool {
    false
}
fn default_min_samples() -> u64 {
    20
}
fn default_recall() -> DurationStr {
    DurationStr(24 * 3_600_000)
}
fn default_widen_up_to() -> DurationStr {
    DurationStr(2 * HOUR)
}
fn default_baseline_buckets() -> usize {
    60
}
fn default_warmup_buckets() -> usize {
    30
}
fn default_factor() -> f64 {
    1.5
}
fn default_min_increase_ms() -> f64 {
    50.0
}
fn default_dispersion_z() -> f64 {
    4.0
}
fn default_alert_buckets() -> usize {
    6
}
fn default_window_buckets() -> usize {
    10
}
fn default_relearn_after() -> DurationStr {
    DurationStr(3_600_000)
}
fn default_max_routes() -> usize {
    2000
}
fn default_record_over() -> DurationStr {
    DurationStr(7 * 24 * HOUR)
}
fn default_record_after() -> DurationStr {
    DurationStr(24 * HOUR)
}
fn default_record_margin() -> f64 {
    0.1
}
fn default_record_for() -> DurationStr {
    DurationStr(5 * 60_000)
}

/// Largest latency recorded exactly (1 hour, in ms); longer ones count as this.
const MAX_LATENCY_MS: u64 = 3_600_000;
/// One hour (ms): record highs are kept per hour.
const HOUR: Millis = 3_600_000;
/// Most percentiles a detector watches.
const MAX_PERCENTILES: usize = 4;
/// Scales a median absolute deviation to a standard deviation for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;
/// How many standard deviations the 90th percentile lies above the median for normal data.
const UPPER_TO_SIGMA: f64 = 1.2816;

/// Validated runtime parameters.
#[derive(Clone, Debug)]
struct Params {
    bucket: Millis,
    /// Percentiles as given (for reports) and as quantiles in (0, 1).
    percentiles: Vec<(f64, f64)>,
    latency: LatencyField,
    per_upstream: bool,
    min_samples: u64,
    /// The most base buckets one judged bucket spans.
    widen_buckets: Millis,
    baseline_buckets: usize,
    warmup_buckets: usize,
    factor: f64,
    min_increase_ms: f64,
    dispersion_z: f64,
    alert_buckets: usize,
    window_buckets: usize,
    relearn_after: Millis,
    recall_peaks_for: Millis,
    /// 0: record highs off.
    record_over: Millis,
    record_after: Millis,
    record_margin: f64,
    record_for: Millis,
}

impl LatencyAnomalyParams {
    fn into_runtime(self, file: &DetectorFile) -> Result<(Params, usize), Vec<ConfigError>> {
        let mut c = Checker::new(file);
        c.check(self.bucket.0 >= 1_000, "bucket", "must be at least 1s");
        c.check(
            !self.percentiles.is_empty() && self.percentiles.len() <= MAX_PERCENTILES,
            "percentiles",
            "must list between 1 and 4 percentiles",
        );
        for (i, p) in self.percentiles.iter().enumerate() {
            c.check(p.is_finite() && *p > 0.0 && *p < 100.0, &format!("percentiles[{i}]"), "must be > 0 and < 100");
        }
        c.check(self.min_samples >= 1, "min_samples", "must be at least 1");
        c.check(
            self.widen_up_to.0 >= self.bucket.0 && self.widen_up_to.0 <= 1000 * self.bucket.0.max(1),
            "widen_up_to",
            "must be at least bucket and at most 1000 buckets",
        );
        c.check(self.baseline_buckets >= 3, "baseline_buckets", "must be at least 3");
        c.check(
            self.warmup_buckets >= 3 && self.warmup_buckets <= self.baseline_buckets,
            "warmup_buckets",
            "must be at least 3 and at most baseline_buckets",
        );
        c.check(self.factor.is_finite() && self.factor > 1.0, "factor", "must be greater than 1");
        c.check(
            self.min_increase_ms.is_finite() && self.min_increase_ms >= 0.0,
            "min_increase_ms",
            "must be 0 or more",
        );
        c.check(self.dispersion_z.is_finite() && self.dispersion_z >= 0.0, "dispersion_z", "must be 0 or more");
        c.check(
            self.window_buckets >= 1 && self.window_buckets <= 1000,
            "window_buckets",
            "must be between 1 and 1000",
        );
        c.check(
            self.alert_buckets >= 1 && self.alert_buckets <= self.window_buckets,
            "alert_buckets",
            "must be at least 1 and at most window_buckets",
        );
        c.check(
            self.relearn_after.0 >= self.bucket.0 * self.window_buckets as Millis,
            "relearn_after",
            "must be at least bucket × window_buckets",
        );
        c.check(self.max_routes >= 1, "max_routes", "must be at least 1");
        c.check(
            self.record_over.0 == 0 || (self.record_over.0 >= HOUR && self.record_over.0 <= 90 * 24 * HOUR),
            "record_over",
            "must be 0s (off) or between 1h and 90d",
        );
        c.check(
            self.record_over.0 == 0 || self.record_after.0 <= self.record_over.0,
            "record_after",
            "must be at most record_over",
        );
        c.check(self.record_margin.is_finite() && self.record_margin >= 0.0, "record_margin", "must be 0 or more");
        c.check(self.record_for.0 <= 24 * HOUR, "record_for", "must be at most 1d");
        let params = Params {
            bucket: self.bucket.0,
            percentiles: self.percentiles.iter().map(|p| (*p, *p / 100.0)).collect(),
            latency: self.latency,
            per_upstream: self.per_upstream,
            min_samples: self.min_samples,
            widen_buckets: (self.widen_up_to.0 / self.bucket.0.max(1)).max(1),
            baseline_buckets: self.baseline_buckets,
            warmup_buckets: self.warmup_buckets,
            factor: self.factor,
            min_increase_ms: self.min_increase_ms,
            dispersion_z: self.dispersion_z,
            alert_buckets: self.alert_buckets,
            window_buckets: self.window_buckets,
            relearn_after: self.relearn_after.0,
            recall_peaks_for: self.recall_peaks_for.0,
            record_over: self.record_over.0,
            record_after: self.record_after.0,
            record_margin: self.record_margin,
            record_for: self.record_for.0,
        };
        c.finish((params, self.max_routes))
    }
}

/// Per watched percentile: observed value, its baseline, its threshold (ms).
type PerPercentile = Vec<(f64, f64, f64)>;

/// One closed bucket, as remembered in the alert window.
#[derive(Clone, Debug)]
enum Slot {
    /// Too few requests (or none) to judge.
    Sparse,
    /// Judged normal, or learned during warm-up.
    Normal,
    /// Above the threshold for at least one percentile.
    Slow { start: Millis, samples: u64, values: PerPercentile },
}

#[derive(Clone, Copy, Debug)]
struct Episode {
    start: Millis,
}

/// The most past episodes' peaks remembered per route.
const MAX_PEAKS: usize = 8;

/// Per watched percentile, as kept for record highs.
type Highs = [f32; MAX_PERCENTILES];

/// A route's record-high state: the requests of the current block (`record_for` of judged
/// buckets), and per hour the highest block values.
struct RecordHighs {
    /// Requests of the judged buckets since `block_start`.
    block: Histogram<u32>,
    block_start: Option<Millis>,
    /// Each of the block's buckets: how long it was and its own values.
    block_buckets: Vec<(Millis, Highs)>,
    /// (hour index, highest block values), oldest first, spanning at most `record_over`.
    hours: VecDeque<(Millis, Highs)>,
    /// When the route's first judged bucket began.
    since: Option<Millis>,
    /// The record run under way: its blocks have not joined `hours` yet.
    run: Option<RecordRun>,
}

struct RecordRun {
    start: Millis,
    /// The run's highest block values, and the highs its first block went above.
    peak: Highs,
    previous: Highs,
}

fn highs_of(values: impl IntoIterator<Item = f64>) -> Highs {
    let mut h = [0.0; MAX_PERCENTILES];
    h.iter_mut().zip(values).for_each(|(a, b)| *a = b as f32);
    h
}

fn raise(h: &mut Highs, by: &Highs) {
    h.iter_mut().zip(by).for_each(|(a, b)| *a = a.max(*b));
}

impl RecordHighs {
    fn new() -> Self {
        RecordHighs {
            block: new_histogram(),
            block_start: None,
            block_buckets: Vec::new(),
            hours: VecDeque::new(),
            since: None,
            run: None,
        }
    }

    /// The highest block values over the last `over` before `now` (0 where none).
    fn high(&self, now: Millis, over: Millis) -> Highs {
        let mut h = [0.0; MAX_PERCENTILES];
        for (_, v) in self.hours.iter().rev().take_while(|(hour, _)| (hour + 1) * HOUR > now - over) {
            raise(&mut h, v);
        }
        h
    }

    fn fold(&mut self, at: Millis, values: &Highs, over: Millis) {
        let hour = at.div_euclid(HOUR);
        match self.hours.back_mut() {
            Some((h, v)) if *h == hour => raise(v, values),
            _ => self.hours.push_back((hour, *values)),
        }
        while self.hours.front().is_some_and(|(h, _)| (h + 1) * HOUR <= at - over) {
            self.hours.pop_front();
        }
    }

    /// A bucket too sparse to judge: the block starts afresh after it.
    fn gap(&mut self) {
        self.block.reset();
        self.block_start = None;
        self.block_buckets.clear();
    }

    /// Adds the judged bucket `[start, end)` holding `bucket`'s requests, whose percentiles
    /// are `observed`. When that completes a block, judges it against the highs, with
    /// `judged` this bucket's (observed, baseline, threshold) per percentile (`None` while the
    /// baseline warms up). Returns whether a
    /// record run has just begun: the alert.
    fn add(
        &mut self,
        start: Millis,
        end: Millis,
        bucket: &Histogram<u32>,
        observed: &[f64],
        judged: Option<&[(f64, f64, f64)]>,
        p: &Params,
    ) -> bool {
        if p.record_over == 0 {
            return false;
        }
        let since = *self.since.get_or_insert(start);
        let block_start = *self.block_start.get_or_insert(start);
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.block.add(bucket);
        self.block_buckets.push((end - start, highs_of(observed.iter().copied())));
        if end - block_start < p.record_for {
            return false;
        }
        let values = highs_of(p.percentiles.iter().map(|(_, q)| self.block.value_at_quantile(*q) as f64));
        let high = self.high(end, p.record_over);
        // A percentile sets a record when the block's value is past its high by the margin
        // and past its baseline by `min_increase_ms`, and the buckets above the high make up
        // at least half the block: one slow minute in five moves a pooled p95, never this.
        let record = judged.is_some_and(|judged| {
            end - since >= p.record_after
                && (0..p.percentiles.len()).any(|i| {
                    let above: Millis =
                        self.block_buckets.iter().filter(|(_, v)| v[i] > high[i]).map(|(span, _)| span).sum();
                    let (value, high, base) = (f64::from(values[i]), f64::from(high[i]), judged[i].1);
                    high > 0.0
                        && value - base > (high - base).max(0.0) * (1.0 + p.record_margin)
                        && value >= base + p.min_increase_ms
                        && 2 * above >= end - block_start
                })
        });
        self.gap();
        if !record {
            if let Some(run) = self.run.take() {
                self.fold(end, &run.peak, p.record_over);
            }
            self.fold(end, &values, p.record_over);
            return false;
        }
        match &mut self.run {
            Some(run) => {
                raise(&mut run.peak, &values);
                false
            }
            None => {
                self.run = Some(RecordRun { start: block_start, peak: values, previous: high });
                true
            }
        }
    }
}

fn new_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, MAX_LATENCY_MS, 2).expect("valid histogram bounds")
}

/// Per route (or route/upstream) state.
struct RouteState {
    route: String,
    upstream: Option<String>,
    hist: Histogram<u32>,
    /// Index (`start / bucket`) of the bucket `hist` is filling.
    open: Millis,
    /// Index of the first bucket whose requests `hist` holds: before `open` while a quiet
    /// route's bucket is widening.
    span_start: Millis,
    /// How long the last judged bucket was (ms): `bucket`, or wider on a quiet route.
    judged_span: Millis,
    /// Per percentile: values of recent normal buckets, newest last.
    baseline: Vec<VecDeque<f64>>,
    /// Per percentile: values of the last `window_buckets` judged buckets, slow or not.
    recent: Vec<VecDeque<f64>>,
    /// The last `window_buckets` buckets, newest last.
    window: VecDeque<Slot>,
    episode: Option<Episode>,
    /// Per percentile, the highest value of the slow buckets since the last episode began.
    peak: Vec<f64>,
    /// Peaks of recent episodes and when each ended, oldest first.
    peaks: VecDeque<(Millis, Vec<f64>)>,
    record: RecordHighs,
}

impl RouteState {
    fn new(route: &str, upstream: Option<&str>, open: Millis, p: &Params) -> Self {
        RouteState {
            route: route.to_string(),
            upstream: upstream.map(str::to_string),
            hist: new_histogram(),
            open,
            span_start: open,
            judged_span: p.bucket,
            baseline: vec![VecDeque::with_capacity(p.baseline_buckets); p.percentiles.len()],
            recent: vec![VecDeque::with_capacity(p.window_buckets); p.percentiles.len()],
            window: VecDeque::with_capacity(p.window_buckets),
            episode: None,
            peak: vec![0.0; p.percentiles.len()],
            peaks: VecDeque::new(),
            record: RecordHighs::new(),
        }
    }

    /// Closes every bucket before bucket `idx` (the open one, then empty ones) and opens `idx`.
    fn advance_to(&mut self, idx: Millis, p: &Params, out: &mut Vec<Finding>) {
        // Past a full window of empty buckets (and a widest bucket), more of them change nothing.
        let mut budget = p.window_buckets as Millis + p.widen_buckets + 1;
        while self.open < idx && budget > 0 {
            self.close(p, out);
            self.open += 1;
            budget -= 1;
        }
        if self.open < idx {
            // skipped ahead over a long silence: nothing before it still widens
            self.open = idx;
            self.span_start = idx;
            self.hist.reset();
        }
    }

    fn push_slot(&mut self, slot: Slot, p: &Params) {
        if self.window.len() == p.window_buckets {
            // A slow bucket that leaves the window without having been part of an episode
            // was ordinary after all (a hiccup): learn it now, so the baseline is not biased
            // low on routes that are often a little slow.
            if let Some(Slot::Slow { values, .. }) = self.window.pop_front() {
                if self.episode.is_none() {
                    self.learn(values.iter().map(|v| v.0), p);
                }
            }
        }
        self.window.push_back(slot);
    }

    /// An episode ended at `end`: its peak is what the route is known to reach.
    fn remember_peak(&mut self, end: Millis, p: &Params) {
        if p.recall_peaks_for > 0 {
            if self.peaks.len() == MAX_PEAKS {
                self.peaks.pop_front();
            }
            self.peaks.push_back((end, self.peak.clone()));
        }
        self.peak.iter_mut().for_each(|x| *x = 0.0);
    }

    fn learn(&mut self, observed: impl Iterator<Item = f64>, p: &Params) {
        for (ring, v) in self.baseline.iter_mut().zip(observed) {
            if ring.len() == p.baseline_buckets {
                ring.pop_front();
            }
            ring.push_back(v);
        }
    }

    /// Closes the open bucket and judges it.
    fn close(&mut self, p: &Params, out: &mut Vec<Finding>) {
        let start = self.span_start * p.bucket;
        let end = (self.open + 1) * p.bucket;
        let samples = self.hist.len();
        if samples < p.min_samples {
            if self.open + 1 - self.span_start < p.widen_buckets {
                return; // widening: the next bucket's requests join this one
            }
            self.hist.reset();
            self.record.gap();
            self.span_start = self.open + 1;
            self.push_slot(Slot::Sparse, p);
            self.after_slot(end, p, out);
            return;
        }
        self.judged_span = end - start;
        self.span_start = self.open + 1;
        let observed: Vec<f64> = p.percentiles.iter().map(|(_, q)| self.hist.value_at_quantile(*q) as f64).collect();
        for (ring, v) in self.recent.iter_mut().zip(&observed) {
            if ring.len() == p.window_buckets {
                ring.pop_front();
            }
            ring.push_back(*v);
        }
        let warm = self.baseline[0].len() >= p.warmup_buckets;
        let mut slow = false;
        let mut values = Vec::with_capacity(observed.len());
        if warm {
            let now = end;
            self.peaks.retain(|(at, _)| now - *at < p.recall_peaks_for);
            for (i, (ring, v)) in self.baseline.iter().zip(&observed).enumerate() {
                let (base, sigma) = median_and_sigma(ring);
                let recalled = self.peaks.iter().map(|(_, pk)| pk[i]).fold(0.0, f64::max);
                let threshold =
                    (base * p.factor).max(base + p.min_increase_ms).max(base + p.dispersion_z * sigma).max(recalled);
                slow |= *v > threshold;
                values.push((*v, base, threshold));
            }
        }
        let record = self.record.add(start, end, &self.hist, &observed, warm.then_some(values.as_slice()), p);
        self.hist.reset();
        if slow {
            for (pk, v) in self.peak.iter_mut().zip(&observed) {
                *pk = pk.max(*v);
            }
        }
        if record {
            out.push(self.record_finding(end, &values, p));
        }
        if slow {
            self.push_slot(Slot::Slow { start, samples, values }, p);
        } else {
            self.learn(observed.iter().copied(), p);
            self.push_slot(Slot::Normal, p);
        }
        self.after_slot(end, p, out);
    }

    /// Opens, keeps or closes the episode after a bucket ending at `end` was added.
    fn after_slot(&mut self, end: Millis, p: &Params, out: &mut Vec<Finding>) {
        let slow = self.window.iter().filter(|s| matches!(s, Slot::Slow { .. })).count();
        match self.episode {
            None if slow >= p.alert_buckets => {
                let start = self
                    .window
                    .iter()
                    .find_map(|s| match s {
                        Slot::Slow { start, .. } => Some(*start),
                        _ => None,
                    })
                    .expect("a slow slot exists");
                self.episode = Some(Episode { start });
                out.push(self.finding(start, end, slow, p));
            }
            Some(_) if slow == 0 => {
                self.episode = None;
                self.remember_peak(end, p);
            }
            // hiccups that never made an episode leave no peak behind
            None if slow == 0 => self.peak.iter_mut().for_each(|x| *x = 0.0),
            Some(ep) if end - ep.start >= p.relearn_after => {
                // A level this lasting is the new normal: learn it afresh.
                for (base, recent) in self.baseline.iter_mut().zip(&self.recent) {
                    base.clear();
                    base.extend(recent.iter().copied());
                }
                self.window.clear();
                self.episode = None;
                self.peak.iter_mut().for_each(|x| *x = 0.0);
            }
            _ => {}
        }
    }

    fn finding(&self, start: Millis, end: Millis, slow: usize, p: &Params) -> Finding {
        let slow_slots: Vec<(&u64, &PerPercentile)> = self
            .window
            .iter()
            .filter_map(|s| match s {
                Slot::Slow { samples, values, .. } => Some((samples, values)),
                _ => None,
            })
            .collect();
        let requests: u64 = slow_slots.iter().map(|(n, _)| **n).sum();
        // Per percentile: median observed over the slow buckets, against the latest baseline.
        let latest = slow_slots.last().expect("a slow slot exists").1;
        let mut per = Vec::with_capacity(p.percentiles.len());
        for (i, (pct, _)) in p.percentiles.iter().enumerate() {
            let mut obs: Vec<f64> = slow_slots.iter().map(|(_, v)| v[i].0).collect();
            let observed = median_of(&mut obs);
            let (_, base, threshold) = latest[i];
            per.push((*pct, observed, base, threshold));
        }
        // Report the percentile that departed most.
        let &(pct, observed, base, threshold) = per
            .iter()
            .max_by(|a, b| (a.1 / a.2.max(1.0)).total_cmp(&(b.1 / b.2.max(1.0))))
            .expect("at least one percentile");
        let duration = end - start;
        let summary = format!(
            "p{} latency {:.0} ms vs baseline {:.0} ms for {} ({} of the last {} buckets of {} slow)",
            fmt_pct(pct),
            observed,
            base,
            human_duration(duration),
            slow,
            self.window.len(),
            human_duration(self.judged_span),
        );
        let mut evidence = self.evidence("regression", pct, observed, base, duration);
        evidence.insert("threshold_ms".into(), json!(threshold));
        evidence.insert("slow_buckets".into(), json!(slow));
        evidence.insert("window_buckets".into(), json!(self.window.len()));
        evidence.insert("bucket_s".into(), json!(self.judged_span / 1000));
        evidence.insert("requests_in_slow_buckets".into(), json!(requests));
        evidence.insert(
            "percentiles".into(),
            Value::Array(
                per.iter()
                    .map(|(pct, o, b, t)| json!({"percentile": pct, "observed_ms": o, "baseline_ms": b, "threshold_ms": t}))
                    .collect(),
            ),
        );
        self.route_finding(start, end, summary, evidence)
    }
}

impl RouteState {
    /// A record run that has just begun, its first block ending at `end`; `values` are the
    /// last bucket's (observed, baseline, threshold) per percentile.
    fn record_finding(&self, end: Millis, values: &PerPercentile, p: &Params) -> Finding {
        let run = self.record.run.as_ref().expect("a record run is under way");
        // Report the percentile furthest past its previous high.
        let ratio = |i: usize| f64::from(run.peak[i]) / f64::from(run.previous[i]).max(1.0);
        let i = (0..p.percentiles.len()).max_by(|a, b| ratio(*a).total_cmp(&ratio(*b))).expect("a percentile");
        let pct = p.percentiles[i].0;
        let observed = f64::from(run.peak[i]).round();
        let previous = f64::from(run.previous[i]).round();
        let base = values[i].1;
        let duration = end - run.start;
        let summary = format!(
            "p{} latency {:.0} ms, the highest in {} (before: at most {:.0} ms; baseline {:.0} ms), for {}",
            fmt_pct(pct),
            observed,
            human_duration(p.record_over),
            previous,
            base,
            human_duration(duration),
        );
        let mut evidence = self.evidence("record_high", pct, observed, base, duration);
        evidence.insert("previous_high_ms".into(), json!(previous));
        evidence.insert("record_over_s".into(), json!(p.record_over / 1000));
        evidence.insert("bucket_s".into(), json!(self.judged_span / 1000));
        self.route_finding(run.start, end, summary, evidence)
    }

    /// What both kinds of alert report: which signal, the route (and upstream), the
    /// percentile, its observed value against the baseline, and how long it lasted.
    fn evidence(&self, signal: &str, pct: f64, observed: f64, base: f64, duration: Millis) -> Map<String, Value> {
        let mut evidence = Map::new();
        evidence.insert("signal".into(), json!(signal));
        evidence.insert("route".into(), json!(self.route));
        if let Some(u) = &self.upstream {
            evidence.insert("upstream".into(), json!(u));
        }
        evidence.insert("percentile".into(), json!(pct));
        evidence.insert("observed_ms".into(), json!(observed));
        evidence.insert("baseline_ms".into(), json!(base));
        evidence.insert("ratio".into(), json!(round2(observed / base.max(1.0))));
        evidence.insert("duration_s".into(), json!(duration / 1000));
        evidence
    }

    fn route_finding(&self, start: Millis, end: Millis, summary: String, evidence: Map<String, Value>) -> Finding {
        Finding {
            within: None,
            entity: Entity::new(EntityKind::Route, self.route.clone()),
            client_id: None,
            client_id_source: Default::default(),
            token_fingerprint: None,
            window_start: start,
            window_end: end,
            summary,
            evidence,
        }
    }
}

impl RouteState {
    /// What the route (or route and upstream) holds, for [`Detector::describe`]: per watched
    /// percentile its baseline and recent buckets (oldest first), the open bucket, the alert
    /// window and the episode.
    fn describe(&self, p: &Params) -> (Map<String, Value>, Vec<Value>) {
        let warm = self.baseline[0].len() >= p.warmup_buckets;
        let as_of = (self.open * p.bucket).max(self.peaks.back().map_or(Millis::MIN, |x| x.0));
        let mut series = Vec::with_capacity(p.percentiles.len());
        for (i, (pct, _)) in p.percentiles.iter().enumerate() {
            let mut s = Map::new();
            s.insert("percentile".into(), json!(format!("p{}", fmt_pct(*pct))));
            if let Some(u) = &self.upstream {
                s.insert("upstream".into(), json!(u));
            }
            s.insert("window_ms".into(), json!(p.bucket * p.window_buckets as Millis));
            s.insert("bucket_ms".into(), json!(p.bucket));
            s.insert("baseline_ms".into(), json!(self.baseline[i].iter().collect::<Vec<_>>()));
            s.insert("recent_ms".into(), json!(self.recent[i].iter().collect::<Vec<_>>()));
            if !self.baseline[i].is_empty() {
                let (base, sigma) = median_and_sigma(&self.baseline[i]);
                s.insert("baseline_median_ms".into(), json!(base));
                if warm {
                    // as `close` judges the next bucket: the peaks recalled now included
                    let recalled = self
                        .peaks
                        .iter()
                        .filter(|(at, _)| as_of - *at < p.recall_peaks_for)
                        .map(|(_, pk)| pk[i])
                        .fold(0.0, f64::max);
                    let threshold = (base * p.factor)
                        .max(base + p.min_increase_ms)
                        .max(base + p.dispersion_z * sigma)
                        .max(recalled);
                    s.insert("threshold_ms".into(), json!(round2(threshold)));
                }
            }
            series.push(Value::Object(s));
        }
        let slow = self.window.iter().filter(|s| matches!(s, Slot::Slow { .. })).count();
        let sparse = self.window.iter().filter(|s| matches!(s, Slot::Sparse)).count();
        let mut o = Map::new();
        if let Some(u) = &self.upstream {
            o.insert("upstream".into(), json!(u));
        }
        o.insert(
            "open_bucket".into(),
            json!({
                "start": format_ts(self.span_start * p.bucket),
                "requests": self.hist.len(),
                "min_samples": p.min_samples,
            }),
        );
        o.insert(
            "window".into(),
            json!({
                "buckets": self.window.len(),
                "slow_buckets": slow,
                "sparse_buckets": sparse,
                "alert_buckets": p.alert_buckets,
                "window_buckets": p.window_buckets,
                "last_bucket_ms": self.judged_span,
            }),
        );
        o.insert(
            "learning".into(),
            json!({
                "learned_buckets": self.baseline[0].len(),
                "warmup_buckets": p.warmup_buckets,
                "warm": warm,
            }),
        );
        if p.record_over > 0 {
            // What the next block has to beat, as `RecordHighs::add` judges it.
            let high = self.record.high(as_of, p.record_over);
            let highs: Vec<Value> = p
                .percentiles
                .iter()
                .zip(&high)
                .map(|((pct, _), v)| json!({"percentile": format!("p{}", fmt_pct(*pct)), "high_ms": v}))
                .collect();
            let run = self.record.run.as_ref().map(|r| json!({"start": format_ts(r.start)}));
            o.insert(
                "record".into(),
                json!({
                    "over_ms": p.record_over,
                    "watched_since": self.record.since.map(format_ts),
                    "after_ms": p.record_after,
                    "highs": highs,
                    "run": run,
                }),
            );
        }
        let episode = self.episode.map(|ep| {
            let peak: Vec<Value> = p
                .percentiles
                .iter()
                .zip(&self.peak)
                .map(|((pct, _), v)| json!({"percentile": format!("p{}", fmt_pct(*pct)), "peak_ms": v}))
                .collect();
            json!({"start": format_ts(ep.start), "peak": peak})
        });
        o.insert("episode".into(), json!(episode));
        (o, series)
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn fmt_pct(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

/// Median of a non-empty slice (sorted in place).
fn median_of(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median and robust standard deviation of a ring: the larger of 1.4826 × MAD and the
/// upper spread (90th percentile − median) / 1.2816. Both estimate σ for normal data; the
/// second also sees a skewed or two-level route (say 40 % of minutes carry a burst of slow
/// requests) whose MAD only describes its usual level.
fn median_and_sigma(ring: &VecDeque<f64>) -> (f64, f64) {
    let mut v: Vec<f64> = ring.iter().copied().collect();
    let med = median_of(&mut v);
    // `v` is sorted now.
    let q90 = v[((v.len() - 1) as f64 * 0.9).round() as usize];
    let upper = (q90 - med).max(0.0) / UPPER_TO_SIGMA;
    for x in v.iter_mut() {
        *x = (*x - med).abs();
    }
    (med, (MAD_TO_SIGMA * median_of(&mut v)).max(upper))
}

pub struct LatencyAnomaly {
    p: Params,
    routes: KeyedState<String, RouteState>,
    /// Reused to build the state key without allocating per event.
    key: String,
    /// Bucket index up to which (exclusive) every route's buckets have been closed.
    closed_through: Millis,
}

impl LatencyAnomaly {
    pub fn build(file: &DetectorFile, limits: Limits) -> Result<Box<dyn Detector>, Vec<ConfigError>> {
        let raw: LatencyAnomalyParams = parse_params(file)?;
        let (p, max_routes) = raw.into_runtime(file)?;
        Ok(Box::new(Self::new(p, max_routes.min(limits.max_keys), limits.idle_timeout)))
    }

    fn new(p: Params, max_routes: usize, idle: Millis) -> Self {
        LatencyAnomaly { p, routes: KeyedState::new(max_routes, idle), key: String::new(), closed_through: Millis::MIN }
    }
}

impl Detector for LatencyAnomaly {
    /// A route's baseline is route-wide: every instance of the route (and upstream) lands together.
    fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String> {
        (shard == Shard::Route).then(|| ev.route.as_deref().map(str::to_string)).flatten()
    }

    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        let Some(route) = ev.route.as_deref() else { return };
        let latency = match self.p.latency {
            LatencyField::Total => ev.latency_ms,
            LatencyField::Upstream => ev.upstream_latency_ms,
        };
        let Some(ms) = latency.filter(|l| l.is_finite() && *l >= 0.0) else { return };
        let upstream = if self.p.per_upstream { ev.upstream.as_deref() } else { None };
        self.key.clear();
        self.key.push_str(route);
        if let Some(u) = upstream {
            self.key.push('\u{1f}');
            self.key.push_str(u);
        }
        let p = &self.p;
        let idx = ev.ts.div_euclid(p.bucket);
        let st = self.routes.entry(&self.key, ev.ts, || RouteState::new(route, upstream, idx, p));
        st.advance_to(idx, p, out);
        // An event older than the open bucket (cannot happen in engine order) joins the open one.
        st.hist.saturating_record((ms.ceil() as u64).clamp(1, MAX_LATENCY_MS));
    }

    fn on_watermark(&mut self, wm: Millis, out: &mut Vec<Finding>) {
        self.routes.sweep(wm);
        // Everything before `wm` has been seen: close buckets that ended, once per boundary.
        let through = wm.div_euclid(self.p.bucket);
        if through <= self.closed_through {
            return;
        }
        self.closed_through = through;
        let p = &self.p;
        for (_, st) in self.routes.iter_mut() {
            st.advance_to(through, p, out);
        }
    }

    fn stats(&self) -> StateStats {
        self.routes.stats()
    }

    /// A route: per watched percentile, the buckets its baseline is the median of and the
    /// recent judged buckets (`series`, oldest first, for the plot), the open bucket's
    /// requests, the alert window and any open episode. With `per_upstream`, one of each per
    /// upstream: every `series` element names its upstream, `upstreams` holds the rest.
    fn describe(&self, entity: &Entity) -> Option<Value> {
        if entity.kind != EntityKind::Route {
            return None;
        }
        let p = &self.p;
        let mut held: Vec<&RouteState> = if p.per_upstream {
            self.routes.iter().map(|(_, st)| st).filter(|st| st.route == entity.id).collect()
        } else {
            self.routes.get_by(entity.id.as_str()).into_iter().collect()
        };
        if held.is_empty() {
            return None;
        }
        held.sort_by(|a, b| a.upstream.cmp(&b.upstream));
        let mut o = Map::new();
        o.insert("route".into(), json!(entity.id));
        o.insert("bucket_ms".into(), json!(p.bucket));
        o.insert("latency".into(), json!(if p.latency == LatencyField::Total { "total" } else { "upstream" }));
        let mut series = Vec::new();
        let mut upstreams = Vec::new();
        for st in held {
            let (state, s) = st.describe(p);
            series.extend(s);
            if p.per_upstream {
                upstreams.push(Value::Object(state));
            } else {
                o.extend(state);
            }
        }
        o.insert("series".into(), Value::Array(series));
        if p.per_upstream {
            o.insert("upstreams".into(), Value::Array(upstreams));
        }
        Some(Value::Object(o))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::detectors::testing::{describe_twice, feed};
    use crate::detectors::Allow;

    const MIN: Millis = 60_000;
    /// 2026-01-01T00:00:00Z, a bucket boundary.
    const T0: Millis = 1_767_225_600_000;
    const ROUTE: &str = "GET /v1/orders/{id}";
    /// Latency multipliers cycled within a minute: p50 ≈ 1.0×, p95 ≈ 2.0× the level.
    const SPREAD: [f64; 10] = [0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 0.95, 1.05, 1.4, 2.0];

    fn file(params: &str) -> DetectorFile {
        let text = format!("id = \"lat\"\nkind = \"latency_anomaly\"\n[params]\n{params}\n");
        DetectorFile::parse(&text, Path::new("lat.toml")).expect("detector file parses")
    }

    fn detector(params: &str) -> Box<dyn Detector> {
        LatencyAnomaly::build(&file(params), Limits::default()).unwrap_or_else(|e| panic!("params rejected: {e:?}"))
    }

    fn ev(ts: Millis, route: &str, latency: f64) -> Event {
        Event { ts, route: Some(route.into()), latency_ms: Some(latency), status: Some(200), ..Default::default() }
    }

    /// `rate` requests in minute `m` whose latencies spread around `level` ms.
    fn minute(out: &mut Vec<Event>, route: &str, m: i64, rate: usize, level: f64) {
        for j in 0..rate {
            let ts = T0 + m * MIN + (j as i64 * MIN) / rate as i64;
            out.push(ev(ts, route, level * SPREAD[(j * 7 + m as usize * 3) % SPREAD.len()]));
        }
    }

    /// Traffic where minute `m` has `rate(m)` requests around `level(m)` ms.
    fn traffic(minutes: std::ops::Range<i64>, rate: impl Fn(i64) -> usize, level: impl Fn(i64) -> f64) -> Vec<Event> {
        let mut v = Vec::new();
        for m in minutes {
            minute(&mut v, ROUTE, m, rate(m), level(m));
        }
        v
    }

    /// Feeds events in time order, with a watermark every second of event time and a final
    /// far-future one, as the engine does.
    fn run(d: &mut dyn Detector, events: &[Event]) -> Vec<Finding> {
        let mut out = feed(d, events);
        let end = events.last().map(|e| e.ts).unwrap_or(T0);
        d.on_watermark(end + 24 * 3_600_000, &mut out);
        out
    }

    /// A 10-level LCG in [0, 1): deterministic noise for tests.
    fn noise(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn sustained_regression_fires_once_with_baseline_observed_and_duration() {
        // 2 h at 100 ms (p95 200 ms), then 30 minutes at 4×, 40 req/min.
        let evs = traffic(0..150, |_| 40, |m| if m >= 120 { 400.0 } else { 100.0 });
        let f = run(&mut *detector(""), &evs);
        assert_eq!(f.len(), 1, "{f:#?}");
        let f = &f[0];
        assert_eq!(f.entity, Entity::new(EntityKind::Route, ROUTE));
        assert_eq!(f.window_start, T0 + 120 * MIN, "episode starts at the first slow bucket");
        assert_eq!(f.window_end, T0 + 126 * MIN, "fires when the 6th slow bucket closes");
        let e = &f.evidence;
        let base = e["baseline_ms"].as_f64().unwrap();
        let obs = e["observed_ms"].as_f64().unwrap();
        let pct = e["percentile"].as_f64().unwrap();
        assert!(pct == 50.0 || pct == 95.0);
        assert!(obs / base > 3.5 && obs / base < 4.5, "{e:?}");
        assert_eq!(e["duration_s"], json!(360));
        assert_eq!(e["slow_buckets"], json!(6));
        assert!(
            f.summary.starts_with(&format!("p{} latency {:.0} ms vs baseline {:.0} ms for 6m", pct, obs, base)),
            "{}",
            f.summary
        );
    }

    #[test]
    fn one_slow_bucket_or_one_short_of_k_does_not_fire() {
        // One minute at 20×.
        let evs = traffic(0..120, |_| 40, |m| if m == 60 { 2000.0 } else { 100.0 });
        assert!(run(&mut *detector(""), &evs).is_empty());
        // Five slow minutes (alert_buckets is 6).
        let evs = traffic(0..120, |_| 40, |m| if (60..65).contains(&m) { 2000.0 } else { 100.0 });
        assert!(run(&mut *detector(""), &evs).is_empty());
        // Six do.
        let evs = traffic(0..120, |_| 40, |m| if (60..66).contains(&m) { 2000.0 } else { 100.0 });
        assert_eq!(run(&mut *detector(""), &evs).len(), 1);
    }

    #[test]
    fn slow_drift_of_20_percent_an_hour_does_not_fire() {
        let evs = traffic(0..10 * 60, |_| 40, |m| 100.0 * 1.2f64.powf(m as f64 / 60.0));
        let mut d = detector("");
        assert!(run(&mut *d, &evs).is_empty());
        // Ten hours later the route is 6× slower than it started, and a real regression on
        // top of that drift is still caught.
        let mut evs2 = traffic(0..10 * 60, |_| 40, |m| 100.0 * 1.2f64.powf(m as f64 / 60.0));
        evs2.extend(traffic(600..630, |_| 40, |_| 4.0 * 100.0 * 1.2f64.powf(10.0)));
        assert_eq!(run(&mut *detector(""), &evs2).len(), 1);
    }

    #[test]
    fn traffic_ramp_of_ten_times_at_the_same_latency_does_not_fire() {
        // 30 req/min, then 300 req/min, then back down to 30: latency unchanged.
        let evs = traffic(0..240, |m| if (90..180).contains(&m) { 300 } else { 30 }, |_| 100.0);
        assert!(run(&mut *detector(""), &evs).is_empty());
        // A quiet route (judged over widened buckets) waking up at the same latency neither.
        let evs = traffic(0..240, |m| if m < 120 { 5 } else { 50 }, |_| 100.0);
        assert!(run(&mut *detector(""), &evs).is_empty());
    }

    #[test]
    fn a_quiet_route_is_judged_over_widened_buckets() {
        // Two calls a minute: a bucket of 20 requests spans 10 minutes. Ten hours at 100 ms,
        // then four hours at 400 ms: found, once, within a few widened buckets.
        let evs = traffic(0..840, |_| 2, |m| if m >= 600 { 400.0 } else { 100.0 });
        let found = run(&mut *detector(""), &evs);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert!(f.window_start >= T0 + 600 * MIN - 10 * MIN, "{}", f.window_start);
        assert!(f.window_end <= T0 + 600 * MIN + 90 * MIN, "found within 90 minutes: {}", f.window_end);
        assert_eq!(f.evidence["bucket_s"], json!(600), "the widened bucket is reported");
        // With fixed buckets (no widening), the same route is never judged.
        assert!(run(&mut *detector(r#"widen_up_to = "1m""#), &evs).is_empty());
        // Too quiet even for the widest bucket (20 calls in more than 2 hours): not judged.
        let sparse = traffic(0..840, |m| usize::from(m % 7 == 0), |m| if m >= 600 { 400.0 } else { 100.0 });
        assert!(run(&mut *detector(""), &sparse).is_empty());
    }

    #[test]
    fn warm_up_is_respected() {
        // Regression at minute 20, before 30 buckets were learned: nothing, for its whole run.
        let evs = traffic(0..29, |_| 40, |m| if m >= 20 { 500.0 } else { 100.0 });
        assert!(run(&mut *detector(""), &evs).is_empty());
        // The same regression after warm-up fires.
        let evs = traffic(0..45, |_| 40, |m| if m >= 35 { 500.0 } else { 100.0 });
        assert_eq!(run(&mut *detector(""), &evs).len(), 1);
        // And a longer warm-up delays it.
        assert!(run(&mut *detector("warmup_buckets = 40"), &evs).is_empty());
    }

    #[test]
    fn noisy_but_stationary_route_does_not_fire() {
        // Every minute's level jitters ±40 %, requests carry heavy-tailed outliers (1 in 20
        // takes 5–15×), and the rate swings between 20 and 200 req/min. Six hours.
        let mut seed = 7u64;
        let mut evs = Vec::new();
        for m in 0..360 {
            let level = 150.0 * (0.6 + 0.8 * noise(&mut seed));
            let rate = 20 + (noise(&mut seed) * 180.0) as usize;
            for j in 0..rate {
                let ts = T0 + m * MIN + (j as i64 * MIN) / rate as i64;
                let mut l = level * (0.5 + noise(&mut seed));
                if noise(&mut seed) < 0.05 {
                    l *= 5.0 + 10.0 * noise(&mut seed);
                }
                evs.push(ev(ts, ROUTE, l));
            }
        }
        let f = run(&mut *detector(""), &evs);
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn route_with_too_little_traffic_never_alerts() {
        // 1 req/min for 6 hours, 10× slower for the last 2.
        let evs = traffic(0..360, |_| 1, |m| if m >= 240 { 1000.0 } else { 100.0 });
        let mut d = detector("");
        assert!(run(&mut *d, &evs).is_empty());
    }

    #[test]
    fn episode_fires_once_and_a_new_episode_after_recovery_fires_again() {
        // 20 slow minutes, 30 normal, 20 slow again: two episodes, two findings (the rule's
        // cooldown may hold back the second; the detector itself must not repeat within one).
        let slow = |m: i64| (60..80).contains(&m) || (110..130).contains(&m);
        let evs = traffic(0..150, |_| 40, |m| if slow(m) { 400.0 } else { 100.0 });
        let f = run(&mut *detector(r#"recall_peaks_for = "0s""#), &evs);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!(f[0].window_start, T0 + 60 * MIN);
        assert_eq!(f[1].window_start, T0 + 110 * MIN);
        // Recalling the first episode's peak (the default, a day): the same slowdown again is
        // what the route is known to do, and stays quiet; a worse one is found.
        assert_eq!(run(&mut *detector(""), &evs).len(), 1);
        let worse = traffic(
            0..150,
            |_| 40,
            |m| match m {
                60..80 => 400.0,
                110..130 => 1200.0,
                _ => 100.0,
            },
        );
        let f = run(&mut *detector(""), &worse);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!(f[1].window_start, T0 + 110 * MIN);
        // A day later the peak is forgotten: the same slowdown is found again.
        let later = |m: i64| (60..80).contains(&m) || (1560..1580).contains(&m);
        let evs = traffic(0..1600, |_| 40, |m| if later(m) { 400.0 } else { 100.0 });
        assert_eq!(run(&mut *detector(""), &evs).len(), 2);
        // A flapping regression (slow 4 of every 5 minutes) is one episode.
        let evs = traffic(0..150, |_| 40, |m| if m >= 60 && m % 5 != 0 { 400.0 } else { 100.0 });
        assert_eq!(run(&mut *detector("relearn_after = \"3h\""), &evs).len(), 1);
    }

    #[test]
    fn a_lasting_new_level_is_learned_after_relearn_after() {
        // 2 h at 100 ms, then 3× for 3 h (a slower release that stays), then 4× more on top.
        let level = |m: i64| match m {
            _ if m < 120 => 100.0,
            _ if m < 300 => 300.0,
            _ => 1200.0,
        };
        let evs = traffic(0..330, |_| 40, level);
        // Relearning after 1 h: one alert for the step, none while at the new level, and one
        // for the regression on top of it, measured against the new level.
        let f = run(&mut *detector(""), &evs);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!(f[0].window_start, T0 + 120 * MIN);
        assert_eq!(f[1].window_start, T0 + 300 * MIN);
        let base = f[1].evidence["baseline_ms"].as_f64().unwrap();
        assert!(base >= 300.0, "baseline relearned at the new level: {base}");
        // Without relearning, the step is one long episode: a single alert.
        let f = run(&mut *detector("relearn_after = \"12h\""), &evs);
        assert_eq!(f.len(), 1, "{f:#?}");
    }

    const DAY: i64 = 24 * 60;

    /// Record highs alone: `factor = 100` keeps the baseline thresholds out of the way.
    const RECORDS_ONLY: &str = "factor = 100.0";

    #[test]
    fn a_short_slowdown_to_a_weekly_high_is_a_record_alerted_at_once() {
        // 25 h at 100 ms, then 5 minutes at 1.8× (too short for 6 slow buckets of 10), then back.
        let level = |m: i64| if (25 * 60..25 * 60 + 5).contains(&m) { 180.0 } else { 100.0 };
        let evs = traffic(0..26 * 60, |_| 20, level);
        let f = run(&mut *detector(""), &evs);
        assert_eq!(f.len(), 1, "{f:#?}");
        let f = &f[0];
        assert_eq!(f.window_start, T0 + 25 * 60 * MIN, "the run starts with its first block");
        assert_eq!(f.window_end, T0 + (25 * 60 + 5) * MIN, "alerted when the block closes");
        let e = &f.evidence;
        assert_eq!(e["signal"], json!("record_high"));
        assert_eq!(e["record_over_s"], json!(7 * 24 * 3600));
        let (obs, prev, base) = (
            e["observed_ms"].as_f64().unwrap(),
            e["previous_high_ms"].as_f64().unwrap(),
            e["baseline_ms"].as_f64().unwrap(),
        );
        assert!(obs > prev * 1.5 && obs >= base + 50.0, "{e:?}");
        assert!(f.summary.contains(&format!("the highest in {}", human_duration(7 * 24 * 3_600_000))), "{}", f.summary);
        // The console shows what the next block has to beat: the run's peak has joined the highs.
        let mut d = detector("");
        let _ = feed(&mut *d, &evs);
        let desc = describe_twice(&*d, &Entity::new(EntityKind::Route, ROUTE)).expect("route held");
        let rec = &desc["record"];
        assert_eq!(rec["over_ms"], json!(7 * 24 * 3_600_000));
        assert_eq!(rec["watched_since"], json!(format_ts(T0)));
        assert_eq!(rec["run"], Value::Null, "{rec}");
        assert_eq!(rec["highs"][0]["percentile"], json!("p50"));
        assert!(rec["highs"][0]["high_ms"].as_f64().unwrap() >= 170.0, "{rec}");
        // The same slowdown after only 20 h of history is not judged as a record.
        let evs = traffic(0..21 * 60, |_| 20, |m| if (20 * 60..20 * 60 + 5).contains(&m) { 180.0 } else { 100.0 });
        assert!(run(&mut *detector(""), &evs).is_empty(), "record_after: a route is watched for a day first");
        // Off with record_over = "0s".
        let evs = traffic(0..26 * 60, |_| 20, level);
        assert!(run(&mut *detector("record_over = \"0s\""), &evs).is_empty());
    }

    #[test]
    fn one_slow_minute_after_days_of_history_is_no_record() {
        // One minute at 10× after 25 h: a pooled p95 would jump, but that minute is a fifth of its block.
        let evs = traffic(0..26 * 60, |_| 20, |m| if m == 25 * 60 + 2 { 1000.0 } else { 100.0 });
        assert!(run(&mut *detector(""), &evs).is_empty());
    }

    #[test]
    fn a_daily_peak_is_no_record_the_day_after() {
        // Three days with an evening hour at 1.8×, and noise: the second and third evenings reach
        // what the first did. (The first is before `record_after`.)
        let mut seed = 7u64;
        let jitter: Vec<f64> = (0..3 * DAY).map(|_| 0.95 + 0.1 * noise(&mut seed)).collect();
        let level = move |m: i64| {
            let peak = (18 * 60..19 * 60).contains(&(m % DAY));
            jitter[m as usize] * if peak { 180.0 } else { 100.0 }
        };
        let evs = traffic(0..3 * DAY, |_| 20, level);
        let f = run(&mut *detector(RECORDS_ONLY), &evs);
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn the_next_record_has_to_beat_the_last_run() {
        // After 25 h at 100 ms: 20 minutes at 200 ms (a record), back to normal for an hour,
        // 20 minutes at 202 ms (within the margin of the last run: no record), back, then
        // 20 minutes at 300 ms (a record again).
        let level = |m: i64| match m - 25 * 60 {
            0..20 => 200.0,
            80..100 => 202.0,
            160..180 => 300.0,
            _ => 100.0,
        };
        let evs = traffic(0..28 * 60, |_| 20, level);
        let f = run(&mut *detector(RECORDS_ONLY), &evs);
        let starts: Vec<i64> = f.iter().map(|f| (f.window_start - T0) / MIN - 25 * 60).collect();
        assert_eq!(starts, vec![0, 160], "{f:#?}");
        assert!(f.iter().all(|f| f.evidence["signal"] == json!("record_high")));
        let prev = f[1].evidence["previous_high_ms"].as_f64().unwrap();
        assert!(prev >= 190.0, "measured against the first run's peak: {prev}");
    }

    #[test]
    fn record_params_are_checked() {
        for (params, field) in [
            ("record_over = \"30m\"", "record_over"),
            ("record_after = \"8d\"", "record_after"),
            ("record_margin = -0.1", "record_margin"),
            ("record_for = \"2d\"", "record_for"),
        ] {
            let Err(errs) = LatencyAnomaly::build(&file(params), Limits::default()) else {
                panic!("{params} accepted")
            };
            assert!(errs.iter().any(|e| e.to_string().contains(field)), "{params}: {errs:?}");
        }
    }

    #[test]
    fn per_upstream_baselines_report_the_route_and_the_upstream() {
        let mut evs = Vec::new();
        for m in 0..90 {
            let mut a = Vec::new();
            minute(&mut a, ROUTE, m, 40, 100.0);
            for e in &mut a {
                e.upstream = Some("orders-v1".into());
            }
            let mut b = Vec::new();
            // orders-v2 is 5× slower than v1 all along (its own normal) and regresses at 60.
            minute(&mut b, ROUTE, m, 40, if m >= 60 { 2000.0 } else { 500.0 });
            for e in &mut b {
                e.upstream = Some("orders-v2".into());
                e.ts += 1;
            }
            evs.extend(a);
            evs.extend(b);
        }
        evs.sort_by_key(|e| e.ts);
        let f = run(&mut *detector("per_upstream = true"), &evs);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].entity, Entity::new(EntityKind::Route, ROUTE));
        assert_eq!(f[0].evidence["upstream"], json!("orders-v2"));
        assert_eq!(f[0].evidence["route"], json!(ROUTE));
    }

    #[test]
    fn upstream_latency_can_be_watched_instead_of_total() {
        // Total latency regresses (a slow client network, say) but upstream time does not.
        let mut evs = traffic(0..90, |_| 40, |m| if m >= 60 { 500.0 } else { 100.0 });
        for e in &mut evs {
            e.upstream_latency_ms = Some(50.0 + (e.ts / 1000 % 7) as f64);
        }
        assert_eq!(run(&mut *detector(""), &evs).len(), 1);
        assert!(run(&mut *detector("latency = \"upstream\""), &evs).is_empty());
    }

    #[test]
    fn describe_shows_the_baseline_and_recent_series_per_percentile() {
        // 45 minutes at 100 ms, then 8 at 400 ms: an episode is open
        let evs = traffic(0..53, |_| 40, |m| if m >= 45 { 400.0 } else { 100.0 });
        let mut d = detector("");
        let found = feed(&mut *d, &evs);
        assert_eq!(found.len(), 1, "{found:#?}");
        let route = Entity::new(EntityKind::Route, ROUTE);
        let got = describe_twice(&*d, &route).expect("held");
        assert_eq!(got["route"], json!(ROUTE));
        let series = got["series"].as_array().unwrap();
        assert_eq!(series.len(), 2, "one per percentile: {got:#}");
        assert_eq!(series[0]["percentile"], json!("p50"));
        assert_eq!(series[1]["percentile"], json!("p95"));
        assert_eq!(series[1]["window_ms"], json!(10 * MIN));
        let baseline = series[1]["baseline_ms"].as_array().unwrap();
        let recent = series[1]["recent_ms"].as_array().unwrap();
        assert_eq!(baseline.len(), 45, "every normal minute, none of the slow ones");
        assert_eq!(recent.len(), 10, "the last window_buckets judged buckets");
        let at = |v: &Value| v.as_f64().unwrap();
        assert!(baseline.iter().all(|v| at(v) < 250.0), "{baseline:?}");
        assert!(at(&recent[0]) < 250.0 && at(&recent[9]) > 600.0, "oldest first: {recent:?}");
        assert!(at(&series[1]["threshold_ms"]) > at(&series[1]["baseline_median_ms"]));
        assert_eq!(got["learning"]["warm"], json!(true));
        assert_eq!(got["window"]["slow_buckets"], json!(7));
        assert_eq!(got["episode"]["start"], json!(format_ts(T0 + 45 * MIN)));
        assert!(got["open_bucket"]["requests"].as_u64().unwrap() > 0);
        assert_eq!(describe_twice(&*d, &Entity::new(EntityKind::Route, "GET /elsewhere")), None);
        assert_eq!(describe_twice(&*d, &Entity::new(EntityKind::Token, ROUTE)), None);
        // describing changed nothing: the rest of the run finds what it would have
        let rest = traffic(53..60, |_| 40, |_| 400.0);
        assert!(feed(&mut *d, &rest).is_empty(), "the episode stays open");

        // per upstream: a series per percentile and upstream, each naming its upstream
        let mut evs = traffic(0..40, |_| 40, |_| 100.0);
        for (i, e) in evs.iter_mut().enumerate() {
            e.upstream = Some(["orders-v1", "orders-v2"][i % 2].into());
        }
        let mut d = detector("per_upstream = true");
        feed(&mut *d, &evs);
        let got = describe_twice(&*d, &route).expect("held");
        let series = got["series"].as_array().unwrap();
        assert_eq!(series.len(), 4, "{got:#}");
        assert_eq!(
            (series[0]["upstream"].clone(), series[0]["percentile"].clone()),
            (json!("orders-v1"), json!("p50"))
        );
        assert_eq!(series[3]["upstream"], json!("orders-v2"));
        assert!(!series[3]["baseline_ms"].as_array().unwrap().is_empty());
        assert_eq!(got["upstreams"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn same_input_same_findings_and_routes_are_capped() {
        let mut evs = traffic(0..150, |_| 40, |m| if m >= 120 { 400.0 } else { 100.0 });
        for (i, e) in evs.iter_mut().enumerate().filter(|(i, _)| i % 3 == 0) {
            e.route = Some(format!("GET /r{}", i % 50).into());
        }
        evs.sort_by_key(|e| e.ts);
        let a = run(&mut *detector("max_routes = 10"), &evs);
        let b = run(&mut *detector("max_routes = 10"), &evs);
        assert_eq!(a, b);
        let mut d = detector("max_routes = 10");
        run(&mut *d, &evs);
        assert!(d.stats().keys <= 10);
        assert!(d.stats().evicted_cap > 0);
    }

    #[test]
    fn bad_params_are_all_reported_with_their_field() {
        let errs = LatencyAnomaly::build(
            &file(
                "factor = 0.9\nalert_buckets = 12\npercentiles = [95.0, 100.0]\nbucket = \"0s\"\nwarmup_buckets = 100",
            ),
            Limits::default(),
        )
        .err()
        .expect("rejected");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        for want in
            ["params.factor", "params.alert_buckets", "params.percentiles[1]", "params.bucket", "params.warmup_buckets"]
        {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
        let errs = LatencyAnomaly::build(&file("treshold = 2"), Limits::default()).err().expect("rejected");
        assert!(errs[0].message.contains("treshold"), "{errs:?}");
    }

    /// The `[[tests]]` cases of the shipped file pass through the engine and the rule wrapper
    /// (the same check `gatewatch check` makes), so the shipped examples cannot rot.
    #[test]
    fn shipped_detector_file_cases_pass() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("detectors/latency-anomaly.toml");
        let f = DetectorFile::load(&path).expect("shipped file loads");
        assert!(f.tests.len() >= 5);
        for case in &f.tests {
            let start = case
                .start
                .as_deref()
                .map(|s| chrono::DateTime::parse_from_rfc3339(s).expect("start").timestamp_millis())
                .unwrap_or(T0);
            let mut evs = Vec::new();
            for spec in &case.events {
                let at = start + spec.at.map(|d| d.0).unwrap_or(0);
                let every = spec.every.map(|d| d.0).unwrap_or(0);
                for i in 0..spec.repeat {
                    let pick = |k: &str| {
                        spec.event.get(k).map(|v| match v {
                            toml::Value::Array(a) => a[i % a.len()].clone(),
                            v => v.clone(),
                        })
                    };
                    let num = |k: &str| pick(k).and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)));
                    let text = |k: &str| pick(k).and_then(|v| v.as_str().map(crate::event::Text::from));
                    evs.push(Event {
                        ts: at + i as i64 * every,
                        route: text("route"),
                        method: text("method"),
                        path: text("path"),
                        upstream: text("upstream"),
                        status: num("status").map(|s| s as u16),
                        latency_ms: num("latency_ms"),
                        upstream_latency_ms: num("upstream_latency_ms"),
                        ..Default::default()
                    });
                }
            }
            // The rule's allow-list and cooldown, applied as `Rule` does. (Driving `Engine` +
            // `Rule` here is the better test, and tests/nab_latency.rs does; see the note there
            // about `Rule::on_watermark` overflowing in debug builds.)
            let allow = Allow::from_file(&f);
            evs.sort_by_key(|e| e.ts);
            evs.retain(|e| !allow.allows(e));
            let mut d = LatencyAnomaly::build(&f, Limits::default()).expect("shipped params valid");
            let mut last: std::collections::HashMap<Entity, Millis> = Default::default();
            let mut alerts = Vec::new();
            for x in run(&mut *d, &evs) {
                if last.get(&x.entity).is_some_and(|t| x.window_end - *t < f.cooldown.0) {
                    continue;
                }
                last.insert(x.entity.clone(), x.window_end);
                alerts.push(x);
            }
            if case.expect.is_empty() {
                assert!(alerts.is_empty(), "case `{}`: unexpected {alerts:#?}", case.name);
            }
            for x in &case.expect {
                let n = alerts
                    .iter()
                    .filter(|a| {
                        a.entity.kind.as_str() == x.entity_kind
                            && x.entity_id.as_ref().is_none_or(|id| *id == a.entity.id)
                    })
                    .count();
                assert_eq!(n, x.count.unwrap_or(1), "case `{}`: {alerts:#?}", case.name);
            }
        }
    }
}

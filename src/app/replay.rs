//! `gatewatch replay`: the live engine over a file, as fast as it can read.

use std::io::{BufRead, Write};
use std::time::Instant;

use crate::engine::{EngineStats, Pipeline, PipelineStats};
use crate::event::Alert;

/// What a replay did.
#[derive(Clone, Debug, Default)]
pub struct ReplaySummary {
    pub bytes: u64,
    pub stats: PipelineStats,
    pub engine: EngineStats,
    pub seconds: f64,
    pub state_keys: usize,
    pub evicted: u64,
}

impl ReplaySummary {
    pub fn events_per_second(&self) -> f64 {
        self.stats.events as f64 / self.seconds.max(1e-9)
    }

    /// The human summary printed on stderr.
    pub fn render(&self) -> String {
        let s = &self.stats;
        let mut out = format!(
            "replayed {} records ({:.1} MB) in {:.2}s: {:.0} events/s\n",
            s.events + s.rejected_total(),
            self.bytes as f64 / 1e6,
            self.seconds,
            self.events_per_second()
        );
        out += &format!("  events: {} read, {} late (dropped, beyond allowed lateness)\n", s.events, self.engine.late);
        if self.engine.out_of_range > 0 || s.lossy_utf8 > 0 {
            out += &format!(
                "  suspect input: {} events with a time before 1970 or after 9999 (dropped), {} lines not UTF-8 (read with the bad bytes replaced)\n",
                self.engine.out_of_range, s.lossy_utf8
            );
        }
        let rej: Vec<String> = s.rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out += &format!(
            "  rejected: {}{}\n",
            s.rejected_total(),
            if rej.is_empty() { String::new() } else { format!(" ({})", rej.join(", ")) }
        );
        let al: Vec<String> = s.alerts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out += &format!(
            "  alerts: {}{}\n",
            s.alerts_total(),
            if al.is_empty() { String::new() } else { format!(" ({})", al.join(", ")) }
        );
        let mut missing: Vec<String> = s
            .missing
            .iter()
            .map(|(g, f, w, c)| {
                let pct = 100.0 * c as f64 / s.events.max(1) as f64;
                let pct = if c > 0 && pct < 1.0 { "<1%".to_string() } else { format!("{pct:.0}%") };
                format!("{g} {} in {pct} of events ({})", f.as_str(), w.describe())
            })
            .collect();
        if !missing.is_empty() {
            let n = missing.len();
            missing.truncate(8);
            out += &format!(
                "  fields missing: {}{}\n",
                missing.join(", "),
                if n > 8 { format!(", and {} more", n - 8) } else { String::new() }
            );
        }
        out += &format!(
            "  detector state at the end: {} keys held; {} evicted along the way (idle past their window, or over the per-detector cap)\n",
            self.state_keys, self.evicted
        );
        out
    }
}

/// The lines of `input` in event-time order (`replay --sort`): each line's earliest event
/// time, read by `normalizer`; lines without one (they will be rejected) keep their place
/// before the rest. The sort is stable, so records of the same time keep their order. The
/// whole input is held in memory.
pub fn sorted_by_time(mut input: impl BufRead, normalizer: &crate::normalize::Normalizer) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    input.read_to_end(&mut all)?;
    let mut lines: Vec<(i64, &[u8])> = all
        .split(|&b| b == b'\n')
        .filter(|l| !crate::normalize::trim_ascii(l).is_empty())
        .map(|l| {
            let mut ts = i64::MIN;
            let mut first = true;
            normalizer.normalize_message(l, &mut |r| {
                if let Ok(ev) = r {
                    ts = if first { ev.ts } else { ts.min(ev.ts) };
                    first = false;
                }
            });
            (ts, l)
        })
        .collect();
    lines.sort_by_key(|(ts, _)| *ts);
    let mut out = Vec::with_capacity(all.len() + 1);
    for (_, l) in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    Ok(out)
}

/// Replays `input` through `pipeline`, handing each alert to `on_alert` as it is raised.
/// `progress` is told the bytes read so far.
pub fn replay(
    pipeline: &mut Pipeline,
    mut input: impl BufRead,
    on_alert: &mut dyn FnMut(&Alert) -> std::io::Result<()>,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<ReplaySummary> {
    let start = Instant::now();
    // Lines are cut inside the reader's buffer; only a line that straddles two
    // buffer fills is copied (into `carry`).
    let mut carry: Vec<u8> = Vec::new();
    let mut alerts = Vec::new();
    let mut bytes = 0u64;
    let mut n = 0u64;
    let mut one = |line: &[u8], pipeline: &mut Pipeline, alerts: &mut Vec<Alert>| -> std::io::Result<()> {
        if !super::super::normalize::trim_ascii(line).is_empty() {
            pipeline.process(line, None, alerts);
            for a in alerts.drain(..) {
                on_alert(&a)?;
            }
        }
        Ok(())
    };
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let len = buf.len();
        let mut pos = 0;
        while let Some(i) = memchr::memchr(b'\n', &buf[pos..]) {
            let end = pos + i;
            if carry.is_empty() {
                one(&buf[pos..end], pipeline, &mut alerts)?;
            } else {
                carry.extend_from_slice(&buf[pos..end]);
                one(&carry, pipeline, &mut alerts)?;
                carry.clear();
            }
            pos = end + 1;
            n += 1;
            if n.is_multiple_of(65_536) {
                progress(bytes + pos as u64);
            }
        }
        carry.extend_from_slice(&buf[pos..]);
        bytes += len as u64;
        input.consume(len);
    }
    if !carry.is_empty() {
        one(&carry, pipeline, &mut alerts)?;
    }
    pipeline.finish(&mut alerts);
    for a in alerts.drain(..) {
        on_alert(&a)?;
    }
    progress(bytes);
    let state = pipeline.state_size();
    Ok(ReplaySummary {
        bytes,
        stats: pipeline.stats().clone(),
        engine: pipeline.engine_stats(),
        seconds: start.elapsed().as_secs_f64(),
        state_keys: state.keys,
        evicted: state.evicted,
    })
}

/// Writes alerts as JSON lines.
pub fn json_lines_writer<W: Write>(w: &mut W) -> impl FnMut(&Alert) -> std::io::Result<()> + '_ {
    move |a| {
        serde_json::to_writer(&mut *w, a)?;
        w.write_all(b"\n")
    }
}

//! `gatewatch replay`: the live engine over a file, as fast as it can read.

use std::io::{BufRead, Write};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use crate::engine::{EngineStats, MessageReader, Pipeline, PipelineStats};
use crate::event::{Alert, Event};

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
    let mut lines: Vec<(i64, &[u8])> = crate::bytes::lines(&all)
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
    Ok(summary(pipeline, bytes, start))
}

fn summary(pipeline: &Pipeline, bytes: u64, start: Instant) -> ReplaySummary {
    let state = pipeline.state_size();
    ReplaySummary {
        bytes,
        stats: pipeline.stats().clone(),
        engine: pipeline.engine_stats(),
        seconds: start.elapsed().as_secs_f64(),
        state_keys: state.keys,
        evicted: state.evicted,
    }
}

/// Bytes of whole lines handed to a reading thread at a time.
const CHUNK: usize = 1 << 20;
/// Chunks in flight per reading thread (queued, being read, or read and waiting).
const IN_FLIGHT: usize = 2;

/// A chunk of whole lines and its events, as they go to a reading thread (events empty) and
/// back (events read); both buffers are kept and sent again.
type Buffers = (Vec<u8>, Vec<Event>);

/// [`replay`] with the records read on `readers.len()` threads, one [`MessageReader`] each,
/// while this thread runs the detectors. The input is cut into chunks of whole lines dealt
/// round-robin and their events taken back in the same order, so the detectors see exactly
/// the sequence one thread would give them: the same alerts in the same order, and the same
/// totals. No reader means [`replay`].
pub fn replay_parallel(
    pipeline: &mut Pipeline,
    readers: Vec<MessageReader>,
    input: impl BufRead,
    on_alert: &mut dyn FnMut(&Alert) -> std::io::Result<()>,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<ReplaySummary> {
    replay_in_chunks(pipeline, readers, input, CHUNK, on_alert, progress)
}

fn replay_in_chunks(
    pipeline: &mut Pipeline,
    readers: Vec<MessageReader>,
    mut input: impl BufRead,
    chunk_bytes: usize,
    on_alert: &mut dyn FnMut(&Alert) -> std::io::Result<()>,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<ReplaySummary> {
    if readers.is_empty() {
        return replay(pipeline, input, on_alert, progress);
    }
    let start = Instant::now();
    let n = readers.len();
    std::thread::scope(|scope| {
        let mut to_reader = Vec::with_capacity(n);
        let mut from_reader = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for mut reader in readers {
            let (tx, rx) = sync_channel::<Buffers>(IN_FLIGHT);
            let (back, from) = sync_channel::<Buffers>(IN_FLIGHT);
            to_reader.push(tx);
            from_reader.push(from);
            handles.push(scope.spawn(move || {
                for (chunk, mut events) in rx {
                    for line in crate::bytes::lines(&chunk) {
                        if !crate::normalize::trim_ascii(line).is_empty() {
                            reader.read(line, None, &mut |ev| events.push(ev));
                        }
                    }
                    if back.send((chunk, events)).is_err() {
                        break;
                    }
                }
                reader.stats().clone()
            }));
        }
        let mut alerts = Vec::new();
        // Buffers back from the detectors, for the next chunk: a chunk's events take a few
        // hundred kB, and an allocation that size freed on another thread goes back to the
        // system, so a new one each chunk cost a page fault and a zeroed page every 4 kB
        // (a tenth of the time with one reading thread).
        let mut spare: Vec<Buffers> = Vec::new();
        let (mut sent, mut taken, mut bytes) = (0usize, 0usize, 0u64);
        // Takes the next chunk's events, in dealing order, into the detectors.
        let mut take = |taken: &mut usize, spare: &mut Vec<Buffers>| -> std::io::Result<()> {
            let (mut chunk, mut events) = from_reader[*taken % n].recv().map_err(|_| reader_gone())?;
            *taken += 1;
            pipeline.push_events(events.drain(..), &mut alerts);
            for a in alerts.drain(..) {
                on_alert(&a)?;
            }
            chunk.clear();
            spare.push((chunk, events));
            Ok(())
        };
        let mut eof = false;
        while !eof {
            let (mut chunk, events) = spare.pop().unwrap_or_else(|| {
                (Vec::with_capacity(chunk_bytes + (chunk_bytes >> 2)), Vec::with_capacity(chunk_bytes / 1024))
            });
            // Fill to CHUNK, then on to the end of the line; a line longer than a chunk is
            // read whole.
            loop {
                let buf = input.fill_buf()?;
                if buf.is_empty() {
                    eof = true;
                    break;
                }
                let room = chunk_bytes.saturating_sub(chunk.len());
                let (len, line_ends) = if room > 0 {
                    (room.min(buf.len()), false)
                } else {
                    memchr::memchr(b'\n', buf).map_or((buf.len(), false), |i| (i + 1, true))
                };
                chunk.extend_from_slice(&buf[..len]);
                input.consume(len);
                bytes += len as u64;
                if line_ends {
                    break;
                }
            }
            if sent - taken == n * IN_FLIGHT {
                take(&mut taken, &mut spare)?;
            }
            to_reader[sent % n].send((chunk, events)).map_err(|_| reader_gone())?;
            sent += 1;
            progress(bytes);
        }
        while taken < sent {
            take(&mut taken, &mut spare)?;
        }
        drop(to_reader);
        for h in handles {
            let stats = h.join().map_err(|_| reader_gone())?;
            pipeline.add_read_stats(&stats);
        }
        pipeline.finish(&mut alerts);
        for a in alerts.drain(..) {
            on_alert(&a)?;
        }
        progress(bytes);
        Ok(summary(pipeline, bytes, start))
    })
}

fn reader_gone() -> std::io::Error {
    std::io::Error::other("a reading thread stopped")
}

/// Writes alerts as JSON lines.
pub fn json_lines_writer<W: Write>(w: &mut W) -> impl FnMut(&Alert) -> std::io::Result<()> + '_ {
    move |a| {
        serde_json::to_writer(&mut *w, a)?;
        w.write_all(b"\n")
    }
}

#[cfg(all(test, feature = "simulate"))]
mod tests {
    use super::*;
    use crate::config::{GatewatchConfig, DEV_FINGERPRINT_KEY};
    use crate::normalize::{Format, Normalizer};

    fn run(input: &[u8], threads: usize, chunk: usize) -> (Vec<String>, ReplaySummary) {
        let cfg = GatewatchConfig::default();
        let key = DEV_FINGERPRINT_KEY.as_bytes();
        let mut p = Pipeline::from_config(&cfg, Format::Auto, key).unwrap();
        // one normalizer shared by the reading threads, as `gatewatch replay` does
        let shared = std::sync::Arc::new(Normalizer::from_config(&cfg, Format::Auto, key));
        let readers = (0..threads).map(|_| MessageReader::new(shared.clone(), &cfg)).collect();
        let mut alerts = Vec::new();
        let s = replay_in_chunks(
            &mut p,
            readers,
            input,
            chunk,
            &mut |a| {
                alerts.push(a.to_json());
                Ok(())
            },
            &mut |_| {},
        )
        .unwrap();
        (alerts, s)
    }

    #[test]
    fn reading_on_more_threads_gives_the_same_alerts_in_the_same_order() {
        let sim = crate::simulate::simulate(&crate::simulate::SimConfig {
            duration_ms: 12 * 60_000,
            clients: 40,
            ..Default::default()
        });
        let mut input = Vec::new();
        for r in &sim.records {
            input.extend_from_slice(crate::simulate::render::render(r, Format::Kong).as_bytes());
            input.push(b'\n');
        }
        input.extend_from_slice(b"not a record\n\n{\"half\": ");
        let (one, s1) = run(&input, 0, 4096);
        assert!(one.len() >= 3, "the simulated attacks raise alerts: {}", one.len());
        for (threads, chunk) in [(1, 4096), (2, 4096), (3, 1), (2, 1 << 20)] {
            let (many, s) = run(&input, threads, chunk);
            assert_eq!(many, one, "{threads} threads, {chunk}-byte chunks");
            assert_eq!(
                (s.stats.messages, s.stats.events, &s.stats.rejected, &s.stats.alerts, s.bytes, s.state_keys),
                (s1.stats.messages, s1.stats.events, &s1.stats.rejected, &s1.stats.alerts, s1.bytes, s1.state_keys),
                "{threads} threads, {chunk}-byte chunks"
            );
        }
        assert_eq!(s1.stats.rejected_total(), 2);
    }
}

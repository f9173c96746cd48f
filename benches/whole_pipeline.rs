//! The whole pipeline beside its reference, in one run: an hour of simulated Kong traffic
//! (300 clients, ~150k records, ~390 MB) written to a file, then, in alternating rounds,
//! - the naive reference: read the file line by line and `serde_json::from_slice` each line
//!   into a `serde_json::Value` (what any JSON log tool does at the least), and
//! - `gatewatch replay` as the command runs it: read, detect the format, normalize, scrub,
//!   fingerprint, run every shipped detector, write alerts.
//!
//! Prints the median CPU time of each, records/s per core, the ratio gatewatch / naive (the
//! aim of issue #14 is ≤ 0.4) and the peak RSS of the replay alone. CPU time, not wall time,
//! so a busy neighbour on a shared machine moves both sides alike; the ratio is the figure
//! to compare across machines. `BENCH_ROUNDS` (default 5) sets the rounds.
//!
//! Both sides run under the allocator the `gatewatch` binary ships with (mimalloc), so the
//! reference gains from it as much as gatewatch does.
//!
//! `cargo bench --bench whole_pipeline`

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use gatewatch::app::replay::replay;
use gatewatch::config::{GatewatchConfig, DEV_FINGERPRINT_KEY};
use gatewatch::engine::Pipeline;
use gatewatch::normalize::Format;
use gatewatch::simulate::{render::render, simulate, SimConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU time this process has used (user + system).
fn cpu_time() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Peak resident set size since the last [`reset_peak_rss`], bytes (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resets `VmHWM` to the current RSS (Linux: writing 5 to `clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn naive_parse(path: &Path) -> usize {
    let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(path).unwrap());
    let mut line = Vec::with_capacity(8192);
    let mut n = 0;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).unwrap() == 0 {
            return n;
        }
        let v: serde_json::Value = serde_json::from_slice(line.trim_ascii_end()).expect("simulated records are JSON");
        n += usize::from(v.is_object());
    }
}

fn gatewatch_replay(path: &Path, cfg: &GatewatchConfig) -> (usize, usize) {
    let mut p = Pipeline::from_config(cfg, Format::Auto, DEV_FINGERPRINT_KEY.as_bytes()).unwrap();
    let input = BufReader::with_capacity(1 << 20, std::fs::File::open(path).unwrap());
    let mut out = std::io::sink();
    let mut alerts = 0;
    let s = replay(
        &mut p,
        input,
        &mut |a| {
            alerts += 1;
            writeln!(out, "{}", a.to_json())
        },
        &mut |_| {},
    )
    .unwrap();
    (s.stats.events as usize, alerts)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this once, quickly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let sim_cfg =
        if quick { SimConfig { duration_ms: 10 * 60_000, ..SimConfig::default() } } else { SimConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kong-hour.jsonl");
    let records = {
        let sim = simulate(&sim_cfg);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for r in &sim.records {
            writeln!(f, "{}", render(r, Format::Kong)).unwrap();
        }
        f.flush().unwrap();
        sim.records.len()
    };
    let size = std::fs::metadata(&path).unwrap().len();
    let mut cfg = GatewatchConfig::default();
    cfg.detectors.dir = Some(concat!(env!("CARGO_MANIFEST_DIR"), "/detectors").into());

    let (mut naive, mut ours, mut rss) = (Vec::new(), Vec::new(), 0);
    let mut alerts = 0;
    for _ in 0..if quick { 1 } else { rounds.max(1) } {
        let t = cpu_time();
        assert_eq!(naive_parse(&path), records);
        naive.push(cpu_time() - t);

        reset_peak_rss();
        let t = cpu_time();
        let (events, a) = gatewatch_replay(&path, &cfg);
        ours.push(cpu_time() - t);
        rss = rss.max(peak_rss());
        assert_eq!(events, records, "every record becomes an event");
        alerts = a;
    }
    let (naive, ours) = (median(naive), median(ours));
    let per_s = |d: Duration| records as f64 / d.as_secs_f64();
    let mb = size as f64 / 1e6;
    println!("whole pipeline, simulated Kong traffic: {records} records, {mb:.1} MB, {alerts} alerts");
    println!(
        "  naive serde_json::Value parse  {:>7.3} s CPU  {:>9.0} records/s/core  {:>6.1} MB/s/core",
        naive.as_secs_f64(),
        per_s(naive),
        mb / naive.as_secs_f64()
    );
    println!(
        "  gatewatch replay               {:>7.3} s CPU  {:>9.0} records/s/core  {:>6.1} MB/s/core",
        ours.as_secs_f64(),
        per_s(ours),
        mb / ours.as_secs_f64()
    );
    println!("  ratio gatewatch / naive parse  {:.2} (aim: at most 0.40)", ours.as_secs_f64() / naive.as_secs_f64());
    println!("  peak RSS of the replay         {:.1} MB (process, after the file was written)", rss as f64 / 1e6);
}

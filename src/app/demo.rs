//! `gatewatch demo`: the whole pipeline with nothing installed. An embedded
//! Kafka broker (librdkafka's in-process `MockCluster`, listening on
//! 127.0.0.1), simulated gateway traffic with injected attacks produced into it
//! in compressed event time, the live Kafka source consuming it, alerts printed
//! as readable lines, and `/metrics` up. Stops by itself after `--minutes`, or
//! on Ctrl-C.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;

use crate::actions::{AlertHandoff, HandoffError};
use crate::app::run::{pipeline_factory_from, Service, ServiceParts};
use crate::config::{DetectorFile, GatewatchConfig};
use crate::event::{format_ts, Alert};
use crate::normalize::Format;
use crate::simulate::{simulate, Label, SimConfig, DEFAULT_START};
use crate::source::kafka::{KafkaSettings, StartFrom};

const TOPIC: &str = "gateway-logs";

/// What the demo does.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Wall-clock minutes to run.
    pub minutes: u32,
    /// Event-time compression: simulated minutes per wall minute.
    pub speed: u32,
    /// API clients in the simulation.
    pub clients: usize,
    pub seed: u64,
    /// Where `/metrics` listens (another free port if this one is taken).
    pub listen: SocketAddr,
}

/// Prints alerts as one readable line each.
pub struct ReadableLines<W: Write + Send> {
    out: Mutex<W>,
    started: Instant,
    seen: Mutex<Vec<Alert>>,
}

impl<W: Write + Send> ReadableLines<W> {
    pub fn new(out: W) -> Self {
        ReadableLines { out: Mutex::new(out), started: Instant::now(), seen: Mutex::new(Vec::new()) }
    }

    pub fn alerts(&self) -> Vec<Alert> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// One alert as a line: wall time since start, event time, severity, detector, entity, summary.
pub fn readable_line(a: &Alert, elapsed: Duration) -> String {
    let t = format_ts(a.window_end);
    let clock = t.get(11..19).unwrap_or(&t);
    let mut who = format!("{} {}", a.entity.kind.as_str(), a.entity.id);
    if let Some(c) = a.client_id.as_deref().filter(|c| *c != a.entity.id) {
        who.push_str(&format!(" (client {c})"));
    }
    format!(
        "[+{:>2}:{:02}] {clock}  {:<6}  {:<18}  {:<44}  {}",
        elapsed.as_secs() / 60,
        elapsed.as_secs() % 60,
        a.severity.as_str().to_uppercase(),
        a.detector,
        who,
        a.summary
    )
}

impl<W: Write + Send> AlertHandoff for ReadableLines<W> {
    fn handoff(&self, a: &Alert) -> Result<(), HandoffError> {
        let line = readable_line(a, self.started.elapsed());
        let mut out = self.out.lock().map_err(|_| HandoffError::Closed)?;
        writeln!(out, "{line}").and_then(|_| out.flush()).map_err(|e| HandoffError::Overflow(e.to_string()))?;
        self.seen.lock().map_err(|_| HandoffError::Closed)?.push(a.clone());
        Ok(())
    }
}

/// The detector files: `./detectors` (or `[detectors] dir`) when present, else the built-in defaults.
fn detector_files(cfg: &GatewatchConfig) -> (Vec<DetectorFile>, Vec<crate::config::ConfigError>) {
    crate::config::DetectorSource::for_config(cfg).load()
}

/// Did an alert name the attack (its entity or a related one)?
fn detected(l: &Label, alerts: &[Alert]) -> bool {
    alerts.iter().any(|a| {
        (a.entity.kind == l.entity_kind && a.entity.id == l.entity_id)
            || l.related.iter().any(|r| a.entity.kind == r.entity_kind && a.entity.id == r.entity_id)
    })
}

fn files_in_force(f: &crate::source::kafka::NewPipeline) -> Vec<DetectorFile> {
    f.live().files().as_ref().clone()
}

/// The simulation the demo runs: `--minutes` × `--speed` of traffic, one round of attacks
/// per 10 simulated minutes.
pub fn demo_simulation(opts: &DemoOptions, files: &[DetectorFile], key: &[u8]) -> SimConfig {
    let sim_minutes = (opts.minutes.max(1) * opts.speed.max(1)).clamp(10, 24 * 60);
    // A latency regression is judged against a baseline learned over the detector's warm-up:
    // in a shorter span it cannot be found, so it is not injected (and the start line says so).
    let mut skip = Vec::new();
    if latency_warmup_ms(files).is_some_and(|w| (sim_minutes as i64) * 60_000 < w + 15 * 60_000) {
        skip.push("latency_regression");
    }
    SimConfig {
        seed: opts.seed,
        start: DEFAULT_START,
        duration_ms: sim_minutes as i64 * 60_000,
        clients: opts.clients.max(20),
        fingerprint_key: key.to_vec(),
        attacks: true,
        attack_rounds: (sim_minutes as usize / 10).clamp(1, 20),
        skip,
    }
}

/// Event time a `latency_anomaly` file needs before it judges a route: `warmup_buckets` × `bucket`.
fn latency_warmup_ms(files: &[DetectorFile]) -> Option<i64> {
    files
        .iter()
        .filter(|f| f.kind == "latency_anomaly")
        .map(|f| {
            let buckets = f.params.get("warmup_buckets").and_then(|v| v.as_integer()).unwrap_or(30);
            let bucket = f
                .params
                .get("bucket")
                .and_then(|v| v.as_str())
                .and_then(|b| crate::config::parse_duration(b).ok())
                .unwrap_or(60_000);
            buckets * bucket
        })
        .max()
}

/// Runs the demo until `--minutes` have passed or `shutdown` completes.
pub async fn demo(opts: DemoOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (mut cfg, key) = crate::app::cli::offline_config(None)?;
    cfg.input.format = "kong".into();
    let (files, errs) = detector_files(&cfg);
    let new_pipeline = pipeline_factory_from(&cfg, files, errs, key.as_bytes()).map_err(crate::config::ConfigErrors)?;

    let cluster = MockCluster::new(1).context("starting the embedded Kafka broker")?;
    // One partition: route-wide detectors (credential stuffing, latency) need a route's
    // traffic in one place; see the README (Running on Kafka) on keys and partitions.
    cluster.create_topic(TOPIC, 1, 1)?;
    let bootstrap = cluster.bootstrap_servers();

    let sim_cfg = demo_simulation(&opts, &files_in_force(&new_pipeline), key.as_bytes());
    let sim_minutes = sim_cfg.duration_ms / 60_000;
    sim_cfg.validate()?;
    let sim = simulate(&sim_cfg);
    let labels = sim.labels;
    let records = sim.records;

    let mut settings = KafkaSettings::new(bootstrap.clone(), vec![TOPIC.into()], "gatewatch-demo");
    settings.start_from = StartFrom::Earliest;
    settings.shutdown_grace = Duration::from_secs(5);
    let printer = Arc::new(ReadableLines::new(std::io::stdout()));
    let registry = Arc::new(prometheus::Registry::new());
    let parts = |listen| ServiceParts {
        run_as: crate::app::run::RunAs::Single,
        settings: settings.clone(),
        listen,
        new_pipeline: new_pipeline.clone(),
        handoff: printer.clone(),
        registry: registry.clone(),
        admin: None,
        admin_limits: crate::actions::config::AdminLimits::default(),
        dispatcher: None,
    };
    let service = match Service::start(parts(opts.listen)).await {
        Ok(s) => s,
        Err(_) => {
            // The port is taken (another gatewatch?): any free one will do for a demo.
            let registry_fresh = Arc::new(prometheus::Registry::new());
            Service::start(ServiceParts { registry: registry_fresh, ..parts(SocketAddr::from(([127, 0, 0, 1], 0))) })
                .await?
        }
    };

    println!("gatewatch demo: embedded Kafka at {bootstrap}, topic `{TOPIC}`");
    println!(
        "  simulating {sim_minutes} minutes of Kong gateway traffic from {} API clients ({} records, {} injected attacks) at {}x speed",
        sim_cfg.clients,
        records.len(),
        labels.len(),
        opts.speed
    );
    println!("  metrics: http://{}/metrics   readiness: http://{}/readyz", service.addr, service.addr);
    println!("  stops after {} minute(s), or press Ctrl-C", opts.minutes);
    println!();
    println!("[  wall] event    severity detector            entity                                        summary");

    // The producer: records in arrival order, paced so event time runs `speed` times faster than the clock.
    let stop = Arc::new(AtomicBool::new(false));
    let producer_thread = {
        let stop = stop.clone();
        let bootstrap = bootstrap.clone();
        let speed = opts.speed.max(1) as f64;
        std::thread::spawn(move || -> anyhow::Result<(usize, i64)> {
            let mut base = ClientConfig::new();
            base.set("bootstrap.servers", &bootstrap);
            let p = crate::source::kafka::produce::produce_simulated(
                &base,
                TOPIC,
                &records,
                Format::Kong,
                Some(speed),
                &stop,
            )?;
            Ok((p.records, p.last_event_ts))
        })
    };

    let deadline = tokio::time::sleep(Duration::from_secs(opts.minutes.max(1) as u64 * 60));
    tokio::pin!(deadline);
    tokio::pin!(shutdown);
    let mut ended_early = false;
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = &mut shutdown => { ended_early = true; break }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if producer_thread.is_finished() && service.metrics.lag_total() == 0 {
                    break;
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let metrics = service.metrics.clone();
    service.stop().await?;
    let (produced, last_ts) = producer_thread.join().map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    drop(cluster);

    let alerts = printer.alerts();
    // Attacks whose traffic was all produced before the end (later ones were not seen yet).
    let injected: Vec<&Label> = labels.iter().filter(|l| l.end <= last_ts).collect();
    let found = injected.iter().filter(|l| detected(l, &alerts)).count();
    let missed: Vec<String> = injected
        .iter()
        .filter(|l| !detected(l, &alerts))
        .map(|l| format!("  missed: {} at {} ({})", l.attack, &format_ts(l.start)[11..19], l.description))
        .collect();
    println!();
    println!(
        "{}: {} records produced, {} events read, {} alerts; {} of {} attacks injected so far were alerted",
        if ended_early { "stopped" } else { "done" },
        produced,
        metrics.events.get(),
        alerts.len(),
        found,
        injected.len()
    );
    for m in &missed {
        println!("{m}");
    }
    if !sim_cfg.skip.is_empty() {
        println!(
            "  not injected: {} (the span is shorter than the latency detector's warm-up; try --speed 60)",
            sim_cfg.skip.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Entity, EntityKind, Severity};

    #[test]
    fn readable_line_names_time_severity_detector_entity_and_summary() {
        let a = Alert {
            id: "x".into(),
            detector: "auth_failure_spike".into(),
            rule: "r".into(),
            severity: Severity::High,
            entity: Entity::new(EntityKind::SourceIp, "91.92.189.89"),
            client_id: Some("app-1".into()),
            client_id_source: Default::default(),
            token_fingerprint: None,
            window_start: DEFAULT_START,
            window_end: DEFAULT_START + 125_000,
            summary: "20 failed authentications".into(),
            evidence: Default::default(),
            actions: vec![],
        };
        let line = readable_line(&a, Duration::from_secs(75));
        assert!(line.starts_with("[+ 1:15] 10:02:05  HIGH"), "{line}");
        assert!(line.contains("auth_failure_spike"));
        assert!(line.contains("source_ip 91.92.189.89 (client app-1)"));
        assert!(line.ends_with("20 failed authentications"));
    }

    /// The demo's own simulation, replayed offline through the built-in detectors (what the
    /// live demo runs, minus Kafka): a latency regression is injected only where the span
    /// holds the detector's warm-up (the default 30 simulated minutes do not).
    #[test]
    fn the_demo_injects_latency_regressions_only_past_the_warm_up() {
        let cfg = GatewatchConfig { path: Some("/nonexistent-gatewatch/gatewatch.toml".into()), ..Default::default() };
        let (files, errs) = detector_files(&cfg);
        let key = crate::config::DEV_FINGERPRINT_KEY.as_bytes();
        let factory = pipeline_factory_from(&cfg, files.clone(), errs, key).unwrap();
        for (minutes, speed, injected) in [(3, 10, false), (1, 10, false)] {
            let opts = DemoOptions { minutes, speed, clients: 200, seed: 7, listen: "127.0.0.1:0".parse().unwrap() };
            let sim = simulate(&demo_simulation(&opts, &files, key));
            let latency: Vec<&Label> = sim.labels.iter().filter(|l| l.attack == "latency_regression").collect();
            assert_eq!(!latency.is_empty(), injected, "--minutes {minutes} --speed {speed}");
            let mut p = factory.pipeline();
            let mut alerts = Vec::new();
            for r in &sim.records {
                p.process(crate::simulate::render::render(r, Format::Kong).as_bytes(), Some(r.arrival), &mut alerts);
            }
            p.finish(&mut alerts);
            let missed: Vec<_> = latency.iter().filter(|l| !detected(l, &alerts)).map(|l| format_ts(l.start)).collect();
            assert!(missed.is_empty(), "latency regressions missed: {missed:?}");
        }
    }

    #[test]
    fn embedded_detector_files_parse() {
        // No folder configured, and none beside the config: the built-in set.
        let cfg = GatewatchConfig { path: Some("/nonexistent-gatewatch/gatewatch.toml".into()), ..Default::default() };
        let (files, errs) = detector_files(&cfg);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(files.len(), crate::config::BUILT_IN.len());
    }
}

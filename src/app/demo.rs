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
use crate::simulate::{simulate, Label, Learning, SimConfig, DEFAULT_START};
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

/// The demo's one sink.
const DEMO_SINK: &str = "file:demo";

/// A dispatcher whose one sink appends to a file in a temporary folder of this run's own
/// (removed when the demo ends), telling `journal` what becomes of each alert. Returns the
/// folder and the file's path too.
fn demo_dispatcher(
    journal: Arc<crate::admin::history::AlertHistory>,
) -> anyhow::Result<(Arc<crate::actions::Dispatcher>, tempfile::TempDir, std::path::PathBuf)> {
    let tmp = tempfile::Builder::new().prefix("gatewatch-demo-").tempdir().context("creating a temporary folder")?;
    let dir = tmp.path();
    let path = dir.join("alerts.jsonl");
    let sink = crate::actions::file::FileSink::open(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut cfg = crate::actions::config::ActionsConfig::new(dir.join("dead-letter.jsonl"));
    cfg.group_window = Duration::from_secs(10);
    let entry = crate::actions::SinkEntry {
        name: DEMO_SINK.into(),
        kind: "file".into(),
        delivery: crate::actions::config::DeliveryConfig {
            min_severity: Some(crate::event::Severity::Info),
            ..Default::default()
        },
        sink: crate::actions::sinks::SinkRuntime::Queued(Arc::new(sink)),
    };
    let d = crate::actions::Dispatcher::start_with_journal(&cfg, vec![entry], None, journal)
        .map_err(|e| anyhow::anyhow!("the demo's file sink: {e}"))?;
    Ok((Arc::new(d), tmp, path))
}

/// Prints alerts as one readable line each, numbered by incident.
pub struct ReadableLines<W: Write + Send> {
    out: Mutex<W>,
    started: Instant,
    seen: Mutex<(Vec<Alert>, Incidents)>,
}

impl<W: Write + Send> ReadableLines<W> {
    pub fn new(out: W) -> Self {
        ReadableLines { out: Mutex::new(out), started: Instant::now(), seen: Mutex::new(Default::default()) }
    }

    pub fn alerts(&self) -> Vec<Alert> {
        self.seen.lock().map(|s| s.0.clone()).unwrap_or_default()
    }

    /// How many incidents the alerts so far make up.
    pub fn incidents(&self) -> usize {
        self.seen.lock().map(|s| s.1.open.len()).unwrap_or_default()
    }
}

/// Alerts grouped into incidents: an alert joins the first incident that shares its token,
/// client or entity and had an alert within [`Incidents::GAP_MS`] of event time. One attack
/// often raises several alerts (a probing token: failures by token, client and address, and
/// scope misuse); the number says which belong together.
#[derive(Debug, Default)]
pub struct Incidents {
    /// Per incident: the keys its alerts named and the event time of its latest alert.
    open: Vec<(Vec<String>, crate::event::Millis)>,
}

impl Incidents {
    pub const GAP_MS: crate::event::Millis = 10 * 60_000;

    /// The incident number (from 1) of this alert, opening a new one if none is related.
    pub fn assign(&mut self, a: &Alert) -> usize {
        let mut keys = vec![format!("{}:{}", a.entity.kind.as_str(), a.entity.id)];
        if let Some(t) = &a.token_fingerprint {
            keys.push(format!("token:{}", t.to_hex()));
        }
        if let Some(c) = &a.client_id {
            keys.push(format!("client_id:{c}"));
        }
        let at = a.window_end;
        let related = self
            .open
            .iter()
            .position(|(k, last)| (at - last).abs() <= Self::GAP_MS && keys.iter().any(|x| k.contains(x)));
        match related {
            Some(i) => {
                let (k, last) = &mut self.open[i];
                *last = (*last).max(at);
                for x in keys {
                    if !k.contains(&x) {
                        k.push(x);
                    }
                }
                i + 1
            }
            None => {
                self.open.push((keys, at));
                self.open.len()
            }
        }
    }
}

/// The column heads of [`readable_line`].
pub const READABLE_HEADER: &str =
    "[  wall] event     incident  severity  detector            entity                        summary";

/// One alert as a line: wall time since start, event time, incident, severity, detector,
/// entity, summary, and the client when the entity is not the client itself.
pub fn readable_line(a: &Alert, incident: usize, elapsed: Duration) -> String {
    let t = format_ts(a.window_end);
    let clock = t.get(11..19).unwrap_or(&t);
    let who = format!("{} {}", a.entity.kind.as_str(), a.entity.id);
    let mut line = format!(
        "[+{:>2}:{:02}] {clock}  {:<8}  {:<8}  {:<18}  {:<28}  {}",
        elapsed.as_secs() / 60,
        elapsed.as_secs() % 60,
        format!("#{incident}"),
        a.severity.as_str().to_uppercase(),
        a.detector,
        who,
        a.summary
    );
    if let Some(c) = a.client_id.as_deref().filter(|c| *c != a.entity.id && !a.summary.contains(c)) {
        line.push_str(&format!(" [client {c}]"));
    }
    line
}

impl<W: Write + Send> AlertHandoff for ReadableLines<W> {
    fn handoff(&self, a: &Alert) -> Result<(), HandoffError> {
        let mut seen = self.seen.lock().map_err(|_| HandoffError::Closed)?;
        let line = readable_line(a, seen.1.assign(a), self.started.elapsed());
        let mut out = self.out.lock().map_err(|_| HandoffError::Closed)?;
        writeln!(out, "{line}").and_then(|_| out.flush()).map_err(|e| HandoffError::Overflow(e.to_string()))?;
        seen.0.push(a.clone());
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
    let learning = learning_of(files);
    // A latency regression is judged against a baseline learned over the detector's warm-up:
    // in a shorter span it cannot be found, so it is not injected (and the start line says so).
    let mut skip = Vec::new();
    if files.iter().any(|f| f.kind == "latency_anomaly")
        && (sim_minutes as i64) * 60_000 < learning.latency_warmup_ms + 15 * 60_000
    {
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
        with: Vec::new(),
        learning,
    }
}

/// How long the given detector files watch before they can judge a latency regression or a
/// scope escalation; a kind without a file keeps the shipped default.
pub fn learning_of(files: &[DetectorFile]) -> Learning {
    let duration = |f: &DetectorFile, name: &str, default: i64| {
        f.params
            .get(name)
            .and_then(|v| v.as_str())
            .and_then(|b| crate::config::parse_duration(b).ok())
            .unwrap_or(default)
    };
    let longest = |kind: &str, of: &dyn Fn(&DetectorFile) -> i64| files.iter().filter(|f| f.kind == kind).map(of).max();
    let default = Learning::default();
    Learning {
        latency_warmup_ms: longest("latency_anomaly", &|f| {
            f.params.get("warmup_buckets").and_then(|v| v.as_integer()).unwrap_or(30) * duration(f, "bucket", 60_000)
        })
        .unwrap_or(default.latency_warmup_ms),
        scope_learn_ms: longest("scope_misuse", &|f| duration(f, "learn_for", default.scope_learn_ms))
            .unwrap_or(default.scope_learn_ms),
    }
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
    // The admin API, so the alerts can be looked at: a token made up for this run.
    let token: String = {
        use rand::Rng;
        rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(24).map(char::from).collect()
    };
    let history = Arc::new(crate::admin::history::AlertHistory::new(
        crate::admin::history::DEFAULT_CAPACITY,
        Arc::new(|| chrono::Utc::now().timestamp_millis()),
    ));
    // One sink, a file: every alert goes through the real delivery path (queue, attempts,
    // the timeline the console shows) without a receiver to set up.
    let (dispatcher, _delivery_dir, delivered) = demo_dispatcher(history.clone())?;
    let handoff: Arc<dyn AlertHandoff> =
        Arc::new(crate::app::run::Fanout(vec![printer.clone(), history.clone(), dispatcher.clone()]));
    let entities = Arc::new(crate::admin::entities::Entities::default());
    let admin = crate::admin::router(
        crate::admin::AdminState::new(Some(crate::actions::secret::Secret::new(token.clone())), None)
            .with_rules(new_pipeline.clone())
            .with_history(history)
            .with_dispatcher(dispatcher.clone())
            .with_entities(entities.clone()),
    );
    let registry = Arc::new(prometheus::Registry::new());
    let parts = |listen| ServiceParts {
        run_as: crate::app::run::RunAs::Single,
        settings: settings.clone(),
        listen,
        new_pipeline: new_pipeline.clone(),
        handoff: handoff.clone(),
        registry: registry.clone(),
        admin: Some(admin.clone()),
        admin_limits: crate::actions::config::AdminLimits::default(),
        dispatcher: Some(dispatcher.clone()),
        entities: Some(entities.clone()),
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
    println!(
        "  alerts:  curl -H 'Authorization: Bearer {token}' http://{}/api/v1/alerts   (a token for this demo only)",
        service.addr
    );
    println!("  console: http://{}/ui/   (the same token)", service.addr);
    println!("  delivered to: {} (sink `{DEMO_SINK}`; removed when the demo ends)", delivered.display());
    println!("  stops after {} minute(s), or press Ctrl-C", opts.minutes);
    println!();
    println!("{READABLE_HEADER}");

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
        "{}: {} records produced, {} events read, {} alerts in {} incidents; {} of {} attacks injected so far were alerted",
        if ended_early { "stopped" } else { "done" },
        produced,
        metrics.events.get(),
        alerts.len(),
        printer.incidents(),
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
        let line = readable_line(&a, 3, Duration::from_secs(75));
        assert!(line.starts_with("[+ 1:15] 10:02:05  #3        HIGH"), "{line}");
        assert!(line.contains("auth_failure_spike"));
        assert!(line.contains("source_ip 91.92.189.89 "));
        assert!(line.ends_with("20 failed authentications [client app-1]"), "{line}");
        // the columns line up under the header
        for head in ["incident", "severity", "detector", "entity", "summary"] {
            let col = READABLE_HEADER.find(head).unwrap();
            assert_ne!(line.as_bytes()[col], b' ', "{head} column of {line}");
            assert_eq!(line.as_bytes()[col - 1], b' ', "{head} column of {line}");
        }
        // a long client id no longer pushes the summary out of its column
        let uuid = Alert { client_id: Some("4dfff686-ba02-4f8d-80fd-7f4a156a6e76".into()), ..a.clone() };
        let long = readable_line(&uuid, 3, Duration::from_secs(75));
        assert_eq!(long.find("20 failed"), line.find("20 failed"));
    }

    #[test]
    fn alerts_about_one_token_client_or_entity_close_in_time_are_one_incident() {
        let base = Alert {
            id: "x".into(),
            detector: "auth_failure_spike".into(),
            rule: "r".into(),
            severity: Severity::High,
            entity: Entity::new(EntityKind::Token, "34b884ffafcb29fd"),
            client_id: Some("d7299e1a".into()),
            client_id_source: Default::default(),
            token_fingerprint: crate::event::Fingerprint::from_hex("34b884ffafcb29fd"),
            window_start: DEFAULT_START,
            window_end: DEFAULT_START + 60_000,
            summary: "10 failed authentications".into(),
            evidence: Default::default(),
            actions: vec![],
        };
        let mut inc = Incidents::default();
        assert_eq!(inc.assign(&base), 1);
        // the same token's scope misuse, the client, an address with that client: one incident
        assert_eq!(inc.assign(&Alert { detector: "scope_misuse".into(), ..base.clone() }), 1);
        let client =
            Alert { entity: Entity::new(EntityKind::ClientId, "d7299e1a"), token_fingerprint: None, ..base.clone() };
        assert_eq!(inc.assign(&client), 1);
        let ip = Alert {
            entity: Entity::new(EntityKind::SourceIp, "40.113.37.8"),
            token_fingerprint: None,
            ..client.clone()
        };
        assert_eq!(inc.assign(&ip), 1);
        // an unrelated address, and the same client an hour later: new incidents
        let other = Alert {
            entity: Entity::new(EntityKind::SourceIp, "80.94.64.222"),
            client_id: None,
            token_fingerprint: None,
            ..base.clone()
        };
        assert_eq!(inc.assign(&other), 2);
        let later = Alert { window_end: DEFAULT_START + 3_600_000, ..client };
        assert_eq!(inc.assign(&later), 3);
    }

    /// The demo's own simulation, replayed offline through the built-in detectors (what the
    /// live demo runs, minus Kafka): every attack it injects is found. A latency regression is
    /// injected only where the span holds the detector's warm-up (the default 30 simulated
    /// minutes do not); scope escalations start once their route's requirement is learned.
    #[test]
    fn the_demo_finds_every_attack_it_injects() {
        let cfg = GatewatchConfig { path: Some("/nonexistent-gatewatch/gatewatch.toml".into()), ..Default::default() };
        let (files, errs) = detector_files(&cfg);
        let key = crate::config::DEV_FINGERPRINT_KEY.as_bytes();
        let factory = pipeline_factory_from(&cfg, files.clone(), errs, key).unwrap();
        for (minutes, speed, latency_injected) in [(3, 10, false), (1, 60, true)] {
            let what = format!("--minutes {minutes} --speed {speed}");
            let opts = DemoOptions { minutes, speed, clients: 200, seed: 7, listen: "127.0.0.1:0".parse().unwrap() };
            let sim = simulate(&demo_simulation(&opts, &files, key));
            let injected = |kind: &str| sim.labels.iter().filter(|l| l.attack == kind).count();
            assert_eq!(injected("latency_regression") > 0, latency_injected, "{what}");
            assert!(injected("scope_escalation") >= 1, "{what}");
            let mut p = factory.pipeline();
            let mut alerts = Vec::new();
            for r in &sim.records {
                p.process(crate::simulate::render::render(r, Format::Kong).as_bytes(), Some(r.arrival), &mut alerts);
            }
            p.finish(&mut alerts);
            let missed: Vec<_> = sim
                .labels
                .iter()
                .filter(|l| !detected(l, &alerts))
                .map(|l| format!("{} at {}", l.attack, format_ts(l.start)))
                .collect();
            assert!(missed.is_empty(), "{what}: missed {missed:?}");
            let unexplained: Vec<_> = alerts
                .iter()
                .filter(|a| !sim.labels.iter().any(|l| detected(l, std::slice::from_ref(*a))))
                .map(|a| format!("{} on {} {}: {}", a.detector, a.entity.kind.as_str(), a.entity.id, a.summary))
                .collect();
            assert!(unexplained.is_empty(), "{what}: alerts no attack explains: {unexplained:#?}");
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

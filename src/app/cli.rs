//! Command-line parsing and dispatch.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{GatewatchConfig, DEV_FINGERPRINT_KEY};
use crate::normalize::{Format, Normalizer};

#[derive(Parser)]
#[command(
    name = "gatewatch",
    version,
    about = "Watches API-gateway access logs and stops credential abuse while it happens"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    #[cfg(feature = "simulate")]
    /// The whole pipeline on an embedded Kafka broker with simulated traffic and attacks; alerts printed live.
    Demo {
        /// How long to run (wall-clock minutes).
        #[arg(long, default_value_t = 3)]
        minutes: u32,
        /// Event-time compression: simulated minutes per wall-clock minute.
        #[arg(long, default_value_t = 10)]
        speed: u32,
        /// Number of simulated API clients.
        #[arg(long, default_value_t = 200)]
        clients: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Where /metrics listens (a free port is used if this one is taken).
        #[arg(long, default_value = "127.0.0.1:9977")]
        listen: std::net::SocketAddr,
    },
    /// The service: Kafka in, alerts and metrics out (needs [kafka] and a fingerprint key).
    Run {
        /// The service config, with [kafka] and the fingerprint key (default: ./gatewatch.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Which stages to run: both (default), or only `ingest` (input topics → repartition
        /// topic) or only `detect` (repartition topic → alerts), to scale them apart.
        #[arg(long, value_enum, default_value = "both")]
        stage: crate::app::run::StageArg,
    },
    /// Send a sink's dead letters again through the sink (its queue, retries, rate limit and
    /// breaker); each one delivered is recorded in the dead-letter file, so it is sent once.
    Redrive {
        /// The service config (default: ./gatewatch.toml if present, else built-in defaults and detectors).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The sink, as detector actions name it: webhook:secops, email:oncall, alertmanager:main.
        #[arg(long)]
        sink: String,
        /// The dead-letter file to read (default: `[actions] dead_letter`).
        #[arg(long)]
        from: Option<PathBuf>,
        /// How long to wait for deliveries (`90s`, `5m`); what is left stays pending.
        #[arg(long, default_value = "2m")]
        timeout: String,
    },
    /// Backtest: the live engine over a file of access logs; alerts as JSON lines, summary on stderr.
    Replay {
        /// The service config (default: ./gatewatch.toml if present, else built-in defaults and detectors).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Input file, or `-` for stdin.
        #[arg(long)]
        input: String,
        #[arg(long, default_value = "auto", help = Format::HELP)]
        format: String,
        /// Where alerts go: a file, or `-` for stdout.
        #[arg(long, default_value = "-")]
        alerts: String,
        /// The year of record times that carry none (Tyk's text log); overrides `[input] year`.
        #[arg(long)]
        year: Option<i32>,
        /// Sort the input by event time first (for merged or rotated files written out of
        /// order, whose late records would otherwise be dropped); reads it whole into memory.
        #[arg(long)]
        sort: bool,
        /// Threads that read and normalize records while one more runs the detectors
        /// (default: one per core). Alerts and their order are the same for any count;
        /// 0 reads on the detectors' thread.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Why an alert fired: replays FILE as `replay` does, and prints the alert with the requests
    /// of its entity inside its window (normalized, scrubbed).
    Explain {
        /// The alert's id (or its first 8+ characters), as `replay` or a sink printed it.
        alert_id: String,
        /// The service config (default: ./gatewatch.toml if present, else built-in defaults and detectors).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The access-log file the alert came from.
        #[arg(long)]
        input: String,
        /// The input's format (see `replay`).
        #[arg(long, default_value = "auto")]
        format: String,
    },
    /// What a running instance holds about an entity: each rule's state (counts in its open
    /// windows, what it learned) and the entity's recent alerts. Asks the admin API.
    Inspect {
        /// client_id, source_ip, token (its fingerprint) or route.
        kind: String,
        /// The entity as alerts name it: `203.0.113.7`, `34b884ffafcb29fd`, `GET /v1/orders/{id}`.
        id: String,
        /// The instance's admin listener (`[admin] listen`).
        #[arg(long, default_value = "http://127.0.0.1:9977")]
        url: String,
        /// The environment variable holding its admin token.
        #[arg(long, default_value = "GATEWATCH_ADMIN_TOKEN")]
        token_env: String,
        /// Print the API's JSON answer as it is.
        #[arg(long)]
        json: bool,
    },
    /// Scrub secrets from log lines: every input line out again, same count, each secret
    /// replaced by `[REDACTED:<kind>:<fingerprint>]`; counts by kind and place on stderr.
    Scrub {
        /// The service config (default: ./gatewatch.toml if present, else built-in defaults and detectors).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Accepted for symmetry with `normalize`; the scrubber reads any line format.
        #[arg(long, default_value = "auto")]
        format: String,
    },
    /// Validate the config and detector files and run their test cases.
    Check {
        /// The service config (default: ./gatewatch.toml if present, else built-in defaults and detectors).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print how gatewatch reads each record: one normalized, scrubbed event per input line.
    Normalize {
        /// The service config (default: ./gatewatch.toml if present, else built-in defaults and detectors).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = "auto", help = Format::HELP)]
        format: String,
    },
    #[cfg(feature = "simulate")]
    /// Write simulated gateway traffic (with labelled attacks) to stdout, one record per line in arrival order.
    Simulate {
        /// Simulated span, minutes.
        #[arg(long, default_value_t = 60)]
        minutes: u32,
        /// Number of API clients (token holders).
        #[arg(long, default_value_t = 300)]
        clients: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// kong, envoy, envoy-text, nginx, nginx-json, aws, traefik, apisix, haproxy, tyk, generic
        #[arg(long, default_value = "kong")]
        format: String,
        /// Benign traffic only.
        #[arg(long)]
        no_attacks: bool,
        /// How many times each kind of attack is injected.
        #[arg(long, default_value_t = 1)]
        attack_rounds: usize,
        /// Also inject these attack kinds, which the default seven leave out: object_enumeration, forged_token, impossible_travel, scraping.
        #[arg(long, value_delimiter = ',')]
        with: Vec<String>,
        /// Write one JSON label per injected attack to this file.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Event time of the start (RFC 3339); default 2026-11-21T10:00:00Z.
        #[arg(long)]
        start: Option<String>,
        /// Config whose fingerprint key the labels use (default: ./gatewatch.toml, else the development key).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Produce the records to Kafka at these bootstrap servers instead of writing them to
        /// stdout (keyed by client id, else source address). Needs --topic.
        #[arg(long, requires = "topic")]
        brokers: Option<String>,
        /// The topic --brokers produces to.
        #[arg(long, requires = "brokers")]
        topic: Option<String>,
        /// With --brokers: simulated seconds per wall-clock second (default: as fast as the broker takes them).
        #[arg(long, requires = "brokers")]
        speed: Option<f64>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatewatch: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Loads the config (or defaults) and returns it with the fingerprint key to use
/// for offline commands: configured key, else the published development key.
pub fn offline_config(config: Option<&std::path::Path>) -> anyhow::Result<(GatewatchConfig, String)> {
    let cfg = GatewatchConfig::load_default(config).map_err(crate::config::ConfigErrors)?;
    let key = match cfg.fingerprint_key() {
        Some(k) => k,
        None => {
            tracing::debug!("no fingerprint key configured; using the development key");
            DEV_FINGERPRINT_KEY.to_string()
        }
    };
    Ok((cfg, key))
}

pub fn parse_format(s: &str) -> anyhow::Result<Format> {
    Format::parse(s).ok_or_else(|| anyhow::anyhow!("unknown format `{s}` (one of: {})", Format::NAMES.join(", ")))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // The service says what it does (startup, assignments, rebuilds); other commands only warn.
    // rdkafka 0.37 also logs every producer error event it has handed to the client context
    // ("Ignored event 'Error' on base producer poll"): the context reports them, once.
    init_tracing(match cli.command {
        Command::Run { .. } => "warn,gatewatch=info,rdkafka::producer::base_producer=error",
        // `simulate --brokers` says itself, once, when the brokers cannot be reached.
        #[cfg(feature = "simulate")]
        Command::Simulate { .. } => "warn,librdkafka=off,rdkafka=off",
        _ => "warn,rdkafka::producer::base_producer=error",
    });
    match cli.command {
        #[cfg(feature = "simulate")]
        Command::Demo { minutes, speed, clients, seed, listen } => {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            let opts = crate::app::demo::DemoOptions { minutes, speed, clients, seed, listen };
            crate::app::run::survive_hangup(&rt);
            rt.block_on(crate::app::demo::demo(opts, crate::app::run::shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config, stage } => {
            let cfg = GatewatchConfig::load_default(config.as_deref()).map_err(crate::config::ConfigErrors)?;
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            crate::app::run::survive_hangup(&rt);
            rt.block_on(crate::app::run::run(cfg, stage, crate::app::run::shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Redrive { config, sink, from, timeout } => {
            let timeout = crate::config::parse_duration(&timeout)
                .map_err(|e| anyhow::anyhow!("--timeout: {e}"))
                .map(|ms| std::time::Duration::from_millis(ms.max(0) as u64))?;
            let cfg = GatewatchConfig::load_default(config.as_deref()).map_err(crate::config::ConfigErrors)?;
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            let report = rt.block_on(crate::app::redrive::redrive(&cfg, &sink, from.as_deref(), timeout))?;
            println!("{}", report.render(&sink));
            Ok(if report.unfinished == 0 && report.failed_again == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Replay { config, input, format, alerts, year, sort, threads } => {
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            replay_cmd(config.as_deref(), &input, &format, &alerts, year, sort, threads)
        }
        Command::Explain { alert_id, config, input, format } => {
            crate::app::explain::explain(config.as_deref(), &input, &format, &alert_id)
        }
        Command::Inspect { kind, id, url, token_env, json } => {
            crate::app::inspect::inspect(&crate::app::inspect::InspectOptions { kind, id, url, token_env, json })
        }
        Command::Scrub { config, format } => {
            parse_format(&format)?;
            let (cfg, key) = offline_config(config.as_deref())?;
            let sc = crate::scrub::ScrubConfig::from_config(&cfg).map_err(crate::config::ConfigErrors)?;
            let scrubber = crate::scrub::Scrubber::new(crate::scrub::Fingerprinter::new(key.as_bytes()), &sc)
                .map_err(crate::config::ConfigErrors)?;
            let mut stats = crate::scrub::ScrubStats::default();
            let mut stream = scrubber.stream();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
            crate::app::scrub::scrub_stream(&mut stream, &mut std::io::stdin().lock(), &mut out, &mut stats)?;
            out.flush()?;
            eprintln!(
                "gatewatch scrub: {} lines, {} changed, {} secrets replaced",
                stats.lines,
                stats.lines_changed,
                stats.total()
            );
            for (kind, n) in stats.by_kind() {
                eprintln!("  kind {kind}: {n}");
            }
            for (place, n) in stats.by_place().filter(|(_, n)| *n > 0) {
                eprintln!("  place {place}: {n}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let report = crate::app::check::check(config.as_deref());
            print!("{}", report.render());
            Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Normalize { config, format } => {
            let (cfg, key) = offline_config(config.as_deref())?;
            let n = Normalizer::from_config(&cfg, parse_format(&format)?, key.as_bytes());
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for line in stdin.lock().split(b'\n') {
                let line = line?;
                n.normalize_message(&line, &mut |r| {
                    let text = match r {
                        Ok(ev) => serde_json::to_string(&ev).expect("event serializes"),
                        Err(rej) => {
                            serde_json::json!({"rejected": rej.reason.as_str(), "detail": rej.detail}).to_string()
                        }
                    };
                    let _ = writeln!(out, "{text}");
                });
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "simulate")]
        Command::Simulate {
            minutes,
            clients,
            seed,
            format,
            no_attacks,
            attack_rounds,
            with,
            labels,
            start,
            config,
            brokers,
            topic,
            speed,
        } => {
            use crate::simulate::{render, simulate, SimConfig, DEFAULT_START};
            let format = match parse_format(&format)? {
                f if f != Format::Auto && crate::simulate::render::can_render(f) => f,
                _ => anyhow::bail!(
                    "simulate writes {}",
                    crate::simulate::render::SIM_FORMATS.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
                ),
            };
            let start = match start {
                Some(s) => crate::normalize::time::parse_rfc3339(&s)
                    .ok_or_else(|| anyhow::anyhow!("--start `{s}` is not an RFC 3339 time"))?,
                None => DEFAULT_START,
            };
            let (gw, key) = offline_config(config.as_deref())?;
            // attacks that need something learned first are placed after what these files learn
            let (files, _) = crate::config::DetectorSource::for_config(&gw).load();
            let cfg = SimConfig {
                seed,
                start,
                duration_ms: minutes as i64 * 60_000,
                clients,
                fingerprint_key: key.into_bytes(),
                attacks: !no_attacks,
                attack_rounds,
                skip: Vec::new(),
                with: {
                    let known = crate::simulate::opt_in_kinds();
                    let mut kinds = Vec::new();
                    for w in &with {
                        match known.iter().find(|k| **k == w.as_str()) {
                            Some(k) => kinds.push(*k),
                            None => anyhow::bail!("--with `{w}`: one of {}", known.join(", ")),
                        }
                    }
                    kinds
                },
                learning: crate::app::demo::learning_of(&files),
            };
            cfg.validate()?;
            let sim = simulate(&cfg);
            if let Some(path) = labels {
                let mut f = std::io::BufWriter::new(
                    std::fs::File::create(&path)
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
                );
                for l in &sim.labels {
                    writeln!(f, "{}", l.to_json())?;
                }
                f.flush()?;
            }
            if let (Some(brokers), Some(topic)) = (brokers, topic) {
                let mut base = rdkafka::config::ClientConfig::new();
                base.set("bootstrap.servers", &brokers);
                let stop = std::sync::atomic::AtomicBool::new(false);
                let p =
                    crate::source::kafka::produce::produce_simulated(&base, &topic, &sim.records, format, speed, &stop)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "producing to {topic} at {brokers}: {e} (is the broker up, and are --brokers and --topic right?)"
                            )
                        })?;
                eprintln!(
                    "gatewatch simulate: {} {} records produced to {topic}, {} attacks labelled",
                    p.records,
                    format.name(),
                    sim.labels.len()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let written = sim.records.iter().try_for_each(|r| {
                out.write_all(render(r, format).as_bytes())?;
                out.write_all(b"\n")
            });
            match written.and_then(|()| out.flush()) {
                // `gatewatch simulate | head` is fine
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
                r => r.map(|()| ExitCode::SUCCESS).map_err(Into::into),
            }
        }
    }
}

/// Logs to stderr, filtered by `GATEWATCH_LOG` (an `EnvFilter`, e.g. `debug` or
/// `warn,gatewatch=info`), else `default`; colours only when stderr is a terminal.
fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn replay_cmd(
    config: Option<&std::path::Path>,
    input: &str,
    format: &str,
    alerts: &str,
    year: Option<i32>,
    sort: bool,
    threads: usize,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let (mut cfg, key) = offline_config(config)?;
    if year.is_some() {
        cfg.input.year = year;
    }
    let format = parse_format(format)?;
    let mut pipeline =
        crate::engine::Pipeline::from_config(&cfg, format, key.as_bytes()).map_err(crate::config::ConfigErrors)?;
    let source = crate::config::DetectorSource::for_config(&cfg);
    if pipeline.rules().is_empty() {
        anyhow::bail!("no enabled detector files: {} (set [detectors] dir)", source.describe());
    }
    eprintln!("gatewatch replay: {}", source.describe());
    let (reader, size): (Box<dyn BufRead>, Option<u64>) = if input == "-" {
        (Box::new(std::io::BufReader::with_capacity(1 << 20, std::io::stdin())), None)
    } else {
        let f = std::fs::File::open(input).map_err(|e| anyhow::anyhow!("cannot open {input}: {e}"))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(std::io::BufReader::with_capacity(1 << 20, f)), size)
    };
    let (reader, size): (Box<dyn BufRead>, Option<u64>) = if sort {
        let n = crate::normalize::Normalizer::from_config(&cfg, format, key.as_bytes());
        let sorted = crate::app::replay::sorted_by_time(reader, &n)?;
        eprintln!("gatewatch replay: input sorted by event time ({} bytes in memory)", sorted.len());
        let len = sorted.len() as u64;
        (Box::new(std::io::Cursor::new(sorted)), Some(len))
    } else {
        (reader, size)
    };
    let mut sink: Box<dyn Write> = if alerts == "-" {
        Box::new(std::io::BufWriter::new(std::io::stdout()))
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(alerts).map_err(|e| anyhow::anyhow!("cannot create {alerts}: {e}"))?,
        ))
    };
    let bar = match size {
        Some(n) if std::io::stderr().is_terminal() && n > 8 << 20 => {
            let b = indicatif::ProgressBar::new(n);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                    .expect("valid template"),
            );
            Some(b)
        }
        _ => None,
    };
    // One normalizer (one compiled scrubber) shared by every reading thread; none without them.
    let readers = if threads == 0 {
        Vec::new()
    } else {
        let shared = std::sync::Arc::new(crate::normalize::Normalizer::from_config(&cfg, format, key.as_bytes()));
        (0..threads).map(|_| crate::engine::MessageReader::new(shared.clone(), &cfg)).collect()
    };
    let mut on_alert = crate::app::replay::json_lines_writer(&mut sink);
    let summary = crate::app::replay::replay_parallel(&mut pipeline, readers, reader, &mut on_alert, &mut |n| {
        if let Some(b) = &bar {
            b.set_position(n)
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    drop(on_alert);
    sink.flush()?;
    eprint!("{}", summary.render());
    Ok(ExitCode::SUCCESS)
}

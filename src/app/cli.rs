//! Command-line parsing and dispatch.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{GatewatchConfig, DEV_FINGERPRINT_KEY};
use crate::normalize::{Format, Normalizer};

#[derive(Parser)]
#[command(name = "gatewatch", version, about = "Watches API-gateway access logs and stops credential abuse while it happens")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print how gatewatch reads each record: one normalized, scrubbed event per input line.
    Normalize {
        #[arg(long)]
        config: Option<PathBuf>,
        /// auto, kong, envoy, generic
        #[arg(long, default_value = "auto")]
        format: String,
    },
    /// Scrub secrets from log lines: every input line out again, same count, each secret
    /// replaced by `[REDACTED:<kind>:<fingerprint>]`; counts by kind and place on stderr.
    Scrub {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Accepted for symmetry with `normalize`; the scrubber reads any line format.
        #[arg(long, default_value = "auto")]
        format: String,
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
    match cli.command {
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
                        Err(rej) => serde_json::json!({"rejected": rej.reason.as_str(), "detail": rej.detail}).to_string(),
                    };
                    let _ = writeln!(out, "{text}");
                });
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Scrub { config, format } => {
            parse_format(&format)?;
            let (cfg, key) = offline_config(config.as_deref())?;
            let sc = crate::scrub::ScrubConfig::from_config(&cfg).map_err(crate::config::ConfigErrors)?;
            let scrubber = crate::scrub::Scrubber::new(crate::scrub::Fingerprinter::new(key.as_bytes()), &sc)
                .map_err(crate::config::ConfigErrors)?;
            let mut stats = crate::scrub::ScrubStats::default();
            let mut stream = scrubber.stream();
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let mut input = std::io::BufReader::with_capacity(1 << 16, stdin.lock());
            let mut buf = Vec::new();
            loop {
                buf.clear();
                if input.read_until(b'\n', &mut buf)? == 0 {
                    break;
                }
                let nl = buf.last() == Some(&b'\n');
                let body = if nl { &buf[..buf.len() - 1] } else { &buf[..] };
                // Bytes that are not UTF-8 are scrubbed as text after lossy decoding.
                let text = String::from_utf8_lossy(body);
                out.write_all(stream.scrub(&text, &mut stats).as_bytes())?;
                if nl {
                    out.write_all(b"\n")?;
                }
            }
            out.flush()?;
            eprintln!(
                "gatewatch scrub: {} lines, {} changed, {} secrets replaced",
                stats.lines, stats.lines_changed, stats.total()
            );
            for (kind, n) in stats.by_kind() {
                eprintln!("  kind {kind}: {n}");
            }
            for (place, n) in stats.by_place().filter(|(_, n)| *n > 0) {
                eprintln!("  place {place}: {n}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

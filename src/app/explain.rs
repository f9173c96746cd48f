//! `gatewatch explain ALERT_ID --input FILE`: why an alert fired. The file is replayed through
//! the same pipeline as `replay` (so the same alert, with the same id, is raised again), then
//! read once more for the events of the alert's entity inside its window: the requests that
//! made it fire, as normalized (scrubbed) events.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use crate::engine::Pipeline;
use crate::event::{format_ts, Alert, EntityKind, Event};

/// At most this many events are printed; the rest are counted.
const MAX_EVENTS: usize = 200;

/// Whether `ev` is one of `alert`'s entity's requests inside its window.
pub fn belongs(alert: &Alert, ev: &Event) -> bool {
    if ev.ts < alert.window_start || ev.ts > alert.window_end {
        return false;
    }
    let id = alert.entity.id.as_str();
    match alert.entity.kind {
        EntityKind::SourceIp => ev.source_ip.is_some_and(|ip| {
            let ip = ip.to_canonical();
            id.parse::<ipnet::IpNet>()
                .map(|n| n.contains(&ip))
                .or_else(|_| id.parse::<std::net::IpAddr>().map(|a| a.to_canonical() == ip))
                .unwrap_or(false)
        }),
        EntityKind::Token => {
            ev.principal_entity().as_deref() == Some(id) || ev.token_fingerprint.is_some_and(|f| f.to_hex() == id)
        }
        EntityKind::ClientId => ev.client_id.as_deref() == Some(id),
        EntityKind::Route => ev.route.as_deref() == Some(id),
    }
}

fn lines(input: &str) -> anyhow::Result<Box<dyn BufRead>> {
    let f = std::fs::File::open(input).map_err(|e| anyhow::anyhow!("cannot open {input}: {e}"))?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
}

pub fn explain(config: Option<&Path>, input: &str, format: &str, alert_id: &str) -> anyhow::Result<ExitCode> {
    let (cfg, key) = crate::app::cli::offline_config(config)?;
    let format = crate::app::cli::parse_format(format)?;
    let mut pipeline = Pipeline::from_config(&cfg, format, key.as_bytes()).map_err(crate::config::ConfigErrors)?;
    let mut alerts = Vec::new();
    let mut buf = Vec::new();
    let mut read = lines(input)?;
    loop {
        buf.clear();
        if read.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        pipeline.process(&buf, None, &mut alerts);
    }
    pipeline.finish(&mut alerts);
    let Some(alert) = alerts.iter().find(|a| a.id == alert_id || a.id.starts_with(alert_id) && alert_id.len() >= 8)
    else {
        eprintln!(
            "gatewatch explain: no alert `{alert_id}` in {input} ({} alert(s) raised there; `gatewatch replay` lists them)",
            alerts.len()
        );
        return Ok(ExitCode::FAILURE);
    };
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "alert {} — {} ({}), {}", alert.id, alert.detector, alert.rule, alert.severity.as_str())?;
    writeln!(out, "  {}", alert.summary)?;
    writeln!(
        out,
        "  entity {} {}, window {} – {}",
        alert.entity.kind.as_str(),
        alert.entity.id,
        format_ts(alert.window_start),
        format_ts(alert.window_end)
    )?;
    writeln!(out, "  evidence {}", serde_json::Value::Object(alert.evidence.clone()))?;
    // Read again, keeping only this entity's events in the window.
    let mut reader = crate::engine::MessageReader::new(
        crate::normalize::Normalizer::from_config(&cfg, format, key.as_bytes()),
        &cfg,
    );
    let mut found: Vec<Event> = Vec::new();
    let mut more = 0usize;
    let mut read = lines(input)?;
    loop {
        buf.clear();
        if read.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        reader.read(&buf, None, &mut |ev| {
            if belongs(alert, &ev) {
                if found.len() < MAX_EVENTS {
                    found.push(ev);
                } else {
                    more += 1;
                }
            }
        });
    }
    found.sort_by_key(|e| e.ts);
    writeln!(out, "{} request(s) of this {} in the window:", found.len() + more, alert.entity.kind.as_str())?;
    for ev in &found {
        writeln!(out, "{}", serde_json::to_string(ev)?)?;
    }
    if more > 0 {
        writeln!(out, "… and {more} more")?;
    }
    Ok(ExitCode::SUCCESS)
}

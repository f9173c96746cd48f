//! `gatewatch inspect KIND ID`: asks a running instance what it holds about an entity
//! (`GET /api/v1/entities/{kind}/{id}`) and prints it for a person, or as the JSON the API
//! answered (`--json`). The admin token is read from an environment variable, never from
//! the command line (where `ps` and shell history would keep it).

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::event::EntityKind;

/// Where and how to ask.
pub struct InspectOptions {
    pub kind: String,
    pub id: String,
    /// The admin listener: `http://127.0.0.1:9977`.
    pub url: String,
    /// The variable holding the admin token.
    pub token_env: String,
    pub json: bool,
}

pub fn inspect(o: &InspectOptions) -> anyhow::Result<ExitCode> {
    let kind = EntityKind::parse(&o.kind)
        .ok_or_else(|| anyhow::anyhow!("KIND is one of client_id, source_ip, token, route"))?;
    let token = std::env::var(&o.token_env)
        .map_err(|_| anyhow::anyhow!("set {} to the admin token ([admin] token_env) of the instance", o.token_env))?;
    let base = o.url.trim_end_matches('/');
    let mut url = reqwest::Url::parse(&format!("{base}/api/v1/entities/"))
        .map_err(|e| anyhow::anyhow!("--url `{}`: {e}", o.url))?;
    url.path_segments_mut()
        .map_err(|_| anyhow::anyhow!("--url `{}` cannot take a path", o.url))?
        .pop_if_empty()
        .push(kind.as_str())
        .push(&o.id);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, body) = rt
        .block_on(async {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
            let resp = client.get(url).bearer_auth(token.trim()).send().await?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            Ok::<_, reqwest::Error>((status, body))
        })
        .map_err(|e| anyhow::anyhow!("cannot reach {base}: {}", e.without_url()))?;
    if o.json && status.is_success() {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    match status.as_u16() {
        200 => {
            print!("{}", render(&body));
            Ok(ExitCode::SUCCESS)
        }
        404 => {
            eprintln!("{}: {} {}", o.id, kind.as_str(), body["error"].as_str().unwrap_or("not found"));
            Ok(ExitCode::from(1))
        }
        401 => anyhow::bail!("{base} refused the token in {} (401)", o.token_env),
        s => anyhow::bail!("{base} answered {s}: {}", body["error"].as_str().unwrap_or("")),
    }
}

/// The answer for a person: per rule, what it holds; then the entity's recent alerts.
pub fn render(body: &Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let e = &body["entity"];
    let _ = writeln!(out, "{} {}", e["kind"].as_str().unwrap_or("?"), e["id"].as_str().unwrap_or("?"));
    let states = body["state"].as_array().map(Vec::as_slice).unwrap_or_default();
    if states.is_empty() {
        let _ = writeln!(out, "  no rule holds state about it now");
    }
    for s in states {
        let _ = writeln!(
            out,
            "  {} ({}) on {}",
            s["rule"].as_str().unwrap_or("?"),
            s["detector"].as_str().unwrap_or("?"),
            s["partition"].as_str().unwrap_or("?")
        );
        if let Some(held) = s["held"].as_object() {
            for (k, v) in held {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let _ = writeln!(out, "    {k}: {}", shorten(&v, 160));
            }
        }
    }
    let alerts = body["alerts"].as_array().map(Vec::as_slice).unwrap_or_default();
    let _ = writeln!(out, "  recent alerts: {}", alerts.len());
    for a in alerts {
        let _ = writeln!(
            out,
            "    {}  {:<8} {}  {}  [{}]",
            a["window_end"].as_str().unwrap_or("?"),
            a["severity"].as_str().unwrap_or("?"),
            a["detector"].as_str().unwrap_or("?"),
            shorten(a["summary"].as_str().unwrap_or(""), 100),
            a["id"].as_str().unwrap_or("?"),
        );
    }
    out
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_reads_rule_by_rule_then_alerts() {
        let body = serde_json::json!({
            "entity": {"kind": "source_ip", "id": "203.0.113.7"},
            "state": [{"rule": "auth-failure-spike", "detector": "auth_failure_spike", "partition": "logs/0",
                       "held": {"failures": 31, "window_ms": 60000}}],
            "alerts": [{"id": "ab12", "window_end": "2026-01-01T00:01:00Z", "severity": "high",
                        "detector": "auth_failure_spike", "summary": "31 failed logins"}],
        });
        let text = render(&body);
        assert!(text.starts_with("source_ip 203.0.113.7\n"), "{text}");
        assert!(text.contains("  auth-failure-spike (auth_failure_spike) on logs/0\n    failures: 31\n"), "{text}");
        assert!(
            text.contains(
                "recent alerts: 1\n    2026-01-01T00:01:00Z  high     auth_failure_spike  31 failed logins  [ab12]"
            ),
            "{text}"
        );
    }
}

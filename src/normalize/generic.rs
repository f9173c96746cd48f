//! Generic JSON: the normalized field names themselves (plus common aliases),
//! or any names mapped in `[input.generic.fields]`, nested paths with dots.
//!
//! ```toml
//! [input.generic]
//! latency_unit = "s"
//! [input.generic.fields]
//! ts = "time"
//! client_id = "ctx.identity.app"
//! source_ip = "net.peer"
//! ```

use serde_json::Value;

use super::{client_ip::parse_ip, fields::parse_num_str, time, Normalizer, Parts, Reject, RejectReason};
use crate::config::GenericInputConfig;
use crate::event::{Event, Fingerprint};

/// Normalized names a field map may target.
pub const FIELD_NAMES: &[&str] = &[
    "ts", "client_id", "subject", "token_fingerprint", "credential_id", "authorization", "api_key", "cookie",
    "scopes", "source_ip", "x_forwarded_for", "method", "host", "path", "query", "status", "latency_ms",
    "upstream_latency_ms", "bytes_sent", "user_agent", "request_id", "upstream",
];

/// Built-in aliases tried when a field is not mapped.
fn aliases(name: &str) -> &'static [&'static str] {
    match name {
        "ts" => &["ts", "timestamp", "@timestamp", "time"],
        "client_id" => &["client_id", "consumer", "app_id"],
        "subject" => &["subject", "sub", "user", "principal"],
        "token_fingerprint" => &["token_fingerprint"],
        "credential_id" => &["credential_id", "jti", "api_key_id"],
        "authorization" => &["authorization", "Authorization"],
        "api_key" => &["api_key", "apikey", "x-api-key"],
        "cookie" => &["cookie"],
        "scopes" => &["scopes", "scope", "scp"],
        "source_ip" => &["source_ip", "client_ip", "remote_addr", "ip"],
        "x_forwarded_for" => &["x_forwarded_for", "x-forwarded-for", "xff"],
        "method" => &["method"],
        "host" => &["host"],
        "path" => &["path", "uri", "url"],
        "query" => &["query", "query_string"],
        "status" => &["status", "status_code"],
        "latency_ms" => &["latency_ms", "duration_ms", "latency"],
        "upstream_latency_ms" => &["upstream_latency_ms", "upstream_latency"],
        "bytes_sent" => &["bytes_sent", "bytes"],
        "user_agent" => &["user_agent", "user-agent"],
        "request_id" => &["request_id", "x-request-id"],
        "upstream" => &["upstream", "service"],
        _ => &[],
    }
}

#[derive(Clone, Debug, Default)]
pub struct GenericMap {
    /// normalized name → path segments
    map: Vec<(String, Vec<String>)>,
    latency_scale: f64,
}

impl GenericMap {
    pub fn from_config(c: &GenericInputConfig) -> Self {
        GenericMap {
            map: c.fields.iter().map(|(k, v)| (k.clone(), v.split('.').map(str::to_string).collect())).collect(),
            latency_scale: match c.latency_unit.as_deref() {
                Some("s") => 1000.0,
                Some("us") => 0.001,
                Some("ns") => 0.000_001,
                _ => 1.0,
            },
        }
    }

    fn lookup<'v>(&self, root: &'v Value, name: &str) -> Option<&'v Value> {
        if let Some((_, path)) = self.map.iter().find(|(k, _)| k == name) {
            let mut v = root;
            for seg in path {
                v = v.get(seg)?;
            }
            return Some(v).filter(|v| !v.is_null());
        }
        aliases(name).iter().find_map(|a| root.get(*a)).filter(|v| !v.is_null())
    }

    fn str<'v>(&self, root: &'v Value, name: &str) -> Option<&'v str> {
        self.lookup(root, name).and_then(Value::as_str).filter(|s| !s.is_empty() && *s != "-")
    }

    fn num(&self, root: &Value, name: &str) -> Option<f64> {
        match self.lookup(root, name)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => parse_num_str(s),
            _ => None,
        }
    }
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let root: Value = serde_json::from_slice(rec).map_err(|e| Reject::json(&e))?;
    if !root.is_object() {
        return Err(Reject::new(RejectReason::NotAnObject, "record is not a JSON object"));
    }
    let g = &n.generic;
    let ts = match g.lookup(&root, "ts") {
        None => None,
        Some(Value::Number(x)) => Some(
            x.as_f64().and_then(time::from_epoch).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "ts out of range"))?,
        ),
        Some(Value::String(s)) => {
            Some(time::parse_any(s).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "ts is not a timestamp"))?)
        }
        Some(_) => return Err(Reject::new(RejectReason::BadTimestamp, "ts is neither a string nor a number")),
    };
    let scopes_joined;
    let scopes = match g.lookup(&root, "scopes") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Array(a)) => {
            scopes_joined = a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ");
            Some(scopes_joined.as_str())
        }
        _ => None,
    };
    let scale = g.latency_scale;
    let parts = Parts {
        ts,
        method: g.str(&root, "method"),
        host: g.str(&root, "host"),
        uri: g.str(&root, "path"),
        query: g.str(&root, "query"),
        status: g.num(&root, "status"),
        latency_ms: g.num(&root, "latency_ms").map(|v| v * scale),
        upstream_latency_ms: g.num(&root, "upstream_latency_ms").map(|v| v * scale),
        bytes_sent: g.num(&root, "bytes_sent"),
        user_agent: g.str(&root, "user_agent"),
        request_id: g.str(&root, "request_id"),
        peer: g.str(&root, "source_ip").and_then(parse_ip),
        xff: g.str(&root, "x_forwarded_for"),
        upstream: g.str(&root, "upstream"),
        creds: super::identity::RawCredentials {
            credential_id: g.str(&root, "credential_id"),
            authorization: g.str(&root, "authorization"),
            api_key: g.str(&root, "api_key"),
            cookie: g.str(&root, "cookie"),
            ..Default::default()
        },
        client_id: g.str(&root, "client_id"),
        subject: g.str(&root, "subject"),
        scopes,
    };
    let mut ev = n.build("generic", parts)?;
    if ev.token_fingerprint.is_none() {
        ev.token_fingerprint = g.str(&root, "token_fingerprint").and_then(Fingerprint::from_hex);
    }
    Ok(ev)
}

//! Generic input: the normalized field names themselves (plus common aliases),
//! or any names mapped in `[input.generic.fields]`, from a JSON object or a
//! `key=value` (logfmt) line.
//!
//! - Nested JSON fields use dots (`ctx.identity.app`); a key that itself holds
//!   dots (`"http.status"`, or any logfmt key) is matched first as written.
//! - A unit after `|` converts the value: durations `s`, `ms`, `us`, `ns` → ms
//!   (`latency_ms = "timing.total|s"`); for `ts`, an epoch number in `s`, `ms`,
//!   `us` or `ns` (otherwise its size decides). `latency_unit` is the default
//!   unit of both latency fields.
//!
//! ```toml
//! [input.generic]
//! latency_unit = "s"
//! [input.generic.fields]
//! ts = "time|s"
//! client_id = "ctx.identity.app"
//! source_ip = "net.peer"
//! upstream_latency_ms = "upstream.duration_ns|ns"
//! ```

use serde_json::{Map, Value};

use super::text::{unescape, Logfmt};
use super::{client_ip::parse_ip, fields::parse_num_str, time, Normalizer, Parts, Reject, RejectReason};
use crate::config::GenericInputConfig;
use crate::event::{ClientIdSource, Event, Fingerprint};

/// Normalized names a field map may target.
pub const FIELD_NAMES: &[&str] = &[
    "ts",
    "client_id",
    "subject",
    "token_fingerprint",
    "credential_id",
    "authorization",
    "api_key",
    "cookie",
    "scopes",
    "source_ip",
    "x_forwarded_for",
    "method",
    "host",
    "path",
    "query",
    "status",
    "latency_ms",
    "upstream_latency_ms",
    "bytes_sent",
    "user_agent",
    "referer",
    "request_id",
    "upstream",
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
        "referer" => &["referer", "referrer"],
        "request_id" => &["request_id", "x-request-id"],
        "upstream" => &["upstream", "service"],
        _ => &[],
    }
}

/// A header-like field the record keeps in a `headers` object (`headers`, `request.headers`,
/// `request_headers`) rather than at the top: names matched case-insensitively, as HTTP does.
fn nested_header<'v>(root: &'v Value, name: &str) -> Option<&'v Value> {
    let header = match name {
        "authorization" => "authorization",
        "api_key" => "x-api-key",
        "cookie" => "cookie",
        "user_agent" => "user-agent",
        "referer" => "referer",
        "x_forwarded_for" => "x-forwarded-for",
        "request_id" => "x-request-id",
        "host" => "host",
        _ => return None,
    };
    [root.get("headers"), root.get("request_headers"), root.get("request").and_then(|r| r.get("headers"))]
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .find_map(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case(header)).map(|(_, v)| v))
        .filter(|v| !v.is_null())
}

/// A unit a mapped field's value is in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl Unit {
    pub fn parse(s: &str) -> Option<Unit> {
        Some(match s.trim() {
            "s" | "sec" | "seconds" => Unit::Seconds,
            "ms" | "millis" | "milliseconds" => Unit::Millis,
            "us" | "µs" | "micros" | "microseconds" => Unit::Micros,
            "ns" | "nanos" | "nanoseconds" => Unit::Nanos,
            _ => return None,
        })
    }

    /// Multiplier to milliseconds.
    pub fn to_ms(self) -> f64 {
        match self {
            Unit::Seconds => 1000.0,
            Unit::Millis => 1.0,
            Unit::Micros => 0.001,
            Unit::Nanos => 0.000_001,
        }
    }
}

#[derive(Clone, Debug)]
struct Mapped {
    name: String,
    /// The path as written (tried first as one literal key).
    full: String,
    segments: Vec<String>,
    unit: Option<Unit>,
}

#[derive(Clone, Debug, Default)]
pub struct GenericMap {
    map: Vec<Mapped>,
    latency_unit: Option<Unit>,
}

/// `path|unit` → (path, unit). An unknown unit keeps the whole text as the path
/// (it will not be found, and [`validate`] reports it).
fn split_unit(v: &str) -> (&str, Option<Unit>) {
    match v.rsplit_once('|') {
        Some((p, u)) => match Unit::parse(u) {
            Some(unit) => (p.trim(), Some(unit)),
            None => (v, None),
        },
        None => (v, None),
    }
}

/// Problems in a generic field map, as `(field, message)`, for the config checker.
pub fn validate(c: &GenericInputConfig) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    for (k, v) in &c.fields {
        if let Some((_, u)) = v.rsplit_once('|') {
            if Unit::parse(u).is_none() {
                errs.push((format!("input.generic.fields.{k}"), format!("unknown unit `{u}` (one of: s, ms, us, ns)")));
            }
        }
    }
    if let Some(u) = c.latency_unit.as_deref() {
        if Unit::parse(u).is_none() {
            errs.push(("input.generic.latency_unit".into(), format!("unknown unit `{u}` (one of: s, ms, us, ns)")));
        }
    }
    errs
}

impl GenericMap {
    pub fn from_config(c: &GenericInputConfig) -> Self {
        GenericMap {
            map: c
                .fields
                .iter()
                .map(|(k, v)| {
                    let (path, unit) = split_unit(v);
                    Mapped {
                        name: k.clone(),
                        full: path.to_string(),
                        segments: path.split('.').map(str::to_string).collect(),
                        unit,
                    }
                })
                .collect(),
            latency_unit: c.latency_unit.as_deref().and_then(Unit::parse),
        }
    }

    fn mapped(&self, name: &str) -> Option<&Mapped> {
        self.map.iter().find(|m| m.name == name)
    }

    fn lookup<'v>(&self, root: &'v Value, name: &str) -> Option<&'v Value> {
        if let Some(m) = self.mapped(name) {
            if let Some(v) = root.get(&m.full) {
                return Some(v).filter(|v| !v.is_null());
            }
            let mut v = root;
            for seg in &m.segments {
                v = v.get(seg)?;
            }
            return Some(v).filter(|v| !v.is_null());
        }
        aliases(name).iter().find_map(|a| root.get(*a)).filter(|v| !v.is_null()).or_else(|| nested_header(root, name))
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

    /// A duration field in ms: the field's own unit, else `latency_unit`, else ms.
    fn millis(&self, root: &Value, name: &str) -> Option<f64> {
        let unit = self.mapped(name).and_then(|m| m.unit).or(self.latency_unit).unwrap_or(Unit::Millis);
        self.num(root, name).map(|v| v * unit.to_ms())
    }
}

/// A logfmt line as a flat JSON object of strings (keys kept as written, dots included).
fn logfmt_object(rec: &[u8]) -> Result<Value, Reject> {
    let line =
        crate::bytes::utf8(rec).ok_or_else(|| Reject::new(RejectReason::Malformed, "key=value line: not UTF-8"))?;
    let mut m = Map::new();
    for p in Logfmt::new(line) {
        if p.key.is_empty() {
            continue;
        }
        let v = if p.escaped { unescape(p.value) } else { p.value.to_string() };
        m.insert(p.key.to_string(), Value::String(v));
    }
    if m.is_empty() {
        return Err(Reject::new(RejectReason::Malformed, "not a JSON object nor key=value pairs"));
    }
    Ok(Value::Object(m))
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let root: Value = if rec.first() == Some(&b'{') {
        super::fields::from_json(rec).map_err(|e| Reject::json(&e))?
    } else {
        logfmt_object(rec)?
    };
    if !root.is_object() {
        return Err(Reject::new(RejectReason::NotAnObject, "record is not a JSON object"));
    }
    let g = &n.generic;
    let ts_unit = g.mapped("ts").and_then(|m| m.unit);
    let epoch = |v: f64| match ts_unit {
        Some(u) => Some((v * u.to_ms()).round() as crate::event::Millis).filter(|ms| *ms > 0),
        None => time::from_epoch(v),
    };
    let ts = match g.lookup(&root, "ts") {
        None => None,
        Some(Value::Number(x)) => {
            Some(x.as_f64().and_then(epoch).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "ts out of range"))?)
        }
        Some(Value::String(s)) => Some(
            match (ts_unit, s.trim().parse::<f64>()) {
                (Some(_), Ok(v)) => epoch(v),
                _ => time::parse_any(s),
            }
            .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "ts is not a timestamp"))?,
        ),
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
    let parts = Parts {
        ts,
        method: g.str(&root, "method"),
        host: g.str(&root, "host"),
        uri: g.str(&root, "path"),
        query: g.str(&root, "query"),
        status: g.num(&root, "status"),
        latency_ms: g.millis(&root, "latency_ms"),
        upstream_latency_ms: g.millis(&root, "upstream_latency_ms"),
        bytes_sent: g.num(&root, "bytes_sent"),
        user_agent: g.str(&root, "user_agent"),
        referer: g.str(&root, "referer"),
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
        // The record's own client field (or the field it is mapped to) is taken as the
        // gateway's word; a client read from a JWT in `authorization` stays a claim.
        client_id_source: ClientIdSource::Gateway,
        subject: g.str(&root, "subject"),
        scopes,
        route: None,
    };
    let mut ev = n.build("generic", parts)?;
    if ev.token_fingerprint.is_none() {
        ev.token_fingerprint = g.str(&root, "token_fingerprint").and_then(Fingerprint::from_hex);
    }
    Ok(ev)
}

#[cfg(test)]
mod nested_header_tests {
    use super::super::{Format, Normalizer};

    #[test]
    fn an_authorization_header_in_a_headers_object_is_read_like_a_top_level_one() {
        let n = Normalizer::new(Format::Generic, b"0123456789abcdef");
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImNsaWVudF9pZCI6ImFwcC03In0.c2lnbmF0dXJlLW5vdC1jaGVja2Vk";
        let top = format!(
            r#"{{"ts":"2026-11-21T10:00:00Z","source_ip":"198.51.100.7","method":"GET","path":"/v1/me","status":200,"authorization":"Bearer {jwt}"}}"#
        );
        let nested = format!(
            r#"{{"ts":"2026-11-21T10:00:00Z","source_ip":"198.51.100.7","method":"GET","path":"/v1/me","status":200,"headers":{{"Authorization":"Bearer {jwt}","User-Agent":"curl/8"}}}}"#
        );
        let a = n.normalize_record(top.as_bytes()).unwrap();
        let b = n.normalize_record(nested.as_bytes()).unwrap();
        assert!(b.token_fingerprint.is_some(), "{b:?}");
        assert_eq!((a.token_fingerprint, &a.subject, &a.client_id), (b.token_fingerprint, &b.subject, &b.client_id));
        assert_eq!(b.user_agent.as_deref(), Some("curl/8"));
    }
}

//! One function per output format, each writing a record the way that gateway
//! writes its access log (field names, value types, sentinels), one JSON object
//! per line. New formats are one more function and one more match arm.

use std::fmt::Write;

use super::traffic::ROUTES;
use super::SimRecord;
use crate::event::format_ts;
use crate::normalize::Format;

/// Formats the simulator can write.
pub const SIM_FORMATS: &[Format] = &[Format::Kong, Format::Envoy, Format::Generic];

/// Whether [`render`] has a renderer of its own for `format`.
pub fn can_render(format: Format) -> bool {
    SIM_FORMATS.contains(&format) || format == Format::Auto
}

/// Renders one record in `format` (`Auto` renders generic JSON). Formats without a
/// renderer (see [`can_render`]; `gatewatch simulate` refuses them) get generic JSON.
pub fn render(rec: &SimRecord, format: Format) -> String {
    match format {
        Format::Kong => render_kong(rec),
        Format::Envoy => render_envoy(rec),
        _ => render_generic(rec),
    }
}

/// Private addresses of the three gateway nodes (pods) and of upstream pods.
fn node_ip(node: u8) -> [u8; 4] {
    [10, 0, 1, 11 + node]
}

fn upstream_pod(rec: &SimRecord) -> [u8; 4] {
    let h = rec.upstream.bytes().fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    [10, 42, h % 200, 10 + (rec.source_port % 3) as u8]
}

/// Stable UUID-shaped id of a named gateway object (Kong service or route).
fn object_id(kind: &str, name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut h2: u64 = 0x8422_2325_cbf2_9ce4;
    for b in kind.bytes().chain([0]).chain(name.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        h2 = (h2 ^ b as u64).wrapping_mul(0x100_0000_01b3).rotate_left(5);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        h2 >> 52,
        h2 & 0xffff_ffff_ffff
    )
}

/// Per-route strings that never change: Kong service and route ids, route name, path regex.
struct RouteStrings {
    service_id: String,
    route_id: String,
    name: String,
    path_regex: String,
    service_host: String,
    cluster: String,
}

fn route_strings(idx: u8) -> &'static RouteStrings {
    static CACHE: std::sync::OnceLock<Vec<RouteStrings>> = std::sync::OnceLock::new();
    &CACHE.get_or_init(|| {
        ROUTES
            .iter()
            .map(|r| RouteStrings {
                service_id: object_id("service", r.upstream),
                route_id: object_id("route", r.route),
                name: route_name(r.route),
                path_regex: format!("~{}$", r.pattern.replace("{n}", "\\d+").replace("{uuid}", "[0-9a-f-]{36}")),
                service_host: format!("{}.prod.svc.cluster.local", r.upstream),
                cluster: format!("outbound|8080||{}.prod.svc.cluster.local", r.upstream),
            })
            .collect()
    })[idx as usize]
}

/// Kong's workspace id (the `default` workspace).
const WORKSPACE: &str = "f381e34e-5c25-4e65-b91b-3c0a86cfc393";

/// Kong 3.x log-plugin JSON (`kong.log.serialize`, as http-log/kafka-log send it).
/// `authorization` is logged raw, as Kong < 2.1 or a `custom_fields_by_lua` setup does.
pub fn render_kong(rec: &SimRecord) -> String {
    let route = &ROUTES[rec.route_idx as usize];
    let mut o = Json::with_capacity(2200);
    o.begin();
    o.obj("request");
    o.str("id", &rec.request_id);
    o.str("method", rec.method);
    let uri = rec.uri();
    o.str("uri", &uri);
    o.str_prefixed("url", &format!("https://{}", rec.host), &uri);
    o.num("size", rec.bytes_received);
    o.obj("querystring");
    if let Some(q) = &rec.query {
        for (k, v) in q.split('&').filter_map(|p| p.split_once('=')) {
            o.str(k, &v.replace('+', " "));
        }
    }
    o.end();
    o.obj("headers");
    o.str("host", rec.host);
    o.str("user-agent", &rec.user_agent);
    o.str("accept", "application/json");
    if let Some(t) = &rec.token {
        o.str_prefixed("authorization", "Bearer ", &t.raw);
    }
    if rec.method != "GET" && rec.method != "DELETE" {
        o.str("content-type", "application/json");
    }
    if let Some(x) = &rec.xff {
        // Kong logs the inbound header; `client_ip` is its real-ip result.
        if let Some((left, _)) = x.rsplit_once(", ") {
            o.str("x-forwarded-for", left);
        }
    }
    o.end();
    o.end();
    if !rec.answered_by_gateway {
        o.str("upstream_uri", &uri);
    }
    o.obj("response");
    o.num("status", rec.status);
    o.num("size", rec.bytes_sent);
    o.obj("headers");
    o.str("content-type", "application/json; charset=utf-8");
    o.str("content-length", &rec.bytes_sent.saturating_sub(260).to_string());
    o.str("via", "1.1 kong/3.8.0.0-enterprise-edition");
    o.str("x-kong-proxy-latency", &rec.gateway_latency_ms.to_string());
    if let Some(u) = rec.upstream_latency_ms {
        o.str("x-kong-upstream-latency", &u.to_string());
    }
    o.str("x-kong-request-id", &rec.request_id.replace('-', ""));
    if rec.status == 401 && rec.token.is_some() {
        o.str("www-authenticate", "Bearer realm=\"kong\", error=\"invalid_token\"");
    }
    if rec.status == 429 {
        o.str("retry-after", "1");
        o.str("ratelimit-limit", "300");
        o.str("ratelimit-remaining", "0");
    }
    o.end();
    o.end();
    o.obj("latencies");
    o.num("kong", rec.gateway_latency_ms);
    match rec.upstream_latency_ms {
        Some(u) => o.num("proxy", u),
        None => o.num("proxy", -1),
    }
    o.num("request", rec.latency_ms);
    o.num("receive", 0);
    o.end();
    if !rec.answered_by_gateway {
        o.arr("tries");
        o.begin();
        o.num("balancer_start", rec.ts + rec.gateway_latency_ms as i64);
        o.str("ip", &dotted(upstream_pod(rec)));
        o.num("port", 8080);
        o.num("balancer_latency", 0);
        o.end();
        o.arr_end();
        o.str("upstream_status", &rec.status.to_string());
        o.str("source", "upstream");
    } else {
        o.str("source", "kong");
    }
    o.str("client_ip", &rec.source_ip.to_string());
    o.num("started_at", rec.ts);
    let rs = route_strings(rec.route_idx);
    o.obj("service");
    o.str("id", &rs.service_id);
    o.str("name", route.upstream);
    o.str("host", &rs.service_host);
    o.num("port", 8080);
    o.str("protocol", "http");
    o.num("retries", 5);
    o.num("connect_timeout", 60000);
    o.num("read_timeout", 5000);
    o.num("write_timeout", 60000);
    o.str("ws_id", WORKSPACE);
    o.end();
    o.obj("route");
    o.str("id", &rs.route_id);
    o.str("name", &rs.name);
    o.arr("paths");
    o.item_str(&rs.path_regex);
    o.arr_end();
    o.arr("methods");
    o.item_str(route.method);
    o.arr_end();
    o.arr("hosts");
    o.item_str(route.host);
    o.arr_end();
    o.arr("protocols");
    o.item_str("https");
    o.arr_end();
    o.bool("strip_path", false);
    o.bool("preserve_host", true);
    o.obj("service");
    o.str("id", &rs.service_id);
    o.end();
    o.str("ws_id", WORKSPACE);
    o.end();
    if let Some(c) = &rec.consumer {
        o.obj("consumer");
        o.str("id", &c.id);
        o.str("username", &c.username);
        o.num("created_at", c.created_at);
        o.end();
        o.obj("authenticated_entity");
        o.str("id", &c.credential_id);
        o.str("consumer_id", &c.id);
        o.end();
    }
    o.str("workspace", WORKSPACE);
    o.str("workspace_name", "default");
    o.end();
    o.finish()
}

/// Istio / Envoy JSON access log (`EnvoyJSONLogFormatIstio` keys, `json_format`
/// string values) plus `authorization`, which this operator logs.
pub fn render_envoy(rec: &SimRecord) -> String {
    let node = dotted(node_ip(rec.gateway_node));
    let mut o = Json::with_capacity(1600);
    o.begin();
    o.str("start_time", &rfc3339_ms(rec.ts));
    let rs = route_strings(rec.route_idx);
    o.str("route_name", &rs.name);
    o.str("method", rec.method);
    o.str("path", &rec.uri());
    o.str("protocol", if rec.user_agent.starts_with("Mozilla") { "HTTP/2" } else { "HTTP/1.1" });
    o.str("response_code", &rec.status.to_string());
    let (flags, details) = match rec.status {
        401 if rec.answered_by_gateway => ("-", "jwt_authn_access_denied{Jwt_is_expired}"),
        403 if rec.answered_by_gateway => ("-", "rbac_access_denied_matched_policy[none]"),
        429 => ("RL", "local_rate_limited"),
        503 => ("UH", "no_healthy_upstream"),
        504 => ("UT", "response_timeout"),
        502 => ("UC", "upstream_reset_before_response_started{connection_termination}"),
        _ => ("-", "via_upstream"),
    };
    o.str("response_flags", flags);
    o.str("response_code_details", details);
    o.str("connection_termination_details", "-");
    o.str("upstream_transport_failure_reason", "-");
    o.str("bytes_received", &rec.bytes_received.to_string());
    o.str("bytes_sent", &rec.bytes_sent.to_string());
    o.str("duration", &rec.latency_ms.to_string());
    o.str("upstream_service_time", &rec.upstream_latency_ms.map_or("-".to_string(), |u| u.to_string()));
    o.str("x_forwarded_for", rec.xff.as_deref().unwrap_or("-"));
    o.str("user_agent", &rec.user_agent);
    o.str("request_id", &rec.request_id);
    o.str("authority", rec.host);
    let routed = !rec.answered_by_gateway;
    let called = routed && rec.status != 503;
    o.str("upstream_host", &if called { format!("{}:8080", dotted(upstream_pod(rec))) } else { "-".into() });
    o.str(
        "upstream_cluster",
        if routed { &rs.cluster } else { "-" },
    );
    o.str("upstream_local_address", &if called { format!("{node}:{}", 40_000 + rec.source_port % 20_000) } else { "-".into() });
    o.str("downstream_local_address", &format!("{node}:8443"));
    o.str("downstream_remote_address", &format!("{}:{}", rec.source_ip, rec.source_port));
    o.str("requested_server_name", rec.host);
    o.str("upstream_request_attempt_count", if called { "1" } else { "0" });
    match &rec.token {
        Some(t) => o.str_prefixed("authorization", "Bearer ", &t.raw),
        None => o.str("authorization", "-"),
    }
    o.end();
    o.finish()
}

/// Generic JSON with gatewatch's own field names (what a Vector/Fluent Bit pipeline
/// or a home-grown gateway plugin is told to emit).
pub fn render_generic(rec: &SimRecord) -> String {
    let mut o = Json::with_capacity(1200);
    o.begin();
    o.str("ts", &rfc3339_ms(rec.ts));
    o.str("gateway_node", &format!("gw-{}", rec.gateway_node + 1));
    o.str("method", rec.method);
    o.str("host", rec.host);
    o.str("path", &rec.uri());
    o.num("status", rec.status);
    o.num("latency_ms", rec.latency_ms);
    if let Some(u) = rec.upstream_latency_ms {
        o.num("upstream_latency_ms", u);
    }
    o.num("bytes_sent", rec.bytes_sent);
    o.str("source_ip", &rec.source_ip.to_string());
    if let Some(x) = &rec.xff {
        o.str("x_forwarded_for", x);
    }
    o.str("user_agent", &rec.user_agent);
    o.str("request_id", &rec.request_id);
    if !rec.answered_by_gateway {
        o.str("upstream", rec.upstream);
    }
    if let Some(t) = &rec.token {
        // the authorizer's verdict: identity only for accepted tokens
        if rec.status != 401 {
            o.str("client_id", &t.client_id);
            o.str("subject", &t.subject);
        }
        o.str_prefixed("authorization", "Bearer ", &t.raw);
    }
    o.end();
    o.finish()
}

fn route_name(route: &str) -> String {
    let mut s = String::with_capacity(route.len());
    for c in route.chars() {
        match c {
            'A'..='Z' => s.push(c.to_ascii_lowercase()),
            'a'..='z' | '0'..='9' => s.push(c),
            '{' | '}' => {}
            _ => {
                if !s.ends_with('-') {
                    s.push('-');
                }
            }
        }
    }
    s.trim_end_matches('-').to_string()
}

fn dotted(o: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])
}

/// RFC 3339 with milliseconds always present, as Envoy's `%START_TIME%` prints it.
fn rfc3339_ms(ts: i64) -> String {
    let s = format_ts(ts);
    if ts % 1000 == 0 {
        format!("{}.000Z", s.trim_end_matches('Z'))
    } else {
        s
    }
}

/// A tiny append-only JSON writer: records are flat enough that a DOM would only cost time.
struct Json {
    buf: String,
    comma: bool,
}

impl Json {
    fn with_capacity(n: usize) -> Self {
        Json { buf: String::with_capacity(n), comma: false }
    }

    fn sep(&mut self) {
        if self.comma {
            self.buf.push(',');
        }
    }

    /// Keys are this module's constants (or query parameter names, escaped by the caller's choice of `str`).
    fn key(&mut self, k: &str) {
        self.sep();
        escape(&mut self.buf, k);
        self.buf.push(':');
    }

    fn begin(&mut self) {
        self.sep();
        self.buf.push('{');
        self.comma = false;
    }

    fn obj(&mut self, k: &str) {
        self.key(k);
        self.buf.push('{');
        self.comma = false;
    }

    fn end(&mut self) {
        self.buf.push('}');
        self.comma = true;
    }

    fn arr(&mut self, k: &str) {
        self.key(k);
        self.buf.push('[');
        self.comma = false;
    }

    fn arr_end(&mut self) {
        self.buf.push(']');
        self.comma = true;
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        escape(&mut self.buf, v);
        self.comma = true;
    }

    /// A string value written as `prefix` followed by `v`, without building it first.
    fn str_prefixed(&mut self, k: &str, prefix: &str, v: &str) {
        self.key(k);
        self.buf.push('"');
        escape_inner(&mut self.buf, prefix);
        escape_inner(&mut self.buf, v);
        self.buf.push('"');
        self.comma = true;
    }

    fn item_str(&mut self, v: &str) {
        self.sep();
        escape(&mut self.buf, v);
        self.comma = true;
    }

    fn num(&mut self, k: &str, v: impl std::fmt::Display) {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self.comma = true;
    }

    fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self.comma = true;
    }

    fn finish(self) -> String {
        self.buf
    }
}

fn escape(out: &mut String, s: &str) {
    out.push('"');
    escape_inner(out, s);
    out.push('"');
}

/// JSON string escaping, copying clean runs whole (access-log values rarely need escaping).
fn escape_inner(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    // branch-free scan (vectorizes): most values need no escaping at all
    let dirty = bytes.iter().fold(0u8, |acc, &b| acc | (b < 0x20) as u8 | (b == b'"') as u8 | (b == b'\\') as u8);
    if dirty == 0 {
        out.push_str(s);
        return;
    }
    let mut clean = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[clean..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(esc);
        }
        clean = i + 1;
    }
    out.push_str(&s[clean..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_escapes_and_nests() {
        let mut o = Json::with_capacity(16);
        o.begin();
        o.str("a", "x\"y\\z\n\u{1}");
        o.obj("b");
        o.num("n", -1);
        o.arr("l");
        o.item_str("p");
        o.item_str("q");
        o.arr_end();
        o.end();
        o.bool("t", true);
        o.end();
        let s = o.finish();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["a"], "x\"y\\z\n\u{1}");
        assert_eq!(v["b"]["n"], -1);
        assert_eq!(v["b"]["l"][1], "q");
        assert_eq!(v["t"], true);
    }

    #[test]
    fn names_and_ids_are_stable() {
        assert_eq!(route_name("GET /v1/orders/{id}/items"), "get-v1-orders-id-items");
        assert_eq!(object_id("service", "orders-svc"), object_id("service", "orders-svc"));
        assert_ne!(object_id("service", "orders-svc"), object_id("service", "users-svc"));
        assert_eq!(object_id("route", "x").len(), 36);
        assert_eq!(rfc3339_ms(1_795_255_200_000), "2026-11-21T10:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_255_200_007), "2026-11-21T10:00:00.007Z");
    }
}

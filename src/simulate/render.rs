//! One function per output format, each writing a record the way that gateway
//! writes its access log (field names, value types, sentinels), one JSON object
//! per line. New formats are one more function and one more match arm.

use std::fmt::Write;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::traffic::ROUTES;
use super::SimRecord;
use crate::event::format_ts;
use crate::normalize::Format;

/// Formats the simulator can write.
pub const SIM_FORMATS: &[Format] = &[
    Format::Kong,
    Format::Envoy,
    Format::EnvoyText,
    Format::Nginx,
    Format::NginxJson,
    Format::Aws,
    Format::Traefik,
    Format::Apisix,
    Format::Haproxy,
    Format::Tyk,
    Format::Generic,
];

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
        Format::EnvoyText => render_envoy_text(rec),
        Format::Nginx => render_nginx_combined(rec),
        Format::NginxJson => render_nginx_json(rec),
        Format::Aws => render_aws(rec),
        Format::Traefik => render_traefik(rec),
        Format::Apisix => render_apisix(rec),
        Format::Tyk => render_tyk(rec),
        Format::Haproxy => render_haproxy(rec),
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
    o.str("upstream_cluster", if routed { &rs.cluster } else { "-" });
    o.str(
        "upstream_local_address",
        &if called { format!("{node}:{}", 40_000 + rec.source_port % 20_000) } else { "-".into() },
    );
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

/// The `X-Forwarded-For` header the client itself sent (what a gateway at the edge
/// receives), without the client address the simulator's record appends.
fn inbound_xff(rec: &SimRecord) -> Option<&str> {
    rec.xff.as_deref().and_then(|x| x.rsplit_once(", ")).map(|(left, _)| left)
}

/// The route's template path, as a gateway that names its routes writes it (`/v1/orders/{id}`).
fn route_path(rec: &SimRecord) -> &'static str {
    rec.route.split_once(' ').map_or(rec.route, |(_, p)| p)
}

fn protocol(rec: &SimRecord) -> &'static str {
    if rec.user_agent.starts_with("Mozilla") {
        "HTTP/2"
    } else {
        "HTTP/1.1"
    }
}

/// When the gateway wrote the record: after the response (NGINX `$time_local`,
/// `$msec`, Tyk's analytics timestamp are taken then, not at the request's start).
fn end_ts(rec: &SimRecord) -> i64 {
    rec.ts + rec.latency_ms as i64
}

/// `21/Nov/2026:10:00:01 +0000`: CLF time, whole seconds (NGINX, AWS `requestTime`).
fn clf_time(ts: i64) -> String {
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ts) {
        Some(d) => d.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
        None => "-".into(),
    }
}

/// Go's `time.RFC3339Nano` of a UTC instant: trailing zeros of the fraction dropped.
fn rfc3339_nano(ts: i64) -> String {
    let s = rfc3339_ms(ts);
    match s.split_once('.') {
        Some((secs, frac)) => {
            let digits = frac.trim_end_matches('Z').trim_end_matches('0');
            if digits.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{digits}Z")
            }
        }
        None => s,
    }
}

/// Milliseconds as NGINX writes a time in seconds (`$request_time`: `0.046`).
fn secs3(ms: u32) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// NGINX text-log escaping (`escape=default`): `"`, `\` and non-printable bytes as `\xXX`.
fn nginx_escape(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

/// NGINX's `$request_id`: 32 hex digits (the record's id without its dashes).
fn hex_request_id(rec: &SimRecord) -> String {
    rec.request_id.replace('-', "")
}

/// The predefined NGINX `combined` format:
/// `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`.
///
/// NGINX is the edge here (`$remote_addr` is the client), validating bearer tokens
/// with `auth_request`, so `$remote_user` stays `-`. This layout carries no token
/// (the simulated clients never put one in the query string), no identity, no
/// host, no latency and no request id; `$time_local` is when the line was written
/// (after the response), to the second.
pub fn render_nginx_combined(rec: &SimRecord) -> String {
    let mut o = String::with_capacity(320);
    combined_part(&mut o, rec);
    o
}

fn combined_part(o: &mut String, rec: &SimRecord) {
    let _ = write!(o, "{} - - [{}] \"{} ", rec.source_ip, clf_time(end_ts(rec)), rec.method);
    nginx_escape(o, &rec.uri());
    let proto = if protocol(rec) == "HTTP/2" { "HTTP/2.0" } else { "HTTP/1.1" };
    let _ = write!(o, " {proto}\" {} {} \"-\" \"", rec.status, rec.bytes_sent);
    nginx_escape(o, &rec.user_agent);
    o.push('"');
}

/// HAProxy's `option httplog` line as `log` sends it to syslog (RFC 3164 header), with the
/// request headers gatewatch reads by default captured in its default order:
///
/// ```haproxy
/// capture request header Host len 64
/// capture request header User-Agent len 256
/// capture request header X-Forwarded-For len 128
/// capture request header Authorization len 2048
/// ```
///
/// The accept date is when the request arrived (local time: UTC here), with milliseconds;
/// `Ta` is the whole request, `Tr` the server's answer (`-1` when HAProxy answered itself);
/// `%B` the bytes sent. Captures escape `"`, `#`, `{`, `|`, `}` and non-printable bytes as
/// `#XX`, and an absent header is an empty field.
pub fn render_haproxy(rec: &SimRecord) -> String {
    let mut o = String::with_capacity(900);
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(end_ts(rec));
    let syslog = at.map_or_else(|| "-".into(), |d| d.format("%b %e %H:%M:%S").to_string());
    let accept = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(rec.ts)
        .map_or_else(|| "-".into(), |d| d.format("%d/%b/%Y:%H:%M:%S%.3f").to_string());
    let node = rec.gateway_node;
    let _ = write!(o, "<134>{syslog} lb-{node} haproxy[{}]: ", 7000 + node as u32);
    let _ = write!(o, "{}:{} [{accept}] api~ ", rec.source_ip, rec.source_port);
    match rec.upstream_latency_ms {
        Some(tr) if !rec.answered_by_gateway => {
            let _ = write!(o, "be_{}/{}-{} ", rec.upstream, rec.upstream, rec.source_port % 3);
            let _ = write!(o, "0/0/1/{tr}/{} ", rec.latency_ms);
        }
        _ => {
            let _ = write!(o, "api~/<NOSRV> 0/0/-1/-1/{} ", rec.latency_ms);
        }
    }
    let term = if rec.answered_by_gateway { "PR--" } else { "----" };
    let _ = write!(o, "{} {} - - {term} 12/12/3/1/0 0/0 {{", rec.status, rec.bytes_sent);
    haproxy_capture(&mut o, rec.host);
    o.push('|');
    haproxy_capture(&mut o, &rec.user_agent);
    o.push('|');
    haproxy_capture(&mut o, rec.xff.as_deref().unwrap_or(""));
    o.push('|');
    if let Some(t) = &rec.token {
        o.push_str("Bearer ");
        haproxy_capture(&mut o, &t.raw);
    }
    let _ = write!(o, "}} \"{} ", rec.method);
    haproxy_capture(&mut o, &rec.uri());
    o.push_str(" HTTP/1.1\"");
    o
}

/// HAProxy's log escaping of captures and the request line.
fn haproxy_capture(out: &mut String, s: &str) {
    for b in s.bytes() {
        if matches!(b, b'"' | b'#' | b'{' | b'|' | b'}') || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "#{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

/// ingress-nginx's default `upstreaminfo` format: `combined` plus
/// `$request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name]
/// $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id`.
/// Latencies in seconds; `-` in the upstream columns when NGINX answered itself
/// (external auth refused the token, rate limit). Still no token and no host.
pub fn render_nginx_ingress(rec: &SimRecord) -> String {
    let mut o = String::with_capacity(420);
    combined_part(&mut o, rec);
    let upstream_name = format!("prod-{}-8080", rec.upstream);
    let _ = write!(o, " {} {} [{upstream_name}] [] ", rec.bytes_received, secs3(rec.latency_ms));
    match rec.upstream_latency_ms {
        Some(u) if !rec.answered_by_gateway => {
            let _ = write!(o, "{}:8080 {} {} {}", dotted(upstream_pod(rec)), rec.bytes_sent, secs3(u), rec.status);
        }
        _ => o.push_str("- - - -"),
    }
    let _ = write!(o, " {}", hex_request_id(rec));
    o
}

/// NGINX JSON `log_format` in the widely copied shape (variable names as keys,
/// `escape=json`, every value quoted), with `$http_authorization` logged, as many
/// setups do to debug their auth:
///
/// ```nginx
/// log_format json_api escape=json '{"time_local":"$time_local","remote_addr":"$remote_addr",'
///   '"remote_user":"$remote_user","request":"$request","status":"$status",'
///   '"body_bytes_sent":"$body_bytes_sent","request_time":"$request_time",'
///   '"http_referer":"$http_referer","http_user_agent":"$http_user_agent",'
///   '"http_x_forwarded_for":"$http_x_forwarded_for","host":"$host","request_id":"$request_id",'
///   '"upstream_addr":"$upstream_addr","upstream_response_time":"$upstream_response_time",'
///   '"http_authorization":"$http_authorization"}';
/// ```
///
/// Empty variables are written as empty strings; `$time_local` is the write time, to the second.
pub fn render_nginx_json(rec: &SimRecord) -> String {
    let mut o = Json::with_capacity(1400);
    o.begin();
    o.str("time_local", &clf_time(end_ts(rec)));
    o.str("remote_addr", &rec.source_ip.to_string());
    o.str("remote_user", "");
    let proto = if protocol(rec) == "HTTP/2" { "HTTP/2.0" } else { "HTTP/1.1" };
    o.str("request", &format!("{} {} {proto}", rec.method, rec.uri()));
    o.str("status", &rec.status.to_string());
    o.str("body_bytes_sent", &rec.bytes_sent.to_string());
    o.str("request_time", &secs3(rec.latency_ms));
    o.str("http_referer", "");
    o.str("http_user_agent", &rec.user_agent);
    o.str("http_x_forwarded_for", inbound_xff(rec).unwrap_or(""));
    o.str("host", rec.host);
    o.str("request_id", &hex_request_id(rec));
    match rec.upstream_latency_ms {
        Some(u) if !rec.answered_by_gateway => {
            o.str("upstream_addr", &format!("{}:8080", dotted(upstream_pod(rec))));
            o.str("upstream_response_time", &secs3(u));
        }
        _ => {
            o.str("upstream_addr", "");
            o.str("upstream_response_time", "");
        }
    }
    match &rec.token {
        Some(t) => o.str_prefixed("http_authorization", "Bearer ", &t.raw),
        None => o.str("http_authorization", ""),
    }
    o.end();
    o.finish()
}

/// Envoy's default TEXT access-log format (no `log_format` configured):
///
/// ```text
/// [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS%
/// %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%"
/// "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"
/// ```
///
/// An edge Envoy with `use_remote_address: true` appends the peer to
/// `X-Forwarded-For`, so the header always ends with the client's address: the
/// only place this format names the client. No identity, no token.
pub fn render_envoy_text(rec: &SimRecord) -> String {
    let flags = match rec.status {
        429 => "RL",
        503 => "UH",
        504 => "UT",
        502 => "UC",
        _ => "-",
    };
    let called = !rec.answered_by_gateway && rec.status != 503;
    let upstream_host = if called { format!("{}:8080", dotted(upstream_pod(rec))) } else { "-".into() };
    let xff = rec.xff.clone().unwrap_or_else(|| rec.source_ip.to_string());
    let mut o = String::with_capacity(360);
    let _ = write!(
        o,
        "[{}] \"{} {} {}\" {} {flags} {} {} {} {} \"{xff}\" \"{}\" \"{}\" \"{}\" \"{upstream_host}\"",
        rfc3339_ms(rec.ts),
        rec.method,
        rec.uri(),
        protocol(rec),
        rec.status,
        rec.bytes_received,
        rec.bytes_sent,
        rec.latency_ms,
        rec.upstream_latency_ms.map_or("-".to_string(), |u| u.to_string()),
        rec.user_agent,
        rec.request_id,
        rec.host,
    );
    o
}

/// API id of the simulated REST API (ten lower-case alphanumerics, as AWS names them).
const AWS_API_ID: &str = "k3x9q2w7vb";

/// AWS API Gateway REST API access log, JSON, a Cognito (JWT) authorizer in front
/// of every method. The template: AWS's documented JSON example (`requestId`,
/// `ip`, `caller`, `user`, `requestTime`, `httpMethod`, `resourcePath`, `status`,
/// `protocol`, `responseLength`) plus `requestTimeEpoch`, `path`, `domainName`,
/// `stage`, `apiId`, `responseLatency`, `integrationLatency`, `userAgent` and the
/// authorizer's `claims.client_id` / `sub` / `scope`. Every value is a quoted
/// string, `-` when empty. The bearer token itself is never available to an
/// access-log template; the claims are, once the authorizer accepted the token
/// (a 401 has none; a 403 is a policy refusal of an accepted token).
pub fn render_aws(rec: &SimRecord) -> String {
    let mut o = Json::with_capacity(900);
    o.begin();
    o.str("requestId", &rec.request_id);
    o.str("ip", &rec.source_ip.to_string());
    o.str("caller", "-");
    o.str("user", "-");
    o.str("requestTime", &clf_time(rec.ts));
    o.str("requestTimeEpoch", &rec.ts.to_string());
    o.str("httpMethod", rec.method);
    o.str("resourcePath", route_path(rec));
    o.str("path", &rec.path);
    o.str("status", &rec.status.to_string());
    o.str("protocol", protocol(rec));
    o.str("responseLength", &rec.bytes_sent.to_string());
    o.str("responseLatency", &rec.latency_ms.to_string());
    o.str(
        "integrationLatency",
        &match rec.upstream_latency_ms {
            Some(u) if !rec.answered_by_gateway => u.to_string(),
            _ => "-".into(),
        },
    );
    o.str("domainName", rec.host);
    o.str("stage", "prod");
    o.str("apiId", AWS_API_ID);
    o.str("userAgent", &rec.user_agent);
    let claims = rec.token.as_ref().filter(|_| rec.status != 401);
    o.str("authorizer.claims.client_id", claims.map_or("-", |t| &t.client_id));
    o.str("authorizer.claims.sub", claims.map_or("-", |t| &t.subject));
    let scope = claims.map_or_else(|| "-".to_string(), |t| t.scopes.join(" "));
    o.str("authorizer.claims.scope", if scope.is_empty() { "-" } else { &scope });
    o.end();
    o.finish()
}

/// Traefik JSON access log (`accessLog.format: json`), the request headers
/// `Authorization`, `User-Agent` and `X-Forwarded-For` kept
/// (`fields.headers.names.<name>: keep`; the default mode drops the rest).
/// Durations in nanoseconds; `OriginStatus` 0 and no service fields when Traefik
/// (ForwardAuth, rate limit) answered itself. `StartUTC` is RFC 3339 with Go's
/// nano precision; `time` is when the line was written. Traefik makes no request id.
pub fn render_traefik(rec: &SimRecord) -> String {
    let mut o = Json::with_capacity(1500);
    let routed = !rec.answered_by_gateway;
    let origin = rec.upstream_latency_ms.filter(|_| routed);
    o.begin();
    o.str("ClientAddr", &format!("{}:{}", rec.source_ip, rec.source_port));
    o.str("ClientHost", &rec.source_ip.to_string());
    o.str("ClientPort", &rec.source_port.to_string());
    o.str("ClientUsername", "-");
    o.num("DownstreamContentSize", rec.bytes_sent);
    o.num("DownstreamStatus", rec.status);
    o.num("Duration", rec.latency_ms as u64 * 1_000_000);
    o.num("OriginContentSize", if origin.is_some() { rec.bytes_sent } else { 0 });
    o.num("OriginDuration", origin.map_or(0, |u| u as u64 * 1_000_000));
    o.num("OriginStatus", if origin.is_some() { rec.status } else { 0 });
    o.num("Overhead", (rec.latency_ms - origin.unwrap_or(0).min(rec.latency_ms)) as u64 * 1_000_000);
    o.str("RequestAddr", rec.host);
    o.num("RequestContentSize", rec.bytes_received.saturating_sub(280));
    o.str("RequestHost", rec.host);
    o.str("RequestMethod", rec.method);
    o.str("RequestPath", &rec.uri());
    o.str("RequestPort", "-");
    o.str("RequestProtocol", if protocol(rec) == "HTTP/2" { "HTTP/2.0" } else { "HTTP/1.1" });
    o.str("RequestScheme", "https");
    o.num("RetryAttempts", 0);
    let rs = route_strings(rec.route_idx);
    o.str("RouterName", &format!("prod-{}@kubernetescrd", rs.name));
    if routed {
        o.str("ServiceAddr", &format!("{}:8080", dotted(upstream_pod(rec))));
        o.str("ServiceName", &format!("prod-{}-8080@kubernetescrd", rec.upstream));
        o.str("ServiceURL", &format!("http://{}:8080", dotted(upstream_pod(rec))));
    }
    o.str("StartLocal", &rfc3339_nano(rec.ts));
    o.str("StartUTC", &rfc3339_nano(rec.ts));
    o.str("TLSCipher", "TLS_AES_128_GCM_SHA256");
    o.str("TLSVersion", "1.3");
    o.str("entryPointName", "websecure");
    o.str("level", "info");
    o.str("msg", "");
    if let Some(t) = &rec.token {
        o.str_prefixed("request_Authorization", "Bearer ", &t.raw);
    }
    o.str("request_User-Agent", &rec.user_agent);
    if let Some(x) = inbound_xff(rec) {
        o.str("request_X-Forwarded-For", x);
    }
    o.str("time", &format_ts(end_ts(rec) / 1000 * 1000));
    o.end();
    o.finish()
}

/// Apache APISIX kafka-logger (or http-logger) default record (`log-util.lua`
/// `get_full_log`): request headers as received, `authorization` included (APISIX
/// redacts nothing by default), the `request-id` plugin's `x-request-id`, tokens
/// checked by `openid-connect` (`bearer_only`, so no APISIX consumer), latencies in
/// ms. No `upstream` nor `upstream_latency` when APISIX answered itself. The
/// plugin batches: a Kafka message is a JSON array of these.
pub fn render_apisix(rec: &SimRecord) -> String {
    let mut o = Json::with_capacity(1800);
    let routed = !rec.answered_by_gateway;
    let uri = rec.uri();
    o.begin();
    if routed {
        o.str("upstream", &format!("{}:8080", dotted(upstream_pod(rec))));
    }
    o.num("start_time", rec.ts);
    o.str("client_ip", &rec.source_ip.to_string());
    o.str("service_id", "");
    let rs = route_strings(rec.route_idx);
    o.str("route_id", &rs.name);
    o.obj("request");
    o.obj("querystring");
    if let Some(q) = &rec.query {
        for (k, v) in q.split('&').filter_map(|p| p.split_once('=')) {
            o.str(k, &v.replace('+', " "));
        }
    }
    o.end();
    o.num("size", rec.bytes_received);
    o.str("uri", &uri);
    o.str_prefixed("url", &format!("https://{}:9443", rec.host), &uri);
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
    if let Some(x) = inbound_xff(rec) {
        o.str("x-forwarded-for", x);
    }
    o.str("x-request-id", &rec.request_id);
    o.end();
    o.str("method", rec.method);
    o.end();
    o.obj("response");
    o.obj("headers");
    o.str("content-type", "application/json");
    o.str("content-length", &rec.bytes_sent.saturating_sub(200).to_string());
    o.str("server", "APISIX/3.9.1");
    o.str("x-request-id", &rec.request_id);
    o.end();
    o.num("size", rec.bytes_sent);
    o.num("status", rec.status);
    o.end();
    o.obj("server");
    o.str("hostname", &format!("apisix-{}", rec.gateway_node));
    o.str("version", "3.9.1");
    o.end();
    o.num("latency", rec.latency_ms);
    if let Some(u) = rec.upstream_latency_ms.filter(|_| routed) {
        o.num("upstream_latency", u);
    }
    o.num("apisix_latency", rec.gateway_latency_ms);
    o.end();
    o.finish()
}

/// Tyk's organisation id (24 hex digits, a Mongo object id).
const TYK_ORG: &str = "5e9d9544a1dcd60001d0ed20";

/// Tyk pump's Kafka message (`pumps/kafka.go`) with detailed recording on, so
/// `raw_request` holds the request as received (base64), `Authorization` header
/// included. The API uses Tyk's JWT auth, which keys its session on the token's
/// `sub` (`api_key`: that session's hashed key; no `oauth_id`, no `alias`).
/// `timestamp` is taken when the analytics record is made, after the response;
/// `ip_address` is Tyk's `request.RealIP`: the left-most `X-Forwarded-For` entry
/// the client sent (the default `xff_depth` 0), else the peer. No upstream
/// latency, no response size, no request id.
pub fn render_tyk(rec: &SimRecord) -> String {
    let uri = rec.uri();
    let mut raw = String::with_capacity(1200);
    let _ = write!(
        raw,
        "{} {uri} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept: application/json\r\n",
        rec.method, rec.host, rec.user_agent
    );
    if let Some(t) = &rec.token {
        let _ = write!(raw, "Authorization: Bearer {}\r\n", t.raw);
    }
    if let Some(x) = inbound_xff(rec) {
        let _ = write!(raw, "X-Forwarded-For: {x}\r\n");
    }
    if rec.method != "GET" && rec.method != "DELETE" {
        let _ = write!(
            raw,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            rec.bytes_received.saturating_sub(280)
        );
    }
    raw.push_str("\r\n");
    let response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        rec.status,
        reason(rec.status),
        rec.bytes_sent.saturating_sub(120)
    );
    let session = rec.token.as_ref().filter(|_| rec.status != 401).map(|t| {
        let id = object_id("tyk-session", &t.subject);
        id.replace('-', "")
    });
    let api_id = object_id("tyk-api", rec.upstream).replace('-', "");
    let real_ip = inbound_xff(rec)
        .and_then(|x| x.split(',').next())
        .map(str::trim)
        .filter(|x| x.parse::<std::net::IpAddr>().is_ok())
        .map_or_else(|| rec.source_ip.to_string(), str::to_string);
    let mut o = Json::with_capacity(2400);
    o.begin();
    o.str("timestamp", &rfc3339_nano(end_ts(rec)));
    o.str("method", rec.method);
    o.str("path", &rec.path);
    o.str("raw_path", &rec.path);
    o.num("response_code", rec.status);
    o.str("alias", "");
    o.str("api_key", session.as_deref().unwrap_or(""));
    o.str("api_version", "Default");
    o.str("api_name", rec.upstream);
    o.str("api_id", &api_id[..32]);
    o.str("org_id", TYK_ORG);
    o.str("oauth_id", "");
    o.str("raw_request", &BASE64.encode(raw));
    o.num("request_time_ms", rec.latency_ms);
    o.str("raw_response", &BASE64.encode(response));
    o.str("ip_address", &real_ip);
    o.str("host", rec.host);
    o.num("content_length", rec.bytes_received.saturating_sub(280));
    o.str("user_agent", &rec.user_agent);
    o.arr("tags");
    if let Some(s) = &session {
        o.item_str(&format!("key-{s}"));
    }
    o.item_str(&format!("api-{}", &api_id[..32]));
    o.arr_end();
    o.end();
    o.finish()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
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

    #[test]
    fn gateway_time_and_number_spellings() {
        // Go's RFC3339Nano drops trailing zeros, and the whole fraction when it is zero
        assert_eq!(rfc3339_nano(1_795_255_200_000), "2026-11-21T10:00:00Z");
        assert_eq!(rfc3339_nano(1_795_255_200_120), "2026-11-21T10:00:00.12Z");
        assert_eq!(rfc3339_nano(1_795_255_200_007), "2026-11-21T10:00:00.007Z");
        assert_eq!(clf_time(1_795_255_201_999), "21/Nov/2026:10:00:01 +0000");
        assert_eq!(secs3(46), "0.046");
        assert_eq!(secs3(30_001), "30.001");
        let mut s = String::new();
        nginx_escape(&mut s, "a\"b\\c\u{7f}");
        assert_eq!(s, "a\\x22b\\x5Cc\\x7F");
    }
}

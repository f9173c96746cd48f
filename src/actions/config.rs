//! `[actions]`, `[revocation]` and `[admin]` in `gatewatch.toml`, parsed into runtime values.
//!
//! Each section arrives as raw TOML (`GatewatchConfig.other`). Every sink and target is
//! parsed on its own so one bad sink does not hide the errors of the others; every error
//! names the file and the dotted field. Secrets are references to environment variables
//! (`secret_env = "VAR"`) and are resolved here: an unset variable is a config error that
//! names the variable, never a value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::queue::segment::Fsync;
use super::queue::DrainOrder;
use super::secret::{redact_url, resolve, EnvLookup, Secret};
pub use super::sinks::alertmanager::AlertmanagerConfig;
pub use super::sinks::email::{EmailConfig, SmtpTls};
pub use super::sinks::file::FileConfig;
pub use super::sinks::kafka::KafkaSinkConfig;
pub use super::sinks::webhook::{WebhookConfig, WebhookFormat};
pub use super::sinks::{SinkConfig, SinkKind};
use crate::config::{ConfigError, DurationStr, GatewatchConfig};
use crate::event::Severity;

/// Everything the actions layer needs, parsed.
#[derive(Clone, Debug, Default)]
pub struct ActionsSettings {
    /// `None` when the config has no `[actions]` section.
    pub actions: Option<ActionsConfig>,
    pub revocation: Option<RevocationConfig>,
    pub admin: AdminConfig,
}

impl ActionsSettings {
    /// Parses the three sections from the service config, reading secrets from the
    /// process environment. Every problem is returned.
    pub fn from_config(cfg: &GatewatchConfig) -> Result<Self, Vec<ConfigError>> {
        Self::from_config_with_env(cfg, &super::secret::process_env)
    }

    pub fn from_config_with_env(cfg: &GatewatchConfig, env: EnvLookup<'_>) -> Result<Self, Vec<ConfigError>> {
        let file = cfg.path.clone().unwrap_or_else(|| PathBuf::from("gatewatch.toml"));
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut p = Parser { file, base, env, errs: Vec::new() };
        let actions = cfg.other.get("actions").map(|v| p.actions(v));
        let revocation = cfg.other.get("revocation").map(|v| p.revocation(v));
        let admin = p.admin(cfg.other.get("admin"));
        if !p.errs.is_empty() {
            return Err(p.errs);
        }
        Ok(ActionsSettings { actions: actions.flatten(), revocation: revocation.flatten(), admin })
    }
}

/// Segment size of a sink's queue: small enough that a drained segment is soon deleted.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 << 20;

/// `[actions]`: the alert dispatcher and its sinks.
#[derive(Clone, Debug)]
pub struct ActionsConfig {
    /// Dead-letter JSON-lines file: overflow, undeliverable and shutdown leftovers, with the reason.
    pub dead_letter: PathBuf,
    /// Alert ids remembered for de-duplication.
    pub dedup_capacity: usize,
    /// Alerts for the same (entity, detector) within this event time after a notification are
    /// folded into one follow-up notification with a count.
    pub group_window: Duration,
    /// Send a "resolved" notification when an (entity, detector) has been quiet this long
    /// (wall clock). `None`: no resolved notifications.
    pub resolve_after: Option<Duration>,
    /// Runbook link per rule id or detector kind, shown in notifications.
    pub runbooks: BTreeMap<String, String>,
    pub sinks: Vec<SinkConfig>,
    /// Where each sink's durable queue lives (a directory per sink).
    pub queue_dir: PathBuf,
    /// When a queued notification reaches the disk.
    pub queue_fsync: Fsync,
    /// Size at which a queue starts a new segment file.
    pub queue_segment_bytes: u64,
}

impl ActionsConfig {
    /// A config with no sinks, for tests and embedding.
    pub fn new(dead_letter: impl Into<PathBuf>) -> Self {
        let dead_letter: PathBuf = dead_letter.into();
        let queue_dir = dead_letter.parent().unwrap_or(Path::new("")).join("gatewatch-queue");
        ActionsConfig {
            dead_letter,
            queue_dir,
            queue_fsync: Fsync::Always,
            queue_segment_bytes: DEFAULT_SEGMENT_BYTES,
            dedup_capacity: default_dedup(),
            group_window: Duration::from_secs(600),
            resolve_after: None,
            runbooks: BTreeMap::new(),
            sinks: Vec::new(),
        }
    }
}

/// How a sink is fed: queue, rate, retries, circuit breaker. Same fields in every sink table.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryConfig {
    /// Alerts of at least this severity go to the sink even if their `actions` do not name it.
    pub min_severity: Option<Severity>,
    /// Notifications waiting for this sink; beyond it they go to the dead-letter file.
    pub queue: usize,
    /// Bytes of notifications waiting for this sink (on disk); beyond it, the dead-letter file.
    pub queue_bytes: u64,
    /// A notification not delivered this long after it was queued goes to the dead-letter file.
    pub expire_after: Duration,
    /// Which waiting (entity, detector) goes first after an outage.
    pub drain_order: DrainOrder,
    /// Sustained notifications per minute; `None`: unlimited.
    pub rate_per_minute: Option<u32>,
    /// Notifications that may go out at once before the rate applies.
    pub burst: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Consecutive failures that open the circuit.
    pub breaker_failures: u32,
    /// How long an open circuit waits before one trial call.
    pub breaker_open_for: Duration,
    /// Per call.
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            min_severity: None,
            queue: 100_000,
            queue_bytes: 64 << 20,
            expire_after: Duration::from_secs(24 * 3600),
            drain_order: DrainOrder::OldestFirst,
            rate_per_minute: None,
            burst: 10,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// `[revocation]`: what gatewatch may revoke, how fast, and where.
#[derive(Clone, Debug)]
pub struct RevocationConfig {
    /// `true` (default): decide and audit, revoke nothing.
    pub dry_run: bool,
    /// Append-only JSON-lines audit log of every decision.
    pub audit_log: PathBuf,
    /// Clients never revoked, whatever an alert says. Compared with surrounding whitespace
    /// trimmed and ASCII case-insensitively (`HealthCheck ` is `healthcheck`; no Unicode
    /// case folding), on both sides.
    pub never_revoke_clients: Vec<String>,
    /// Revoke a token whose alert names no client. Off (the default): such a token is refused
    /// with `no_client`, because neither the allow-list nor the client cap can protect it.
    pub revoke_without_client: bool,
    /// Token fingerprints never revoked.
    pub never_revoke_tokens: Vec<String>,
    /// Revocations (all clients) per sliding hour; beyond it every revocation is refused.
    pub max_per_hour: u32,
    /// Revocations per client per sliding hour.
    pub max_per_client_per_hour: u32,
    /// How long a quarantine lasts (deny-list entry expiry).
    pub quarantine: Duration,
    /// Alerts at or above this severity revoke permanently; `None`: always quarantine.
    pub permanent_at: Option<Severity>,
    /// Addresses and ranges the `ban` action never bans.
    pub never_ban: Vec<ipnet::IpNet>,
    /// How long a ban lasts (bans always end).
    pub ban_for: Duration,
    pub oauth: Option<OAuthTargetConfig>,
    pub http: Option<HttpTargetConfig>,
    /// `[revocation.kong]`: delete the consumer's credential through Kong's Admin API.
    pub kong: Option<KongTargetConfig>,
    /// `[revocation.tyk]`: delete the key through the Tyk Gateway API.
    pub tyk: Option<TykTargetConfig>,
    /// Attempts per target call, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub timeout: Duration,
    /// Alertmanager receiver: label holding the token fingerprint.
    pub alertmanager_fingerprint_label: String,
    /// Alertmanager receiver: label holding the client id.
    pub alertmanager_client_label: String,
    /// Alertmanager receiver: label holding a credential id (JWT `jti`, key id).
    pub alertmanager_credential_label: String,
}

impl RevocationConfig {
    /// Dry-run, no targets, caps of 20/h and 3/h per client, 1h quarantine.
    pub fn new(audit_log: impl Into<PathBuf>) -> Self {
        RevocationConfig {
            dry_run: true,
            audit_log: audit_log.into(),
            never_revoke_clients: Vec::new(),
            revoke_without_client: false,
            never_revoke_tokens: Vec::new(),
            max_per_hour: 20,
            max_per_client_per_hour: 3,
            quarantine: Duration::from_secs(3600),
            permanent_at: None,
            never_ban: Vec::new(),
            ban_for: Duration::from_secs(3600),
            oauth: None,
            http: None,
            kong: None,
            tyk: None,
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(10),
            alertmanager_fingerprint_label: "token_fingerprint".into(),
            alertmanager_client_label: "client_id".into(),
            alertmanager_credential_label: "credential_id".into(),
        }
    }
}

/// How the client authenticates at the RFC 7009 endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with client id and secret (RFC 6749 §2.3.1), the default.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// RFC 7009 revocation endpoint. Sends `token=<credential id>`: gatewatch never holds the
/// raw token, so this works only where the IdP accepts the logged credential id (a
/// reference-token handle, a `jti`). Alerts without a credential id are audited as skipped.
#[derive(Clone)]
pub struct OAuthTargetConfig {
    /// The revocation endpoint; `Debug` shows its scheme and host only.
    pub endpoint: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub auth: ClientAuth,
    /// `token_type_hint` to send (`access_token`, `refresh_token`), if any.
    pub token_type_hint: Option<String>,
}

impl std::fmt::Debug for OAuthTargetConfig {
    // Hand-written: the endpoint URL may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthTargetConfig")
            .field("endpoint", &redact_url(&self.endpoint))
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("auth", &self.auth)
            .field("token_type_hint", &self.token_type_hint)
            .finish()
    }
}

/// The HTTP methods a revocation call may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    Post,
    Put,
    Delete,
}

impl HttpMethod {
    /// Parses a method name, in any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "POST" => Some(HttpMethod::Post),
            "PUT" => Some(HttpMethod::Put),
            "DELETE" => Some(HttpMethod::Delete),
            _ => None,
        }
    }

    pub fn as_reqwest(self) -> reqwest::Method {
        match self {
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Delete => reqwest::Method::DELETE,
        }
    }
}

/// An HTTP call per revocation: an IdP admin API or a bridge. `url` may hold `{client_id}`,
/// `{fingerprint}`, `{credential_id}` (URL-encoded on substitution); the body is the
/// deny-list entry as JSON.
#[derive(Clone)]
pub struct HttpTargetConfig {
    /// The URL template; `Debug` shows its scheme and host only.
    pub url: String,
    /// `POST` (default), `PUT` or `DELETE`.
    pub method: HttpMethod,
    pub bearer: Option<Secret>,
    /// HMAC key for `X-Gatewatch-Signature` on the body.
    pub secret: Option<Secret>,
}

impl std::fmt::Debug for HttpTargetConfig {
    // Hand-written: the URL may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTargetConfig")
            .field("url", &redact_url(&self.url))
            .field("method", &self.method)
            .field("bearer", &self.bearer)
            .field("secret", &self.secret)
            .finish()
    }
}

/// The Kong auth plugin whose credentials a [`KongTargetConfig`] deletes: the path segment of
/// its Admin API collection (`/consumers/{consumer}/key-auth/{id}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KongPlugin {
    Jwt,
    KeyAuth,
    Oauth2,
    BasicAuth,
    HmacAuth,
}

impl KongPlugin {
    /// The Admin API path segment, as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            KongPlugin::Jwt => "jwt",
            KongPlugin::KeyAuth => "key-auth",
            KongPlugin::Oauth2 => "oauth2",
            KongPlugin::BasicAuth => "basic-auth",
            KongPlugin::HmacAuth => "hmac-auth",
        }
    }
}

/// Kong Admin API: `DELETE {admin_url}[/{workspace}]/consumers/{consumer}/{plugin}/{credential}`,
/// with the verified consumer and Kong's `authenticated_entity.id` from the revocation.
#[derive(Clone)]
pub struct KongTargetConfig {
    /// Admin API base URL, without a trailing `/`; `Debug` shows its scheme and host only.
    pub admin_url: String,
    /// Sent as `Kong-Admin-Token` (Kong Enterprise RBAC), if set.
    pub token: Option<Secret>,
    pub plugin: KongPlugin,
    /// Kong Enterprise workspace, put before `/consumers` (percent-encoded); `None`: the default.
    pub workspace: Option<String>,
}

impl std::fmt::Debug for KongTargetConfig {
    // Hand-written: the URL may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KongTargetConfig")
            .field("admin_url", &redact_url(&self.admin_url))
            .field("token", &self.token)
            .field("plugin", &self.plugin)
            .field("workspace", &self.workspace)
            .finish()
    }
}

/// Tyk Gateway API: `DELETE {gateway_url}/tyk/keys/{credential}[?hashed=true]`, authenticated
/// with the gateway secret in `x-tyk-authorization`.
#[derive(Clone)]
pub struct TykTargetConfig {
    /// Gateway base URL, without a trailing `/`; `Debug` shows its scheme and host only.
    pub gateway_url: String,
    /// The gateway's API secret (`secret` in `tyk.conf`).
    pub secret: Secret,
    /// The credential id is the key's hash (what Tyk logs with `hash_keys` on): the call
    /// carries `?hashed=true`. `false`: it is the key id itself, and no `hashed` parameter
    /// is sent (Tyk takes any value of it, `false` included, as true).
    pub hashed: bool,
}

impl std::fmt::Debug for TykTargetConfig {
    // Hand-written: the URL may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TykTargetConfig")
            .field("gateway_url", &redact_url(&self.gateway_url))
            .field("secret", &self.secret)
            .field("hashed", &self.hashed)
            .finish()
    }
}

/// Fewest characters an admin token may have, after trimming surrounding whitespace.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;

/// `[admin]`: the admin HTTP API.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token for everything under `/api/`, read from the variable `token_env` names with
    /// surrounding whitespace (a trailing newline) trimmed; at least [`MIN_ADMIN_TOKEN_CHARS`]
    /// characters. `None`: `/api/` refuses every request.
    pub token: Option<Secret>,
    /// Timeouts and the connection cap of the listener.
    pub limits: AdminLimits,
    /// CrowdSec bouncers allowed on `/v1/decisions`: (name, key), keys read from the
    /// variables `[admin.bouncers]` names.
    pub bouncers: Vec<(String, Secret)>,
    /// Alerts the console keeps (`/api/v1/alerts`); the oldest leave first.
    pub history_size: usize,
    /// Where those alerts and their timelines are also written, to survive a restart;
    /// `None`: memory only.
    pub history_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:9977".parse().expect("valid"),
            token: None,
            limits: AdminLimits::default(),
            bouncers: Vec::new(),
            history_size: crate::admin::history::DEFAULT_CAPACITY,
            history_file: None,
        }
    }
}

/// What one client may cost the admin listener: how long each step of a request may take
/// and how many connections may be open at once (see `crate::admin::listener`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// Time to send a request head: from accept, or from the first byte of the next request on
    /// a kept-alive connection. Past it the connection is closed.
    pub header_timeout: Duration,
    /// Time from the end of the head to the answer (request body and handler). Past it the
    /// client gets a 503 and the connection is closed.
    pub request_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request (or a response write may
    /// make no progress). Past it the connection is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; a connection beyond it is answered 503 and closed at once.
    pub max_connections: usize,
}

impl Default for AdminLimits {
    fn default() -> Self {
        let ms = |d: DurationStr| Duration::from_millis(d.0 as u64);
        AdminLimits {
            header_timeout: ms(default_admin_header_timeout()),
            request_timeout: ms(default_admin_request_timeout()),
            idle_timeout: ms(default_admin_idle_timeout()),
            max_connections: default_admin_max_connections(),
        }
    }
}

/// Range every admin timeout must fall in, in milliseconds.
const ADMIN_TIMEOUT_RANGE_MS: std::ops::RangeInclusive<i64> = 100..=3_600_000;
/// Range of `[admin] max_connections`.
const ADMIN_MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<usize> = 1..=65_536;

// ---------------------------------------------------------------------------------------
// Raw TOML shapes.

fn default_dedup() -> usize {
    100_000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActions {
    /// Default `gatewatch-dead-letter.jsonl` beside the config file.
    dead_letter: Option<PathBuf>,
    #[serde(default = "default_dedup")]
    dedup_capacity: usize,
    group_window: Option<DurationStr>,
    resolve_after: Option<DurationStr>,
    /// Default `gatewatch-queue` beside the dead-letter file.
    queue_dir: Option<PathBuf>,
    /// `always`, `never`, or an interval (`1s`).
    queue_fsync: Option<String>,
    #[serde(default)]
    runbooks: BTreeMap<String, String>,
    // The sink tables (`[actions.webhook.NAME]`, ...) are taken out before this is read,
    // one per kind in `sinks::KINDS`.
}

/// Delivery fields, accepted in every sink table.
const DELIVERY_KEYS: &[&str] = &[
    "min_severity",
    "queue",
    "queue_bytes",
    "expire_after",
    "drain_order",
    "rate_per_minute",
    "burst",
    "max_attempts",
    "initial_backoff",
    "max_backoff",
    "breaker_failures",
    "breaker_open_for",
    "timeout",
];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    min_severity: Option<Severity>,
    queue: Option<usize>,
    queue_bytes: Option<ByteSize>,
    expire_after: Option<DurationStr>,
    drain_order: Option<DrainOrder>,
    rate_per_minute: Option<u32>,
    burst: Option<u32>,
    max_attempts: Option<u32>,
    initial_backoff: Option<DurationStr>,
    max_backoff: Option<DurationStr>,
    breaker_failures: Option<u32>,
    breaker_open_for: Option<DurationStr>,
    timeout: Option<DurationStr>,
}

/// A size in bytes: an integer, or text with a unit (`64MiB`, `512 KiB`, `1GB`).
struct ByteSize(u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => parse_byte_size(&s).map(ByteSize).ok_or_else(|| {
                serde::de::Error::custom(format!("{s:?} is not a size (write 64MiB, 512KiB, 1GB or a number of bytes)"))
            }),
        }
    }
}

fn parse_byte_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().ok()?;
    let mult: u64 = match s[split..].trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses `queue_fsync`.
fn parse_fsync(s: &str) -> Option<Fsync> {
    match s {
        "always" => Some(Fsync::Always),
        "never" => Some(Fsync::Never),
        other => crate::config::parse_duration(other)
            .ok()
            .filter(|ms| *ms > 0)
            .map(|ms| Fsync::Every(Duration::from_millis(ms as u64))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRevocation {
    /// `dry-run` (default) or `enforce`.
    mode: Option<String>,
    audit_log: Option<PathBuf>,
    /// Client ids, compared trimmed and ASCII case-insensitively.
    #[serde(default)]
    never_revoke_clients: Vec<String>,
    /// Revoke tokens whose alert names no client (default false: refused as `no_client`).
    #[serde(default)]
    revoke_without_client: bool,
    #[serde(default)]
    never_revoke_tokens: Vec<String>,
    max_per_hour: Option<u32>,
    max_per_client_per_hour: Option<u32>,
    quarantine: Option<DurationStr>,
    permanent_at: Option<Severity>,
    /// Addresses or CIDR ranges never banned.
    #[serde(default)]
    never_ban: Vec<String>,
    ban_for: Option<DurationStr>,
    max_attempts: Option<u32>,
    initial_backoff: Option<DurationStr>,
    timeout: Option<DurationStr>,
    oauth: Option<toml::Value>,
    http: Option<toml::Value>,
    kong: Option<toml::Value>,
    tyk: Option<toml::Value>,
    alertmanager: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    endpoint: String,
    client_id: String,
    client_secret_env: String,
    /// `client_secret_basic` (default) or `client_secret_post`.
    auth: Option<String>,
    token_type_hint: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTarget {
    url: String,
    method: Option<String>,
    bearer_env: Option<String>,
    secret_env: Option<String>,
}

/// `[revocation.kong]`. Required fields are `Option` so that each one missing is its own
/// error, with its own field path, next to the others.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKongTarget {
    /// Admin API base URL (`http://kong:8001`). Required.
    admin_url: Option<String>,
    /// Environment variable holding the `Kong-Admin-Token` (Kong Enterprise RBAC). Optional.
    token_env: Option<String>,
    /// `jwt`, `key-auth`, `oauth2`, `basic-auth` or `hmac-auth` ([`KongPlugin`]). Required;
    /// read on its own so an unknown name is reported at `revocation.kong.plugin`.
    plugin: Option<toml::Value>,
    /// Kong Enterprise workspace. Optional.
    workspace: Option<String>,
}

fn default_tyk_hashed() -> bool {
    true
}

/// `[revocation.tyk]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTykTarget {
    /// Gateway base URL (`http://tyk-gateway:8080`). Required.
    gateway_url: Option<String>,
    /// Environment variable holding the gateway secret, sent as `x-tyk-authorization`. Required.
    secret_env: Option<String>,
    /// The credential id is a key hash: send `?hashed=true`. Default true.
    #[serde(default = "default_tyk_hashed")]
    hashed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmReceiver {
    fingerprint_label: Option<String>,
    client_label: Option<String>,
    credential_label: Option<String>,
}

fn default_admin_header_timeout() -> DurationStr {
    DurationStr(10_000)
}
fn default_admin_request_timeout() -> DurationStr {
    DurationStr(30_000)
}
fn default_admin_idle_timeout() -> DurationStr {
    DurationStr(60_000)
}
fn default_admin_max_connections() -> usize {
    256
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    /// Where `/metrics`, `/healthz`, `/readyz` and `/api/` listen (also read by `admin_listen`).
    listen: Option<String>,
    /// Environment variable holding the bearer token for `/api/`.
    token_env: Option<String>,
    /// Time a client has to send a request head, from accept or from the first byte of a
    /// follow-up request (slow-header clients are closed). Default 10s.
    #[serde(default = "default_admin_header_timeout")]
    header_timeout: DurationStr,
    /// Time from the end of a request head to the answer, body and handler included;
    /// past it the answer is 503. Default 30s.
    #[serde(default = "default_admin_request_timeout")]
    request_timeout: DurationStr,
    /// Time a kept-alive connection may sit between requests. Default 60s.
    #[serde(default = "default_admin_idle_timeout")]
    idle_timeout: DurationStr,
    /// Connections open at once; beyond it a new one is answered 503 and closed. Default 256.
    #[serde(default = "default_admin_max_connections")]
    max_connections: usize,
    /// CrowdSec bouncers: name → environment variable holding its API key.
    #[serde(default)]
    bouncers: std::collections::BTreeMap<String, String>,
    /// Alerts the console keeps in memory (`/api/v1/alerts`). Default 10000.
    history_size: Option<usize>,
    /// A file the console's alerts and their timelines are also written to, read back at
    /// start so they survive a restart (relative to this file). Default: none, memory only.
    history_file: Option<String>,
}

/// Reads the raw TOML of `[actions]`, `[revocation]` and `[admin]`, collecting every error
/// with its dotted field. Each sink kind's `parse` (`sinks::KINDS`) is given one.
pub(crate) struct Parser<'a> {
    file: PathBuf,
    base: PathBuf,
    env: EnvLookup<'a>,
    pub(crate) errs: Vec<ConfigError>,
}

impl Parser<'_> {
    pub(crate) fn err(&mut self, field: impl Into<String>, msg: impl Into<String>) {
        self.errs.push(ConfigError::new(&self.file, field, msg));
    }

    pub(crate) fn de<T: for<'de> Deserialize<'de>>(&mut self, field: &str, v: &toml::Value) -> Option<T> {
        match v.clone().try_into::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(field, e.message().trim().to_string());
                None
            }
        }
    }

    pub(crate) fn secret(&mut self, field: &str, var: &Option<String>) -> Option<Secret> {
        let var = var.as_ref()?;
        match resolve(self.env, var) {
            Ok(s) => Some(s),
            Err(m) => {
                self.err(field, m);
                None
            }
        }
    }

    pub(crate) fn path(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() || self.base.as_os_str().is_empty() {
            p
        } else {
            self.base.join(p)
        }
    }

    /// A required field that is missing: an error naming it.
    fn required<T>(&mut self, field: &str, v: Option<T>) -> Option<T> {
        if v.is_none() {
            self.err(field, "is required");
        }
        v
    }

    /// A base URL that paths are appended to: http(s), no query or fragment; returned
    /// without its trailing `/`.
    fn base_url(&mut self, field: &str, url: &str) -> Option<String> {
        let before = self.errs.len();
        self.url(field, url);
        if self.errs.len() > before {
            return None;
        }
        if reqwest::Url::parse(url).is_ok_and(|u| u.query().is_some() || u.fragment().is_some()) {
            self.err(field, "must be a base URL, without a query or fragment (paths are appended to it)");
            return None;
        }
        Some(url.trim_end_matches('/').to_string())
    }

    /// A secret sent as an HTTP header value: it must be one (no newline, no control
    /// character). The error names the variable, never the value.
    fn header_secret(&mut self, field: &str, var: &Option<String>) -> Option<Secret> {
        let s = self.secret(field, var)?;
        if reqwest::header::HeaderValue::from_str(s.expose()).is_err() {
            let var = var.as_deref().unwrap_or_default();
            self.err(
                field,
                format!("environment variable `{var}` holds a character an HTTP header cannot carry (a newline?)"),
            );
            return None;
        }
        Some(s)
    }

    fn kong_target(&mut self, v: &toml::Value) -> Option<KongTargetConfig> {
        let raw: RawKongTarget = self.de("revocation.kong", v)?;
        let before = self.errs.len();
        let admin_url = self
            .required("revocation.kong.admin_url", raw.admin_url)
            .and_then(|u| self.base_url("revocation.kong.admin_url", &u));
        let plugin = self
            .required("revocation.kong.plugin", raw.plugin)
            .and_then(|p| self.de::<KongPlugin>("revocation.kong.plugin", &p));
        if let Some(w) = &raw.workspace {
            if super::revocation::targets::path_encode(w).is_none() {
                self.err("revocation.kong.workspace", "must name a workspace (not empty, `.` or `..`)");
            }
        }
        let token = self.header_secret("revocation.kong.token_env", &raw.token_env);
        if self.errs.len() > before {
            return None;
        }
        Some(KongTargetConfig { admin_url: admin_url?, token, plugin: plugin?, workspace: raw.workspace })
    }

    fn tyk_target(&mut self, v: &toml::Value) -> Option<TykTargetConfig> {
        let raw: RawTykTarget = self.de("revocation.tyk", v)?;
        let before = self.errs.len();
        let gateway_url = self
            .required("revocation.tyk.gateway_url", raw.gateway_url)
            .and_then(|u| self.base_url("revocation.tyk.gateway_url", &u));
        let secret = match self.required("revocation.tyk.secret_env", raw.secret_env) {
            Some(var) => self.header_secret("revocation.tyk.secret_env", &Some(var)),
            None => None,
        };
        if self.errs.len() > before {
            return None;
        }
        Some(TykTargetConfig { gateway_url: gateway_url?, secret: secret?, hashed: raw.hashed })
    }

    pub(crate) fn url(&mut self, field: &str, url: &str) {
        if !(url.starts_with("http://") || url.starts_with("https://")) || reqwest::Url::parse(url).is_err() {
            // The URL itself may carry a secret (Slack webhook paths do): never echo it.
            self.err(field, "must be an http:// or https:// URL");
        }
    }

    fn actions(&mut self, v: &toml::Value) -> Option<ActionsConfig> {
        // The sink tables are read by their kinds; the rest is `RawActions`.
        let mut rest = v.clone();
        let mut kind_tables = toml::Table::new();
        if let Some(t) = rest.as_table_mut() {
            for kind in super::sinks::KINDS {
                if let Some(k) = t.remove(kind.name) {
                    kind_tables.insert(kind.name.to_string(), k);
                }
            }
            // `[actions.slack.x]`: a table of tables where a sink kind would be. Said as such,
            // rather than as an unknown setting.
            let unknown: Vec<String> = t
                .iter()
                .filter(|(_, v)| v.as_table().is_some_and(|s| !s.is_empty() && s.values().all(toml::Value::is_table)))
                .map(|(k, _)| k.clone())
                .collect();
            for k in unknown {
                t.remove(&k);
                let kinds: Vec<&str> = super::sinks::KINDS.iter().map(|k| k.name).collect();
                self.err(format!("actions.{k}"), format!("not a sink kind (one of {})", kinds.join(", ")));
            }
        }
        let raw: RawActions = self.de("actions", &rest)?;
        let before = self.errs.len();
        let group_window = raw.group_window.map(|d| d.0).unwrap_or(600_000);
        if group_window < 0 {
            self.err("actions.group_window", "must not be negative");
        }
        if let Some(r) = raw.resolve_after {
            if r.0 <= 0 {
                self.err("actions.resolve_after", "must be positive");
            }
        }
        if raw.dedup_capacity == 0 {
            self.err("actions.dedup_capacity", "must be at least 1");
        }
        let queue_fsync = match raw.queue_fsync.as_deref() {
            None => Fsync::Always,
            Some(s) => parse_fsync(s).unwrap_or_else(|| {
                self.err(
                    "actions.queue_fsync",
                    format!("{s:?} is not \"always\", \"never\" or an interval such as \"1s\""),
                );
                Fsync::Always
            }),
        };
        let mut sinks = Vec::new();
        for kind in super::sinks::KINDS {
            let Some(tables) = kind_tables.get(kind.name) else { continue };
            let Some(tables) = tables.as_table() else {
                self.err(format!("actions.{}", kind.name), "must be a table of named sinks");
                continue;
            };
            for (name, v) in tables {
                let field = format!("actions.{}.{name}", kind.name);
                if let Some((delivery, rest)) = self.delivery(&field, v) {
                    if let Some(k) = (kind.parse)(self, &field, &rest) {
                        sinks.push(SinkConfig { name: format!("{}:{name}", kind.name), delivery, kind: k });
                    }
                }
            }
        }
        if self.errs.len() > before {
            return None;
        }
        let dead_letter = self.path(raw.dead_letter.unwrap_or_else(|| PathBuf::from("gatewatch-dead-letter.jsonl")));
        let queue_dir = match raw.queue_dir {
            Some(d) => self.path(d),
            None => dead_letter.parent().unwrap_or(Path::new("")).join("gatewatch-queue"),
        };
        Some(ActionsConfig {
            dead_letter,
            dedup_capacity: raw.dedup_capacity,
            group_window: Duration::from_millis(group_window.max(0) as u64),
            resolve_after: raw.resolve_after.map(|d| Duration::from_millis(d.0.max(0) as u64)),
            runbooks: raw.runbooks,
            sinks,
            queue_dir,
            queue_fsync,
            queue_segment_bytes: DEFAULT_SEGMENT_BYTES,
        })
    }

    /// Splits a sink table into its delivery fields and the rest.
    fn delivery(&mut self, field: &str, v: &toml::Value) -> Option<(DeliveryConfig, toml::Value)> {
        let Some(table) = v.as_table() else {
            self.err(field, "must be a table");
            return None;
        };
        let mut d = toml::Table::new();
        let mut rest = toml::Table::new();
        for (k, v) in table {
            if DELIVERY_KEYS.contains(&k.as_str()) {
                d.insert(k.clone(), v.clone());
            } else {
                rest.insert(k.clone(), v.clone());
            }
        }
        let raw: RawDelivery = self.de(field, &toml::Value::Table(d))?;
        let def = DeliveryConfig::default();
        let ms =
            |d: Option<DurationStr>, def: Duration| d.map(|d| Duration::from_millis(d.0.max(0) as u64)).unwrap_or(def);
        let out = DeliveryConfig {
            min_severity: raw.min_severity,
            queue: raw.queue.unwrap_or(def.queue),
            queue_bytes: raw.queue_bytes.map_or(def.queue_bytes, |b| b.0),
            expire_after: ms(raw.expire_after, def.expire_after),
            drain_order: raw.drain_order.unwrap_or(def.drain_order),
            rate_per_minute: raw.rate_per_minute,
            burst: raw.burst.unwrap_or(def.burst),
            initial_backoff: ms(raw.initial_backoff, def.initial_backoff),
            max_backoff: ms(raw.max_backoff, def.max_backoff),
            breaker_failures: raw.breaker_failures.unwrap_or(def.breaker_failures),
            breaker_open_for: ms(raw.breaker_open_for, def.breaker_open_for),
            timeout: ms(raw.timeout, def.timeout),
        };
        let mut ok = true;
        if out.queue == 0 {
            self.err(format!("{field}.queue"), "must be at least 1");
            ok = false;
        }
        if out.rate_per_minute == Some(0) {
            self.err(format!("{field}.rate_per_minute"), "must be at least 1 (omit it for no limit)");
            ok = false;
        }
        if out.burst == 0 {
            self.err(format!("{field}.burst"), "must be at least 1");
            ok = false;
        }
        if raw.max_attempts.is_some() {
            // Giving up after a few attempts turned every alert of an outage into a dead
            // letter; the durable queue retries until expire_after instead.
            self.err(
                format!("{field}.max_attempts"),
                "is no longer used: a notification is retried until it is delivered or older than expire_after (default 24h); remove it, or set expire_after",
            );
            ok = false;
        }
        if out.queue_bytes < 4096 {
            self.err(format!("{field}.queue_bytes"), "must be at least 4KiB");
            ok = false;
        }
        if out.expire_after < Duration::from_secs(1) {
            self.err(format!("{field}.expire_after"), "must be at least 1s");
            ok = false;
        }
        if out.max_backoff < out.initial_backoff {
            self.err(format!("{field}.max_backoff"), "must not be shorter than initial_backoff");
            ok = false;
        }
        if out.breaker_failures == 0 {
            self.err(format!("{field}.breaker_failures"), "must be at least 1");
            ok = false;
        }
        if out.timeout.is_zero() {
            self.err(format!("{field}.timeout"), "must be positive");
            ok = false;
        }
        ok.then_some((out, toml::Value::Table(rest)))
    }

    fn revocation(&mut self, v: &toml::Value) -> Option<RevocationConfig> {
        let raw: RawRevocation = self.de("revocation", v)?;
        let before = self.errs.len();
        let mut c = RevocationConfig::new(
            self.path(raw.audit_log.unwrap_or_else(|| PathBuf::from("gatewatch-revocations.audit.jsonl"))),
        );
        c.dry_run = match raw.mode.as_deref() {
            None | Some("dry-run") => true,
            Some("enforce") => false,
            Some(other) => {
                self.err("revocation.mode", format!("`{other}`: one of dry-run, enforce"));
                true
            }
        };
        for (i, name) in raw.never_revoke_clients.iter().enumerate() {
            if name.trim().is_empty() {
                self.err(format!("revocation.never_revoke_clients[{i}]"), "must name a client (it is blank)");
            }
        }
        c.never_revoke_clients = raw.never_revoke_clients;
        c.revoke_without_client = raw.revoke_without_client;
        for (i, t) in raw.never_revoke_tokens.iter().enumerate() {
            if crate::event::Fingerprint::from_hex(t).is_none() {
                self.err(format!("revocation.never_revoke_tokens[{i}]"), "must be a token fingerprint (16 hex digits)");
            }
        }
        c.never_revoke_tokens = raw.never_revoke_tokens.iter().map(|t| t.to_ascii_lowercase()).collect();
        if let Some(m) = raw.max_per_hour {
            c.max_per_hour = m;
        }
        if let Some(m) = raw.max_per_client_per_hour {
            c.max_per_client_per_hour = m;
        }
        if c.max_per_client_per_hour > c.max_per_hour {
            self.err("revocation.max_per_client_per_hour", "must not exceed max_per_hour");
        }
        if let Some(q) = raw.quarantine {
            if q.0 <= 0 {
                self.err("revocation.quarantine", "must be positive");
            }
            c.quarantine = Duration::from_millis(q.0.max(0) as u64);
        }
        c.permanent_at = raw.permanent_at;
        for (i, n) in raw.never_ban.iter().enumerate() {
            match n.parse::<ipnet::IpNet>().or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)) {
                Ok(net) => c.never_ban.push(net),
                Err(_) => {
                    self.err(format!("revocation.never_ban[{i}]"), format!("`{n}` is not an address or CIDR range"))
                }
            }
        }
        if let Some(b) = raw.ban_for {
            if b.0 <= 0 {
                self.err("revocation.ban_for", "must be positive");
            }
            c.ban_for = Duration::from_millis(b.0.max(0) as u64);
        }
        if let Some(a) = raw.max_attempts {
            if a == 0 {
                self.err("revocation.max_attempts", "must be at least 1");
            }
            c.max_attempts = a.max(1);
        }
        if let Some(b) = raw.initial_backoff {
            c.initial_backoff = Duration::from_millis(b.0.max(0) as u64);
        }
        if let Some(t) = raw.timeout {
            if t.0 <= 0 {
                self.err("revocation.timeout", "must be positive");
            }
            c.timeout = Duration::from_millis(t.0.max(1) as u64);
        }
        if let Some(v) = &raw.oauth {
            if let Some(o) = self.de::<RawOAuth>("revocation.oauth", v) {
                self.url("revocation.oauth.endpoint", &o.endpoint);
                let auth = match o.auth.as_deref() {
                    None | Some("client_secret_basic") => ClientAuth::Basic,
                    Some("client_secret_post") => ClientAuth::Post,
                    Some(other) => {
                        self.err(
                            "revocation.oauth.auth",
                            format!("`{other}`: one of client_secret_basic, client_secret_post"),
                        );
                        ClientAuth::Basic
                    }
                };
                if let Some(secret) = self.secret("revocation.oauth.client_secret_env", &Some(o.client_secret_env)) {
                    c.oauth = Some(OAuthTargetConfig {
                        endpoint: o.endpoint,
                        client_id: o.client_id,
                        client_secret: secret,
                        auth,
                        token_type_hint: o.token_type_hint,
                    });
                }
            }
        }
        if let Some(v) = &raw.http {
            if let Some(h) = self.de::<RawHttpTarget>("revocation.http", v) {
                // Placeholders are not valid URL syntax everywhere; check with them filled in.
                let probe =
                    h.url.replace("{client_id}", "c").replace("{fingerprint}", "f").replace("{credential_id}", "i");
                self.url("revocation.http.url", &probe);
                let method = match h.method.as_deref().map(|m| (m, HttpMethod::parse(m))) {
                    None => HttpMethod::Post,
                    Some((_, Some(m))) => m,
                    Some((m, None)) => {
                        let m = m.to_ascii_uppercase();
                        self.err("revocation.http.method", format!("`{m}`: one of POST, PUT, DELETE"));
                        HttpMethod::Post
                    }
                };
                let bearer = self.secret("revocation.http.bearer_env", &h.bearer_env);
                let secret = self.secret("revocation.http.secret_env", &h.secret_env);
                c.http = Some(HttpTargetConfig { url: h.url, method, bearer, secret });
            }
        }
        if let Some(v) = &raw.kong {
            c.kong = self.kong_target(v);
        }
        if let Some(v) = &raw.tyk {
            c.tyk = self.tyk_target(v);
        }
        if let Some(v) = &raw.alertmanager {
            if let Some(a) = self.de::<RawAmReceiver>("revocation.alertmanager", v) {
                if let Some(l) = a.fingerprint_label {
                    c.alertmanager_fingerprint_label = l;
                }
                if let Some(l) = a.client_label {
                    c.alertmanager_client_label = l;
                }
                if let Some(l) = a.credential_label {
                    c.alertmanager_credential_label = l;
                }
            }
        }
        (self.errs.len() == before).then_some(c)
    }

    /// The admin token with surrounding whitespace trimmed (a value written with `echo` into
    /// a secret file ends in a newline, and a bearer token never does), refused when what is
    /// left is empty or shorter than [`MIN_ADMIN_TOKEN_CHARS`]. The error names the variable,
    /// never the value.
    fn admin_token(&mut self, var: &Option<String>, token: Secret) -> Option<Secret> {
        let var = var.as_deref().unwrap_or_default();
        let trimmed = token.expose().trim();
        if trimmed.is_empty() {
            self.err("admin.token_env", format!("environment variable `{var}` holds only whitespace"));
            return None;
        }
        if trimmed.chars().count() < MIN_ADMIN_TOKEN_CHARS {
            self.err(
                "admin.token_env",
                format!(
                    "the token in `{var}` is shorter than {MIN_ADMIN_TOKEN_CHARS} characters (surrounding whitespace is not counted)"
                ),
            );
            return None;
        }
        Some(Secret::new(trimmed))
    }

    fn admin(&mut self, v: Option<&toml::Value>) -> AdminConfig {
        let mut out = AdminConfig::default();
        let Some(v) = v else { return out };
        let Some(raw) = self.de::<RawAdmin>("admin", v) else { return out };
        if let Some(l) = raw.listen {
            match l.parse::<SocketAddr>() {
                Ok(a) => out.listen = a,
                Err(_) => self.err("admin.listen", format!("`{l}` is not an address:port")),
            }
        }
        out.token = self.secret("admin.token_env", &raw.token_env).and_then(|t| self.admin_token(&raw.token_env, t));
        let mut timeout = |field: &str, d: DurationStr| {
            if !ADMIN_TIMEOUT_RANGE_MS.contains(&d.0) {
                self.err(format!("admin.{field}"), "must be between 100ms and 1h");
            }
            Duration::from_millis(d.0.clamp(*ADMIN_TIMEOUT_RANGE_MS.start(), *ADMIN_TIMEOUT_RANGE_MS.end()) as u64)
        };
        out.limits.header_timeout = timeout("header_timeout", raw.header_timeout);
        out.limits.request_timeout = timeout("request_timeout", raw.request_timeout);
        out.limits.idle_timeout = timeout("idle_timeout", raw.idle_timeout);
        if !ADMIN_MAX_CONNECTIONS_RANGE.contains(&raw.max_connections) {
            self.err("admin.max_connections", "must be between 1 and 65536");
        }
        out.limits.max_connections = raw.max_connections.clamp(1, *ADMIN_MAX_CONNECTIONS_RANGE.end());
        for (name, var) in &raw.bouncers {
            let field = format!("admin.bouncers.{name}");
            if let Some(k) = self.secret(&field, &Some(var.clone())) {
                if k.expose().trim().len() < MIN_ADMIN_TOKEN_CHARS {
                    self.err(
                        field,
                        format!("the key in `{var}` must have at least {MIN_ADMIN_TOKEN_CHARS} characters"),
                    );
                } else {
                    out.bouncers.push((name.clone(), Secret::new(k.expose().trim())));
                }
            }
        }
        if let Some(n) = raw.history_size {
            if !(1..=1_000_000).contains(&n) {
                self.err("admin.history_size", "must be between 1 and 1000000");
            }
            out.history_size = n.clamp(1, 1_000_000);
        }
        out.history_file = raw.history_file.map(|f| self.path(PathBuf::from(f)));
        out
    }
}

/// Checks that every `actions` entry of the detector files names something configured:
/// `log`, `revoke`, `revoke:dry-run`, a sink name (`webhook:secops`) or a sink kind
/// (`email`: every email sink). Returns one error per unknown reference.
pub fn check_action_refs(settings: &ActionsSettings, files: &[(PathBuf, Vec<String>)]) -> Vec<ConfigError> {
    let sinks: Vec<&SinkConfig> = settings.actions.iter().flat_map(|a| a.sinks.iter()).collect();
    let mut errs = Vec::new();
    for (file, actions) in files {
        for (i, a) in actions.iter().enumerate() {
            let missing = match crate::config::ActionRef::parse(a) {
                Err(why) => Some(why),
                Ok(crate::config::ActionRef::Log) => None,
                Ok(crate::config::ActionRef::Revoke { .. } | crate::config::ActionRef::Ban { .. }) => {
                    settings.revocation.is_none().then(|| format!("`{a}`: no [revocation] section"))
                }
                Ok(crate::config::ActionRef::Sink { kind, name: None }) => {
                    (!sinks.iter().any(|s| s.kind.as_str() == kind))
                        .then(|| format!("`{a}`: no {kind} sink in [actions]"))
                }
                Ok(crate::config::ActionRef::Sink { .. }) => {
                    (!sinks.iter().any(|s| s.name == *a)).then(|| format!("`{a}`: no such sink in [actions]"))
                }
            };
            if let Some(why) = missing {
                errs.push(ConfigError::new(file, format!("actions[{i}]"), why));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sections as `GatewatchConfig.other` holds them.
    fn cfg(text: &str) -> GatewatchConfig {
        let table: toml::Table = toml::from_str(text).unwrap();
        GatewatchConfig {
            other: table.into_iter().collect(),
            path: Some(PathBuf::from("/etc/gatewatch/gatewatch.toml")),
            ..GatewatchConfig::default()
        }
    }

    fn env(k: &str) -> Option<String> {
        match k {
            "HOOK_SECRET" => Some("s3cr3t-hook".into()),
            "SMTP_PASSWORD" => Some("s3cr3t-smtp".into()),
            "IDP_SECRET" => Some("s3cr3t-idp".into()),
            "ADMIN_TOKEN" => Some("0123456789abcdef-admin".into()),
            "ADMIN_TOKEN_NEWLINE" => Some("0123456789abcdef-admin\n".into()),
            "ADMIN_TOKEN_SPACES" => Some(" ".repeat(16)),
            "ADMIN_TOKEN_BLANK" => Some(" \t\r\n".repeat(5)),
            // 20 bytes, but 11 characters once the padding is trimmed.
            "ADMIN_TOKEN_PADDED_SHORT" => Some("    short-token     ".into()),
            _ => None,
        }
    }

    #[test]
    fn parses_a_full_config() {
        let c = cfg(r#"
            [actions]
            dead_letter = "dl.jsonl"
            group_window = "5m"
            [actions.runbooks]
            token_reuse = "https://wiki/token-reuse"
            [actions.webhook.secops]
            url = "https://hooks.example.com/x"
            format = "slack"
            secret_env = "HOOK_SECRET"
            queue = 50
            queue_bytes = "1MiB"
            expire_after = "6h"
            drain_order = "newest_first"
            [actions.email.oncall]
            host = "smtp.example.com"
            username = "gw"
            password_env = "SMTP_PASSWORD"
            from = "gatewatch <gw@example.com>"
            to = ["oncall@example.com"]
            min_severity = "high"
            [actions.alertmanager.main]
            url = "http://am:9093/"
            labels = { team = "secops" }
            [revocation]
            mode = "enforce"
            never_revoke_clients = ["healthcheck"]
            max_per_hour = 10
            max_per_client_per_hour = 2
            quarantine = "2h"
            permanent_at = "critical"
            [revocation.oauth]
            endpoint = "https://idp.example.com/oauth2/revoke"
            client_id = "gatewatch"
            client_secret_env = "IDP_SECRET"
            [admin]
            listen = "127.0.0.1:9000"
            token_env = "ADMIN_TOKEN"
        "#);
        let s = ActionsSettings::from_config_with_env(&c, &env).unwrap();
        let a = s.actions.unwrap();
        assert_eq!(a.dead_letter, PathBuf::from("/etc/gatewatch/dl.jsonl"));
        assert_eq!(a.group_window, Duration::from_secs(300));
        assert_eq!(a.sinks.len(), 3);
        let names: Vec<&str> = a.sinks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["webhook:secops", "email:oncall", "alertmanager:main"]);
        assert_eq!(a.sinks[0].delivery.queue, 50);
        assert_eq!(a.sinks[0].delivery.queue_bytes, 1 << 20);
        assert_eq!(a.sinks[0].delivery.expire_after, Duration::from_secs(6 * 3600));
        assert_eq!(a.sinks[0].delivery.drain_order, DrainOrder::NewestFirst);
        assert_eq!(a.sinks[1].delivery.expire_after, Duration::from_secs(24 * 3600), "the default");
        assert_eq!(a.queue_dir, PathBuf::from("/etc/gatewatch/gatewatch-queue"));
        assert_eq!(a.queue_fsync, Fsync::Always);
        assert_eq!(a.sinks[1].delivery.min_severity, Some(Severity::High));
        match &a.sinks[1].kind {
            SinkKind::Email(e) => {
                assert_eq!(e.port, 587);
                assert_eq!(e.tls, SmtpTls::Starttls);
            }
            _ => panic!(),
        }
        let r = s.revocation.unwrap();
        assert!(!r.dry_run);
        assert_eq!(r.quarantine, Duration::from_secs(7200));
        assert_eq!(r.oauth.unwrap().auth, ClientAuth::Basic);
        assert_eq!(s.admin.listen.port(), 9000);
        // Debug output of the whole thing holds no secret.
        let dbg = format!("{:?}", ActionsSettings::from_config_with_env(&c, &env).unwrap());
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
    }

    #[test]
    fn revocation_defaults_to_dry_run() {
        let c = cfg("[revocation]\n");
        let s = ActionsSettings::from_config_with_env(&c, &env).unwrap();
        let r = s.revocation.unwrap();
        assert!(r.dry_run);
        assert!(!r.revoke_without_client, "a client-less token is refused unless asked for");
        let c = cfg("[revocation]
revoke_without_client = true
");
        assert!(ActionsSettings::from_config_with_env(&c, &env).unwrap().revocation.unwrap().revoke_without_client);
    }

    #[test]
    fn every_error_is_listed_with_its_field_and_no_secret() {
        let c = cfg(r#"
            [actions.webhook.a]
            url = "ftp://nope/s3cr3t-path"
            secret_env = "MISSING_VAR"
            queue = 0
            [actions.webhook.b]
            url = "https://ok"
            colour = "red"
            [actions.email.x]
            host = "smtp"
            from = "not an address"
            to = []
            tls = "ssl"
            [revocation]
            mode = "yes"
            max_per_hour = 1
            max_per_client_per_hour = 5
            never_revoke_clients = ["healthcheck", "  "]
            [admin]
            listen = "nowhere"
        "#);
        let errs = ActionsSettings::from_config_with_env(&c, &env).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "actions.webhook.a.queue",
            "actions.webhook.b",
            "actions.email.x.tls",
            "actions.email.x.from",
            "actions.email.x.to",
            "revocation.mode",
            "revocation.max_per_client_per_hour",
            "revocation.never_revoke_clients[1]",
            "admin.listen",
        ] {
            assert!(fields.contains(&f), "missing {f} in {fields:?}");
        }
        // queue=0 stops the sink before its url is checked; a second run checks the url alone.
        let c2 = cfg("[actions.webhook.a]\nurl = \"ftp://nope/s3cr3t-path\"\nsecret_env = \"MISSING_VAR\"\n");
        let errs2 = ActionsSettings::from_config_with_env(&c2, &env).unwrap_err();
        let text: String = errs2.iter().map(|e| format!("{e}\n")).collect();
        assert!(text.contains("actions.webhook.a.url"), "{text}");
        assert!(text.contains("MISSING_VAR"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(errs.iter().all(|e| e.file == Path::new("/etc/gatewatch/gatewatch.toml")));
    }

    #[test]
    fn queue_fields_are_checked_and_max_attempts_says_what_replaced_it() {
        let c = cfg(r#"
            [actions]
            queue_fsync = "sometimes"
            [actions.webhook.a]
            url = "https://ok"
            max_attempts = 6
            [actions.webhook.b]
            url = "https://ok"
            queue_bytes = "lots"
            [actions.webhook.c]
            url = "https://ok"
            drain_order = "random"
            [actions.webhook.d]
            url = "https://ok"
            queue_bytes = 100
            expire_after = "0s"
        "#);
        let errs = ActionsSettings::from_config_with_env(&c, &env).unwrap_err();
        let text: String = errs.iter().map(|e| format!("{e}\n")).collect();
        for want in [
            "actions.queue_fsync",
            "actions.webhook.a.max_attempts",
            "retried until it is delivered or older than expire_after",
            "actions.webhook.b",
            "not a size",
            "actions.webhook.c",
            "actions.webhook.d.queue_bytes",
            "actions.webhook.d.expire_after",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(parse_byte_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_byte_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_fsync("250ms"), Some(Fsync::Every(Duration::from_millis(250))));
        assert_eq!(parse_fsync("never"), Some(Fsync::Never));
    }

    fn admin_token(var: &str) -> Result<Option<Secret>, Vec<ConfigError>> {
        let c = cfg(&format!("[admin]\ntoken_env = \"{var}\"\n"));
        ActionsSettings::from_config_with_env(&c, &env).map(|s| s.admin.token)
    }

    #[test]
    fn admin_token_is_trimmed_so_a_trailing_newline_still_matches() {
        let t = admin_token("ADMIN_TOKEN_NEWLINE").unwrap().unwrap();
        assert_eq!(t.expose(), "0123456789abcdef-admin");
        assert_eq!(admin_token("ADMIN_TOKEN").unwrap().unwrap().expose(), "0123456789abcdef-admin");
    }

    #[test]
    fn admin_token_of_whitespace_or_short_after_trimming_is_refused() {
        for var in ["ADMIN_TOKEN_SPACES", "ADMIN_TOKEN_BLANK", "ADMIN_TOKEN_PADDED_SHORT"] {
            let errs = admin_token(var).unwrap_err();
            assert_eq!(errs.len(), 1, "{var}: {errs:?}");
            assert_eq!(errs[0].field, "admin.token_env", "{var}");
            let text = errs[0].to_string();
            assert!(text.contains(var), "{var}: the error names the variable: {text}");
            assert!(!text.contains("short-token"), "{var}: the error never quotes the value: {text}");
        }
        let spaces = admin_token("ADMIN_TOKEN_SPACES").unwrap_err()[0].message.clone();
        assert!(spaces.contains("only whitespace"), "{spaces}");
        let short = admin_token("ADMIN_TOKEN_PADDED_SHORT").unwrap_err()[0].message.clone();
        assert!(short.contains("shorter than 16 characters"), "{short}");
    }

    #[test]
    fn admin_limits_default_and_parse() {
        let d = ActionsSettings::from_config_with_env(&cfg("[admin]\n"), &env).unwrap().admin.limits;
        assert_eq!(d, AdminLimits::default());
        assert_eq!(d.header_timeout, Duration::from_secs(10));
        assert_eq!(d.request_timeout, Duration::from_secs(30));
        assert_eq!(d.idle_timeout, Duration::from_secs(60));
        assert_eq!(d.max_connections, 256);
        let c = cfg(
            "[admin]\nheader_timeout = \"300ms\"\nrequest_timeout = \"2s\"\nidle_timeout = \"1m\"\nmax_connections = 2\n",
        );
        let l = ActionsSettings::from_config_with_env(&c, &env).unwrap().admin.limits;
        assert_eq!(l.header_timeout, Duration::from_millis(300));
        assert_eq!(l.request_timeout, Duration::from_secs(2));
        assert_eq!(l.idle_timeout, Duration::from_secs(60));
        assert_eq!(l.max_connections, 2);
    }

    #[test]
    fn admin_limits_out_of_range_are_each_reported() {
        let c = cfg(
            "[admin]\nheader_timeout = \"0s\"\nrequest_timeout = \"2h\"\nidle_timeout = \"10ms\"\nmax_connections = 0\n",
        );
        let errs = ActionsSettings::from_config_with_env(&c, &env).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["admin.header_timeout", "admin.request_timeout", "admin.idle_timeout", "admin.max_connections"]
        );
        let unknown =
            ActionsSettings::from_config_with_env(&cfg("[admin]\nheader_timout = \"1s\"\n"), &env).unwrap_err();
        assert_eq!(unknown[0].field, "admin");
        assert!(unknown[0].message.contains("header_timout"), "{}", unknown[0].message);
    }

    #[test]
    fn an_unknown_sink_kind_is_named_with_the_kinds() {
        let c = cfg("[actions.slack.team]\nurl = \"https://hooks.example.com/x\"\n");
        let errs = ActionsSettings::from_config_with_env(&c, &env).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "actions.slack");
        assert!(errs[0].message.contains("not a sink kind (one of webhook, email, alertmanager, file)"), "{errs:?}");
        // An unknown plain setting is still serde's error, naming the settings.
        let c = cfg("[actions]\ndedup = 5\n");
        let errs = ActionsSettings::from_config_with_env(&c, &env).unwrap_err();
        assert!(errs[0].message.contains("unknown field `dedup`"), "{errs:?}");
    }

    #[test]
    fn action_refs_must_name_configured_sinks() {
        let c = cfg("[actions.webhook.secops]\nurl = \"https://x\"\n");
        let s = ActionsSettings::from_config_with_env(&c, &env).unwrap();
        let files = vec![(
            PathBuf::from("detectors/a.toml"),
            vec!["webhook:secops".into(), "webhook".into(), "log".into(), "email:oncall".into(), "revoke".into()],
        )];
        let errs = check_action_refs(&s, &files);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["actions[3]", "actions[4]"]);
    }
}

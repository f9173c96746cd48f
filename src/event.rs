//! The normalized access-log event, the entities detectors key on, and the alert.
//!
//! This module imports nothing else of gatewatch: every stage speaks these types.
//! Time is event time in milliseconds since the Unix epoch ([`Millis`]); nothing
//! here reads the clock.

use std::fmt;
use std::net::IpAddr;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

/// Event time: milliseconds since the Unix epoch, as logged by the gateway.
pub type Millis = i64;

/// Formats event time as RFC 3339 in UTC with millisecond precision when needed.
pub fn format_ts(ts: Millis) -> String {
    use chrono::{DateTime, SecondsFormat, Utc};
    match DateTime::<Utc>::from_timestamp_millis(ts) {
        Some(dt) if ts % 1000 == 0 => dt.to_rfc3339_opts(SecondsFormat::Secs, true),
        Some(dt) => dt.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => ts.to_string(),
    }
}

/// Keyed fingerprint of a secret: the first 8 bytes (16 hex digits) of
/// HMAC-SHA256(key, raw secret). Never the secret itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Fingerprint(pub [u8; 8]);

impl Fingerprint {
    pub fn to_hex(self) -> String {
        // By table, not `write!`: detectors key state by this string, so it is made a few
        // times per event and the formatter was a measurable part of a replay.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 16];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = HEX[(b >> 4) as usize];
            out[2 * i + 1] = HEX[(b & 0xf) as usize];
        }
        out.iter().map(|&c| c as char).collect()
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 16 {
            return None;
        }
        let mut out = [0u8; 8];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hi = (chunk[0] as char).to_digit(16)?;
            let lo = (chunk[1] as char).to_digit(16)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Some(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// An event's text: up to 24 bytes held inline (a method, a route, an address, a scope, a
/// subject), longer on the heap, so most of an event's strings cost no allocation.
pub type Text = compact_str::CompactString;

/// One access-log record as gatewatch reads it, already scrubbed: a token
/// appears only as its fingerprint. Absent values are `None`, never invented.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    /// Event time (the gateway's timestamp for the request).
    pub ts: Millis,
    /// Which format the record came in (`kong`, `envoy`, `generic`, ...).
    pub gateway: &'static str,
    /// The calling application: gateway consumer, JWT `client_id`/`azp`, or API-key identity.
    pub client_id: Option<Text>,
    /// Where `client_id` came from: the gateway's word, the API key itself, or a claim
    /// nobody verified. Not part of the printed event.
    pub client_id_source: ClientIdSource,
    /// The end user or principal (`sub`, consumer username).
    pub subject: Option<Text>,
    /// Fingerprint of the bearer token / API key the request carried.
    pub token_fingerprint: Option<Fingerprint>,
    /// A non-secret id of the credential when the token itself is not logged:
    /// Kong's credential id, a JWT `jti`, an API-key id. Used as the token
    /// entity where no fingerprint exists. Not part of the printed event.
    pub credential_id: Option<Text>,
    /// Who made the request, for when no token or credential id names it (Kong 3 writes
    /// `authorization: REDACTED`, Traefik drops the header and keeps `ClientUsername`): the
    /// best principal the record carries, prefixed by what it is — `consumer:<id>` (the
    /// gateway's consumer), `user:<name>` (the authenticated user name), `sub:<subject>` (a
    /// subject the gateway logged, an authorizer's or `jwt_authn`'s), or `client:<id>` when
    /// `[input] client_id_is_principal` says client ids name one caller each. A shared OAuth
    /// client id is never one by default. Not part of the printed event.
    pub principal: Option<Text>,
    /// Scopes granted to the token (JWT `scope`/`scp`, authorizer claims).
    pub scopes: Vec<Text>,
    /// The client's address after trusted-proxy processing.
    pub source_ip: Option<IpAddr>,
    pub method: Option<Text>,
    pub host: Option<Text>,
    /// Request path without its query string.
    pub path: Option<Text>,
    /// The query string (without `?`) as logged, every secret in it replaced by its marker;
    /// read by Sigma rules (`cs-uri-query`). Not part of the printed event.
    pub query: Option<Text>,
    /// Templated route: `METHOD /path/{id}`.
    pub route: Option<Text>,
    /// The upstream service or cluster the gateway proxied to.
    pub upstream: Option<Text>,
    pub status: Option<u16>,
    pub latency_ms: Option<f64>,
    pub upstream_latency_ms: Option<f64>,
    pub bytes_sent: Option<u64>,
    pub user_agent: Option<Text>,
    /// The `Referer` header, scrubbed; read by Sigma rules (`cs-referer`). Not part of the
    /// printed event.
    pub referer: Option<Text>,
    pub request_id: Option<Text>,
    /// Credentials seen where they do not belong (in a URL, a basic-auth
    /// header, ...), by kind; filled by the scrubber, read by `credential_exposure`.
    pub exposures: Vec<Exposure>,
    /// What the request's bearer JWT says about itself (header `alg`, `iss`, `aud`, `exp`,
    /// `iat`), read while the record is parsed, before the token is fingerprinted and dropped;
    /// `None` without a JWT. Shared with the token cache: one decode per token, not per
    /// request. Not part of the printed event.
    pub claims: Option<std::sync::Arc<TokenClaims>>,
}

/// The claims of a bearer JWT that say whether a gateway should have accepted it. Decoded,
/// never verified (gatewatch holds no key): a forged token says whatever its author wrote,
/// which is the point of reading them. Values that could carry a secret are passed through
/// the scrubber first, so only its marker reaches an alert.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenClaims {
    /// The header's `alg` (`RS256`, `HS256`, `none`), as written; `None` when absent.
    pub alg: Option<String>,
    /// `iss`.
    pub issuer: Option<String>,
    /// `aud`: one string or an array of them.
    pub audience: Vec<String>,
    /// `exp`, in ms.
    pub expires_at: Option<Millis>,
    /// `iat`, in ms.
    pub issued_at: Option<Millis>,
}

impl TokenClaims {
    /// `alg: none` (any case): a token nobody signed.
    pub fn is_unsigned(&self) -> bool {
        self.alg.as_deref().is_some_and(|a| a.eq_ignore_ascii_case("none"))
    }
}

/// Where an event's `client_id` came from. An action that reaches beyond the token seen
/// (revoking a whole client at the IdP) acts only on a verified one ([`Self::is_verified`]).
/// The order is by trust: `Claimed < ApiKey < Gateway`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientIdSource {
    /// Written by the caller and vouched for by nobody: a JWT payload (gatewatch decodes
    /// tokens, it does not verify signatures, so an `alg: none` token can claim any client),
    /// a basic-auth user name the gateway logs whether or not the password was right
    /// (NGINX `$remote_user`, Traefik on a 401), an Alertmanager label. Also the default,
    /// when nothing says where the value came from.
    #[default]
    Claimed,
    /// Derived from the API key the request carried (`key:<fingerprint>`): it names that very
    /// credential, so nobody can make it name another.
    ApiKey,
    /// The gateway's own authenticated identity: Kong / APISIX consumer, AWS authorizer
    /// context, API-key id or IAM caller, Envoy `jwt_authn` / `ext_authz` metadata, NGINX Plus
    /// `$jwt_claim_*` (validated by `auth_jwt`), Tyk session, Azure APIM subscription,
    /// Traefik's authenticated user, a generic record's own client field.
    Gateway,
}

impl ClientIdSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientIdSource::Claimed => "claimed",
            ClientIdSource::ApiKey => "api_key",
            ClientIdSource::Gateway => "gateway",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "claimed" => ClientIdSource::Claimed,
            "api_key" => ClientIdSource::ApiKey,
            "gateway" => ClientIdSource::Gateway,
            _ => return None,
        })
    }

    /// Something other than the caller's say-so established the client.
    pub fn is_verified(self) -> bool {
        self != ClientIdSource::Claimed
    }
}

/// The client a detector's per-key state names in its finding, and where it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenClient {
    pub id: Option<String>,
    pub source: ClientIdSource,
}

impl SeenClient {
    /// One more event of the key. A different client replaces the one held (the last client
    /// seen is the one named). The same client again keeps the weakest source that named it,
    /// so forged events cannot borrow the standing of verified ones in the same state; except
    /// when `same_token` (the key is one token fingerprint, so every event carried the very
    /// same token string): then one the gateway authenticated vouches for the others.
    pub fn observe(&mut self, ev: &Event, same_token: bool) {
        let Some(c) = &ev.client_id else { return };
        if self.id.as_deref() == Some(c.as_str()) {
            self.source =
                if same_token { self.source.max(ev.client_id_source) } else { self.source.min(ev.client_id_source) };
        } else {
            self.id = Some(c.to_string());
            self.source = ev.client_id_source;
        }
    }
}

/// A credential sent where it does not belong; names the kind and place, never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Exposure {
    /// Kind of secret (`jwt`, `api_key`, `basic_auth`, `aws_access_key`, ...).
    pub kind: String,
    /// Where it was found (`query:access_token`, `header:authorization`, `path`, ...).
    pub place: String,
    /// Fingerprint of the exposed secret.
    pub fingerprint: Fingerprint,
}

impl Event {
    /// The token entity id: the fingerprint where the token was logged, else the credential id.
    pub fn token_entity(&self) -> Option<String> {
        match (&self.token_fingerprint, &self.credential_id) {
            (Some(fp), _) => Some(fp.to_hex()),
            (None, Some(c)) => Some(format!("cred:{c}")),
            _ => None,
        }
    }

    /// The caller a token-keyed detection keys on: the token entity ([`Self::token_entity`]),
    /// else the record's best principal ([`Self::principal`]). [`PrincipalKind::of`] says which.
    pub fn principal_entity(&self) -> Option<String> {
        self.token_entity().or_else(|| self.principal.as_deref().map(str::to_string))
    }

    pub fn is_auth_failure(&self) -> bool {
        matches!(self.status, Some(401) | Some(403))
    }

    pub fn is_success(&self) -> bool {
        matches!(self.status, Some(s) if (200..400).contains(&s))
    }

    /// A cheap content hash used to order events that share a timestamp, so the
    /// order detectors see does not depend on arrival order.
    pub fn tiebreak(&self) -> u64 {
        let mut h = TieHash::new();
        h.write(&self.ts.to_le_bytes());
        if let Some(r) = &self.request_id {
            h.write(r.as_bytes());
        }
        match self.source_ip {
            Some(IpAddr::V4(a)) => h.write(&a.octets()),
            Some(IpAddr::V6(a)) => h.write(&a.octets()),
            None => {}
        }
        if let Some(p) = &self.path {
            h.write(p.as_bytes());
        }
        if let Some(c) = &self.client_id {
            h.write(c.as_bytes());
        }
        if let Some(fp) = &self.token_fingerprint {
            h.write(&fp.0);
        }
        h.write(&self.status.unwrap_or(0).to_le_bytes());
        if let Some(l) = self.latency_ms {
            h.write(&l.to_bits().to_le_bytes());
        }
        h.finish()
    }
}

/// The tiebreak's hash: eight bytes per multiply (a byte-wise FNV made about 120 dependent
/// multiplies an event, 2 % of a replay). Only an order among equal times hangs on it, so it
/// needs to be fixed and to tell fields apart, not to resist anyone.
struct TieHash(u64);
impl TieHash {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    fn new() -> Self {
        TieHash(0xcbf2_9ce4_8422_2325)
    }
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes(w.try_into().unwrap_or_default()));
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        self.mix(u64::from_le_bytes(last));
        // the length ends the field, so ("ab", "c") and ("a", "bc") differ
        self.mix(bytes.len() as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The normalized event as `gatewatch normalize` prints it (the contract in ARCHITECTURE.md).
impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("ts", &format_ts(self.ts))?;
        m.serialize_entry("gateway", self.gateway)?;
        macro_rules! opt {
            ($name:literal, $v:expr) => {
                if let Some(v) = $v {
                    m.serialize_entry($name, v)?;
                }
            };
        }
        opt!("client_id", &self.client_id);
        opt!("subject", &self.subject);
        opt!("token_fingerprint", &self.token_fingerprint.map(|f| f.to_hex()));
        if !self.scopes.is_empty() {
            m.serialize_entry("scopes", &self.scopes)?;
        }
        opt!("source_ip", &self.source_ip.map(|ip| ip.to_string()));
        opt!("method", &self.method);
        opt!("host", &self.host);
        opt!("path", &self.path);
        opt!("route", &self.route);
        opt!("upstream", &self.upstream);
        opt!("status", &self.status);
        opt!("latency_ms", &self.latency_ms);
        opt!("upstream_latency_ms", &self.upstream_latency_ms);
        opt!("bytes_sent", &self.bytes_sent);
        opt!("user_agent", &self.user_agent);
        opt!("request_id", &self.request_id);
        if !self.exposures.is_empty() {
            m.serialize_entry("exposures", &self.exposures)?;
        }
        m.end()
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// What a token-entity id names: the token itself or, when the record carried none, the
/// principal it fell back to. Read from the id's prefix; alerts on a token entity say it in
/// their evidence (`keyed_on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// The token's fingerprint (16 hex digits).
    Token,
    /// `cred:<id>`: a credential id the gateway logged (Kong `authenticated_entity.id`), or
    /// the JWT `jti` (it names one token).
    Credential,
    /// `consumer:<id>`: the gateway's consumer.
    Consumer,
    /// `user:<name>`: the authenticated user name (Traefik `ClientUsername`, NGINX
    /// `$remote_user`, an APISIX or Tyk consumer name).
    User,
    /// `sub:<subject>`: the subject an authorizer or `jwt_authn` logged.
    Subject,
    /// `client:<id>`: a client id, only where configured as a principal.
    Client,
}

impl PrincipalKind {
    /// The prefixes of [`Event::principal`], with their kinds.
    pub const PREFIXES: [(&'static str, PrincipalKind); 5] = [
        ("cred:", PrincipalKind::Credential),
        ("consumer:", PrincipalKind::Consumer),
        ("user:", PrincipalKind::User),
        ("sub:", PrincipalKind::Subject),
        ("client:", PrincipalKind::Client),
    ];

    /// What the token-entity id `id` names.
    pub fn of(id: &str) -> PrincipalKind {
        Self::PREFIXES.iter().find(|(p, _)| id.starts_with(p)).map_or(PrincipalKind::Token, |(_, k)| *k)
    }

    /// The word a summary names the caller by: a credential id names a token too.
    pub fn noun(self) -> &'static str {
        match self {
            PrincipalKind::Credential => "token",
            other => other.as_str(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Token => "token",
            PrincipalKind::Credential => "credential",
            PrincipalKind::Consumer => "consumer",
            PrincipalKind::User => "user",
            PrincipalKind::Subject => "subject",
            PrincipalKind::Client => "client",
        }
    }
}

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    ClientId,
    SourceIp,
    Token,
    Route,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::ClientId => "client_id",
            EntityKind::SourceIp => "source_ip",
            EntityKind::Token => "token",
            EntityKind::Route => "route",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "client_id" | "client" => EntityKind::ClientId,
            "source_ip" | "ip" => EntityKind::SourceIp,
            "token" => EntityKind::Token,
            "route" => EntityKind::Route,
            _ => return None,
        })
    }
}

/// The entity kinds events are repartitioned by, so that every detector sees each entity of
/// the kind it keys on whole, whichever instance and partition reads it. A detector names,
/// per event, the shard and key it keeps state under ([`crate::detectors::Detector::shard_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shard {
    /// The source address, grouped into its network where a detector counts networks.
    Source,
    ClientId,
    /// The token fingerprint, or the credential id when the token is not logged.
    Token,
    Route,
    /// The values a Sigma correlation groups by (`group-by`), whichever fields they are.
    Group,
}

impl Shard {
    /// Every shard, in declaration order (`shard as usize` indexes this).
    pub const ALL: [Shard; 5] = [Shard::Source, Shard::ClientId, Shard::Token, Shard::Route, Shard::Group];

    /// A 64-bit hash (FNV-1a) of a key of this shard: what a repartition record carries in
    /// place of the key, and what picks its partition. The same on every instance and build.
    pub fn key_hash(self, key: &str) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in [self as u8].into_iter().chain(key.bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Shard::Source => "source",
            Shard::ClientId => "client_id",
            Shard::Token => "token",
            Shard::Route => "route",
            Shard::Group => "group",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Entity {
    pub kind: EntityKind,
    pub id: String,
}

impl Entity {
    pub fn new(kind: EntityKind, id: impl Into<String>) -> Self {
        Entity { kind, id: id.into() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Severity::Info, Severity::Low, Severity::Medium, Severity::High, Severity::Critical]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// What a detector found: the detector-specific part of an alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub entity: Entity,
    /// The part of the entity's activity the finding is about, when it is one of several
    /// watched apart (the route, for a token's calls to one route): the cooldown is per entity
    /// and this. `None`: the entity as a whole.
    pub within: Option<String>,
    pub client_id: Option<String>,
    /// Where `client_id` came from (see [`SeenClient`] for a state that saw many events).
    pub client_id_source: ClientIdSource,
    pub token_fingerprint: Option<Fingerprint>,
    pub window_start: Millis,
    pub window_end: Millis,
    pub summary: String,
    pub evidence: serde_json::Map<String, serde_json::Value>,
}

/// One alert, the same in every sink (contract in ARCHITECTURE.md).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    pub id: String,
    pub detector: String,
    pub rule: String,
    pub severity: Severity,
    pub entity: Entity,
    pub client_id: Option<String>,
    /// Where `client_id` came from. Not serialized: the alert JSON is the contract and does
    /// not change; an alert read back from JSON has no provenance and counts as `Claimed`.
    pub client_id_source: ClientIdSource,
    pub token_fingerprint: Option<Fingerprint>,
    pub window_start: Millis,
    pub window_end: Millis,
    pub summary: String,
    pub evidence: serde_json::Map<String, serde_json::Value>,
    pub actions: Vec<String>,
}

impl Alert {
    /// Deterministic alert id: a hash of rule id, entity and window start.
    pub fn make_id(rule: &str, entity: &Entity, window_start: Millis) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(rule.as_bytes());
        h.update([0]);
        h.update(entity.kind.as_str().as_bytes());
        h.update([0]);
        h.update(entity.id.as_bytes());
        h.update([0]);
        h.update(window_start.to_be_bytes());
        let d = h.finalize();
        let mut s = String::with_capacity(32);
        for b in &d[..16] {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
        }
        s
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("alert serializes")
    }

    /// Reads an alert back from the JSON of the contract (a dead-letter record's `alert`, a
    /// queued notification). `client_id_source` is not in the contract: it comes back as
    /// the default (`Claimed`) unless the caller knows better.
    pub fn from_json(v: &serde_json::Value) -> Result<Alert, String> {
        let o = v.as_object().ok_or("an alert is a JSON object")?;
        let text = |k: &str| -> Result<String, String> {
            o.get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("alert.{k} missing or not text"))
        };
        let opt_text = |k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let time = |k: &str| -> Result<Millis, String> {
            let t = text(k)?;
            chrono::DateTime::parse_from_rfc3339(&t)
                .map(|d| d.timestamp_millis())
                .map_err(|_| format!("alert.{k} is not an RFC 3339 time"))
        };
        let severity: Severity = serde_json::from_value(o.get("severity").cloned().unwrap_or_default())
            .map_err(|_| "alert.severity is not a severity".to_string())?;
        let entity = o.get("entity").and_then(|e| e.as_object()).ok_or("alert.entity missing")?;
        let kind = entity
            .get("kind")
            .and_then(|k| k.as_str())
            .and_then(EntityKind::parse)
            .ok_or("alert.entity.kind is not an entity kind")?;
        let id = entity.get("id").and_then(|k| k.as_str()).ok_or("alert.entity.id missing")?;
        let token_fingerprint = match opt_text("token_fingerprint") {
            Some(h) => Some(Fingerprint::from_hex(&h).ok_or("alert.token_fingerprint is not a fingerprint")?),
            None => None,
        };
        Ok(Alert {
            id: text("id")?,
            detector: text("detector")?,
            rule: text("rule")?,
            severity,
            entity: Entity::new(kind, id),
            client_id: opt_text("client_id"),
            client_id_source: ClientIdSource::default(),
            token_fingerprint,
            window_start: time("window_start")?,
            window_end: time("window_end")?,
            summary: text("summary")?,
            evidence: o.get("evidence").and_then(|e| e.as_object()).cloned().unwrap_or_default(),
            actions: o
                .get("actions")
                .and_then(|a| a.as_array())
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
        })
    }
}

impl Serialize for Alert {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(12))?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("detector", &self.detector)?;
        m.serialize_entry("rule", &self.rule)?;
        m.serialize_entry("severity", &self.severity)?;
        m.serialize_entry("entity", &self.entity)?;
        m.serialize_entry("client_id", &self.client_id)?;
        m.serialize_entry("token_fingerprint", &self.token_fingerprint.map(|f| f.to_hex()))?;
        m.serialize_entry("window_start", &format_ts(self.window_start))?;
        m.serialize_entry("window_end", &format_ts(self.window_end))?;
        m.serialize_entry("summary", &self.summary)?;
        m.serialize_entry("evidence", &self.evidence)?;
        m.serialize_entry("actions", &self.actions)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tiebreak_tells_fields_and_their_bounds_apart() {
        let ev = |path: &str, client: &str| Event {
            path: Some(path.into()),
            client_id: Some(client.into()),
            ..Event::default()
        };
        // the same bytes split differently between two fields, and at a word's edge
        assert_ne!(ev("/ab", "c").tiebreak(), ev("/a", "bc").tiebreak());
        assert_ne!(ev("/abcdefg", "h").tiebreak(), ev("/abcdefgh", "").tiebreak());
        // a trailing zero byte is not the end of the field
        assert_ne!(ev("/a\0", "").tiebreak(), ev("/a", "").tiebreak());
        // fixed: the same event, the same order, in any run and on any machine
        assert_eq!(ev("/v1/orders/1", "app").tiebreak(), ev("/v1/orders/1", "app").tiebreak());
        let mut later = ev("/v1/orders/1", "app");
        later.ts = 1;
        assert_ne!(later.tiebreak(), ev("/v1/orders/1", "app").tiebreak());
    }

    #[test]
    fn fingerprint_hex_roundtrip() {
        let fp = Fingerprint([0x9b, 0x1e, 0x44, 0xc0, 0x7f, 0x2a, 0x1d, 0x3e]);
        assert_eq!(fp.to_hex(), "9b1e44c07f2a1d3e");
        assert_eq!(Fingerprint::from_hex("9b1e44c07f2a1d3e"), Some(fp));
        assert_eq!(Fingerprint::from_hex("9b1e"), None);
    }

    #[test]
    fn alert_id_depends_on_rule_entity_and_window() {
        let e = Entity::new(EntityKind::Token, "9b1e44c07f2a1d3e");
        let a = Alert::make_id("r", &e, 1000);
        assert_eq!(a, Alert::make_id("r", &e, 1000));
        assert_ne!(a, Alert::make_id("r", &e, 2000));
        assert_ne!(a, Alert::make_id("r2", &e, 1000));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn a_claim_never_borrows_a_verified_source_except_for_the_same_token() {
        let ev = |c: &str, source| Event { client_id: Some(c.into()), client_id_source: source, ..Default::default() };
        let mut per_client = SeenClient::default();
        per_client.observe(&ev("billing-prod", ClientIdSource::Gateway), false);
        assert_eq!(per_client.source, ClientIdSource::Gateway);
        per_client.observe(&ev("billing-prod", ClientIdSource::Claimed), false);
        per_client.observe(&ev("billing-prod", ClientIdSource::Gateway), false);
        assert_eq!(per_client.source, ClientIdSource::Claimed, "forged events stay forged");
        per_client.observe(&Event::default(), false);
        assert_eq!(per_client.id.as_deref(), Some("billing-prod"), "an event without a client changes nothing");
        per_client.observe(&ev("app-2", ClientIdSource::Gateway), false);
        assert_eq!((per_client.id.as_deref(), per_client.source), (Some("app-2"), ClientIdSource::Gateway));

        let mut per_token = SeenClient::default();
        per_token.observe(&ev("app-1", ClientIdSource::Claimed), true);
        per_token.observe(&ev("app-1", ClientIdSource::Gateway), true);
        assert_eq!(per_token.source, ClientIdSource::Gateway, "the gateway authenticated this very token");
        assert!(!ClientIdSource::default().is_verified());
    }

    #[test]
    fn an_alert_reads_back_from_its_json() {
        let fp = Fingerprint([0x9b, 0x1e, 0x44, 0xc0, 0x7f, 0x2a, 0x1d, 0x3e]);
        let mut evidence = serde_json::Map::new();
        evidence.insert("n".into(), 7.into());
        let a = Alert {
            id: "abc".into(),
            detector: "token_reuse".into(),
            rule: "r".into(),
            severity: Severity::High,
            entity: Entity::new(EntityKind::Token, fp.to_hex()),
            client_id: Some("app".into()),
            client_id_source: ClientIdSource::Claimed,
            token_fingerprint: Some(fp),
            window_start: 1_763_720_400_000,
            window_end: 1_763_720_400_123,
            summary: "s".into(),
            evidence,
            actions: vec!["email:oncall".into()],
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(Alert::from_json(&v).unwrap(), a);
        let mut bad = v.clone();
        bad["window_end"] = "yesterday".into();
        assert!(Alert::from_json(&bad).unwrap_err().contains("window_end"));
    }

    #[test]
    fn ts_formats_rfc3339() {
        assert_eq!(format_ts(1_763_720_400_000), "2025-11-21T10:20:00Z");
        assert_eq!(format_ts(1_763_720_400_123), "2025-11-21T10:20:00.123Z");
    }
}

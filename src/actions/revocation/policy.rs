//! The revocation decision: pure and deterministic. Time comes in as `now` (milliseconds);
//! nothing here reads a clock, opens a socket or writes a file.
//!
//! Order of checks: a credential to act on; a client it belongs to (unless the config allows
//! revoking client-less tokens); the allow-lists; already revoked; the global cap per
//! sliding hour (a breaker against a detector gone wrong); the per-client cap; then dry-run
//! or revoke, for a quarantine (expiring) or permanently.
//!
//! Client ids are compared by [`client_key`]: surrounding whitespace trimmed, ASCII letters
//! folded to lower case (other characters compared as they are), for the allow-list and the
//! per-client cap alike.
//! Dry-run decisions run against their own ledger, so a week of dry-run shows what the caps
//! would have let through, without using up the real budget.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::actions::config::RevocationConfig;
use crate::event::{Alert, ClientIdSource, EntityKind, Fingerprint, Millis, Severity};

const HOUR: Millis = 3_600_000;

/// How client ids compare: surrounding whitespace trimmed, ASCII case-insensitive (`A`–`Z`
/// fold to `a`–`z`; no Unicode case folding, so a look-alike letter is another client).
pub fn client_key(c: &str) -> String {
    c.trim().to_ascii_lowercase()
}

/// What is asked to be revoked, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct RevocationRequest {
    pub fingerprint: Option<Fingerprint>,
    /// A non-secret handle of the credential (JWT `jti`, reference-token handle, key id).
    pub credential_id: Option<String>,
    pub client_id: Option<String>,
    /// Where `client_id` came from. Only a verified one is ever acted on beyond the token
    /// (a revoke-by-client target, the deny-list's `client_id`); a claimed one still counts
    /// for the allow-list and the caps.
    pub client_id_source: ClientIdSource,
    /// An address or range to ban (`203.0.113.9`, `203.0.113.0/24`), for the `ban` action:
    /// enforced by forward-auth and the CrowdSec decisions stream, not by token targets.
    pub address: Option<String>,
    /// A ban of `client_id` itself (the `ban` action on an alert about a client): every token
    /// of it refused at the gateway. Only a client the gateway verified is ever banned.
    pub ban_client: bool,
    pub alert_id: String,
    pub reason: String,
    pub severity: Severity,
    /// `alert` (a detector) or `alertmanager` (the receiver).
    pub source: &'static str,
    /// The alert asked for `revoke:dry-run`.
    pub force_dry_run: bool,
}

impl RevocationRequest {
    pub fn from_alert(a: &Alert, force_dry_run: bool) -> Self {
        let token_entity = (a.entity.kind == EntityKind::Token).then_some(a.entity.id.as_str());
        let fingerprint = a.token_fingerprint.or_else(|| token_entity.and_then(Fingerprint::from_hex));
        let credential_id = token_entity.and_then(|id| id.strip_prefix("cred:")).map(str::to_string);
        RevocationRequest {
            fingerprint,
            credential_id,
            client_id: a.client_id.clone(),
            client_id_source: a.client_id_source,
            address: None,
            ban_client: false,
            alert_id: a.id.clone(),
            reason: format!("{} ({}): {}", a.detector, a.rule, a.summary),
            severity: a.severity,
            source: "alert",
            force_dry_run,
        }
    }

    /// A ban of what an alert is about: its address (entity `source_ip`), or its client
    /// (entity `client_id`, as verified as the alert says). An alert about anything else names
    /// nothing to ban, and is refused as such.
    pub fn ban_from_alert(a: &Alert, force_dry_run: bool) -> Self {
        let base = RevocationRequest::from_alert(a, force_dry_run);
        let none = RevocationRequest {
            fingerprint: None,
            credential_id: None,
            client_id: None,
            client_id_source: ClientIdSource::Claimed,
            ..base
        };
        match a.entity.kind {
            EntityKind::SourceIp => RevocationRequest { address: Some(a.entity.id.clone()), ..none },
            EntityKind::ClientId => RevocationRequest {
                client_id: Some(a.entity.id.clone()),
                // The entity is the alert's client: as verified as the alert says it is.
                client_id_source: if a.client_id.as_deref() == Some(a.entity.id.as_str()) {
                    a.client_id_source
                } else {
                    ClientIdSource::Claimed
                },
                ban_client: true,
                ..none
            },
            _ => none,
        }
    }

    /// What is acted on: the address (`ip:<address>`) for a ban, else the credential: its
    /// fingerprint, else `cred:<id>`.
    pub fn key(&self) -> Option<String> {
        if let Some(a) = &self.address {
            return Some(format!("ip:{a}"));
        }
        if self.ban_client {
            return self.client_id.as_deref().map(|c| format!("client:{}", client_key(c)));
        }
        match (&self.fingerprint, &self.credential_id) {
            (Some(fp), _) => Some(fp.to_hex()),
            (None, Some(c)) => Some(format!("cred:{c}")),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Revoked (enforce mode).
    Revoke,
    /// Would have been revoked; dry-run.
    DryRun,
    /// The client or token is on an allow-list.
    AllowListed,
    /// An active revocation already covers this credential.
    AlreadyRevoked,
    /// The global cap per hour was reached.
    GlobalCap,
    /// The client's cap per hour was reached.
    ClientCap,
    /// The alert names no token fingerprint or credential id.
    NoCredential,
    /// The alert names no client, so neither the allow-list nor the client cap can apply:
    /// refused unless `revoke_without_client` is set.
    NoClient,
    /// The audit record could not be written, so nothing was done: not revoked, no cap
    /// used, not remembered as revoked.
    AuditFailed,
}

impl Verdict {
    /// Every verdict (the label values of `gatewatch_revocation_decisions_total`).
    pub const ALL: [Verdict; 9] = [
        Verdict::Revoke,
        Verdict::DryRun,
        Verdict::AllowListed,
        Verdict::AlreadyRevoked,
        Verdict::GlobalCap,
        Verdict::ClientCap,
        Verdict::NoCredential,
        Verdict::NoClient,
        Verdict::AuditFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Revoke => "revoke",
            Verdict::DryRun => "dry_run",
            Verdict::AllowListed => "allow_listed",
            Verdict::AlreadyRevoked => "already_revoked",
            Verdict::GlobalCap => "global_cap",
            Verdict::ClientCap => "client_cap",
            Verdict::NoCredential => "no_credential",
            Verdict::NoClient => "no_client",
            Verdict::AuditFailed => "audit_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "revoke" => Verdict::Revoke,
            "dry_run" => Verdict::DryRun,
            "allow_listed" => Verdict::AllowListed,
            "already_revoked" => Verdict::AlreadyRevoked,
            "global_cap" => Verdict::GlobalCap,
            "client_cap" => Verdict::ClientCap,
            "no_credential" => Verdict::NoCredential,
            "no_client" => Verdict::NoClient,
            "audit_failed" => Verdict::AuditFailed,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    /// `true` when decided in dry-run (global mode or the alert's `revoke:dry-run`).
    pub dry_run: bool,
    pub key: Option<String>,
    /// For `Revoke`/`DryRun`: when the quarantine ends; `None` for a permanent revocation.
    pub expires_at: Option<Millis>,
    pub permanent: bool,
    /// A sentence for the audit log.
    pub detail: String,
}

#[derive(Default)]
struct Ledger {
    /// (time, client as [`client_key`]) of each revocation in the last hour.
    recent: VecDeque<(Millis, Option<String>)>,
    /// Active revocations: key → expiry (`None`: permanent).
    active: HashMap<String, Option<Millis>>,
}

impl Ledger {
    fn prune(&mut self, now: Millis) {
        while self.recent.front().is_some_and(|(t, _)| *t <= now - HOUR) {
            self.recent.pop_front();
        }
        self.active.retain(|_, exp| exp.is_none_or(|e| e > now));
    }

    fn record(&mut self, at: Millis, client: Option<String>, key: String, expires_at: Option<Millis>) {
        // Keep `recent` ordered by time even when restoring.
        let pos = self.recent.iter().position(|(t, _)| *t > at).unwrap_or(self.recent.len());
        self.recent.insert(pos, (at, client));
        self.active.insert(key, expires_at);
    }
}

/// One ledger as saved in the state snapshot (sorted, so equal state saves equal bytes).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    /// (time, client key) of each revocation in the last hour.
    pub recent: Vec<(Millis, Option<String>)>,
    /// Active revocations: (key, expiry; `None`: permanent).
    pub active: Vec<(String, Option<Millis>)>,
}

/// Both ledgers, for the state snapshot: what makes caps and active revocations survive a
/// restart and the rotation of the audit log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    pub enforced: LedgerState,
    pub simulated: LedgerState,
}

impl Ledger {
    fn save(&self) -> LedgerState {
        let mut active: Vec<(String, Option<Millis>)> = self.active.iter().map(|(k, e)| (k.clone(), *e)).collect();
        active.sort();
        LedgerState { recent: self.recent.iter().cloned().collect(), active }
    }

    fn load(&mut self, s: &LedgerState, now: Millis) {
        let mut recent = s.recent.clone();
        recent.sort_by_key(|(t, _)| *t);
        self.recent = recent.into();
        self.active = s.active.iter().cloned().collect();
        self.prune(now);
    }
}

/// The revocation policy with its ledgers.
pub struct Policy {
    dry_run: bool,
    /// [`client_key`]s.
    allow_clients: HashSet<String>,
    revoke_without_client: bool,
    allow_tokens: HashSet<String>,
    max_per_hour: u32,
    max_per_client: u32,
    quarantine: Millis,
    permanent_at: Option<Severity>,
    /// Addresses never banned.
    allow_addresses: Vec<ipnet::IpNet>,
    /// How long a ban lasts.
    ban_for: Millis,
    enforced: Ledger,
    simulated: Ledger,
}

impl Policy {
    pub fn new(cfg: &RevocationConfig) -> Self {
        Policy {
            dry_run: cfg.dry_run,
            allow_clients: cfg.never_revoke_clients.iter().map(|c| client_key(c)).filter(|c| !c.is_empty()).collect(),
            revoke_without_client: cfg.revoke_without_client,
            allow_tokens: cfg.never_revoke_tokens.iter().map(|t| t.to_ascii_lowercase()).collect(),
            max_per_hour: cfg.max_per_hour,
            max_per_client: cfg.max_per_client_per_hour,
            quarantine: cfg.quarantine.as_millis() as Millis,
            permanent_at: cfg.permanent_at,
            allow_addresses: cfg.never_ban.clone(),
            ban_for: cfg.ban_for.as_millis() as Millis,
            enforced: Ledger::default(),
            simulated: Ledger::default(),
        }
    }

    /// Decides, and records a revoke (or would-be revoke) in the matching ledger.
    pub fn decide(&mut self, req: &RevocationRequest, now: Millis) -> Decision {
        let d = self.evaluate(req, now);
        self.record(req, &d, now);
        d
    }

    /// Decides without recording anything: the caller [`Policy::record`]s the decision once
    /// it is durably audited, so a decision that could not be audited uses no cap and is not
    /// remembered as a revocation.
    pub fn evaluate(&mut self, req: &RevocationRequest, now: Millis) -> Decision {
        let dry_run = self.dry_run || req.force_dry_run;
        let mk = |verdict, key: Option<String>, detail: String| Decision {
            verdict,
            dry_run,
            key,
            expires_at: None,
            permanent: false,
            detail,
        };
        let Some(key) = req.key() else {
            return mk(Verdict::NoCredential, None, "the alert names no token fingerprint or credential id".into());
        };
        let client = req.client_id.as_deref().map(client_key).filter(|c| !c.is_empty());
        let address_ban = req.address.is_some();
        let ban = address_ban || req.ban_client;
        if req.ban_client && !req.client_id_source.is_verified() {
            return mk(
                Verdict::NoClient,
                Some(key),
                "only a client the gateway verified is banned (a token can claim any client)".into(),
            );
        }
        if let Some(a) = &req.address {
            let ip = a.parse::<ipnet::IpNet>().or_else(|_| a.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            let Ok(net) = ip else {
                return mk(Verdict::NoCredential, Some(key), format!("`{a}` is not an address or range"));
            };
            if let Some(allowed) = self.allow_addresses.iter().find(|n| n.contains(&net.network()) || n.contains(&net))
            {
                return mk(Verdict::AllowListed, Some(key), format!("address in never_ban `{allowed}`"));
            }
        } else if client.is_none() && !self.revoke_without_client {
            return mk(
                Verdict::NoClient,
                Some(key),
                "the alert names no client, so the allow-list and the client cap cannot apply \
                 (revoke_without_client is off)"
                    .into(),
            );
        }
        if let Some(c) = client.as_ref().filter(|c| self.allow_clients.contains(*c)) {
            return mk(Verdict::AllowListed, Some(key), format!("client `{c}` is in never_revoke_clients"));
        }
        if req.fingerprint.is_some_and(|fp| self.allow_tokens.contains(&fp.to_hex())) {
            return mk(Verdict::AllowListed, Some(key), "token is in never_revoke_tokens".into());
        }
        let ledger = if dry_run { &mut self.simulated } else { &mut self.enforced };
        ledger.prune(now);
        if let Some(exp) = ledger.active.get(&key) {
            let until = match exp {
                Some(e) => format!("until {}", crate::event::format_ts(*e)),
                None => "permanently".into(),
            };
            return mk(Verdict::AlreadyRevoked, Some(key), format!("already revoked {until}"));
        }
        if ledger.recent.len() >= self.max_per_hour as usize {
            return mk(
                Verdict::GlobalCap,
                Some(key),
                format!(
                    "global cap reached: {} revocations in the last hour (max_per_hour {})",
                    ledger.recent.len(),
                    self.max_per_hour
                ),
            );
        }
        let client_count = ledger.recent.iter().filter(|(_, c)| *c == client).count();
        if !address_ban && client_count >= self.max_per_client as usize {
            return mk(
                Verdict::ClientCap,
                Some(key),
                format!("client cap reached: {client_count} revocations for this client in the last hour (max_per_client_per_hour {})", self.max_per_client),
            );
        }
        // A ban always ends: an address changes hands.
        let permanent = !ban && self.permanent_at.is_some_and(|p| req.severity >= p);
        let quarantine = if ban { self.ban_for } else { self.quarantine };
        let expires_at = (!permanent).then(|| now.saturating_add(quarantine));
        let what = if permanent {
            "permanently".to_string()
        } else {
            format!("quarantine until {}", crate::event::format_ts(now + quarantine))
        };
        let verb = if ban { "ban" } else { "revoke" };
        Decision {
            verdict: if dry_run { Verdict::DryRun } else { Verdict::Revoke },
            dry_run,
            key: Some(key),
            expires_at,
            permanent,
            detail: if dry_run { format!("dry-run: would {verb} {what}") } else { format!("{verb}: {what}") },
        }
    }

    /// Records a revoke (or would-be revoke) in its ledger; a refusal records nothing.
    pub fn record(&mut self, req: &RevocationRequest, d: &Decision, now: Millis) {
        let ledger = match d.verdict {
            Verdict::Revoke => &mut self.enforced,
            Verdict::DryRun => &mut self.simulated,
            _ => return,
        };
        if let Some(key) = &d.key {
            let client = req.client_id.as_deref().map(client_key).filter(|c| !c.is_empty());
            ledger.record(now, client, key.clone(), d.expires_at);
        }
    }

    /// The ledgers, for the state snapshot.
    pub fn state(&self) -> PolicyState {
        PolicyState { enforced: self.enforced.save(), simulated: self.simulated.save() }
    }

    /// Takes the ledgers from a state snapshot, dropping what has expired by `now`.
    pub fn load(&mut self, s: &PolicyState, now: Millis) {
        self.enforced.load(&s.enforced, now);
        self.simulated.load(&s.simulated, now);
    }

    /// Replays a past decision from the audit log (after a restart), so caps and active
    /// revocations survive it.
    pub fn restore(
        &mut self,
        verdict: Verdict,
        key: String,
        client: Option<String>,
        at: Millis,
        expires_at: Option<Millis>,
        now: Millis,
    ) {
        let ledger = match verdict {
            Verdict::Revoke => &mut self.enforced,
            Verdict::DryRun => &mut self.simulated,
            _ => return,
        };
        if expires_at.is_some_and(|e| e <= now) && at <= now - HOUR {
            return;
        }
        let client = client.as_deref().map(client_key).filter(|c| !c.is_empty());
        ledger.record(at, client, key, expires_at);
        ledger.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T0: Millis = 1_800_000_000_000;

    fn cfg() -> RevocationConfig {
        let mut c = RevocationConfig::new("/dev/null");
        c.dry_run = false;
        c.never_revoke_clients = vec!["healthcheck".into()];
        c.never_revoke_tokens = vec!["00000000000000aa".into()];
        c.max_per_hour = 3;
        c.max_per_client_per_hour = 2;
        c.quarantine = Duration::from_secs(600);
        c.permanent_at = Some(Severity::Critical);
        c
    }

    fn req(fp: u8, client: &str) -> RevocationRequest {
        RevocationRequest {
            fingerprint: Some(Fingerprint([0, 0, 0, 0, 0, 0, 0, fp])),
            credential_id: None,
            client_id: Some(client.into()),
            client_id_source: ClientIdSource::Gateway,
            address: None,
            ban_client: false,
            alert_id: format!("a{fp}"),
            reason: "r".into(),
            severity: Severity::High,
            source: "alert",
            force_dry_run: false,
        }
    }

    fn ban(addr: &str) -> RevocationRequest {
        RevocationRequest {
            fingerprint: None,
            client_id: None,
            client_id_source: ClientIdSource::Claimed,
            address: Some(addr.into()),
            severity: Severity::Critical,
            ..req(0, "c")
        }
    }

    #[test]
    fn a_ban_passes_the_same_checks_and_always_ends() {
        let mut c = cfg();
        c.never_ban = vec!["10.0.0.0/8".parse().unwrap()];
        c.ban_for = Duration::from_secs(120);
        let mut p = Policy::new(&c);
        // No client needed; not permanent even at `permanent_at`; its own duration.
        let d = p.decide(&ban("203.0.113.7"), T0);
        assert_eq!(
            (d.verdict, d.key.as_deref(), d.expires_at),
            (Verdict::Revoke, Some("ip:203.0.113.7"), Some(T0 + 120_000))
        );
        assert_eq!(p.decide(&ban("203.0.113.7"), T0 + 1).verdict, Verdict::AlreadyRevoked);
        assert_eq!(p.decide(&ban("10.1.2.3"), T0).verdict, Verdict::AllowListed);
        assert_eq!(p.decide(&ban("not-an-address"), T0).verdict, Verdict::NoCredential);
        // The global cap (3 an hour) counts bans and revocations together.
        assert_eq!(p.decide(&ban("203.0.113.8"), T0).verdict, Verdict::Revoke);
        assert_eq!(p.decide(&req(5, "c"), T0).verdict, Verdict::Revoke);
        assert_eq!(p.decide(&ban("203.0.113.9"), T0).verdict, Verdict::GlobalCap);
    }

    #[test]
    fn a_client_is_banned_only_when_the_gateway_verified_it() {
        let mut p = Policy::new(&cfg());
        let client = |name: &str, source| RevocationRequest {
            fingerprint: None,
            client_id: Some(name.into()),
            client_id_source: source,
            ban_client: true,
            ..req(0, "c")
        };
        let d = p.decide(&client("Shop-Web", ClientIdSource::Claimed), T0);
        assert_eq!(d.verdict, Verdict::NoClient, "a forged token could name any client");
        let d = p.decide(&client("Shop-Web", ClientIdSource::Gateway), T0);
        assert_eq!((d.verdict, d.key.as_deref()), (Verdict::Revoke, Some("client:shop-web")));
        assert!(d.expires_at.is_some(), "a ban always ends");
        assert_eq!(p.decide(&client("HealthCheck", ClientIdSource::Gateway), T0).verdict, Verdict::AllowListed);
    }

    #[test]
    fn dry_run_is_the_default() {
        let mut p = Policy::new(&RevocationConfig::new("/dev/null"));
        let d = p.decide(&req(1, "c"), T0);
        assert_eq!((d.verdict, d.dry_run), (Verdict::DryRun, true));
    }

    #[test]
    fn allow_lists_win() {
        let mut p = Policy::new(&cfg());
        assert_eq!(p.decide(&req(1, "healthcheck"), T0).verdict, Verdict::AllowListed);
        assert_eq!(p.decide(&req(0xaa, "c"), T0).verdict, Verdict::AllowListed);
    }

    #[test]
    fn caps_per_client_and_global_over_a_sliding_hour() {
        let mut p = Policy::new(&cfg());
        assert_eq!(p.decide(&req(1, "a"), T0).verdict, Verdict::Revoke);
        assert_eq!(p.decide(&req(2, "a"), T0 + 1).verdict, Verdict::Revoke);
        assert_eq!(p.decide(&req(3, "a"), T0 + 2).verdict, Verdict::ClientCap);
        assert_eq!(p.decide(&req(4, "b"), T0 + 3).verdict, Verdict::Revoke);
        assert_eq!(p.decide(&req(5, "c"), T0 + 4).verdict, Verdict::GlobalCap);
        // An hour after the first, one slot frees up.
        assert_eq!(p.decide(&req(5, "c"), T0 + HOUR).verdict, Verdict::Revoke);
        assert_eq!(p.decide(&req(6, "d"), T0 + HOUR).verdict, Verdict::GlobalCap);
    }

    #[test]
    fn quarantine_expires_and_critical_is_permanent() {
        let mut p = Policy::new(&cfg());
        let d = p.decide(&req(1, "a"), T0);
        assert_eq!(d.expires_at, Some(T0 + 600_000));
        assert_eq!(p.decide(&req(1, "a"), T0 + 1000).verdict, Verdict::AlreadyRevoked);
        // After the quarantine the same token can be revoked again.
        assert_eq!(p.decide(&req(1, "a"), T0 + 600_001).verdict, Verdict::Revoke);
        let mut r = req(9, "z");
        r.severity = Severity::Critical;
        let d = p.decide(&r, T0 + 700_000);
        assert!(d.permanent && d.expires_at.is_none());
        assert_eq!(p.decide(&r, T0 + 100 * HOUR).verdict, Verdict::AlreadyRevoked);
    }

    #[test]
    fn forced_dry_run_uses_its_own_ledger() {
        let mut p = Policy::new(&cfg());
        for i in 0..5 {
            let mut r = req(i, &format!("c{i}"));
            r.force_dry_run = true;
            let d = p.decide(&r, T0);
            assert_eq!(d.verdict, if i < 3 { Verdict::DryRun } else { Verdict::GlobalCap });
        }
        // The enforced budget is untouched.
        assert_eq!(p.decide(&req(7, "x"), T0).verdict, Verdict::Revoke);
    }

    #[test]
    fn no_credential_is_refused() {
        let mut p = Policy::new(&cfg());
        let mut r = req(1, "a");
        r.fingerprint = None;
        assert_eq!(p.decide(&r, T0).verdict, Verdict::NoCredential);
        r.credential_id = Some("jti-1".into());
        let d = p.decide(&r, T0);
        assert_eq!((d.verdict, d.key.as_deref()), (Verdict::Revoke, Some("cred:jti-1")));
    }

    /// Issue 12 item 7b: `never_revoke_clients = ["healthcheck"]` did not stop `healthcheck `
    /// or `HealthCheck`.
    #[test]
    fn allow_listed_clients_match_trimmed_and_ascii_case_insensitively() {
        let mut c = cfg();
        c.never_revoke_clients = vec![" HealthCheck ".into(), "billing-batch".into()];
        let mut p = Policy::new(&c);
        for client in ["healthcheck", "healthcheck ", "HealthCheck", "\tHEALTHCHECK\n", " Billing-Batch"] {
            assert_eq!(p.decide(&req(1, client), T0).verdict, Verdict::AllowListed, "{client:?}");
        }
        // ASCII only: a look-alike with a non-ASCII letter (Kelvin sign for `k`) is another client.
        assert_eq!(p.decide(&req(2, "healthchec\u{212A}"), T0).verdict, Verdict::Revoke);
    }

    /// The per-client cap counts a client under the same rule, so case and spaces do not
    /// buy extra revocations.
    #[test]
    fn the_client_cap_counts_trimmed_and_ascii_case_insensitively() {
        let mut p = Policy::new(&cfg());
        assert_eq!(p.decide(&req(1, "App-A"), T0).verdict, Verdict::Revoke);
        assert_eq!(p.decide(&req(2, "app-a "), T0 + 1).verdict, Verdict::Revoke);
        assert_eq!(p.decide(&req(3, "APP-A"), T0 + 2).verdict, Verdict::ClientCap);
    }

    /// Issue 12 item 7c: an alert with a fingerprint and no client was revoked (fail-open).
    #[test]
    fn a_token_without_a_client_is_not_revoked() {
        let mut p = Policy::new(&cfg());
        for client in [None, Some(""), Some("  ")] {
            let mut r = req(1, "x");
            r.client_id = client.map(str::to_string);
            let d = p.decide(&r, T0);
            assert_eq!(d.verdict, Verdict::NoClient, "{client:?}: {d:?}");
        }
        // Only where the config says so explicitly.
        let mut c = cfg();
        c.revoke_without_client = true;
        let mut p = Policy::new(&c);
        let mut r = req(1, "x");
        r.client_id = None;
        assert_eq!(p.decide(&r, T0).verdict, Verdict::Revoke);
        assert!(!RevocationConfig::new("/dev/null").revoke_without_client, "off by default");
    }

    #[test]
    fn saved_state_loads_back_to_the_same_decisions() {
        let mut p = Policy::new(&cfg());
        assert_eq!(p.decide(&req(1, "a"), T0).verdict, Verdict::Revoke);
        assert_eq!(p.decide(&req(2, "a"), T0 + 1).verdict, Verdict::Revoke);
        let mut r = req(3, "b");
        r.force_dry_run = true;
        assert_eq!(p.decide(&r, T0 + 2).verdict, Verdict::DryRun);
        let saved = p.state();
        let mut q = Policy::new(&cfg());
        q.load(&saved, T0 + 10);
        assert_eq!(q.state(), saved);
        assert_eq!(q.decide(&req(1, "x"), T0 + 10).verdict, Verdict::AlreadyRevoked);
        assert_eq!(q.decide(&req(4, "a"), T0 + 11).verdict, Verdict::ClientCap);
        assert_eq!(q.decide(&r, T0 + 12).verdict, Verdict::AlreadyRevoked, "the dry-run ledger too");
        // Loaded later, the quarantines are over and the hour has passed.
        let mut q = Policy::new(&cfg());
        q.load(&saved, T0 + HOUR + 600_000);
        assert_eq!(q.state(), PolicyState::default());
    }

    #[test]
    fn restore_keeps_caps_and_active_revocations() {
        let mut p = Policy::new(&cfg());
        p.restore(Verdict::Revoke, "0000000000000001".into(), Some("a".into()), T0 - 1000, Some(T0 + 10_000), T0);
        p.restore(Verdict::Revoke, "0000000000000002".into(), Some("a".into()), T0 - 2000, Some(T0 + 10_000), T0);
        assert_eq!(p.decide(&req(1, "b"), T0).verdict, Verdict::AlreadyRevoked);
        assert_eq!(p.decide(&req(3, "a"), T0).verdict, Verdict::ClientCap);
    }
}

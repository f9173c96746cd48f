//! Automatic token revocation, safe to turn on.
//!
//! The decision ([`policy`]) is pure: allow-lists, caps, dry-run, quarantine or permanent.
//! This module is the shell around it: it audits every decision before acting
//! ([`audit`]), publishes enforced revocations on the deny-list ([`denylist`]) and calls
//! the configured targets ([`targets`]) with retries. If the audit record cannot be
//! written, nothing is revoked and nothing is remembered: the verdict is `audit_failed`,
//! no cap is used, the token is not taken for revoked, the deny-list is unchanged.
//!
//! What a restart needs (caps, active revocations, the deny-list) is kept in a snapshot
//! beside the audit log ([`state`]), written after each decision that changes it; a start
//! loads it and the audit lines that follow it. Refusals are audited and counted by
//! verdict, never part of that state.

pub mod audit;
pub mod denylist;
pub mod policy;
pub mod state;
pub mod targets;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use serde_json::json;

pub use audit::AuditLog;
pub use denylist::{DenyEntry, DenyList, DenySnapshot};
pub use policy::{Decision, Policy, RevocationRequest, Verdict};
pub use targets::{HttpTarget, KongTarget, OAuthTarget, RevocationTarget, TargetOutcome, TykTarget};

use crate::actions::config::RevocationConfig;
use crate::actions::lifecycle::backoff;
use crate::actions::sink::SinkError;
use crate::event::{format_ts, Alert, ClientIdSource, Millis};

/// What handling one request did.
#[derive(Clone, Debug, PartialEq)]
pub struct HandleOutcome {
    pub decision: Decision,
    /// Targets that failed after their retries.
    pub target_failures: u32,
    /// `false` when the audit record could not be written (and so nothing was done).
    pub audited: bool,
}

/// What a start restored, and from where.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// A state snapshot was found and loaded.
    pub snapshot: bool,
    /// Audit records read after it (all of them without a snapshot).
    pub audit_records: usize,
    /// Of those, decisions replayed into the state.
    pub decisions: usize,
}

/// After refusals, the snapshot is written again once this many audit bytes follow it, so
/// a start never reads back more than about this much of the log.
const MAX_AUDIT_TAIL: u64 = 64 * 1024;

/// The policy, and the bookkeeping that must change with it under one lock.
struct Core {
    policy: Policy,
    /// Sequence number of the last decision audited.
    seq: u64,
    /// The audit log's length when the snapshot was last written.
    saved_at: u64,
}

pub struct Revoker {
    cfg: RevocationConfig,
    core: Mutex<Core>,
    audit: AuditLog,
    state_path: PathBuf,
    deny: Arc<DenyList>,
    targets: Vec<Arc<dyn RevocationTarget>>,
    verdicts: Mutex<BTreeMap<Verdict, u64>>,
    state_write_failures: AtomicU64,
    restored: Restored,
}

impl Revoker {
    /// Opens the audit log, loads the state snapshot and the audit lines that follow it (caps,
    /// active revocations, the deny-list survive a restart and a rotation of the log) and
    /// builds the configured targets. `now` is wall time in milliseconds.
    pub fn open(cfg: &RevocationConfig, now: Millis) -> Result<Self, String> {
        Self::open_with(cfg, Vec::new(), now)
    }

    /// Like [`Revoker::open`], plus targets built elsewhere (the Kafka revocations topic).
    pub fn open_with(
        cfg: &RevocationConfig,
        extra: Vec<Arc<dyn RevocationTarget>>,
        now: Millis,
    ) -> Result<Self, String> {
        let client = crate::actions::dispatcher::http_client()?;
        let mut targets: Vec<Arc<dyn RevocationTarget>> = extra;
        if let Some(o) = &cfg.oauth {
            targets.push(Arc::new(OAuthTarget::new(o.clone(), client.clone())));
        }
        if let Some(h) = &cfg.http {
            targets.push(Arc::new(HttpTarget::new(h.clone(), client.clone())));
        }
        if let Some(k) = &cfg.kong {
            targets.push(Arc::new(KongTarget::new(k.clone(), client.clone())));
        }
        if let Some(t) = &cfg.tyk {
            targets.push(Arc::new(TykTarget::new(t.clone(), client)));
        }
        Self::with_targets(cfg, targets, now)
    }

    /// Like [`Revoker::open`] with the targets given.
    pub fn with_targets(
        cfg: &RevocationConfig,
        targets: Vec<Arc<dyn RevocationTarget>>,
        now: Millis,
    ) -> Result<Self, String> {
        let state_path = state::path_for(&cfg.audit_log);
        let snap = state::load(&state_path).map_err(|e| {
            format!(
                "cannot read revocation state {}: {e} (move it away to start again from the audit log alone)",
                state_path.display()
            )
        })?;
        let mut policy = Policy::new(cfg);
        let deny = Arc::new(DenyList::new());
        let mut restored = Restored { snapshot: snap.is_some(), ..Restored::default() };
        let mut seq = 0;
        if let Some(s) = &snap {
            policy.load(&s.policy, now);
            for e in &s.deny {
                if e.expires_at.is_none_or(|x| x > now) {
                    deny.insert(e.clone().into());
                }
            }
            seq = s.seq;
        }
        let held = seq;
        let (records, bad) = AuditLog::read_after(&cfg.audit_log, snap.as_ref().map(|s| s.audit), |r| {
            if r["event"] != "decision" {
                return;
            }
            // A line without `seq` predates the snapshot; with no snapshot, every line counts.
            let newer = match r["seq"].as_u64() {
                Some(n) => n > held,
                None => snap.is_none(),
            };
            if newer {
                seq = seq.max(r["seq"].as_u64().unwrap_or(0));
                restored.decisions += restore_one(&r, &mut policy, &deny, now) as usize;
            }
        })
        .map_err(|e| format!("cannot read audit log {}: {e}", cfg.audit_log.display()))?;
        restored.audit_records = records;
        if bad > 0 {
            tracing::warn!(path = %cfg.audit_log.display(), lines = bad, "unreadable lines in the revocation audit log");
        }
        let audit = AuditLog::open(&cfg.audit_log)
            .map_err(|e| format!("cannot open audit log {}: {e}", cfg.audit_log.display()))?;
        let rev = Revoker {
            cfg: cfg.clone(),
            core: Mutex::new(Core { policy, seq, saved_at: 0 }),
            audit,
            state_path,
            deny,
            targets,
            verdicts: Mutex::new(BTreeMap::new()),
            state_write_failures: AtomicU64::new(0),
            restored,
        };
        // From now on the snapshot holds what was restored: the log may be rotated at once.
        {
            let mut core = rev.core.lock().map_err(|_| "revocation state lock poisoned".to_string())?;
            rev.save(&mut core, now)
                .map_err(|e| format!("cannot write revocation state {}: {e}", rev.state_path.display()))?;
        }
        Ok(rev)
    }

    /// What the start restored.
    pub fn restored(&self) -> Restored {
        self.restored
    }

    /// State snapshots that could not be written (each decision stays in the audit log, read
    /// back at start as long as the log is not rotated before the next snapshot succeeds).
    pub fn state_write_failures(&self) -> u64 {
        self.state_write_failures.load(Ordering::Relaxed)
    }

    /// Writes the state snapshot: the ledgers, the active deny-list, the last sequence number
    /// and where the audit log stands.
    fn save(&self, core: &mut Core, now: Millis) -> std::io::Result<()> {
        let mark = self.audit.mark();
        let snap = state::Snapshot {
            version: state::VERSION,
            seq: core.seq,
            audit: mark,
            written_at: now,
            policy: core.policy.state(),
            deny: self.deny.active(now).iter().map(state::SavedEntry::from).collect(),
        };
        state::write(&self.state_path, &snap)?;
        core.saved_at = mark.offset;
        Ok(())
    }

    pub fn deny_list(&self) -> Arc<DenyList> {
        self.deny.clone()
    }

    pub fn config(&self) -> &RevocationConfig {
        &self.cfg
    }

    /// Decisions so far, by verdict (a bounded set: safe as a metric label).
    pub fn stats(&self) -> BTreeMap<Verdict, u64> {
        self.verdicts.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub async fn handle_alert(&self, alert: &Alert, force_dry_run: bool, now: Millis) -> HandleOutcome {
        self.handle(RevocationRequest::from_alert(alert, force_dry_run), now).await
    }

    fn count(&self, verdict: Verdict) {
        if let Ok(mut v) = self.verdicts.lock() {
            *v.entry(verdict).or_insert(0) += 1;
        }
    }

    /// Decides, audits, and (when enforcing) publishes and calls the targets.
    pub async fn handle(&self, req: RevocationRequest, now: Millis) -> HandleOutcome {
        let (decision, entry) = match self.decide_durably(&req, now) {
            Ok(d) => d,
            Err(failed) => return failed,
        };
        // A ban is enforced at the gateway (forward-auth, the CrowdSec stream), not by the
        // token targets.
        let Some(entry) = entry.filter(|e| !e.is_ban()) else {
            return HandleOutcome { decision, target_failures: 0, audited: true };
        };
        let mut failures = 0;
        for t in &self.targets {
            let (result, attempts) = self.call_target(t.as_ref(), &entry).await;
            let (res, detail) = match &result {
                Ok(TargetOutcome::Done) => ("ok", String::new()),
                Ok(TargetOutcome::Skipped(why)) => ("skipped", why.clone()),
                Err(e) => {
                    failures += 1;
                    ("failed", e.message.clone())
                }
            };
            let rec = json!({
                "ts": format_ts(chrono::Utc::now().timestamp_millis()),
                "event": "target",
                "target": t.name(),
                "alert_id": req.alert_id,
                "key": decision.key,
                "result": res,
                "attempts": attempts,
                "detail": detail,
            });
            if let Err(e) = self.audit.append(&rec) {
                tracing::error!(alert = %req.alert_id, error = %e, "revocation audit log write failed");
            }
            if res == "failed" {
                tracing::warn!(alert = %req.alert_id, target = t.name(), %detail, "revocation target failed");
            }
        }
        HandleOutcome { decision, target_failures: failures, audited: true }
    }

    /// The decision, made to count (ledger, caps, deny-list, verdict counter) only once its
    /// audit record is on disk. The policy stays locked from deciding to recording, so two
    /// decisions never take the same cap slot. An enforced revocation comes back with its
    /// deny-list entry, for the targets.
    fn decide_durably(
        &self,
        req: &RevocationRequest,
        now: Millis,
    ) -> Result<(Decision, Option<DenyEntry>), HandleOutcome> {
        let Ok(mut core) = self.core.lock() else {
            return Err(HandleOutcome {
                decision: Decision {
                    verdict: Verdict::GlobalCap,
                    dry_run: true,
                    key: req.key(),
                    expires_at: None,
                    permanent: false,
                    detail: "policy unavailable".into(),
                },
                target_failures: 0,
                audited: false,
            });
        };
        let decision = core.policy.evaluate(req, now);
        let seq = core.seq + 1;
        let rec = json!({
            "ts": format_ts(now),
            "at": now,
            "event": "decision",
            "seq": seq,
            "verdict": decision.verdict.as_str(),
            "mode": if decision.dry_run { "dry-run" } else { "enforce" },
            "source": req.source,
            "alert_id": req.alert_id,
            "key": decision.key,
            "fingerprint": req.fingerprint.map(|f| f.to_hex()),
            "credential_id": req.credential_id,
            "address": req.address,
            "client_id": req.client_id,
            "client_id_source": req.client_id_source.as_str(),
            "severity": req.severity.as_str(),
            "reason": req.reason,
            "permanent": decision.permanent,
            "expires_at": decision.expires_at,
            "detail": decision.detail,
        });
        if let Err(e) = self.audit.append(&rec) {
            drop(core);
            tracing::error!(
                alert = %req.alert_id,
                verdict = decision.verdict.as_str(),
                error = %e,
                "revocation audit log write failed; nothing done"
            );
            self.count(Verdict::AuditFailed);
            let failed = Decision {
                verdict: Verdict::AuditFailed,
                dry_run: decision.dry_run,
                key: decision.key,
                expires_at: None,
                permanent: false,
                detail: format!(
                    "the audit log could not be written ({e}): nothing done instead of {}",
                    decision.verdict.as_str()
                ),
            };
            return Err(HandleOutcome { decision: failed, target_failures: 0, audited: false });
        }
        core.seq = seq;
        core.policy.record(req, &decision, now);
        tracing::info!(
            alert = %req.alert_id,
            verdict = decision.verdict.as_str(),
            client = req.client_id.as_deref().unwrap_or("-"),
            "revocation decision"
        );
        let entry = (decision.verdict == Verdict::Revoke).then(|| {
            let verified = req.client_id_source.is_verified();
            DenyEntry {
                fingerprint: req.fingerprint.map(|f| f.to_hex()),
                credential_id: req.credential_id.clone(),
                address: req.address.clone(),
                client_id: req.client_id.clone().filter(|_| verified),
                claimed_client_id: req.client_id.clone().filter(|_| !verified),
                reason: req.reason.clone(),
                alert_id: req.alert_id.clone(),
                revoked_at: now,
                expires_at: decision.expires_at,
            }
        });
        if let Some(e) = &entry {
            self.deny.insert(e.clone());
        }
        // A revocation (or a dry-run one) changed the state: save it now. A refusal did not;
        // the snapshot only moves past refusals once enough of them follow it.
        let changed = matches!(decision.verdict, Verdict::Revoke | Verdict::DryRun);
        if changed || self.audit.mark().offset.saturating_sub(core.saved_at) > MAX_AUDIT_TAIL {
            if let Err(e) = self.save(&mut core, now) {
                self.state_write_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    path = %self.state_path.display(),
                    error = %e,
                    "revocation state snapshot write failed; the audit log still holds the decision"
                );
            }
        }
        drop(core);
        self.count(decision.verdict);
        Ok((decision, entry))
    }

    async fn call_target(&self, t: &dyn RevocationTarget, e: &DenyEntry) -> (Result<TargetOutcome, SinkError>, u32) {
        let mut rng = rand::rngs::SmallRng::from_entropy();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = match tokio::time::timeout(self.cfg.timeout, t.revoke(e)).await {
                Ok(r) => r,
                Err(_) => Err(SinkError::retryable(format!("timed out after {:?}", self.cfg.timeout))),
            };
            match r {
                Err(err) if err.retryable && attempt < self.cfg.max_attempts => {
                    let max = std::time::Duration::from_secs(30);
                    let w = backoff(self.cfg.initial_backoff, max, attempt, rng.gen::<f64>())
                        .max(err.retry_after.unwrap_or_default().min(max));
                    tokio::time::sleep(w).await;
                }
                other => return (other, attempt),
            }
        }
    }
}

/// Replays one decision line into the state; `true` when it was one that changes it.
fn restore_one(r: &serde_json::Value, policy: &mut Policy, deny: &DenyList, now: Millis) -> bool {
    if r["event"] != "decision" {
        return false;
    }
    let Some(verdict) = r["verdict"].as_str().and_then(Verdict::parse) else { return false };
    if !matches!(verdict, Verdict::Revoke | Verdict::DryRun) {
        return false;
    }
    let (Some(key), Some(at)) = (r["key"].as_str(), r["at"].as_i64()) else { return false };
    let expires_at = r["expires_at"].as_i64();
    let client = r["client_id"].as_str().map(str::to_string);
    // A line from before provenance was recorded counts as a claim.
    let verified = r["client_id_source"].as_str().and_then(ClientIdSource::parse).is_some_and(|s| s.is_verified());
    policy.restore(verdict, key.to_string(), client.clone(), at, expires_at, now);
    if verdict == Verdict::Revoke && expires_at.is_none_or(|e| e > now) {
        deny.insert(DenyEntry {
            fingerprint: r["fingerprint"].as_str().map(str::to_string),
            credential_id: r["credential_id"].as_str().map(str::to_string),
            address: r["address"].as_str().map(str::to_string),
            client_id: client.clone().filter(|_| verified),
            claimed_client_id: client.filter(|_| !verified),
            reason: r["reason"].as_str().unwrap_or_default().to_string(),
            alert_id: r["alert_id"].as_str().unwrap_or_default().to_string(),
            revoked_at: at,
            expires_at,
        });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Fingerprint, Severity};

    const T0: Millis = 1_800_000_000_000;

    fn enforcing(dir: &std::path::Path) -> RevocationConfig {
        let mut c = RevocationConfig::new(dir.join("audit.jsonl"));
        c.dry_run = false;
        c.max_per_hour = 10;
        c.max_per_client_per_hour = 2;
        c
    }

    fn req(n: u8, client: &str) -> RevocationRequest {
        RevocationRequest {
            fingerprint: Some(Fingerprint([0x7a, 0, 0, 0, 0, 0, 0, n])),
            credential_id: None,
            client_id: Some(client.into()),
            client_id_source: ClientIdSource::Gateway,
            address: None,
            ban_client: false,
            alert_id: format!("alert-{n}"),
            reason: "r".into(),
            severity: Severity::High,
            source: "alert",
            force_dry_run: false,
        }
    }

    /// Issue 12 item 7a: with the audit log on a full disk the answer was `revoke` while
    /// nothing reached the deny-list, and the ledger kept it (`already_revoked` later, caps
    /// consumed). `/dev/full` fails every write with ENOSPC.
    #[tokio::test]
    async fn a_revocation_the_audit_log_cannot_record_is_a_failed_one() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = enforcing(dir.path());
        let mut rev = Revoker::with_targets(&cfg, vec![], T0).unwrap();
        rev.audit = AuditLog::open(std::path::Path::new("/dev/full")).unwrap();
        for n in 1..=3 {
            let out = rev.handle(req(n, "app-a"), T0 + n as i64).await;
            assert!(!out.audited);
            assert_eq!(out.decision.verdict, Verdict::AuditFailed, "{:?}", out.decision);
            assert!(out.decision.detail.contains("nothing done instead of revoke"), "{}", out.decision.detail);
        }
        assert_eq!(rev.deny_list().snapshot(T0).len, 0, "nothing unaudited on the deny-list");
        assert_eq!(rev.stats().get(&Verdict::Revoke), None, "no revocation counted");
        assert_eq!(rev.stats().get(&Verdict::AuditFailed), Some(&3), "counted, as a metric label");

        // The disk has room again: the same tokens are revoked (not `already_revoked`), and
        // the client's cap of 2 is whole.
        rev.audit = AuditLog::open(&cfg.audit_log).unwrap();
        assert_eq!(rev.handle(req(1, "app-a"), T0 + 10).await.decision.verdict, Verdict::Revoke);
        assert_eq!(rev.handle(req(2, "app-a"), T0 + 11).await.decision.verdict, Verdict::Revoke);
        assert_eq!(rev.handle(req(3, "app-a"), T0 + 12).await.decision.verdict, Verdict::ClientCap);
        assert_eq!(rev.deny_list().snapshot(T0).len, 2);
    }
}

//! Kong Admin API: delete the credential Kong authenticated, so Kong itself refuses it.
//!
//! `DELETE {admin_url}[/{workspace}]/consumers/{consumer}/{plugin}/{credential}`, with
//! `Kong-Admin-Token` when `token_env` is set (Kong Enterprise RBAC):
//! - `consumer` is the revocation's *verified* client, which the Kong normalizer takes from the
//!   logged `consumer.id`. A client a token only claims is never used, and neither is
//!   gatewatch's own `key:<fingerprint>` name for an API key (no Kong consumer is called that).
//! - `credential` is the revocation's credential id: Kong's `authenticated_entity.id`.
//!
//! Without either, the call is skipped and the reason audited: gatewatch never guesses a
//! consumer or a credential. Every value goes into the path percent-encoded ([`path_encode`]).
//!
//! Answers: 2xx (Kong sends 204) is done. 404 is done too: the credential is already gone.
//! Kong answers 404 as well for an unknown consumer, plugin collection or workspace, so a
//! wrong `plugin` or `workspace` also reads `ok`; check the first revocations against Kong.
//! 401 and 403 fail at once with a message that names `token_env`, never the token. Other
//! statuses are classified as for every target: 408, 429 and 5xx are retried.

use super::{path_encode, RevocationTarget, TargetFuture, TargetOutcome};
use crate::actions::config::KongTargetConfig;
use crate::actions::revocation::denylist::DenyEntry;
use crate::actions::sink::{retry_after, SinkError};
use crate::event::Fingerprint;

/// The header Kong Enterprise reads the RBAC token from.
pub const ADMIN_TOKEN_HEADER: &str = "Kong-Admin-Token";

pub struct KongTarget {
    cfg: KongTargetConfig,
    client: reqwest::Client,
}

impl KongTarget {
    pub fn new(cfg: KongTargetConfig, client: reqwest::Client) -> Self {
        KongTarget { cfg, client }
    }

    /// The credential's Admin API URL, or why there is none to call. The reason names what
    /// is missing or unusable, never a value.
    pub fn resolve_url(&self, e: &DenyEntry) -> Result<String, String> {
        if e.address.is_some() {
            return Err("an address ban: Kong credentials belong to consumers, not addresses".into());
        }
        let Some(consumer) = e.client_id.as_deref() else {
            return Err(if e.claimed_client_id.is_some() {
                "the client is only what the token claims (unverified): never used as the Kong consumer".into()
            } else {
                "no verified client: the Kong consumer is unknown".into()
            });
        };
        if consumer.strip_prefix("key:").and_then(Fingerprint::from_hex).is_some() {
            return Err(
                "the client is gatewatch's name for an API key (`key:<fingerprint>`), not a Kong consumer".into()
            );
        }
        let Some(credential) = e.credential_id.as_deref() else {
            return Err("no credential id: Kong's authenticated_entity.id is unknown for this token".into());
        };
        let mut url = self.cfg.admin_url.trim_end_matches('/').to_string();
        if let Some(w) = &self.cfg.workspace {
            let w = path_encode(w).ok_or("the workspace is empty, `.` or `..`: not a path segment")?;
            url = format!("{url}/{w}");
        }
        let consumer = path_encode(consumer).ok_or("the consumer id is empty, `.` or `..`: not a path segment")?;
        let credential =
            path_encode(credential).ok_or("the credential id is empty, `.` or `..`: not a path segment")?;
        Ok(format!("{url}/consumers/{consumer}/{}/{credential}", self.cfg.plugin.as_str()))
    }

    /// What an answer means. The message never holds the token (it is not in scope here).
    fn outcome(
        &self,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
    ) -> Result<TargetOutcome, SinkError> {
        match status.as_u16() {
            _ if status.is_success() => Ok(TargetOutcome::Done),
            // Already deleted (or never there): nothing left to revoke.
            404 => Ok(TargetOutcome::Done),
            401 | 403 => Err(SinkError::permanent(match self.cfg.token {
                Some(_) => format!(
                    "HTTP {}: Kong refused the Admin API token: check the token in token_env and its RBAC \
                     role (it must be allowed to delete consumer credentials{})",
                    status.as_u16(),
                    if self.cfg.workspace.is_some() { " in the workspace" } else { "" }
                ),
                None => format!(
                    "HTTP {}: the Kong Admin API wants a token: set token_env (Kong-Admin-Token)",
                    status.as_u16()
                ),
            })),
            _ => Err(SinkError::from_status(status, retry_after(headers))),
        }
    }
}

impl RevocationTarget for KongTarget {
    fn name(&self) -> &'static str {
        "kong"
    }

    fn revoke<'a>(&'a self, e: &'a DenyEntry) -> TargetFuture<'a> {
        Box::pin(async move {
            let url = match self.resolve_url(e) {
                Ok(u) => u,
                Err(why) => return Ok(TargetOutcome::Skipped(why)),
            };
            let mut req = self.client.delete(url);
            if let Some(t) = &self.cfg.token {
                req = req.header(ADMIN_TOKEN_HEADER, t.expose());
            }
            let resp = req.send().await.map_err(SinkError::from_reqwest)?;
            self.outcome(resp.status(), resp.headers())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::config::KongPlugin;
    use crate::actions::secret::Secret;

    fn target(workspace: Option<&str>, plugin: KongPlugin) -> KongTarget {
        KongTarget::new(
            KongTargetConfig {
                admin_url: "http://kong:8001".into(),
                token: Some(Secret::new("kong-rbac-token")),
                plugin,
                workspace: workspace.map(Into::into),
            },
            reqwest::Client::new(),
        )
    }

    fn entry(client: Option<&str>, cred: Option<&str>) -> DenyEntry {
        DenyEntry {
            fingerprint: Some("00000000000000a1".into()),
            credential_id: cred.map(Into::into),
            address: None,
            client_id: client.map(Into::into),
            claimed_client_id: None,
            reason: "r".into(),
            alert_id: "a".into(),
            revoked_at: 0,
            expires_at: None,
        }
    }

    #[test]
    fn url_names_workspace_consumer_plugin_and_credential_encoded() {
        let t = target(None, KongPlugin::KeyAuth);
        assert_eq!(
            t.resolve_url(&entry(Some("c-1"), Some("cred-9"))).unwrap(),
            "http://kong:8001/consumers/c-1/key-auth/cred-9"
        );
        let t = target(Some("team a"), KongPlugin::HmacAuth);
        assert_eq!(
            t.resolve_url(&entry(Some("ops/../admin"), Some("x?y#z"))).unwrap(),
            "http://kong:8001/team%20a/consumers/ops%2F%2E%2E%2Fadmin/hmac-auth/x%3Fy%23z"
        );
    }

    #[test]
    fn never_guesses_a_consumer_or_a_credential() {
        let t = target(None, KongPlugin::Jwt);
        let skip = |e: &DenyEntry| t.resolve_url(e).unwrap_err();
        assert!(skip(&entry(None, Some("cred"))).contains("no verified client"));
        let mut claimed = entry(None, Some("cred"));
        claimed.claimed_client_id = Some("c-1".into());
        assert!(skip(&claimed).contains("unverified"));
        assert!(skip(&entry(Some("c-1"), None)).contains("no credential id"));
        assert!(skip(&entry(Some("key:00000000000000a1"), Some("cred"))).contains("API key"));
        assert!(skip(&entry(Some(".."), Some("cred"))).contains("consumer id"));
        let mut ban = entry(Some("c-1"), Some("cred"));
        ban.address = Some("203.0.113.9".into());
        assert!(skip(&ban).contains("address ban"));
        // A consumer that merely starts with `key:` is still a consumer.
        assert!(t.resolve_url(&entry(Some("key:ring"), Some("cred"))).is_ok());
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let t = target(None, KongPlugin::Oauth2);
        let h = reqwest::header::HeaderMap::new();
        let s = |c: u16| t.outcome(reqwest::StatusCode::from_u16(c).unwrap(), &h);
        assert_eq!(s(204), Ok(TargetOutcome::Done));
        assert_eq!(s(404), Ok(TargetOutcome::Done));
        for c in [401, 403] {
            let e = s(c).unwrap_err();
            assert!(!e.retryable && e.message.contains("token_env"), "{e:?}");
            assert!(!e.message.contains("kong-rbac-token"));
        }
        assert!(s(503).unwrap_err().retryable);
        assert!(!s(400).unwrap_err().retryable);
    }
}

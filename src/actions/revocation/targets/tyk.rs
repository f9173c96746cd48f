//! Tyk Gateway API: delete the key, so Tyk itself refuses it.
//!
//! `DELETE {gateway_url}/tyk/keys/{credential}` with the gateway secret in
//! `x-tyk-authorization`, plus `?hashed=true` when `hashed` (the default): the credential id
//! is then taken for the key's hash, which is what Tyk logs with `hash_keys` on. With
//! `hashed = false` no `hashed` parameter is sent at all, because Tyk reads any value of it,
//! `false` included, as true.
//!
//! The key is the revocation's credential id; without one the call is skipped and the reason
//! audited. gatewatch never holds a raw key, so this acts only where the credential id *is*
//! the key's hash or id (an Alertmanager `credential_id` label, a bridge that sets it): the
//! Tyk normalizer fingerprints `api_key` and puts no key in the credential id.
//!
//! Answers: 2xx (Tyk sends 200) is done; 404 is done too (no such key: already gone). 401 and
//! 403 fail at once with a message that names `secret_env`, never the secret. Other statuses
//! are classified as for every target: 408, 429 and 5xx are retried.

use super::{path_encode, RevocationTarget, TargetFuture, TargetOutcome};
use crate::actions::config::TykTargetConfig;
use crate::actions::revocation::denylist::DenyEntry;
use crate::actions::sink::{retry_after, SinkError};

/// The header the Tyk Gateway API reads its secret from.
pub const SECRET_HEADER: &str = "x-tyk-authorization";

pub struct TykTarget {
    cfg: TykTargetConfig,
    client: reqwest::Client,
}

impl TykTarget {
    pub fn new(cfg: TykTargetConfig, client: reqwest::Client) -> Self {
        TykTarget { cfg, client }
    }

    /// The key's Gateway API URL, or why there is none to call. The reason names what is
    /// missing or unusable, never a value.
    pub fn resolve_url(&self, e: &DenyEntry) -> Result<String, String> {
        if e.address.is_some() {
            return Err("an address ban: Tyk keys are not per address".into());
        }
        let Some(key) = e.credential_id.as_deref() else {
            return Err(
                "no credential id: the Tyk key (or its hash) is unknown, and gatewatch never stores a raw key".into()
            );
        };
        let key = path_encode(key).ok_or("the credential id is empty, `.` or `..`: not a path segment")?;
        let base = self.cfg.gateway_url.trim_end_matches('/');
        Ok(if self.cfg.hashed {
            format!("{base}/tyk/keys/{key}?hashed=true")
        } else {
            format!("{base}/tyk/keys/{key}")
        })
    }

    /// What an answer means. The message never holds the secret (it is not in scope here).
    fn outcome(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap) -> Result<TargetOutcome, SinkError> {
        match status.as_u16() {
            _ if status.is_success() => Ok(TargetOutcome::Done),
            // No such key: already deleted, or expired.
            404 => Ok(TargetOutcome::Done),
            401 | 403 => Err(SinkError::permanent(format!(
                "HTTP {}: the Tyk gateway refused the API secret: check that secret_env holds the gateway's \
                 `secret` (tyk.conf)",
                status.as_u16()
            ))),
            _ => Err(SinkError::from_status(status, retry_after(headers))),
        }
    }
}

impl RevocationTarget for TykTarget {
    fn name(&self) -> &'static str {
        "tyk"
    }

    fn revoke<'a>(&'a self, e: &'a DenyEntry) -> TargetFuture<'a> {
        Box::pin(async move {
            let url = match self.resolve_url(e) {
                Ok(u) => u,
                Err(why) => return Ok(TargetOutcome::Skipped(why)),
            };
            let resp = self
                .client
                .delete(url)
                .header(SECRET_HEADER, self.cfg.secret.expose())
                .send()
                .await
                .map_err(SinkError::from_reqwest)?;
            Self::outcome(resp.status(), resp.headers())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::secret::Secret;

    fn target(hashed: bool) -> TykTarget {
        TykTarget::new(
            TykTargetConfig { gateway_url: "http://tyk:8080/".into(), secret: Secret::new("tyk-secret"), hashed },
            reqwest::Client::new(),
        )
    }

    fn entry(cred: Option<&str>) -> DenyEntry {
        DenyEntry {
            fingerprint: None,
            credential_id: cred.map(Into::into),
            address: None,
            client_id: None,
            claimed_client_id: None,
            reason: "r".into(),
            alert_id: "a".into(),
            revoked_at: 0,
            expires_at: None,
        }
    }

    #[test]
    fn url_carries_the_key_encoded_and_hashed_only_when_asked() {
        assert_eq!(
            target(true).resolve_url(&entry(Some("a1b2c3"))).unwrap(),
            "http://tyk:8080/tyk/keys/a1b2c3?hashed=true"
        );
        assert_eq!(
            target(false).resolve_url(&entry(Some("ey/J+k="))).unwrap(),
            "http://tyk:8080/tyk/keys/ey%2FJ%2Bk%3D"
        );
        assert!(target(true).resolve_url(&entry(None)).unwrap_err().contains("no credential id"));
        assert!(target(true).resolve_url(&entry(Some(".."))).is_err());
        let mut ban = entry(Some("k"));
        ban.address = Some("203.0.113.0/24".into());
        assert!(target(true).resolve_url(&ban).unwrap_err().contains("address ban"));
    }

    #[test]
    fn statuses_map_to_outcomes() {
        let h = reqwest::header::HeaderMap::new();
        let s = |c: u16| TykTarget::outcome(reqwest::StatusCode::from_u16(c).unwrap(), &h);
        assert_eq!(s(200), Ok(TargetOutcome::Done));
        assert_eq!(s(404), Ok(TargetOutcome::Done));
        for c in [401, 403] {
            let e = s(c).unwrap_err();
            assert!(!e.retryable && e.message.contains("secret_env"), "{e:?}");
        }
        assert!(s(502).unwrap_err().retryable);
    }
}

//! Where an enforced revocation is carried out, besides the deny-list.
//!
//! gatewatch never holds a raw token (invariant 1), so it can only send what it has:
//! - [`OAuthTarget`]: RFC 7009 `POST token=<credential id>` with client authentication.
//!   Works where the IdP accepts the handle the gateway logged (a reference-token handle, a
//!   `jti` the IdP indexes). Without a credential id the call is skipped and audited.
//! - [`HttpTarget`]: an HTTP call to an IdP admin API or a bridge, with the client id,
//!   fingerprint and credential id in the URL and the entry as a JSON body: revoke by
//!   client or session, or feed a gateway that keeps its own deny-list. `{client_id}` is
//!   only ever a verified client (the entry carries no other as `client_id`): a client a
//!   JWT merely claims is skipped, audited, never called.
//! - [`KongTarget`] ([`kong`]): deletes the consumer's credential through Kong's Admin API.
//! - [`TykTarget`] ([`tyk`]): deletes the key through the Tyk Gateway API.

pub mod kong;
pub mod tyk;

pub use kong::KongTarget;
pub use tyk::TykTarget;

use std::future::Future;
use std::pin::Pin;

use base64::Engine;

use super::denylist::DenyEntry;
use crate::actions::config::{ClientAuth, HttpTargetConfig, OAuthTargetConfig};
use crate::actions::secret::sign_body;
use crate::actions::sink::{retry_after, SinkError};

/// What a target did with one revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetOutcome {
    Done,
    /// Nothing the target could act on; the reason goes in the audit log.
    Skipped(String),
}

pub type TargetFuture<'a> = Pin<Box<dyn Future<Output = Result<TargetOutcome, SinkError>> + Send + 'a>>;

pub trait RevocationTarget: Send + Sync + 'static {
    /// `oauth`, `http`, `kong`, `tyk`: used in the audit log.
    fn name(&self) -> &'static str;
    fn revoke<'a>(&'a self, e: &'a DenyEntry) -> TargetFuture<'a>;
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 appendix B).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One URL path segment from a value gatewatch read in a log: every byte outside the
/// unreserved `ALPHA / DIGIT / "-" / "_" / "~"` is percent-encoded, `.` and `%` included.
/// A value that is empty, `.` or `..` is refused (`None`): encoded or not, URL parsers
/// (WHATWG, and so reqwest) read `%2E%2E` as `..` and would move the call up the path.
pub fn path_encode(s: &str) -> Option<String> {
    if matches!(s, "" | "." | "..") {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    Some(out)
}

pub struct OAuthTarget {
    cfg: OAuthTargetConfig,
    client: reqwest::Client,
}

impl OAuthTarget {
    pub fn new(cfg: OAuthTargetConfig, client: reqwest::Client) -> Self {
        OAuthTarget { cfg, client }
    }

    /// The form body and, for `client_secret_basic`, the Authorization header value.
    pub fn request_parts(&self, credential_id: &str) -> (String, Option<String>) {
        let mut form = format!("token={}", form_encode(credential_id));
        if let Some(h) = &self.cfg.token_type_hint {
            form += &format!("&token_type_hint={}", form_encode(h));
        }
        match self.cfg.auth {
            ClientAuth::Basic => {
                let raw =
                    format!("{}:{}", form_encode(&self.cfg.client_id), form_encode(self.cfg.client_secret.expose()));
                (form, Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))))
            }
            ClientAuth::Post => {
                form += &format!(
                    "&client_id={}&client_secret={}",
                    form_encode(&self.cfg.client_id),
                    form_encode(self.cfg.client_secret.expose())
                );
                (form, None)
            }
        }
    }
}

impl RevocationTarget for OAuthTarget {
    fn name(&self) -> &'static str {
        "oauth"
    }

    fn revoke<'a>(&'a self, e: &'a DenyEntry) -> TargetFuture<'a> {
        Box::pin(async move {
            let Some(cred) = &e.credential_id else {
                return Ok(TargetOutcome::Skipped(
                    "no credential id: RFC 7009 needs the token or a handle the IdP accepts, and gatewatch never stores the raw token".into(),
                ));
            };
            let (form, auth) = self.request_parts(cred);
            let mut req = self
                .client
                .post(&self.cfg.endpoint)
                .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form);
            if let Some(a) = auth {
                req = req.header(reqwest::header::AUTHORIZATION, a);
            }
            let resp = req.send().await.map_err(SinkError::from_reqwest)?;
            let status = resp.status();
            // RFC 7009 §2.2: 200 also for a token that was already invalid.
            if status.is_success() {
                Ok(TargetOutcome::Done)
            } else {
                Err(SinkError::from_status(status, retry_after(resp.headers())))
            }
        })
    }
}

pub struct HttpTarget {
    cfg: HttpTargetConfig,
    client: reqwest::Client,
}

impl HttpTarget {
    pub fn new(cfg: HttpTargetConfig, client: reqwest::Client) -> Self {
        HttpTarget { cfg, client }
    }

    /// The URL with `{client_id}`, `{fingerprint}`, `{credential_id}` filled in; `None` when
    /// the URL needs a value the entry lacks or cannot carry (see [`HttpTarget::resolve_url`]).
    pub fn url_for(&self, e: &DenyEntry) -> Option<String> {
        self.resolve_url(e).ok()
    }

    /// The URL with its placeholders filled in, or why the call cannot be made: a value the
    /// URL needs is missing, or is not a usable path segment (empty, `.`, `..`). The reason
    /// names the placeholder, never the value.
    pub fn resolve_url(&self, e: &DenyEntry) -> Result<String, String> {
        let mut url = self.cfg.url.clone();
        for (ph, v) in
            [("{client_id}", &e.client_id), ("{fingerprint}", &e.fingerprint), ("{credential_id}", &e.credential_id)]
        {
            if url.contains(ph) {
                let v = match v.as_deref() {
                    Some(v) => v,
                    None if ph == "{client_id}" && e.claimed_client_id.is_some() => {
                        return Err("the URL needs {client_id}, and this client is only what the token claims \
                                    (unverified): never revoked by client"
                            .into())
                    }
                    None => return Err(format!("the URL needs {ph}, which this revocation lacks")),
                };
                let seg = path_encode(v)
                    .ok_or_else(|| format!("the value for {ph} is empty, `.` or `..`: not a path segment"))?;
                url = url.replace(ph, &seg);
            }
        }
        Ok(url)
    }
}

impl RevocationTarget for HttpTarget {
    fn name(&self) -> &'static str {
        "http"
    }

    fn revoke<'a>(&'a self, e: &'a DenyEntry) -> TargetFuture<'a> {
        Box::pin(async move {
            let url = match self.resolve_url(e) {
                Ok(u) => u,
                Err(why) => return Ok(TargetOutcome::Skipped(why)),
            };
            let body = serde_json::to_vec(e).expect("json");
            let method = self.cfg.method.as_reqwest();
            let mut req = self
                .client
                .request(method, url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("Idempotency-Key", format!("{}:{}", e.alert_id, e.key()));
            if let Some(b) = &self.cfg.bearer {
                req = req.bearer_auth(b.expose());
            }
            if let Some(s) = &self.cfg.secret {
                req = req.header("X-Gatewatch-Signature", sign_body(s, &body));
            }
            let resp = req.body(body).send().await.map_err(SinkError::from_reqwest)?;
            let status = resp.status();
            if status.is_success() {
                Ok(TargetOutcome::Done)
            } else {
                Err(SinkError::from_status(status, retry_after(resp.headers())))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::secret::Secret;

    #[test]
    fn basic_auth_form_encodes_then_base64() {
        let t = OAuthTarget::new(
            OAuthTargetConfig {
                endpoint: "https://idp/revoke".into(),
                client_id: "gate watch".into(),
                client_secret: Secret::new("p:w"),
                auth: ClientAuth::Basic,
                token_type_hint: Some("access_token".into()),
            },
            reqwest::Client::new(),
        );
        let (form, auth) = t.request_parts("jti/1");
        assert_eq!(form, "token=jti%2F1&token_type_hint=access_token");
        let decoded =
            base64::engine::general_purpose::STANDARD.decode(auth.unwrap().strip_prefix("Basic ").unwrap()).unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), "gate+watch:p%3Aw");
    }

    fn http_target(url: &str) -> HttpTarget {
        HttpTarget::new(
            HttpTargetConfig {
                url: url.into(),
                method: crate::actions::config::HttpMethod::Post,
                bearer: None,
                secret: None,
            },
            reqwest::Client::new(),
        )
    }

    fn entry(client_id: Option<&str>) -> DenyEntry {
        DenyEntry {
            fingerprint: Some("00".into()),
            credential_id: None,
            address: None,
            client_id: client_id.map(Into::into),
            claimed_client_id: None,
            reason: "r".into(),
            alert_id: "a".into(),
            revoked_at: 0,
            expires_at: None,
        }
    }

    #[test]
    fn http_url_placeholders_are_encoded_or_skip() {
        let t = http_target("https://idp/clients/{client_id}/revoke");
        let mut e = entry(Some("a b/c"));
        assert_eq!(t.url_for(&e).unwrap(), "https://idp/clients/a%20b%2Fc/revoke");
        e.client_id = None;
        assert_eq!(t.url_for(&e), None);
    }

    /// Issue 12 item 6: `..` and `.` went into the path as they were, so the call went to
    /// `/admin/revoke` or `/admin/clients/revoke` with the IdP bearer.
    #[test]
    fn dot_segments_never_reach_the_path() {
        let t = http_target("https://idp/admin/clients/{client_id}/revoke");
        let mut e = entry(None);
        for refused in ["..", ".", "", "%2e%2e"] {
            e.client_id = Some(refused.into());
            let url = t.url_for(&e);
            assert!(
                url.as_deref().is_none_or(|u| u.contains("/clients/%") && !u.contains("/clients/%2e")),
                "`{refused}` gave {url:?}"
            );
            if matches!(refused, ".." | "." | "") {
                assert_eq!(url, None, "`{refused}` must be refused, not encoded");
            }
        }
        // Every byte outside ALPHA / DIGIT / `-` / `_` / `~` is encoded, `.` and `%` included.
        e.client_id = Some("app.v2~x_y-z%2F".into());
        assert_eq!(t.url_for(&e).unwrap(), "https://idp/admin/clients/app%2Ev2~x_y-z%252F/revoke");
        e.client_id = Some("..%2F..".into());
        assert_eq!(t.url_for(&e).unwrap(), "https://idp/admin/clients/%2E%2E%252F%2E%2E/revoke");
        // reqwest's URL parser keeps the encoded segment: the request goes where it says.
        let parsed = reqwest::Url::parse(&t.url_for(&e).unwrap()).unwrap();
        assert_eq!(parsed.path(), "/admin/clients/%2E%2E%252F%2E%2E/revoke");
    }
}

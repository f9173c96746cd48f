//! Secrets read from environment variables named in the config (`password_env = "SMTP_PASSWORD"`).
//!
//! A [`Secret`] never prints itself: `Debug` and `Display` show `***`, so it can sit in
//! structs that are logged or put in errors without leaking.

use std::fmt;
use std::sync::Arc;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::from(value.into()))
    }

    /// The value, for the one place that must send it (an auth header, a signature key).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL as `Debug` and logs may show it: scheme, host and port, then `/***`. The user
/// info, path and query are dropped because they may carry a credential (a Slack webhook
/// path is one; `https://user:pass@host` holds one).
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}/***", u.scheme()),
            (Some(h), None) => format!("{}://{h}/***", u.scheme()),
            (None, _) => format!("{}:***", u.scheme()),
        },
        Err(_) => "<not a URL>".into(),
    }
}

/// Looks up environment variables; injected so config parsing is testable without
/// touching the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Resolves `field_env = "VAR"`: the variable must be set and non-empty. The error names
/// the variable, never a value.
pub fn resolve(env: EnvLookup<'_>, var: &str) -> Result<Secret, String> {
    if var.is_empty() {
        return Err("names no environment variable".into());
    }
    match env(var) {
        Some(v) if !v.is_empty() => Ok(Secret::new(v)),
        Some(_) => Err(format!("environment variable `{var}` is empty")),
        None => Err(format!("environment variable `{var}` is not set")),
    }
}

/// Compares two byte strings in constant time (for bearer tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    // Hashing first makes the comparison independent of the lengths too.
    let ha = Sha256::digest(a);
    let hb = Sha256::digest(b);
    ha.as_slice().ct_eq(hb.as_slice()).into()
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the webhook signature header value.
pub fn sign_body(secret: &Secret, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes()).expect("hmac takes any key");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
    }

    #[test]
    fn redact_url_keeps_scheme_host_and_port_only() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX?x=1"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(redact_url("http://user:s3cr3t@am.internal:9093/"), "http://am.internal:9093/***");
        assert_eq!(redact_url("https://idp/clients/{client_id}/revoke"), "https://idp/***");
        assert_eq!(redact_url("not a url s3cr3t"), "<not a URL>");
    }

    #[test]
    fn resolve_names_the_variable_not_the_value() {
        let env = |k: &str| (k == "SET").then(|| "v4lue".to_string());
        assert_eq!(resolve(&env, "SET").unwrap().expose(), "v4lue");
        let e = resolve(&env, "UNSET").unwrap_err();
        assert!(e.contains("UNSET"), "{e}");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn signature_matches_known_vector() {
        // RFC 4231 test case 2.
        let s = Secret::new("Jefe");
        assert_eq!(
            sign_body(&s, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

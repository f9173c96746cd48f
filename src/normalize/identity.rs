//! Who made a request: the gateway's consumer, else the bearer token's JWT
//! claims (decoded, not verified), else an API key. Every raw credential is
//! fingerprinted here and dropped; only the fingerprint leaves this module.
//!
//! The client id says where it came from ([`ClientIdSource`]): a client read from a JWT
//! payload is `Claimed` (anybody can write an `alg: none` token naming any client), a
//! consumer is whatever the format says its consumer is (see [`RawCredentials::consumer_source`]).

use base64::Engine as _;

use std::sync::Arc;

use crate::event::{ClientIdSource, Fingerprint, Millis, Text, TokenClaims};
use crate::scrub::{Fingerprinter, ScrubStats, Scrubber};

use super::token_cache::TokenCache;

/// Query parameters that carry a bearer token or API key.
pub const TOKEN_QUERY_PARAMS: &[&str] =
    &["access_token", "jwt", "token", "id_token", "api_key", "apikey", "api-key", "key", "auth", "subscription-key"];
/// Cookies that carry a bearer token.
pub const TOKEN_COOKIES: &[&str] = &["access_token", "jwt", "token", "id_token", "auth_token"];

/// Credentials found on a request, borrowed from the record.
#[derive(Default, Debug)]
pub struct RawCredentials<'a> {
    /// Consumer id/custom id from the gateway (Kong consumer, APISIX consumer).
    pub consumer_id: Option<&'a str>,
    /// Consumer username.
    pub consumer_name: Option<&'a str>,
    /// Whether the gateway authenticated the consumer above: `Gateway` for a consumer the
    /// gateway resolved from a credential it checked; the default `Claimed` for a name the
    /// gateway logs as the caller sent it (NGINX `$remote_user`, even after a wrong password).
    pub consumer_source: ClientIdSource,
    /// A non-secret credential id (Kong `authenticated_entity.id`).
    pub credential_id: Option<&'a str>,
    /// `Authorization` header value (may be `REDACTED`).
    pub authorization: Option<&'a str>,
    /// API-key header values (`apikey`, `x-api-key`).
    pub api_key: Option<&'a str>,
    /// Raw query string (without `?`).
    pub query: Option<&'a str>,
    /// `Cookie` header.
    pub cookie: Option<&'a str>,
}

/// What identity resolution produced. No raw secret in here.
#[derive(Default, Debug, PartialEq)]
pub struct Identity {
    pub client_id: Option<Text>,
    pub client_id_source: ClientIdSource,
    pub subject: Option<Text>,
    pub token_fingerprint: Option<Fingerprint>,
    pub credential_id: Option<Text>,
    /// The consumer (`consumer:<id>`), else the user name (`user:<name>`) the gateway logged:
    /// [`crate::event::Event::principal`] where the format logs no subject of its own.
    pub principal: Option<Text>,
    pub scopes: Vec<Text>,
    /// The bearer JWT's own claims ([`crate::event::Event::claims`]).
    pub claims: Option<Arc<TokenClaims>>,
    /// Credentials sent in a place they should not be: (kind, place, fingerprint).
    pub exposures: Vec<(&'static str, String, Fingerprint)>,
}

/// JWT claims gatewatch uses.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct JwtClaims {
    pub client_id: Option<Text>,
    pub subject: Option<Text>,
    pub scopes: Vec<Text>,
    pub jti: Option<Text>,
    /// What the token says about whether it should be accepted: `alg`, issuer, audience,
    /// expiry. Shared: the cache's copy and every event's are one allocation.
    pub token: Option<Arc<TokenClaims>>,
}

pub fn is_sentinel(v: &str) -> bool {
    let v = v.trim();
    v.is_empty()
        || v == "-"
        || v.eq_ignore_ascii_case("redacted")
        || v == "null"
        || v == "00000000"
        || v.starts_with("[REDACTED")
}

/// Resolves identity from the credentials found on one request.
pub fn resolve(fp: &Fingerprinter, raw: &RawCredentials<'_>) -> Identity {
    resolve_with(fp, None, None, raw)
}

/// [`resolve`], taking the bearer token's fingerprint and claims from `cache` when it holds them,
/// and passing the claims that could carry a secret (issuer, audience) through `scrubber`.
pub fn resolve_with(
    fp: &Fingerprinter,
    cache: Option<&TokenCache>,
    scrubber: Option<&Scrubber>,
    raw: &RawCredentials<'_>,
) -> Identity {
    let mut id = Identity::default();
    let mut token: Option<(&str, &'static str)> = None; // (raw token, how it came)

    if let Some(auth) = raw.authorization.filter(|v| !is_sentinel(v)) {
        let auth = auth.trim();
        if let Some(t) = strip_scheme(auth, "bearer") {
            token = Some((t, "bearer"));
        } else if let Some(b) = strip_scheme(auth, "basic") {
            // Basic credentials: user name is an identity, the pair is a secret.
            let f = fp.fingerprint(b.as_bytes());
            id.token_fingerprint = Some(f);
            if let Some(user) = decode_basic_user(b) {
                id.subject = Some(user.into());
            }
            id.exposures.push(("basic_auth", "header:authorization".into(), f));
        } else if !auth.contains(' ') {
            token = Some((auth, "bearer"));
        } else if let Some((_, t)) = auth.split_once(' ') {
            token = Some((t.trim(), "bearer"));
        }
    }
    if token.is_none() && id.token_fingerprint.is_none() {
        if let Some(k) = raw.api_key.filter(|v| !is_sentinel(v)) {
            token = Some((k.trim(), "api_key"));
        }
    }
    if let Some(q) = raw.query {
        for (name, value) in query_pairs(q) {
            if TOKEN_QUERY_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)) && !is_sentinel(value) {
                let f = fp.fingerprint(value.as_bytes());
                let kind = if looks_like_jwt(value) {
                    "jwt"
                } else if name.contains("key") {
                    "api_key"
                } else {
                    "token"
                };
                id.exposures.push((kind, format!("query:{name}"), f));
                if token.is_none() && id.token_fingerprint.is_none() {
                    token = Some((value, if kind == "api_key" { "api_key" } else { "bearer" }));
                }
            }
        }
    }
    if token.is_none() && id.token_fingerprint.is_none() {
        if let Some(c) = raw.cookie {
            for part in c.split(';') {
                if let Some((name, value)) = part.trim().split_once('=') {
                    if TOKEN_COOKIES.iter().any(|p| name.eq_ignore_ascii_case(p)) && !is_sentinel(value) {
                        token = Some((value, "bearer"));
                        break;
                    }
                }
            }
        }
    }

    let mut claims = JwtClaims::default();
    if let Some((t, how)) = token {
        let (f, decoded) = match cache {
            Some(c) => c.lookup(fp, scrubber, t),
            None => super::token_cache::compute(fp, scrubber, t),
        };
        id.token_fingerprint = Some(f);
        if looks_like_jwt(t) {
            if let Some(c) = decoded {
                claims = c;
            }
        } else if how == "api_key" {
            id.client_id = id.token_fingerprint.map(|f| compact_str::format_compact!("key:{f}"));
            id.client_id_source = ClientIdSource::ApiKey;
        }
    }

    // Precedence: gateway consumer, then JWT claims (never verified here), then API key.
    if let Some(c) = raw.consumer_id.or(raw.consumer_name).filter(|v| !is_sentinel(v)) {
        id.client_id = Some(c.into());
        id.client_id_source = raw.consumer_source;
    } else if claims.client_id.is_some() {
        id.client_id = claims.client_id.take();
        id.client_id_source = ClientIdSource::Claimed;
    }
    if let Some(n) = raw.consumer_name.filter(|v| !is_sentinel(v)) {
        id.subject = Some(n.into());
    } else if claims.subject.is_some() {
        id.subject = claims.subject.take();
    }
    id.principal = match (raw.consumer_id.filter(|v| !is_sentinel(v)), raw.consumer_name.filter(|v| !is_sentinel(v))) {
        (Some(c), _) => Some(compact_str::format_compact!("consumer:{c}")),
        (None, Some(n)) => Some(compact_str::format_compact!("user:{n}")),
        (None, None) => None,
    };
    id.scopes = claims.scopes;
    id.claims = claims.token;
    id.credential_id = raw.credential_id.filter(|v| !is_sentinel(v)).map(Text::from).or(claims.jti);
    id
}

fn strip_scheme<'a>(v: &'a str, scheme: &str) -> Option<&'a str> {
    // Compared as bytes: the header may hold any character where the scheme's letters should
    // be (`Bear\u{e9}r …`), and slicing the str there would split it.
    let b = v.as_bytes();
    if b.len() > scheme.len() + 1
        && b[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
        && b[scheme.len()] == b' '
    {
        Some(v[scheme.len() + 1..].trim())
    } else {
        None
    }
}

fn decode_basic_user(b64: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let s = String::from_utf8(bytes).ok()?;
    let (user, _) = s.split_once(':')?;
    (!user.is_empty()).then(|| user.to_string())
}

/// Splits a raw query string into (name, value) pairs, without decoding.
pub fn query_pairs(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Three base64url segments whose first decodes to a JSON header.
pub fn looks_like_jwt(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() > 20 && b.starts_with(b"eyJ") && memchr::memchr_iter(b'.', b).count() == 2
}

/// Decodes (does not verify) the claims gatewatch uses.
pub fn decode_jwt_claims(t: &str) -> Option<JwtClaims> {
    let mut parts = t.split('.');
    let header = parts.next()?;
    let payload = parts.next()?;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok();
    let bytes = b64(payload)?;
    #[derive(serde::Deserialize)]
    struct Claims<'a> {
        #[serde(borrow, default)]
        client_id: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        azp: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        cid: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        sub: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        scope: Option<serde_json::Value>,
        #[serde(default)]
        scp: Option<serde_json::Value>,
        #[serde(borrow, default)]
        jti: Option<std::borrow::Cow<'a, str>>,
        #[serde(borrow, default)]
        iss: Option<std::borrow::Cow<'a, str>>,
        #[serde(default)]
        aud: Option<serde_json::Value>,
        #[serde(default)]
        exp: Option<serde_json::Value>,
        #[serde(default)]
        iat: Option<serde_json::Value>,
    }
    let c: Claims<'_> = serde_json::from_slice(&bytes).ok()?;
    let mut scopes = Vec::new();
    for v in [&c.scope, &c.scp].into_iter().flatten() {
        match v {
            serde_json::Value::String(s) => scopes.extend(s.split_whitespace().map(Text::from)),
            serde_json::Value::Array(a) => scopes.extend(a.iter().filter_map(|x| x.as_str().map(Text::from))),
            _ => {}
        }
    }
    scopes.sort();
    scopes.dedup();
    #[derive(serde::Deserialize)]
    struct Header<'a> {
        #[serde(borrow, default)]
        alg: Option<std::borrow::Cow<'a, str>>,
    }
    let header = b64(header);
    let alg = header.as_deref().and_then(|h| serde_json::from_slice::<Header<'_>>(h).ok()).and_then(|h| h.alg);
    let audience = match &c.aud {
        Some(serde_json::Value::String(s)) => vec![claim_text(s)],
        Some(serde_json::Value::Array(a)) => {
            a.iter().filter_map(|x| x.as_str()).take(MAX_AUDIENCES).map(claim_text).collect()
        }
        _ => Vec::new(),
    };
    let token = TokenClaims {
        alg: alg.map(|a| alg_text(&a)),
        issuer: c.iss.as_deref().map(claim_text),
        audience,
        expires_at: c.exp.as_ref().and_then(numeric_date),
        issued_at: c.iat.as_ref().and_then(numeric_date),
    };
    Some(JwtClaims {
        client_id: c.client_id.or(c.azp).or(c.cid).map(Text::from),
        subject: c.sub.map(Text::from),
        scopes,
        jti: c.jti.map(Text::from),
        token: Some(Arc::new(token)),
    })
}

/// Audiences kept of a token that names more: enough to match a route's, bounded.
const MAX_AUDIENCES: usize = 8;
/// Longest issuer or audience kept as written; a longer one is nobody's issuer.
const MAX_CLAIM_TEXT: usize = 256;

/// An issuer or audience as kept: as written when short and printable, else a placeholder
/// that says why (the value itself is not repeated).
fn claim_text(v: &str) -> String {
    if v.len() > MAX_CLAIM_TEXT {
        "(longer than 256 bytes)".to_string()
    } else if v.bytes().any(|b| b.is_ascii_control()) {
        "(control characters)".to_string()
    } else {
        v.to_string()
    }
}

/// A header `alg` as kept: the registered names are short words (`RS256`, `none`); anything
/// else is replaced.
fn alg_text(a: &str) -> String {
    if !a.is_empty() && a.len() <= 16 && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-_".contains(&b)) {
        a.to_string()
    } else {
        "(unreadable)".to_string()
    }
}

/// A JWT NumericDate (seconds since the epoch, possibly fractional) in ms; `None` when it is
/// not a number or out of any sensible range.
fn numeric_date(v: &serde_json::Value) -> Option<Millis> {
    let s = v.as_f64()?;
    (s.is_finite() && (0.0..1e11).contains(&s)).then(|| (s * 1000.0).round() as Millis)
}

/// Passes the claims that are free text (client id, subject, jti, issuer, audience) through
/// `scrubber`: a secret written into a claim (anybody can write any claim into an unsigned
/// token) reaches events and alerts only as the scrubber's marker.
pub fn scrub_claims(claims: &mut JwtClaims, scrubber: &Scrubber) {
    let mut stats = ScrubStats::default();
    for (v, place) in
        [(&mut claims.client_id, "jwt:client_id"), (&mut claims.subject, "jwt:sub"), (&mut claims.jti, "jwt:jti")]
    {
        if let Some(v) = v.as_mut() {
            let (out, _) = scrubber.scrub_value(v, place, &mut stats);
            if let std::borrow::Cow::Owned(o) = out {
                *v = o.into();
            }
        }
    }
    let mut clean = |v: &mut String, place: &str| {
        let (out, _) = scrubber.scrub_value(v, place, &mut stats);
        if let std::borrow::Cow::Owned(o) = out {
            *v = o;
        }
    };
    let Some(t) = claims.token.as_mut() else { return };
    let t = Arc::make_mut(t);
    if let Some(i) = t.issuer.as_mut() {
        clean(i, "jwt:iss");
    }
    for a in &mut t.audience {
        clean(a, "jwt:aud");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    fn jwt(claims: &str) -> String {
        format!("{}.{}.c2lnbmF0dXJl", b64(r#"{"alg":"RS256","typ":"JWT"}"#), b64(claims))
    }

    #[test]
    fn jwt_claims_give_identity_and_scopes() {
        let fp = Fingerprinter::new(b"0123456789abcdef");
        let t = jwt(r#"{"sub":"user-1","azp":"app-1","scope":"orders:read orders:write","jti":"j-1"}"#);
        let auth = format!("Bearer {t}");
        let id = resolve(&fp, &RawCredentials { authorization: Some(&auth), ..Default::default() });
        assert_eq!(id.client_id.as_deref(), Some("app-1"));
        assert_eq!(id.subject.as_deref(), Some("user-1"));
        assert_eq!(id.scopes, vec!["orders:read", "orders:write"]);
        assert_eq!(id.credential_id.as_deref(), Some("j-1"));
        assert_eq!(id.token_fingerprint, Some(fp.fingerprint(t.as_bytes())));
    }

    #[test]
    fn a_client_from_jwt_claims_is_only_claimed() {
        let fp = Fingerprinter::new(b"0123456789abcdef");
        // Nobody signed this one: its claims are whatever the caller wrote.
        let t = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"client_id":"billing-prod"}"#));
        let auth = format!("Bearer {t}");
        let id = resolve(&fp, &RawCredentials { authorization: Some(&auth), ..Default::default() });
        assert_eq!((id.client_id.as_deref(), id.client_id_source), (Some("billing-prod"), ClientIdSource::Claimed));
        // A consumer the gateway authenticated wins, with the gateway's standing.
        let raw = RawCredentials {
            consumer_id: Some("c-1"),
            consumer_source: ClientIdSource::Gateway,
            authorization: Some(&auth),
            ..Default::default()
        };
        assert_eq!(resolve(&fp, &raw).client_id_source, ClientIdSource::Gateway);
        // A consumer name the format does not vouch for stays a claim.
        let raw = RawCredentials { consumer_name: Some("billing-prod"), ..Default::default() };
        assert_eq!(resolve(&fp, &raw).client_id_source, ClientIdSource::Claimed);
        // An API key names itself.
        let id = resolve(&fp, &RawCredentials { api_key: Some("k-123456789"), ..Default::default() });
        assert_eq!(id.client_id_source, ClientIdSource::ApiKey);
    }

    #[test]
    fn consumer_wins_over_claims_and_redacted_is_ignored() {
        let fp = Fingerprinter::new(b"0123456789abcdef");
        let id = resolve(
            &fp,
            &RawCredentials {
                consumer_id: Some("c-1"),
                credential_id: Some("cred-9"),
                authorization: Some("REDACTED"),
                ..Default::default()
            },
        );
        assert_eq!(id.client_id.as_deref(), Some("c-1"));
        assert_eq!(id.token_fingerprint, None);
        assert_eq!(id.credential_id.as_deref(), Some("cred-9"));
    }

    #[test]
    fn api_key_in_query_is_fingerprinted_and_flagged() {
        let fp = Fingerprinter::new(b"0123456789abcdef");
        let id = resolve(&fp, &RawCredentials { query: Some("page=2&apikey=abcdef123456"), ..Default::default() });
        let f = fp.fingerprint(b"abcdef123456");
        assert_eq!(id.token_fingerprint, Some(f));
        assert_eq!(id.client_id, Some(format!("key:{f}").into()));
        assert_eq!(id.exposures, vec![("api_key", "query:apikey".to_string(), f)]);
    }

    #[test]
    fn scp_array_and_cid_claims() {
        let c = decode_jwt_claims(&jwt(r#"{"cid":"okta-app","scp":["a","b"]}"#)).unwrap();
        assert_eq!(c.client_id.as_deref(), Some("okta-app"));
        assert_eq!(c.scopes, vec!["a", "b"]);
    }

    #[test]
    fn the_claims_that_say_whether_to_accept_a_token_are_read() {
        // `jwt` writes an RS256 header
        let c = decode_jwt_claims(&jwt(
            r#"{"iss":"https://idp.example/","aud":["api","admin"],"exp":1767229200,"iat":1767225600.5}"#,
        ))
        .unwrap();
        let t = c.token.unwrap();
        assert_eq!(t.alg.as_deref(), Some("RS256"));
        assert_eq!(t.issuer.as_deref(), Some("https://idp.example/"));
        assert_eq!(t.audience, ["api", "admin"]);
        assert_eq!(t.expires_at, Some(1_767_229_200_000));
        assert_eq!(t.issued_at, Some(1_767_225_600_500));
        assert!(!t.is_unsigned());
        // an unsigned token, a string audience, dates that are not numbers, a hostile alg
        let none = format!("{}.{}.", b64(r#"{"alg":"None"}"#), b64(r#"{"aud":"api","exp":"tomorrow"}"#));
        let t = decode_jwt_claims(&none).unwrap().token.unwrap();
        assert!(t.is_unsigned());
        assert_eq!((t.audience.as_slice(), t.expires_at, t.issuer.as_deref()), (&["api".to_string()][..], None, None));
        let odd = format!(
            "{}.{}.x",
            b64(r#"{"alg":"RS256\u0000<script>"}"#),
            b64(&format!(r#"{{"iss":"{}"}}"#, "a".repeat(300)))
        );
        let t = decode_jwt_claims(&odd).unwrap().token.unwrap();
        assert_eq!(t.alg.as_deref(), Some("(unreadable)"));
        assert_eq!(t.issuer.as_deref(), Some("(longer than 256 bytes)"));
    }

    #[test]
    fn a_scheme_with_a_multibyte_character_where_its_letters_should_be_is_not_a_panic() {
        // what the fuzzer found: a HAProxy capture `Bear\xe5r abc` read as `Bear\u{fffd}r abc`
        let fp = Fingerprinter::new(b"k");
        for auth in ["Bear\u{fffd}r abc", "Basi\u{e9} abc", "\u{fffd}\u{fffd}\u{fffd} x", "Bearer\u{e9}abc"] {
            let id = resolve(&fp, &RawCredentials { authorization: Some(auth), ..Default::default() });
            assert!(id.token_fingerprint.is_some(), "{auth}: still a credential, fingerprinted");
        }
    }

    #[test]
    fn basic_auth_gives_subject_not_secret() {
        let fp = Fingerprinter::new(b"0123456789abcdef");
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:hunter2"));
        let id = resolve(&fp, &RawCredentials { authorization: Some(&basic), ..Default::default() });
        assert_eq!(id.subject.as_deref(), Some("alice"));
        assert!(id.token_fingerprint.is_some());
        assert!(!format!("{id:?}").contains("hunter2"));
    }
}

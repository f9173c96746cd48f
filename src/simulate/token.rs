//! Bearer tokens as an OAuth server would issue them: compact JWTs with the
//! usual claims and an RS256-sized signature (random bytes: well formed, not signed).

use std::fmt::Write;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::Rng;

use super::{SimToken, TOKEN_TTL_MS};
use crate::event::Millis;
use crate::scrub::Fingerprinter;

pub(crate) const ISSUER: &str = "https://auth.shopfront.example/";
pub(crate) const AUDIENCE: &str = "https://api.shopfront.example";
const HEADER: &str = r#"{"alg":"RS256","kid":"shopfront-2026-11","typ":"JWT"}"#;

/// A random version-4 UUID.
pub(crate) fn uuid(rng: &mut impl Rng) -> String {
    let v: u128 = rng.gen();
    let v = (v & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let mut s = String::with_capacity(36);
    let _ = write!(
        s,
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        (v >> 96) as u32,
        (v >> 80) as u16,
        (v >> 64) as u16,
        (v >> 48) as u16,
        v & 0xffff_ffff_ffff
    );
    s
}

/// Issues a token to `client_id`/`subject` at `issued_at` (ms), valid for [`TOKEN_TTL_MS`].
pub(crate) fn mint(
    rng: &mut impl Rng,
    fp: &Fingerprinter,
    client_id: &Arc<str>,
    subject: &Arc<str>,
    scopes: &Arc<[&'static str]>,
    issued_at: Millis,
) -> Arc<SimToken> {
    mint_with_ttl(rng, fp, client_id, subject, scopes, issued_at, TOKEN_TTL_MS)
}

pub(crate) fn mint_with_ttl(
    rng: &mut impl Rng,
    fp: &Fingerprinter,
    client_id: &Arc<str>,
    subject: &Arc<str>,
    scopes: &Arc<[&'static str]>,
    issued_at: Millis,
    ttl: Millis,
) -> Arc<SimToken> {
    mint_signed_with(rng, fp, HEADER, 256, client_id, subject, scopes, issued_at, ttl)
}

/// What an attacker writes when a gateway does not check signatures: the claims of a real
/// client (copied from one of its tokens) under `alg: none`, with no signature at all.
pub(crate) fn forge_unsigned(
    rng: &mut impl Rng,
    fp: &Fingerprinter,
    like: &SimToken,
    issued_at: Millis,
    ttl: Millis,
) -> Arc<SimToken> {
    mint_signed_with(rng, fp, UNSIGNED, 0, &like.client_id, &like.subject, &like.scopes, issued_at, ttl)
}

const UNSIGNED: &str = r#"{"alg":"none","typ":"JWT"}"#;

#[allow(clippy::too_many_arguments)]
fn mint_signed_with(
    rng: &mut impl Rng,
    fp: &Fingerprinter,
    header: &str,
    sig_len: usize,
    client_id: &Arc<str>,
    subject: &Arc<str>,
    scopes: &Arc<[&'static str]>,
    issued_at: Millis,
    ttl: Millis,
) -> Arc<SimToken> {
    let iat = issued_at.div_euclid(1000);
    let exp = iat + ttl / 1000;
    let jti = uuid(rng);
    let payload = format!(
        r#"{{"iss":"{ISSUER}","sub":"{subject}","aud":"{AUDIENCE}","client_id":"{client_id}","scope":"{}","jti":"{jti}","iat":{iat},"exp":{exp}}}"#,
        scopes.join(" ")
    );
    let mut sig = [0u8; 256];
    rng.fill(&mut sig[..sig_len]);
    let mut raw = String::with_capacity(80 + payload.len() * 4 / 3 + 344);
    URL_SAFE_NO_PAD.encode_string(header, &mut raw);
    raw.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut raw);
    raw.push('.');
    URL_SAFE_NO_PAD.encode_string(&sig[..sig_len], &mut raw);
    let fingerprint = fp.fingerprint(raw.as_bytes());
    Arc::new(SimToken {
        raw,
        fingerprint,
        client_id: client_id.clone(),
        subject: subject.clone(),
        scopes: scopes.clone(),
        jti,
        issued_at: iat * 1000,
        expires_at: exp * 1000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tokens_decode_to_their_claims() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let fp = Fingerprinter::new(b"k");
        let scopes: Arc<[&'static str]> = Arc::from(vec!["orders:read", "profile"]);
        let t = mint(&mut rng, &fp, &Arc::from("app-1"), &Arc::from("user-9"), &scopes, 1_795_255_200_500);
        assert!(crate::normalize::identity::looks_like_jwt(&t.raw));
        let c = crate::normalize::identity::decode_jwt_claims(&t.raw).unwrap();
        assert_eq!(c.client_id.as_deref(), Some("app-1"));
        assert_eq!(c.subject.as_deref(), Some("user-9"));
        assert_eq!(c.scopes, vec!["orders:read", "profile"]);
        assert_eq!(c.jti.as_deref(), Some(t.jti.as_str()));
        assert_eq!(t.issued_at, 1_795_255_200_000);
        assert_eq!(t.expires_at - t.issued_at, TOKEN_TTL_MS);
        assert_eq!(t.fingerprint, fp.fingerprint(t.raw.as_bytes()));
    }

    #[test]
    fn uuids_are_version_4() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(2);
        for _ in 0..100 {
            let u = uuid(&mut rng);
            assert_eq!(u.len(), 36);
            assert_eq!(&u[14..15], "4");
            assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
        }
    }
}

//! The fingerprint and JWT claims of recently seen tokens, so a token sent on many requests
//! is hashed and decoded once, not on every request.
//!
//! A client holds one token for its lifetime (an hour, typically) and sends it on every call;
//! an HMAC-SHA256 of a 900-byte JWT plus a base64 and JSON decode of its claims is most of what
//! identity resolution costs. The cache holds **no raw token**: a token is named by a 128-bit
//! tag, the 128-bit SipHash-1-3 sum of the whole token under a random key drawn when the
//! process starts, which nobody outside can compute, so no one can craft two tokens that share a tag.
//! The cache is direct-mapped: a token goes in the slot its tag names, replacing whatever was
//! there, so a lookup costs the same however tokens collide, and memory is bounded by
//! [`TokenCache::SLOTS`] entries of a tag, a fingerprint and the claims (which go into every
//! event anyway).

use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};
use std::sync::Mutex;

use super::identity::{decode_jwt_claims, looks_like_jwt, scrub_claims, JwtClaims};
use crate::event::Fingerprint;
use crate::scrub::{Fingerprinter, Scrubber};

struct Slot {
    tag: u128,
    fingerprint: Fingerprint,
    claims: Option<JwtClaims>,
}

/// Per-normalizer cache of token → (fingerprint, decoded JWT claims), keyed by a secret tag.
pub struct TokenCache {
    /// A lock that is never waited for: a normalizer shared by threads that finds it taken
    /// computes the answer instead.
    slots: Mutex<Vec<Option<Slot>>>,
    /// The SipHash key, drawn when the cache is made.
    key: (u64, u64),
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            slots: Mutex::new((0..Self::SLOTS).map(|_| None).collect()),
            key: (rand::random(), rand::random()),
        }
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache")
    }
}

impl TokenCache {
    /// Slots: tokens in active use at once, beyond which they evict each other.
    pub const SLOTS: usize = 4096;

    /// The token's fingerprint and, for a JWT, its decoded claims.
    pub fn lookup(
        &self,
        fp: &Fingerprinter,
        scrubber: Option<&Scrubber>,
        token: &str,
    ) -> (Fingerprint, Option<JwtClaims>) {
        let tag = self.tag(token);
        let i = (tag as usize) % Self::SLOTS;
        if let Ok(slots) = self.slots.try_lock() {
            if let Some(s) = slots[i].as_ref().filter(|s| s.tag == tag) {
                return (s.fingerprint, s.claims.clone());
            }
        }
        // Computed without the lock, so threads sharing the normalizer do not find it taken
        // for the length of an HMAC and a claims decode.
        let (fingerprint, claims) = compute(fp, scrubber, token);
        if let Ok(mut slots) = self.slots.try_lock() {
            slots[i] = Some(Slot { tag, fingerprint, claims: claims.clone() });
        }
        (fingerprint, claims)
    }

    fn tag(&self, token: &str) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write(token.as_bytes());
        h.finish128().as_u128()
    }
}

/// What the cache holds for a token, computed: its fingerprint and, for a JWT, its claims
/// (their free text scrubbed when a scrubber is given).
pub fn compute(fp: &Fingerprinter, scrubber: Option<&Scrubber>, token: &str) -> (Fingerprint, Option<JwtClaims>) {
    let mut claims = if looks_like_jwt(token) { decode_jwt_claims(token) } else { None };
    if let (Some(c), Some(s)) = (claims.as_mut(), scrubber) {
        scrub_claims(c, s);
    }
    (fp.fingerprint(token.as_bytes()), claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3JfMSIsImNsaWVudF9pZCI6ImFwcC0xIiwic2NvcGUiOiJvcmRlcnM6cmVhZCJ9.c2lnbmF0dXJl";

    #[test]
    fn a_hit_gives_what_computing_gives() {
        let fp = Fingerprinter::new(b"k");
        let cache = TokenCache::default();
        let first = cache.lookup(&fp, None, JWT);
        assert_eq!(first.0, fp.fingerprint(JWT.as_bytes()));
        assert_eq!(first.1, decode_jwt_claims(JWT));
        assert_eq!(first.1.as_ref().unwrap().subject.as_deref(), Some("usr_1"));
        assert_eq!(cache.lookup(&fp, None, JWT), first);
        let key = cache.lookup(&fp, None, "opaque-api-key-0123456789");
        assert_eq!(key, (fp.fingerprint(b"opaque-api-key-0123456789"), None));
    }

    #[test]
    fn tokens_that_differ_anywhere_get_their_own_fingerprint() {
        let fp = Fingerprinter::new(b"k");
        let cache = TokenCache::default();
        // the same length, the same head and tail: only one byte in the middle differs
        let tokens: Vec<String> =
            (b'a'..=b'z').map(|c| format!("{}{}{}", "x".repeat(40), c as char, "y".repeat(40))).collect();
        for _ in 0..3 {
            for t in &tokens {
                assert_eq!(cache.lookup(&fp, None, t).0, fp.fingerprint(t.as_bytes()), "{t}");
            }
        }
        // many more tokens than slots: evictions, never a wrong answer
        for n in 0..3 * TokenCache::SLOTS {
            let t = format!("tok-{n:08}");
            assert_eq!(cache.lookup(&fp, None, &t).0, fp.fingerprint(t.as_bytes()));
        }
    }

    #[test]
    fn each_cache_draws_its_own_key() {
        // A tag nobody outside can compute: two caches (two processes) name a token apart.
        let (a, b) = (TokenCache::default(), TokenCache::default());
        assert_ne!(a.tag(JWT), b.tag(JWT));
        assert_eq!(a.tag(JWT), a.tag(JWT));
        assert_ne!(a.tag(JWT), a.tag(&JWT[1..]));
    }

    #[test]
    fn the_cache_holds_no_raw_token() {
        let fp = Fingerprinter::new(b"k");
        let cache = TokenCache::default();
        cache.lookup(&fp, None, JWT);
        let slots = cache.slots.lock().unwrap();
        let held = slots.iter().flatten().count();
        assert_eq!(held, 1);
        // what a slot holds: a tag, the fingerprint, the claims; none of them carries the token
        let s = slots.iter().flatten().next().unwrap();
        let claims = format!("{:?}", s.claims);
        assert!(!claims.contains("eyJ") && !claims.contains("c2lnbmF0dXJl"), "{claims}");
        assert_eq!(format!("{cache:?}"), "TokenCache");
    }
}

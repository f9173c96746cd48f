//! The fingerprint and JWT claims of recently seen tokens, so a token sent on many requests
//! is hashed and decoded once, not on every request.
//!
//! A client holds one token for its lifetime (an hour, typically) and sends it on every call;
//! an HMAC-SHA256 of a 900-byte JWT plus a base64 and JSON decode of its claims is most of what
//! identity resolution costs. The cache is direct-mapped: a token goes in the slot its hash
//! names, replacing whatever was there. A hit compares the whole token, so two tokens never
//! share an entry; tokens crafted to land in one slot only make each other miss (the cost of
//! no cache), never a slower lookup. Memory is bounded by [`TokenCache::SLOTS`] tokens of at
//! most [`TokenCache::MAX_TOKEN`] bytes. Raw tokens stay inside this process's memory, as they
//! already are while a record is read; nothing here is logged or exported.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};

use super::identity::{decode_jwt_claims, looks_like_jwt, JwtClaims};
use crate::event::Fingerprint;
use crate::scrub::Fingerprinter;

struct Slot {
    token: Box<str>,
    fingerprint: Fingerprint,
    claims: Option<JwtClaims>,
}

/// Per-normalizer cache of token → (fingerprint, decoded JWT claims).
pub struct TokenCache {
    slots: RefCell<Vec<Option<Slot>>>,
    seed: std::collections::hash_map::RandomState,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache { slots: RefCell::new((0..Self::SLOTS).map(|_| None).collect()), seed: Default::default() }
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache(<tokens hidden>)")
    }
}

impl TokenCache {
    /// Slots: tokens in active use at once, beyond which they evict each other.
    pub const SLOTS: usize = 4096;
    /// Longer values are not cached (computed every time).
    pub const MAX_TOKEN: usize = 4096;

    /// The token's fingerprint and, for a JWT, its decoded claims.
    pub fn lookup(&self, fp: &Fingerprinter, token: &str) -> (Fingerprint, Option<JwtClaims>) {
        let compute = || {
            let claims = if looks_like_jwt(token) { decode_jwt_claims(token) } else { None };
            (fp.fingerprint(token.as_bytes()), claims)
        };
        if token.len() > Self::MAX_TOKEN {
            return compute();
        }
        let i = self.slot_of(token);
        let mut slots = self.slots.borrow_mut();
        if let Some(s) = &slots[i] {
            if *s.token == *token {
                return (s.fingerprint, s.claims.clone());
            }
        }
        let (fingerprint, claims) = compute();
        slots[i] = Some(Slot { token: token.into(), fingerprint, claims: claims.clone() });
        (fingerprint, claims)
    }

    /// The slot of a token: a keyed hash of its length and its last 32 bytes (a JWT's
    /// signature, which differs between any two tokens an issuer signs).
    fn slot_of(&self, token: &str) -> usize {
        let b = token.as_bytes();
        let mut h = self.seed.build_hasher();
        h.write_usize(b.len());
        h.write(&b[b.len().saturating_sub(32)..]);
        (h.finish() as usize) % Self::SLOTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c3JfMSIsImNsaWVudF9pZCI6ImFwcC0xIiwic2NvcGUiOiJvcmRlcnM6cmVhZCJ9.c2lnbmF0dXJl";

    #[test]
    fn a_hit_gives_what_computing_gives() {
        let fp = Fingerprinter::new(b"k");
        let cache = TokenCache::default();
        let first = cache.lookup(&fp, JWT);
        assert_eq!(first.0, fp.fingerprint(JWT.as_bytes()));
        assert_eq!(first.1, decode_jwt_claims(JWT));
        assert_eq!(first.1.as_ref().unwrap().subject.as_deref(), Some("usr_1"));
        assert_eq!(cache.lookup(&fp, JWT), first);
        let key = cache.lookup(&fp, "opaque-api-key-0123456789");
        assert_eq!(key, (fp.fingerprint(b"opaque-api-key-0123456789"), None));
    }

    #[test]
    fn tokens_sharing_a_slot_never_share_an_entry() {
        let fp = Fingerprinter::new(b"k");
        let cache = TokenCache::default();
        // same length and the same last 32 bytes: the same slot
        let a = format!("a{}", "x".repeat(40));
        let b = format!("b{}", "x".repeat(40));
        assert_eq!(cache.slot_of(&a), cache.slot_of(&b));
        for _ in 0..3 {
            assert_eq!(cache.lookup(&fp, &a).0, fp.fingerprint(a.as_bytes()));
            assert_eq!(cache.lookup(&fp, &b).0, fp.fingerprint(b.as_bytes()));
        }
        let long = "y".repeat(TokenCache::MAX_TOKEN + 1);
        assert_eq!(cache.lookup(&fp, &long).0, fp.fingerprint(long.as_bytes()));
    }

    #[test]
    fn debug_shows_no_token() {
        let cache = TokenCache::default();
        cache.lookup(&Fingerprinter::new(b"k"), JWT);
        assert!(!format!("{cache:?}").contains("eyJ"));
    }
}

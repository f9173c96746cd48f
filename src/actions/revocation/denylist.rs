//! The deny-list a gateway plugin polls: `GET /api/v1/revocations` with an ETag, so a poll
//! that finds nothing new costs a 304. Entries are enforced revocations only (dry-run ones
//! are in the audit log) and leave the list when their quarantine expires.

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::Serialize;

use crate::event::{format_ts, Millis};

/// One revoked credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DenyEntry {
    /// Token fingerprint (16 hex digits), when known.
    pub fingerprint: Option<String>,
    /// Credential handle (`jti`, key id), when known.
    pub credential_id: Option<String>,
    /// A banned address or range (the `ban` action): no token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The client, only when verified (the gateway's consumer, the API key itself): a
    /// consumer of the list may act on it. `null` for a client only a token claimed.
    pub client_id: Option<String>,
    /// A client the token claimed that nobody verified (a JWT payload gatewatch decoded but
    /// could not check): for people reading the list, never for revoking a client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_client_id: Option<String>,
    pub reason: String,
    pub alert_id: String,
    #[serde(serialize_with = "ser_ts")]
    pub revoked_at: Millis,
    /// `null`: permanent.
    #[serde(serialize_with = "ser_opt_ts")]
    pub expires_at: Option<Millis>,
}

fn ser_ts<S: serde::Serializer>(t: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(*t))
}

fn ser_opt_ts<S: serde::Serializer>(t: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_ts(*t)),
        None => s.serialize_none(),
    }
}

impl DenyEntry {
    /// A ban (of an address or a client), enforced at the gateway, not by token targets.
    pub fn is_ban(&self) -> bool {
        self.address.is_some() || (self.fingerprint.is_none() && self.credential_id.is_none())
    }

    pub fn key(&self) -> String {
        if let Some(a) = &self.address {
            return format!("ip:{a}");
        }
        match (&self.fingerprint, &self.credential_id) {
            // Neither token nor address: a ban of the (verified) client itself.
            (None, None) if self.client_id.is_some() => {
                format!("client:{}", super::policy::client_key(self.client_id.as_deref().unwrap_or_default()))
            }
            (Some(f), _) => f.clone(),
            (None, Some(c)) => format!("cred:{c}"),
            (None, None) => format!("alert:{}", self.alert_id),
        }
    }
}

/// A rendered deny-list: body and its strong ETag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenySnapshot {
    pub body: Vec<u8>,
    /// Quoted, as sent in the `ETag` header.
    pub etag: String,
    pub len: usize,
}

#[derive(Default)]
pub struct DenyList {
    entries: RwLock<BTreeMap<String, DenyEntry>>,
    /// The banned ranges (`ip:<cidr>` entries), parsed once: a single address is one map
    /// lookup, a range one `contains` per banned range.
    ranges: RwLock<Vec<(ipnet::IpNet, String)>>,
}

impl DenyList {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&self, e: DenyEntry) {
        let key = e.key();
        if let Some(net) = e.address.as_deref().filter(|a| a.contains('/')).and_then(|a| a.parse::<ipnet::IpNet>().ok())
        {
            if let Ok(mut r) = self.ranges.write() {
                if !r.iter().any(|(_, k)| *k == key) {
                    r.push((net, key.clone()));
                }
            }
        }
        if let Ok(mut m) = self.entries.write() {
            m.insert(key, e);
        }
    }

    /// The entry under `key` (a fingerprint's hex, or `cred:<id>`), if active at `now`: one
    /// map lookup under a read lock, for the forward-auth path.
    pub fn denies(&self, key: &str, now: Millis) -> Option<DenyEntry> {
        let m = self.entries.read().ok()?;
        m.get(key).filter(|e| e.expires_at.is_none_or(|x| x > now)).cloned()
    }

    /// The active ban covering `ip`, if any: its own address's entry, else a banned range
    /// holding it.
    pub fn bans(&self, ip: std::net::IpAddr, now: Millis) -> Option<DenyEntry> {
        let ip = ip.to_canonical();
        let active = |e: &&DenyEntry| e.expires_at.is_none_or(|x| x > now);
        let m = self.entries.read().ok()?;
        if let Some(e) = m.get(&format!("ip:{ip}")).filter(active) {
            return Some(e.clone());
        }
        let ranges = self.ranges.read().ok()?;
        ranges.iter().filter(|(n, _)| n.contains(&ip)).find_map(|(_, k)| m.get(k).filter(active).cloned())
    }

    /// The entries active at `now`, sorted by key.
    pub fn active(&self, now: Millis) -> Vec<DenyEntry> {
        match self.entries.read() {
            Ok(m) => m.values().filter(|e| e.expires_at.is_none_or(|x| x > now)).cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Active entries at `now`, as JSON `{"revocations": [...]}` sorted by key, with an ETag
    /// that is a hash of exactly that body (so it changes when an entry expires too).
    pub fn snapshot(&self, now: Millis) -> DenySnapshot {
        let active: Vec<DenyEntry> = match self.entries.write() {
            Ok(mut m) => {
                m.retain(|_, e| e.expires_at.is_none_or(|x| x > now));
                if let Ok(mut r) = self.ranges.write() {
                    r.retain(|(_, k)| m.contains_key(k));
                }
                m.values().cloned().collect()
            }
            Err(_) => Vec::new(),
        };
        let body = serde_json::to_vec(&serde_json::json!({ "revocations": active })).expect("json");
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(&body);
        DenySnapshot { etag: format!("\"{}\"", crate::actions::secret::hex(&d[..16])), body, len: active.len() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fp: &str, exp: Option<Millis>) -> DenyEntry {
        DenyEntry {
            fingerprint: Some(fp.into()),
            credential_id: None,
            address: None,
            client_id: Some("c".into()),
            claimed_client_id: None,
            reason: "r".into(),
            alert_id: "a".into(),
            revoked_at: 1000,
            expires_at: exp,
        }
    }

    #[test]
    fn bans_cover_their_address_or_range_until_they_end() {
        let d = DenyList::new();
        let ban = |a: &str, exp| DenyEntry { fingerprint: None, address: Some(a.into()), ..entry("x", Some(exp)) };
        d.insert(ban("203.0.113.7", 5_000));
        d.insert(ban("198.51.100.0/24", 9_000));
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(d.bans(ip("203.0.113.7"), 1_000).is_some());
        assert!(d.bans(ip("::ffff:203.0.113.7"), 1_000).is_some(), "the same address, mapped");
        assert!(d.bans(ip("203.0.113.8"), 1_000).is_none());
        assert!(d.bans(ip("198.51.100.200"), 1_000).is_some());
        assert!(d.bans(ip("203.0.113.7"), 5_000).is_none(), "ended");
        assert!(d.bans(ip("198.51.100.200"), 9_000).is_none(), "ended");
    }

    #[test]
    fn etag_follows_content_and_expiry() {
        let d = DenyList::new();
        let empty = d.snapshot(0);
        d.insert(entry("00000000000000a1", Some(5000)));
        d.insert(entry("00000000000000a2", None));
        let s1 = d.snapshot(2000);
        assert_ne!(s1.etag, empty.etag);
        assert_eq!(s1.len, 2);
        assert_eq!(d.snapshot(3000).etag, s1.etag);
        let s2 = d.snapshot(5000);
        assert_eq!(s2.len, 1);
        assert_ne!(s2.etag, s1.etag);
        let v: serde_json::Value = serde_json::from_slice(&s2.body).unwrap();
        assert_eq!(v["revocations"][0]["fingerprint"], "00000000000000a2");
        assert!(v["revocations"][0]["expires_at"].is_null());
    }
}

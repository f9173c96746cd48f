//! `object_enumeration`: one caller walking many objects of one route — broken object-level
//! authorization (BOLA, OWASP API1) being probed or exploited.
//!
//! For each caller and templated route with an object id (`GET /v1/orders/{id}`), the
//! distinct ids requested in a sliding window are counted (the id is the path segment where
//! the route has its last `{…}`). An alert fires when a caller reaches `min_distinct_ids`
//! distinct objects of one route in the window **and** either most of those calls were
//! refused (403/404: it is asking for objects that are not its own) or the ids are
//! sequential (it is counting through them, whatever the answers).
//!
//! The caller is the principal (the token, else the credential id or principal a record
//! names: `Event::principal_entity`; else the client id) and, separately, the source
//! address: Akto's open-source BOLA check keys on the address only, which misses an
//! enumeration spread over a proxy pool with one token, and blames a whole office NAT.
//!
//! What stays quiet: a batch client syncing thousands of objects it owns (answered 200, ids
//! scattered over its range), a mobile user browsing a few dozen products, a client whose
//! key rotates (a new token starts a new count). A crawler or export job you run yourself
//! that walks ids in order belongs in `[allow]`.
//!
//! Touches: events, its own keyed state, the findings it returns. No clock.

use serde::Deserialize;
use serde_json::json;

use super::{human_duration, parse_params, Checker, Detector, Limits};
use crate::config::{ConfigError, DetectorFile, DurationStr};
use crate::event::{
    format_ts, Entity, EntityKind, Event, Finding, Fingerprint, Millis, PrincipalKind, SeenClient, Shard,
};
use crate::state::{key128, BucketCounter, KeyedState, StateStats};

/// `[params]` of an `object_enumeration` file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Sliding window the distinct objects are counted in.
    #[serde(default = "default_window")]
    pub window: DurationStr,
    /// Which callers to count per: `principal` (token, credential, principal, else client id)
    /// and `source_ip`. Default: both.
    #[serde(default = "default_keys")]
    pub keys: Vec<CallerKind>,
    /// Distinct objects of one route in the window that make an enumeration (with one of
    /// the two conditions below).
    #[serde(default = "default_min_ids")]
    pub min_distinct_ids: usize,
    /// Share of the caller's calls to the route refused with a `denied_statuses` status.
    #[serde(default = "default_denied_share")]
    pub min_denied_share: f64,
    /// Share of the distinct numeric ids that have a neighbour (id ± 1) among them.
    #[serde(default = "default_sequential_share")]
    pub min_sequential_share: f64,
    /// Statuses that say "not yours": forbidden, and not found (many APIs answer 404 for an
    /// object the caller may not see).
    #[serde(default = "default_denied")]
    pub denied_statuses: Vec<u16>,
}

/// What an enumeration is counted per: the closed set of `keys` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerKind {
    /// The token, else the credential id or principal, else the client id.
    Principal,
    /// The source address.
    SourceIp,
}

fn default_window() -> DurationStr {
    DurationStr(10 * 60_000)
}
fn default_keys() -> Vec<CallerKind> {
    vec![CallerKind::Principal, CallerKind::SourceIp]
}
fn default_min_ids() -> usize {
    40
}
fn default_denied_share() -> f64 {
    0.5
}
fn default_sequential_share() -> f64 {
    0.7
}
fn default_denied() -> Vec<u16> {
    vec![403, 404]
}

/// The most distinct objects remembered per caller and route: enough to pass any sensible
/// `min_distinct_ids` and judge the sequence, bounded memory.
const MAX_IDS: usize = 256;
/// Marks an id that is not a number (held as a hash): it never counts as sequential.
const HASHED: u64 = 1 << 63;

/// The distinct objects a caller asked for in the window, each with when it was last asked
/// for: a number as itself, anything else hashed with [`HASHED`]. Expired lazily (when full,
/// and before being judged), so a busy caller's call costs one scan of at most [`MAX_IDS`].
#[derive(Default)]
struct Ids(Vec<(u64, Millis)>);

impl Ids {
    /// Records `id` at `ts`; `true` when it is new to the list.
    fn insert(&mut self, id: u64, ts: Millis, window: Millis) -> bool {
        if let Some(e) = self.0.iter_mut().find(|e| e.0 == id) {
            // not expired yet, but out of the window: new to it again
            let stale = e.1 <= ts - window;
            e.1 = ts;
            return stale;
        }
        if self.0.len() >= MAX_IDS {
            self.expire(ts, window);
            if self.0.len() >= MAX_IDS {
                let oldest = (0..self.0.len()).min_by_key(|&i| self.0[i].1).unwrap_or(0);
                self.0.swap_remove(oldest);
            }
        }
        self.0.push((id, ts));
        true
    }

    fn expire(&mut self, now: Millis, window: Millis) {
        self.0.retain(|e| e.1 > now - window);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn numeric(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().map(|e| e.0).filter(|v| v & HASHED == 0)
    }
}

#[derive(Default)]
struct KeyState {
    ids: Ids,
    /// When the caller's calls began (reset once none is left in the window): an alert's
    /// window starts there, or a window before it, whichever is later.
    first: Millis,
    /// Calls to the route in the window; hits = refused.
    calls: BucketCounter,
    client: SeenClient,
    fingerprint: Option<Fingerprint>,
    /// After an alert, the same episode is not reported again before this time.
    quiet_until: Millis,
    /// The ids' sequence is judged again from this time on (at most once a bucket of event
    /// time: a busy caller's sort would otherwise run on every new id).
    next_sequence_check: Millis,
}

pub struct ObjectEnumeration {
    p: Params,
    bucket: Millis,
    /// Keyed by a 128-bit hash of the caller's kind, the caller and the route: nothing to
    /// format or allocate per call. The caller is named again from the event when it alerts.
    state: KeyedState<u128, KeyState>,
    /// The routes keys were made for (touched when a key is made, not per call): a key's hash
    /// cannot be read back, so [`Detector::describe`] makes a caller's key for each of these.
    routes: KeyedState<String, ()>,
    /// The latest event time seen (event or watermark): what `describe` reads the window as of.
    now: Millis,
}

/// The most routes remembered for [`Detector::describe`] (the least recently keyed go first).
const MAX_ROUTES: usize = 10_000;

/// A caller as [`ObjectEnumeration::key`] hashes it, read back from an entity.
enum Caller {
    /// Named by bytes: a token's fingerprint, an address's octets.
    Bytes(CallerKind, Vec<u8>),
    /// Named by text: a credential id (`c`), a principal (`p`), a client id (`k`).
    Text(CallerKind, u8, String),
}

impl Caller {
    fn of(entity: &Entity) -> Option<Caller> {
        let id = entity.id.as_str();
        Some(match entity.kind {
            EntityKind::Token => match (Fingerprint::from_hex(id), id.strip_prefix("cred:")) {
                (Some(fp), _) => Caller::Bytes(CallerKind::Principal, fp.0.to_vec()),
                (None, Some(c)) => Caller::Text(CallerKind::Principal, b'c', c.to_string()),
                (None, None) => Caller::Text(CallerKind::Principal, b'p', id.to_string()),
            },
            EntityKind::ClientId => Caller::Text(CallerKind::Principal, b'k', id.to_string()),
            EntityKind::SourceIp => match id.parse::<std::net::IpAddr>().ok()?.to_canonical() {
                std::net::IpAddr::V4(a) => Caller::Bytes(CallerKind::SourceIp, a.octets().to_vec()),
                std::net::IpAddr::V6(a) => Caller::Bytes(CallerKind::SourceIp, a.octets().to_vec()),
            },
            EntityKind::Route => return None,
        })
    }

    fn kind(&self) -> CallerKind {
        match self {
            Caller::Bytes(k, _) | Caller::Text(k, ..) => *k,
        }
    }

    /// The state key on `route`: the same as [`ObjectEnumeration::key`] makes from an event.
    fn key(&self, route: &str) -> u128 {
        match self {
            Caller::Bytes(kind, b) => key128(&[&[*kind as u8], b, route.as_bytes()]),
            Caller::Text(kind, tag, text) => key128(&[&[*kind as u8, *tag], text.as_bytes(), route.as_bytes()]),
        }
    }
}

pub fn build(file: &DetectorFile, limits: Limits) -> Result<Box<dyn Detector>, Vec<ConfigError>> {
    let p: Params = parse_params(file)?;
    let mut c = Checker::new(file);
    c.check(p.window.0 >= 10_000, "window", "must be at least 10s");
    c.check(!p.keys.is_empty(), "keys", "name at least one of: principal, source_ip");
    c.check((5..=MAX_IDS).contains(&p.min_distinct_ids), "min_distinct_ids", "must be 5–256");
    c.check((0.0..=1.0).contains(&p.min_denied_share), "min_denied_share", "must be between 0 and 1");
    c.check((0.0..=1.0).contains(&p.min_sequential_share), "min_sequential_share", "must be between 0 and 1");
    c.check(p.denied_statuses.iter().all(|s| (100..600).contains(s)), "denied_statuses", "must be HTTP statuses");
    let bucket = (p.window.0 / 30).max(1000);
    let idle = limits.idle_timeout.max(p.window.0);
    c.finish(Box::new(ObjectEnumeration {
        state: KeyedState::new(limits.max_keys, idle),
        routes: KeyedState::new(MAX_ROUTES.min(limits.max_keys), Millis::MAX / 4),
        now: Millis::MIN,
        bucket,
        p,
    }) as Box<dyn Detector>)
}

/// The object a call names: the path segment under the route's last `{…}` placeholder, as
/// a number or a hash. `None` when the route has no placeholder or the path does not line up.
pub fn object_id(route: &str, path: &str) -> Option<u64> {
    let template = route.split_once(' ').map_or(route, |(_, p)| p).as_bytes();
    let trim = |b: &[u8]| -> usize { b.len() - b.iter().rev().take_while(|&&c| c == b'/').count() };
    let (t, p) = (&template[..trim(template)], &path.as_bytes()[..trim(path.as_bytes())]);
    // walk both a segment at a time (segments are a few bytes: a plain split, not memchr);
    // the id is the path's segment under the last `{…}`, and both must end together
    let (mut ts, mut ps) = (t.split(|&c| c == b'/'), p.split(|&c| c == b'/'));
    let mut id: Option<&[u8]> = None;
    loop {
        match (ts.next(), ps.next()) {
            (Some(seg), Some(at)) => {
                if seg.len() > 1 && seg[0] == b'{' && seg[seg.len() - 1] == b'}' && !at.is_empty() {
                    id = Some(at);
                }
            }
            (None, None) => break,
            _ => return None,
        }
    }
    Some(id_value(id?))
}

/// An id segment as a number, or hashed with [`HASHED`] when it is not one.
fn id_value(id: &[u8]) -> u64 {
    if id.len() <= 18 && id.iter().all(u8::is_ascii_digit) {
        return id.iter().fold(0u64, |n, d| n * 10 + (d - b'0') as u64);
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h | HASHED
}

/// Share of the numeric ids that have a neighbour (± 1) among them; 0 without numeric ids.
fn sequential_share(ids: &Ids) -> f64 {
    let mut nums: Vec<u64> = ids.numeric().collect();
    if nums.len() < 2 {
        return 0.0;
    }
    nums.sort_unstable();
    let with_neighbour = (0..nums.len())
        .filter(|&i| (i > 0 && nums[i] - nums[i - 1] == 1) || (i + 1 < nums.len() && nums[i + 1] - nums[i] == 1))
        .count();
    with_neighbour as f64 / ids.len() as f64
}

impl ObjectEnumeration {
    /// The bytes that name `ev`'s caller under `kind`, without formatting: the fingerprint's
    /// bytes, the address's octets; `None` for a caller named by text (see [`Self::key`]).
    fn caller_bytes(kind: CallerKind, ev: &Event, buf: &mut [u8; 17]) -> Option<usize> {
        let from = |bytes: &[u8], buf: &mut [u8; 17]| {
            let n = bytes.len().min(16);
            buf[..n].copy_from_slice(&bytes[..n]);
            n
        };
        match kind {
            CallerKind::Principal => ev.token_fingerprint.map(|fp| from(&fp.0, buf)),
            CallerKind::SourceIp => match ev.source_ip?.to_canonical() {
                std::net::IpAddr::V4(a) => Some(from(&a.octets(), buf)),
                std::net::IpAddr::V6(a) => Some(from(&a.octets(), buf)),
            },
        }
    }

    /// The state key of `ev`'s caller under `kind` on `route`.
    fn key(kind: CallerKind, ev: &Event, route: &str) -> Option<u128> {
        let mut buf = [0u8; 17];
        if let Some(n) = Self::caller_bytes(kind, ev, &mut buf) {
            return Some(key128(&[&[kind as u8], &buf[..n], route.as_bytes()]));
        }
        if kind == CallerKind::SourceIp {
            return None; // no address: nothing to count under it
        }
        // a credential id, a principal or a client id: hashed as written, prefixed by what it is
        let (tag, text) = match (&ev.credential_id, &ev.principal, &ev.client_id) {
            (Some(c), ..) => (b'c', c),
            (None, Some(p), _) => (b'p', p),
            (None, None, Some(c)) => (b'k', c),
            _ => return None,
        };
        Some(key128(&[&[kind as u8, tag], text.as_bytes(), route.as_bytes()]))
    }

    /// The caller `ev` counts for under `kind`, prefixed so that kinds never share a key.
    fn caller(kind: CallerKind, ev: &Event) -> Option<String> {
        match kind {
            CallerKind::Principal => {
                ev.principal_entity().or_else(|| ev.client_id.as_ref().map(|c| format!("client:{c}")))
            }
            CallerKind::SourceIp => ev.source_ip.map(|ip| ip.to_canonical().to_string()),
        }
    }

    /// The object `ev` names, if its route has one: what every key of the event shares.
    fn object(ev: &Event) -> Option<(&str, &str, u64)> {
        let (route, path) = (ev.route.as_deref()?, ev.path.as_deref()?);
        if !route.contains('{') {
            return None;
        }
        Some((route, path, object_id(route, path)?))
    }

    fn observe(&mut self, kind: CallerKind, ev: &Event, object: (&str, &str, u64), out: &mut Vec<Finding>) {
        let (route, path, id) = object;
        let Some(key) = Self::key(kind, ev, route) else { return };
        let denied = ev.status.is_some_and(|s| self.p.denied_statuses.contains(&s));
        let (window, bucket) = (self.p.window.0, self.bucket);
        let mut made = false;
        let st = self.state.entry(&key, ev.ts, || {
            made = true;
            KeyState::default()
        });
        if made {
            self.routes.entry(route, ev.ts, || ());
        }
        st.calls.add(ev.ts, denied, window, bucket);
        if st.calls.total() == 1 {
            st.first = ev.ts;
        }
        let new = st.ids.insert(id, ev.ts, window);
        st.client.observe(ev, kind == CallerKind::Principal && ev.token_fingerprint.is_some());
        if ev.token_fingerprint.is_some() {
            st.fingerprint = ev.token_fingerprint;
        }
        if !new || st.ids.len() < self.p.min_distinct_ids || ev.ts < st.quiet_until {
            return;
        }
        let denied_share = st.calls.hits() as f64 / st.calls.total().max(1) as f64;
        let refused = denied_share >= self.p.min_denied_share;
        if !refused {
            if ev.ts < st.next_sequence_check {
                return;
            }
            st.next_sequence_check = ev.ts + bucket;
        }
        st.ids.expire(ev.ts, window);
        let distinct = st.ids.len();
        if distinct < self.p.min_distinct_ids {
            return;
        }
        let sequential = sequential_share(&st.ids);
        let why = if refused {
            format!("{:.0}% of the calls refused", denied_share * 100.0)
        } else if sequential >= self.p.min_sequential_share {
            format!("{:.0}% of the ids sequential", sequential * 100.0)
        } else {
            if sequential < self.p.min_sequential_share / 2.0 {
                // far from a walk (a batch client's scattered ids): sort again in four
                // buckets, not the next one. A walk among them is found at most three buckets
                // later (a minute with the default window): the sort was a fifth of this
                // detector's cost on the guard's input.
                st.next_sequence_check = ev.ts + 4 * bucket;
            }
            return;
        };
        let Some(caller) = Self::caller(kind, ev) else { return };
        let entity = match kind {
            CallerKind::SourceIp => Entity::new(EntityKind::SourceIp, caller.clone()),
            CallerKind::Principal => match caller.strip_prefix("client:") {
                Some(c) if ev.principal_entity().is_none() => Entity::new(EntityKind::ClientId, c),
                _ => Entity::new(EntityKind::Token, caller.clone()),
            },
        };
        let numeric: Vec<u64> = st.ids.numeric().collect();
        let mut evidence = serde_json::Map::new();
        evidence.insert("route".into(), json!(route));
        evidence.insert("distinct_ids".into(), json!(distinct));
        evidence.insert("distinct_ids_capped".into(), json!(distinct >= MAX_IDS));
        evidence.insert("requests".into(), json!(st.calls.total()));
        evidence.insert("refused".into(), json!(st.calls.hits()));
        evidence.insert("sequential_share".into(), json!((sequential * 100.0).round() / 100.0));
        if let (Some(lo), Some(hi)) = (numeric.iter().min(), numeric.iter().max()) {
            evidence.insert("id_range".into(), json!([lo, hi]));
        }
        evidence.insert("last_path".into(), json!(path));
        evidence.insert("limit".into(), json!(self.p.min_distinct_ids));
        let who = match kind {
            CallerKind::SourceIp => format!("source {caller}"),
            CallerKind::Principal if PrincipalKind::of(&caller) == PrincipalKind::Token => format!("token {caller}"),
            CallerKind::Principal => caller.replacen(':', " ", 1),
        };
        out.push(Finding {
            within: Some(route.to_string()),
            entity,
            client_id: st.client.id.clone(),
            client_id_source: st.client.source,
            token_fingerprint: st.fingerprint,
            window_start: st.first.max(ev.ts - window),
            window_end: ev.ts,
            summary: format!(
                "{who} requested {distinct} distinct objects of {route} in {} ({why}, limit {})",
                human_duration(window),
                self.p.min_distinct_ids
            ),
            evidence,
        });
        st.quiet_until = ev.ts + window;
    }
}

impl Detector for ObjectEnumeration {
    /// The principal's calls are whole on the token shard (on the client's shard for a client
    /// id without a principal), an address's on the source shard.
    fn shard_key(&self, ev: &Event, shard: Shard) -> Option<String> {
        object_id(ev.route.as_deref()?, ev.path.as_deref()?)?;
        let counts = |k: CallerKind| self.p.keys.contains(&k);
        match shard {
            Shard::Token if counts(CallerKind::Principal) => ev.principal_entity(),
            Shard::ClientId if counts(CallerKind::Principal) && ev.principal_entity().is_none() => {
                ev.client_id.as_deref().map(str::to_string)
            }
            Shard::Source if counts(CallerKind::SourceIp) => Self::caller(CallerKind::SourceIp, ev),
            _ => None,
        }
    }

    fn on_event(&mut self, ev: &Event, out: &mut Vec<Finding>) {
        self.now = self.now.max(ev.ts);
        let Some(object) = Self::object(ev) else { return };
        for i in 0..self.p.keys.len() {
            let kind = self.p.keys[i];
            self.observe(kind, ev, object, out);
        }
    }

    fn on_shard_event(&mut self, ev: &Event, shard: Shard, out: &mut Vec<Finding>) {
        self.now = self.now.max(ev.ts);
        let kind = match shard {
            Shard::Token | Shard::ClientId => CallerKind::Principal,
            Shard::Source => CallerKind::SourceIp,
            Shard::Route | Shard::Group => return,
        };
        if let (true, Some(object)) = (self.p.keys.contains(&kind), Self::object(ev)) {
            self.observe(kind, ev, object, out);
        }
    }

    fn on_watermark(&mut self, wm: Millis, _out: &mut Vec<Finding>) {
        self.now = self.now.max(wm);
        self.state.sweep(wm);
    }

    fn stats(&self) -> StateStats {
        self.state.stats()
    }

    /// A caller (a token, credential or principal; a client without one; an address): per
    /// route it called with object ids, the distinct objects, calls and refusals in the window
    /// open now, and how sequential the ids are, against the limits.
    fn describe(&self, entity: &Entity) -> Option<serde_json::Value> {
        let caller = Caller::of(entity)?;
        if !self.p.keys.contains(&caller.kind()) {
            return None;
        }
        let (now, window) = (self.now, self.p.window.0);
        let mut routes: Vec<(&String, &KeyState)> =
            self.routes.iter().filter_map(|(r, _)| self.state.get(&caller.key(r)).map(|st| (r, st))).collect();
        if routes.is_empty() {
            return None;
        }
        routes.sort_by(|a, b| a.0.cmp(b.0));
        let routes: Vec<serde_json::Value> = routes
            .into_iter()
            .map(|(route, st)| {
                let from = now.saturating_sub(window);
                let live = Ids(st.ids.0.iter().filter(|e| e.1 > from).copied().collect());
                let (total, refused, _) = st.calls.within(now, window);
                let numeric: Vec<u64> = live.numeric().collect();
                let mut o = serde_json::Map::new();
                o.insert("route".into(), json!(route));
                o.insert("distinct_ids".into(), json!(live.len()));
                o.insert("distinct_ids_capped".into(), json!(live.len() >= MAX_IDS));
                o.insert("requests".into(), json!(total));
                o.insert("refused".into(), json!(refused));
                o.insert("sequential_share".into(), json!((sequential_share(&live) * 100.0).round() / 100.0));
                if let (Some(lo), Some(hi)) = (numeric.iter().min(), numeric.iter().max()) {
                    o.insert("id_range".into(), json!([lo, hi]));
                }
                if total > 0 {
                    // as an alert's window starts: the caller's first call, at most a window ago
                    o.insert("counting_since".into(), json!(format_ts(st.first.max(from))));
                }
                if st.quiet_until > now {
                    o.insert("reported_until".into(), json!(format_ts(st.quiet_until)));
                }
                if let Some(c) = &st.client.id {
                    o.insert("client_id".into(), json!(c));
                }
                serde_json::Value::Object(o)
            })
            .collect();
        Some(json!({
            "window_ms": window,
            "as_of": format_ts(now),
            "min_distinct_ids": self.p.min_distinct_ids,
            "min_denied_share": self.p.min_denied_share,
            "min_sequential_share": self.p.min_sequential_share,
            "routes": routes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::{detector_from_toml, ev, run};

    fn det() -> Box<dyn Detector> {
        detector_from_toml("object_enumeration", "")
    }

    /// The segment walk as it was written first (with `memchr`), to hold the split to it.
    fn object_id_by_memchr(route: &str, path: &str) -> Option<u64> {
        let template = route.split_once(' ').map_or(route, |(_, p)| p).as_bytes();
        let trim = |b: &[u8]| -> usize { b.len() - b.iter().rev().take_while(|&&c| c == b'/').count() };
        let (t, p) = (&template[..trim(template)], &path.as_bytes()[..trim(path.as_bytes())]);
        let (mut i, mut j) = (0, 0);
        let mut id: Option<&[u8]> = None;
        loop {
            let te = memchr::memchr(b'/', &t[i..]).map_or(t.len(), |x| i + x);
            let pe = memchr::memchr(b'/', &p[j..]).map_or(p.len(), |x| j + x);
            let seg = &t[i..te];
            if seg.len() > 1 && seg[0] == b'{' && seg[seg.len() - 1] == b'}' && pe > j {
                id = Some(&p[j..pe]);
            }
            match (te == t.len(), pe == p.len()) {
                (true, true) => break,
                (false, false) => (i, j) = (te + 1, pe + 1),
                _ => return None,
            }
        }
        id.map(id_value)
    }

    proptest::proptest! {
        #[test]
        fn the_object_id_is_found_as_the_segment_walk_found_it(
            route in "(GET )?(/|/[a-z]{1,3}|/\\{[a-z]{0,2}\\}|\\{id\\}){0,5}",
            path in "(/|/[a-z0-9]{1,3}|/7|[0-9]{1,4}){0,6}",
        ) {
            proptest::prop_assert_eq!(object_id(&route, &path), object_id_by_memchr(&route, &path), "{} {}", route, path);
        }
    }

    #[test]
    fn the_object_id_is_the_segment_under_the_last_placeholder() {
        assert_eq!(object_id("GET /v1/orders/{id}", "/v1/orders/1234"), Some(1234));
        assert_eq!(object_id("GET /v1/orders/{id}/items", "/v1/orders/77/items"), Some(77));
        assert_eq!(object_id("GET /pets/{petId}", "/pets/9/"), Some(9));
        let uuid = object_id("GET /v1/users/{id}", "/v1/users/5f0c6a2e-8d1b-4c1e-9a7e-2b3c4d5e6f70").unwrap();
        assert_ne!(uuid & HASHED, 0, "a non-numeric id is hashed");
        assert_eq!(object_id("GET /v1/orders", "/v1/orders"), None, "no placeholder");
        assert_eq!(object_id("GET /v1/orders/{id}", "/v1/orders/1/extra"), None, "does not line up");
    }

    /// `n` calls by token 7 from one address to `GET /v1/orders/{id}`, the i-th for `id(i)`.
    fn walk(n: i64, id: &dyn Fn(i64) -> u64, status: &dyn Fn(i64) -> u16) -> Vec<Event> {
        (0..n)
            .map(|i| {
                ev(i * 3_000)
                    .ip("198.51.100.40")
                    .client("shop-web")
                    .token(7)
                    .get(&format!("/v1/orders/{}", id(i)))
                    .status(status(i))
                    .build()
            })
            .collect()
    }

    #[test]
    fn walking_other_peoples_orders_refused_fires_on_the_token_and_the_address() {
        let f = run(&mut *det(), &walk(60, &|i| 480_000 + (i as u64) * 37 % 9000, &|_| 403));
        let kinds: Vec<EntityKind> = f.iter().map(|f| f.entity.kind).collect();
        assert_eq!(kinds, [EntityKind::Token, EntityKind::SourceIp], "{f:#?}");
        assert_eq!(f[0].entity.id, Fingerprint([7; 8]).to_hex());
        assert_eq!(f[0].within.as_deref(), Some("GET /v1/orders/{id}"));
        assert!(f[0].summary.contains("40 distinct objects"), "{}", f[0].summary);
        assert!(f[0].summary.contains("100% of the calls refused"), "{}", f[0].summary);
    }

    #[test]
    fn counting_through_ids_fires_even_when_the_api_answers_200() {
        // the API has the BOLA flaw: every id answers, the caller counts 100200, 100201, ...
        let f = run(&mut *det(), &walk(60, &|i| 100_200 + i as u64, &|_| 200));
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(f[0].summary.contains("of the ids sequential"), "{}", f[0].summary);
        assert_eq!(f[0].evidence["id_range"], json!([100_200, 100_239]));
    }

    #[test]
    fn a_batch_client_syncing_its_own_objects_does_not_fire() {
        // 3 calls a second for 10 minutes over its own 5,000 objects, all answered
        let events = walk(2_000, &|i| 300_000 + (i as u64 * 7_919) % 5_000, &|i| if i % 50 == 0 { 404 } else { 200 });
        let events: Vec<Event> = events
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e.ts = i as i64 * 300;
                e
            })
            .collect();
        assert!(run(&mut *det(), &events).is_empty());
    }

    #[test]
    fn a_user_browsing_and_a_rotating_key_do_not_fire() {
        // 30 products, some not found: under the limit
        assert!(run(&mut *det(), &walk(30, &|i| 1000 + i as u64, &|_| 404)).is_empty());
        // 60 refused calls spread over two tokens (a key rotating mid-way) and two carriers:
        // 30 distinct objects each, neither reaches the limit on its own
        let events: Vec<Event> = walk(60, &|i| 777_000 + (i as u64 * 131) % 5000, &|_| 404)
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                e.token_fingerprint = Some(Fingerprint([if i < 30 { 8 } else { 9 }; 8]));
                e.source_ip = Some(if i < 30 { "100.64.1.9" } else { "172.56.3.4" }.parse().unwrap());
                e
            })
            .collect();
        assert!(run(&mut *det(), &events).is_empty());
    }

    #[test]
    fn an_enumeration_through_a_proxy_pool_is_found_on_the_principal_only() {
        // one principal (Traefik: a user name), each call from another address
        let events: Vec<Event> = (0..60)
            .map(|i| {
                ev(i * 3_000)
                    .ip(&format!("{}.20.30.{}", 40 + i % 50, 1 + i))
                    .principal("user:mallory")
                    .get(&format!("/v1/users/{}", 5000 + i * 13))
                    .status(404)
                    .build()
            })
            .collect();
        let f = run(&mut *det(), &events);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].entity, Entity::new(EntityKind::Token, "user:mallory"));
        assert!(f[0].summary.starts_with("user mallory requested 40 distinct objects"), "{}", f[0].summary);
    }

    #[test]
    fn describe_shows_the_objects_a_caller_walked_per_route() {
        use crate::detectors::testing::{describe_twice, feed};
        let mut d = det();
        let mut events = walk(30, &|i| 100_200 + i as u64, &|i| if i % 3 == 0 { 404 } else { 200 });
        events.push(
            ev(95_000)
                .ip("198.51.100.40")
                .token(7)
                .get("/v1/users/5f0c6a2e-8d1b-4c1e-9a7e-2b3c4d5e6f70")
                .status(200)
                .build(),
        );
        events.push(ev(96_000).principal("user:mallory").get("/v1/orders/5").status(403).build());
        events.push(ev(97_000).client("svc").get("/v1/orders/6").status(200).build());
        assert!(feed(&mut *d, &events).is_empty(), "under the limit");
        let token = Entity::new(EntityKind::Token, Fingerprint([7; 8]).to_hex());
        let got = describe_twice(&*d, &token).expect("held");
        assert_eq!(got["min_distinct_ids"], json!(40));
        let routes = got["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 2, "{got:#}");
        assert_eq!(routes[0]["route"], json!("GET /v1/orders/{id}"));
        assert_eq!(routes[0]["distinct_ids"], json!(30));
        assert_eq!(routes[0]["requests"], json!(30));
        assert_eq!(routes[0]["refused"], json!(10));
        assert_eq!(routes[0]["sequential_share"], json!(1.0));
        assert_eq!(routes[0]["id_range"], json!([100_200, 100_229]));
        assert_eq!(routes[0]["counting_since"], json!("1970-01-01T00:00:00Z"));
        assert_eq!(routes[0]["client_id"], json!("shop-web"));
        assert_eq!(routes[1]["route"], json!("GET /v1/users/{id}"));
        assert_eq!(routes[1]["distinct_ids"], json!(1));
        assert!(routes[1].get("id_range").is_none(), "a hashed id has no range");
        // the same walk under the address, and the other callers under theirs
        let ip = describe_twice(&*d, &Entity::new(EntityKind::SourceIp, "198.51.100.40")).expect("held");
        assert_eq!(ip["routes"][0]["distinct_ids"], json!(30));
        let user = describe_twice(&*d, &Entity::new(EntityKind::Token, "user:mallory")).expect("held");
        assert_eq!(user["routes"][0]["refused"], json!(1));
        let client = describe_twice(&*d, &Entity::new(EntityKind::ClientId, "svc")).expect("held");
        assert_eq!(client["routes"][0]["id_range"], json!([6, 6]));
        for never in [
            Entity::new(EntityKind::Token, Fingerprint([8; 8]).to_hex()),
            Entity::new(EntityKind::SourceIp, "192.0.2.1"),
            Entity::new(EntityKind::ClientId, "shop-web"),
            Entity::new(EntityKind::Route, "GET /v1/orders/{id}"),
        ] {
            assert_eq!(describe_twice(&*d, &never), None, "{never:?}");
        }
        // a window later: held, nothing in the window
        d.on_watermark(97_000 + 600_000, &mut Vec::new());
        let later = describe_twice(&*d, &token).expect("held");
        assert_eq!(
            (later["routes"][0]["distinct_ids"].clone(), later["routes"][0]["requests"].clone()),
            (json!(0), json!(0))
        );
    }

    #[test]
    fn params_out_of_range_are_reported_with_their_field() {
        let file = crate::detectors::testing::file_from_toml(
            "object_enumeration",
            "min_distinct_ids = 1000\nmin_denied_share = 2.0\nkeys = []",
        );
        let fields: Vec<String> =
            build(&file, Limits::default()).err().expect("invalid").into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["params.keys", "params.min_distinct_ids", "params.min_denied_share"]);
    }
}

//! What the scrubber removed, by kind and by place class. Both are closed sets
//! (built-in kinds plus the kinds named in the config), so they are safe as
//! Prometheus label values. No secret or fingerprint is ever kept here.

use std::collections::BTreeMap;

/// Where a secret was found, as a bounded label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlaceClass {
    /// A header value (`Authorization: …`, `"x-api-key": …`).
    Header,
    /// A query-string parameter.
    Query,
    /// A cookie value (`Cookie`, `Set-Cookie`).
    Cookie,
    /// A JSON field found by its key.
    JsonField,
    /// `name=value` / `name: value` in text (logfmt, env, config).
    KeyValue,
    /// Credentials inside a URL (`scheme://user:pass@host`).
    Url,
    /// Found by its content anywhere else in the line.
    Text,
    /// The request path (via `scrub_value`).
    Path,
    /// The user agent (via `scrub_value`).
    UserAgent,
    /// The host (via `scrub_value`).
    Host,
    /// Any other single value.
    Other,
}

impl PlaceClass {
    pub const ALL: [PlaceClass; 11] = [
        PlaceClass::Header,
        PlaceClass::Query,
        PlaceClass::Cookie,
        PlaceClass::JsonField,
        PlaceClass::KeyValue,
        PlaceClass::Url,
        PlaceClass::Text,
        PlaceClass::Path,
        PlaceClass::UserAgent,
        PlaceClass::Host,
        PlaceClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PlaceClass::Header => "header",
            PlaceClass::Query => "query",
            PlaceClass::Cookie => "cookie",
            PlaceClass::JsonField => "json_field",
            PlaceClass::KeyValue => "key_value",
            PlaceClass::Url => "url",
            PlaceClass::Text => "text",
            PlaceClass::Path => "path",
            PlaceClass::UserAgent => "user_agent",
            PlaceClass::Host => "host",
            PlaceClass::Other => "other",
        }
    }

    /// The class of a `scrub_value` place name (`path`, `user_agent`, `header:x`, ...).
    pub fn of_place(place: &str) -> PlaceClass {
        let head = place.split(':').next().unwrap_or("");
        match head {
            "path" => PlaceClass::Path,
            "user_agent" | "ua" => PlaceClass::UserAgent,
            "host" => PlaceClass::Host,
            "header" => PlaceClass::Header,
            "query" => PlaceClass::Query,
            "cookie" => PlaceClass::Cookie,
            "json" | "body" => PlaceClass::JsonField,
            _ => PlaceClass::Other,
        }
    }

    fn index(self) -> usize {
        PlaceClass::ALL.iter().position(|p| *p == self).expect("listed")
    }
}

/// Counters the scrubber updates; the caller owns them (one per worker) and
/// publishes them as metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrubStats {
    /// Lines (or values) looked at.
    pub lines: u64,
    /// Lines in which at least one secret was replaced.
    pub lines_changed: u64,
    /// Bytes looked at.
    pub bytes: u64,
    by_kind: BTreeMap<&'static str, u64>,
    by_place: [u64; PlaceClass::ALL.len()],
    by_pair: BTreeMap<(&'static str, PlaceClass), u64>,
}

impl ScrubStats {
    pub(crate) fn record(&mut self, kind: &'static str, place: PlaceClass) {
        *self.by_kind.entry(kind).or_insert(0) += 1;
        self.by_place[place.index()] += 1;
        *self.by_pair.entry((kind, place)).or_insert(0) += 1;
    }

    /// `(kind, place class, count)` for every pair seen: the metric's label sets.
    pub fn by_kind_and_place(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        self.by_pair.iter().map(|((k, p), v)| (*k, p.as_str(), *v))
    }

    /// Secrets replaced, all kinds.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// `(kind, count)` for every kind seen, sorted by kind.
    pub fn by_kind(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.by_kind.iter().map(|(k, v)| (*k, *v))
    }

    /// `(place class, count)` for every class, zeros included.
    pub fn by_place(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        PlaceClass::ALL.iter().map(|p| (p.as_str(), self.by_place[p.index()]))
    }

    pub fn kind_count(&self, kind: &str) -> u64 {
        self.by_kind.get(kind).copied().unwrap_or(0)
    }

    pub fn place_count(&self, place: PlaceClass) -> u64 {
        self.by_place[place.index()]
    }

    /// Adds another worker's counters.
    pub fn merge(&mut self, other: &ScrubStats) {
        self.lines += other.lines;
        self.lines_changed += other.lines_changed;
        self.bytes += other.bytes;
        for (k, v) in &other.by_kind {
            *self.by_kind.entry(k).or_insert(0) += v;
        }
        for (a, b) in self.by_place.iter_mut().zip(other.by_place.iter()) {
            *a += b;
        }
        for (k, v) in &other.by_pair {
            *self.by_pair.entry(*k).or_insert(0) += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_merges() {
        let mut a = ScrubStats::default();
        a.record("jwt", PlaceClass::Query);
        a.record("jwt", PlaceClass::Header);
        let mut b = ScrubStats::default();
        b.record("password", PlaceClass::Url);
        a.merge(&b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.kind_count("jwt"), 2);
        assert_eq!(a.place_count(PlaceClass::Url), 1);
        let pairs: Vec<_> = a.by_kind_and_place().collect();
        assert_eq!(pairs, vec![("jwt", "header", 1), ("jwt", "query", 1), ("password", "url", 1)]);
        assert_eq!(a.by_place().count(), PlaceClass::ALL.len());
        assert_eq!(PlaceClass::of_place("header:authorization"), PlaceClass::Header);
    }
}

//! Which normalized fields a record did not give, and why — for the
//! `normalize_missing_fields_total{gateway, field, why}` counter. All three
//! labels are closed sets ([`GATEWAYS`], [`Field::ALL`], [`Why::ALL`]), so the
//! counter's cardinality is fixed whatever the input. What each gateway's default
//! layout never writes is declared with the gateway, in [`super::formats`].
//!
//! `why` tells the operator what to do about it:
//! - `not_in_format`: the gateway's default log layout has no such field (NGINX
//!   `combined` has no latency; Traefik drops request headers unless told to
//!   keep them; AWS's example template has no latency). A log-format change adds it.
//! - `not_in_record`: the format carries it, this record had none: an anonymous
//!   call (no identity), a request the gateway answered itself (no upstream
//!   latency), a `-` or a value gatewatch could not read.

use super::formats::GATEWAYS;
use crate::event::Event;

/// A normalized field a record may lack. `ts` is not here: without it a record
/// is rejected, never an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    ClientId,
    Subject,
    /// Neither a token fingerprint nor a credential id.
    Token,
    SourceIp,
    Method,
    Host,
    Path,
    Status,
    LatencyMs,
    UpstreamLatencyMs,
    BytesSent,
    UserAgent,
    RequestId,
}

impl Field {
    pub const ALL: [Field; 13] = [
        Field::ClientId,
        Field::Subject,
        Field::Token,
        Field::SourceIp,
        Field::Method,
        Field::Host,
        Field::Path,
        Field::Status,
        Field::LatencyMs,
        Field::UpstreamLatencyMs,
        Field::BytesSent,
        Field::UserAgent,
        Field::RequestId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::ClientId => "client_id",
            Field::Subject => "subject",
            Field::Token => "token",
            Field::SourceIp => "source_ip",
            Field::Method => "method",
            Field::Host => "host",
            Field::Path => "path",
            Field::Status => "status",
            Field::LatencyMs => "latency_ms",
            Field::UpstreamLatencyMs => "upstream_latency_ms",
            Field::BytesSent => "bytes_sent",
            Field::UserAgent => "user_agent",
            Field::RequestId => "request_id",
        }
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }

    /// The bits of the fields `ev` lacks, one per field (straight-line: this runs per event).
    fn lacking(ev: &Event) -> u16 {
        let lacks = |field: Field, present: bool| if present { 0 } else { field.bit() };
        lacks(Field::ClientId, ev.client_id.is_some())
            | lacks(Field::Subject, ev.subject.is_some())
            | lacks(Field::Token, ev.token_fingerprint.is_some() || ev.credential_id.is_some())
            | lacks(Field::SourceIp, ev.source_ip.is_some())
            | lacks(Field::Method, ev.method.is_some())
            | lacks(Field::Host, ev.host.is_some())
            | lacks(Field::Path, ev.path.is_some())
            | lacks(Field::Status, ev.status.is_some())
            | lacks(Field::LatencyMs, ev.latency_ms.is_some())
            | lacks(Field::UpstreamLatencyMs, ev.upstream_latency_ms.is_some())
            | lacks(Field::BytesSent, ev.bytes_sent.is_some())
            | lacks(Field::UserAgent, ev.user_agent.is_some())
            | lacks(Field::RequestId, ev.request_id.is_some())
    }
}

/// Why a field is missing (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Why {
    NotInFormat,
    NotInRecord,
}

impl Why {
    pub const ALL: [Why; 2] = [Why::NotInFormat, Why::NotInRecord];

    pub fn as_str(self) -> &'static str {
        match self {
            Why::NotInFormat => "not_in_format",
            Why::NotInRecord => "not_in_record",
        }
    }

    /// Why `field` is missing, given the bits of the fields the gateway's layout never writes.
    fn of(field: Field, not_in_format: u16) -> Why {
        if not_in_format & field.bit() != 0 {
            Why::NotInFormat
        } else {
            Why::NotInRecord
        }
    }

    /// The reason in words, for a person reading a summary.
    pub fn describe(self) -> &'static str {
        match self {
            Why::NotInFormat => "the log format does not write it",
            Why::NotInRecord => "absent from the record",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Missing {
    pub field: Field,
    pub why: Why,
}

/// The bits of `fields`, one per [`Field`].
pub(super) const fn bits(fields: &[Field]) -> u16 {
    let mut b = 0u16;
    let mut i = 0;
    while i < fields.len() {
        b |= 1 << fields[i] as u16;
        i += 1;
    }
    b
}

/// The position of `gateway` in [`GATEWAYS`], the counters' index.
fn gateway_index(gateway: &str) -> Option<usize> {
    GATEWAYS.iter().position(|g| g.name == gateway)
}

/// The fields `ev` lacks, each with why.
pub fn missing_fields(ev: &Event) -> impl Iterator<Item = Missing> + '_ {
    let nif = gateway_index(ev.gateway).map_or(0, |g| GATEWAYS[g].not_in_format);
    let lacking = Field::lacking(ev);
    Field::ALL
        .into_iter()
        .filter(move |f| lacking & f.bit() != 0)
        .map(move |field| Missing { field, why: Why::of(field, nif) })
}

/// Counts of missing fields per (gateway, field, why), in fixed arrays: no
/// allocation per event, no unbounded key. The pipeline exports it as a counter.
#[derive(Clone, Debug)]
pub struct MissingCounts {
    counts: Vec<[[u64; 2]; Field::ALL.len()]>,
}

impl Default for MissingCounts {
    fn default() -> Self {
        MissingCounts { counts: vec![[[0; 2]; Field::ALL.len()]; GATEWAYS.len()] }
    }
}

impl MissingCounts {
    pub fn record(&mut self, ev: &Event) {
        let Some(g) = gateway_index(ev.gateway) else { return };
        let nif = GATEWAYS[g].not_in_format;
        let counts = &mut self.counts[g];
        let lacking = Field::lacking(ev);
        for field in Field::ALL {
            if lacking & field.bit() != 0 {
                counts[field as usize][Why::of(field, nif) as usize] += 1;
            }
        }
    }

    /// Adds the counts of `other` (another reader of the same stream).
    pub fn add(&mut self, other: &MissingCounts) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                m[0] += t[0];
                m[1] += t[1];
            }
        }
    }

    pub fn get(&self, gateway: &str, field: Field, why: Why) -> u64 {
        gateway_index(gateway).map_or(0, |g| self.counts[g][field as usize][why as usize])
    }

    /// Non-zero counts as `(gateway, field, why, count)`.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Field, Why, u64)> + '_ {
        GATEWAYS.iter().enumerate().flat_map(move |(g, gateway)| {
            Field::ALL.into_iter().flat_map(move |f| {
                Why::ALL.into_iter().filter_map(move |w| {
                    let c = self.counts[g][f as usize][w as usize];
                    (c > 0).then_some((gateway.name, f, w, c))
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Field::*;

    #[test]
    fn combined_latency_is_not_in_format_identity_is_not_in_record() {
        let ev = Event { gateway: "nginx", method: Some("GET".into()), status: Some(200), ..Default::default() };
        let m: Vec<_> = missing_fields(&ev).collect();
        assert!(m.contains(&Missing { field: LatencyMs, why: Why::NotInFormat }));
        assert!(m.contains(&Missing { field: ClientId, why: Why::NotInRecord }));
        assert!(!m.iter().any(|x| x.field == Method || x.field == Status));
        let mut c = MissingCounts::default();
        c.record(&ev);
        c.record(&ev);
        assert_eq!(c.get("nginx", LatencyMs, Why::NotInFormat), 2);
        assert_eq!(c.get("nginx", Method, Why::NotInRecord), 0);
        assert_eq!(c.iter().count(), m.len());
    }

    #[test]
    fn unknown_gateway_is_not_counted() {
        let mut c = MissingCounts::default();
        c.record(&Event { gateway: "martian", ..Default::default() });
        assert_eq!(c.iter().count(), 0);
    }

    #[test]
    fn every_declared_gateway_is_counted_with_its_own_not_in_format() {
        for gw in GATEWAYS {
            let ev = Event { gateway: gw.name, ..Default::default() };
            let mut c = MissingCounts::default();
            c.record(&ev);
            for f in Field::ALL {
                let why = if gw.never_writes(f) { Why::NotInFormat } else { Why::NotInRecord };
                assert_eq!(c.get(gw.name, f, why), 1, "{} {}", gw.name, f.as_str());
            }
            assert_eq!(c.iter().count(), Field::ALL.len(), "{}", gw.name);
        }
    }

    #[test]
    fn an_empty_event_lacks_every_field() {
        assert_eq!(Field::lacking(&Event::default()), bits(&Field::ALL), "a field is missing from `Field::lacking`");
    }
}

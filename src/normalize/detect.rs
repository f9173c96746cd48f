//! `--format auto`: tells the format of a record from a few distinctive keys,
//! by substring search on the raw bytes (no parse).

use memchr::memmem;
use std::sync::OnceLock;

use super::Format;

struct Finders {
    latencies: memmem::Finder<'static>,
    started_at: memmem::Finder<'static>,
    response_code: memmem::Finder<'static>,
    start_time: memmem::Finder<'static>,
    upstream_cluster: memmem::Finder<'static>,
    response_flags: memmem::Finder<'static>,
    downstream_remote: memmem::Finder<'static>,
}

fn finders() -> &'static Finders {
    static F: OnceLock<Finders> = OnceLock::new();
    F.get_or_init(|| Finders {
        latencies: memmem::Finder::new(b"\"latencies\""),
        started_at: memmem::Finder::new(b"\"started_at\""),
        response_code: memmem::Finder::new(b"\"response_code\""),
        start_time: memmem::Finder::new(b"\"start_time\""),
        upstream_cluster: memmem::Finder::new(b"\"upstream_cluster\""),
        response_flags: memmem::Finder::new(b"\"response_flags\""),
        downstream_remote: memmem::Finder::new(b"\"downstream_remote_address\""),
    })
}

/// The format of one record, or `None` when nothing matches.
pub fn detect(rec: &[u8]) -> Option<Format> {
    let first = *rec.first()?;
    if first != b'{' {
        return None;
    }
    let f = finders();
    if f.latencies.find(rec).is_some() && f.started_at.find(rec).is_some() {
        return Some(Format::Kong);
    }
    if f.response_code.find(rec).is_some()
        && (f.start_time.find(rec).is_some()
            || f.upstream_cluster.find(rec).is_some()
            || f.response_flags.find(rec).is_some()
            || f.downstream_remote.find(rec).is_some())
    {
        return Some(Format::Envoy);
    }
    Some(Format::Generic)
}

//! The marker that replaces a secret: `[REDACTED:<kind>:<16 hex>]`.
//!
//! Markers hold only a kind name (`[a-z0-9_]`) and a fingerprint, so they are
//! safe inside JSON strings, query strings and text, and are recognised and
//! skipped when a line is scrubbed again (idempotence).

use crate::event::Fingerprint;

/// What every marker starts with.
pub const MARKER_OPEN: &str = "[REDACTED:";

/// What our markers and the usual foreign masks (`[REDACTED]`) start with.
const MASK_OPEN: &[u8] = b"[REDACTED";

/// Longest marker: `[REDACTED:` + kind (≤ 32) + `:` + 16 hex + `]`.
pub const MAX_MARKER_LEN: usize = MARKER_OPEN.len() + 32 + 1 + 16 + 1;

/// Appends the marker for `kind` and `fp` to `out`.
pub fn write_marker(out: &mut String, kind: &str, fp: Fingerprint) {
    out.push_str(MARKER_OPEN);
    out.push_str(kind);
    out.push(':');
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in fp.0 {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out.push(']');
}

/// If a marker (or a foreign `[REDACTED...]` mask) starts at `at`, the index just past it.
pub fn marker_end(b: &[u8], at: usize) -> Option<usize> {
    let rest = b.get(at..)?;
    if !rest.starts_with(MASK_OPEN) {
        return None;
    }
    let limit = rest.len().min(MAX_MARKER_LEN + 8);
    memchr::memchr(b']', &rest[..limit]).map(|i| at + i + 1)
}

/// Whether `v` holds a marker (or a foreign `[REDACTED...]` mask) anywhere. The searcher is
/// built once: `memmem::find` builds one on every call, which showed on lines with a secret.
pub fn holds_marker(v: &[u8]) -> bool {
    static MASK: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(MASK_OPEN));
    MASK.find(v).is_some()
}

/// Whether a value is (or starts with) a mask someone already applied.
pub fn is_masked(v: &[u8]) -> bool {
    v.starts_with(MASK_OPEN) || v.starts_with(b"[redacted") || v.starts_with(b"[FILTERED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_shape_and_end() {
        let mut s = String::new();
        write_marker(&mut s, "jwt", Fingerprint([0x9b, 0x1e, 0x44, 0xc0, 0x7f, 0x2a, 0x1d, 0x3e]));
        assert_eq!(s, "[REDACTED:jwt:9b1e44c07f2a1d3e]");
        let line = format!("a={s}&b=1");
        assert_eq!(marker_end(line.as_bytes(), 2), Some(2 + s.len()));
        assert_eq!(marker_end(b"[REDACTED]", 0), Some(10));
        assert_eq!(marker_end(b"[REDACTE", 0), None);
        assert!(is_masked(b"[REDACTED]"));
        assert!(!is_masked(b"REDACTED"));
        assert!(holds_marker(line.as_bytes()) && holds_marker(b"k=[REDACTED]"));
        assert!(!holds_marker(b"k=[REDACTE"));
    }
}

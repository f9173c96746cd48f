//! The marker that replaces a secret: `[REDACTED:<kind>:<16 hex>]`.
//!
//! Markers hold only a kind name (`[a-z0-9_]`) and a fingerprint, so they are
//! safe inside JSON strings, query strings and text, and are recognised and
//! skipped when a line is scrubbed again (idempotence).

use crate::event::Fingerprint;

/// What every marker starts with.
pub const MARKER_OPEN: &str = "[REDACTED:";

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
    if !rest.starts_with(b"[REDACTED") {
        return None;
    }
    let limit = rest.len().min(MAX_MARKER_LEN + 8);
    memchr::memchr(b']', &rest[..limit]).map(|i| at + i + 1)
}

/// Whether a value is (or starts with) a mask someone already applied.
pub fn is_masked(v: &[u8]) -> bool {
    v.starts_with(b"[REDACTED") || v.starts_with(b"[redacted") || v.starts_with(b"[FILTERED")
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
    }
}

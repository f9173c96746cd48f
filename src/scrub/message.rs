//! Scrubbing a whole message (a Kafka record value, which may hold several
//! lines) for the copies gatewatch writes out: the scrubbed-copy topic and the
//! record inside a dead letter.

use std::borrow::Cow;

use super::{ScrubStats, Scrubber};

/// Scrubs every line of `msg` (a PEM key may span lines). Bytes that are not
/// UTF-8 are scrubbed after lossy decoding (each bad sequence becomes U+FFFD),
/// so the copy is always valid UTF-8. Borrowed when nothing changed.
pub fn scrub_message<'a>(sc: &Scrubber, msg: &'a [u8], stats: &mut ScrubStats) -> Cow<'a, str> {
    let text = String::from_utf8_lossy(msg);
    if !text.contains('\n') {
        return match text {
            Cow::Borrowed(t) => sc.scrub_line(t, stats),
            Cow::Owned(t) => Cow::Owned(sc.scrub_line(&t, stats).into_owned()),
        };
    }
    let mut stream = sc.stream();
    let mut out = String::with_capacity(text.len());
    let mut changed = matches!(text, Cow::Owned(_));
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let l = stream.scrub(line, stats);
        changed |= matches!(l, Cow::Owned(_));
        out.push_str(&l);
    }
    match text {
        Cow::Borrowed(t) if !changed => Cow::Borrowed(t),
        _ => Cow::Owned(out),
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, and never inside a
/// `[REDACTED:…]` marker (a half marker would read like a secret's start).
pub fn truncate_scrubbed(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let head = &s[..end];
    if let Some(open) = head.rfind("[REDACTED:") {
        if !head[open..].contains(']') {
            return (&s[..open], true);
        }
    }
    (head, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrub::Fingerprinter;

    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImNsaWVudF9pZCI6Im1vYmlsZSJ9.c2lnbmF0dXJlLWJ5dGVzLWZvci10ZXN0aW5nLW9ubHk";

    fn sc() -> Scrubber {
        Scrubber::with_defaults(Fingerprinter::new(b"message-test-key-0123"))
    }

    #[test]
    fn clean_message_is_borrowed_and_secrets_are_replaced_on_every_line() {
        let sc = sc();
        let mut st = ScrubStats::default();
        let clean = br#"{"request":{"uri":"/v1/items"}}"#;
        assert!(matches!(scrub_message(&sc, clean, &mut st), Cow::Borrowed(_)));
        let two = format!("{{\"authorization\":\"Bearer {JWT}\"}}\nGET /x?access_token={JWT} HTTP/1.1");
        let out = scrub_message(&sc, two.as_bytes(), &mut st);
        assert!(!out.contains(JWT), "{out}");
        assert_eq!(out.lines().count(), 2);
        assert!(st.total() >= 2);
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily_and_still_scrubbed() {
        let sc = sc();
        let mut st = ScrubStats::default();
        let mut msg = b"\xff\xfe token=".to_vec();
        msg.extend_from_slice(JWT.as_bytes());
        let out = scrub_message(&sc, &msg, &mut st);
        assert!(out.starts_with('\u{FFFD}'));
        assert!(!out.contains(JWT), "{out}");
    }

    #[test]
    fn truncation_never_splits_a_character_or_a_marker() {
        assert_eq!(truncate_scrubbed("abc", 10), ("abc", false));
        assert_eq!(truncate_scrubbed("aé", 2), ("a", true));
        let s = "x=[REDACTED:jwt:0123456789abcdef] y";
        assert_eq!(truncate_scrubbed(s, 12), ("x=", true));
        assert_eq!(truncate_scrubbed(s, 33), ("x=[REDACTED:jwt:0123456789abcdef]", true));
        assert_eq!(truncate_scrubbed(s, 32), ("x=", true));
    }
}

//! `gatewatch scrub`: lines in, the same lines with every secret replaced out.
//!
//! Input is read in large chunks and cut into lines where it lies, so a line costs no copy and
//! no call of its own to the reader. A chunk of complete lines is checked as UTF-8 once; a line
//! that is not UTF-8 is scrubbed as text after lossy decoding. Runs of lines the scrubber
//! leaves alone are written out in one piece.

use std::borrow::Cow;
use std::io::{Read, Write};

use crate::scrub::{LineStream, ScrubStats};

/// Bytes read at a time; a longer line grows the buffer to hold it.
const CHUNK: usize = 1 << 20;

/// Scrubs `input` line by line into `out`. A last line without a newline stays without one.
pub fn scrub_stream(
    stream: &mut LineStream<'_>,
    input: &mut dyn Read,
    out: &mut dyn Write,
    stats: &mut ScrubStats,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    // Bytes of `buf` that hold input not yet scrubbed (a line cut by the end of a read).
    let mut held = 0usize;
    loop {
        if held == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match input.read(&mut buf[held..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            if held > 0 {
                scrub_lines(stream, &buf[..held], out, stats)?;
            }
            return Ok(());
        }
        let filled = held + n;
        // Everything up to the last newline is whole lines.
        let Some(last_nl) = memchr::memrchr(b'\n', &buf[held..filled]).map(|i| held + i) else {
            held = filled;
            continue;
        };
        scrub_lines(stream, &buf[..=last_nl], out, stats)?;
        buf.copy_within(last_nl + 1..filled, 0);
        held = filled - last_nl - 1;
    }
}

/// Scrubs `chunk`: whole lines, each ended by a newline except perhaps the last.
fn scrub_lines(
    stream: &mut LineStream<'_>,
    chunk: &[u8],
    out: &mut dyn Write,
    stats: &mut ScrubStats,
) -> std::io::Result<()> {
    match crate::bytes::utf8(chunk) {
        Some(text) => scrub_text(stream, text, out, stats),
        // Rare: find the lines that are not UTF-8 one by one.
        None => {
            for line in chunk.split_inclusive(|&c| c == b'\n') {
                let (body, nl) = match line.strip_suffix(b"\n") {
                    Some(b) => (b, true),
                    None => (line, false),
                };
                let text = String::from_utf8_lossy(body);
                out.write_all(stream.scrub(&text, stats).as_bytes())?;
                if nl {
                    out.write_all(b"\n")?;
                }
            }
            Ok(())
        }
    }
}

fn scrub_text(
    stream: &mut LineStream<'_>,
    text: &str,
    out: &mut dyn Write,
    stats: &mut ScrubStats,
) -> std::io::Result<()> {
    // `text[unwritten..start]` is lines left as they were, not yet written.
    let mut unwritten = 0usize;
    let mut start = 0usize;
    while start < text.len() {
        let end = memchr::memchr(b'\n', &text.as_bytes()[start..]).map_or(text.len(), |i| start + i);
        match stream.scrub(&text[start..end], stats) {
            Cow::Borrowed(_) => {}
            Cow::Owned(s) => {
                out.write_all(&text.as_bytes()[unwritten..start])?;
                out.write_all(s.as_bytes())?;
                unwritten = end;
            }
        }
        start = end + 1;
    }
    out.write_all(&text.as_bytes()[unwritten..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrub::{Fingerprinter, Scrubber};

    const JWT: &str =
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIiwiZXhwIjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJlLWJ5dGVzLWhlcmUtYW5k";

    /// Reads at most `step` bytes a call, to cut lines anywhere.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(self.1).min(b.len());
            b[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn run(input: &[u8], step: usize) -> (Vec<u8>, ScrubStats) {
        let sc = Scrubber::with_defaults(Fingerprinter::new(b"test-key"));
        let mut stream = sc.stream();
        let mut out = Vec::new();
        let mut stats = ScrubStats::default();
        scrub_stream(&mut stream, &mut Trickle(input, step), &mut out, &mut stats).unwrap();
        (out, stats)
    }

    /// The same as scrubbing each line alone, whatever the reads cut.
    fn line_by_line(input: &[u8]) -> Vec<u8> {
        let sc = Scrubber::with_defaults(Fingerprinter::new(b"test-key"));
        let mut stream = sc.stream();
        let mut stats = ScrubStats::default();
        let mut out = Vec::new();
        for line in input.split_inclusive(|&c| c == b'\n') {
            let (body, nl) = line.strip_suffix(b"\n").map_or((line, false), |b| (b, true));
            out.extend_from_slice(stream.scrub(&String::from_utf8_lossy(body), &mut stats).as_bytes());
            if nl {
                out.push(b'\n');
            }
        }
        out
    }

    #[test]
    fn lines_cut_by_reads_come_out_as_scrubbed_one_by_one() {
        let mut input = Vec::new();
        for i in 0..300 {
            match i % 5 {
                0 => {
                    input.extend_from_slice(format!("GET /v1/orders?access_token={JWT}&page={i} HTTP/1.1\n").as_bytes())
                }
                1 => input.extend_from_slice(b"not utf-8 \xff\xfe here\n"),
                2 => input.extend_from_slice(b"\n"),
                _ => input.extend_from_slice(format!("{{\"path\":\"/v1/items/{i}\",\"status\":200}}\n").as_bytes()),
            }
        }
        input.extend_from_slice(format!("last line without a newline, Bearer {JWT}").as_bytes());
        let want = line_by_line(&input);
        for step in [1, 7, 64, 1000, CHUNK, usize::MAX] {
            let (got, stats) = run(&input, step);
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "reads of {step} bytes");
            assert_eq!(stats.lines, 301, "reads of {step} bytes");
            assert!(!String::from_utf8_lossy(&got).contains(JWT));
        }
    }

    #[test]
    fn a_line_longer_than_the_buffer_is_read_whole() {
        let long = format!("{}?access_token={JWT}\n", "a".repeat(3 * CHUNK));
        let (got, stats) = run(long.as_bytes(), usize::MAX);
        assert_eq!(stats.lines, 1);
        assert!(got.ends_with(b"\n") && !String::from_utf8_lossy(&got).contains(JWT));
    }

    #[test]
    fn a_private_key_block_spanning_reads_is_masked_whole() {
        let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj";
        let input = format!("key:\n-----BEGIN PRIVATE KEY-----\n{body}\n{body}\n-----END PRIVATE KEY-----\nafter\n");
        for step in [3, 50, usize::MAX] {
            let (got, _) = run(input.as_bytes(), step);
            let got = String::from_utf8(got).unwrap();
            assert!(!got.contains(body), "reads of {step}: {got}");
            assert!(got.ends_with("after\n"));
        }
    }
}

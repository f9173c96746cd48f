//! The scrubber on arbitrary bytes, as a Kafka record or a `gatewatch scrub` input meets it
//! (`scrub_message`: line by line, a PEM block may span lines), with a known secret planted
//! between spaces: the output has as many lines as the input, and the secret never survives.
#![no_main]

use gatewatch::config::DEV_FINGERPRINT_KEY;
use gatewatch::scrub::message::scrub_message;
use gatewatch::scrub::{Fingerprinter, ScrubConfig, ScrubStats, Scrubber};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const SECRET: &str = "ghp_Zk3mP9qR2sT5vW8xA1bC4dE7fG0hJ6kL9nQ3";

fn scrubber() -> &'static Scrubber {
    static S: OnceLock<Scrubber> = OnceLock::new();
    S.get_or_init(|| {
        Scrubber::new(Fingerprinter::new(DEV_FINGERPRINT_KEY.as_bytes()), &ScrubConfig::default()).expect("defaults")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut stats = ScrubStats::default();
    let out = scrub_message(scrubber(), data, &mut stats);
    assert_eq!(out.split('\n').count(), text.split('\n').count(), "same line count");

    let (a, b) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(i, _)| i));
    let planted = format!("{a} {SECRET} {b}");
    let out = scrub_message(scrubber(), planted.as_bytes(), &mut stats);
    assert!(!out.contains(SECRET), "the planted token survived");
});

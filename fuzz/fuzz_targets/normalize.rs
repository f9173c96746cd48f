//! Every gateway format (and auto-detection, which reads envelopes and batches) on
//! arbitrary bytes: a record is read or rejected, never a panic, and what is read
//! carries an event time inside the engine's range.
#![no_main]

use gatewatch::config::DEV_FINGERPRINT_KEY;
use gatewatch::engine::MAX_TS;
use gatewatch::normalize::{Format, Normalizer};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn normalizers() -> &'static Vec<Normalizer> {
    static N: OnceLock<Vec<Normalizer>> = OnceLock::new();
    N.get_or_init(|| {
        std::iter::once(Format::Auto)
            .chain(Format::ALL.iter().copied())
            .map(|f| Normalizer::new(f, DEV_FINGERPRINT_KEY.as_bytes()))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    for n in normalizers() {
        n.normalize_message_at(data, Some(1_795_257_000_000), &mut |r| {
            if let Ok(ev) = r {
                // Formats without a time take the received time; none may invent one outside the range.
                assert!(ev.ts <= MAX_TS, "time {}", ev.ts);
            }
        });
    }
});

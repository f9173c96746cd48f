//! Golden tests: every real sample record in `tests/fixtures/gateways/` (sources
//! in `SOURCES.md` there) normalizes to the reviewed event in
//! `<fixture>.expected.jsonl` — one line per record, `serde_json::to_string(&event)`
//! or `{"rejected": reason, "detail": …}`, exactly what `gatewatch normalize`
//! prints. Auto-detection picks the right format for each record, a mixed-format
//! file reads as its parts do, malformed input is a `Reject` with a reason, and
//! no input, however broken, panics.
//!
//! `GATEWATCH_BLESS=1 cargo test --test normalize_golden` writes
//! `<fixture>.actual.jsonl` beside each fixture for review; it never overwrites
//! an expected file.

use std::path::{Path, PathBuf};

use gatewatch::event::Millis;
use gatewatch::normalize::{detect, Format, Normalizer, Reject};
use proptest::prelude::*;

/// Fixed fingerprint key: expected fingerprints are stable.
const KEY: &[u8] = b"gatewatch-golden-fixture-key";
/// Receive time for fixtures whose format has no full timestamp (Tyk text has no
/// year, APISIX `origin` no time at all): 2025-02-01T00:00:00Z, a few days after
/// the Tyk docs sample was captured.
const RECEIVED: Millis = 1_738_368_000_000;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gateways")
}

fn render(r: Result<gatewatch::event::Event, Reject>) -> String {
    match r {
        Ok(ev) => serde_json::to_string(&ev).expect("event serializes"),
        Err(rej) => serde_json::json!({"rejected": rej.reason.as_str(), "detail": rej.detail}).to_string(),
    }
}

/// Normalizes a fixture: per line, or the whole file as one message.
fn run(n: &Normalizer, text: &str, whole: bool, received: Option<Millis>) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |r| out.push(render(r));
    if whole {
        n.normalize_message_at(text.as_bytes(), received, &mut push);
    } else {
        for line in text.lines() {
            n.normalize_message_at(line.as_bytes(), received, &mut push);
        }
    }
    out
}

struct Fixture {
    file: &'static str,
    /// The whole file is one message (APISIX `origin`: a multi-line raw request).
    whole: bool,
    received: Option<Millis>,
    /// What auto-detection must say for each record (line), in order.
    formats: &'static [Option<Format>],
}

const SAMPLES: &[Fixture] = &[
    Fixture { file: "kong.jsonl", whole: false, received: None, formats: &[Some(Format::Kong); 4] },
    Fixture { file: "apisix.jsonl", whole: false, received: None, formats: &[Some(Format::Apisix); 4] },
    Fixture { file: "apisix-origin.txt", whole: true, received: Some(RECEIVED), formats: &[Some(Format::Apisix)] },
    Fixture { file: "aws_apigateway.jsonl", whole: false, received: None, formats: &[Some(Format::Aws); 3] },
    // Line 1 is the Envoy docs' custom `json_format` example: user-chosen keys,
    // nothing Envoy-specific to detect, and no time. It reads as generic and is rejected.
    Fixture {
        file: "envoy.jsonl",
        whole: false,
        received: None,
        formats: &[Some(Format::Generic), Some(Format::Envoy), Some(Format::Envoy)],
    },
    Fixture { file: "envoy.log", whole: false, received: None, formats: &[Some(Format::EnvoyText); 3] },
    Fixture { file: "nginx.log", whole: false, received: None, formats: &[Some(Format::Nginx); 3] },
    Fixture { file: "nginx-ingress.log", whole: false, received: None, formats: &[Some(Format::Nginx); 4] },
    Fixture { file: "haproxy.log", whole: false, received: None, formats: &[Some(Format::Haproxy); 7] },
    Fixture { file: "traefik.jsonl", whole: false, received: None, formats: &[Some(Format::Traefik); 2] },
    Fixture { file: "tyk.log", whole: false, received: Some(RECEIVED), formats: &[Some(Format::Tyk)] },
];

/// Constructed fixtures (see SOURCES.md): envelopes around real samples, the
/// mixed-format file, malformed input.
/// `mixed.log` is read with a receive time, as a Kafka consumer would: its Tyk text line needs one.
const CONSTRUCTED: &[(&str, Option<Millis>)] =
    &[("envelopes.jsonl", None), ("mixed.log", Some(RECEIVED)), ("malformed.txt", None)];

fn read(file: &str) -> String {
    std::fs::read_to_string(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn expected(file: &str) -> Vec<String> {
    read(&format!("{file}.expected.jsonl")).lines().map(str::to_string).collect()
}

fn check(file: &str, got: &[String]) {
    if std::env::var_os("GATEWATCH_BLESS").is_some() {
        std::fs::write(dir().join(format!("{file}.actual.jsonl")), got.join("\n") + "\n").unwrap();
        if !dir().join(format!("{file}.expected.jsonl")).exists() {
            return;
        }
    }
    let want = expected(file);
    assert_eq!(got.len(), want.len(), "{file}: {} results, expected {}", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let gv: serde_json::Value = serde_json::from_str(g).unwrap();
        let wv: serde_json::Value =
            serde_json::from_str(w).unwrap_or_else(|e| panic!("{file}.expected line {}: {e}", i + 1));
        assert_eq!(gv, wv, "{file} record {}:\n got  {g}\n want {w}", i + 1);
    }
}

#[test]
fn every_sample_normalizes_to_its_reviewed_event() {
    let n = Normalizer::new(Format::Auto, KEY);
    for f in SAMPLES {
        check(f.file, &run(&n, &read(f.file), f.whole, f.received));
    }
}

#[test]
fn constructed_fixtures_normalize_to_their_reviewed_events() {
    let n = Normalizer::new(Format::Auto, KEY);
    for (file, received) in CONSTRUCTED {
        check(file, &run(&n, &read(file), false, *received));
    }
}

#[test]
fn auto_detection_picks_each_samples_format() {
    for f in SAMPLES {
        let text = read(f.file);
        let records: Vec<&str> = if f.whole { vec![text.as_str()] } else { text.lines().collect() };
        assert_eq!(records.len(), f.formats.len(), "{}", f.file);
        for (i, (rec, want)) in records.iter().zip(f.formats).enumerate() {
            let got = detect::detect(gatewatch::normalize::trim_ascii(rec.as_bytes()));
            assert_eq!(got, *want, "{} record {}", f.file, i + 1);
        }
    }
}

#[test]
fn naming_the_format_gives_the_same_events_as_auto() {
    let auto = Normalizer::new(Format::Auto, KEY);
    for f in SAMPLES {
        let text = read(f.file);
        let records: Vec<&str> = if f.whole { vec![text.as_str()] } else { text.lines().collect() };
        for (rec, fmt) in records.iter().zip(f.formats) {
            let named = Normalizer::new(fmt.unwrap(), KEY);
            assert_eq!(
                run(&named, rec, true, f.received),
                run(&auto, rec, true, f.received),
                "{} with --format {}",
                f.file,
                fmt.unwrap().name()
            );
        }
    }
}

#[test]
fn a_mixed_file_reads_as_its_records_do_alone() {
    let auto = Normalizer::new(Format::Auto, KEY);
    let text = read("mixed.log");
    let mixed = run(&auto, &text, false, Some(RECEIVED));
    assert_eq!(mixed.len(), text.lines().count());
    for (line, got) in text.lines().zip(&mixed) {
        let fmt = detect::detect(line.as_bytes()).expect("every mixed line has a format");
        assert_ne!(fmt, Format::Generic, "mixed line fell back to generic: {line:.60}");
        let alone = run(&Normalizer::new(fmt, KEY), line, true, Some(RECEIVED));
        assert_eq!(&alone[0], got);
        assert!(!got.contains("\"rejected\""), "{got}");
    }
}

#[test]
fn malformed_records_are_rejected_with_a_reason_never_an_event() {
    let n = Normalizer::new(Format::Auto, KEY);
    for (i, line) in read("malformed.txt").lines().enumerate() {
        let out = run(&n, line, true, None);
        assert_eq!(out.len(), 1, "line {}", i + 1);
        let v: serde_json::Value = serde_json::from_str(&out[0]).unwrap();
        assert!(v.get("rejected").is_some() && v.get("ts").is_none(), "line {} was accepted: {}", i + 1, out[0]);
    }
}

/// Raw secrets that appear in the fixtures: none may survive normalization.
const SECRETS: &[&str] = &[
    "2b64e2f0193851d4135a2e885cd08a65",
    // haproxy.log: captured `Authorization` headers and a token in a query string
    "gwt_stolen_Rk5PvM2xTg8WzL3qBn",
    "gwt_revoked_Ns6QwE1rYt4UiO9pGh",
    "gwt_leaked_Wq3ErT8yUi1OpA5sDf",
    "abc{d|e}",
    "abc#7Bd",
];

#[test]
fn no_raw_secret_reaches_an_event() {
    let n = Normalizer::new(Format::Auto, KEY);
    for f in
        SAMPLES.iter().map(|f| (f.file, f.whole, f.received)).chain(CONSTRUCTED.iter().map(|(f, r)| (*f, false, *r)))
    {
        for out in run(&n, &read(f.0), f.1, f.2) {
            for s in SECRETS {
                assert!(!out.contains(s), "{}: raw secret in {out}", f.0);
            }
        }
    }
}

/// Built once: a normalizer carries the scrubber's automaton, too costly to build per proptest case.
fn all_normalizers() -> &'static [Normalizer] {
    static ALL: std::sync::OnceLock<Vec<Normalizer>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        std::iter::once(Format::Auto).chain(Format::ALL.iter().copied()).map(|f| Normalizer::new(f, KEY)).collect()
    })
}

fn sample_lines() -> Vec<String> {
    SAMPLES
        .iter()
        .flat_map(|f| read(f.file).lines().filter(|l| !l.is_empty()).map(str::to_string).collect::<Vec<_>>())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for n in all_normalizers() {
            n.normalize_message_at(&bytes, Some(RECEIVED), &mut |_| {});
        }
    }

    /// Real records cut short or with a byte changed: the inputs most likely to
    /// reach deep into a parser before going wrong.
    #[test]
    fn damaged_samples_never_panic(which in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let lines = sample_lines();
        let mut rec = lines[which.index(lines.len())].clone().into_bytes();
        let i = at.index(rec.len());
        rec[i] = byte;
        let c = cut.index(rec.len() + 1);
        for n in all_normalizers() {
            n.normalize_message_at(&rec, Some(RECEIVED), &mut |_| {});
            n.normalize_message_at(&rec[..c], Some(RECEIVED), &mut |_| {});
        }
    }
}

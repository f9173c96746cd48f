//! Properties of the scrubber (idempotent, bounded growth, JSON stays JSON), the
//! normalization hook, and the `gatewatch scrub` command end to end.

use gatewatch::normalize::{Format, Normalizer};
use gatewatch::scrub::{Fingerprinter, ScrubStats, Scrubber};
use proptest::prelude::*;

fn sc() -> Scrubber {
    Scrubber::with_defaults(Fingerprinter::new(b"props-key-0123456789"))
}

/// Pieces that exercise every handler, mixed with arbitrary text.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("access_token=".to_string()),
        Just("\"api_key\":\"".to_string()),
        Just("Authorization: Bearer ".to_string()),
        Just("Basic YWxpY2U6aHVudGVyMg==".to_string()),
        Just("Cookie: PHPSESSID=".to_string()),
        Just("https://u:".to_string()),
        Just("@db.internal/".to_string()),
        Just(" -u ".to_string()),
        Just("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".to_string()),
        Just("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl".to_string()),
        Just("AKIAIOSFODNN7EXAMPLE".to_string()),
        Just("-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDAC4AWkdwKYSd8\\n-----END PRIVATE KEY-----".to_string()),
        Just("[REDACTED:jwt:0123456789abcdef]".to_string()),
        Just("password=".to_string()),
        Just("xoxb-781236542736-2364535789652-GkwFDQoHqzXDVsC6GzqYUypD".to_string()),
        "[A-Za-z0-9_\\-./+=:;&?\"' ]{0,40}",
        "\\PC{0,12}",
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn idempotent_and_bounded(l in line()) {
        let s = sc();
        let mut st = ScrubStats::default();
        let once = s.scrub_line(&l, &mut st).into_owned();
        let twice = s.scrub_line(&once, &mut st).into_owned();
        prop_assert_eq!(&once, &twice);
        // A marker is at most 60 bytes and replaces at least one byte: the line grows by
        // at most 60 bytes per secret, and never beyond 61 times its length.
        prop_assert!(once.len() <= l.len() * 61 + 1);
        prop_assert!(once.len() <= l.len() + 60 * st.total() as usize);
    }

    #[test]
    fn json_stays_json(l in line()) {
        let s = sc();
        let rec = serde_json::json!({"request": {"uri": format!("/a?{l}"), "headers": {"authorization": l.clone()}, "body": l}}).to_string();
        let out = s.scrub_line(&rec, &mut ScrubStats::default());
        prop_assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
    }
}

#[test]
fn normalization_keeps_secrets_out_of_events() {
    let key = b"props-key-0123456789";
    let n = Normalizer::new(Format::Generic, key);
    let tok = "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";
    let rec = format!(
        r#"{{"ts":"2026-01-01T00:00:00Z","method":"GET","path":"/v1/hooks/{tok}/run","user_agent":"deploy-bot/1.0 (token AKIAIOSFODNN7EXAMPLE)","host":"api.example.com","status":200,"client_id":"app-1"}}"#
    );
    let ev = n.normalize_record(rec.as_bytes()).expect("record reads");
    let printed = serde_json::to_string(&ev).unwrap();
    assert!(!printed.contains(tok) && !printed.contains("AKIAIOSFODNN7EXAMPLE"));
    assert!(ev.path.as_deref().unwrap().starts_with("/v1/hooks/[REDACTED:github_token:"));
    let fp = Fingerprinter::new(key).fingerprint(tok.as_bytes());
    assert!(ev.exposures.iter().any(|x| x.kind == "github_token" && x.place == "path" && x.fingerprint == fp));
    assert!(ev.exposures.iter().any(|x| x.kind == "aws_access_key" && x.place == "user_agent"));
    assert!(!ev.route.as_deref().unwrap_or("").contains(tok));
    // A clean record gains no exposure.
    let clean = r#"{"ts":"2026-01-01T00:00:00Z","method":"GET","path":"/v1/orders/6c40a97a-d345-44d3-a73b-46b8b130a936","user_agent":"curl/8.5.0","status":200}"#;
    let ev = n.normalize_record(clean.as_bytes()).unwrap();
    assert!(ev.exposures.is_empty());
    assert_eq!(ev.path.as_deref(), Some("/v1/orders/6c40a97a-d345-44d3-a73b-46b8b130a936"));
}

#[test]
fn a_secret_anywhere_in_the_query_is_an_exposure_once() {
    let key = b"props-key-0123456789";
    let n = Normalizer::new(Format::Generic, key);
    let tok = "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";
    let rec = |q: &str| {
        format!(r#"{{"ts":"2026-01-01T00:00:00Z","method":"GET","path":"/v1/search","query":"{q}","status":200}}"#)
    };
    let fp = Fingerprinter::new(key).fingerprint(tok.as_bytes());
    // Unnamed, plain and URL-encoded.
    for q in [format!("q={tok}&page=2"), format!("q=token%3D{tok}")] {
        let ev = n.normalize_record(rec(&q).as_bytes()).unwrap();
        assert!(
            ev.exposures.iter().any(|x| x.kind == "github_token" && x.place == "query" && x.fingerprint == fp),
            "{q}: {:?}",
            ev.exposures
        );
    }
    let ev = n.normalize_record(rec("user=alice&password=Hunter2-Xyz-77").as_bytes()).unwrap();
    assert!(ev.exposures.iter().any(|x| x.kind == "password" && x.place == "query"), "{:?}", ev.exposures);
    // A parameter identity already reads by name is one exposure, not two.
    let ev = n.normalize_record(rec(&format!("access_token={tok}")).as_bytes()).unwrap();
    assert_eq!(ev.exposures.len(), 1, "{:?}", ev.exposures);
    let ev = n.normalize_record(rec("q=running+shoes&page=2").as_bytes()).unwrap();
    assert!(ev.exposures.is_empty());
}

#[test]
fn scrub_command_keeps_line_count_and_format() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/gateways/samples");
    let mut input = String::new();
    if let Ok(dir) = std::fs::read_dir(samples) {
        let mut paths: Vec<_> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl" || x == "log"))
            .collect();
        paths.sort();
        for p in paths {
            input.push_str(&std::fs::read_to_string(p).unwrap());
        }
    }
    input.push_str("{\"request\":{\"headers\":{\"authorization\":\"Bearer abcDEF123456ghiJKL789\"}}}\n");
    input.push_str("GET /cb?code=Zf3D0LXCM3EIMbgJpUNnkRtOfOueHznB&state=1 HTTP/1.1\r\n");
    input.push('\n');
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["scrub"])
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gatewatch runs");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), input.lines().count());
    assert!(!stdout.contains("abcDEF123456ghiJKL789") && !stdout.contains("Zf3D0LXCM3EIMbgJpUNnkRtOfOueHznB"));
    for (a, b) in input.lines().zip(stdout.lines()) {
        if a.starts_with('{') {
            assert!(serde_json::from_str::<serde_json::Value>(b).is_ok(), "scrubbed JSON line no longer parses");
        }
    }
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("secrets replaced") && !stderr.contains("abcDEF"));
}

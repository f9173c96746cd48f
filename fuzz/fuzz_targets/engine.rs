//! The engine with every shipped detector, fed events whose times (and statuses,
//! addresses, tokens) come from the fuzzer, with a tiny reorder buffer: it never
//! panics, never overflows, and always returns (libFuzzer's -timeout catches a hang).
#![no_main]

use gatewatch::config::DetectorFile;
use gatewatch::detectors::testing::ev;
use gatewatch::detectors::{build_rule, Limits};
use gatewatch::engine::Engine;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn files() -> &'static Vec<DetectorFile> {
    static F: OnceLock<Vec<DetectorFile>> = OnceLock::new();
    F.get_or_init(|| {
        let (files, errs) = DetectorFile::load_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../detectors").as_ref());
        assert!(errs.is_empty() && !files.is_empty(), "shipped detectors load");
        files
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_keys: 64, idle_timeout: 3_600_000 };
    let rules = files().iter().filter(|f| f.enabled).map(|f| build_rule(f, limits).expect("builds")).collect();
    let mut engine = Engine::new(rules, 30_000, 5);
    let mut alerts = Vec::new();
    for chunk in data.chunks_exact(11) {
        let ts = i64::from_le_bytes(chunk[0..8].try_into().unwrap());
        let status = [200, 401, 403, 404, 500][chunk[8] as usize % 5];
        let ip = format!("198.51.{}.{}", chunk[9] % 4, chunk[10] % 8);
        let e =
            ev(ts).ip(&ip).client("app-1").token(chunk[10] % 3).post("/login").status(status).latency(chunk[9] as f64);
        engine.push(e.build(), &mut alerts);
    }
    engine.flush(&mut alerts);
});

//! Service config and detector files from arbitrary TOML: parsed, validated and built
//! into rules, or refused with errors; never a panic.
#![no_main]

use gatewatch::config::{DetectorFile, GatewatchConfig};
use gatewatch::detectors::{build_rule, Limits};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cfg) = toml::from_str::<GatewatchConfig>(text) {
        let _ = cfg.validate();
    }
    if let Ok(file) = DetectorFile::parse(text, Path::new("fuzz.toml")) {
        let _ = build_rule(&file, Limits { max_keys: 64, idle_timeout: 60_000 });
    }
});

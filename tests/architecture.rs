//! The dependency rules of ARCHITECTURE.md, held by reading the sources (outside their
//! `#[cfg(test)]` modules; comments are skipped):
//! - `event` imports nothing of ours;
//! - `config` holds types and imports no runtime module (checking a config against the
//!   modules that own its sections is `app::load_config`'s work);
//! - detection (`detectors`, `sigma`, `state`) imports no runtime module and none of tokio,
//!   rdkafka, axum, lettre or reqwest: it runs on event time, fed by whoever calls it.

use std::path::{Path, PathBuf};

const RUNTIME: &[&str] = &[
    "crate::actions",
    "crate::admin",
    "crate::app",
    "crate::engine",
    "crate::normalize",
    "crate::repartition",
    "crate::scrub",
    "crate::simulate",
    "crate::source",
    "crate::telemetry",
];

const IO_CRATES: &[&str] = &["tokio::", "rdkafka::", "axum::", "lettre::", "reqwest::"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `(file, line number, line)` of code outside tests that names one of `banned`.
fn uses(paths: &[PathBuf], banned: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(p).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("#[cfg(test)]") {
                break;
            }
            if code.starts_with("//") {
                continue;
            }
            if banned.iter().any(|b| code.contains(b)) {
                found.push(format!("{}:{}: {}", p.display(), i + 1, code));
            }
        }
    }
    found
}

fn src(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(rel)
}

fn files_under(rel: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    rust_files(&src(rel), &mut v);
    v
}

#[test]
fn event_imports_nothing_of_ours() {
    let found = uses(&[src("event.rs")], &["crate::", "super::"]);
    assert!(found.is_empty(), "event.rs must stand alone:\n{}", found.join("\n"));
}

#[test]
fn config_imports_no_runtime_module() {
    let mut banned = RUNTIME.to_vec();
    banned.extend(["crate::detectors", "crate::sigma", "crate::state"]);
    let found = uses(&files_under("config"), &banned);
    assert!(found.is_empty(), "config holds types only:\n{}", found.join("\n"));
}

#[test]
fn detection_imports_no_runtime_module_and_no_io() {
    let mut files = files_under("detectors");
    files.extend(files_under("sigma"));
    files.extend(files_under("state"));
    // The event builder that detector unit tests, benches and `gatewatch check` share reads
    // requests the way the normalizer does (route templates): test tooling, not detection.
    files.retain(|p| !p.ends_with("detectors/testing.rs"));
    let mut banned = RUNTIME.to_vec();
    banned.extend(IO_CRATES);
    let found = uses(&files, &banned);
    assert!(found.is_empty(), "detection runs on event time, fed by its caller:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_a_banned_import() {
    // The scanner itself: a file that imports a runtime module is caught, a test module and
    // a comment are not.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.rs");
    std::fs::write(&f, "// crate::source in a comment\nuse crate::source::kafka;\n#[cfg(test)]\nuse crate::app;\n")
        .unwrap();
    let found = uses(std::slice::from_ref(&f), RUNTIME);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("use crate::source::kafka;"));
}

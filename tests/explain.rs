//! `gatewatch explain`: an alert `replay` raised is explained by the requests behind it, and
//! an id that is not there says so and fails.

use std::process::Command;

const ATTACKER: &str = "203.0.113.9";

fn line(second: u32, ip: &str, path: &str, status: u16) -> String {
    format!(
        "{ip} - - [21/Nov/2026:10:{:02}:{:02} +0000] \"POST {path} HTTP/1.1\" {status} 12 \"-\" \"curl/8.5\"",
        second / 60,
        second % 60
    )
}

#[test]
fn an_alert_is_explained_by_the_requests_of_its_entity_in_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("access.log");
    let mut lines = Vec::new();
    for s in 0..120 {
        lines.push(line(s, "198.51.100.7", "/api/v1/orders", 200));
        if s % 4 == 0 && s < 100 {
            lines.push(line(s, ATTACKER, "/api/v1/login", 401));
        }
    }
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let bin = env!("CARGO_BIN_EXE_gatewatch");
    let root = env!("CARGO_MANIFEST_DIR");
    let replay = Command::new(bin)
        .current_dir(root)
        .args(["replay", "--format", "nginx", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let alerts: Vec<serde_json::Value> =
        String::from_utf8_lossy(&replay.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let alert = alerts
        .iter()
        .find(|a| a["detector"] == "auth_failure_spike" && a["entity"]["id"] == ATTACKER)
        .unwrap_or_else(|| panic!("the brute force is found: {alerts:#?}"));
    let id = alert["id"].as_str().unwrap();

    // The first 8 characters are enough.
    let out = Command::new(bin)
        .current_dir(root)
        .args(["explain", &id[..8], "--format", "nginx", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&format!("alert {id} — auth_failure_spike")), "{text}");
    let events: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(events.len() >= 10, "the failures behind it: {text}");
    assert!(events.iter().all(|e| e["source_ip"] == ATTACKER && e["status"] == 401), "{text}");
    let count_line = text.lines().find(|l| l.contains("request(s) of this source_ip in the window")).unwrap();
    assert!(count_line.starts_with(&events.len().to_string()), "{count_line}");

    let missing = Command::new(bin)
        .current_dir(root)
        .args(["explain", "0123456789abcdef", "--format", "nginx", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no alert `0123456789abcdef`"));
}

//! `gatewatch demo` serves the admin API with a token it makes up and prints: a new user can
//! list the alerts the demo raises, and nothing under `/api/` answers without the token.
#![cfg(unix)]
#![allow(clippy::disallowed_methods)] // waits on a subprocess and a socket

mod process_support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process_support::{stdout_lines, Killed};

fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn the_demo_prints_a_token_that_lists_its_alerts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["demo", "--minutes", "2", "--speed", "60", "--clients", "60", "--listen", &format!("127.0.0.1:{port}")])
        .env("GATEWATCH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the demo starts");
    let rx = stdout_lines(&mut child);
    let _demo = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut token_line = None;
    let mut seen = Vec::new();
    while Instant::now() < deadline && token_line.is_none() {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else { continue };
        if line.trim_start().starts_with("alerts:") {
            token_line = Some(line.clone());
        }
        seen.push(line);
    }
    let token_line = token_line.unwrap_or_else(|| panic!("no token printed:\n{}", seen.join("\n")));
    let token = token_line.split("Bearer ").nth(1).and_then(|r| r.split('\'').next()).expect("a token").to_string();
    let addr = token_line.split("http://").nth(1).and_then(|r| r.split('/').next()).expect("an address").to_string();
    assert!(token.len() >= 16);
    // Wait for the first alert through the API itself.
    let mut listed = String::new();
    while Instant::now() < deadline {
        let (status, body) = get(&addr, "/api/v1/alerts?limit=5", Some(&token));
        assert_eq!(status, 200, "{body}");
        if body.contains("\"detector\"") {
            listed = body;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let v: serde_json::Value =
        serde_json::from_str(&listed).unwrap_or_else(|_| panic!("no alert listed:\n{}", seen.join("\n")));
    assert!(!v["alerts"].as_array().unwrap().is_empty());
    let id = v["alerts"][0]["id"].as_str().unwrap();
    let (status, one) = get(&addr, &format!("/api/v1/alerts/{id}"), Some(&token));
    assert_eq!(status, 200, "{one}");
    assert_eq!(get(&addr, "/api/v1/alerts", None).0, 401);
    assert_eq!(get(&addr, "/api/v1/alerts", Some("not-the-demo-token-at-all")).0, 401);
}

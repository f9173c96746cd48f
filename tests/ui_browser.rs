//! The operator console (`/ui/`) in a real browser, against a running `gatewatch demo`: Debian's
//! headless Chromium driven by playwright-core (`tests/ui/console.mjs`) enters the demo's token,
//! sees the first alert appear, opens it and finds its evidence, is sent back to the prompt by a
//! wrong token, opens the entity view, and takes a screenshot, kept as
//! `target/ui-artifacts/console.png`.
//!
//! Needs Node.js, Debian's `chromium` (`/usr/bin/chromium`) and playwright-core in `tests/ui`
//! (`npm ci --prefix tests/ui`); `.ci/run` installs all three. Without one the test fails and
//! says what to install: it never passes by skipping.
#![cfg(unix)]
#![allow(clippy::disallowed_methods)] // waits on subprocesses and sockets

mod process_support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process_support::{collect_stderr, free_port, stdout_lines, Killed};

const CHROMIUM: &str = "/usr/bin/chromium";
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; frame-ancestors 'none'";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What the browser test lacks on this machine, each with the command that installs it.
fn missing_tools() -> Vec<String> {
    let mut missing = Vec::new();
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {
            // playwright-core's `engines`: node >= 20.
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let major: u32 = v.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0);
            if major < 20 {
                missing
                    .push(format!("Node.js 20 or newer (found {v}): Debian 13's `nodejs`, or NodeSource on Debian 12"));
            }
        }
        _ => missing.push("Node.js (`node` on PATH): `apt-get install -y nodejs npm`".to_string()),
    }
    if !Path::new(CHROMIUM).is_file() {
        missing.push(format!("Debian's Chromium ({CHROMIUM}): `apt-get install -y chromium`"));
    }
    if !root().join("tests/ui/node_modules/playwright-core/package.json").is_file() {
        missing.push("playwright-core (tests/ui/node_modules): `npm ci --prefix tests/ui`".to_string());
    }
    missing
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A GET over a plain socket, with no token.
fn get(addr: &str, path: &str) -> Answer {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Answer { status, head: head.to_string(), body: body.to_string() }
}

/// Runs `cmd` to its end or until `limit`, with its stdout and stderr together.
fn run_with_limit(mut cmd: Command, limit: Duration) -> (Option<std::process::ExitStatus>, String) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("node starts");
    let stderr = collect_stderr(&mut child);
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let mut child = Killed(child);
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.0.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => break None,
        }
    };
    drop(child); // killed if still running: its pipes close
    let out = reader.join().unwrap_or_default();
    let err = stderr.lock().unwrap().clone();
    (status, format!("{out}{err}"))
}

/// The page loads nothing from elsewhere, keeps nothing, and has no inline code for the
/// policy to refuse; its script never parses data as HTML.
#[test]
fn the_assets_stay_on_this_origin_and_never_write_html() {
    let read = |f: &str| std::fs::read_to_string(root().join("src/admin/ui").join(f)).unwrap();
    let (html, js, css) = (read("index.html"), read("app.js"), read("style.css"));
    for (name, text) in [("index.html", &html), ("app.js", &js), ("style.css", &css)] {
        // SVG's namespace is a name, not an address the page loads.
        let text = text.replace("http://www.w3.org/2000/svg", "");
        for outside in ["http://", "https://", "@import", "url(", "localStorage", "sessionStorage", "document.cookie"] {
            assert!(!text.contains(outside), "{name} holds `{outside}`");
        }
    }
    assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains(" style="), "inline code");
    assert!(!regex::Regex::new(r"\son[a-z]+\s*=").unwrap().is_match(&html), "an inline event handler");
    for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
        assert!(!js.contains(sink), "app.js uses {sink}");
    }
}

#[test]
fn the_console_shows_the_demos_alerts_in_a_browser() {
    let missing = missing_tools();
    assert!(
        missing.is_empty(),
        "the browser test needs, on this machine:\n  - {}\n(.ci/run installs them)",
        missing.join("\n  - ")
    );

    // The demo: its first alert comes within seconds at 60x; it runs long enough for the browser.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatewatch"))
        .args(["demo", "--minutes", "5", "--speed", "60", "--clients", "60"])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("GATEWATCH_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let demo_stderr = collect_stderr(&mut child);
    let rx = stdout_lines(&mut child);
    let _demo = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut seen = Vec::new();
    let token_line = loop {
        assert!(
            Instant::now() < deadline,
            "the demo printed no token:\n{}\n{}",
            seen.join("\n"),
            demo_stderr.lock().unwrap()
        );
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else { continue };
        seen.push(line.clone());
        if line.trim_start().starts_with("alerts:") {
            break line;
        }
    };
    let token = token_line.split("Bearer ").nth(1).and_then(|r| r.split('\'').next()).expect("a token").to_string();
    let addr = token_line.split("http://").nth(1).and_then(|r| r.split('/').next()).expect("an address").to_string();
    assert!(token.len() >= 16, "{token_line}");

    // The page and its assets: served without a token, embedded, under a strict policy, and
    // holding nothing of the token.
    let moved = get(&addr, "/ui");
    assert_eq!(moved.status, 308, "{}", moved.head);
    assert_eq!(moved.header("location"), Some("ui/"));
    for (path, file, content_type) in [
        ("/ui/", "index.html", "text/html; charset=utf-8"),
        ("/ui/app.js", "app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "style.css", "text/css; charset=utf-8"),
    ] {
        let a = get(&addr, path);
        assert_eq!(a.status, 200, "GET {path} without a token: {}", a.head);
        assert_eq!(a.header("content-type"), Some(content_type), "{path}");
        assert_eq!(a.header("content-security-policy"), Some(CSP), "{path}");
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(a.header("cache-control"), Some("no-cache"), "{path}");
        let source = std::fs::read_to_string(root().join("src/admin/ui").join(file)).unwrap();
        assert_eq!(a.body, source, "{path} is not src/admin/ui/{file}");
        assert!(!a.body.contains(&token), "{path} holds the demo's token");
    }
    assert_eq!(get(&addr, "/api/v1/alerts").status, 401, "the data still needs the token");

    // The browser.
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("ui-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot: PathBuf = artifacts.join("console.png");
    let _ = std::fs::remove_file(&shot);
    let mut node = Command::new("node");
    node.arg("tests/ui/console.mjs")
        .current_dir(root())
        .env("UI_URL", format!("http://{addr}/ui/"))
        .env("UI_TOKEN", &token)
        .env("UI_SCREENSHOT", &shot);
    let started = Instant::now();
    let (status, output) = run_with_limit(node, Duration::from_secs(180));
    println!("{output}");
    println!("browser test: {:.1} s", started.elapsed().as_secs_f64());
    match status {
        Some(s) if s.success() => {}
        Some(s) => {
            panic!("tests/ui/console.mjs failed ({s}):\n{output}\ndemo stderr:\n{}", demo_stderr.lock().unwrap())
        }
        None => panic!("tests/ui/console.mjs did not finish in 180 s:\n{output}"),
    }

    // The screenshot: a 1280x800 PNG.
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", shot.display());
    assert_eq!(&png[12..16], b"IHDR");
    let (w, h) =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!((w, h), (1280, 800), "the screenshot's size");
    println!("screenshot: {}", shot.display());
}

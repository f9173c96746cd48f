//! The `gatewatch` binary as a user runs it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn gatewatch() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatewatch"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env_remove("GATEWATCH_FINGERPRINT_KEY");
    c
}

fn run_with_stdin(mut cmd: Command, input: &str) -> (i32, String, String) {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_passes_on_the_shipped_detectors() {
    let out = gatewatch().arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("0 failed"), "{stdout}");
}

#[test]
fn impossible_travel_is_off_without_a_database_and_its_cases_pass_with_one() {
    // Shipped: no database, so the rule says it is off and its cases are skipped.
    let out = gatewatch().arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("off   detectors/impossible-travel.toml [impossible-travel-default] no city_db is set"),
        "{stdout}"
    );
    assert!(stdout.contains("3 skipped (rule off)"), "{stdout}");
    // The same file given MaxMind's test databases (a relative path, beside the file): every
    // case runs and passes.
    let dir = tempfile::tempdir().unwrap();
    let det = dir.path().join("detectors");
    std::fs::create_dir(&det).unwrap();
    for db in ["GeoIP2-City-Test.mmdb", "GeoLite2-ASN-Test.mmdb"] {
        std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geoip").join(db), det.join(db)).unwrap();
    }
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("detectors/impossible-travel.toml"))
            .unwrap()
            .replace("city_db = \"\"", "city_db = \"GeoIP2-City-Test.mmdb\"")
            .replace("asn_db = \"\"", "asn_db = \"GeoLite2-ASN-Test.mmdb\"");
    std::fs::write(det.join("impossible-travel.toml"), shipped).unwrap();
    std::fs::write(dir.path().join("gatewatch.toml"), "[detectors]\ndir = \"detectors\"\n").unwrap();
    let out = gatewatch().arg("check").arg("--config").arg(dir.path().join("gatewatch.toml")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("3 test case(s): 3 passed, 0 failed\n"), "{stdout}");
    assert!(!stdout.contains("off "), "{stdout}");
}

#[test]
fn check_lists_every_error_with_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let det = dir.path().join("detectors");
    std::fs::create_dir(&det).unwrap();
    std::fs::write(
        dir.path().join("gatewatch.toml"),
        "[engine]\nallowed_lateness = \"2h\"\n[normalize]\ntrusted_proxies = [\"not-an-ip\"]\n",
    )
    .unwrap();
    std::fs::write(det.join("a.toml"), "id = \"a\"\nkind = \"no_such_kind\"\n").unwrap();
    std::fs::write(
        det.join("b.toml"),
        "id = \"b\"\nkind = \"token_reuse\"\n[params]\nmax_regions = 0\nwindow = \"soon\"\n",
    )
    .unwrap();
    std::fs::write(
        det.join("c.toml"),
        "id = \"c\"\nkind = \"auth_failure_spike\"\n[params]\nmin_failure_ratio = 3.0\n",
    )
    .unwrap();
    let out = gatewatch().arg("check").arg("--config").arg(dir.path().join("gatewatch.toml")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    for needle in [
        "gatewatch.toml: engine.allowed_lateness",
        "gatewatch.toml: normalize.trusted_proxies[0]",
        "a.toml: kind: unknown detector kind `no_such_kind`",
        "b.toml: params",
        "c.toml: params.min_failure_ratio",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in:\n{stdout}");
    }
}

#[test]
fn normalize_prints_one_line_per_record_and_rejections() {
    let kong = r#"{"started_at":1700000000000,"client_ip":"203.0.113.9","request":{"method":"GET","uri":"/v1/orders/42?apikey=s3cr3tK3yValue9","headers":{"authorization":"REDACTED"}},"response":{"status":200,"size":"12"},"latencies":{"request":"15","proxy":12},"consumer":{"id":"c-1","username":"shop"}}"#;
    let input = format!("{kong}\nnot json at all\n[{kong},{kong}]\n");
    let (code, stdout, _) = run_with_stdin(
        {
            let mut c = gatewatch();
            c.arg("normalize");
            c
        },
        &input,
    );
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["route"], "GET /v1/orders/{id}");
    assert_eq!(lines[0]["path"], "/v1/orders/42");
    assert_eq!(lines[0]["client_id"], "c-1");
    assert_eq!(lines[0]["latency_ms"], 15.0);
    assert_eq!(lines[0]["token_fingerprint"].as_str().unwrap().len(), 16);
    assert!(lines[1]["rejected"].is_string(), "{}", lines[1]);
    assert!(!stdout.contains("s3cr3tK3yValue9"), "raw key leaked: {stdout}");
}

#[test]
fn replay_finds_a_brute_force_and_leaks_no_token() {
    let mut input = String::new();
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJjbGllbnRfaWQiOiJhcHAtMSIsInN1YiI6InUxIn0.c2VjcmV0LXNpZ25hdHVyZS12YWx1ZQ";
    for i in 0..40 {
        input += &format!(
            r#"{{"start_time":"2026-11-21T10:{:02}:{:02}.000Z","method":"POST","path":"/login?access_token={token}","response_code":"401","duration":"3","downstream_remote_address":"203.0.113.7:5555","authorization":"Bearer {token}"}}"#,
            i / 6,
            (i % 6) * 10
        );
        input.push('\n');
    }
    let (code, stdout, stderr) = run_with_stdin(
        {
            let mut c = gatewatch();
            c.args(["replay", "--input", "-"]);
            c
        },
        &input,
    );
    assert_eq!(code, 0, "{stderr}");
    let alerts: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        alerts.iter().any(|a| a["detector"] == "auth_failure_spike" && a["entity"]["id"] == "203.0.113.7"),
        "{stdout}"
    );
    assert!(stderr.contains("40 records"), "{stderr}");
    // Envoy's JSON here has no user agent or request id: the summary says so, per reason
    assert!(stderr.contains("envoy user_agent in 100% of events (absent from the record)"), "{stderr}");
    for secret in [token, "c2VjcmV0LXNpZ25hdHVyZS12YWx1ZQ"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "raw token leaked");
    }
}

#[test]
fn unknown_sections_and_bad_scrub_rules_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("detectors")).unwrap();
    std::fs::write(
        dir.path().join("gatewatch.toml"),
        "[enigne]\nallowed_lateness = \"10s\"\n[scrub]\nno_such_option = 1\n[kafka]\nbrokers = \"k:9092\"\ntopics = []\n",
    )
    .unwrap();
    let out = gatewatch().arg("check").arg("--config").arg(dir.path().join("gatewatch.toml")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("gatewatch.toml: enigne: unknown section"), "{stdout}");
    assert!(stdout.contains("gatewatch.toml: scrub"), "{stdout}");
    assert!(stdout.contains("gatewatch.toml: kafka.topics"), "{stdout}");
}

#[test]
fn check_reports_actions_that_name_no_configured_sink() {
    let dir = tempfile::tempdir().unwrap();
    let det = dir.path().join("detectors");
    std::fs::create_dir(&det).unwrap();
    std::fs::write(dir.path().join("gatewatch.toml"), "").unwrap();
    std::fs::write(det.join("a.toml"), "id = \"a\"\nkind = \"token_reuse\"\nactions = [\"webhook:secops\"]\n").unwrap();
    let out = gatewatch().arg("check").arg("--config").arg(dir.path().join("gatewatch.toml")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("a.toml: actions[0]"), "{stdout}");
}

#[test]
fn an_unreachable_broker_gets_one_clear_line_and_sighup_does_not_kill() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gatewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[kafka]\nbrokers = \"127.0.0.1:1\"\ntopics = [\"gateway-access-logs\"]\n[detectors]\ndir = \"{}/detectors\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            env!("CARGO_MANIFEST_DIR")
        ),
    )
    .unwrap();
    let mut child = gatewatch()
        .args(["run", "--config"])
        .arg(&cfg)
        .env("GATEWATCH_FINGERPRINT_KEY", "0123456789abcdef-test-key")
        .env_remove("GATEWATCH_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGHUP) }, 0);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP killed the service");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("consuming brokers=127.0.0.1:1 topics=gateway-access-logs group=gatewatch"), "{log}");
    assert_eq!(log.matches("cannot reach the Kafka brokers").count(), 1, "{log}");
    assert!(log.lines().count() < 12, "a flood of {} lines:\n{log}", log.lines().count());
    assert!(!log.contains('\u{1b}'), "colour codes written to a pipe");
}

#[test]
fn offline_commands_work_from_any_folder_and_say_which_detectors() {
    let dir = tempfile::tempdir().unwrap();
    let sim = gatewatch().args(["simulate", "--format", "kong"]).output().unwrap();
    assert!(sim.status.success());
    let mut replay = gatewatch();
    replay.current_dir(dir.path()).args(["replay", "--input", "-"]);
    let (code, alerts, err) = run_with_stdin(replay, &String::from_utf8_lossy(&sim.stdout));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("the built-in detector files (detectors not found"), "{err}");
    assert!(alerts.lines().count() >= 7, "the attacks are found with the built-in set:\n{alerts}");

    let out = gatewatch().current_dir(dir.path()).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("checking the built-in detector files"), "{stdout}");

    // A folder the config names must exist: the error names the path.
    std::fs::write(dir.path().join("gatewatch.toml"), "[detectors]\ndir = \"my-rules\"\n").unwrap();
    let out = gatewatch().current_dir(dir.path()).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("my-rules") && stdout.contains("no such detector folder"), "{stdout}");
}

#[test]
fn tyk_text_log_replays_with_the_year_given() {
    let without =
        gatewatch().args(["replay", "--input", "tests/fixtures/gateways/tyk.log", "--format", "tyk"]).output().unwrap();
    let err = String::from_utf8_lossy(&without.stderr);
    assert!(err.contains("events: 0 read"), "{err}");
    assert!(err.contains("missing_timestamp"), "{err}");
    let with = gatewatch()
        .args(["replay", "--input", "tests/fixtures/gateways/tyk.log", "--format", "tyk", "--year", "2025"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&with.stderr);
    assert!(with.status.success(), "{err}");
    assert!(err.contains("events: 1 read"), "{err}");
    assert!(err.contains("rejected: 0"), "{err}");
}

#[test]
fn help_names_every_format_and_what_config_is() {
    for cmd in ["replay", "normalize", "scrub", "check", "redrive"] {
        let out = gatewatch().args([cmd, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("./gatewatch.toml"), "`{cmd} --help` does not say what --config defaults to:\n{text}");
    }
    for cmd in ["replay", "normalize"] {
        let out = gatewatch().args([cmd, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for name in gatewatch::normalize::Format::NAMES {
            assert!(text.contains(name), "`{cmd} --help` does not list {name}:\n{text}");
        }
    }
    let out = gatewatch().args(["simulate", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for f in gatewatch::simulate::render::SIM_FORMATS {
        assert!(text.contains(f.name()), "`simulate --help` does not list {}:\n{text}", f.name());
    }
}

#[test]
fn simulate_to_a_dead_broker_says_so_once_and_exits() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = gatewatch()
        .args(["simulate", "--minutes", "10", "--brokers", &format!("127.0.0.1:{port}"), "--topic", "t"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line, not librdkafka's retries:\n{err}");
    assert!(err.contains(&format!("producing to t at 127.0.0.1:{port}")) && err.contains("is the broker up"), "{err}");
}

#[test]
fn replay_sort_reads_an_unordered_file_in_event_time_order() {
    // A merged file: the second half of the hour was written first.
    let line = |m: u32, ip: &str| {
        format!(
            r#"{{"ts":"2026-11-21T10:{m:02}:00Z","source_ip":"{ip}","method":"GET","path":"/v1/orders","status":200,"latency_ms":20}}"#
        )
    };
    let mut input = String::new();
    for m in 30..40 {
        input += &line(m, "198.51.100.1");
        input.push('\n');
    }
    for m in 0..10 {
        input += &line(m, "198.51.100.2");
        input.push('\n');
    }
    let mut plain = gatewatch();
    plain.args(["replay", "--input", "-", "--format", "generic"]);
    let (code, _, err) = run_with_stdin(plain, &input);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("10 late (dropped"), "unsorted, the early half is late:\n{err}");
    let mut sorted = gatewatch();
    sorted.args(["replay", "--input", "-", "--format", "generic", "--sort"]);
    let (code, _, err) = run_with_stdin(sorted, &input);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("input sorted by event time") && err.contains("0 late (dropped"), "{err}");
    assert!(err.contains("events: 20 read"), "{err}");
}

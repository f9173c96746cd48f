//! Dashboards, alert rules and docker-compose stay honest: promtool checks and
//! unit-tests the rules, every metric the dashboard or the rules query is one
//! gatewatch defines, every file docker-compose mounts exists, and the config it mounts is
//! valid and points at the services and volumes the compose file defines.
//!
//! And a dashboard has data from the first scrape: `gatewatch run` (with sinks and
//! revocation configured) is started on a broker with no traffic yet, `/metrics` is scraped
//! once, and every metric that a Grafana panel or an alert rule queries is there, its closed
//! label sets at zero; `gatewatch_build_info` says which version runs. Then a real
//! Prometheus (Debian's `prometheus`) scrapes it, loads the alert rules, and every panel's
//! query returns data through its HTTP API.
#![allow(clippy::disallowed_methods)] // times a process start

mod kafka_support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kafka_support::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(Path::new(ROOT).join("dashboards"))
        .output()
        .expect("promtool is needed (Debian package `prometheus`; .ci/run installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let check = promtool(&["check", "rules", "gatewatch-rules.yml"]);
    assert!(check.contains("SUCCESS"), "{check}");
    let test = promtool(&["test", "rules", "gatewatch-rules.test.yml"]);
    assert!(test.contains("SUCCESS"), "{test}");
}

/// Metric names (`gatewatch_…`) in a text, histogram suffixes stripped.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("gatewatch_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let mut name = tail[..end].to_string();
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                name = base.to_string();
            }
        }
        out.push(name);
        rest = &tail[end..];
    }
    out.sort();
    out.dedup();
    out
}

fn source_text() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut s = String::new();
    walk(&Path::new(ROOT).join("src"), &mut s);
    s
}

#[test]
fn every_queried_metric_is_defined_by_gatewatch() {
    let src = source_text();
    let dash = std::fs::read_to_string(Path::new(ROOT).join("dashboards/gatewatch.json")).unwrap();
    let dash_json: serde_json::Value = serde_json::from_str(&dash).expect("dashboard is JSON");
    assert!(dash_json["panels"].as_array().is_some_and(|p| !p.is_empty()));
    let rules = std::fs::read_to_string(Path::new(ROOT).join("dashboards/gatewatch-rules.yml")).unwrap();
    let mut missing = Vec::new();
    for name in metric_names(&dash).into_iter().chain(metric_names(&rules)) {
        if !src.contains(&format!("\"{name}\"")) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "queried but not defined in src/: {missing:?}");
}

#[test]
fn every_file_docker_compose_mounts_exists() {
    let compose = std::fs::read_to_string(Path::new(ROOT).join("docker-compose.yml")).unwrap();
    let mut n = 0;
    for line in compose.lines() {
        let l = line.trim().trim_start_matches("- ");
        if let Some(rest) = l.strip_prefix("./") {
            let host = rest.split(':').next().unwrap();
            assert!(Path::new(ROOT).join(host).exists(), "docker-compose.yml mounts ./{host}, which does not exist");
            n += 1;
        }
    }
    assert!(n >= 5, "expected the config, detectors, rules, provisioning and dashboards mounts");
    for service in ["kafka:", "gatewatch:", "prometheus:", "alertmanager:", "grafana:", "mailcatcher:"] {
        assert!(compose.contains(&format!("  {service}")), "docker-compose.yml lacks the {service} service");
    }
}

#[test]
fn the_compose_config_is_valid_and_matches_the_compose_file() {
    let compose = std::fs::read_to_string(Path::new(ROOT).join("docker-compose.yml")).unwrap();
    let path = Path::new(ROOT).join("deploy/gatewatch.compose.toml");
    let cfg = gatewatch::config::GatewatchConfig::load(&path).expect("the compose config parses");
    let env = |k: &str| (k == "ADMIN_TOKEN").then(|| "a-compose-admin-token-0123".to_string());
    let s = gatewatch::actions::ActionsSettings::from_config_with_env(&cfg, &env)
        .expect("its [actions] and [admin] are valid");
    assert!(s.admin.token.is_some(), "the admin API is protected by ADMIN_TOKEN");
    assert!(compose.contains("ADMIN_TOKEN: ${ADMIN_TOKEN:?"), "compose requires ADMIN_TOKEN");
    let a = s.actions.expect("[actions]");
    let mail = a.sinks.iter().find(|s| s.name == "email:oncall").expect("a mail sink");
    match &mail.kind {
        gatewatch::actions::config::SinkKind::Email(e) => {
            assert_eq!(e.host, "mailcatcher");
            assert!(compose.contains(&format!("\"{}:{}\"", e.port, e.port)), "the mail catcher listens on {}", e.port);
        }
        _ => panic!("email:oncall is not an email sink"),
    }
    // The queue and the dead-letter file are on the state volume.
    assert!(compose.contains("gatewatch-state:/var/lib/gatewatch"));
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("chown gatewatch /var/lib/gatewatch") && dockerfile.contains("USER gatewatch"),
        "the image's user owns the state directory"
    );
    assert!(a.queue_dir.starts_with("/var/lib/gatewatch") && a.dead_letter.starts_with("/var/lib/gatewatch"));
    // So is the console's alert history.
    assert!(s.admin.history_file.as_ref().is_some_and(|f| f.starts_with("/var/lib/gatewatch")));
    // Detections and Prometheus's own alerts meet in the compose Alertmanager.
    let am = a.sinks.iter().find(|s| s.name == "alertmanager:main").expect("an Alertmanager sink");
    match &am.kind {
        gatewatch::actions::config::SinkKind::Alertmanager(c) => {
            assert_eq!(c.url.trim_end_matches('/'), "http://alertmanager:9093")
        }
        _ => panic!("alertmanager:main is not an Alertmanager sink"),
    }
    let prom = std::fs::read_to_string(Path::new(ROOT).join("deploy/prometheus/prometheus.yml")).unwrap();
    assert!(compose.contains("  alertmanager:") && prom.contains("\"alertmanager:9093\""), "{prom}");
    assert!(compose.contains("gatewatch-rules.yml:/etc/prometheus/rules/gatewatch-rules.yml"));
    assert!(prom.contains("/etc/prometheus/rules/gatewatch-rules.yml") && prom.contains("\"gatewatch:9977\""));
    assert!(compose.contains("\"9977:9977\"") && s.admin.listen.port() == 9977);
    let kafka = gatewatch::source::kafka::KafkaSettings::from_config(&cfg).expect("[kafka] is valid");
    assert!(compose.contains("INTERNAL://kafka:9092") && kafka.brokers == "kafka:9092");
}

fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    // HTTP/1.0: the answer comes whole, never chunked.
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Starts `gatewatch run` with a webhook sink and dry-run revocation; returns the process,
/// the admin address and the temporary directory.
fn start_gatewatch(bootstrap: &str, group: &str) -> (std::process::Child, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let admin =
        format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("gatewatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[fingerprint]
key = "{KEY}"
[input]
format = "generic"
[detectors]
dir = "{detectors}"
[admin]
listen = "{admin}"
[kafka]
brokers = "{bootstrap}"
topics = ["logs"]
group_id = "{group}"
alerts_topic = "alerts"
start_from = "earliest"
[kafka.repartition]
enabled = "never"
[actions]
dead_letter = "{dir}/dead-letter.jsonl"
[actions.webhook.secops]
url = "http://127.0.0.1:{closed}/hook"
min_severity = "high"
[revocation]
mode = "dry-run"
audit_log = "{dir}/revocations.jsonl"
"#,
            detectors = detectors_dir().display(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    let child = spawn_run(&config, &dir.path().join("run.log"));
    (child, admin, dir)
}

fn wait_for_metrics(admin: &str, dir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = get(admin, "/metrics").filter(|t| t.contains("gatewatch_build_info")) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "no /metrics; log:\n{}",
            std::fs::read_to_string(dir.join("run.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pct_encode(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

/// The JSON body of a Prometheus API answer.
fn prom_query(addr: &str, q: &str) -> Option<serde_json::Value> {
    let raw = get(addr, &format!("/api/v1/query?query={}", pct_encode(q)))?;
    let body = raw.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body.trim()).ok()
}

#[test]
fn a_real_prometheus_gets_data_for_every_panel_and_loads_the_rules() {
    let mc = cluster(&[("logs", 2), ("alerts", 1)]);
    let bootstrap = mc.bootstrap_servers();
    produce(
        &bootstrap,
        "logs",
        &merge(vec![benign(T0, T0 + 120_000, 3, 10_000, 2), brute_force("203.0.113.9", T0, 30, 2_000, 2)]),
    );
    let (mut child, admin, dir) = start_gatewatch(&bootstrap, "metrics-prometheus");
    wait_for_metrics(&admin, dir.path());

    let prom_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let prom = format!("127.0.0.1:{prom_port}");
    let rules = Path::new(ROOT).join("dashboards/gatewatch-rules.yml");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: gatewatch\n    static_configs:\n      - targets: ['{admin}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let mut server = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus is needed (Debian package `prometheus`; .ci/run installs it)");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prom = Kill(&mut server);
    let _gw = Kill(&mut child);

    let up = |samples: &str| {
        prom_query(&prom, &format!("count_over_time(up{{job=\"gatewatch\"}}[1m]) >= {samples}"))
            .is_some_and(|v| v["data"]["result"].as_array().is_some_and(|r| !r.is_empty()))
    };
    assert!(
        wait_until(Duration::from_secs(60), || up("5")),
        "Prometheus did not scrape gatewatch five times; its log:\n{}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(ROOT).join("dashboards/gatewatch.json")).unwrap())
            .unwrap();
    let mut empty = Vec::new();
    let mut n = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = t["expr"].as_str() else { continue };
            n += 1;
            let v = prom_query(&prom, expr).unwrap_or_default();
            if v["status"] != "success" || v["data"]["result"].as_array().is_none_or(|r| r.is_empty()) {
                empty.push(format!("{}: {expr} -> {v}", panel["title"]));
            }
        }
    }
    assert!(n >= 20, "only {n} panel queries");
    assert!(empty.is_empty(), "panels without data:\n{}", empty.join("\n"));
    // The rules loaded and evaluate against the live series.
    let raw = get(&prom, "/api/v1/rules").unwrap();
    let body: serde_json::Value = serde_json::from_str(raw.split_once("\r\n\r\n").unwrap().1.trim()).unwrap();
    let groups = body["data"]["groups"].as_array().expect("rule groups");
    let rules: Vec<&serde_json::Value> = groups.iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert!(rules.len() >= 10, "{body}");
    assert!(rules.iter().all(|r| r["health"] != "err"), "a rule failed to evaluate: {body}");
}

#[test]
fn every_metric_a_panel_or_rule_queries_is_exported_from_the_start() {
    let mc = cluster(&[("logs", 2), ("alerts", 1)]);
    let (mut child, admin, dir) = start_gatewatch(&mc.bootstrap_servers(), "metrics-at-start");
    let text = wait_for_metrics(&admin, dir.path());
    let _ = child.kill();
    let _ = child.wait();

    let exported: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| metric_names(n).pop().unwrap_or_default())
        .collect();
    let dash = std::fs::read_to_string(Path::new(ROOT).join("dashboards/gatewatch.json")).unwrap();
    let rules = std::fs::read_to_string(Path::new(ROOT).join("dashboards/gatewatch-rules.yml")).unwrap();
    let mut missing = Vec::new();
    for name in metric_names(&dash).into_iter().chain(metric_names(&rules)) {
        if !exported.contains(&name) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "queried by a panel or rule but not on the first scrape: {missing:?}\n{text}");
    assert!(text.contains(&format!("gatewatch_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "{text}");
    for series in [
        "gatewatch_revocation_decisions_total{verdict=\"dry_run\"} 0",
        "gatewatch_notifications_total{result=\"expired\",sink=\"webhook:secops\"} 0",
        "gatewatch_secrets_scrubbed_total{kind=\"jwt\",place=\"text\"} 0",
        "gatewatch_credential_exposures_total{kind=\"github_token\",place=\"query\"} 0",
    ] {
        assert!(text.contains(series), "missing {series}");
    }
}

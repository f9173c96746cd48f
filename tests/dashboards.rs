//! Dashboards, alert rules and docker-compose stay honest: promtool checks and
//! unit-tests the rules, every metric the dashboard or the rules query is one
//! gatewatch defines, every file docker-compose mounts exists, and the config it mounts is
//! valid and points at the services and volumes the compose file defines.

use std::path::Path;
use std::process::Command;

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

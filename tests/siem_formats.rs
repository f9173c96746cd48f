//! Findings for SIEMs, checked against the published schemas (vendored, Apache 2.0):
//! OCSF 1.8.0 (`tests/data/schemas/ocsf-1.8.0`: the dictionary, the Detection Finding class
//! and what it extends, the objects the findings use) and ECS 9.4.0
//! (`tests/data/schemas/ecs-9.4.0`: every field with its type, and `event.*`'s allowed values).
//!
//! The OCSF check resolves the class's `extends` chain and each object's, and holds every
//! attribute emitted to the schema: it must be defined (no invented names), of its dictionary
//! type, within its enum (class-level enums win), and every `required` one must be there. The
//! ECS check holds every leaf field to the ECS field list and type (custom fields are allowed
//! only under `gatewatch.*`, as ECS asks), and `event.kind` / `event.category` / `event.type`
//! to their allowed values and the category's expected types.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use gatewatch::actions::lifecycle::{Notification, Status};
use gatewatch::actions::siem::{ecs, ocsf};
use gatewatch::event::{Alert, ClientIdSource, Entity, EntityKind, Fingerprint, Severity};
use serde_json::{json, Map, Value};

fn schemas() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas")
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

fn alert(kind: EntityKind, id: &str, detector: &str, evidence: Value) -> Alert {
    Alert {
        id: "3f9c0a1b2c3d4e5f60718293a4b5c6d7".into(),
        detector: detector.into(),
        rule: format!("{detector}-default"),
        severity: Severity::High,
        entity: Entity { kind, id: id.into() },
        client_id: Some("app-69736b".into()),
        client_id_source: ClientIdSource::Gateway,
        token_fingerprint: Some(Fingerprint([0x9b, 0x1e, 0x44, 0xc0, 0x7f, 0x2a, 0x1d, 0x3e])),
        window_start: 1_795_255_200_000,
        window_end: 1_795_255_500_000,
        summary: "token used from 7 networks in 5m (limit 3)".into(),
        evidence: evidence.as_object().cloned().unwrap_or_default(),
        actions: vec!["webhook:secops".into(), "revoke:dry-run".into()],
    }
}

/// Notifications of every shape: a new alert on a token, a Sigma alert on an address with
/// ATT&CK tags, a notification folding three, and a resolved one.
fn notifications() -> Vec<Notification> {
    let token = alert(
        EntityKind::Token,
        "9b1e44c07f2a1d3e",
        "token_reuse",
        json!({"distinct_networks": 7, "source_ips": ["203.0.113.5"]}),
    );
    let sigma = alert(
        EntityKind::SourceIp,
        "203.0.113.66",
        "sigma",
        json!({"title": "Password guessing", "level": "high", "tags": ["attack.credential-access", "attack.t1110.001"], "count": 12}),
    );
    let network = alert(EntityKind::SourceIp, "198.51.100.0/24", "auth_failure_spike", json!({"failures": 40}));
    let mut folded = Notification::firing(network);
    folded.count = 3;
    folded.first_window_start -= 600_000;
    let mut resolved = Notification::firing(token.clone());
    resolved.status = Status::Resolved;
    vec![Notification::firing(token), Notification::firing(sigma), folded, resolved]
}

// --- OCSF -------------------------------------------------------------------------------

struct Ocsf {
    root: PathBuf,
    dictionary: Map<String, Value>,
    types: Map<String, Value>,
}

impl Ocsf {
    fn load() -> Self {
        let root = schemas().join("ocsf-1.8.0");
        let d = read_json(&root.join("dictionary.json"));
        Ocsf {
            dictionary: d["attributes"].as_object().unwrap().clone(),
            types: d["types"]["attributes"].as_object().unwrap().clone(),
            root,
        }
    }

    /// A class's or object's attributes, its `extends` chain resolved (the child's settings win).
    fn attributes(&self, file: &Path) -> BTreeMap<String, Map<String, Value>> {
        let def = read_json(file);
        let mut out = match def["extends"].as_str() {
            Some(parent) => {
                let dir = file.parent().unwrap();
                let p = [dir.join(format!("{parent}.json")), self.root.join("events").join(format!("{parent}.json"))]
                    .into_iter()
                    .find(|p| p.is_file())
                    .unwrap_or_else(|| panic!("`{parent}` (extended by {}) is not vendored", file.display()));
                self.attributes(&p)
            }
            None => BTreeMap::new(),
        };
        for (k, v) in def["attributes"].as_object().into_iter().flatten() {
            if k == "$include" {
                continue; // profiles: optional attributes we do not emit
            }
            let e = out.entry(k.clone()).or_default();
            for (f, x) in v.as_object().unwrap() {
                e.insert(f.clone(), x.clone());
            }
        }
        out
    }

    /// The base type of a dictionary type (`ip_t` → `string_t`).
    fn base(&self, t: &str) -> String {
        match self.types.get(t).and_then(|d| d["type"].as_str()) {
            Some(b) if b != t => self.base(b),
            _ => t.to_string(),
        }
    }

    fn check_value(&self, path: &str, name: &str, spec: &Map<String, Value>, v: &Value, errs: &mut Vec<String>) {
        let dict = self.dictionary.get(name).and_then(Value::as_object);
        let Some(dict) = dict else {
            errs.push(format!("{path}: `{name}` is not in the dictionary"));
            return;
        };
        let is_array = dict.get("is_array").and_then(Value::as_bool).unwrap_or(false);
        let items: Vec<&Value> = match (is_array, v) {
            (true, Value::Array(a)) => a.iter().collect(),
            (true, _) => return errs.push(format!("{path}: must be an array")),
            (false, Value::Array(_)) => return errs.push(format!("{path}: must not be an array")),
            (false, x) => vec![x],
        };
        let ty = dict["type"].as_str().unwrap_or("");
        // The class and category ids and `type_uid` are derived by OCSF's schema compiler (the
        // raw dictionary's enums are placeholders): checked against `categories.json` below.
        let derived = matches!(name, "class_uid" | "category_uid" | "type_uid");
        let enumeration = spec.get("enum").or(dict.get("enum")).and_then(Value::as_object).filter(|_| !derived);
        for item in items {
            if let Some(e) = enumeration {
                let key = item.to_string();
                if !e.contains_key(&key) {
                    errs.push(format!("{path}: {key} is not one of {:?}", e.keys().collect::<Vec<_>>()));
                }
            }
            let base = self.base(ty);
            let ok = match base.as_str() {
                "string_t" => item.is_string(),
                "integer_t" | "long_t" => item.is_i64() || item.is_u64(),
                "float_t" => item.is_number(),
                "boolean_t" => item.is_boolean(),
                "json_t" => true,
                "object_t" => {
                    let object = dict["object_type"].as_str().unwrap();
                    self.check_object(path, object, item, errs);
                    true
                }
                // An object attribute's type is the object's name.
                object if self.root.join("objects").join(format!("{object}.json")).is_file() => {
                    self.check_object(path, object, item, errs);
                    true
                }
                other => {
                    errs.push(format!("{path}: unknown type {other}"));
                    true
                }
            };
            if !ok {
                errs.push(format!("{path}: {item} is not of type {ty} ({base})"));
            }
            if ty == "ip_t" && item.as_str().is_some_and(|s| s.parse::<std::net::IpAddr>().is_err()) {
                errs.push(format!("{path}: {item} is not an IP address"));
            }
        }
    }

    fn check_fields(
        &self,
        path: &str,
        attrs: &BTreeMap<String, Map<String, Value>>,
        v: &Value,
        errs: &mut Vec<String>,
    ) {
        let Some(obj) = v.as_object() else { return errs.push(format!("{path}: must be an object")) };
        for (k, spec) in attrs {
            if spec.get("requirement").and_then(Value::as_str) == Some("required") && !obj.contains_key(k) {
                errs.push(format!("{path}: required `{k}` is missing"));
            }
        }
        for (k, x) in obj {
            match attrs.get(k) {
                Some(spec) => self.check_value(&format!("{path}.{k}"), k, spec, x, errs),
                None => errs.push(format!("{path}: `{k}` is not an attribute here")),
            }
        }
    }

    fn check_object(&self, path: &str, object: &str, v: &Value, errs: &mut Vec<String>) {
        let file = self.root.join("objects").join(format!("{object}.json"));
        assert!(file.is_file(), "object `{object}` ({path}) is not vendored");
        let attrs = self.attributes(&file);
        self.check_fields(path, &attrs, v, errs);
        // `at_least_one` constraints (evidences).
        let def = read_json(&file);
        if let (Some(any), Some(o)) = (def["constraints"]["at_least_one"].as_array(), v.as_object()) {
            if !any.iter().filter_map(Value::as_str).any(|k| o.contains_key(k)) {
                errs.push(format!("{path}: needs at least one of {any:?}"));
            }
        }
    }
}

#[test]
fn ocsf_detection_findings_follow_the_schema() {
    let schema = Ocsf::load();
    let class = schema.attributes(&schema.root.join("events/findings/detection_finding.json"));
    let uid = read_json(&schema.root.join("events/findings/detection_finding.json"))["uid"].as_u64().unwrap();
    let category = read_json(&schema.root.join("categories.json"))["attributes"]["findings"]["uid"].as_u64().unwrap();
    assert_eq!(category, ocsf::CATEGORY_UID as u64, "Findings");
    assert_eq!(category * 1000 + uid, ocsf::CLASS_UID as u64, "Detection Finding's class uid");
    for n in notifications() {
        let f = ocsf::render(&n);
        let mut errs = Vec::new();
        schema.check_fields("finding", &class, &f, &mut errs);
        assert!(errs.is_empty(), "{errs:#?}\n{f:#}");
        assert_eq!(f["type_uid"], f["class_uid"].as_u64().unwrap() * 100 + f["activity_id"].as_u64().unwrap());
        assert_eq!(f["finding_info"]["uid"], n.alert.id);
        assert_eq!(f["metadata"]["version"], read_json(&schema.root.join("version.json"))["version"]);
    }
    let [create, sigma, folded, resolved] = notifications().try_into().unwrap_or_else(|_| unreachable!());
    assert_eq!(ocsf::render(&create)["activity_id"], 1);
    assert_eq!(ocsf::render(&folded)["activity_id"], 2);
    assert_eq!(ocsf::render(&resolved)["activity_id"], 3, "a resolved notification closes the finding");
    assert_eq!(ocsf::render(&resolved)["status_id"], 4);
    let attack = &ocsf::render(&sigma)["finding_info"]["attacks"][0];
    assert_eq!(
        (attack["technique"]["uid"].as_str(), attack["sub_technique"]["uid"].as_str()),
        (Some("T1110"), Some("T1110.001"))
    );
    assert_eq!(ocsf::render(&sigma)["evidences"][0]["src_endpoint"]["ip"], "203.0.113.66");
    assert!(ocsf::render(&folded)["evidences"][0].get("src_endpoint").is_none(), "a network is not an ip_t");
}

// --- ECS --------------------------------------------------------------------------------

/// Every ECS field and its type, from `fields.csv`.
fn ecs_fields() -> HashMap<String, String> {
    let text = std::fs::read_to_string(schemas().join("ecs-9.4.0/fields.csv")).unwrap();
    let mut out = HashMap::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.splitn(6, ',').collect();
        if cols.len() >= 5 {
            out.insert(cols[3].to_string(), cols[4].to_string());
        }
    }
    out
}

fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaves(&p, x, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// `event.yml`'s allowed values for one field, with each value's `expected_event_types`.
fn allowed(event_yml: &str, field: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut in_field = false;
    let mut in_allowed = false;
    let mut current: Option<String> = None;
    let mut in_expected = false;
    for line in event_yml.lines() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if indent == 4 && t.starts_with("- name: ") {
            in_field = t == format!("- name: {field}");
            in_allowed = false;
            continue;
        }
        if !in_field {
            continue;
        }
        if indent == 6 && t.starts_with("allowed_values:") {
            in_allowed = true;
            continue;
        }
        if in_allowed && indent == 8 && t.starts_with("- name: ") {
            let name = t["- name: ".len()..].trim().to_string();
            out.insert(name.clone(), Vec::new());
            current = Some(name);
            in_expected = false;
        } else if in_allowed && indent == 10 && t.starts_with("expected_event_types:") {
            in_expected = true;
        } else if in_allowed && in_expected && indent >= 12 && t.starts_with("- ") {
            if let Some(c) = &current {
                out.get_mut(c).unwrap().push(t[2..].trim().to_string());
            }
        } else if in_allowed && indent == 10 {
            in_expected = false;
        }
    }
    out
}

#[test]
fn ecs_alerts_follow_the_schema() {
    let fields = ecs_fields();
    assert!(fields.len() > 1000, "{} fields", fields.len());
    let event_yml = std::fs::read_to_string(schemas().join("ecs-9.4.0/event.yml")).unwrap();
    let kinds = allowed(&event_yml, "kind");
    let categories = allowed(&event_yml, "category");
    let types = allowed(&event_yml, "type");
    assert!(kinds.contains_key("alert") && categories.contains_key("intrusion_detection"), "{kinds:?}");
    for n in notifications() {
        let doc = ecs::render(&n);
        let mut flat = Vec::new();
        leaves("", &doc, &mut flat);
        for (name, v) in &flat {
            if name.starts_with("gatewatch.") {
                continue; // our own namespace, as ECS asks of custom fields
            }
            let ty = fields.get(name).unwrap_or_else(|| panic!("`{name}` is not an ECS field:\n{doc:#}"));
            let values: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                x => vec![x],
            };
            for x in values {
                let ok = match ty.as_str() {
                    "keyword" | "constant_keyword" | "wildcard" | "match_only_text" | "text" => x.is_string(),
                    "long" | "integer" | "short" | "byte" => x.is_i64() || x.is_u64(),
                    "float" | "scaled_float" | "double" => x.is_number(),
                    "boolean" => x.is_boolean(),
                    "date" => x.as_str().is_some_and(|s| gatewatch::normalize::time::parse_rfc3339(s).is_some()),
                    "ip" => x.as_str().is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
                    other => panic!("`{name}`: type {other} not checked here"),
                };
                assert!(ok, "`{name}` = {x} is not of ECS type {ty}");
            }
        }
        assert!(kinds.contains_key(doc["event"]["kind"].as_str().unwrap()));
        for c in doc["event"]["category"].as_array().unwrap() {
            let expected = &categories[c.as_str().unwrap()];
            for t in doc["event"]["type"].as_array().unwrap() {
                assert!(types.contains_key(t.as_str().unwrap()), "{t}");
                assert!(expected.iter().any(|e| e == t.as_str().unwrap()), "{c} expects {expected:?}, not {t}");
            }
        }
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["gatewatch"]["alert_id"], n.alert.id);
    }
    let [_, sigma, folded, resolved] = notifications().try_into().unwrap_or_else(|_| unreachable!());
    assert_eq!(ecs::render(&sigma)["threat"]["technique"]["id"][0], "T1110.001");
    assert_eq!(ecs::render(&sigma)["source"]["ip"], "203.0.113.66");
    assert!(ecs::render(&folded).get("source").is_none());
    assert_eq!(ecs::render(&resolved)["gatewatch"]["status"], "resolved");
}

#[test]
fn the_formats_are_chosen_per_webhook_and_for_the_alerts_topic() {
    use gatewatch::actions::config::{ActionsSettings, WebhookFormat};
    use gatewatch::actions::siem::AlertFormat;
    use gatewatch::actions::webhook::WebhookSink;
    let text = r#"
[actions.webhook.siem]
url = "https://siem.example/ingest"
format = "ocsf"
[actions.webhook.elastic]
url = "https://elastic.example/ingest"
format = "ecs"
"#;
    let table: toml::Table = toml::from_str(text).unwrap();
    let cfg = gatewatch::config::GatewatchConfig { other: table.into_iter().collect(), ..Default::default() };
    let s = ActionsSettings::from_config_with_env(&cfg, &|_| None).expect("valid");
    let sinks = &s.actions.expect("[actions]").sinks;
    let n = notifications().remove(1);
    for (name, want) in [("webhook:siem", ocsf::render(&n)), ("webhook:elastic", ecs::render(&n))] {
        let sink = sinks.iter().find(|x| x.name == name).expect(name);
        let gatewatch::actions::config::SinkKind::Webhook(w) = &sink.kind else { panic!("{name} is a webhook") };
        let body: Value = serde_json::from_slice(&WebhookSink::body(w.format, &n)).unwrap();
        assert_eq!(body, want, "{name}");
    }
    assert_eq!(AlertFormat::parse("ocsf"), Some(AlertFormat::Ocsf));
    assert_eq!(AlertFormat::parse("cef"), None);
    let bad: toml::Table =
        toml::from_str("[actions.webhook.x]\nurl = \"https://x.example\"\nformat = \"cef\"\n").unwrap();
    let cfg = gatewatch::config::GatewatchConfig { other: bad.into_iter().collect(), ..Default::default() };
    let Err(errs) = ActionsSettings::from_config_with_env(&cfg, &|_| None) else { panic!("refused") };
    assert!(errs.iter().any(|e| e.to_string().contains("one of json, slack, ocsf, ecs")), "{errs:?}");
    let _ = WebhookFormat::Siem(AlertFormat::Ecs);
}

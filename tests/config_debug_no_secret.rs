//! `Debug` of the configuration never shows a secret: a full `gatewatch.toml` with a
//! distinctive fake secret in every field that can hold one (the fingerprint key, librdkafka
//! values, credentials in sink and target URLs, header values) and in every variable a
//! `*_env` key names, parsed the way `gatewatch run` parses it, then every config value and
//! sub-value is formatted with `{:?}` and `{:#?}` and searched for each secret.

use gatewatch::actions::config::{ActionsSettings, SinkKind};
use gatewatch::config::GatewatchConfig;
use gatewatch::scrub::ScrubConfig;
use gatewatch::simulate::SimConfig;
use gatewatch::source::kafka::KafkaSettings;

/// Every secret below contains this, so one search also catches a secret cut in half.
const MARK: &str = "zz9secret";

const CONFIG: &str = r#"
[fingerprint]
key = "zz9secret-fingerprint-key-0123456789"

[input]
format = "kong"

[normalize]
trusted_proxies = ["10.0.0.0/8"]

[engine]
allowed_lateness = "30s"

[detectors]
dir = "detectors"

[scrub]
headers = ["x-internal-auth"]

[kafka]
brokers = "kafka-1:9092"
topics = ["gateway-access-logs"]
alerts_topic = "gatewatch-alerts"
[kafka.librdkafka]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "zz9secret-sasl-username"
"sasl.password" = "zz9secret-sasl-password"
"ssl.key.password" = "zz9secret-ssl-key-password"
"sasl.oauthbearer.client.secret" = "zz9secret-oauthbearer-secret"

[admin]
listen = "127.0.0.1:9977"
token_env = "T_ADMIN_TOKEN"

[actions]
dead_letter = "undelivered.jsonl"
[actions.webhook.secops]
url = "https://hooks.example.com/services/zz9secret-webhook-path?token=zz9secret-webhook-query"
secret_env = "T_WEBHOOK_SECRET"
headers = { "X-Api-Key" = "zz9secret-webhook-header" }
[actions.email.oncall]
host = "smtp.example.com"
username = "gatewatch"
password_env = "T_SMTP_PASSWORD"
from = "gatewatch@example.com"
to = ["oncall@example.com"]
[actions.alertmanager.main]
url = "http://am-user:zz9secret-am-userinfo@am.example.com:9093/"
bearer_env = "T_AM_BEARER"

[revocation]
mode = "dry-run"
[revocation.oauth]
endpoint = "https://idp.example.com/oauth2/revoke?api_key=zz9secret-oauth-query"
client_id = "gatewatch"
client_secret_env = "T_IDP_SECRET"
[revocation.http]
url = "https://bridge.example.com/zz9secret-http-path/{client_id}/revoke"
bearer_env = "T_HTTP_BEARER"
secret_env = "T_HTTP_HMAC"
"#;

fn env(name: &str) -> Option<String> {
    let v = match name {
        "T_ADMIN_TOKEN" => "zz9secret-admin-token-0123456789",
        "T_WEBHOOK_SECRET" => "zz9secret-webhook-hmac",
        "T_SMTP_PASSWORD" => "zz9secret-smtp-password",
        "T_AM_BEARER" => "zz9secret-am-bearer",
        "T_IDP_SECRET" => "zz9secret-idp-client-secret",
        "T_HTTP_BEARER" => "zz9secret-http-bearer",
        "T_HTTP_HMAC" => "zz9secret-http-hmac",
        _ => return None,
    };
    Some(v.to_string())
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(!text.contains(MARK), "Debug of {what} shows a secret:\n{text}");
    // Pieces a partial redaction could leave behind.
    for piece in ["fingerprint-key", "sasl-password", "webhook-path", "webhook-query", "am-userinfo", "oauth-query"] {
        assert!(!text.contains(piece), "Debug of {what} shows `{piece}`:\n{text}");
    }
}

fn check(what: &str, v: &dyn std::fmt::Debug) {
    assert_no_secret(what, &format!("{v:?}"));
    assert_no_secret(what, &format!("{v:#?}"));
}

#[test]
fn debug_of_every_config_type_holds_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatewatch.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let cfg = GatewatchConfig::load(&path).expect("the config is valid");
    check("GatewatchConfig", &cfg);
    check("FingerprintConfig", &cfg.fingerprint);
    check("InputConfig", &cfg.input);
    check("NormalizeConfig", &cfg.normalize);
    check("EngineConfig", &cfg.engine);
    assert!(format!("{cfg:?}").contains("kafka"), "the sections are still named");

    let kafka = KafkaSettings::from_config(&cfg).expect("[kafka] parses");
    assert_eq!(kafka.librdkafka["sasl.password"], "zz9secret-sasl-password", "the value is kept for librdkafka");
    check("KafkaSettings", &kafka);
    assert!(format!("{kafka:?}").contains("sasl.password"), "property names are shown");

    check("ScrubConfig", &ScrubConfig::from_config(&cfg).expect("[scrub] parses"));

    let s = ActionsSettings::from_config_with_env(&cfg, &env).expect("[actions], [revocation], [admin] parse");
    check("ActionsSettings", &s);
    check("AdminConfig", &s.admin);
    assert_eq!(s.admin.token.as_ref().unwrap().expose(), "zz9secret-admin-token-0123456789");

    let actions = s.actions.as_ref().expect("[actions]");
    check("ActionsConfig", actions);
    assert_eq!(actions.sinks.len(), 3);
    for sink in &actions.sinks {
        check(&sink.name, sink);
        match &sink.kind {
            SinkKind::Webhook(w) => {
                check("WebhookConfig", w);
                let d = format!("{w:?}");
                assert!(d.contains("https://hooks.example.com/***"), "scheme and host stay: {d}");
                assert!(d.contains("X-Api-Key"), "header names stay: {d}");
            }
            SinkKind::Email(e) => check("EmailConfig", e),
            SinkKind::Alertmanager(a) => {
                check("AlertmanagerConfig", a);
                assert!(format!("{a:?}").contains("am.example.com:9093"));
            }
            SinkKind::File(f) => check("FileConfig", f),
            SinkKind::Kafka(k) => check("KafkaSinkConfig", k),
        }
    }

    let r = s.revocation.as_ref().expect("[revocation]");
    check("RevocationConfig", r);
    check("OAuthTargetConfig", r.oauth.as_ref().expect("[revocation.oauth]"));
    check("HttpTargetConfig", r.http.as_ref().expect("[revocation.http]"));

    let sim = SimConfig { fingerprint_key: b"zz9secret-simulation-key".to_vec(), ..SimConfig::default() };
    check("SimConfig", &sim);
}

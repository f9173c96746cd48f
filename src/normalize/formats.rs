//! Every gateway format, declared once: the [`Format`] enum below is written through
//! `formats!`, so each variant states, next to its doc comment, the names `--format` and
//! `[input] format` accept and the [`Gateway`]s (`Event::gateway` values) its parser writes.
//! Each gateway is declared once too, as a constant with the fields its default log layout
//! never writes, because formats share them (`envoy` and `envoy-text` write `envoy`; `nginx`
//! writes `nginx`, `ingress-nginx` and Traefik CLF's `traefik`).
//!
//! Derived from these declarations, never written again: [`FORMATS`], [`Format::NAMES`],
//! [`Format::ALL`], [`Format::parse`], [`Format::name`], the `--format` help ([`Format::HELP`],
//! and the "one of: …" errors built from `NAMES`), the closed `gateway` label set
//! ([`GATEWAYS`]) and what counts as `not_in_format` in [`super::missing`].
//!
//! Not here: each format's parser (`src/normalize/<format>.rs`, dispatched by an exhaustive
//! match in `Normalizer::normalize_record_at`) and its auto-detection (`detect.rs`, an ordered
//! cascade of distinctive keys). The tests below run a sample of every format through its
//! parser and check that each `gateway` it writes is declared here.

use super::missing::{bits, Field, Field::*};

/// An `Event::gateway` value: the `gateway` label of the per-gateway counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// The value, as events and metric labels carry it.
    pub name: &'static str,
    /// The fields the gateway's default log layout never writes (a bit per [`Field`]): one of
    /// them missing from a record is `not_in_format`, any other `not_in_record`.
    pub(super) not_in_format: u16,
}

impl Gateway {
    const fn new(name: &'static str, not_in_format: &[Field]) -> Gateway {
        Gateway { name, not_in_format: bits(not_in_format) }
    }

    /// Whether the gateway's default log layout never writes `field`.
    pub fn never_writes(self, field: Field) -> bool {
        self.not_in_format & (1 << field as u16) != 0
    }
}

/// Kong logs everything it knows; identity is absent only on anonymous routes.
pub const KONG: Gateway = Gateway::new("kong", &[]);
/// Envoy/Istio defaults carry no identity (jwt_authn / ext_authz metadata must be added).
pub const ENVOY: Gateway = Gateway::new("envoy", &[ClientId, Subject, Token]);
/// NGINX `combined` / `main`: no host, no timings, no request id (the query can still carry a
/// token). NGINX JSON records are `nginx` events too, so this holds for them as well.
pub const NGINX: Gateway = Gateway::new("nginx", &[Host, LatencyMs, UpstreamLatencyMs, RequestId]);
/// ingress-nginx `upstreaminfo`: no host.
pub const INGRESS_NGINX: Gateway = Gateway::new("ingress-nginx", &[Host]);
/// Traefik: request headers are dropped unless `fields.headers` keeps them.
pub const TRAEFIK: Gateway = Gateway::new("traefik", &[UserAgent, RequestId]);
/// HAProxy `option httplog`: no header and no token unless a `capture request header` line
/// logs it (Host, User-Agent, Authorization, X-Request-Id).
pub const HAPROXY: Gateway = Gateway::new("haproxy", &[ClientId, Subject, Token, Host, UserAgent, RequestId]);
/// AWS's example templates: requestId, ip, caller, user, requestTime, httpMethod,
/// resourcePath/routeKey, status, protocol, responseLength.
pub const AWS: Gateway = Gateway::new("aws", &[Token, Path, Host, LatencyMs, UpstreamLatencyMs, UserAgent]);
/// APISIX: the request-id plugin is off by default.
pub const APISIX: Gateway = Gateway::new("apisix", &[RequestId]);
/// Tyk access log: no principal, no response size.
pub const TYK: Gateway = Gateway::new("tyk", &[Subject, BytesSent]);
/// Azure API Management: request headers are opt-in.
pub const AZURE_APIM: Gateway = Gateway::new("azure-apim", &[UserAgent]);
/// The normalized names themselves: whatever the record has.
pub const GENERIC: Gateway = Gateway::new("generic", &[]);

/// One format's declaration, as written in `formats!`.
#[derive(Debug)]
pub struct FormatSpec {
    pub format: Format,
    /// The names `--format` and `[input] format` accept: the format's own first ([`Format::name`],
    /// [`Format::NAMES`], help and error messages), then its aliases.
    pub names: &'static [&'static str],
    /// The `Event::gateway` values its parser writes.
    pub gateways: &'static [Gateway],
}

/// Writes the `Format` enum and [`FORMATS`], one entry per variant in variant order, from a
/// single list: a variant cannot exist without its names and gateways.
macro_rules! formats {
    (
        $(#[$enum_attr:meta])*
        pub enum Format {
            $(
                $(#[$attr:meta])*
                $variant:ident { names: [$($name:literal),+ $(,)?], gateways: [$($gateway:ident),* $(,)?] $(,)? }
            ),+ $(,)?
        }
    ) => {
        $(#[$enum_attr])*
        pub enum Format {
            $( $(#[$attr])* $variant, )+
        }

        /// Every format's declaration, in `Format` order: `FORMATS[f as usize].format == f`.
        pub const FORMATS: &[FormatSpec] = &[
            $( FormatSpec { format: Format::$variant, names: &[$($name),+], gateways: &[$($gateway),*] }, )+
        ];
    };
}

formats! {
    /// Input formats. `Auto` picks per record. Envelopes (CloudWatch Logs, Firehose,
    /// Event Hubs `records`, shipper `{"log": ...}` wrappers, batch arrays) are not
    /// formats: they are unwrapped before any format reads the record.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Format {
        /// Each record's format is detected ([`super::detect`]); it is never a record's own.
        Auto { names: ["auto"], gateways: [] },
        /// Kong log plugins (`kong.log.serialize`).
        Kong { names: ["kong"], gateways: [KONG] },
        /// Envoy / Istio JSON access logs.
        Envoy { names: ["envoy", "istio", "envoy-json", "envoy_json"], gateways: [ENVOY] },
        /// Envoy default and Istio default TEXT access logs.
        EnvoyText { names: ["envoy-text", "envoy_text", "istio-text", "istio_text"], gateways: [ENVOY] },
        /// NGINX `combined`, distro `main`, ingress-nginx `upstreaminfo` (and Traefik CLF).
        Nginx {
            names: ["nginx", "ingress-nginx", "nginx-ingress", "combined", "clf"],
            gateways: [NGINX, INGRESS_NGINX, TRAEFIK],
        },
        /// NGINX `log_format ... escape=json` setups.
        NginxJson { names: ["nginx-json", "nginx_json"], gateways: [NGINX] },
        /// HAProxy `option httplog` lines (syslog header or not), with header captures.
        Haproxy { names: ["haproxy", "httplog"], gateways: [HAPROXY] },
        /// AWS API Gateway access logs (REST and HTTP APIs).
        Aws { names: ["aws", "aws-apigateway", "apigateway"], gateways: [AWS] },
        /// Traefik JSON access logs.
        Traefik { names: ["traefik"], gateways: [TRAEFIK] },
        /// Apache APISIX kafka-logger / http-logger (default, custom `log_format`, `origin`).
        Apisix { names: ["apisix"], gateways: [APISIX] },
        /// Tyk gateway access log (logfmt or JSON) and the Tyk pump's Kafka JSON.
        Tyk { names: ["tyk", "tyk-pump"], gateways: [TYK] },
        /// Azure API Management GatewayLogs (as streamed to Event Hubs).
        Azure { names: ["azure-apim", "azure", "apim"], gateways: [AZURE_APIM] },
        /// The normalized names themselves, or a configured field map; JSON or key=value.
        Generic { names: ["generic", "json", "logfmt", "kv"], gateways: [GENERIC] },
    }
}

impl Format {
    /// Every format's own name, `auto` first, in declaration order.
    pub const NAMES: &'static [&'static str] = &NAMES;

    /// Every concrete format (not `Auto`), e.g. for metric label sets.
    pub const ALL: &'static [Format] = &ALL;

    /// The `--format` help: every format's own name, and what `auto` does.
    pub const HELP: &'static str = match std::str::from_utf8(&HELP_BYTES) {
        Ok(s) => s,
        Err(_) => panic!("format names are UTF-8"),
    };

    /// The format a name (its own or an alias) stands for.
    pub fn parse(s: &str) -> Option<Format> {
        FORMATS.iter().find(|f| f.names.contains(&s)).map(|f| f.format)
    }

    /// The format's own name: the one `NAMES`, help and messages show.
    pub fn name(self) -> &'static str {
        self.spec().names[0]
    }

    /// The format's declaration.
    pub fn spec(self) -> &'static FormatSpec {
        &FORMATS[self as usize]
    }
}

/// Every `Event::gateway` value a parser writes, each once, in the order the formats first
/// name them: the closed `gateway` label set. Counters index it by position.
pub const GATEWAYS: &[Gateway] = &GATEWAY_SET;

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const NAMES: [&str; FORMATS.len()] = {
    let mut out = [""; FORMATS.len()];
    let mut i = 0;
    while i < FORMATS.len() {
        out[i] = FORMATS[i].names[0];
        i += 1;
    }
    out
};

const ALL: [Format; FORMATS.len() - 1] = {
    let mut out = [Format::Auto; FORMATS.len() - 1];
    let (mut i, mut n) = (0, 0);
    while i < FORMATS.len() {
        if !matches!(FORMATS[i].format, Format::Auto) {
            out[n] = FORMATS[i].format;
            n += 1;
        }
        i += 1;
    }
    assert!(n == out.len(), "exactly one format is `Auto`");
    out
};

const HELP_TAIL: &str = " (auto tells them apart per record)";

const HELP_LEN: usize = {
    let mut len = HELP_TAIL.len();
    let mut i = 0;
    while i < NAMES.len() {
        len += NAMES[i].len() + if i > 0 { 2 } else { 0 };
        i += 1;
    }
    len
};

const HELP_BYTES: [u8; HELP_LEN] = {
    let mut out = [0u8; HELP_LEN];
    let mut at = 0;
    let mut i = 0;
    while i <= NAMES.len() {
        let piece = if i < NAMES.len() { NAMES[i].as_bytes() } else { HELP_TAIL.as_bytes() };
        if i > 0 && i < NAMES.len() {
            out[at] = b',';
            out[at + 1] = b' ';
            at += 2;
        }
        let mut j = 0;
        while j < piece.len() {
            out[at] = piece[j];
            at += 1;
            j += 1;
        }
        i += 1;
    }
    out
};

/// Whether `FORMATS[f].gateways[g]` is the first mention of its gateway.
const fn first_mention(f: usize, g: usize) -> bool {
    let name = FORMATS[f].gateways[g].name;
    let mut i = 0;
    while i <= f {
        let gateways = FORMATS[i].gateways;
        let end = if i == f { g } else { gateways.len() };
        let mut j = 0;
        while j < end {
            if str_eq(gateways[j].name, name) {
                return false;
            }
            j += 1;
        }
        i += 1;
    }
    true
}

const GATEWAY_COUNT: usize = {
    let mut n = 0;
    let mut f = 0;
    while f < FORMATS.len() {
        let mut g = 0;
        while g < FORMATS[f].gateways.len() {
            if first_mention(f, g) {
                n += 1;
            }
            g += 1;
        }
        f += 1;
    }
    n
};

const GATEWAY_SET: [Gateway; GATEWAY_COUNT] = {
    let mut out = [GENERIC; GATEWAY_COUNT];
    let mut n = 0;
    let mut f = 0;
    while f < FORMATS.len() {
        let mut g = 0;
        while g < FORMATS[f].gateways.len() {
            if first_mention(f, g) {
                out[n] = FORMATS[f].gateways[g];
                n += 1;
            }
            g += 1;
        }
        f += 1;
    }
    out
};

// Checked when the crate compiles: the table is in variant order, no name is taken twice, and
// two gateways of one name agree on what their layout never writes.
const _: () = {
    let mut f = 0;
    while f < FORMATS.len() {
        assert!(FORMATS[f].format as usize == f, "FORMATS is in `Format` order");
        let mut k = 0;
        while k < FORMATS[f].names.len() {
            let name = FORMATS[f].names[k];
            assert!(!name.is_empty(), "a format name is empty");
            // every later name, in this entry and the next ones
            let mut f2 = f;
            let mut k2 = k + 1;
            while f2 < FORMATS.len() {
                while k2 < FORMATS[f2].names.len() {
                    assert!(!str_eq(name, FORMATS[f2].names[k2]), "two formats (or aliases) share a name");
                    k2 += 1;
                }
                f2 += 1;
                k2 = 0;
            }
            k += 1;
        }
        let mut g = 0;
        while g < FORMATS[f].gateways.len() {
            let gw = FORMATS[f].gateways[g];
            let mut s = 0;
            while s < GATEWAY_SET.len() {
                if str_eq(GATEWAY_SET[s].name, gw.name) {
                    assert!(
                        GATEWAY_SET[s].not_in_format == gw.not_in_format,
                        "two gateways of one name disagree on what their layout never writes"
                    );
                }
                s += 1;
            }
            g += 1;
        }
        f += 1;
    }
};

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;
    use crate::event::Millis;
    use crate::normalize::{detect, trim_ascii, Normalizer};

    /// The receive time the golden tests use: Tyk text has no year, APISIX `origin` no time.
    const RECEIVED: Millis = 1_738_368_000_000;

    fn fixture(file: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gateways").join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn lines(file: &str) -> Vec<String> {
        fixture(file).lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
    }

    /// Records of each format that its parser reads into events: the golden fixtures where
    /// there are some, else the parser's unit-test records. The match is exhaustive: a new
    /// `Format` does not compile here until it has samples, and then
    /// `every_gateway_a_parser_writes_is_declared` checks its declaration against them.
    fn samples(format: Format) -> Vec<String> {
        let own = |recs: &[&str]| recs.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        match format {
            Format::Auto => Vec::new(),
            Format::Kong => lines("kong.jsonl"),
            // line 1 is a custom `json_format` with nothing Envoy-specific and no time
            Format::Envoy => lines("envoy.jsonl").split_off(1),
            Format::EnvoyText => lines("envoy.log"),
            Format::Nginx => [lines("nginx.log"), lines("nginx-ingress.log"), own(&[
                r#"192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "-" "Mozilla" 1 "router@docker" "http://10.0.0.2:80" 12ms"#,
            ])]
            .concat(),
            Format::NginxJson => own(&[
                r#"{"time_local":"07/Feb/2020:11:48:51 +0000","remote_addr":"198.51.100.7","request":"GET /v1/items/42?page=2 HTTP/1.1","status":"200","body_bytes_sent":"512","request_time":"0.250","upstream_response_time":"0.100, 0.050","http_user_agent":"curl/8","http_authorization":"Bearer abc.def-raw","request_id":"9f"}"#,
            ]),
            Format::Haproxy => lines("haproxy.log"),
            Format::Aws => lines("aws_apigateway.jsonl"),
            Format::Traefik => lines("traefik.jsonl"),
            Format::Apisix => [lines("apisix.jsonl"), vec![fixture("apisix-origin.txt")]].concat(),
            Format::Tyk => [lines("tyk.log"), own(&[
                r#"{"timestamp":"2025-01-29T08:27:09Z","method":"GET","path":"/get","raw_path":"/get","response_code":200,"alias":"portal-dev","api_key":"00000000","oauth_id":"oauth-app-1","request_time_ms":7,"ip_address":"203.0.113.5","api_id":"a1","tags":[]}"#,
            ])]
            .concat(),
            Format::Azure => own(&[
                r#"{"time":"2024-05-14T10:00:00.1234567Z","resourceId":"/SUBSCRIPTIONS/X/PROVIDERS/MICROSOFT.APIMANAGEMENT/SERVICE/APIM1","operationName":"Microsoft.ApiManagement/GatewayLogs","category":"GatewayLogs","durationMs":42,"callerIpAddress":"203.0.113.50","correlationId":"c0ffee00-0000-4000-8000-000000000001","properties":{"method":"GET","url":"https://apim1.azure-api.net/echo/resource/7","responseCode":401,"responseSize":120,"backendTime":0,"apiId":"echo-api","apimSubscriptionId":"sub-42","requestHeaders":{"User-Agent":"curl/8.0"}}}"#,
            ]),
            Format::Generic => own(&[
                r#"{"ts":"2026-03-08T14:32:15Z","client_id":"shop-ios","subject":"usr_1","status":200,"path":"/x"}"#,
                "ts=2026-01-01T00:00:00Z status=200 path=/x",
            ]),
        }
    }

    #[test]
    fn every_variant_has_its_entry_and_its_names_read_back() {
        for (i, spec) in FORMATS.iter().enumerate() {
            assert_eq!(spec.format as usize, i, "{:?} is out of `Format` order", spec.format);
            assert_eq!(spec.format.spec().format, spec.format);
            for name in spec.names {
                assert_eq!(Format::parse(name), Some(spec.format), "{name}");
            }
            assert_eq!(spec.format.name(), spec.names[0]);
        }
        assert_eq!(Format::NAMES, FORMATS.iter().map(|f| f.names[0]).collect::<Vec<_>>());
        assert_eq!(Format::ALL, FORMATS[1..].iter().map(|f| f.format).collect::<Vec<_>>());
        assert_eq!(FORMATS[0].format, Format::Auto);
        assert!(FORMATS[0].gateways.is_empty(), "`auto` hands each record to a format");
        assert_eq!(Format::HELP, format!("{} (auto tells them apart per record)", Format::NAMES.join(", ")));
        assert_eq!(Format::parse("martian"), None);
    }

    #[test]
    fn no_two_formats_share_a_name() {
        let mut seen = BTreeSet::new();
        for spec in FORMATS {
            for name in spec.names {
                assert!(seen.insert(*name), "`{name}` names two formats");
            }
        }
    }

    #[test]
    fn the_gateway_label_set_is_every_declared_gateway_once() {
        let declared: Vec<&str> = FORMATS.iter().flat_map(|f| f.gateways).map(|g| g.name).collect();
        let set: Vec<&str> = GATEWAYS.iter().map(|g| g.name).collect();
        assert_eq!(set.iter().collect::<BTreeSet<_>>(), declared.iter().collect::<BTreeSet<_>>());
        assert_eq!(set.len(), set.iter().collect::<BTreeSet<_>>().len(), "{set:?}");
        for f in FORMATS {
            assert!(f.gateways.iter().all(|g| GATEWAYS.contains(g)), "{:?}", f.format);
        }
    }

    #[test]
    fn every_gateway_a_parser_writes_is_declared() {
        let auto = Normalizer::new(Format::Auto, b"formats-test-key");
        for spec in &FORMATS[1..] {
            let n = Normalizer::new(spec.format, b"formats-test-key");
            let recs = samples(spec.format);
            assert!(!recs.is_empty(), "{:?} has no samples", spec.format);
            let mut written = BTreeSet::new();
            for rec in &recs {
                let ev = n
                    .normalize_record_at(rec.as_bytes(), Some(RECEIVED))
                    .unwrap_or_else(|e| panic!("--format {}: {e}: {rec}", spec.format.name()));
                assert!(
                    spec.gateways.iter().any(|g| g.name == ev.gateway),
                    "--format {} wrote gateway `{}`, not declared in its entry: {rec}",
                    spec.format.name(),
                    ev.gateway
                );
                written.insert(ev.gateway);
                // the detector picks the format that wrote it
                assert_eq!(detect::detect(trim_ascii(rec.as_bytes())), Some(spec.format), "{rec}");
                assert_eq!(auto.normalize_record_at(rec.as_bytes(), Some(RECEIVED)).unwrap().gateway, ev.gateway);
            }
            for g in spec.gateways {
                assert!(
                    written.contains(g.name),
                    "--format {} declares gateway `{}`, which no sample wrote",
                    spec.format.name(),
                    g.name
                );
            }
        }
    }
}

//! NGINX `log_format <name> escape=json '{...}'` setups. The keys are the
//! operator's; they are read under the NGINX variable names (`remote_addr`,
//! `time_local`, `request`, `status`, `request_time`, ...), which is what nearly
//! every published recipe uses, plus the ingress-nginx JSON recipe's short
//! names (`vhost`, `path`, `request_query`, `x_forwarded_for`, `duration`).
//! Anything else goes through the `generic` format's field map.
//!
//! Units: `$request_time`, `$upstream_response_time` (a list on retries: summed)
//! and the recipe's `duration` are **seconds** → ms; `$msec` is epoch seconds.
//! Values are strings unless the operator left them unquoted: both are read.
//! Credentials: `$http_authorization`, `$http_x_api_key`/`$http_apikey`,
//! `$http_cookie` and the query string in `$request`/`$request_uri`/`$args`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::fields::{parse_num_str, Str};
use super::text::split_request_line;
use super::{client_ip::parse_ip, secs_to_ms, time, Normalizer, Parts, Reject, RejectReason};
use crate::event::{ClientIdSource, Event};

/// The record's top-level keys and values, borrowed. Operators often log the
/// same thing twice under two names (`time_local` and `time_iso8601`,
/// `body_bytes_sent` and `bytes_sent`), so values are looked up by a list of
/// names in order of preference rather than through serde aliases (which
/// reject a record that has two of them).
struct Flat<'a>(Vec<(Cow<'a, str>, Str<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Flat<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Flat<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Flat<'a>, A::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(16));
                while let Some((k, val)) = m.next_entry::<Cow<'de, str>, Str<'de>>()? {
                    v.push((k, val));
                }
                Ok(Flat(v))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'a> Flat<'a> {
    fn get(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.0.iter().find(|(k, _)| k == n).and_then(|(_, v)| v.get()))
    }

    fn num(&self, names: &[&str]) -> Option<f64> {
        self.get(names).and_then(parse_num_str)
    }
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let r: Flat<'_> = super::fields::from_json(rec).map_err(|e| Reject::json(&e))?;
    let ts = if let Some(t) = r.get(&["time_iso8601", "time_local", "@timestamp", "timestamp", "time"]) {
        Some(time::parse_any(t).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "time is not a timestamp"))?)
    } else if let Some(s) = r.num(&["msec"]) {
        Some(time::from_epoch(s).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "msec out of range"))?)
    } else {
        None
    };
    let (line_method, line_uri) = r.get(&["request"]).map_or((None, None), split_request_line);
    let parts = Parts {
        ts,
        method: r.get(&["request_method", "method"]).or(line_method),
        host: r.get(&["host", "http_host", "vhost", "server_name"]),
        uri: r.get(&["request_uri"]).or(line_uri).or_else(|| r.get(&["uri", "path"])),
        query: r.get(&["args", "query_string", "request_query"]),
        status: r.num(&["status"]),
        latency_ms: r.num(&["request_time", "duration"]).map(secs_to_ms),
        upstream_latency_ms: r.num(&["upstream_response_time"]).map(secs_to_ms),
        bytes_sent: r.num(&["body_bytes_sent", "bytes_sent"]),
        user_agent: r.get(&["http_user_agent", "user_agent"]),
        referer: r.get(&["http_referer", "referer"]),
        request_id: r.get(&["request_id", "req_id", "http_x_request_id"]),
        peer: r.get(&["remote_addr", "realip_remote_addr", "client_ip"]).and_then(parse_ip),
        xff: r.get(&["http_x_forwarded_for", "x_forwarded_for"]),
        upstream: r.get(&["proxy_upstream_name", "upstream_addr"]),
        creds: super::identity::RawCredentials {
            consumer_name: r.get(&["remote_user"]),
            authorization: r.get(&["http_authorization"]),
            api_key: r.get(&["http_x_api_key", "http_apikey"]),
            cookie: r.get(&["http_cookie"]),
            ..Default::default()
        },
        client_id: r.get(&["jwt_claim_client_id", "jwt_claim_azp"]),
        // NGINX Plus sets `$jwt_claim_*` from a token `auth_jwt` validated. `remote_user` (a
        // consumer name above) is logged as sent, so it stays a claim.
        client_id_source: ClientIdSource::Gateway,
        subject: r.get(&["jwt_claim_sub"]),
        scopes: r.get(&["jwt_claim_scope", "jwt_claim_scp"]),
        ..Default::default()
    };
    n.build("nginx", parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Format;

    #[test]
    fn seconds_lists_and_credentials() {
        let n = Normalizer::new(Format::NginxJson, b"k");
        let rec = br#"{"time_local":"07/Feb/2020:11:48:51 +0000","remote_addr":"198.51.100.7","request":"GET /v1/items/42?page=2 HTTP/1.1","status":"200","body_bytes_sent":"512","request_time":"0.250","upstream_response_time":"0.100, 0.050","http_user_agent":"curl/8","http_authorization":"Bearer abc.def-raw","request_id":"9f"}"#;
        let ev = parse(&n, rec).unwrap();
        assert_eq!(ev.latency_ms, Some(250.0));
        assert_eq!(ev.upstream_latency_ms, Some(150.0));
        assert_eq!(ev.route.as_deref(), Some("GET /v1/items/{id}"));
        assert_eq!(ev.token_fingerprint, Some(n.fingerprinter.fingerprint(b"abc.def-raw")));
        assert_eq!(ev.bytes_sent, Some(512));
        // the same value under two names is not an error
        let twice = br#"{"time_local":"07/Feb/2020:11:48:51 +0000","time_iso8601":"2020-02-07T11:48:51+00:00","bytes_sent":"600","body_bytes_sent":"512","status":200}"#;
        let ev = parse(&n, twice).unwrap();
        assert_eq!(ev.bytes_sent, Some(512));
        assert_eq!(ev.ts, 1_581_076_131_000);
    }
}

//! NGINX text access logs, split by hand (no regex):
//!
//! - `combined`: `$remote_addr - $remote_user [$time_local] "$request" $status
//!   $body_bytes_sent "$http_referer" "$http_user_agent"` (also the Apache/NGINX
//!   `common` layout without the last two);
//! - distro `main`: combined + `"$http_x_forwarded_for"`;
//! - ingress-nginx `upstreaminfo`: combined + `$request_length $request_time
//!   [$proxy_upstream_name] [$proxy_alternative_upstream_name] $upstream_addr
//!   $upstream_response_length $upstream_response_time $upstream_status $req_id`,
//!   where the upstream columns are lists (`a, b` on retries, `a : b` on internal redirects);
//! - Traefik's CLF: combined + `<count> "<router>" "<server_url>" <duration>ms`.
//!
//! Units: `$request_time`/`$upstream_response_time` are seconds (→ ms, the list
//! summed: time spent on every upstream try); Traefik's CLF duration is ms.
//! Identity: `$remote_user` (basic auth user, logged even when the password was
//! wrong) is the caller. A token can only arrive in the request's query string,
//! which `build` fingerprints.

use super::text::{int, split_request_line, Scanner};
use super::{client_ip::parse_ip, fields::parse_num_str, secs_to_ms, time, Normalizer, Parts, Reject, RejectReason};
use crate::event::Event;

fn malformed(what: &str) -> Reject {
    Reject::new(RejectReason::Malformed, format!("NGINX line: {what}"))
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let line = crate::bytes::utf8(rec).ok_or_else(|| malformed("not UTF-8"))?;
    let mut s = Scanner::new(line);
    let addr = s.list().ok_or_else(|| malformed("no remote address"))?;
    let _ident = s.word().ok_or_else(|| malformed("no ident column"))?;
    let user = s.word().ok_or_else(|| malformed("no remote_user column"))?;
    let t = s.bracketed().ok_or_else(|| malformed("no [time_local]"))?;
    let ts = time::parse_clf(t)
        .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "time_local is not a CLF timestamp"))?;
    let request = s.quoted().ok_or_else(|| malformed("no quoted request line"))?;
    let status = s.word().ok_or_else(|| malformed("no status"))?;
    let status = int(status).ok_or_else(|| malformed("status is not a number"))?;
    let bytes = s.word().and_then(|b| if b == "-" { None } else { int(b) });
    let (method, uri) = split_request_line(request);

    // `$remote_addr` may itself be a forwarded list when the layout logs XFF first.
    let (peer, mut xff) = if addr.contains(',') { (None, Some(addr)) } else { (parse_ip(addr), None) };

    let mut parts = Parts {
        ts: Some(ts),
        method,
        uri,
        status: Some(status),
        bytes_sent: bytes,
        peer,
        creds: super::identity::RawCredentials { consumer_name: Some(user), ..Default::default() },
        ..Default::default()
    };
    let mut gateway = "nginx";
    if s.at_end() {
        // `common`: no referer, no user agent.
        parts.xff = xff;
        return n.build(gateway, parts);
    }
    parts.referer = Some(s.quoted().ok_or_else(|| malformed("referer is not quoted"))?);
    parts.user_agent = s.quoted();
    match s.peek() {
        None => {}
        Some(b'"') => {
            // distro `main`: "$http_x_forwarded_for"
            xff = s.quoted().filter(|x| *x != "-").or(xff);
        }
        Some(c) if c.is_ascii_digit() => {
            let first = s.word().unwrap_or_default();
            if s.peek() == Some(b'"') {
                // Traefik CLF: <count> "<router>" "<server_url>" <duration>ms
                gateway = "traefik";
                let router = s.quoted();
                let server = s.quoted();
                parts.upstream = router.filter(|r| *r != "-").or(server);
                parts.latency_ms = s.word().and_then(|d| d.strip_suffix("ms")).and_then(parse_num_str);
            } else {
                gateway = "ingress-nginx";
                let _request_length = first;
                parts.latency_ms = s.word().and_then(parse_num_str).map(secs_to_ms);
                let upstream_name = s.bracketed().ok_or_else(|| malformed("no [proxy_upstream_name]"))?;
                if s.peek() == Some(b'[') {
                    let _alternative = s.bracketed();
                }
                let upstream_addr = s.list();
                let _upstream_len = s.list();
                parts.upstream_latency_ms = s.list().and_then(parse_num_str).map(secs_to_ms);
                let _upstream_status = s.list();
                parts.request_id = s.word();
                parts.upstream = Some(upstream_name).filter(|u| !u.is_empty()).or(upstream_addr);
            }
        }
        Some(_) => {} // a custom tail we do not know: the combined part is still right
    }
    parts.xff = xff;
    n.build(gateway, parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{Format, TrustedProxies};

    fn norm() -> Normalizer {
        Normalizer::new(Format::Nginx, b"test-key-0123456789")
    }

    #[test]
    fn main_format_trusts_xff_only_from_trusted_peer() {
        let line =
            br#"10.0.0.5 - - [29/May/2017:19:02:48 +0000] "GET /x HTTP/1.1" 200 1 "-" "ua" "6.6.6.6, 203.0.113.9""#;
        let ev = parse(&norm(), line).unwrap();
        assert_eq!(ev.source_ip.unwrap().to_string(), "10.0.0.5");
        let mut n = norm();
        n.proxies = TrustedProxies::new(&["10.0.0.0/8".into()]);
        let ev = parse(&n, line).unwrap();
        assert_eq!(ev.source_ip.unwrap().to_string(), "203.0.113.9");
    }

    #[test]
    fn token_in_query_is_fingerprinted_not_kept() {
        let line = br#"1.2.3.4 - alice [29/May/2017:19:02:48 +0000] "GET /x?access_token=s3cr3tvalue HTTP/1.1" 401 1 "-" "ua""#;
        let ev = parse(&norm(), line).unwrap();
        assert!(ev.token_fingerprint.is_some());
        assert_eq!(ev.subject.as_deref(), Some("alice"));
        // `$remote_user` is logged as sent, right password or not: the caller's claim.
        assert_eq!(ev.client_id.as_deref(), Some("alice"));
        assert_eq!(ev.client_id_source, crate::event::ClientIdSource::Claimed);
        assert_eq!(ev.path.as_deref(), Some("/x"));
        assert!(!serde_json::to_string(&ev).unwrap().contains("s3cr3tvalue"));
    }

    #[test]
    fn traefik_clf_tail() {
        let line = br#"192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "-" "Mozilla" 1 "router@docker" "http://10.0.0.2:80" 12ms"#;
        let ev = parse(&norm(), line).unwrap();
        assert_eq!(ev.gateway, "traefik");
        assert_eq!(ev.latency_ms, Some(12.0));
        assert_eq!(ev.upstream.as_deref(), Some("router@docker"));
    }

    #[test]
    fn truncated_lines_are_rejected_with_a_reason() {
        for l in [
            &b"1.2.3.4 - - [29/May/2017:19:02:48 +0000] \"GET"[..],
            b"1.2.3.4 - -",
            b"1.2.3.4 - - [bad] \"GET / HTTP/1.1\" 200 1",
        ] {
            let r = parse(&norm(), l).unwrap_err();
            assert!(matches!(r.reason, RejectReason::Malformed | RejectReason::BadTimestamp), "{r}");
        }
    }
}

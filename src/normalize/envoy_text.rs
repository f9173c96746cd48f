//! Envoy's default TEXT access-log format, and Istio's default TEXT format
//! (Envoy's plus response-code details and the trailing connection columns):
//!
//! ```text
//! [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS%
//!   [istio: %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%"]
//!   %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%"
//!   "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"
//!   [istio: %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
//!    %REQUESTED_SERVER_NAME% %ROUTE_NAME%]
//! ```
//!
//! The two are told apart by the column after the flags: a number (bytes
//! received) in Envoy's, a word in Istio's. Durations are ms. `RESPONSE_CODE` 0
//! means the downstream left before a response: no status. The default format
//! carries no identity and no peer address: the client is the right-most
//! untrusted `X-Forwarded-For` entry.

use super::text::{int, split_request_line, Scanner};
use super::{client_ip::parse_ip, fields::parse_num_str, time, Normalizer, Parts, Reject, RejectReason};
use crate::event::Event;

fn malformed(what: &str) -> Reject {
    Reject::new(RejectReason::Malformed, format!("Envoy text line: {what}"))
}

fn dash(s: &str) -> Option<&str> {
    (!s.is_empty() && s != "-").then_some(s)
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let line = crate::bytes::utf8(rec).ok_or_else(|| malformed("not UTF-8"))?;
    let mut s = Scanner::new(line);
    let t = s.bracketed().ok_or_else(|| malformed("no [START_TIME]"))?;
    let ts =
        time::parse_any(t).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "START_TIME is not a timestamp"))?;
    let request = s.quoted().ok_or_else(|| malformed("no quoted request line"))?;
    let code = s.word().and_then(int).ok_or_else(|| malformed("RESPONSE_CODE is not a number"))?;
    let _flags = s.word().ok_or_else(|| malformed("no RESPONSE_FLAGS"))?;
    let next = s.word().ok_or_else(|| malformed("line ends after RESPONSE_FLAGS"))?;
    let istio = int(next).is_none();
    let bytes_received = if istio {
        let _conn_termination = s.word();
        // Istio's third extra column is quoted; without it this is not Istio's layout.
        let _transport_failure = s.quoted().ok_or_else(|| malformed("BYTES_RECEIVED is not a number"))?;
        s.word().ok_or_else(|| malformed("no BYTES_RECEIVED"))?
    } else {
        next
    };
    int(bytes_received).ok_or_else(|| malformed("BYTES_RECEIVED is not a number"))?;
    let bytes_sent = s.word().and_then(int);
    let duration = s.word().and_then(parse_num_str);
    let upstream_time = s.word().and_then(parse_num_str);
    let xff = s.quoted().ok_or_else(|| malformed("X-FORWARDED-FOR is not quoted"))?;
    let ua = s.quoted();
    let request_id = s.quoted();
    let authority = s.quoted();
    let upstream_host = s.quoted();
    let (mut cluster, mut downstream_remote) = (None, None);
    if istio {
        cluster = s.word();
        let _upstream_local = s.word();
        let _downstream_local = s.word();
        downstream_remote = s.word();
    }
    let (method, uri) = split_request_line(request);
    let parts = Parts {
        ts: Some(ts),
        method,
        uri,
        host: authority,
        status: Some(code).filter(|c| *c > 0.0),
        latency_ms: duration,
        upstream_latency_ms: upstream_time,
        bytes_sent,
        user_agent: ua,
        request_id,
        peer: downstream_remote.and_then(parse_ip),
        xff: dash(xff),
        upstream: cluster.and_then(dash).or(upstream_host.and_then(dash)),
        ..Default::default()
    };
    n.build("envoy", parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Format;

    #[test]
    fn downstream_disconnect_has_no_status() {
        let n = Normalizer::new(Format::EnvoyText, b"k");
        let l = br#"[2020-11-25T21:26:18.409Z] "GET /x HTTP/1.1" 0 DC 0 0 5 - "-" "curl" "id" "h" "-""#;
        let ev = parse(&n, l).unwrap();
        assert_eq!(ev.status, None);
        assert_eq!(ev.upstream_latency_ms, None);
        assert_eq!(ev.latency_ms, Some(5.0));
    }

    #[test]
    fn truncated_is_malformed() {
        let n = Normalizer::new(Format::EnvoyText, b"k");
        let r = parse(&n, br#"[2020-11-25T21:26:18.409Z] "GET /x HTTP/1.1" 200"#).unwrap_err();
        assert_eq!(r.reason, RejectReason::Malformed);
    }
}

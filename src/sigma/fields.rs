//! The fields a Sigma rule may name, and the normalized event seen through them.
//!
//! Sigma's web rules (`category: webserver`, `category: proxy`) use the W3C extended log
//! names (`cs-uri-query`, `sc-status`, `c-useragent`, ...). Each maps onto one part of the
//! normalized [`Event`]; gatewatch's own names (`route`, `client_id`, ...) may be used as
//! well. A name outside this closed set is a load error: a rule must never silently match
//! nothing because it names a field no gateway record here carries.

use std::borrow::Cow;

use rsigma_eval::EventValue;
use serde_json::Value;

use crate::event::Event;

/// One part of the event a rule can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Method,
    /// The path, without its query string.
    UriStem,
    /// The query string as logged (secrets replaced by their markers), without `?`.
    UriQuery,
    /// Path and query: `/search?q=1`.
    Uri,
    /// The last path segment's extension, without the dot.
    UriExtension,
    Status,
    UserAgent,
    /// The `Referer` header, scrubbed.
    Referer,
    Host,
    ClientIp,
    /// The authenticated user: the subject, else the principal's name.
    Username,
    BytesSent,
    /// Latency in ms.
    TimeTaken,
    ClientId,
    Route,
    Upstream,
    /// The token fingerprint (hex): the token followed without being known.
    Token,
}

/// Every accepted name and what it reads, W3C names first.
pub const NAMES: &[(&str, Field)] = &[
    ("cs-method", Field::Method),
    ("cs-uri-stem", Field::UriStem),
    ("c-uri-stem", Field::UriStem),
    ("cs-uri-query", Field::UriQuery),
    ("c-uri-query", Field::UriQuery),
    ("cs-uri", Field::Uri),
    ("c-uri", Field::Uri),
    ("c-uri-extension", Field::UriExtension),
    ("sc-status", Field::Status),
    ("cs-user-agent", Field::UserAgent),
    ("c-useragent", Field::UserAgent),
    ("cs-referer", Field::Referer),
    ("cs-host", Field::Host),
    ("r-dns", Field::Host),
    ("c-ip", Field::ClientIp),
    ("cs-username", Field::Username),
    ("sc-bytes", Field::BytesSent),
    ("time-taken", Field::TimeTaken),
    ("method", Field::Method),
    ("path", Field::UriStem),
    ("query", Field::UriQuery),
    ("uri", Field::Uri),
    ("status", Field::Status),
    ("user_agent", Field::UserAgent),
    ("referer", Field::Referer),
    ("host", Field::Host),
    ("source_ip", Field::ClientIp),
    ("subject", Field::Username),
    ("bytes_sent", Field::BytesSent),
    ("latency_ms", Field::TimeTaken),
    ("client_id", Field::ClientId),
    ("route", Field::Route),
    ("upstream", Field::Upstream),
    ("token_fingerprint", Field::Token),
];

impl Field {
    pub fn parse(name: &str) -> Option<Field> {
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// The accepted W3C names, for an error message (the event's own names are accepted too).
    pub fn known() -> String {
        let w3c: Vec<&str> = NAMES.iter().map(|(n, _)| *n).filter(|n| n.contains('-')).collect();
        format!("{}, or the normalized event's own names (path, query, route, client_id, ...)", w3c.join(", "))
    }

    /// Whether reading it needs the request line's parts that repartition records leave
    /// behind unless asked ([`crate::repartition::wire::WireRequest`]).
    pub fn in_request_line(self) -> bool {
        matches!(
            self,
            Field::Method
                | Field::UriQuery
                | Field::Uri
                | Field::UserAgent
                | Field::Referer
                | Field::Host
                | Field::Username
                | Field::BytesSent
        )
    }

    /// The field's value in `ev` as text, `None` when the record does not carry it.
    pub fn text(self, ev: &Event) -> Option<Cow<'_, str>> {
        fn s(o: &Option<crate::event::Text>) -> Option<Cow<'_, str>> {
            o.as_deref().map(Cow::Borrowed)
        }
        match self {
            Field::Method => s(&ev.method),
            Field::UriStem => s(&ev.path),
            Field::UriQuery => s(&ev.query),
            Field::Uri => match (&ev.path, &ev.query) {
                (Some(p), Some(q)) => Some(Cow::Owned(format!("{p}?{q}"))),
                (Some(p), None) => Some(Cow::Borrowed(p.as_str())),
                (None, Some(q)) => Some(Cow::Owned(format!("?{q}"))),
                (None, None) => None,
            },
            Field::UriExtension => {
                let last = ev.path.as_deref()?.rsplit('/').next()?;
                last.rsplit_once('.').map(|(_, ext)| Cow::Borrowed(ext)).filter(|e| !e.is_empty())
            }
            Field::Status => ev.status.map(|v| Cow::Owned(v.to_string())),
            Field::UserAgent => s(&ev.user_agent),
            Field::Referer => s(&ev.referer),
            Field::Host => s(&ev.host),
            Field::ClientIp => ev.source_ip.map(|ip| Cow::Owned(ip.to_canonical().to_string())),
            Field::Username => ev.subject.as_deref().map(Cow::Borrowed).or_else(|| {
                // `user:alice`, `consumer:c0ffee`: the name after what it is.
                let p = ev.principal.as_deref()?;
                Some(Cow::Borrowed(p.split_once(':').map_or(p, |(_, n)| n)))
            }),
            Field::BytesSent => ev.bytes_sent.map(|v| Cow::Owned(v.to_string())),
            Field::TimeTaken => ev.latency_ms.map(|v| Cow::Owned(v.to_string())),
            Field::ClientId => s(&ev.client_id),
            Field::Route => s(&ev.route),
            Field::Upstream => s(&ev.upstream),
            Field::Token => ev.token_fingerprint.map(|f| Cow::Owned(f.to_hex())),
        }
    }

    fn value(self, ev: &Event) -> Option<EventValue<'_>> {
        match self {
            // Numbers compare as numbers (`sc-status|gte: 500`) and as text (`sc-status: '404'`).
            Field::Status => ev.status.map(|v| EventValue::Int(v as i64)),
            Field::BytesSent => ev.bytes_sent.map(|v| EventValue::Int(v as i64)),
            Field::TimeTaken => ev.latency_ms.map(EventValue::Float),
            _ => self.text(ev).map(EventValue::Str),
        }
    }
}

/// Fields keyword searches (`keywords:`) look through: the request line and the strings
/// a web server's log line would hold.
const KEYWORD_FIELDS: [Field; 7] =
    [Field::Method, Field::Uri, Field::UserAgent, Field::Referer, Field::Host, Field::Username, Field::ClientIp];

/// `ev` as Sigma sees it.
pub struct View<'a>(pub &'a Event);

impl rsigma_eval::Event for View<'_> {
    fn get_field(&self, path: &str) -> Option<EventValue<'_>> {
        Field::parse(path)?.value(self.0)
    }

    fn any_string_value(&self, pred: &dyn Fn(&str) -> bool) -> bool {
        KEYWORD_FIELDS.iter().any(|f| f.text(self.0).is_some_and(|v| pred(&v)))
    }

    fn all_string_values(&self) -> Vec<Cow<'_, str>> {
        KEYWORD_FIELDS.iter().filter_map(|f| f.text(self.0)).collect()
    }

    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        for (name, f) in NAMES.iter().take_while(|(n, _)| n.contains('-')) {
            if let Some(v) = f.text(self.0) {
                m.entry(name.to_string()).or_insert_with(|| Value::String(v.into_owned()));
            }
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsigma_eval::Event as _;

    #[test]
    fn w3c_names_read_the_normalized_event() {
        let ev = Event {
            method: Some("GET".into()),
            path: Some("/cgi-bin/test.php".into()),
            query: Some("id=1%27%20or%201=1".into()),
            status: Some(404),
            user_agent: Some("sqlmap/1.7".into()),
            source_ip: Some("::ffff:198.51.100.7".parse().unwrap()),
            principal: Some("user:alice".into()),
            ..Event::default()
        };
        let v = View(&ev);
        let text = |n: &str| v.get_field(n).and_then(|x| x.as_str().map(|s| s.into_owned()));
        assert_eq!(text("cs-uri").as_deref(), Some("/cgi-bin/test.php?id=1%27%20or%201=1"));
        assert_eq!(text("cs-uri-query").as_deref(), Some("id=1%27%20or%201=1"));
        assert_eq!(text("c-uri-extension").as_deref(), Some("php"));
        assert_eq!(v.get_field("sc-status"), Some(EventValue::Int(404)));
        assert_eq!(text("c-ip").as_deref(), Some("198.51.100.7"));
        assert_eq!(text("cs-username").as_deref(), Some("alice"));
        assert_eq!(v.get_field("cs-host"), None, "absent, not invented");
        assert!(v.any_string_value(&|s| s.contains("sqlmap")));
        assert!(Field::parse("cs-cookie").is_none());
    }
}

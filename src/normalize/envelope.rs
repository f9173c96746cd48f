//! Envelopes that forwarders put around access-log records, opened before any
//! format reads them:
//!
//! - **CloudWatch Logs subscription** (AWS API Gateway's only delivery path):
//!   `{"messageType":"DATA_MESSAGE","logGroup":…,"logEvents":[{"id","timestamp","message"}]}`.
//!   Each `message` is a record; the event's `timestamp` is its receive time.
//!   `CONTROL_MESSAGE`s carry no records. The gzip+base64 form
//!   (`{"awslogs":{"data":…}}`, as a Lambda sees it) is rejected as `compressed`:
//!   gatewatch does not inflate.
//! - **Firehose HTTP endpoint delivery**: `{"requestId":…,"timestamp":…,"records":[{"data":"<base64>"}]}`.
//!   Each `data` decodes to one or more newline-separated messages (or a
//!   CloudWatch envelope when Firehose's "decompress" option is on; still
//!   gzip-compressed otherwise → `compressed`).
//! - **Azure Event Hubs** (Azure Monitor diagnostic settings): `{"records":[{…},…]}`.
//! - **Shipper wrappers** — Fluent Bit / Docker `{"log":"<line>",…}`, Vector
//!   `{"message":"<line>",…}` — when the outer object is not itself a known
//!   gateway record. The wrapper's `time`/`timestamp`/`@timestamp`/`date` is the
//!   receive time.
//!
//! Every opened record goes back through [`Normalizer::message`], so an envelope
//! may hold a batch array, another envelope (depth-limited) or any format.

use std::borrow::Cow;
use std::sync::OnceLock;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::fields::{Num, Str};
use super::{detect, time, Event, Format, Normalizer, Reject, RejectReason};
use crate::bytes::LiteralSet;
use crate::event::Millis;

/// Envelopes inside envelopes (Firehose → CloudWatch → batch) stop here.
pub const MAX_DEPTH: u8 = 4;

/// The keys an envelope is told by, in one set: a record is read once for all five, not
/// once each (five passes were 8 % of a replay of Kong records, which have none of them).
const LOG_EVENTS: u64 = 1;
const RECORDS: u64 = 1 << 1;
const AWSLOGS: u64 = 1 << 2;
const LOG: u64 = 1 << 3;
const MESSAGE: u64 = 1 << 4;

fn keys() -> &'static LiteralSet {
    static K: OnceLock<LiteralSet> = OnceLock::new();
    K.get_or_init(|| LiteralSet::new(&[b"\"logEvents\"", b"\"records\"", b"\"awslogs\"", b"\"log\"", b"\"message\""]))
}

/// Which envelope, if any, `msg` (a JSON object) looks like. Substring checks only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    CloudWatch,
    CloudWatchCompressed,
    Records,
    Wrapper,
}

pub fn kind(msg: &[u8]) -> Option<Kind> {
    let found = keys().present(msg);
    if found & LOG_EVENTS != 0 {
        return Some(Kind::CloudWatch);
    }
    if found & RECORDS != 0 {
        return Some(Kind::Records);
    }
    if found & AWSLOGS != 0 {
        return Some(Kind::CloudWatchCompressed);
    }
    if found & (LOG | MESSAGE) != 0 && matches!(detect::detect_json(msg), Format::Generic) {
        return Some(Kind::Wrapper);
    }
    None
}

#[derive(Deserialize)]
struct CloudWatch<'a> {
    #[serde(borrow, default, rename = "messageType")]
    message_type: Str<'a>,
    #[serde(borrow, default, rename = "logEvents")]
    log_events: Option<Vec<LogEvent<'a>>>,
}

#[derive(Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(default)]
    timestamp: Num,
}

#[derive(Deserialize)]
struct Records<'a> {
    #[serde(borrow)]
    records: Vec<&'a RawValue>,
    #[serde(borrow, default, rename = "requestId")]
    request_id: Str<'a>,
}

#[derive(Deserialize)]
struct FirehoseRecord<'a> {
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Wrapper<'a> {
    #[serde(borrow, default)]
    log: Str<'a>,
    #[serde(borrow, default)]
    message: Str<'a>,
    #[serde(borrow, default)]
    time: Str<'a>,
    #[serde(borrow, default)]
    timestamp: Str<'a>,
    #[serde(borrow, default, rename = "@timestamp")]
    at_timestamp: Str<'a>,
}

fn bad(detail: &str) -> Reject {
    Reject::new(RejectReason::BadEnvelope, detail.to_string())
}

fn is_gzip(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b])
}

/// Opens `msg` when it is an envelope, sends what it holds on, and returns
/// `true`; returns `false` (and sends nothing) when it is not an envelope.
pub fn unwrap(
    n: &Normalizer,
    msg: &[u8],
    received: Option<Millis>,
    depth: u8,
    out: &mut dyn FnMut(Result<Event, Reject>),
) -> bool {
    let Some(k) = kind(msg) else { return false };
    match k {
        Kind::CloudWatchCompressed => {
            out(Err(Reject::new(
                RejectReason::Compressed,
                "CloudWatch Logs subscription data is gzip-compressed; decompress before gatewatch (Firehose: enable decompression)",
            )));
        }
        Kind::CloudWatch => match serde_json::from_slice::<CloudWatch<'_>>(msg) {
            Ok(cw) => {
                // A control message's one "event" is CloudWatch's health check, not a record.
                if cw.message_type.get() == Some("CONTROL_MESSAGE") {
                    out(Err(Reject::new(RejectReason::NoRecords, "CloudWatch Logs control message (no log records)")));
                    return true;
                }
                let events = cw.log_events.unwrap_or_default();
                if events.is_empty() {
                    out(Err(Reject::new(RejectReason::NoRecords, "CloudWatch Logs envelope without log events")));
                }
                for e in events {
                    let at = e.timestamp.0.and_then(time::from_epoch).or(received);
                    n.message(e.message.as_bytes(), at, depth + 1, out);
                }
            }
            Err(e) => out(Err(Reject::new(
                RejectReason::BadEnvelope,
                format!("CloudWatch envelope: {}", Reject::json(&e).detail),
            ))),
        },
        Kind::Records => match serde_json::from_slice::<Records<'_>>(msg) {
            Ok(r) => {
                if r.records.is_empty() {
                    out(Err(Reject::new(RejectReason::NoRecords, "envelope with an empty records array")));
                }
                let firehose = r.request_id.get().is_some();
                for item in r.records {
                    let raw = item.get().as_bytes();
                    if firehose {
                        match serde_json::from_slice::<FirehoseRecord<'_>>(raw) {
                            Ok(FirehoseRecord { data: Some(d) }) => firehose_data(n, &d, received, depth, out),
                            _ => out(Err(bad("Firehose record without base64 `data`"))),
                        }
                    } else {
                        n.message(raw, received, depth + 1, out);
                    }
                }
            }
            // `records` is a key but not an array of records: not an envelope after all.
            Err(_) => return false,
        },
        Kind::Wrapper => match serde_json::from_slice::<Wrapper<'_>>(msg) {
            Ok(w) => {
                let Some(inner) = w.log.get().or_else(|| w.message.get()) else { return false };
                let at = w
                    .time
                    .get()
                    .or_else(|| w.timestamp.get())
                    .or_else(|| w.at_timestamp.get())
                    .and_then(time::parse_any)
                    .or(received);
                n.message(inner.as_bytes(), at, depth + 1, out);
            }
            Err(_) => return false,
        },
    }
    true
}

fn firehose_data(
    n: &Normalizer,
    d: &str,
    received: Option<Millis>,
    depth: u8,
    out: &mut dyn FnMut(Result<Event, Reject>),
) {
    let bytes = match base64::engine::general_purpose::STANDARD.decode(d.trim()) {
        Ok(b) => b,
        Err(_) => return out(Err(bad("Firehose record `data` is not base64"))),
    };
    if is_gzip(&bytes) {
        return out(Err(Reject::new(
            RejectReason::Compressed,
            "Firehose record data is gzip-compressed; enable Firehose decompression for CloudWatch Logs sources",
        )));
    }
    let mut any = false;
    for line in crate::bytes::lines(&bytes) {
        if super::trim_ascii(line).is_empty() {
            continue;
        }
        any = true;
        n.message(line, received, depth + 1, out);
    }
    if !any {
        out(Err(Reject::new(RejectReason::Empty, "Firehose record `data` is empty")));
    }
}

//! Azure API Management `GatewayLogs`, as Azure Monitor streams them to Event
//! Hubs (one element of `{"records": [...]}`; the envelope is opened by
//! [`super::envelope`]): the common resource-log schema (`time`, `durationMs`,
//! `callerIpAddress`, `correlationId`, `category`) with the gateway's fields in
//! `properties` (`method`, `url`, `responseCode`, `responseSize`,
//! `backendTime`, `apimSubscriptionId`, `userId`, `requestHeaders`, ...). The
//! Log Analytics export's PascalCase names (`TimeGenerated`, `CallerIpAddress`,
//! `Url`, `TotalTime`, `ApimSubscriptionId`, ...) are read too, flat or nested.
//!
//! Identity: the subscription (`apimSubscriptionId`) is the client, `userId` the
//! principal. Secrets: `url` may carry `subscription-key=` (fingerprinted by the
//! query reader), and opted-in `requestHeaders` may carry
//! `Ocp-Apim-Subscription-Key` or `Authorization`. Times are ms.
//! Schema only: no captured record was available when this was written.

use serde::Deserialize;

use super::fields::{Num, Str};
use super::{client_ip::parse_ip, time, Normalizer, Parts, Reject, RejectReason};
use crate::event::{ClientIdSource, Event};

#[derive(Deserialize, Default)]
#[serde(default)]
struct Record<'a> {
    #[serde(borrow, alias = "TimeGenerated", alias = "Time")]
    time: Str<'a>,
    #[serde(rename = "durationMs", alias = "DurationMs")]
    duration_ms: Num,
    #[serde(borrow, rename = "callerIpAddress")]
    caller_ip: Str<'a>,
    #[serde(borrow, rename = "correlationId")]
    correlation_id: Str<'a>,
    #[serde(borrow)]
    properties: Option<Props<'a>>,
    #[serde(borrow, flatten)]
    flat: Props<'a>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Props<'a> {
    #[serde(borrow, alias = "Method")]
    method: Str<'a>,
    #[serde(borrow, alias = "Url")]
    url: Str<'a>,
    #[serde(rename = "responseCode", alias = "ResponseCode")]
    response_code: Num,
    #[serde(rename = "responseSize", alias = "ResponseSize")]
    response_size: Num,
    #[serde(rename = "backendTime", alias = "BackendTime")]
    backend_time: Num,
    #[serde(rename = "totalTime", alias = "TotalTime")]
    total_time: Num,
    #[serde(borrow, rename = "apimSubscriptionId", alias = "ApimSubscriptionId")]
    subscription_id: Str<'a>,
    #[serde(borrow, rename = "userId", alias = "UserId")]
    user_id: Str<'a>,
    #[serde(borrow, rename = "apiId", alias = "ApiId")]
    api_id: Str<'a>,
    #[serde(borrow, rename = "CallerIpAddress")]
    caller_ip: Str<'a>,
    #[serde(borrow, rename = "CorrelationId")]
    correlation_id: Str<'a>,
    #[serde(borrow, rename = "requestHeaders", alias = "RequestHeaders")]
    headers: Option<Headers<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Headers<'a> {
    #[serde(borrow, rename = "Ocp-Apim-Subscription-Key", alias = "ocp-apim-subscription-key")]
    subscription_key: Str<'a>,
    #[serde(borrow, rename = "Authorization", alias = "authorization")]
    authorization: Str<'a>,
    #[serde(borrow, rename = "User-Agent", alias = "user-agent")]
    user_agent: Str<'a>,
    #[serde(borrow, rename = "X-Forwarded-For", alias = "x-forwarded-for")]
    xff: Str<'a>,
    #[serde(borrow, rename = "Host", alias = "host")]
    host: Str<'a>,
}

/// `https://host:443/path?q` → `host:443`.
fn url_host(u: &str) -> Option<&str> {
    let rest = u.split_once("://")?.1;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|h| !h.is_empty())
}

pub fn parse(n: &Normalizer, rec: &[u8]) -> Result<Event, Reject> {
    let r: Record<'_> = super::fields::from_json(rec).map_err(|e| Reject::json(&e))?;
    let ts = match r.time.get() {
        Some(t) => {
            Some(time::parse_any(t).ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "time is not a timestamp"))?)
        }
        None => None,
    };
    // `properties` when streamed, flat columns when exported from Log Analytics.
    let p = r.properties.as_ref().unwrap_or(&r.flat);
    let h = p.headers.as_ref();
    let url = p.url.get();
    let parts = Parts {
        ts,
        method: p.method.get(),
        host: h.and_then(|h| h.host.get()).or_else(|| url.and_then(url_host)),
        uri: url,
        status: p.response_code.0,
        latency_ms: r.duration_ms.0.or(p.total_time.0),
        upstream_latency_ms: p.backend_time.0,
        bytes_sent: p.response_size.0,
        user_agent: h.and_then(|h| h.user_agent.get()),
        request_id: r.correlation_id.get().or_else(|| p.correlation_id.get()),
        peer: r.caller_ip.get().or_else(|| p.caller_ip.get()).and_then(parse_ip),
        xff: h.and_then(|h| h.xff.get()),
        upstream: p.api_id.get(),
        creds: super::identity::RawCredentials {
            consumer_id: p.subscription_id.get(),
            consumer_name: p.user_id.get(),
            // APIM resolved the subscription from the key it checked.
            consumer_source: ClientIdSource::Gateway,
            authorization: h.and_then(|h| h.authorization.get()),
            api_key: h.and_then(|h| h.subscription_key.get()),
            ..Default::default()
        },
        ..Default::default()
    };
    n.build("azure-apim", parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Format;

    /// Built from the GatewayLogs schema reference (learn.microsoft.com,
    /// gateway-log-schema-reference) and the Azure Monitor common schema.
    #[test]
    fn streamed_record_from_the_schema() {
        let n = Normalizer::new(Format::Azure, b"k");
        let rec = br#"{"time":"2024-05-14T10:00:00.1234567Z","resourceId":"/SUBSCRIPTIONS/X/PROVIDERS/MICROSOFT.APIMANAGEMENT/SERVICE/APIM1","operationName":"Microsoft.ApiManagement/GatewayLogs","category":"GatewayLogs","durationMs":42,"callerIpAddress":"203.0.113.50","correlationId":"c0ffee00-0000-4000-8000-000000000001","properties":{"method":"GET","url":"https://apim1.azure-api.net/echo/resource/7?subscription-key=sk-raw-0123456789","responseCode":401,"responseSize":120,"backendTime":0,"apiId":"echo-api","apimSubscriptionId":"sub-42","requestHeaders":{"User-Agent":"curl/8.0"}}}"#;
        let ev = parse(&n, rec).unwrap();
        assert_eq!(ev.client_id.as_deref(), Some("sub-42"));
        assert_eq!(ev.host.as_deref(), Some("apim1.azure-api.net"));
        assert_eq!(ev.path.as_deref(), Some("/echo/resource/7"));
        assert_eq!(ev.route.as_deref(), Some("GET /echo/resource/{id}"));
        assert_eq!(ev.status, Some(401));
        assert_eq!(ev.token_fingerprint, Some(n.fingerprinter.fingerprint(b"sk-raw-0123456789")));
        assert_eq!(ev.exposures[0].place, "query:subscription-key");
        assert!(!serde_json::to_string(&ev).unwrap().contains("sk-raw"));
    }
}

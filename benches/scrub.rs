//! Scrubber throughput on realistic gateway lines: MB/s and lines/s, single core.
//!
//! Lines are the gateway samples (`../shared/data/gateways/samples/*.jsonl|*.log`:
//! Kong, Envoy, APISIX, AWS API Gateway, Traefik, NGINX, Tyk), cycled; an embedded
//! copy of a few of them is used when the samples are not there.
//! - `clean`: no secrets (what most traffic looks like).
//! - `few`: one line in a hundred carries a secret.
//! - `dirty`: a secret on every line (bearer JWT header, token in the query, API key
//!   in the user agent, basic auth, GitHub token in the path, rotating).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use gatewatch::scrub::{Fingerprinter, ScrubStats, Scrubber};

const EMBEDDED: &[&str] = &[
    r#"{"response":{"size":9982,"headers":{"access-control-allow-origin":"*","content-length":"9593","date":"Thu, 19 Sep 2024 22:10:39 GMT","content-type":"text/html; charset=utf-8","via":"1.1 kong/3.8.0.0-enterprise-edition","connection":"close","server":"gunicorn/19.9.0","access-control-allow-credentials":"true","x-kong-upstream-latency":"171","x-kong-proxy-latency":"1","x-kong-request-id":"2f6946328ffc4946b8c9120704a4a155"},"status":200},"route":{"updated_at":1726782477,"tags":[],"response_buffering":true,"path_handling":"v0","protocols":["http","https"],"service":{"id":"fb4eecf8-dec2-40ef-b779-16de7e2384c7"},"https_redirect_status_code":426,"regex_priority":0,"name":"example_route","id":"0f1a4101-3327-4274-b1e4-484a4ab0c030","strip_path":true,"preserve_host":false,"created_at":1726782477,"request_buffering":true,"ws_id":"f381e34e-5c25-4e65-b91b-3c0a86cfc393","paths":["/example-route"]},"client_ip":"192.168.65.1","request":{"id":"2f6946328ffc4946b8c9120704a4a155","headers":{"accept":"*/*","user-agent":"HTTPie/3.2.3","host":"localhost:8000","connection":"keep-alive","accept-encoding":"gzip, deflate"},"uri":"/example-route","size":139,"method":"GET","querystring":{},"url":"http://localhost:8000/example-route"},"upstream_uri":"/","started_at":1726783839538,"latencies":{"kong":1,"proxy":171,"request":173,"receive":1}}"#,
    r#"{"start_time":"2025-12-14T15:04:12.558Z","method":"GET","path":"/status/200","protocol":"HTTP/1.1","response_code":"200","response_flags":"-","response_code_details":"via_upstream","bytes_received":"0","bytes_sent":"59","duration":"10","upstream_service_time":"6","x_forwarded_for":"-","user_agent":"curl/8.14.1","request_id":"0432d33a-0ffb-94fc-98fc-b9b322d5eaa3","authority":"mock-server:8080","upstream_host":"10.244.1.4:8080","upstream_cluster":"outbound|8080||mock-server.default.svc.cluster.local"}"#,
    r#"85.181.35.98 - - [07/Dec/2016:11:05:07 +0100] "GET /ocelot HTTP/1.1" 200 571 "-" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.102 Safari/537.36""#,
    r#"time="Jan 29 08:27:09" level=info api_id=b1a41c9a89984ffd7bb7d4e3c6844ded api_key=00000000 api_name=httpbin client_ip="::1" host="localhost:8080" latency_total=62 method=GET org_id=678e6771247d80fd2c435bf3 path=/get prefix=access-log protocol=HTTP/1.1 remote_addr="[::1]:63251" status=200 upstream_addr="http://httpbin.org/get" upstream_latency=61 user_agent=PostmanRuntime/7.43.0"#,
];

fn sample_lines() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/gateways/samples");
    let mut lines = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut paths: Vec<_> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl" || x == "log"))
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            lines.extend(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string));
        }
    }
    if lines.is_empty() {
        lines = EMBEDDED.iter().map(|s| s.to_string()).collect();
    }
    lines
}

const JWT: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIiwiYXpwIjoiYXBwLTY5NzM2YiIsInNjb3BlIjoib3JkZXJzOnJlYWQifQ.c2lnbmF0dXJlLWJ5dGVzLWhlcmUtYW5kLW1vcmUtYnl0ZXM";
const GH: &str = "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";

/// Puts one secret into a line, in a place that fits its format.
fn with_secret(line: &str, i: usize) -> String {
    if let Some(rest) = line.strip_prefix('{') {
        let field = match i % 4 {
            0 => format!(r#""authorization":"Bearer {JWT}","#),
            1 => format!(r#""uri":"/v1/orders?access_token={JWT}&page=2","#),
            2 => r#""x-api-key":"Zf3D0LXCM3EIMbgJpUNnkRtOfOueHznB","#.to_string(),
            _ => r#""cookie":"_ga=GA1.2.3.4; session=9f8e7d6c5b4a39281706f5e4d3c2b1a0","#.to_string(),
        };
        format!("{{{field}{rest}")
    } else if let Some(p) = line.find(" HTTP/1.1") {
        let q = if i.is_multiple_of(2) { format!("?access_token={JWT}") } else { format!("/{GH}") };
        format!("{}{q}{}", &line[..p], &line[p..])
    } else {
        format!("{line} authorization=\"Basic YWxpY2U6aHVudGVyMg==\"")
    }
}

fn corpus(n: usize, secret_every: Option<usize>) -> (Vec<String>, usize) {
    let base = sample_lines();
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let l = &base[i % base.len()];
            match secret_every {
                Some(k) if i % k == 0 => with_secret(l, i / k),
                _ => l.clone(),
            }
        })
        .collect();
    let bytes = lines.iter().map(|l| l.len() + 1).sum();
    (lines, bytes)
}

fn bench(c: &mut Criterion) {
    let sc = Scrubber::with_defaults(Fingerprinter::new(b"bench-key-0123456789"));
    for (name, every) in [("clean", None), ("few", Some(100)), ("dirty", Some(1))] {
        let (lines, bytes) = corpus(4000, every);
        for (unit, tp) in
            [("bytes", Throughput::Bytes(bytes as u64)), ("lines", Throughput::Elements(lines.len() as u64))]
        {
            let mut g = c.benchmark_group(format!("scrub_{unit}"));
            g.throughput(tp);
            g.bench_function(name, |b| {
                b.iter(|| {
                    let mut st = ScrubStats::default();
                    let mut n = 0usize;
                    for l in &lines {
                        n += sc.scrub_line(black_box(l), &mut st).len();
                    }
                    black_box(n)
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

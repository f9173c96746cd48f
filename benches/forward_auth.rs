//! Forward-auth's answer: the time from a gateway's headers to allow or deny, with 10,000
//! token revocations and 1,000 address bans in force (far more than the caps allow in an
//! hour). Single core.
//! - `allow_bearer`: an opaque bearer token not revoked, from an address not banned.
//! - `deny_bearer`: a revoked one.
//! - `allow_jwt`: a JWT (decoded for its client claim) not revoked.

use std::sync::Arc;

use axum::http::HeaderMap;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gatewatch::actions::revocation::{DenyEntry, DenyList};
use gatewatch::admin::forward_auth::{decide, ForwardAuth};
use gatewatch::scrub::Fingerprinter;

const KEY: &[u8] = b"forward-auth-bench-key";

fn setup() -> ForwardAuth {
    let deny = Arc::new(DenyList::new());
    let fp = Fingerprinter::new(KEY);
    for i in 0..10_000 {
        deny.insert(DenyEntry {
            fingerprint: Some(fp.fingerprint(format!("gwt_revoked_{i:08}_Lq8ZrT3mVx6KpW").as_bytes()).to_hex()),
            credential_id: None,
            address: None,
            client_id: None,
            claimed_client_id: None,
            reason: "token_reuse".into(),
            alert_id: format!("a{i}"),
            revoked_at: 0,
            expires_at: Some(i64::MAX),
        });
    }
    for i in 0..1_000 {
        deny.insert(DenyEntry {
            fingerprint: None,
            credential_id: None,
            address: Some(format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)),
            client_id: None,
            claimed_client_id: None,
            reason: "auth_failure_spike".into(),
            alert_id: format!("b{i}"),
            revoked_at: 0,
            expires_at: Some(i64::MAX),
        });
    }
    ForwardAuth::new(deny, KEY)
}

fn headers(auth: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("authorization", auth.parse().unwrap());
    h.insert("x-real-ip", "198.51.100.7".parse().unwrap());
    h.insert("x-original-uri", "/api/v1/orders/42?page=2".parse().unwrap());
    h
}

fn bench(c: &mut Criterion) {
    let fa = setup();
    let allow = headers("Bearer gwt_benign1_Lq8ZrT3mVx6KpW2nYc");
    let deny = headers("Bearer gwt_revoked_00004242_Lq8ZrT3mVx6KpW");
    let jwt = headers("Bearer eyJhbGciOiJSUzI1NiJ9.eyJjbGllbnRfaWQiOiJzaG9wLXdlYiIsInN1YiI6InVzcl85In0.c2lnbmF0dXJl");
    let mut g = c.benchmark_group("forward_auth");
    g.bench_function("allow_bearer", |b| b.iter(|| black_box(decide(&fa, black_box(&allow), 1_000))));
    g.bench_function("deny_bearer", |b| b.iter(|| black_box(decide(&fa, black_box(&deny), 1_000))));
    g.bench_function("allow_jwt", |b| b.iter(|| black_box(decide(&fa, black_box(&jwt), 1_000))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

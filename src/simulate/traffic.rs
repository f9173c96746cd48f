//! The benign world: routes and their upstreams, the client population, and how
//! each kind of client behaves over time.
//!
//! Population (for `clients = N`): one heavy batch client, one cloud client behind
//! three AZ NAT gateways, then ~45 % mobile installations (the `shop-ios` /
//! `shop-android` apps, one end user each, moving between /24s inside their
//! carrier's /16), ~14 % back-office staff and ~3 % admins all behind one office
//! NAT address, and the rest partner integrations on fixed data-centre addresses.
//! Every client holds an hourly-rotated bearer token and only calls routes its
//! scopes allow (a 403 is rare).

use std::net::Ipv4Addr;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{token, KongConsumer, SimConfig, SimRecord, SimToken};
use crate::event::Millis;
use crate::scrub::Fingerprinter;

pub(crate) const API_HOST: &str = "api.shopfront.example";
pub(crate) const AUTH_HOST: &str = "auth.shopfront.example";

/// Upstream timeout: a request that would take longer ends in a 504 at this latency.
pub(crate) const UPSTREAM_TIMEOUT_MS: f64 = 5_000.0;

/// One API route behind the gateway.
#[derive(Debug)]
pub(crate) struct RouteDef {
    pub method: &'static str,
    /// Path pattern: `{n}` a numeric id, `{uuid}` a UUID.
    pub pattern: &'static str,
    /// Templated route as gatewatch reports it.
    pub route: &'static str,
    pub host: &'static str,
    pub upstream: &'static str,
    /// Scope the route needs; `None` for the unauthenticated auth endpoints.
    pub scope: Option<&'static str>,
    /// Median upstream latency, ms, and the spread of its logarithm.
    pub p50_ms: f64,
    pub sigma: f64,
    /// Fractional latency increase over the simulated span (slow drift).
    pub drift: f64,
    /// Median response size, bytes.
    pub bytes: f64,
    /// Popularity among the routes a client may call.
    pub weight: f64,
    pub query: QueryKind,
    /// Status of a successful call.
    pub ok: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryKind {
    None,
    OrdersList,
    Products,
    Search,
    Page,
    ReportDate,
}

macro_rules! route {
    ($m:literal, $p:literal, $r:literal, $host:expr, $up:literal, $scope:expr, $p50:literal, $sigma:literal, $drift:literal, $bytes:literal, $w:literal, $q:ident, $ok:literal) => {
        RouteDef {
            method: $m,
            pattern: $p,
            route: $r,
            host: $host,
            upstream: $up,
            scope: $scope,
            p50_ms: $p50,
            sigma: $sigma,
            drift: $drift,
            bytes: $bytes,
            weight: $w,
            query: QueryKind::$q,
            ok: $ok,
        }
    };
}

/// Index of `POST /oauth/token` in [`ROUTES`].
pub(crate) const R_TOKEN: u8 = 20;
/// Index of `GET /v1/orders/{id}`.
pub(crate) const R_ORDER: u8 = 1;
/// Index of `GET /v1/catalog/products` (a page of products).
pub(crate) const R_PRODUCTS: u8 = 13;
/// Index of `POST /v1/auth/login`.
pub(crate) const R_LOGIN: u8 = 21;
/// Index of `DELETE /v1/users/{id}` (needs `admin`).
pub(crate) const R_DELETE_USER: u8 = 8;
/// Index of `GET /v1/users` (needs `admin`).
pub(crate) const R_LIST_USERS: u8 = 9;

pub(crate) static ROUTES: [RouteDef; 22] = [
    route!(
        "GET",
        "/v1/orders",
        "GET /v1/orders",
        API_HOST,
        "orders-svc",
        Some("orders:read"),
        45.0,
        0.5,
        0.0,
        4200.0,
        8.0,
        OrdersList,
        200
    ),
    route!(
        "GET",
        "/v1/orders/{n}",
        "GET /v1/orders/{id}",
        API_HOST,
        "orders-svc",
        Some("orders:read"),
        28.0,
        0.45,
        0.0,
        1800.0,
        12.0,
        None,
        200
    ),
    route!(
        "POST",
        "/v1/orders",
        "POST /v1/orders",
        API_HOST,
        "orders-svc",
        Some("orders:write"),
        85.0,
        0.5,
        0.0,
        900.0,
        3.0,
        None,
        201
    ),
    route!(
        "PATCH",
        "/v1/orders/{n}",
        "PATCH /v1/orders/{id}",
        API_HOST,
        "orders-svc",
        Some("orders:write"),
        60.0,
        0.5,
        0.0,
        700.0,
        1.5,
        None,
        200
    ),
    route!(
        "GET",
        "/v1/orders/{n}/items",
        "GET /v1/orders/{id}/items",
        API_HOST,
        "orders-svc",
        Some("orders:read"),
        35.0,
        0.5,
        0.0,
        2600.0,
        5.0,
        None,
        200
    ),
    route!(
        "GET",
        "/v1/users/me",
        "GET /v1/users/me",
        API_HOST,
        "users-svc",
        Some("profile"),
        14.0,
        0.4,
        0.0,
        600.0,
        6.0,
        None,
        200
    ),
    route!(
        "GET",
        "/v1/users/{n}",
        "GET /v1/users/{id}",
        API_HOST,
        "users-svc",
        Some("users:read"),
        22.0,
        0.45,
        0.0,
        650.0,
        4.0,
        None,
        200
    ),
    route!(
        "PUT",
        "/v1/users/{n}",
        "PUT /v1/users/{id}",
        API_HOST,
        "users-svc",
        Some("users:write"),
        40.0,
        0.5,
        0.0,
        650.0,
        1.0,
        None,
        200
    ),
    route!(
        "DELETE",
        "/v1/users/{n}",
        "DELETE /v1/users/{id}",
        API_HOST,
        "users-svc",
        Some("admin"),
        55.0,
        0.5,
        0.0,
        0.0,
        0.4,
        None,
        204
    ),
    route!(
        "GET",
        "/v1/users",
        "GET /v1/users",
        API_HOST,
        "users-svc",
        Some("admin"),
        70.0,
        0.55,
        0.0,
        8800.0,
        0.6,
        Page,
        200
    ),
    route!(
        "POST",
        "/v1/payments",
        "POST /v1/payments",
        API_HOST,
        "payments-svc",
        Some("payments:write"),
        180.0,
        0.6,
        0.0,
        750.0,
        2.0,
        None,
        201
    ),
    route!(
        "GET",
        "/v1/payments/{uuid}",
        "GET /v1/payments/{id}",
        API_HOST,
        "payments-svc",
        Some("payments:read"),
        48.0,
        0.5,
        0.0,
        820.0,
        2.0,
        None,
        200
    ),
    route!(
        "POST",
        "/v1/payments/{uuid}/refund",
        "POST /v1/payments/{id}/refund",
        API_HOST,
        "payments-svc",
        Some("payments:write"),
        190.0,
        0.65,
        0.0,
        640.0,
        0.3,
        None,
        201
    ),
    route!(
        "GET",
        "/v1/catalog/products",
        "GET /v1/catalog/products",
        API_HOST,
        "catalog-svc",
        Some("catalog:read"),
        32.0,
        0.5,
        0.0,
        12000.0,
        10.0,
        Products,
        200
    ),
    route!(
        "GET",
        "/v1/catalog/products/{n}",
        "GET /v1/catalog/products/{id}",
        API_HOST,
        "catalog-svc",
        Some("catalog:read"),
        18.0,
        0.4,
        0.0,
        2100.0,
        14.0,
        None,
        200
    ),
    route!(
        "GET",
        "/v1/search",
        "GET /v1/search",
        API_HOST,
        "search-svc",
        Some("catalog:read"),
        95.0,
        0.55,
        0.2,
        9000.0,
        7.0,
        Search,
        200
    ),
    route!(
        "GET",
        "/v1/inventory/{n}",
        "GET /v1/inventory/{id}",
        API_HOST,
        "inventory-svc",
        Some("inventory:read"),
        22.0,
        0.45,
        0.0,
        420.0,
        5.0,
        None,
        200
    ),
    route!(
        "PUT",
        "/v1/inventory/{n}",
        "PUT /v1/inventory/{id}",
        API_HOST,
        "inventory-svc",
        Some("inventory:write"),
        38.0,
        0.5,
        0.0,
        380.0,
        3.0,
        None,
        200
    ),
    route!(
        "GET",
        "/v1/reports/daily",
        "GET /v1/reports/daily",
        API_HOST,
        "reports-svc",
        Some("reports:read"),
        200.0,
        0.7,
        0.22,
        64000.0,
        0.8,
        ReportDate,
        200
    ),
    route!(
        "POST",
        "/v1/reports/export",
        "POST /v1/reports/export",
        API_HOST,
        "reports-svc",
        Some("reports:read"),
        160.0,
        0.7,
        0.2,
        300.0,
        0.2,
        None,
        202
    ),
    route!(
        "POST",
        "/oauth/token",
        "POST /oauth/token",
        AUTH_HOST,
        "auth-svc",
        None,
        55.0,
        0.4,
        0.0,
        1450.0,
        0.0,
        None,
        200
    ),
    route!(
        "POST",
        "/v1/auth/login",
        "POST /v1/auth/login",
        AUTH_HOST,
        "auth-svc",
        None,
        140.0,
        0.35,
        0.0,
        1500.0,
        0.0,
        None,
        200
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientKind {
    Mobile,
    Office,
    Admin,
    Partner(Profile),
    Batch,
    Cloud,
}

/// What a partner integration does, and so which scopes it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    Storefront,
    Marketplace,
    Analytics,
    Crm,
    CatalogOnly,
    Logistics,
}

const PROFILES: [(Profile, &[&str]); 6] = [
    (Profile::Storefront, &["catalog:read", "orders:read", "orders:write", "payments:read", "payments:write"]),
    (Profile::Marketplace, &["catalog:read", "inventory:read", "orders:read"]),
    (Profile::Analytics, &["orders:read", "reports:read"]),
    (Profile::Crm, &["orders:read", "users:read", "users:write"]),
    (Profile::CatalogOnly, &["catalog:read"]),
    (Profile::Logistics, &["inventory:read", "inventory:write", "orders:read", "orders:write"]),
];

/// Where a client's requests come from.
#[derive(Debug, Clone)]
pub(crate) enum NetPlan {
    /// Fixed addresses; each request picks one (servers, NAT gateways, the office).
    Fixed(Vec<Ipv4Addr>),
    /// A phone on a carrier: `a.b.0.0/16`, hopping to another /24 every few minutes.
    Mobile { a: u8, b: u8 },
}

#[derive(Debug)]
pub(crate) struct Client {
    pub idx: usize,
    pub kind: ClientKind,
    pub client_id: Arc<str>,
    pub subject: Arc<str>,
    pub scopes: Arc<[&'static str]>,
    pub net: NetPlan,
    /// Internal address a corporate forward proxy adds to `X-Forwarded-For`.
    pub inner_xff: Option<Ipv4Addr>,
    pub user_agent: Arc<str>,
    /// Mean request rate while active, req/s.
    pub rate: f64,
    /// Refreshes its token before expiry (no 401s) instead of on the first 401.
    pub proactive: bool,
    pub consumer: Arc<KongConsumer>,
    /// Cumulative weights over the routes this client calls.
    pub routes: Vec<(u8, f64)>,
    /// Age of the token held at the start.
    pub token_age_ms: Millis,
    /// Base of this client's own resource ids.
    pub id_base: u64,
}

/// The client population and the addresses it occupies.
pub(crate) struct Population {
    pub clients: Vec<Client>,
    /// Flush period and phase (from the start of the span) of each gateway node's log shipper.
    pub nodes: [(Millis, Millis); 3],
    /// Start of the span.
    pub start: Millis,
    /// Every address a benign client uses (/24 granularity for mobile carriers).
    pub benign_nets: std::collections::HashSet<[u8; 3]>,
}

const CARRIERS: [(u8, u8); 6] = [(172, 56), (174, 205), (107, 77), (31, 94), (92, 40), (176, 12)];
const DATACENTRE: [(u8, u8); 18] = [
    (3, 120),
    (18, 184),
    (35, 156),
    (52, 28),
    (54, 93),
    (34, 90),
    (35, 190),
    (20, 50),
    (40, 113),
    (52, 178),
    (88, 198),
    (116, 203),
    (135, 181),
    (51, 38),
    (145, 239),
    (164, 92),
    (167, 71),
    (212, 58),
];
const OFFICE_NETS: [(u8, u8); 4] = [(62, 153), (80, 156), (194, 25), (81, 169)];
/// The cloud client's three NAT gateways (one per availability zone, different networks).
const CLOUD_NATS: [(u8, u8); 3] = [(3, 121), (18, 197), (52, 59)];

const IOS_UA: [&str; 3] = [
    "ShopApp/4.12.1 (iPhone15,2; iOS 17.4.1) Alamofire/5.8.1",
    "ShopApp/4.12.1 (iPhone14,5; iOS 17.2) Alamofire/5.8.1",
    "ShopApp/4.11.0 (iPhone13,2; iOS 16.7.5) Alamofire/5.8.0",
];
const ANDROID_UA: [&str; 3] = [
    "ShopApp/4.12.0 (Android 14; Pixel 7) okhttp/4.12.0",
    "ShopApp/4.12.0 (Android 13; SM-S911B) okhttp/4.12.0",
    "ShopApp/4.10.2 (Android 12; M2101K9G) okhttp/4.9.3",
];
const BROWSER_UA: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
];
const SERVER_UA: [&str; 6] = [
    "Go-http-client/2.0",
    "python-requests/2.32.3",
    "Apache-HttpClient/4.5.14 (Java/17.0.9)",
    "axios/1.7.7",
    "okhttp/4.12.0",
    "Ruby",
];

/// A per-purpose random stream derived from the seed (SplitMix64 of seed and stream id).
pub(crate) fn stream(seed: u64, id: u64) -> SmallRng {
    let mut z = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    SmallRng::seed_from_u64(z ^ (z >> 31))
}

pub(crate) fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

/// A standard normal deviate (Box–Muller).
pub(crate) fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.gen::<f64>().max(1e-12);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// An exponential deviate with the given mean.
pub(crate) fn exp(rng: &mut impl Rng, mean: f64) -> f64 {
    -(1.0 - rng.gen::<f64>()).ln() * mean
}

impl Population {
    pub fn build(cfg: &SimConfig, _fp: &Fingerprinter) -> Population {
        let mut rng = stream(cfg.seed, 1);
        let n = cfg.clients;
        let rest = n - 2;
        let mobile = rest * 45 / 100;
        let admin = (rest * 3 / 100).max(1);
        let office = (rest * 14 / 100).max(2);
        let partners = rest - mobile - admin - office;

        let (oa, ob) = OFFICE_NETS[rng.gen_range(0..OFFICE_NETS.len())];
        let office_nat = ip(oa, ob, rng.gen_range(1..255), rng.gen_range(2..250));
        let mut used: std::collections::HashSet<Ipv4Addr> = std::collections::HashSet::new();
        used.insert(office_nat);
        let mut fresh_ip = |rng: &mut SmallRng, nets: &[(u8, u8)]| loop {
            let (a, b) = nets[rng.gen_range(0..nets.len())];
            let x = ip(a, b, rng.gen_range(0..=255), rng.gen_range(2..=254));
            if used.insert(x) {
                return x;
            }
        };

        let mut consumers: std::collections::HashMap<Arc<str>, Arc<KongConsumer>> = Default::default();
        let mut consumer_for = |rng: &mut SmallRng, id: &Arc<str>| {
            consumers
                .entry(id.clone())
                .or_insert_with(|| {
                    Arc::new(KongConsumer {
                        id: token::uuid(rng),
                        username: id.clone(),
                        credential_id: token::uuid(rng),
                        created_at: 1_700_000_000 + rng.gen_range(0..60_000_000),
                    })
                })
                .clone()
        };

        let mut clients = Vec::with_capacity(n);
        let mut push = |clients: &mut Vec<Client>,
                        rng: &mut SmallRng,
                        kind: ClientKind,
                        client_id: Arc<str>,
                        subject: Arc<str>,
                        scopes: &[&'static str],
                        net: NetPlan,
                        inner_xff: Option<Ipv4Addr>,
                        ua: &str,
                        rate: f64,
                        proactive: bool| {
            let mut s: Vec<&'static str> = scopes
                .iter()
                .map(|x| {
                    ROUTES
                        .iter()
                        .filter_map(|r| r.scope)
                        .find(|s| s == x)
                        .unwrap_or_else(|| panic!("unknown scope {x}"))
                })
                .collect();
            s.sort_unstable();
            s.dedup();
            let scopes: Arc<[&'static str]> = Arc::from(s);
            let consumer = consumer_for(rng, &client_id);
            let idx = clients.len();
            let routes = route_weights(kind, &scopes);
            clients.push(Client {
                idx,
                kind,
                client_id,
                subject,
                scopes,
                net,
                inner_xff,
                user_agent: Arc::from(ua),
                rate,
                proactive,
                consumer,
                routes,
                token_age_ms: rng.gen_range(60_000..super::TOKEN_TTL_MS - 60_000),
                id_base: rng.gen_range(100_000..900_000),
            });
        };

        // The heavy batch client: a few requests a second, two hosts in one /24.
        let b1 = fresh_ip(&mut rng, &DATACENTRE);
        let b2 = ip(b1.octets()[0], b1.octets()[1], b1.octets()[2], b1.octets()[3] ^ 1);
        push(
            &mut clients,
            &mut rng,
            ClientKind::Batch,
            Arc::from("inventory-sync"),
            Arc::from("inventory-sync"),
            &["catalog:read", "inventory:read", "inventory:write"],
            NetPlan::Fixed(vec![b1, b2]),
            None,
            "inventory-sync/1.8.2 (+https://shopfront.example/bots) Java/21.0.2",
            3.2,
            true,
        );
        // The cloud client: three AZ NAT gateways in different networks.
        let nats = CLOUD_NATS.iter().map(|(a, b)| fresh_ip(&mut rng, &[(*a, *b)])).collect();
        push(
            &mut clients,
            &mut rng,
            ClientKind::Cloud,
            Arc::from("logistics-cloud"),
            Arc::from("logistics-cloud"),
            &["inventory:read", "orders:read", "orders:write"],
            NetPlan::Fixed(nats),
            None,
            "logistics-worker/3.4.0 aws-sdk-go-v2/1.30.3 Go-http-client/2.0",
            0.8,
            true,
        );
        for i in 0..mobile {
            let ios = rng.gen_bool(0.55);
            let (a, b) = CARRIERS[rng.gen_range(0..CARRIERS.len())];
            let ua = if ios { IOS_UA[rng.gen_range(0..3)] } else { ANDROID_UA[rng.gen_range(0..3)] };
            let cid = if ios { "shop-ios" } else { "shop-android" };
            let rate = rng.gen_range(0.15..0.5);
            push(
                &mut clients,
                &mut rng,
                ClientKind::Mobile,
                Arc::from(cid),
                Arc::from(format!("usr_{:07}", 1_000_000 + i * 7919 % 8_000_000).as_str()),
                &["catalog:read", "orders:read", "orders:write", "payments:write", "profile"],
                NetPlan::Mobile { a, b },
                None,
                ua,
                rate,
                false,
            );
        }
        for i in 0..office + admin {
            let is_admin = i >= office;
            let inner = ip(10, 20, rng.gen_range(1..40), rng.gen_range(2..250));
            let (kind, cid, scopes): (_, &str, &[&str]) = if is_admin {
                (ClientKind::Admin, "admin-console", &["admin", "orders:read", "profile", "users:read", "users:write"])
            } else {
                (
                    ClientKind::Office,
                    "backoffice-web",
                    &[
                        "catalog:read",
                        "orders:read",
                        "orders:write",
                        "payments:read",
                        "profile",
                        "reports:read",
                        "users:read",
                    ],
                )
            };
            let inner_xff = rng.gen_bool(0.3).then_some(inner);
            let ua = BROWSER_UA[rng.gen_range(0..BROWSER_UA.len())];
            let rate = if is_admin { rng.gen_range(0.03..0.1) } else { rng.gen_range(0.05..0.25) };
            push(
                &mut clients,
                &mut rng,
                kind,
                Arc::from(cid),
                Arc::from(format!("staff_{:04}", 100 + i).as_str()),
                scopes,
                NetPlan::Fixed(vec![office_nat]),
                // Some desks sit behind the corporate forward proxy, which adds their address.
                inner_xff,
                ua,
                rate,
                false,
            );
        }
        for _ in 0..partners {
            let (profile, scopes) = PROFILES[rng.gen_range(0..PROFILES.len())];
            let cid: String = format!("app-{:06x}", rng.gen_range(0x100000..0xffffff));
            let a = fresh_ip(&mut rng, &DATACENTRE);
            let mut ips = vec![a];
            if rng.gen_bool(0.15) {
                // active-active pair in the same /24
                let o = a.octets();
                ips.push(ip(o[0], o[1], o[2], o[3].wrapping_add(1).max(2)));
            }
            let ua = if rng.gen_bool(0.3) {
                format!("{}-connector/{}.{}.{}", &cid, rng.gen_range(1..4), rng.gen_range(0..12), rng.gen_range(0..20))
            } else {
                SERVER_UA[rng.gen_range(0..SERVER_UA.len())].to_string()
            };
            // Light to busy: a lognormal spread around 0.12 req/s.
            let rate = (0.12 * (0.9 * normal(&mut rng)).exp()).clamp(0.01, 1.5);
            let subject: Arc<str> = Arc::from(cid.as_str());
            let proactive = rng.gen_bool(0.6);
            push(
                &mut clients,
                &mut rng,
                ClientKind::Partner(profile),
                Arc::from(cid.as_str()),
                subject,
                scopes,
                NetPlan::Fixed(ips),
                None,
                &ua,
                rate,
                proactive,
            );
        }

        let mut benign_nets = std::collections::HashSet::new();
        for c in &clients {
            match &c.net {
                NetPlan::Fixed(v) => {
                    for x in v {
                        let o = x.octets();
                        benign_nets.insert([o[0], o[1], o[2]]);
                    }
                }
                NetPlan::Mobile { a, b } => {
                    for c3 in 0..=255u8 {
                        benign_nets.insert([*a, *b, c3]);
                    }
                }
            }
        }
        let nodes =
            [(1_000, rng.gen_range(0..1_000)), (2_000, rng.gen_range(0..2_000)), (3_500, rng.gen_range(0..3_500))];
        Population { clients, nodes, start: cfg.start, benign_nets }
    }

    /// A rough count, to size the output vector.
    pub fn expected_records(&self, cfg: &SimConfig) -> usize {
        let per_s: f64 = self
            .clients
            .iter()
            .map(|c| match c.kind {
                ClientKind::Mobile => c.rate * 0.25,
                ClientKind::Office => c.rate * 0.8,
                ClientKind::Admin => c.rate * 0.2,
                _ => c.rate,
            })
            .sum();
        (per_s * cfg.duration_ms as f64 / 1000.0 * 1.1) as usize + 1024
    }

    /// Arrival time of a record completed at `done` on `node`: the node's shipper
    /// flushes every period, then transport takes a few hundred ms.
    pub fn arrival(&self, node: u8, done: Millis, transit: Millis) -> Millis {
        let (period, phase) = self.nodes[node as usize];
        let phase = self.start + phase;
        let k = (done - phase).div_euclid(period) + 1;
        phase + k * period + transit
    }
}

/// Route popularity for a kind of client, restricted to what its scopes allow.
fn route_weights(kind: ClientKind, scopes: &[&str]) -> Vec<(u8, f64)> {
    let mut acc = 0.0;
    let mut out = Vec::new();
    for (i, r) in ROUTES.iter().enumerate() {
        let Some(scope) = r.scope else { continue };
        if !scopes.contains(&scope) {
            continue;
        }
        let affinity = match (kind, i) {
            (ClientKind::Batch, 14) => 6.0,
            (ClientKind::Batch, 16) => 8.0,
            (ClientKind::Batch, 17) => 10.0,
            (ClientKind::Batch, 13) => 0.3,
            (ClientKind::Cloud, 1) | (ClientKind::Cloud, 3) | (ClientKind::Cloud, 16) => 3.0,
            (ClientKind::Partner(Profile::Analytics), 18) => 6.0,
            (ClientKind::Partner(Profile::Analytics), 19) => 4.0,
            (ClientKind::Admin, 8) => 6.0,
            (ClientKind::Admin, 9) => 5.0,
            (ClientKind::Mobile, 9) => 0.0,
            _ => 1.0,
        };
        let w = r.weight * affinity;
        if w > 0.0 {
            acc += w;
            out.push((i as u8, acc));
        }
    }
    out
}

/// How busy the API is at this time of day (UTC), relative to late morning:
/// quiet at 04:00, peak at 16:00.
pub(crate) fn diurnal(ts: Millis) -> f64 {
    let h = ts.rem_euclid(86_400_000) as f64 / 3_600_000.0;
    let m = 0.35 + 0.65 * (0.5 - 0.5 * (std::f64::consts::TAU * (h - 4.0) / 24.0).cos());
    m / 0.7
}

/// A latency regression in force on a route: upstream latency × `factor` inside the window.
#[derive(Debug, Clone)]
pub(crate) struct LatencyEffect {
    pub route: u8,
    pub start: Millis,
    pub end: Millis,
    pub factor: f64,
}

/// A token a client held, and when it used it.
#[derive(Debug, Clone)]
pub(crate) struct TokenUse {
    pub token: Arc<SimToken>,
    pub first_use: Millis,
    pub last_use: Millis,
}

/// What decides a request's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Outcome {
    /// The benign mix: mostly the route's success status, a few 404s, 4xx, 5xx and 429s.
    Normal { rate_limited: f64 },
    /// The gateway rejects the token (expired, revoked, bad signature).
    GatewayUnauthorized,
    /// The gateway's scope policy rejects the call.
    GatewayForbidden,
    /// The upstream answers with this status (login failures, a successful call).
    Upstream(u16),
}

/// Everything needed to write one record, shared by benign and attack traffic.
pub(crate) struct Request<'a> {
    pub ts: Millis,
    pub route: u8,
    pub token: Option<&'a Arc<SimToken>>,
    pub consumer: Option<&'a Arc<KongConsumer>>,
    pub ip: Ipv4Addr,
    pub inner_xff: Option<Ipv4Addr>,
    pub user_agent: &'a Arc<str>,
    pub outcome: Outcome,
    pub id_base: u64,
    pub attack: Option<u16>,
}

/// Builds the record: path, status, latencies, sizes, node, arrival.
pub(crate) fn make_record(
    rng: &mut SmallRng,
    pop: &Population,
    cfg: &SimConfig,
    effects: &[LatencyEffect],
    q: Request<'_>,
) -> SimRecord {
    let r = &ROUTES[q.route as usize];
    let path = make_path(rng, r, q.id_base);
    let query = make_query(rng, r, q.ts);
    let overhead = rng.gen_range(0..=3u32);
    let sample = |rng: &mut SmallRng| {
        let elapsed = (q.ts - cfg.start) as f64 / cfg.duration_ms as f64;
        let mut m = r.p50_ms * (1.0 + r.drift * elapsed) * (r.sigma * normal(rng)).exp();
        for e in effects {
            if e.route == q.route && q.ts >= e.start && q.ts <= e.end {
                // 30 s ramp into the regression
                let ramp = ((q.ts - e.start) as f64 / 30_000.0).min(1.0);
                m *= 1.0 + (e.factor - 1.0) * ramp;
            }
        }
        m.max(1.0)
    };
    let (status, upstream_latency, by_gateway) = match q.outcome {
        Outcome::GatewayUnauthorized => (401, None, true),
        Outcome::GatewayForbidden => (403, None, true),
        Outcome::Upstream(s) => {
            let u = sample(rng);
            (s, Some(u.min(UPSTREAM_TIMEOUT_MS)), false)
        }
        Outcome::Normal { rate_limited } => {
            let x: f64 = rng.gen();
            let has_id = r.pattern.contains('{');
            let p429 = rate_limited;
            let p5xx = 0.006;
            let p404 = if has_id { 0.035 } else { 0.004 };
            let p4xx = if r.method == "GET" { 0.002 } else { 0.015 };
            if x < p429 {
                (429, None, true)
            } else if x < p429 + p5xx {
                match rng.gen_range(0..10) {
                    0..=4 => (502, Some(sample(rng) * 0.3), false),
                    5..=7 => (503, None, false),
                    _ => (504, None, false),
                }
            } else if x < p429 + p5xx + p404 {
                (404, Some(sample(rng) * 0.5), false)
            } else if x < p429 + p5xx + p404 + p4xx {
                let s = if r.method == "POST" { [400, 409, 422][rng.gen_range(0..3)] } else { 400 };
                (s, Some(sample(rng) * 0.6), false)
            } else {
                let u = sample(rng);
                if u >= UPSTREAM_TIMEOUT_MS {
                    (504, None, false)
                } else {
                    (r.ok, Some(u), false)
                }
            }
        }
    };
    let upstream_latency_ms = upstream_latency.map(|u| u.min(UPSTREAM_TIMEOUT_MS).round().max(1.0) as u32);
    let latency_ms = match (status, upstream_latency_ms) {
        (504, _) => UPSTREAM_TIMEOUT_MS as u32 + overhead,
        (_, Some(u)) => u + overhead,
        // gateway-answered: JWT check or policy lookup only
        _ => overhead + rng.gen_range(0..=2),
    };
    let bytes_sent = match status {
        204 => 0,
        401 | 403 => rng.gen_range(58..=96),
        429 => rng.gen_range(40..=60),
        404 => rng.gen_range(60..=120),
        400 | 409 | 422 => rng.gen_range(90..=400),
        500..=599 => rng.gen_range(50..=180),
        _ => (r.bytes * (0.5 * normal(rng)).exp()).round().max(20.0) as u64,
    };
    let token_len = q.token.map_or(0, |t| t.raw.len() as u64 + 22);
    let body = if r.method == "GET" || r.method == "DELETE" { 0 } else { rng.gen_range(120..2400) };
    let bytes_received = 280 + token_len + path.len() as u64 + body;
    let node = rng.gen_range(0..3u8);
    let done = q.ts + latency_ms as Millis;
    let arrival = pop.arrival(node, done, rng.gen_range(5..300));
    let xff = match q.inner_xff {
        Some(inner) => Some(format!("{inner}, {}", q.ip)),
        None => rng.gen_bool(0.9).then(|| q.ip.to_string()),
    };
    let authenticated = q.token.is_some() && status != 401;
    SimRecord {
        ts: q.ts,
        arrival,
        gateway_node: node,
        client_id: q.token.map(|t| t.client_id.clone()),
        subject: q.token.map(|t| t.subject.clone()),
        token: q.token.cloned(),
        consumer: if authenticated { q.consumer.cloned() } else { None },
        source_ip: q.ip,
        source_port: rng.gen_range(32_768..61_000),
        xff,
        method: r.method,
        host: r.host,
        path,
        query,
        route: r.route,
        status,
        latency_ms,
        upstream_latency_ms: if status == 504 { None } else { upstream_latency_ms },
        gateway_latency_ms: overhead,
        bytes_sent,
        bytes_received,
        user_agent: q.user_agent.clone(),
        request_id: token::uuid(rng),
        upstream: r.upstream,
        answered_by_gateway: by_gateway,
        attack: q.attack,
        route_idx: q.route,
    }
}

fn make_path(rng: &mut SmallRng, r: &RouteDef, id_base: u64) -> String {
    let mut out = String::with_capacity(r.pattern.len() + 32);
    let mut rest = r.pattern;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').expect("closed placeholder") + i;
        match &rest[i + 1..j] {
            // a client mostly touches its own neighbourhood of ids
            "n" => {
                let id =
                    if rng.gen_bool(0.8) { id_base + rng.gen_range(0..5_000) } else { rng.gen_range(1_000..9_999_999) };
                use std::fmt::Write;
                let _ = write!(out, "{id}");
            }
            "uuid" => out.push_str(&token::uuid(rng)),
            other => panic!("unknown placeholder {other}"),
        }
        rest = &rest[j + 1..];
    }
    out.push_str(rest);
    out
}

const CATEGORIES: [&str; 8] = ["shoes", "outdoor", "kitchen", "toys", "books", "garden", "audio", "sports"];
const SEARCH_TERMS: [&str; 10] = [
    "red+shoes",
    "trail+running",
    "coffee+grinder",
    "lego",
    "usb-c+cable",
    "tent",
    "headphones",
    "yoga+mat",
    "desk+lamp",
    "rain+jacket",
];

fn make_query(rng: &mut SmallRng, r: &RouteDef, ts: Millis) -> Option<String> {
    match r.query {
        QueryKind::None => None,
        QueryKind::OrdersList => rng.gen_bool(0.7).then(|| {
            let status = ["open", "shipped", "all"][rng.gen_range(0..3)];
            format!("status={status}&page={}&per_page=50", rng.gen_range(1..6))
        }),
        QueryKind::Products => rng.gen_bool(0.8).then(|| {
            format!(
                "category={}&page={}&sort=popularity",
                CATEGORIES[rng.gen_range(0..CATEGORIES.len())],
                rng.gen_range(1..10)
            )
        }),
        QueryKind::Search => Some(format!("q={}&limit=20", SEARCH_TERMS[rng.gen_range(0..SEARCH_TERMS.len())])),
        QueryKind::Page => Some(format!("page={}&per_page=100", rng.gen_range(1..20))),
        QueryKind::ReportDate => {
            let day = crate::event::format_ts(ts - 86_400_000 * rng.gen_range(1..8));
            Some(format!("date={}&format=csv", &day[..10]))
        }
    }
}

/// A client's address at `ts`, moving for mobile clients.
struct Whereabouts {
    current: Ipv4Addr,
    next_move: Millis,
}

impl Whereabouts {
    fn new(rng: &mut SmallRng, c: &Client, ts: Millis) -> Self {
        let mut w = Whereabouts { current: Ipv4Addr::UNSPECIFIED, next_move: ts };
        w.at(rng, c, ts);
        w
    }

    fn at(&mut self, rng: &mut SmallRng, c: &Client, ts: Millis) -> Ipv4Addr {
        match &c.net {
            NetPlan::Fixed(v) => v[rng.gen_range(0..v.len())],
            NetPlan::Mobile { a, b } => {
                if ts >= self.next_move {
                    // cell handover / CGNAT re-pooling: another /24 of the same carrier /16
                    self.current = ip(*a, *b, rng.gen_range(0..=255), rng.gen_range(1..=254));
                    self.next_move = ts + exp(rng, 8.0 * 60_000.0) as Millis + 60_000;
                }
                self.current
            }
        }
    }
}

/// Active periods of a client: (mean active length, mean gap), ms; `None` = always on.
fn sessions(kind: ClientKind) -> Option<(f64, f64)> {
    match kind {
        ClientKind::Mobile => Some((3.5 * 60_000.0, 12.0 * 60_000.0)),
        ClientKind::Office => Some((20.0 * 60_000.0, 4.0 * 60_000.0)),
        ClientKind::Admin => Some((5.0 * 60_000.0, 15.0 * 60_000.0)),
        _ => None,
    }
}

/// Generates one client's benign traffic over the span; returns the tokens it used.
/// The client calls the token endpoint at `*now` and holds a fresh token a moment later.
#[allow(clippy::too_many_arguments)]
fn refresh_token(
    rng: &mut SmallRng,
    pop: &Population,
    cfg: &SimConfig,
    effects: &[LatencyEffect],
    fp: &Fingerprinter,
    c: &Client,
    base: &Request<'_>,
    now: &mut Millis,
    out: &mut Vec<SimRecord>,
) -> Arc<SimToken> {
    out.push(make_record(
        rng,
        pop,
        cfg,
        effects,
        Request { ts: *now, route: R_TOKEN, outcome: Outcome::Upstream(200), ..*base },
    ));
    *now += rng.gen_range(40..250);
    token::mint(rng, fp, &c.client_id, &c.subject, &c.scopes, *now)
}

pub(crate) fn generate_client(
    cfg: &SimConfig,
    pop: &Population,
    c: &Client,
    effects: &[LatencyEffect],
    fp: &Fingerprinter,
    out: &mut Vec<SimRecord>,
) -> Vec<TokenUse> {
    let mut rng = stream(cfg.seed, 1_000 + c.idx as u64);
    let end = cfg.end();
    let mut history: Vec<TokenUse> = Vec::new();
    let mut tok = token::mint(&mut rng, fp, &c.client_id, &c.subject, &c.scopes, cfg.start - c.token_age_ms);
    let mut place = Whereabouts::new(&mut rng, c, cfg.start);
    let lead = rng.gen_range(60_000..300_000);

    // Session structure: start inside a session with the probability of being active.
    let (mut active_until, mut t) = match sessions(c.kind) {
        None => (end, cfg.start + exp(&mut rng, 1000.0 / c.rate) as Millis),
        Some((on, off)) => {
            if rng.gen_bool(on / (on + off)) {
                (cfg.start + exp(&mut rng, on) as Millis, cfg.start + exp(&mut rng, 1000.0 / c.rate) as Millis)
            } else {
                let s = cfg.start + exp(&mut rng, off) as Millis;
                (s + (exp(&mut rng, on) as Millis).max(20_000), s)
            }
        }
    };
    let mut session_start = t;
    let mut login_pending = c.kind == ClientKind::Mobile && rng.gen_bool(0.12);
    // The batch client pushes bursts of stock updates every ~5 minutes and hits its rate limit.
    let burst_every: Millis = 300_000;
    let burst_phase: Millis = rng.gen_range(0..burst_every);

    let use_token = |history: &mut Vec<TokenUse>, tok: &Arc<SimToken>, ts: Millis| match history.last_mut() {
        Some(u) if Arc::ptr_eq(&u.token, tok) => u.last_use = ts,
        _ => history.push(TokenUse { token: tok.clone(), first_use: ts, last_use: ts }),
    };

    while t < end {
        if t > active_until {
            let (on, off) = sessions(c.kind).expect("only session clients go idle");
            t = active_until + exp(&mut rng, off) as Millis;
            active_until = t + (exp(&mut rng, on) as Millis).max(20_000);
            session_start = t;
            login_pending = c.kind == ClientKind::Mobile && rng.gen_bool(0.15);
            continue;
        }
        let ip = place.at(&mut rng, c, t);
        let base = Request {
            ts: t,
            route: 0,
            token: None,
            consumer: Some(&c.consumer),
            ip,
            inner_xff: c.inner_xff,
            user_agent: &c.user_agent,
            outcome: Outcome::Normal { rate_limited: 0.002 },
            id_base: c.id_base,
            attack: None,
        };
        let mut now = t;

        if login_pending && t >= session_start {
            // The user signs in again; sometimes mistypes the password first.
            login_pending = false;
            if rng.gen_bool(0.09) {
                out.push(make_record(
                    &mut rng,
                    pop,
                    cfg,
                    effects,
                    Request { route: R_LOGIN, outcome: Outcome::Upstream(401), ..base },
                ));
                now += rng.gen_range(4_000..15_000);
            }
            out.push(make_record(
                &mut rng,
                pop,
                cfg,
                effects,
                Request { ts: now, route: R_LOGIN, outcome: Outcome::Upstream(200), ..base },
            ));
            now += rng.gen_range(300..1_500);
        }

        // Token rotation.
        if c.proactive && now >= tok.expires_at - lead {
            tok = refresh_token(&mut rng, pop, cfg, effects, fp, c, &base, &mut now, out);
        } else if now >= tok.expires_at {
            // Sent with the expired token, rejected; a concurrent call may fail too; then refresh.
            let (route, _) = pick_route(&mut rng, c);
            use_token(&mut history, &tok, now);
            out.push(make_record(
                &mut rng,
                pop,
                cfg,
                effects,
                Request { ts: now, route, token: Some(&tok), outcome: Outcome::GatewayUnauthorized, ..base },
            ));
            if rng.gen_bool(0.4) {
                let (route2, _) = pick_route(&mut rng, c);
                let t2 = now + rng.gen_range(5..400);
                out.push(make_record(
                    &mut rng,
                    pop,
                    cfg,
                    effects,
                    Request { ts: t2, route: route2, token: Some(&tok), outcome: Outcome::GatewayUnauthorized, ..base },
                ));
            }
            now += rng.gen_range(400..1_200);
            tok = refresh_token(&mut rng, pop, cfg, effects, fp, c, &base, &mut now, out);
            // and the failed call is retried below with the new token
        }
        if now >= end {
            break;
        }

        let (route, in_scope) = pick_route(&mut rng, c);
        let mut rate_limited = 0.002;
        let mut rate = c.rate;
        if c.kind == ClientKind::Batch && (now - cfg.start - burst_phase).rem_euclid(burst_every) < 40_000 {
            rate *= 3.0;
            rate_limited = 0.3;
        }
        let outcome = if in_scope { Outcome::Normal { rate_limited } } else { Outcome::GatewayForbidden };
        use_token(&mut history, &tok, now);
        out.push(make_record(
            &mut rng,
            pop,
            cfg,
            effects,
            Request { ts: now, route, token: Some(&tok), outcome, ..base },
        ));

        t = now + (exp(&mut rng, 1000.0 / (rate * diurnal(now))) as Millis).max(1);
    }
    history
}

/// A route for the client's next call; very rarely (a bug, a stale UI) one outside its scopes.
fn pick_route(rng: &mut SmallRng, c: &Client) -> (u8, bool) {
    if rng.gen_bool(0.0004) {
        let outside: Vec<u8> = ROUTES
            .iter()
            .enumerate()
            .filter(|(_, r)| r.scope.is_some_and(|s| !c.scopes.contains(&s)))
            .map(|(i, _)| i as u8)
            .collect();
        if !outside.is_empty() {
            return (outside[rng.gen_range(0..outside.len())], false);
        }
    }
    let total = c.routes.last().map_or(0.0, |x| x.1);
    let x = rng.gen::<f64>() * total;
    let i = c.routes.partition_point(|(_, acc)| *acc <= x).min(c.routes.len() - 1);
    (c.routes[i].0, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::RouteTemplater;

    #[test]
    fn route_labels_match_how_gatewatch_templates_paths() {
        let t = RouteTemplater::default();
        let mut rng = SmallRng::seed_from_u64(3);
        for r in &ROUTES {
            for _ in 0..20 {
                let p = make_path(&mut rng, r, 500_000);
                assert_eq!(t.route(Some(r.method), &p), r.route, "{p}");
            }
        }
    }

    #[test]
    fn every_scope_is_needed_by_some_route() {
        for (_, scopes) in PROFILES {
            for s in scopes {
                assert!(ROUTES.iter().any(|r| r.scope == Some(s)), "{s}");
            }
        }
    }

    #[test]
    fn arrival_follows_completion_within_a_flush_period() {
        let pop_nodes = [(1_000, 300), (2_000, 0), (3_500, 1_234)];
        let pop = Population { clients: vec![], nodes: pop_nodes, start: 0, benign_nets: Default::default() };
        for node in 0..3u8 {
            for done in [0, 299, 300, 301, 10_000, 123_456] {
                let a = pop.arrival(node, done, 0);
                assert!(a > done && a <= done + pop_nodes[node as usize].0, "{node} {done} {a}");
            }
        }
    }
}

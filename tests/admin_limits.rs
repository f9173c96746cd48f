//! The admin listener's limits over real sockets: a client that sends half a header and
//! stalls, an idle keep-alive connection and a slow handler are each cut by their
//! (test-shortened) timeout; beyond `max_connections` a new connection is refused while the
//! open ones keep working; ordinary requests and graceful shutdown still work.
//!
//! Timeouts here are 300ms; a wait for something that must happen is bounded generously
//! (5s), and the only timing asserted besides is that a timeout did not fire early.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use gatewatch::actions::config::{ActionsSettings, AdminLimits};
use gatewatch::actions::secret::Secret;
use gatewatch::admin::{router, serve, AdminState};
use gatewatch::config::GatewatchConfig;
use gatewatch::telemetry::admin::AdminListenerMetrics;
use prometheus::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const TOKEN: &str = "admin-token-0123456789";
/// Bound on any wait for something that must happen.
const SOON: Duration = Duration::from_secs(5);
/// The shortened timeout under test.
const SHORT: Duration = Duration::from_millis(300);
/// Timeouts that must not interfere with a test.
const LONG: &str = "30s";

/// The limits as `[admin]` in a config file gives them.
fn limits(header: &str, request: &str, idle: &str, max_connections: usize) -> AdminLimits {
    let text = format!(
        "[admin]\nheader_timeout = \"{header}\"\nrequest_timeout = \"{request}\"\nidle_timeout = \"{idle}\"\nmax_connections = {max_connections}\n"
    );
    let cfg: GatewatchConfig = toml::from_str(&text).unwrap();
    ActionsSettings::from_config_with_env(&cfg, &|_| None).unwrap().admin.limits
}

fn app() -> Router {
    Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                "late"
            }),
        )
        .route(
            "/half-second",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        )
        .merge(router(AdminState::new(Some(Secret::new(TOKEN)), None)))
}

struct Server {
    addr: SocketAddr,
    registry: Registry,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(limits: AdminLimits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Registry::new();
        let metrics = AdminListenerMetrics::register(&registry).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app(), limits, metrics, async move {
            let _ = stopped.await;
        }));
        Server { addr, registry, stop: Some(stop), task }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// The value of a metric line (`name` with its labels, as rendered).
    fn metric(&self, name: &str) -> f64 {
        let text = gatewatch::telemetry::render(&self.registry);
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).map(|v| v.parse().unwrap()))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }
}

/// Sends a GET on a kept-alive connection and reads the answer: status and body.
async fn get_on(s: &mut TcpStream, path: &str) -> Option<(u16, String)> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: gatewatch\r\n\r\n").as_bytes()).await.ok()?;
    read_response(s).await
}

/// One HTTP/1.1 response with a `content-length`; `None` if the connection closes first.
async fn read_response(s: &mut TcpStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head.split(' ').nth(1)?.parse().ok()?;
                return Some((status, String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned()));
            }
        }
        let n = tokio::time::timeout(SOON, s.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the server closes the connection (end of stream or reset) within `limit`;
/// anything it writes first is skipped.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut b = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut b)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn ordinary_requests_still_work_with_keep_alive_and_the_token() {
    let server = Server::start(AdminLimits::default()).await;
    let mut c = server.connect().await;
    for _ in 0..3 {
        assert_eq!(get_on(&mut c, "/ping").await, Some((200, "pong".into())), "one connection, several requests");
    }
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let no_token = http.get(format!("{base}/api/v1/revocations")).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    // With the token the request reaches the handler (no [revocation]: 503 from the handler).
    let with_token = http.get(format!("{base}/api/v1/revocations")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(with_token.status(), 503);
    assert!(with_token.text().await.unwrap().contains("revocation is not configured"));
    assert_eq!(server.metric("gatewatch_admin_connections_refused_total"), 0.0);
}

#[tokio::test]
async fn half_a_header_then_silence_is_closed_after_the_header_timeout() {
    let server = Server::start(limits("300ms", LONG, LONG, 16)).await;
    let mut stalled = server.connect().await;
    let started = Instant::now();
    stalled.write_all(b"GET /ping HTTP/1.1\r\nhost: gatew").await.unwrap();
    assert!(closed_within(&mut stalled, SOON).await, "a half-sent header must not hold the connection");
    assert!(started.elapsed() >= SHORT - Duration::from_millis(50), "closed before the header timeout");

    // A connection that sends nothing at all has the same time to send its head.
    let mut silent = server.connect().await;
    assert!(closed_within(&mut silent, SOON).await, "a silent connection must be closed");
    assert!(server.metric("gatewatch_admin_timeouts_total{kind=\"header\"}") >= 2.0);

    // A client that sends its header in time is served.
    let mut ok = server.connect().await;
    assert_eq!(get_on(&mut ok, "/ping").await, Some((200, "pong".into())));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start(limits(LONG, LONG, "300ms", 16)).await;
    let mut c = server.connect().await;
    // Requests closer together than the idle timeout keep the connection open.
    for _ in 0..4 {
        assert_eq!(get_on(&mut c, "/ping").await, Some((200, "pong".into())));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answered = Instant::now();
    assert!(closed_within(&mut c, SOON).await, "an idle keep-alive connection must be closed");
    assert!(answered.elapsed() >= SHORT - Duration::from_millis(150), "closed before the idle timeout");
    assert!(server.metric("gatewatch_admin_timeouts_total{kind=\"idle\"}") >= 1.0);
    assert_eq!(server.metric("gatewatch_admin_timeouts_total{kind=\"header\"}"), 0.0);
}

#[tokio::test]
async fn a_slow_handler_is_answered_503_after_the_request_timeout() {
    let server = Server::start(limits(LONG, "300ms", LONG, 16)).await;
    let mut c = server.connect().await;
    let (status, body) = get_on(&mut c, "/slow").await.expect("an answer, not a hang-up");
    assert_eq!(status, 503);
    assert!(body.contains("request_timeout"), "{body}");
    assert!(closed_within(&mut c, SOON).await, "the connection closes after a timed-out request");
    assert_eq!(server.metric("gatewatch_admin_timeouts_total{kind=\"request\"}"), 1.0);
}

#[tokio::test]
async fn beyond_max_connections_a_new_connection_is_refused_while_the_open_ones_work() {
    let server = Server::start(limits(LONG, LONG, LONG, 2)).await;
    let mut a = server.connect().await;
    let mut b = server.connect().await;
    assert_eq!(get_on(&mut a, "/ping").await, Some((200, "pong".into())));
    assert_eq!(get_on(&mut b, "/ping").await, Some((200, "pong".into())));
    assert_eq!(server.metric("gatewatch_admin_connections"), 2.0);

    let mut third = server.connect().await;
    // The refusal is written before the close if the socket takes it, and then says why;
    // otherwise the close comes alone.
    if let Some((status, body)) = read_response(&mut third).await {
        assert_eq!(status, 503);
        assert!(body.contains("max_connections"), "{body}");
    }
    assert!(closed_within(&mut third, SOON).await, "the third connection must be closed");
    assert_eq!(server.metric("gatewatch_admin_connections_refused_total"), 1.0);

    // The two open connections were not disturbed.
    assert_eq!(get_on(&mut a, "/ping").await, Some((200, "pong".into())));
    assert_eq!(get_on(&mut b, "/ping").await, Some((200, "pong".into())));

    // Once one closes, its slot is free again.
    drop(a);
    let deadline = Instant::now() + SOON;
    loop {
        let mut c = server.connect().await;
        if get_on(&mut c, "/ping").await == Some((200, "pong".into())) {
            break;
        }
        assert!(Instant::now() < deadline, "the slot of a closed connection was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_closes_idle_connections_and_returns() {
    let mut server = Server::start(limits(LONG, LONG, LONG, 16)).await;
    let mut idle = server.connect().await;
    assert_eq!(get_on(&mut idle, "/ping").await, Some((200, "pong".into())));
    let mut busy = server.connect().await;
    busy.write_all(b"GET /half-second HTTP/1.1\r\nhost: gatewatch\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    server.stop.take().unwrap().send(()).unwrap();
    assert!(closed_within(&mut idle, SOON).await, "an idle connection closes at shutdown");
    assert_eq!(read_response(&mut busy).await, Some((200, "done".into())), "the request in flight is answered");
    assert!(closed_within(&mut busy, SOON).await, "and its connection closed after it");
    tokio::time::timeout(SOON, &mut server.task).await.expect("serve returns once all are closed").unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err(), "the listener is closed");
}

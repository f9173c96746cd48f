//! The admin listener: the one HTTP server of `/metrics`, `/healthz`, `/readyz` and `/api/`,
//! for `gatewatch run` and `gatewatch demo` alike, with the limits of `[admin]`
//! ([`AdminLimits`]).
//!
//! Every connection is in one of three phases, and a watchdog beside it closes it when the
//! phase has lasted too long (the model of Go's `net/http`):
//! - **head**: from accept, or from the first byte after a response, until the request head
//!   is complete. Past `header_timeout` the connection is closed: a client that sends half a
//!   header and stalls (slowloris) holds its slot for that long at most.
//! - **request**: from the end of the head until the router answers, reading the body
//!   included. Past `request_timeout` the router's future is dropped and the client gets a
//!   503 with `Connection: close`. Handlers whose work must not be cut half-way (a
//!   revocation) run it in a task of their own.
//! - **idle**: a kept-alive connection waiting for its next request, or a response being
//!   written. Past `idle_timeout` without a byte written the connection is closed.
//!
//! At most `max_connections` are open at once. A connection beyond that is refused at once,
//! not queued: it gets a 503 written without waiting (if the socket takes it) and is
//! closed, so the accept loop never waits on a client and a scraper sees why it failed.
//! Refusals, timeouts and open connections are counted ([`AdminListenerMetrics`]).
//!
//! Shutdown: when the `shutdown` future completes the listener stops accepting, every
//! connection is asked to close once its response is written (idle ones close at once),
//! and [`serve`] returns when all are closed; the timeouts above bound that wait.
//!
//! HTTP/1.1 only (h2c prior knowledge, which `axum::serve` also accepted, is not served):
//! scrapers, bouncers and gateways' auth subrequests speak HTTP/1.1 on a plain socket.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::actions::config::AdminLimits;
use crate::telemetry::admin::AdminListenerMetrics;

/// Serves `router` on `listener` under `limits` until `shutdown` completes, then closes
/// every connection gracefully and returns once they are all closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: AdminLimits,
    metrics: AdminListenerMetrics,
    shutdown: impl Future<Output = ()> + Send,
) {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let conn = Connection {
                    slot,
                    router: router.clone(),
                    limits,
                    metrics: metrics.clone(),
                    stop: stopped.clone(),
                };
                tokio::spawn(conn.run(stream));
            }
            Err(_) => {
                metrics.refused.inc();
                refuse(stream);
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Each connection holds a slot until it is closed: every slot free means all are closed.
    let _ = slots.acquire_many(max as u32).await;
}

/// Errors of `accept` that concern one connection only; others (out of file descriptors)
/// are logged and retried after a pause, as `axum::serve` does.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        tracing::error!(error = %e, "admin listener: accept failed; retrying in 1s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Answers a connection beyond the cap with a 503 if the socket takes it right away, and
/// closes it.
fn refuse(stream: TcpStream) {
    const BODY: &str = "too many admin connections ([admin] max_connections)\n";
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(resp.as_bytes());
}

/// Where a connection is; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Head,
    Request,
    Idle,
}

impl Phase {
    /// The `kind` label of the timeout that ends this phase.
    fn as_str(self) -> &'static str {
        match self {
            Phase::Head => "header",
            Phase::Request => "request",
            Phase::Idle => "idle",
        }
    }
}

/// A connection's phase and since when; written by the socket wrapper and the request
/// handler, read by the watchdog.
struct Phases {
    now: Mutex<(Phase, Instant)>,
    /// Woken when the phase changes (the deadline may come earlier, or go away).
    changed: Notify,
}

impl Phases {
    fn new() -> Self {
        Phases { now: Mutex::new((Phase::Head, Instant::now())), changed: Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, (Phase, Instant)> {
        self.now.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn enter(&self, phase: Phase) {
        *self.lock() = (phase, Instant::now());
        self.changed.notify_one();
    }

    /// Bytes arrived: on an idle connection, a new request head has begun.
    fn read(&self, n: usize) {
        let mut now = self.lock();
        if n > 0 && now.0 == Phase::Idle {
            *now = (Phase::Head, Instant::now());
            drop(now);
            self.changed.notify_one();
        }
    }

    /// Bytes went out: a response write that progresses is not idle.
    fn wrote(&self, n: usize) {
        let mut now = self.lock();
        if n > 0 && now.0 == Phase::Idle {
            now.1 = Instant::now();
        }
    }

    /// When the current phase runs out; `None` while a request is handled (the handler's
    /// own timeout bounds it).
    fn deadline(&self, limits: &AdminLimits) -> Option<(Phase, Instant)> {
        let (phase, since) = *self.lock();
        match phase {
            Phase::Head => Some((phase, since + limits.header_timeout)),
            Phase::Idle => Some((phase, since + limits.idle_timeout)),
            Phase::Request => None,
        }
    }
}

/// One accepted connection and what it needs.
struct Connection {
    /// Released when the connection is closed.
    slot: OwnedSemaphorePermit,
    router: Router,
    limits: AdminLimits,
    metrics: AdminListenerMetrics,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let Connection { slot, router, limits, metrics, mut stop } = self;
        let _slot = slot;
        metrics.connections.inc();
        let _open = scopeguard(|| metrics.connections.dec());
        let phases = Arc::new(Phases::new());
        let io = TokioIo::new(Watched { io: stream, phases: phases.clone() });
        let handler = Handler {
            router,
            phases: phases.clone(),
            request_timeout: limits.request_timeout,
            metrics: metrics.clone(),
        };
        // The watchdog below does hyper's header timeout (which also runs while idle).
        let conn = hyper::server::conn::http1::Builder::new()
            .header_read_timeout(None)
            .keep_alive(true)
            .serve_connection(io, handler);
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            let deadline = phases.deadline(&limits);
            let expired = async {
                match deadline {
                    Some((_, at)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "admin connection ended with an error");
                    }
                    return;
                }
                _ = expired => {
                    // Still the same phase, not extended by a write in the meantime?
                    if let Some((phase, at)) = phases.deadline(&limits) {
                        if at <= Instant::now() {
                            metrics.timeouts.with_label_values(&[phase.as_str()]).inc();
                            tracing::debug!(timeout = phase.as_str(), "admin connection closed by its timeout");
                            return;
                        }
                    }
                }
                _ = phases.changed.notified() => {}
                _ = stop.changed(), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Hands each request to the router under `request_timeout`.
#[derive(Clone)]
struct Handler {
    router: Router,
    phases: Arc<Phases>,
    request_timeout: Duration,
    metrics: AdminListenerMetrics,
}

impl hyper::service::Service<Request<Incoming>> for Handler {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.phases.enter(Phase::Request);
        // Back to idle when the answer is ready, or when hyper drops the request.
        let phases = self.phases.clone();
        let done = scopeguard(move || phases.enter(Phase::Idle));
        let router = self.router.clone();
        let limit = self.request_timeout;
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let _done = done;
            match tokio::time::timeout(limit, router.oneshot(req)).await {
                Ok(answer) => answer,
                Err(_) => {
                    metrics.timeouts.with_label_values(&[Phase::Request.as_str()]).inc();
                    Ok(request_timed_out())
                }
            }
        })
    }
}

fn request_timed_out() -> Response<Body> {
    let mut r = Response::new(Body::from(
        "{\"error\":\"the request took longer than the admin request timeout ([admin] request_timeout)\"}",
    ));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // The body may be half read: this connection cannot carry another request.
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// The socket, telling [`Phases`] when bytes come and go.
struct Watched {
    io: TcpStream,
    phases: Arc<Phases>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.phases.read(buf.filled().len() - before);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.phases.wrote(n);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            this.phases.wrote(n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdminLimits {
        AdminLimits {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4,
        }
    }

    #[tokio::test]
    async fn phases_follow_bytes_and_requests() {
        let p = Phases::new();
        let l = limits();
        let (phase, at) = p.deadline(&l).unwrap();
        assert_eq!(phase, Phase::Head, "a new connection must send its head first");
        assert!(at > Instant::now() + Duration::from_secs(9));
        p.enter(Phase::Request);
        assert_eq!(p.deadline(&l), None, "the handler's own timeout bounds a request");
        p.read(10);
        assert_eq!(p.deadline(&l), None, "bytes during a request do not start a head");
        p.enter(Phase::Idle);
        assert_eq!(p.deadline(&l).unwrap().0, Phase::Idle);
        p.read(0);
        assert_eq!(p.deadline(&l).unwrap().0, Phase::Idle, "no byte, no new head");
        p.read(1);
        assert_eq!(p.deadline(&l).unwrap().0, Phase::Head);
    }
}

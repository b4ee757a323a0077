//! The one serve loop of both HTTP services, on hyper 1. axum's own `serve` has neither a
//! header-read timeout nor a connection cap, so a handful of slow or idle clients could hold
//! every file descriptor; this loop bounds each stage of a connection:
//!
//! - accepting: at most [`Limits::max_connections`] connections at once, never more than the
//!   file-descriptor limit less a reserve; at the cap it stops accepting until one ends. An
//!   accept error (EMFILE, ENFILE, ECONNABORTED, …) is logged at most every few seconds and
//!   followed by a short, growing pause, so the loop neither dies nor spins;
//! - TLS: a handshake must finish within [`Limits::tls_handshake_timeout`];
//! - the request head: hyper's header-read timeout, counted from when the server starts
//!   waiting for a head (a fresh connection, or a kept-alive one after its last answer);
//! - the whole request (body and handling): [`request_limits`], a layer inside each router, so
//!   the answer is the service's own JSON error and leaves through the signing layer;
//! - idleness: a connection with no request in progress on which no byte moves for
//!   [`Limits::idle_timeout`] is closed (an idle keep-alive, or a client that stopped reading
//!   its answer);
//! - shutdown: on the signal the loop stops accepting, lets requests in progress finish, and
//!   returns after [`Limits::shutdown_timeout`] at the latest, whatever is still open.
//!
//! Handlers still get `ConnectInfo<SocketAddr>` (the login throttle keys on it).
//!
//! Header names leave in their canonical capitalisation on HTTP/1.1 (`Content-Type`,
//! `Licence-QueryID`, …), as the original server writes them: monitoring clients exist that
//! match them case-sensitively ([`canonical_case`]).

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, Extensions, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

pub use super::allowed_hosts::AllowedHosts;

/// What bounds a service's connections and requests. Both services use the same defaults:
/// the host reads them from `[http]`, the centre from its `--…` flags.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time to receive a request's head, from when the server starts waiting for it.
    pub header_timeout: Duration,
    /// Time to receive the body and produce the answer, after the head.
    pub request_timeout: Duration,
    /// A connection with no request in progress and no byte moving is closed after this.
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// Connections at once (lowered to the file-descriptor limit less `fd_reserve`).
    pub max_connections: usize,
    /// File descriptors kept for everything but connections: data files, the database, USB.
    pub fd_reserve: u64,
    /// How long shutdown waits for requests in progress.
    pub shutdown_timeout: Duration,
}

pub const DEFAULT_HEADER_TIMEOUT: f64 = 10.0;
pub const DEFAULT_REQUEST_TIMEOUT: f64 = 30.0;
pub const DEFAULT_IDLE_TIMEOUT: f64 = 5.0;
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: f64 = 10.0;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_FD_RESERVE: u64 = 64;
pub const DEFAULT_SHUTDOWN_TIMEOUT: f64 = 5.0;

/// hyper's read buffer per connection, and the largest request head (request line and
/// headers; a bigger one gets hyper's own 431). hyper's default buffer (about 400 KiB) times
/// `max_connections` would let clients sending big heads pin gigabytes; heads of real clients
/// are a few hundred bytes, and bodies are streamed through the buffer, not held in it. The
/// buffer bound alone is approximate (one read may overshoot it), so the head has its own.
pub const MAX_READ_BUFFER: usize = 64 * 1024;

/// Shortest and longest accepted value of every timeout setting, in seconds.
pub const MIN_SECONDS: f64 = 0.05;
pub const MAX_SECONDS: f64 = 3600.0;

impl Default for Limits {
    fn default() -> Self {
        let s = Duration::from_secs_f64;
        Limits {
            header_timeout: s(DEFAULT_HEADER_TIMEOUT),
            request_timeout: s(DEFAULT_REQUEST_TIMEOUT),
            idle_timeout: s(DEFAULT_IDLE_TIMEOUT),
            tls_handshake_timeout: s(DEFAULT_TLS_HANDSHAKE_TIMEOUT),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            fd_reserve: DEFAULT_FD_RESERVE,
            shutdown_timeout: s(DEFAULT_SHUTDOWN_TIMEOUT),
        }
    }
}

/// A timeout setting as a duration: finite and within [`MIN_SECONDS`]..=[`MAX_SECONDS`]; the
/// error names the setting.
pub fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    if value.is_finite() && (MIN_SECONDS..=MAX_SECONDS).contains(&value) {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!(
            "{name} = {value}: must be a number of seconds from {MIN_SECONDS} to {MAX_SECONDS}"
        ))
    }
}

/// The soft RLIMIT_NOFILE of this process (`u64::MAX` when unlimited or unreadable).
pub fn nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own and reads nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    if !ok || r.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    r.rlim_cur
}

/// Connections served at once: the configured number, but never more than the descriptors
/// left after the reserve (and at least one).
pub fn connection_cap(limits: &Limits) -> usize {
    let room = nofile_limit().saturating_sub(limits.fd_reserve).max(1);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    limits.max_connections.clamp(1, room.max(1))
}

/// What bounds a request inside a service's router: the whole-request timeout, if given the
/// body size, and the names the service answers to in `Host`.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    pub timeout: Duration,
    pub max_body: Option<usize>,
    /// The DNS-rebinding guard ([`AllowedHosts`]); `Default` answers any name.
    pub hosts: AllowedHosts,
}

/// Adds the request limits and the `Host` check to a router, answering refusals with
/// `error`, the service's JSON error for a status. Call it before adding the signing layer,
/// so that the refusals are signed like any answer.
pub fn request_limits(
    router: Router,
    limits: RequestLimits,
    error: fn(StatusCode, String) -> Response,
) -> Router {
    let RequestLimits {
        timeout,
        max_body,
        hosts,
    } = limits;
    let router = router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| limit_request(timeout, max_body, error, req, next),
    ));
    let router = match max_body {
        // Bodies sent without a length (chunked) stop at the same size in the extractors.
        Some(max) => router.layer(axum::extract::DefaultBodyLimit::max(max)),
        None => router,
    };
    if hosts.is_any() {
        return router;
    }
    // Outermost of these: a request for a name the service does not answer to goes no further.
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            super::allowed_hosts::check(hosts.clone(), error, req, next)
        },
    ))
}

async fn limit_request(
    timeout: Duration,
    max_body: Option<usize>,
    error: fn(StatusCode, String) -> Response,
    req: Request,
    next: Next,
) -> Response {
    if let Some(max) = max_body {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            let mut r = error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {max} bytes"),
            );
            // The rest of the body is not read: the connection cannot carry another request.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    }
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            let mut r = error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request was not received and answered within {} s",
                    timeout.as_secs_f64()
                ),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

/// Logs an error at most once per interval, counting what it left out.
#[derive(Debug)]
pub struct RateLimitedLog {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    pub fn new(every: Duration) -> Self {
        RateLimitedLog {
            every,
            last: None,
            suppressed: 0,
        }
    }

    pub fn log(&mut self, what: impl FnOnce(u64)) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            self.suppressed += 1;
            return;
        }
        what(self.suppressed);
        self.suppressed = 0;
        self.last = Some(now);
    }
}

/// Milliseconds on a process-wide monotonic clock.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What the idle watch of one connection looks at: when a byte last moved, and how many
/// requests are being handled.
#[derive(Default)]
struct Activity {
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }
}

/// Marks a request in progress for as long as it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: Arc<Activity>) -> Busy {
        a.busy.fetch_add(1, Ordering::Relaxed);
        Busy(a)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's stream that notes every byte moved.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Resolves once the connection has had no request in progress and no byte moving for
/// `idle`.
async fn idle_expired(activity: Arc<Activity>, idle: Duration) {
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
    loop {
        let since = now_ms().saturating_sub(activity.last_ms.load(Ordering::Relaxed));
        let busy = activity.busy.load(Ordering::Relaxed) > 0;
        if !busy && since >= idle_ms {
            return;
        }
        let wait = if busy { idle_ms } else { idle_ms - since };
        tokio::time::sleep(Duration::from_millis(wait.max(10))).await;
    }
}

/// The TLS acceptor, if the service speaks HTTPS.
pub type Tls = Option<tokio_rustls::TlsAcceptor>;

/// Serves `router` on `listener` until `shutdown` resolves, then drains for at most
/// `limits.shutdown_timeout`. Returns only then: accept errors are survived.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Tls,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let cap = connection_cap(&limits);
    if cap < limits.max_connections {
        tracing::info!(
            "serving at most {cap} connections at once (RLIMIT_NOFILE {} less a reserve of {})",
            nofile_limit(),
            limits.fd_reserve
        );
    }
    let permits = Arc::new(Semaphore::new(cap));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_READ_BUFFER)
        .max_header_size(MAX_READ_BUFFER)
        .title_case_headers(true)
        .keep_alive(true);
    if CANONICAL_CASE.get().is_none() {
        let _ = CANONICAL_CASE.set(canonical_case().await);
    }
    let http = Arc::new(http);
    let mut accept_log = RateLimitedLog::new(Duration::from_secs(5));
    let mut cap_log = RateLimitedLog::new(Duration::from_secs(60));
    let mut backoff = Duration::ZERO;
    tokio::pin!(shutdown);
    loop {
        if permits.available_permits() == 0 {
            cap_log.log(|_| {
                tracing::warn!(
                    "{cap} connections open: not accepting more until one ends (max_connections, fd_reserve)"
                )
            });
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::ZERO;
                a
            }
            Err(e) => {
                // The descriptor table is full, or a client gave up before we took it: not
                // a reason to stop serving, nor to retry at once (EMFILE stays "ready").
                backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                accept_log.log(|suppressed| {
                    tracing::warn!(
                        "accepting a connection failed: {e} ({suppressed} more since the last report); retrying in {} ms",
                        backoff.as_millis()
                    )
                });
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let watcher = graceful.watcher();
        let http = http.clone();
        let router = router.clone();
        let tls = tls.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let activity = Arc::new(Activity::default());
            activity.touch();
            match tls {
                None => {
                    connection(stream, peer, &http, router, watcher, activity, &limits).await;
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream))
                            .await;
                    match handshake {
                        Ok(Ok(s)) => {
                            connection(s, peer, &http, router, watcher, activity, &limits).await
                        }
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        "stopped accepting; waiting up to {} s for {open} open connection(s)",
        limits.shutdown_timeout.as_secs_f64()
    );
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown timeout are dropped");
    }
}

/// Serves one connection (already through TLS, if any) until it ends, idles out, or the
/// shutdown drains it.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    http: &hyper::server::conn::http1::Builder,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
    activity: Arc<Activity>,
    limits: &Limits,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let busy_from = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let busy = Busy::new(busy_from.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            let r = router.oneshot(req.map(Body::new)).await.map(|mut r| {
                if let Some(case) = CANONICAL_CASE.get() {
                    r.extensions_mut().extend(case.clone());
                }
                r
            });
            drop(busy);
            r
        }
    });
    let conn = watcher.watch(http.serve_connection(io, service));
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!("connection from {peer}: {e}");
            }
        }
        () = idle_expired(activity, limits.idle_timeout) => {
            tracing::debug!("connection from {peer} idle for {:?}: closed", limits.idle_timeout);
        }
    }
}

/// Header names whose canonical spelling is not hyper's title case (`Licence-Queryid`,
/// `Www-Authenticate`); every other name leaves title-cased (`Content-Type`).
pub const CANONICAL_NAMES: [&str; 7] = [
    "Licence-QueryID",
    "Licence-QuerySignature",
    "Licence-ServerVersion",
    "Licence-Signature",
    "WWW-Authenticate",
    "ETag",
    "Content-MD5",
];

/// [`canonical_case`], made once per process by the first [`serve`].
static CANONICAL_CASE: OnceLock<Extensions> = OnceLock::new();

/// A response extension that makes hyper write [`CANONICAL_NAMES`] as spelt there.
///
/// hyper 1 writes a response's header names from its private `HeaderCaseMap` extension when
/// one is present (what a proxy uses to forward names as it received them), else title-cased
/// with `title_case_headers`. The map's type is private, so it is made the way a proxy gets it:
/// hyper parses, in memory, a request carrying these names with `preserve_header_case` on, and
/// the request's extensions are kept and copied onto every answer. If that ever fails (a hyper
/// that stops recording the case), answers still go out title-cased.
pub async fn canonical_case() -> Extensions {
    use tokio::io::AsyncWriteExt;
    let (mut client, server) = tokio::io::duplex(4096);
    let (tx, rx) = tokio::sync::oneshot::channel::<Extensions>();
    let tx = std::sync::Mutex::new(Some(tx));
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(req.extensions().clone());
        }
        async { Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new())) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.preserve_header_case(true).keep_alive(false);
    let conn = http.serve_connection(TokioIo::new(server), service);
    let mut head = String::from("GET / HTTP/1.1\r\nHost: localhost\r\n");
    for name in CANONICAL_NAMES {
        head.push_str(name);
        head.push_str(": x\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    let send = async move {
        let _ = client.write_all(head.as_bytes()).await;
        // Drain the answer so the connection can finish.
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut client, &mut sink).await;
    };
    let made = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = tokio::join!(conn, send);
        rx.await.ok()
    })
    .await
    .ok()
    .flatten();
    made.unwrap_or_else(|| {
        tracing::warn!("header names go out title-cased only (Licence-Queryid)");
        Extensions::new()
    })
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C), and says so in the log.
pub async fn shutdown_signal() {
    stop_requested().await;
    tracing::info!("shutting down");
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C), silently: for whatever else must wind down when
/// the server is asked to stop (the console's open event streams).
pub async fn stop_requested() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Binds `addr` for a service: the error names the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_must_be_sane_seconds() {
        assert_eq!(seconds("x", 1.5), Ok(Duration::from_millis(1500)));
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0, 0.01, 3601.0] {
            let e = seconds("[http] header_timeout_seconds", bad).expect_err("refused");
            assert!(e.contains("header_timeout_seconds"), "{e}");
        }
    }

    #[test]
    fn the_cap_stays_below_the_descriptor_limit() {
        let nofile = nofile_limit();
        let mut l = Limits {
            max_connections: usize::MAX,
            ..Limits::default()
        };
        let cap = connection_cap(&l) as u64;
        assert!(cap <= nofile.saturating_sub(l.fd_reserve).max(1));
        l.max_connections = 3;
        assert_eq!(connection_cap(&l), 3);
        l.max_connections = 0;
        assert_eq!(connection_cap(&l), 1);
        l.fd_reserve = u64::MAX;
        l.max_connections = 10;
        assert_eq!(connection_cap(&l), 1);
    }
}

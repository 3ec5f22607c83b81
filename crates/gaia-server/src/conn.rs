//! The accept loop of [`crate::serve`]: HTTP/1.1 connections with a bound on how long a client
//! may take to send a request's headers, how long a connection may sit idle between requests,
//! and how many connections are open at once.
//!
//! `axum::serve` has none of these, so a client that opens connections and sends nothing (or
//! half a request) could hold them for minutes until the process ran out of file descriptors
//! and even `/healthz` failed. Here:
//!
//! - a connection waiting for a request's headers is closed `header_read_timeout` after it
//!   opened or after the first byte of the request arrived; an idle keep-alive connection is
//!   closed `idle_timeout` after its last response; a connection with a request in progress
//!   (a long-poll, the stream) is never closed by either;
//! - at most `max_connections` connections are served; `connection_reserve` more are accepted
//!   for health checks only (anything else gets a 503 problem), and beyond that new
//!   connections wait in the listen backlog;
//! - running out of file descriptors on accept backs off instead of spinning or failing;
//! - the empty responses hyper itself sends for requests it cannot parse (400, 414, 431) are
//!   sent as problem documents like every other error.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::problem::ApiError;

/// The connection limits of a server; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub connection_reserve: usize,
}

/// Paths a connection over the limit may still ask for.
const HEALTH: [&str; 2] = ["/healthz", "/readyz"];

/// Accepts and serves connections until `stop` is cancelled, then lets open requests finish
/// within `drain`.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    drain: Duration,
) {
    let normal = Arc::new(Semaphore::new(limits.max_connections));
    let reserve = Arc::new(Semaphore::new(limits.connection_reserve));
    let graceful = GracefulShutdown::new();
    loop {
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = slot(&normal, &reserve) => slot,
        };
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let (stream, peer) = stream;
        serve_connection(stream, peer, app.clone(), slot, limits, &graceful);
    }
    drop(listener);
    // Idle connections close now; those with a request in progress finish it (streams and
    // long-polls end on the cancelled token).
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {drain:?}: closing them");
    }
}

/// A place for one connection; `overflow` when it is one of the health-check reserve.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    overflow: bool,
}

/// Waits for a free place: an ordinary one first, else one of the reserve.
async fn slot(normal: &Arc<Semaphore>, reserve: &Arc<Semaphore>) -> Slot {
    loop {
        if let Ok(p) = Arc::clone(normal).try_acquire_owned() {
            return Slot {
                _permit: p,
                overflow: false,
            };
        }
        if let Ok(p) = Arc::clone(reserve).try_acquire_owned() {
            return Slot {
                _permit: p,
                overflow: true,
            };
        }
        // Either may free up first; take whichever does (the semaphores are never closed).
        tokio::select! {
            p = Arc::clone(normal).acquire_owned() => {
                if let Ok(p) = p {
                    return Slot { _permit: p, overflow: false };
                }
            }
            p = Arc::clone(reserve).acquire_owned() => {
                if let Ok(p) = p {
                    return Slot { _permit: p, overflow: true };
                }
            }
        }
    }
}

/// Accept errors are about one connection or about the process's resources: neither should
/// stop the server. Out of descriptors or memory, wait a little for some to be released.
async fn accept_failed(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e, "accept failed; backing off");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn serve_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    app: Router,
    slot: Slot,
    limits: Limits,
    graceful: &GracefulShutdown,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
        rewrite: None,
    });
    let overflow = slot.overflow;
    let tracked = Arc::clone(&activity);
    // The router is shared, not rebuilt, per connection (as `into_make_service` does):
    // converting it per connection cost about 1.3 MB for each open connection.
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let guard = InFlight::begin(Arc::clone(&tracked));
        // Handlers see the peer as axum's `ConnectInfo` (refusals are counted per source).
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let app = app.clone();
        async move {
            let res = if overflow && !HEALTH.contains(&req.uri().path()) {
                busy()
            } else {
                match app.oneshot(req.map(Body::new)).await {
                    Ok(res) => res,
                    Err(never) => match never {},
                }
            };
            Ok::<_, Infallible>(res.map(|inner| Tracked {
                inner,
                _guard: guard,
            }))
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Enforced by `watchdog`, which also knows when a connection is idle.
        .header_read_timeout(None)
        // A reserve place is for one health check, then it is free again.
        .keep_alive(!overflow);
    let conn = graceful.watch(builder.serve_connection(io, service));
    tokio::spawn(async move {
        tokio::select! {
            served = conn => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            () = watchdog(&activity, limits) => {
                tracing::debug!("closed a connection that was idle or slow to send its request");
            }
        }
        drop(slot);
    });
}

/// The answer to anything but a health check on a reserve place.
fn busy() -> Response<Body> {
    let mut res = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "the server is at its connection limit; retry",
    )
    .into_response();
    res.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    res
}

/// What a connection is doing, as far as its time limits care.
#[derive(Debug)]
struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Clone, Copy)]
struct State {
    /// Requests whose response has not been completely sent.
    in_flight: usize,
    /// With no request in flight: since when the connection has been waiting for a request's
    /// headers (`Head`) or sitting idle after a response (`Idle`).
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head(Instant),
    Idle(Instant),
}

impl Activity {
    fn new() -> Self {
        Self {
            // A new connection owes its first request's headers from the start.
            state: Mutex::new(State {
                in_flight: 0,
                phase: Phase::Head(Instant::now()),
            }),
            changed: Notify::new(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut State) -> bool) {
        let changed = {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut s)
        };
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// Bytes arrived: after an idle spell they start the next request's headers.
    fn read_some(&self) {
        self.update(|s| match s.phase {
            Phase::Idle(_) if s.in_flight == 0 => {
                s.phase = Phase::Head(Instant::now());
                true
            }
            _ => false,
        });
    }

    /// When the connection is to be closed, as things stand; `None` while a request is in
    /// progress.
    fn deadline(&self, limits: Limits) -> Option<Instant> {
        let s = *self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.in_flight > 0 {
            return None;
        }
        Some(match s.phase {
            Phase::Head(since) => since + limits.header_read_timeout,
            Phase::Idle(since) => since + limits.idle_timeout,
        })
    }
}

/// Completes when the connection has waited too long for a request's headers or sat idle too
/// long; never while a request is in progress.
async fn watchdog(activity: &Activity, limits: Limits) {
    loop {
        let changed = activity.changed.notified();
        tokio::pin!(changed);
        // Registered before the state is read, so no change between the two is missed.
        changed.as_mut().enable();
        match activity.deadline(limits) {
            None => changed.await,
            Some(at) if Instant::now() >= at => return,
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = changed => {}
                }
            }
        }
    }
}

/// One request in progress: from the service being called until its response body has been
/// sent (or dropped).
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.update(|s| {
            s.in_flight += 1;
            true
        });
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.in_flight == 0 {
                s.phase = Phase::Idle(Instant::now());
            }
            true
        });
    }
}

/// A response body that keeps its request counted as in flight until it is dropped.
#[derive(Debug)]
struct Tracked {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, telling [`Activity`] when bytes arrive, and replacing hyper's own empty error
/// responses with problem documents.
#[derive(Debug)]
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    /// A replacement being written: its bytes, how many are written, and the length of the
    /// buffer it replaces (reported as written once it is all out).
    rewrite: Option<(Vec<u8>, usize, usize)>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read_some();
        }
        res
    }
}

impl AsyncWrite for Watched {
    // Not vectored: hyper then hands over each message head in one buffer, which is what
    // `canned_problem` recognises.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.rewrite.is_none() {
            if let Some(bytes) = canned_problem(buf) {
                this.rewrite = Some((bytes, 0, buf.len()));
            }
        }
        if let Some((bytes, written, replaces)) = &mut this.rewrite {
            while *written < bytes.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
            let replaces = *replaces;
            this.rewrite = None;
            return Poll::Ready(Ok(replaces));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// When `buf` is one of the responses hyper writes by itself for a request it could not parse
/// (a head with `content-length: 0` and no content type; every response of the router carries
/// a body and its type), the same status as a problem document.
fn canned_problem(buf: &[u8]) -> Option<Vec<u8>> {
    let (status, slug, detail) = if buf.starts_with(b"HTTP/1.1 414 ") {
        (
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            "the request's URI is longer than the server accepts",
        )
    } else if buf.starts_with(b"HTTP/1.1 431 ") {
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers-too-large",
            "the request's headers are larger than the server accepts",
        )
    } else if buf.starts_with(b"HTTP/1.1 400 ") {
        (
            StatusCode::BAD_REQUEST,
            "bad-request",
            "the request is not valid HTTP/1.1",
        )
    } else {
        return None;
    };
    let head = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    if !head.ends_with("\r\n\r\n")
        || !head.contains("\r\ncontent-length: 0\r\n")
        || head.contains("\r\ncontent-type:")
    {
        return None;
    }
    let body = serde_json::to_vec(&ApiError::new(status, slug, detail).problem()).ok()?;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
        crate::doc::PROBLEM_JSON,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_error_heads_become_problems() {
        let head = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(canned_problem(head).expect("rewritten")).unwrap_or_default();
        assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{out}");
        assert!(out.contains("content-type: application/problem+json\r\n"));
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert!(out.contains(&format!("content-length: {}\r\n", body.len())));
        let p: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(p["status"], 414, "{body}");
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(canned_problem(head).is_some());
    }

    #[test]
    fn router_responses_are_left_alone() {
        for buf in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 80\r\n\r\n{",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\nx",
            b"data: {}\n\n",
        ] {
            assert!(canned_problem(buf).is_none(), "{}", String::from_utf8_lossy(buf));
        }
    }
}

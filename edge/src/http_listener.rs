//! HTTP connections: accepted under their own limit, timed out when idle or slow, and never
//! able to crowd out native clients or the health checks.
//!
//! Every HTTP connection holds a process-wide connection permit (the one native clients use)
//! and an HTTP permit; HTTP permits are a fraction of the process limit, so HTTP can never
//! take the slots native clients need. When HTTP permits run out, a few more connections are
//! accepted into a reserve that serves only `/healthz` and `/readyz`, with a short header
//! deadline, so a flood of idle sockets cannot blind a load balancer. Beyond that, a new
//! connection gets a 503 and is closed.
//!
//! Headers must arrive within `timing.http_header_timeout_ms` (slowloris), and a connection
//! with no traffic for `timing.http_idle_timeout_ms` is closed. A WebSocket upgrade leaves this
//! module: the upgraded connection is a client connection with its own heartbeat.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tracing::warn;

use crate::hub::{Hub, now_ms};

/// Connections accepted past the HTTP limit, for health checks only.
const HEALTH_RESERVE: usize = 16;
/// How long a reserve connection may take to send its request headers.
const RESERVE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Paths a reserve connection may ask for.
const HEALTH_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// What an HTTP connection holds while it lives.
struct Slot {
    _process: OwnedSemaphorePermit,
    _http: OwnedSemaphorePermit,
    /// Accepted past the HTTP limit: health checks only.
    reserve: bool,
}

/// Accepts HTTP connections until `shutdown` turns true, then lets the open ones finish
/// their requests (at most `timing.drain_ms`).
pub async fn serve(
    hub: Arc<Hub>,
    listener: TcpListener,
    app: axum::Router,
    process: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let http = Arc::new(Semaphore::new(hub.config.limits.http_connections()));
    let reserve = Arc::new(Semaphore::new(HEALTH_RESERVE));
    let mut connections = JoinSet::new();
    let mut backoff_ms = 1;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff_ms = 1;
                accepted
            }
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                warn!(%error, backoff_ms, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(1_000);
                continue;
            }
        };
        let Some(slot) = admit(&process, &http, &reserve) else {
            hub.metrics.http_refused.inc();
            // Under a flood, beyond the refusals under way, the socket is just closed.
            hub.refuse(refuse(stream), || {});
            continue;
        };
        connections.spawn(connection(
            hub.clone(),
            stream,
            peer,
            app.clone(),
            slot,
            shutdown.clone(),
        ));
    }
    let drain = Duration::from_millis(hub.config.timing.drain_ms);
    let _ = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

/// Takes a process permit and an HTTP (or reserve) permit, or refuses.
fn admit(
    process: &Arc<Semaphore>,
    http: &Arc<Semaphore>,
    reserve: &Arc<Semaphore>,
) -> Option<Slot> {
    let process = process.clone().try_acquire_owned().ok()?;
    let (permit, reserve) = match http.clone().try_acquire_owned() {
        Ok(permit) => (permit, false),
        Err(_) => (reserve.clone().try_acquire_owned().ok()?, true),
    };
    Some(Slot {
        _process: process,
        _http: permit,
        reserve,
    })
}

/// Answers 503 to a connection there is no room for, then closes it.
async fn refuse(mut stream: TcpStream) {
    let body = r#"{"error":"UNAVAILABLE","message":"too many HTTP connections"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Read what the client sent before closing: closing with unread bytes would reset the
    // connection and the client might never see the 503.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

/// Serves one connection under its deadlines.
async fn connection(
    hub: Arc<Hub>,
    stream: TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    slot: Slot,
    mut shutdown: watch::Receiver<bool>,
) {
    let gauge = hub.metrics.connections.with_label_values(&["http"]);
    gauge.inc();
    let timing = &hub.config.timing;
    let header_timeout = if slot.reserve {
        RESERVE_HEADER_TIMEOUT
    } else {
        Duration::from_millis(timing.http_header_timeout_ms)
    };
    let idle_ms = timing.http_idle_timeout_ms;
    let activity = Arc::new(AtomicU64::new(now_ms()));
    let io = TokioIo::new(Tracked {
        stream,
        activity: activity.clone(),
    });
    let reserve = slot.reserve;
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let app = app.clone();
        async move {
            if reserve && !HEALTH_PATHS.contains(&request.uri().path()) {
                return Ok::<_, std::convert::Infallible>(busy());
            }
            request.extensions_mut().insert(ConnectInfo(peer));
            app.oneshot(request.map(Body::new)).await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let idle = now_ms().saturating_sub(activity.load(Ordering::Relaxed));
        if idle >= idle_ms {
            break;
        }
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = tokio::time::sleep(Duration::from_millis(idle_ms - idle)) => {}
            _ = shutdown.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    gauge.dec();
    drop(slot);
}

/// The answer to anything but a health check on a reserve connection.
fn busy() -> Response<Body> {
    let body = r#"{"error":"UNAVAILABLE","message":"too many HTTP connections"}"#;
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::RETRY_AFTER, "1")
        .header(header::CONNECTION, "close")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// A TCP stream that records when bytes last moved, for the idle deadline.
struct Tracked {
    stream: TcpStream,
    activity: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        self.activity.store(now_ms(), Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        poll
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(written)) if written > 0) {
            self.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

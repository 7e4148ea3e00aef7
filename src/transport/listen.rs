//! The listener: accepts TCP connections and serves HTTP/1.1 on each, with deadlines.
//!
//! Every TCP connection that is not (yet) a WebSocket — an HTTP request, a handshake in
//! progress, an idle keep-alive connection — holds one of `server.max_pending_connections`
//! permits; past them new connections are closed at accept. Each must send a request's headers
//! within `server.header_timeout_ms`, which also ends idle keep-alive connections, so half-sent
//! requests cannot pile up. A WebSocket gives its permit back once upgraded (from then on
//! `server.max_connections` counts it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

use crate::telemetry::metrics;

/// How the listener bounds connections that are not WebSockets.
#[derive(Debug, Clone, Copy)]
pub struct ListenLimits {
    /// Longest wait for a request's headers (and for the next request on a kept-alive one).
    pub header_timeout: Duration,
    /// Non-WebSocket connections held at once.
    pub max_pending: usize,
}

/// Largest buffer for one request's head (request line and headers, a token included).
pub const READ_BUFFER_MAX: usize = 64 * 1024;

/// Longest wait for open HTTP connections to finish after the listener stops.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Serves `app` on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, app: Router, limits: ListenLimits, stop: CancellationToken) {
    let pending = Arc::new(Semaphore::new(limits.max_pending));
    let conns = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            metrics().refused.with_label_values(&["pending"]).inc();
            drop(stream);
            continue;
        };
        // TCP_NODELAY stays off: with Nagle, the small frames a fan-out writes to one socket in
        // quick succession share packets (measured: TCP_NODELAY cost a third of the latency at
        // half load, docs/performance.md).
        let (app, stop) = (app.clone(), stop.clone());
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let mut app = app.clone();
                async move { app.call(req.map(Body::new)).await }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(READ_BUFFER_MAX)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(STOP_GRACE, conn).await;
                }
            }
            // Upgraded (the WebSocket lives on in its own task), answered, or timed out.
            drop(permit);
        });
    }
    conns.close();
    let _ = tokio::time::timeout(STOP_GRACE, conns.wait()).await;
}

//! Transport: the HTTP listener, the `/ws` upgrade and the per-connection session loop.
//!
//! Owns sockets, handshakes (subprotocol, credentials, connection limit), heartbeats, frame
//! limits, the bounded outbound queue's writer and close codes. It knows nothing of rooms or
//! channels: frames go to `commands::Session`, and frames to send come from the connection's
//! outbox. HTTP endpoints live in `http.rs`.

mod admission;
mod http;
mod listen;
mod ws;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::commands::Node;
use crate::protocol::{ErrorBody, ErrorCode};
use crate::telemetry::metrics;

pub use listen::ListenLimits;

use admission::Gate;

/// What every handler shares.
#[derive(Clone)]
pub struct Shared {
    /// The node.
    pub node: Arc<Node>,
    /// Cancelled when the node drains: sessions send `draining` and close with 1012.
    pub drain: CancellationToken,
    /// Tracks every connection task.
    pub tracker: TaskTracker,
    /// Connections admitted (counted at the handshake, released when the socket is gone).
    admitted: Arc<AtomicUsize>,
    /// Origins, per-IP handshake rate, per-user connections.
    gate: Arc<Gate>,
}

impl Shared {
    /// The state of a node's handlers.
    pub fn new(node: Arc<Node>, drain: CancellationToken, tracker: TaskTracker) -> Self {
        let gate = Arc::new(Gate::new(&node.config));
        Self { node, drain, tracker, admitted: Arc::new(AtomicUsize::new(0)), gate }
    }
}

/// Serves the routes on `listener` until `stop` is cancelled.
pub async fn serve(listener: tokio::net::TcpListener, shared: Shared, stop: CancellationToken) {
    let s = &shared.node.config.server;
    let limits = ListenLimits {
        header_timeout: std::time::Duration::from_millis(s.header_timeout_ms),
        max_pending: s.max_pending_connections,
    };
    listen::serve(listener, routes(shared), limits, stop).await;
}

/// The HTTP + WebSocket routes.
pub fn routes(shared: Shared) -> Router {
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/version", get(http::version))
        .route("/metrics", get(http::metrics_text))
        .route("/v1/publish", post(http::publish))
        .route("/v1/history", get(http::history))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(shared)
}

/// An error answered over HTTP: `{"error":{…}}` with the code's status.
pub fn http_error(e: ErrorBody) -> Response {
    metrics().errors.with_label_values(&[e.code.as_str()]).inc();
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "error": e }))).into_response()
}

/// A handshake refusal with an explicit status.
fn refuse(status: StatusCode, code: ErrorCode, message: &str, reason: &str) -> Response {
    metrics().refused.with_label_values(&[reason]).inc();
    (status, Json(json!({ "error": ErrorBody::new(code, message) }))).into_response()
}

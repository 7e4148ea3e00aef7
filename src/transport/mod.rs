//! Transport: the HTTP listener, the `/ws` upgrade and the per-connection session loop.
//!
//! Owns sockets, handshakes (subprotocol, credentials, connection limit), heartbeats, frame
//! limits, the bounded outbound queue's writer and close codes. It knows nothing of rooms or
//! channels: frames go to `commands::Session`, and frames to send come from the connection's
//! outbox. HTTP endpoints live in `http.rs`.

mod http;
mod ws;

use std::sync::atomic::{AtomicUsize, Ordering};
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

/// What every handler shares.
#[derive(Clone)]
pub struct Shared {
    /// The node.
    pub node: Arc<Node>,
    /// Cancelled when the node drains: sessions send `draining` and close with 1012.
    pub drain: CancellationToken,
    /// Tracks every connection task.
    pub tracker: TaskTracker,
    /// Connections admitted (counted at the handshake, released when the session ends).
    pub admitted: Arc<AtomicUsize>,
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

/// One admitted connection; dropping it releases the slot.
pub struct Admission(Arc<AtomicUsize>);

impl Admission {
    fn try_new(counter: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        if counter.fetch_add(1, Ordering::AcqRel) >= max {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(counter.clone()))
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

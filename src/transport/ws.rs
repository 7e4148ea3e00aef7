//! The WebSocket handshake and the two tasks of a connection: a reader that feeds frames to
//! the session, and a writer that drains the outbox in batches, pings, and closes.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{sleep, sleep_until, Instant};

use super::{refuse, Admission, Shared};
use crate::auth::{AuthError, Identity};
use crate::commands::{Flow, Session};
use crate::protocol::{close, system_frame, ErrorCode, Frame, PROTOCOL_VERSION};
use crate::routing::ConnHandle;
use crate::telemetry::metrics;

/// The subprotocol of protocol v1.
const SUBPROTOCOL: &str = "arqonbus.v1";
/// Bytes read from a socket at a time: small, because every idle connection holds it (frames
/// bigger than this are read in several steps, up to `limits.max_frame_bytes`).
const READ_BUFFER: usize = 1024;
/// Frames written per flush at most.
const WRITE_BATCH: usize = 256;
/// Longest wait to flush queued frames before a close.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// `?token=` for browsers, which cannot set headers.
#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

fn offers_other_subprotocols_only(headers: &HeaderMap) -> bool {
    let mut offered = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .peekable();
    offered.peek().is_some() && !offered.any(|p| p == SUBPROTOCOL)
}

/// `GET /ws`.
pub async fn upgrade(
    State(st): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let node = &st.node;
    if node.is_draining() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "node is draining", "draining");
    }
    if offers_other_subprotocols_only(&headers) {
        let msg = "this server speaks the arqonbus.v1 subprotocol only";
        return refuse(StatusCode::BAD_REQUEST, ErrorCode::UnsupportedVersion, msg, "protocol");
    }
    let token = bearer(&headers).or(q.token.as_deref());
    let identity = match node.auth.authenticate(token).await {
        Ok(i) => i,
        Err(AuthError::Unavailable(_)) => {
            // The reason is logged by the authenticator; the client learns only to retry.
            let body = json!({ "error": { "code": "UNAVAILABLE", "message": "authentication is unavailable, retry later", "retry_after_ms": 1000 } });
            metrics().refused.with_label_values(&["auth_unavailable"]).inc();
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response_compat();
        }
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, &e.to_string(), "unauthorized"),
    };
    let Some(admission) = Admission::try_new(&st.admitted, node.config.server.max_connections) else {
        let body = json!({ "error": { "code": "UNAVAILABLE", "message": "too many connections on this node", "retry_after_ms": 1000 } });
        metrics().refused.with_label_values(&["limit"]).inc();
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response_compat();
    };
    let l = &node.config.limits;
    ws.protocols([SUBPROTOCOL])
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(l.max_frame_bytes.saturating_mul(64).max(1 << 20))
        .max_message_size(l.max_frame_bytes)
        .max_frame_size(l.max_frame_bytes)
        .on_upgrade(move |socket| async move {
            let tracker = st.tracker.clone();
            tracker.spawn(run(st, socket, identity, admission));
        })
}

trait IntoResponseCompat {
    fn into_response_compat(self) -> Response;
}

impl<T: axum::response::IntoResponse> IntoResponseCompat for T {
    fn into_response_compat(self) -> Response {
        self.into_response()
    }
}

async fn run(st: Shared, socket: WebSocket, identity: Identity, admission: Admission) {
    let node = st.node.clone();
    let client_id = format!("c_{}", uuid::Uuid::new_v4().simple());
    let user = identity.user.clone().map(Into::into);
    let (conn, rx) = ConnHandle::new(client_id.into(), user, node.config.limits.outbound_queue);
    let l = &node.config.limits;
    let welcome = system_frame(
        "welcome",
        None,
        &json!({
            "client_id": conn.client_id, "user": identity.user, "node": node.id, "protocol": PROTOCOL_VERSION,
            "server": concat!("arqonbus ", env!("CARGO_PKG_VERSION")), "heartbeat_s": l.heartbeat_s,
            "limits": {
                "max_frame_bytes": l.max_frame_bytes, "publish_rate_per_s": l.publish_rate_per_s,
                "publish_burst": l.publish_burst, "max_subscriptions": l.max_subscriptions,
            },
        }),
    );
    conn.send(welcome).await;
    let heartbeat = Duration::from_secs(l.heartbeat_s);
    let jitter = node.config.server.drain_jitter_ms;
    let (sink, stream) = socket.split();
    let writer = st.tracker.spawn(write_loop(sink, rx, conn.clone(), st.drain.clone(), heartbeat, jitter));
    let session = Session::open(node, conn.clone(), identity).await;
    tracing::debug!(client_id = %conn.client_id, "connected");
    let (session, mut stream, peer_closed) = read_loop(stream, session, heartbeat).await;
    session.close().await;
    conn.close(close::NORMAL);
    let _ = writer.await;
    if !peer_closed {
        // Our close frame is out: read until the peer answers it (bounded), so the socket is not
        // dropped with unread data (a TCP reset would make the peer lose the close frame).
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    drop(admission);
}

fn unix_deadline(expires_at: Option<i64>) -> Option<Instant> {
    let secs = expires_at? - chrono::Utc::now().timestamp();
    Some(Instant::now() + Duration::from_secs(secs.max(0) as u64))
}

/// Reads until the connection ends; returns the stream and whether the peer ended it.
async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    mut session: Session,
    heartbeat: Duration,
) -> (Session, SplitStream<WebSocket>, bool) {
    let conn = session.conn.clone();
    let mut peer_closed = false;
    let idle = sleep(heartbeat * 2);
    let closed = conn.closing().clone().cancelled_owned();
    tokio::pin!(idle, closed);
    loop {
        let expiry = unix_deadline(session.expires_at());
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        tokio::select! {
            biased;
            _ = &mut closed => break,
            _ = &mut idle => {
                tracing::debug!(client_id = %conn.client_id, "heartbeat timeout");
                conn.close(close::GOING_AWAY);
                break;
            }
            _ = sleep_until(expiry.unwrap_or(far)), if expiry.is_some() => {
                conn.close(close::TOKEN_EXPIRED);
                break;
            }
            msg = stream.next() => {
                idle.as_mut().reset(Instant::now() + heartbeat * 2);
                match msg {
                    None | Some(Ok(Message::Close(_))) => {
                        peer_closed = true;
                        break;
                    }
                    Some(Ok(Message::Text(text))) => {
                        // Boxed: the command futures are large, and keeping them inline would make
                        // every idle connection's task as big as the biggest command.
                        if let Flow::Close(code) = Box::pin(session.handle_text(text.as_str())).await {
                            conn.close(code);
                            break;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        conn.close(close::UNSUPPORTED_DATA);
                        break;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Err(e)) => {
                        match read_error_code(e) {
                            Some(code) => {
                                conn.close(code);
                            }
                            None => peer_closed = true,
                        }
                        break;
                    }
                }
            }
        }
    }
    (session, stream, peer_closed)
}

/// The close code for a read error, if the peer is still there to receive one.
fn read_error_code(e: axum::Error) -> Option<u16> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let inner = e.into_inner();
    match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(_)) => Some(close::TOO_BIG),
        Some(WsError::Utf8(_)) => Some(close::INVALID_PAYLOAD),
        Some(WsError::Protocol(_)) => Some(close::PROTOCOL_ERROR),
        _ => None,
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        close::GOING_AWAY => "heartbeat timeout",
        close::UNSUPPORTED_DATA => "binary frames are not supported",
        close::INVALID_PAYLOAD => "text frame is not valid UTF-8",
        close::POLICY_VIOLATION => "too many protocol violations",
        close::TOO_BIG => "frame too large",
        close::SERVICE_RESTART => "node draining",
        close::TOKEN_EXPIRED => "token expired",
        close::SLOW_CONSUMER => "slow consumer",
        close::PROTOCOL_ERROR => "protocol error",
        _ => "",
    }
}

type Sink = SplitSink<WebSocket, Message>;

async fn write_loop(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Frame>,
    conn: std::sync::Arc<ConnHandle>,
    drain: tokio_util::sync::CancellationToken,
    heartbeat: Duration,
    jitter_ms: u64,
) {
    let mut ping = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    // Created once: a cancellation future registers with its token (the drain token is shared by
    // every connection), so making new ones on every wake-up would contend on one lock.
    let closed = conn.closing().clone().cancelled_owned();
    let draining = drain.cancelled_owned();
    tokio::pin!(closed, draining);
    let code = loop {
        tokio::select! {
            biased;
            _ = &mut closed => break conn.close_code().unwrap_or(close::NORMAL),
            _ = &mut draining => {
                let after = uuid::Uuid::new_v4().as_u128() % (u128::from(jitter_ms) + 1);
                let frame = system_frame("draining", None, &json!({ "reconnect_after_ms": after as u64 }));
                let _ = flush_pending(&mut sink, &mut rx).await;
                let _ = sink.send(Message::Text(frame)).await;
                conn.close(close::SERVICE_RESTART);
                break close::SERVICE_RESTART;
            }
            frame = rx.recv() => {
                let Some(frame) = frame else { break close::NORMAL };
                if write_batch(&mut sink, &mut rx, frame).await.is_err() {
                    conn.close(close::NORMAL);
                    return;
                }
                conn.notify_drained();
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    conn.close(close::NORMAL);
                    return;
                }
            }
        }
    };
    if code != close::SLOW_CONSUMER {
        let _ = tokio::time::timeout(CLOSE_FLUSH, flush_pending(&mut sink, &mut rx)).await;
    }
    if code != close::NORMAL {
        metrics().closes.with_label_values(&[&code.to_string()]).inc();
    }
    let frame = CloseFrame { code, reason: close_reason(code).into() };
    let _ = tokio::time::timeout(CLOSE_FLUSH, sink.send(Message::Close(Some(frame)))).await;
}

async fn write_batch(sink: &mut Sink, rx: &mut mpsc::Receiver<Frame>, first: Frame) -> Result<(), axum::Error> {
    sink.feed(Message::Text(first)).await?;
    for _ in 1..WRITE_BATCH {
        match rx.try_recv() {
            Ok(f) => sink.feed(Message::Text(f)).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
}

async fn flush_pending(sink: &mut Sink, rx: &mut mpsc::Receiver<Frame>) -> Result<(), axum::Error> {
    while let Ok(f) = rx.try_recv() {
        sink.feed(Message::Text(f)).await?;
    }
    sink.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size4<A, B, C, D, F>(_f: fn(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    fn size3<A, B, C, F>(_f: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle connection holds its tasks' futures: command handling is boxed so that they
    /// stay small (memory per idle connection is a target, see docs/performance.md).
    #[test]
    fn idle_connection_tasks_stay_small() {
        assert!(size4(run) <= 2560, "connection task future: {} bytes", size4(run));
        assert!(size3(read_loop) <= 1536, "reader future: {} bytes", size3(read_loop));
    }
}

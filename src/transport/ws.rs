//! The WebSocket handshake and the two tasks of a connection: a reader that feeds frames to
//! the session, and a writer that drains the outbox in batches, pings, and closes.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::admission::{Admission, UserSlot};
use super::{refuse, Shared};
use crate::auth::{AuthError, Identity};
use crate::commands::{Flow, Session};
use crate::config::FRAME_OVERHEAD;
use crate::protocol::{close, system_frame, ErrorCode, Frame, PROTOCOL_VERSION};
use crate::routing::{ConnHandle, Outbox, OutboxLimits};
use crate::telemetry::metrics;

/// The subprotocol of protocol v1.
const SUBPROTOCOL: &str = "arqonbus.v1";
/// Bytes read from a socket at a time: small, because every idle connection holds it (frames
/// bigger than this are read in several steps, up to `limits.max_frame_bytes`).
const READ_BUFFER: usize = 1024;
/// Frames written per flush at most.
const WRITE_BATCH: usize = 256;
/// Bytes written per flush at most (plus one frame): the write timeout applies per flush, so a
/// batch small enough that a live peer always finishes it in time.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Longest wait for the peer to answer our close frame (at most the write timeout).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

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

/// A refusal that tells the client when to retry (`retry_after_ms` and `Retry-After`).
fn refuse_retry(status: StatusCode, code: ErrorCode, message: &str, reason: &str, retry_ms: u64) -> Response {
    metrics().refused.with_label_values(&[reason]).inc();
    let body = json!({ "error": { "code": code.as_str(), "message": message, "retry_after_ms": retry_ms } });
    let secs = retry_ms.div_ceil(1000).to_string();
    (status, [(header::RETRY_AFTER, secs)], axum::Json(body)).into_response()
}

/// `GET /ws`: draining → origin → subprotocol → handshakes per IP → credentials → connections
/// per node → connections per user; each refusal before the costlier checks.
pub async fn upgrade(
    State(st): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let node = &st.node;
    if node.is_draining() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "node is draining", "draining");
    }
    if !st.gate.origin_allowed(&headers) {
        let msg = "this origin may not open a WebSocket here (server.allowed_origins)";
        return refuse(StatusCode::FORBIDDEN, ErrorCode::Forbidden, msg, "origin");
    }
    if offers_other_subprotocols_only(&headers) {
        let msg = "this server speaks the arqonbus.v1 subprotocol only";
        return refuse(StatusCode::BAD_REQUEST, ErrorCode::UnsupportedVersion, msg, "protocol");
    }
    if let Err(retry) = st.gate.take_handshake(st.gate.client_ip(peer, &headers)) {
        let msg = "too many connection attempts from this address";
        return refuse_retry(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, msg, "rate", retry);
    }
    let token = bearer(&headers).or(q.token.as_deref());
    let identity = match node.auth.authenticate(token).await {
        Ok(i) => i,
        Err(AuthError::Unavailable(_)) => {
            // The reason is logged by the authenticator; the client learns only to retry.
            let msg = "authentication is unavailable, retry later";
            return refuse_retry(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                msg,
                "auth_unavailable",
                1000,
            );
        }
        Err(e) => return refuse(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, &e.to_string(), "unauthorized"),
    };
    let Some(admission) = Admission::try_new(&st.admitted, node.config.server.max_connections) else {
        let msg = "too many connections on this node";
        return refuse_retry(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, msg, "limit", 1000);
    };
    let slot = match identity.user.as_deref().map(|u| st.gate.user_slot(u)) {
        Some(None) => {
            let msg = "too many connections for this user";
            return refuse_retry(StatusCode::TOO_MANY_REQUESTS, ErrorCode::LimitExceeded, msg, "user_limit", 1000);
        }
        Some(Some(slot)) => Some(slot),
        None => None,
    };
    let l = &node.config.limits;
    // Frames are written only once the budget admitted them, so what tungstenite may hold is the
    // budget plus one frame: a reply the server built always fits.
    let write_buffer = l.outbound_queue_bytes + l.max_reply_bytes.max(l.max_frame_bytes + FRAME_OVERHEAD);
    ws.protocols([SUBPROTOCOL])
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(write_buffer)
        .max_message_size(l.max_frame_bytes)
        .max_frame_size(l.max_frame_bytes)
        .on_upgrade(move |socket| async move {
            let tracker = st.tracker.clone();
            tracker.spawn(run(st, socket, identity, (admission, slot)));
        })
}

/// The slots a connection holds until its socket is gone.
type Slots = (Admission, Option<UserSlot>);

/// Sets a connection up and returns its task. The setup is synchronous on purpose: an async
/// function keeps its arguments (the whole `WebSocket`, the identity) in its state for as long
/// as it runs, and every idle connection holds that state (memory per idle connection is a
/// target, see docs/performance.md).
fn run(st: Shared, socket: WebSocket, identity: Identity, slots: Slots) -> impl Future<Output = ()> + Send + 'static {
    // Counted from the upgrade until the socket is gone, like the admission slot.
    metrics().connections.inc();
    let node = st.node.clone();
    let client_id = format!("c_{}", uuid::Uuid::new_v4().simple());
    let user = identity.user.clone().map(Into::into);
    let l = &node.config.limits;
    let limits = OutboxLimits { frames: l.outbound_queue, bytes: l.outbound_queue_bytes };
    let (conn, rx) = ConnHandle::new(client_id.into(), user, limits);
    let welcome = system_frame(
        "welcome",
        None,
        &json!({
            "client_id": conn.client_id, "user": identity.user, "node": node.id, "protocol": PROTOCOL_VERSION,
            "server": concat!("arqonbus ", env!("CARGO_PKG_VERSION")), "heartbeat_s": l.heartbeat_s,
            "limits": {
                "max_frame_bytes": l.max_frame_bytes, "publish_rate_per_s": l.publish_rate_per_s,
                "publish_burst": l.publish_burst, "max_subscriptions": l.max_subscriptions,
                "command_rate_per_s": l.command_rate_per_s, "command_burst": l.command_burst,
                "outbound_queue_bytes": l.outbound_queue_bytes, "max_reply_bytes": l.max_reply_bytes,
            },
        }),
    );
    conn.deliver(welcome);
    let timing = Timing {
        heartbeat: Duration::from_secs(l.heartbeat_s),
        write: Duration::from_millis(l.write_timeout_ms),
        jitter_ms: node.config.server.drain_jitter_ms,
    };
    let (sink, stream) = socket.split();
    let writer = st.tracker.spawn(write_loop(sink, rx, conn.clone(), st.drain.clone(), timing));
    let expiry = unix_deadline(identity.expires_at);
    let session = Box::new(Session::open(node, conn.clone(), identity));
    tracing::debug!(client_id = %conn.client_id, "connected");
    async move {
        let (session, mut stream, peer_closed) =
            read_loop(stream, Slot::Idle(session), (conn.clone(), expiry), timing.heartbeat).await;
        Box::pin(session.close()).await;
        conn.close(close::NORMAL);
        let clean = writer.await.unwrap_or(false);
        if clean && !peer_closed {
            // Our close frame is out: read until the peer answers it (bounded), so the socket is
            // not dropped with unread data (a TCP reset would make the peer lose the close frame).
            let _ = tokio::time::timeout(timing.write.min(CLOSE_WAIT), async {
                while let Some(Ok(m)) = stream.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        drop(stream);
        metrics().connections.dec();
        drop(slots);
    }
}

/// The timers of one connection.
#[derive(Debug, Clone, Copy)]
struct Timing {
    heartbeat: Duration,
    /// A socket that accepts no bytes for this long is dropped.
    write: Duration,
    jitter_ms: u64,
}

fn unix_deadline(expires_at: Option<i64>) -> Option<Instant> {
    let secs = expires_at? - chrono::Utc::now().timestamp();
    Some(Instant::now() + Duration::from_secs(secs.max(0) as u64))
}

/// A frame being handled: it owns the session and gives it back with what to do next.
type Handling = Pin<Box<dyn Future<Output = (Box<Session>, Flow)> + Send>>;

/// Starts handling one text frame. Boxed: command futures are large, and keeping them inline
/// would make every idle connection's task as big as the biggest command.
fn handle(mut session: Box<Session>, text: Utf8Bytes) -> Handling {
    Box::pin(async move {
        let flow = session.handle_text(text.as_str()).await;
        (session, flow)
    })
}

/// The session: waiting for a frame, or handling one (boxed: a session moves between the two,
/// and a future's state would otherwise keep room for it more than once).
enum Slot {
    Idle(Box<Session>),
    Busy(Handling),
}

/// Waits for the frame being handled, if any.
async fn handled(slot: &mut Slot) -> (Box<Session>, Flow) {
    match slot {
        Slot::Busy(h) => h.await,
        Slot::Idle(_) => std::future::pending().await,
    }
}

/// Reads until the connection ends; returns the session, the stream and whether the peer ended
/// it. Frames are handled one at a time, but the heartbeat and token-expiry timers and the
/// close signal are watched while a frame is handled (a replay waiting for a slow reader, a
/// backplane call), and the socket keeps being read (pongs) until one more frame waits.
async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    mut slot: Slot,
    (conn, mut expiry): (Arc<ConnHandle>, Option<Instant>),
    heartbeat: Duration,
) -> (Box<Session>, SplitStream<WebSocket>, bool) {
    let mut waiting: Option<Utf8Bytes> = None;
    let mut peer_closed = false;
    let idle = sleep(heartbeat * 2);
    let closed = conn.closing().clone().cancelled_owned();
    tokio::pin!(idle, closed);
    loop {
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
            (session, flow) = handled(&mut slot) => {
                expiry = unix_deadline(session.expires_at());
                if let Flow::Close(code) = flow {
                    slot = Slot::Idle(session);
                    conn.close(code);
                    break;
                }
                slot = match waiting.take() {
                    Some(text) => Slot::Busy(handle(session, text)),
                    None => Slot::Idle(session),
                };
            }
            msg = stream.next(), if waiting.is_none() => {
                idle.as_mut().reset(Instant::now() + heartbeat * 2);
                match msg {
                    None | Some(Ok(Message::Close(_))) => {
                        peer_closed = true;
                        break;
                    }
                    Some(Ok(Message::Text(text))) => {
                        metrics().bytes_in.inc_by(text.len() as u64);
                        slot = match slot {
                            Slot::Idle(session) => Slot::Busy(handle(session, text)),
                            busy => {
                                waiting = Some(text);
                                busy
                            }
                        };
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
    // A frame still being handled sees the close (replays and waits stop on it) and ends soon.
    let session = match slot {
        Slot::Idle(s) => s,
        Slot::Busy(h) => h.await.0,
    };
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
type Closed = WaitForCancellationFutureOwned;

/// How a write ended.
enum Wrote {
    /// Every byte is with the socket.
    Done,
    /// The connection is closing: stop writing frames.
    Closing,
    /// The socket accepted nothing for the write timeout.
    Stalled,
    /// The socket failed.
    Failed,
}

/// Runs one write with the write deadline, giving up early when the connection closes. The
/// write is pinned by the caller: taken by value, it would be stored twice in the writer's state.
async fn guarded<F>(mut write: Pin<&mut F>, closed: Pin<&mut Closed>, limit: Duration) -> Wrote
where
    F: Future<Output = Result<(), axum::Error>>,
{
    let done = |r: Result<(), axum::Error>| if r.is_ok() { Wrote::Done } else { Wrote::Failed };
    // Most writes complete at once (the socket has room): no timer for them.
    if let Some(r) = futures_util::FutureExt::now_or_never(write.as_mut()) {
        return done(r);
    }
    tokio::select! {
        biased;
        r = tokio::time::timeout(limit, write) => match r {
            Ok(r) => done(r),
            Err(_) => Wrote::Stalled,
        },
        _ = closed => Wrote::Closing,
    }
}

/// The writer: drains the outbox, pings, sends `draining`, and closes. Returns whether the close
/// frame went out (the peer may then answer it); every byte it took or left in the outbox goes
/// back to the connection's budget.
async fn write_loop(
    mut sink: Sink,
    mut rx: Outbox,
    conn: Arc<ConnHandle>,
    drain: CancellationToken,
    timing: Timing,
) -> bool {
    let clean = write_frames(&mut sink, &mut rx, &conn, drain, timing).await;
    for f in rx.close() {
        conn.release(f.len());
    }
    clean
}

async fn write_frames(
    sink: &mut Sink,
    rx: &mut Outbox,
    conn: &ConnHandle,
    drain: CancellationToken,
    t: Timing,
) -> bool {
    let mut ping = tokio::time::interval_at(Instant::now() + t.heartbeat, t.heartbeat);
    // Created once: a cancellation future registers with its token (the drain token is shared by
    // every connection), so making new ones on every wake-up would contend on one lock.
    let closed = conn.closing().clone().cancelled_owned();
    let draining = drain.cancelled_owned();
    tokio::pin!(closed, draining);
    // Whether the drain branch wrote out the queue and the `draining` frame itself.
    let mut drained = false;
    let code = loop {
        let wrote = tokio::select! {
            biased;
            _ = &mut closed => break conn.close_code().unwrap_or(close::NORMAL),
            _ = &mut draining => {
                drained = true;
                // Boxed: a rare path, kept out of every idle connection's writer state.
                match Box::pin(write_draining(sink, rx, conn, closed.as_mut(), t)).await {
                    Wrote::Done | Wrote::Closing => break close::SERVICE_RESTART,
                    other => other,
                }
            }
            frame = rx.recv() => {
                let Some(frame) = frame else { break close::NORMAL };
                let mut taken = 0;
                let wrote = guarded(pin!(write_batch(sink, rx, frame, &mut taken)), closed.as_mut(), t.write).await;
                conn.written(taken);
                wrote
            }
            _ = ping.tick() => guarded(pin!(sink.send(Message::Ping(Default::default()))), closed.as_mut(), t.write).await,
        };
        match wrote {
            Wrote::Done => {}
            Wrote::Closing => break conn.close_code().unwrap_or(close::NORMAL),
            Wrote::Stalled => return stalled(conn),
            Wrote::Failed => {
                conn.close(close::NORMAL);
                return false;
            }
        }
    };
    Box::pin(write_close(sink, rx, conn, code, drained, t.write)).await
}

/// Writes the queue and the `draining` frame, then asks for the 1012 close.
async fn write_draining(
    sink: &mut Sink,
    rx: &mut Outbox,
    conn: &ConnHandle,
    closed: Pin<&mut Closed>,
    t: Timing,
) -> Wrote {
    let after = uuid::Uuid::new_v4().as_u128() % (u128::from(t.jitter_ms) + 1);
    let frame = system_frame("draining", None, &json!({ "reconnect_after_ms": after as u64 }));
    let mut taken = 0;
    let wrote = guarded(pin!(flush_then(sink, rx, Some(frame), &mut taken)), closed, t.write).await;
    conn.written(taken);
    conn.close(close::SERVICE_RESTART);
    wrote
}

/// Writes what is still queued (unless the connection is a slow consumer or already drained)
/// and the close frame; returns whether the close frame went out.
async fn write_close(
    sink: &mut Sink,
    rx: &mut Outbox,
    conn: &ConnHandle,
    code: u16,
    drained: bool,
    limit: Duration,
) -> bool {
    if code != close::NORMAL {
        metrics().closes.with_label_values(&[&code.to_string()]).inc();
    }
    // Pending frames and the close frame get the write timeout like any write: a slow consumer
    // that reads again within it still learns why it was closed.
    // A 1012 asked for by routing (a rebalance advisory) has its advisory frame in the queue.
    if code != close::SLOW_CONSUMER && !drained {
        let mut taken = 0;
        let flushed = tokio::time::timeout(limit, flush_then(sink, rx, None, &mut taken)).await;
        conn.written(taken);
        if flushed.is_err() {
            return stalled(conn);
        }
    }
    let frame = CloseFrame { code, reason: close_reason(code).into() };
    matches!(tokio::time::timeout(limit, sink.send(Message::Close(Some(frame)))).await, Ok(Ok(())))
}

/// The socket took no bytes for the write timeout: the connection is dropped at once, without a
/// close frame (there is no room to send one).
fn stalled(conn: &ConnHandle) -> bool {
    metrics().write_timeouts.inc();
    if conn.close(close::SLOW_CONSUMER) {
        metrics().slow_consumers.inc();
    }
    tracing::info!(client_id = %conn.client_id, "socket accepts no bytes: closing at once");
    false
}

/// Writes `first` and what else is queued (at most [`WRITE_BATCH`] frames or about
/// [`WRITE_BATCH_BYTES`]), then flushes. `taken` counts the bytes taken from the queue, whatever
/// happens to the write.
async fn write_batch(sink: &mut Sink, rx: &mut Outbox, first: Frame, taken: &mut usize) -> Result<(), axum::Error> {
    *taken += first.len();
    sink.feed(Message::Text(first)).await?;
    for _ in 1..WRITE_BATCH {
        if *taken >= WRITE_BATCH_BYTES {
            break;
        }
        match rx.try_recv() {
            Some(f) => {
                *taken += f.len();
                sink.feed(Message::Text(f)).await?;
            }
            None => break,
        }
    }
    sink.flush().await
}

/// Writes everything queued, then `last` if given, and flushes.
async fn flush_then(
    sink: &mut Sink,
    rx: &mut Outbox,
    last: Option<Frame>,
    taken: &mut usize,
) -> Result<(), axum::Error> {
    while let Some(f) = rx.try_recv() {
        *taken += f.len();
        sink.feed(Message::Text(f)).await?;
    }
    if let Some(f) = last {
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

    fn size5<A, B, C, D, E, F>(_f: fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every idle connection holds its tasks' futures: they stay small because the setup is
    /// synchronous, the session and rare paths (closing, draining, commands) are boxed,
    /// and writes are pinned once (memory per idle connection is a target, docs/performance.md).
    #[test]
    fn idle_connection_tasks_stay_small() {
        assert!(size4(run) <= 768, "connection task future: {} bytes", size4(run));
        assert!(size4(read_loop) <= 640, "reader future: {} bytes", size4(read_loop));
        assert!(size5(write_loop) <= 1152, "writer future: {} bytes", size5(write_loop));
    }
}

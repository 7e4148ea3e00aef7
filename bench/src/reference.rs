//! The bare reference server: `arqonbus bench --reference-server ADDR`.
//!
//! A plain tokio-tungstenite broadcast server, the yardstick the bench measures ArqonBus
//! against in the same run (`--reference-url`): what fan-out of the same frames costs on this
//! machine with no protocol around it — no validation, no permissions, no history, no
//! backplane, no byte budgets. Its only job is to answer just enough of wire protocol v1 for the
//! bench's subscribers and publishers to run unchanged, and to send frames of the same shape
//! and size as ArqonBus's delivered events.
//!
//! # The wire it speaks
//!
//! Text frames at any path (`ws://ADDR/ws` is the usual URL); anything it does not know is
//! ignored.
//! - On connect it sends `{"version":"1.0","type":"system","event":"welcome","payload":{"client_id":"c_…","server":"reference"}}`.
//! - `{"type":"command","id":ID,"command":"subscribe","args":{"room":R,"channel":C}}` adds the
//!   connection to `R:C` and answers `{"type":"reply","request_id":ID,"result":{"room":R,"channel":C,"offset":N}}`
//!   (`N`: the channel's latest offset, or `null`). Any other command is answered with an
//!   `UNKNOWN_COMMAND` error.
//! - `{"type":"event","room":R,"channel":C,"payload":P}` (`id` optional) is given the channel's
//!   next offset (1, 2, 3, … per channel) and sent to every subscriber of `R:C` as
//!   `{"version":"1.0","type":"event","id":"ref_…","room":R,"channel":C,"offset":N,"from":"c_…","user":null,"timestamp":"…","payload":P}`,
//!   serialized once and shared by all subscribers; `id`, `from` and `timestamp` are fillers
//!   as wide as ArqonBus's (a UUIDv7 message id, a client id, an RFC 3339 time). With an `id`
//!   the publisher gets `{"type":"reply","request_id":ID,"result":{"offset":N}}`.
//!
//! Each connection has a reader and a writer task; the writer drains a bounded queue of
//! [`QUEUE`] frames, several frames per flush. A subscriber whose queue is full is dropped from
//! all its channels (it stays connected and receives nothing more), the reference's version
//! of ArqonBus's slow-consumer close: the bench then counts the deliveries it missed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::scan::{fields, get, str_value};

/// Frames queued per connection before it counts as a slow consumer.
pub const QUEUE: usize = 8192;
/// Most frames written per flush.
const BATCH: usize = 256;
/// A fixed-width stand-in for an RFC 3339 timestamp with milliseconds.
const TIMESTAMP: &str = "2000-01-01T00:00:00.000Z";

/// One channel: its offset counter and its subscribers.
#[derive(Default)]
struct Channel {
    latest: u64,
    subs: Vec<(u64, mpsc::Sender<Utf8Bytes>)>,
}

/// The server's shared state.
#[derive(Default)]
struct Hub {
    channels: RwLock<HashMap<String, Arc<Mutex<Channel>>>>,
    next_conn: AtomicU64,
    next_event: AtomicU64,
    connections: AtomicU64,
    published: AtomicU64,
    dropped: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hub {
    fn channel(&self, key: &str) -> Arc<Mutex<Channel>> {
        if let Some(c) = self.channels.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return c.clone();
        }
        self.channels.write().unwrap_or_else(|p| p.into_inner()).entry(key.to_string()).or_default().clone()
    }

    fn unsubscribe(&self, key: &str, conn: u64) {
        lock(&self.channel(key)).subs.retain(|(id, _)| *id != conn);
    }
}

/// A bound reference server; [`Reference::run`] serves until the future is dropped.
///
/// Its wire: on connect `{"version":"1.0","type":"system","event":"welcome","payload":{…}}`;
/// `subscribe` commands (answered with the channel's latest offset); events, numbered per
/// channel and sent to every subscriber in ArqonBus's delivered-event shape, acknowledged
/// when they carry an `id`. See the module source (`bench/src/reference.rs`) for the details.
pub struct Reference {
    listener: TcpListener,
    hub: Arc<Hub>,
}

impl Reference {
    /// Binds `addr` (port 0: the kernel picks one; see [`Reference::local_addr`]).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Self { listener: TcpListener::bind(addr).await?, hub: Arc::default() })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections forever (each on its own tasks).
    pub async fn run(self) {
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(self.hub.clone(), stream));
                }
                // Out of file descriptors, say: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Serves until Ctrl-C, printing a status line every 5 s while anything changes.
    pub async fn serve_until_ctrl_c(self) -> std::io::Result<()> {
        eprintln!("reference server listening on ws://{}/ws (Ctrl-C stops it)", self.local_addr()?);
        let hub = self.hub.clone();
        let status = async move {
            let mut last = (u64::MAX, u64::MAX, u64::MAX);
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let now = (hub.connections.load(Relaxed), hub.published.load(Relaxed), hub.dropped.load(Relaxed));
                if now != last {
                    eprintln!(
                        "reference: {} connections, {} events published, {} slow subscribers dropped",
                        now.0, now.1, now.2
                    );
                    last = now;
                }
            }
        };
        tokio::select! {
            _ = self.run() => {}
            _ = status => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    }
}

async fn connection(hub: Arc<Hub>, stream: TcpStream) {
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024).max_message_size(Some(1 << 20));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    hub.connections.fetch_add(1, Relaxed);
    let conn = hub.next_conn.fetch_add(1, Relaxed);
    let from = format!("c_{conn:032x}");
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(QUEUE);
    let welcome = format!(
        r#"{{"version":"1.0","type":"system","event":"welcome","payload":{{"client_id":"{from}","server":"reference"}}}}"#
    );
    let _ = tx.try_send(welcome.into());
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.feed(Message::Text(frame)).await.is_err() {
                return;
            }
            for _ in 1..BATCH {
                let Ok(frame) = rx.try_recv() else { break };
                if sink.feed(Message::Text(frame)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut subscribed: Vec<String> = Vec::new();
    while let Some(Ok(msg)) = source.next().await {
        match msg {
            Message::Text(text) => on_frame(&hub, conn, &from, &tx, &mut subscribed, &text),
            Message::Close(_) => break,
            _ => {}
        }
    }
    for key in &subscribed {
        hub.unsubscribe(key, conn);
    }
    drop(tx);
    let _ = writer.await;
    hub.connections.fetch_sub(1, Relaxed);
}

/// The fields of a client frame the reference looks at (raw JSON text).
#[derive(Default)]
struct Client<'a> {
    kind: &'a str,
    id: Option<&'a str>,
    room: Option<&'a str>,
    channel: Option<&'a str>,
    payload: Option<&'a str>,
    command: Option<&'a str>,
    args: Option<&'a str>,
}

fn scan_client(text: &str) -> Client<'_> {
    let mut c = Client::default();
    for (key, value) in fields(text) {
        match key {
            "type" => c.kind = str_value(value).unwrap_or(""),
            "id" => c.id = Some(value),
            "room" => c.room = Some(value),
            "channel" => c.channel = Some(value),
            "payload" => c.payload = Some(value),
            "command" => c.command = str_value(value),
            "args" => c.args = Some(value),
            _ => {}
        }
    }
    c
}

fn on_frame(hub: &Hub, conn: u64, from: &str, tx: &mpsc::Sender<Utf8Bytes>, subscribed: &mut Vec<String>, text: &str) {
    let c = scan_client(text);
    let id = c.id.unwrap_or("null");
    match (c.kind, c.command) {
        ("event", _) => {
            let (Some(room), Some(channel), Some(payload)) = (c.room, c.channel, c.payload) else { return };
            let offset = publish(hub, from, room, channel, payload);
            if c.id.is_some() {
                let _ = tx
                    .try_send(format!(r#"{{"type":"reply","request_id":{id},"result":{{"offset":{offset}}}}}"#).into());
            }
        }
        ("command", Some("subscribe")) => {
            let args = c.args.unwrap_or("{}");
            let (Some(room), Some(channel)) = (get(args, "room"), get(args, "channel")) else { return };
            let key = channel_key(room, channel);
            let latest = {
                let ch = hub.channel(&key);
                let mut ch = lock(&ch);
                ch.subs.push((conn, tx.clone()));
                ch.latest
            };
            subscribed.push(key);
            let latest = if latest == 0 { "null".to_string() } else { latest.to_string() };
            let reply = format!(
                r#"{{"type":"reply","request_id":{id},"result":{{"room":{room},"channel":{channel},"offset":{latest}}}}}"#
            );
            let _ = tx.try_send(reply.into());
        }
        ("command", _) => {
            let error = format!(
                r#"{{"type":"error","request_id":{id},"error":{{"code":"UNKNOWN_COMMAND","message":"the reference server knows only subscribe"}}}}"#
            );
            let _ = tx.try_send(error.into());
        }
        _ => {}
    }
}

/// `room:channel` from the raw JSON strings.
fn channel_key(room: &str, channel: &str) -> String {
    format!("{}:{}", str_value(room).unwrap_or(room), str_value(channel).unwrap_or(channel))
}

/// Numbers the event, serializes it once and queues it to every subscriber; returns its offset.
fn publish(hub: &Hub, from: &str, room: &str, channel: &str, payload: &str) -> u64 {
    let seq = hub.next_event.fetch_add(1, Relaxed);
    hub.published.fetch_add(1, Relaxed);
    let ch = hub.channel(&channel_key(room, channel));
    let mut ch = lock(&ch);
    ch.latest += 1;
    let offset = ch.latest;
    let mut frame = String::with_capacity(200 + room.len() + channel.len() + payload.len());
    let _ = write!(
        frame,
        r#"{{"version":"1.0","type":"event","id":"ref_{seq:036}","room":{room},"channel":{channel},"offset":{offset},"from":"{from}","user":null,"timestamp":"{TIMESTAMP}","payload":{payload}}}"#
    );
    let frame = Utf8Bytes::from(frame);
    let before = ch.subs.len();
    ch.subs.retain(|(_, sub)| match sub.try_send(frame.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => false,
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    });
    hub.dropped.fetch_add((before - ch.subs.len()) as u64, Relaxed);
    offset
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::parse_frame;

    #[test]
    fn client_frames_are_scanned_at_the_top_level() {
        let c =
            scan_client(r#"{"type":"command","id":"s1","command":"subscribe","args":{"room":"bench","channel":"c3"}}"#);
        assert_eq!((c.kind, c.id, c.command), ("command", Some(r#""s1""#), Some("subscribe")));
        let args = c.args.unwrap_or_default();
        assert_eq!(channel_key(get(args, "room").unwrap_or(""), get(args, "channel").unwrap_or("")), "bench:c3");
    }

    #[test]
    fn events_are_numbered_per_channel_and_shaped_like_arqonbus_events() {
        let hub = Hub::default();
        let (tx, mut rx) = mpsc::channel(4);
        lock(&hub.channel("bench:c0")).subs.push((7, tx));
        let from = format!("c_{:032x}", 3);
        let payload = r#"{"t":123,"seq":0,"pad":"xx"}"#;
        assert_eq!(publish(&hub, &from, r#""bench""#, r#""c0""#, payload), 1);
        assert_eq!(publish(&hub, &from, r#""bench""#, r#""c1""#, payload), 1);
        assert_eq!(publish(&hub, &from, r#""bench""#, r#""c0""#, payload), 2);
        let first = rx.try_recv().expect("delivered");
        let v: serde_json::Value = serde_json::from_str(&first).expect("valid JSON");
        assert_eq!(
            (v["type"].as_str(), v["offset"].as_u64(), v["channel"].as_str()),
            (Some("event"), Some(1), Some("c0"))
        );
        assert_eq!(v["id"].as_str().map(str::len), Some("arq_0192f4a0-1c2b-7c3d-8e4f-5a6b7c8d9e0f".len()));
        assert_eq!(parse_frame(&first).payload_t(), Some(123));
        assert_eq!(parse_frame(&rx.try_recv().expect("second")).offset, Some(2));
    }

    #[test]
    fn a_full_queue_drops_the_subscriber() {
        let hub = Hub::default();
        let (tx, _rx) = mpsc::channel(1);
        lock(&hub.channel("r:c")).subs.push((1, tx));
        publish(&hub, "c_1", r#""r""#, r#""c""#, "{}");
        assert_eq!(lock(&hub.channel("r:c")).subs.len(), 1);
        publish(&hub, "c_1", r#""r""#, r#""c""#, "{}");
        assert!(lock(&hub.channel("r:c")).subs.is_empty());
        assert_eq!(hub.dropped.load(Relaxed), 1);
    }
}

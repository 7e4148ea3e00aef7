//! Test harness: nodes on port 0 (memory backplane) and a real WebSocket client.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arqonbus::app::{start_on_bus, RunningNode};
use arqonbus::backplane::{ChannelLimits, MemoryBus};
use arqonbus::config::Config;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected frame may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A config for tests: port 0, generous publish limits unless a test lowers them.
pub fn config() -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.server.shutdown_grace_ms = 3000;
    c.server.drain_jitter_ms = 100;
    c.limits.publish_rate_per_s = 100_000;
    c.limits.publish_burst = 100_000;
    c
}

/// With `TEST_REDIS_URL` set, every node of these tests runs on that Redis (each
/// `start`/`cluster` call under its own key prefix), so the same protocol tests check both
/// backplanes.
pub fn redis_url() -> Option<String> {
    std::env::var("TEST_REDIS_URL").ok().filter(|u| !u.is_empty())
}

fn on_redis(mut c: Config, url: &str, prefix: &str) -> Config {
    c.backplane.url = Some(url.into());
    c.backplane.key_prefix = prefix.to_owned();
    c.backplane.canary_interval_ms = 200;
    // Subscribed nodes touch their channels every sweep: idle channels expire within seconds.
    c.backplane.sweep_interval_ms = 500;
    c
}

async fn start_one(c: Config, bus: &Arc<MemoryBus>, prefix: &str) -> RunningNode {
    match redis_url() {
        Some(url) => arqonbus::app::start(on_redis(c, &url, prefix)).await.expect("node starts"),
        None => start_on_bus(c, bus.clone()).await.expect("node starts"),
    }
}

/// The backplane kind `status` reports in these tests.
pub fn backplane_kind() -> &'static str {
    if redis_url().is_some() {
        "redis"
    } else {
        "memory"
    }
}

/// `status` from `c`, asked again (for up to [`WAIT`]) until `pred` holds: other nodes'
/// connection counts reach a Redis cluster a moment later.
pub async fn status_until(c: &mut Client, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let st = c.ok("status", json!({})).await;
        if pred(&st) || tokio::time::Instant::now() > deadline {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts one node on its own bus.
pub async fn start(c: Config) -> RunningNode {
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let bus = MemoryBus::new(ChannelLimits::from(&c.channels));
    start_one(c, &bus, &prefix).await
}

/// Starts `n` nodes sharing one in-memory bus.
pub async fn cluster(c: Config, n: usize) -> Vec<RunningNode> {
    let bus = MemoryBus::new(ChannelLimits::from(&c.channels));
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut ci = c.clone();
        ci.server.node_id = Some(format!("node-{i}"));
        nodes.push(start_one(ci, &bus, &prefix).await);
    }
    nodes
}

pub fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/ws")
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A protocol client that keeps frames it was not waiting for.
pub struct Client {
    pub ws: Ws,
    pub client_id: String,
    pub welcome: Value,
    pending: VecDeque<Value>,
    next_id: AtomicU64,
}

/// What a frame read produced.
#[derive(Debug)]
pub enum Read {
    Frame(Value),
    Closed(Option<u16>),
}

impl Client {
    /// Connects and reads the welcome frame.
    pub async fn connect(addr: SocketAddr) -> Client {
        Self::connect_with(addr, None).await.expect("connects")
    }

    /// Connects with an optional bearer token; Err carries the HTTP status on refusal.
    pub async fn connect_with(addr: SocketAddr, token: Option<&str>) -> Result<Client, u16> {
        let mut req = ws_url(addr).into_client_request().expect("request");
        if let Some(t) = token {
            req.headers_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
        }
        Self::connect_request(req).await
    }

    /// Connects with a prepared request.
    pub async fn connect_request(
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<Client, u16> {
        Self::try_connect(req).await.map_err(|(status, _)| status)
    }

    /// Connects with a prepared request; a refusal gives its HTTP status and JSON body.
    pub async fn try_connect(
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<Client, (u16, Value)> {
        let (ws, _) = match tokio_tungstenite::connect_async(req).await {
            Ok(x) => x,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp.body().as_deref().unwrap_or_default();
                return Err((resp.status().as_u16(), serde_json::from_slice(body).unwrap_or(Value::Null)));
            }
            Err(e) => panic!("connect failed: {e}"),
        };
        let mut c = Client {
            ws,
            client_id: String::new(),
            welcome: Value::Null,
            pending: VecDeque::new(),
            next_id: AtomicU64::new(1),
        };
        let welcome = c.recv().await;
        assert_eq!(welcome["type"], "system", "{welcome}");
        assert_eq!(welcome["event"], "welcome", "{welcome}");
        c.client_id = welcome["payload"]["client_id"].as_str().expect("client_id").to_owned();
        c.welcome = welcome;
        Ok(c)
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::text(text.into())).await.expect("send");
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.send_text(v.to_string()).await;
    }

    /// Next frame or close, without the pending queue.
    async fn read_raw(&mut self) -> Read {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out waiting for a frame");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Read::Frame(serde_json::from_str(t.as_str()).expect("server sent JSON"))
                }
                Some(Ok(Message::Close(f))) => return Read::Closed(f.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Read::Closed(None),
            }
        }
    }

    /// The next frame as the exact text the server sent (nothing may be pending). Panics on close.
    pub async fn recv_text(&mut self) -> String {
        assert!(self.pending.is_empty(), "frames already parsed: {:?}", self.pending);
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out waiting for a frame");
            match msg {
                Some(Ok(Message::Text(t))) => return t.as_str().to_owned(),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => panic!("closed while a frame was expected"),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next frame (pending ones first). Panics on close.
    pub async fn recv(&mut self) -> Value {
        if let Some(v) = self.pending.pop_front() {
            return v;
        }
        match self.read_raw().await {
            Read::Frame(v) => v,
            Read::Closed(c) => panic!("connection closed ({c:?}) while a frame was expected"),
        }
    }

    /// Reads (discarding frames) until the server closes; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        self.pending.clear();
        loop {
            if let Read::Closed(c) = self.read_raw().await {
                return c;
            }
        }
    }

    /// The next frame or the close, whichever comes.
    pub async fn next_read(&mut self) -> Read {
        if let Some(v) = self.pending.pop_front() {
            return Read::Frame(v);
        }
        self.read_raw().await
    }

    /// Sends a request with a fresh id and returns its `reply` or `error` frame; other frames
    /// are kept for `recv`.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        let id = format!("r{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        frame["id"] = json!(id);
        self.send_json(&frame).await;
        self.wait_for(&id).await
    }

    /// Waits for the reply/error answering `id`; other frames are kept, in order.
    pub async fn wait_for(&mut self, id: &str) -> Value {
        loop {
            match self.read_raw().await {
                Read::Frame(v) if v["request_id"] == id => return v,
                Read::Frame(v) => self.pending.push_back(v),
                Read::Closed(c) => panic!("closed ({c:?}) while waiting for the answer to {id}"),
            }
        }
    }

    /// Runs a command; returns the whole answer frame.
    pub async fn command(&mut self, name: &str, args: Value) -> Value {
        self.request(json!({ "type": "command", "command": name, "args": args })).await
    }

    /// Runs a command that must succeed; returns `result`.
    pub async fn ok(&mut self, name: &str, args: Value) -> Value {
        let v = self.command(name, args).await;
        assert_eq!(v["type"], "reply", "{name} failed: {v}");
        v["result"].clone()
    }

    /// Runs a command that must fail with `code`; returns the error object.
    pub async fn err(&mut self, name: &str, args: Value, code: &str) -> Value {
        let v = self.command(name, args).await;
        assert_eq!(v["type"], "error", "{name} should fail with {code}: {v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        v["error"].clone()
    }

    pub async fn subscribe(&mut self, room: &str, channel: &str) -> Value {
        self.ok("subscribe", json!({ "room": room, "channel": channel })).await
    }

    /// Publishes with an id and returns the ack result.
    pub async fn publish(&mut self, room: &str, channel: &str, payload: Value) -> Value {
        let v = self.request(json!({ "type": "event", "room": room, "channel": channel, "payload": payload })).await;
        assert_eq!(v["type"], "reply", "publish failed: {v}");
        v["result"].clone()
    }

    /// Publishes without an id (no ack).
    pub async fn publish_silent(&mut self, room: &str, channel: &str, payload: Value) {
        self.send_json(&json!({ "type": "event", "room": room, "channel": channel, "payload": payload })).await;
    }

    /// The next frame, which must be an event.
    pub async fn event(&mut self) -> Value {
        let v = self.recv().await;
        assert_eq!(v["type"], "event", "expected an event: {v}");
        v
    }

    /// Asserts nothing arrives within `d`.
    pub async fn silent_for(&mut self, d: Duration) {
        assert!(self.pending.is_empty(), "unexpected frames: {:?}", self.pending);
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(d, self.ws.next()).await {
            panic!("unexpected frame: {t}");
        }
    }
}

pub fn close_code(c: CloseCode) -> u16 {
    u16::from(c)
}

/// Plain HTTP GET/POST with a tiny client over a raw socket (keeps the dependency tree lean).
pub async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await.expect("http timeout").expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

pub type Shared<T> = Arc<T>;

/// A WebSocket client that never reads, with a tiny receive buffer, so that the server's writes
/// to it block almost at once (a stalled reader).
pub async fn stalled_client(addr: SocketAddr) -> Ws {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = sock.connect(addr).await.expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(ws_url(addr), MaybeTlsStream::Plain(stream)).await.expect("upgrade");
    ws
}

/// Sends a text frame on a raw socket.
pub async fn send_raw(ws: &mut Ws, text: String) {
    ws.send(Message::text(text)).await.expect("send");
}

/// The value of one series of `/metrics` (e.g. `arqonbus_closes_total{code="4008"}`); 0 when absent.
pub async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let (_, text) = http(addr, "GET", "/metrics", &[], "").await;
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok()).unwrap_or(0.0)
}

/// Polls `/metrics` (for up to `within`) until `series` satisfies `pred`; returns its last value.
pub async fn metric_until(addr: SocketAddr, series: &str, within: Duration, pred: impl Fn(f64) -> bool) -> f64 {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let v = metric(addr, series).await;
        if pred(v) || tokio::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens `/ws` with an optional bearer token, expecting the handshake to be refused: the HTTP
/// status and the body's JSON. Panics if the upgrade succeeds.
pub async fn refused_handshake(addr: SocketAddr, token: Option<&str>) -> (u16, Value) {
    let mut req = ws_url(addr).into_client_request().expect("request");
    if let Some(t) = token {
        req.headers_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => panic!("the handshake was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            (resp.status().as_u16(), serde_json::from_slice(body).unwrap_or(Value::Null))
        }
        Err(e) => panic!("connect failed: {e}"),
    }
}

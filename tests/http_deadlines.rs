//! HTTP deadlines: half-sent requests and idle keep-alive connections are closed after
//! `server.header_timeout_ms`, connections that are not WebSockets are capped
//! (`server.max_pending_connections`), and a slow request body gets 408 after
//! `server.body_timeout_ms`.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the server closes `s` within `within` (a read returns EOF or an error).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

async fn half_sent(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    s.write_all(head.as_bytes()).await.expect("write");
    s
}

#[tokio::test]
async fn half_sent_upgrade_requests_are_closed_after_the_header_timeout_and_block_nobody() {
    let mut cfg = config();
    cfg.server.header_timeout_ms = 1000;
    let node = start(cfg).await;
    let mut stuck = Vec::new();
    for _ in 0..300 {
        stuck.push(half_sent(node.addr()).await);
    }
    // New clients get in at once, WebSocket and HTTP alike.
    let mut c = Client::connect(node.addr()).await;
    c.ok("ping", serde_json::json!({})).await;
    assert_eq!(http(node.addr(), "GET", "/healthz", &[], "").await.0, 200);
    // And every half-sent request is dropped by the server, none held on.
    for s in &mut stuck {
        assert!(closed_within(s, Duration::from_secs(6)).await, "a half-sent request was held open");
    }
}

#[tokio::test]
async fn connections_that_are_not_websockets_are_capped_until_the_header_timeout_frees_them() {
    let mut cfg = config();
    cfg.server.header_timeout_ms = 800;
    cfg.server.max_pending_connections = 20;
    let node = start(cfg).await;
    let mut stuck = Vec::new();
    for _ in 0..20 {
        stuck.push(half_sent(node.addr()).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The 21st is closed at accept, without an answer.
    let mut over = TcpStream::connect(node.addr()).await.expect("connect");
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, over.read_to_end(&mut buf)).await.expect("closed");
    assert!(buf.is_empty(), "answered over the cap: {}", String::from_utf8_lossy(&buf));
    // Once the header timeout dropped them, clients get in again.
    for s in &mut stuck {
        assert!(closed_within(s, Duration::from_secs(6)).await);
    }
    assert!(metric(node.addr(), "arqonbus_connections_refused_total{reason=\"pending\"}").await >= 1.0);
    let mut c = Client::connect(node.addr()).await;
    c.ok("ping", serde_json::json!({})).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let mut cfg = config();
    cfg.server.header_timeout_ms = 500;
    let node = start(cfg).await;
    let mut s = TcpStream::connect(node.addr()).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.expect("answer").expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    // Kept alive, then silent: closed by the server.
    assert!(closed_within(&mut s, Duration::from_secs(5)).await, "an idle keep-alive connection was held open");
}

#[tokio::test]
async fn a_slow_request_body_gets_408_and_publishes_nothing() {
    let mut cfg = config();
    cfg.server.body_timeout_ms = 500;
    cfg.http.api_key = Some("slow-body-key-0123456789".into());
    let node = start(cfg).await;
    let mut s = TcpStream::connect(node.addr()).await.expect("connect");
    let head = "POST /v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer slow-body-key-0123456789\r\n\
                content-type: application/json\r\ncontent-length: 200\r\n\r\n{\"room\":\"r\",";
    s.write_all(head.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await.expect("answered").expect("read");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or_default()).expect("JSON body");
    assert_eq!(body["error"]["code"], "TIMEOUT");
    let mut c = Client::connect(node.addr()).await;
    let h = c.ok("history", serde_json::json!({"room":"r","channel":"c"})).await;
    assert_eq!(h["events"], serde_json::json!([]));
}

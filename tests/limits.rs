//! Per-connection limits: slow consumers (4008), the publish token bucket, heartbeats.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_slow_consumer_is_closed_with_4008_and_fast_ones_are_unaffected() {
    let mut cfg = config();
    cfg.limits.outbound_queue = 16;
    cfg.limits.max_frame_bytes = 1 << 20;
    let node = start(cfg).await;
    let mut slow = Client::connect(node.addr()).await;
    slow.ok("create_channel", json!({"room":"r","channel":"c","history_size":2000})).await;
    slow.subscribe("r", "c").await;
    let mut fast = Client::connect(node.addr()).await;
    fast.subscribe("r", "c").await;
    let addr = node.addr();
    const N: u64 = 1500;
    let publisher = tokio::spawn(async move {
        let mut p = Client::connect(addr).await;
        let pad = "x".repeat(32 * 1024);
        for i in 0..N {
            p.publish_silent("r", "c", json!({ "i": i, "pad": pad })).await;
        }
        p.ok("ping", json!({})).await;
    });
    // The fast subscriber reads everything, in order, while the slow one reads nothing.
    for want in 1..=N {
        assert_eq!(fast.event().await["offset"], want);
    }
    publisher.await.unwrap();
    assert_eq!(slow.closed().await, Some(4008));
    // Nothing is lost for the slow client: it resumes where it was.
    let mut again = Client::connect(node.addr()).await;
    let r = again.ok("subscribe", json!({"room":"r","channel":"c","since":{"offset":0}})).await;
    assert_eq!(r["recovered"], true);
    assert_eq!(r["replayed"], N);
    let (status, metrics) = http(node.addr(), "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    let line = metrics.lines().find(|l| l.starts_with("arqonbus_slow_consumer_disconnects_total")).unwrap();
    assert!(!line.ends_with(" 0"), "{line}");
}

#[tokio::test]
async fn publishing_over_the_token_bucket_is_rate_limited() {
    let mut cfg = config();
    cfg.limits.publish_rate_per_s = 5;
    cfg.limits.publish_burst = 5;
    let node = start(cfg).await;
    let mut s = Client::connect(node.addr()).await;
    s.subscribe("r", "c").await;
    let mut p = Client::connect(node.addr()).await;
    for _ in 0..5 {
        p.publish("r", "c", json!(1)).await;
    }
    let v = p.request(json!({"type":"event","room":"r","channel":"c","payload":"over"})).await;
    assert_eq!(v["error"]["code"], "RATE_LIMITED");
    let retry = v["error"]["retry_after_ms"].as_u64().unwrap();
    assert!((1..=1000).contains(&retry), "{retry}");
    // Nothing was published by the refused frame.
    for want in 1..=5 {
        assert_eq!(s.event().await["offset"], want);
    }
    s.silent_for(Duration::from_millis(100)).await;
    // Rate limiting is not a protocol violation: the connection stays open.
    p.ok("ping", json!({})).await;
    tokio::time::sleep(Duration::from_millis(retry + 50)).await;
    p.publish("r", "c", json!("after")).await;
    assert_eq!(s.event().await["payload"], "after");
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_two_heartbeats() {
    let mut cfg = config();
    cfg.limits.heartbeat_s = 1;
    let node = start(cfg).await;
    let mut quiet = Client::connect(node.addr()).await;
    let mut chatty = Client::connect(node.addr()).await;
    // The quiet client does not read, so it never answers pings.
    let start = std::time::Instant::now();
    for _ in 0..6 {
        chatty.ok("ping", json!({})).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(quiet.closed().await, Some(1001));
    assert!(start.elapsed() >= Duration::from_secs(2));
    // The client that kept talking (and answering pings) is still open.
    chatty.ok("ping", json!({})).await;
}

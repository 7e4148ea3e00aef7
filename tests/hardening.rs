//! What one hostile client can make a node hold: every byte queued to a connection draws on one
//! budget (`limits.outbound_queue_bytes`), a socket that takes no bytes is dropped after
//! `limits.write_timeout_ms`, and the heartbeat is never starved by a command waiting on a slow
//! reader. Bounds are asserted through `/metrics`, not RSS.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

const QUEUED: &str = "arqonbus_outbound_queued_bytes";

/// Publishes `n` events of about `size` bytes each to `room:channel`.
async fn fill(addr: std::net::SocketAddr, channel: &str, n: usize, size: usize) {
    let mut p = Client::connect(addr).await;
    let pad = "x".repeat(size);
    for i in 0..n {
        p.publish_silent("r", channel, json!({ "i": i, "pad": pad })).await;
    }
    p.ok("ping", json!({})).await;
}

#[tokio::test]
async fn pipelined_history_from_a_reader_that_never_reads_is_closed_by_the_byte_budget() {
    let node = start(config()).await;
    let addr = node.addr();
    fill(addr, "c", 60, 8 * 1024).await;
    let mut stalled = stalled_client(addr).await;
    for i in 0..200 {
        let cmd = json!({"type":"command","id":format!("h{i}"),"command":"history","args":{"room":"r","channel":"c","limit":60}});
        send_raw(&mut stalled, cmd.to_string()).await;
    }
    // 200 replies of ~500 KB each would be ~100 MB: the budget closes the connection long before.
    let closes = metric_until(addr, "arqonbus_closes_total{code=\"4008\"}", WAIT, |v| v >= 1.0).await;
    assert_eq!(closes, 1.0, "closed with 4008 as a slow consumer");
    let peak = metric(addr, "arqonbus_slow_consumer_disconnects_total").await;
    assert_eq!(peak, 1.0);
    // Everything it held is given back, and the socket is gone.
    assert_eq!(metric_until(addr, QUEUED, WAIT, |v| v == 0.0).await, 0.0);
    assert_eq!(metric_until(addr, "arqonbus_connections", WAIT, |v| v == 0.0).await, 0.0);
    drop(stalled);
}

#[tokio::test]
async fn a_stalled_reader_replaying_a_large_backlog_is_closed_by_the_budget_when_live_events_pile_up() {
    let node = start(config()).await;
    let addr = node.addr();
    fill(addr, "c", 800, 4 * 1024).await; // ~3.3 MB of history
    let mut stalled = stalled_client(addr).await;
    let sub =
        json!({"type":"command","id":"s","command":"subscribe","args":{"room":"r","channel":"c","since":{"offset":0}}});
    send_raw(&mut stalled, sub.to_string()).await;
    // The replay waits for room; live events held meanwhile draw on the same budget.
    fill(addr, "c", 400, 4 * 1024).await;
    assert_eq!(metric_until(addr, "arqonbus_closes_total{code=\"4008\"}", WAIT, |v| v >= 1.0).await, 1.0);
    assert_eq!(metric_until(addr, QUEUED, WAIT, |v| v == 0.0).await, 0.0);
    assert_eq!(metric_until(addr, "arqonbus_connections", WAIT, |v| v == 0.0).await, 0.0);
    // The node still serves everyone else, and the stalled client can resume.
    let mut again = Client::connect(addr).await;
    let r = again.ok("subscribe", json!({"room":"r","channel":"c","since":{"offset":1190}})).await;
    assert_eq!(r["replayed"], 10);
    drop(stalled);
}

#[tokio::test]
async fn the_heartbeat_fires_while_a_replay_waits_for_a_reader_that_never_reads() {
    let mut cfg = config();
    cfg.limits.heartbeat_s = 1;
    let node = start(cfg).await;
    let addr = node.addr();
    fill(addr, "c", 800, 4 * 1024).await;
    let mut stalled = stalled_client(addr).await;
    let sub =
        json!({"type":"command","id":"s","command":"subscribe","args":{"room":"r","channel":"c","since":{"offset":0}}});
    send_raw(&mut stalled, sub.to_string()).await;
    // The subscribe command is still replaying (waiting for room) when the heartbeat runs out:
    // the idle timer closes the connection (1001) all the same.
    assert_eq!(metric_until(addr, "arqonbus_closes_total{code=\"1001\"}", WAIT, |v| v >= 1.0).await, 1.0);
    assert_eq!(metric_until(addr, "arqonbus_connections", WAIT, |v| v == 0.0).await, 0.0);
    assert_eq!(metric_until(addr, QUEUED, WAIT, |v| v == 0.0).await, 0.0);
    drop(stalled);
}

#[tokio::test]
async fn after_a_4008_the_slot_of_a_peer_that_never_reads_is_free_within_the_write_timeout() {
    let mut cfg = config();
    cfg.server.max_connections = 2;
    cfg.limits.write_timeout_ms = 1000;
    let node = start(cfg).await;
    let addr = node.addr();
    let mut stalled = stalled_client(addr).await;
    let sub = json!({"type":"command","id":"s","command":"subscribe","args":{"room":"r","channel":"c"}});
    send_raw(&mut stalled, sub.to_string()).await;
    let mut p = Client::connect(addr).await;
    // Wait until the stalled client is subscribed, then overflow its budget.
    let info = status_until(&mut p, |_| true).await;
    assert_eq!(info["connections"], 2);
    for _ in 0..100 {
        // NOT_FOUND until the stalled client's subscribe has created the channel.
        let ci = p.command("channel_info", json!({"room":"r","channel":"c"})).await;
        if ci["result"]["subscribers"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pad = "x".repeat(32 * 1024);
    for i in 0..200 {
        p.publish_silent("r", "c", json!({ "i": i, "pad": pad })).await;
    }
    p.ok("ping", json!({})).await;
    assert_eq!(metric_until(addr, "arqonbus_closes_total{code=\"4008\"}", WAIT, |v| v >= 1.0).await, 1.0);
    // The socket takes no bytes, not even the close frame: it is dropped, and its slot freed, at
    // the write timeout — not held until the peer goes away.
    let gone = metric_until(addr, "arqonbus_connections", Duration::from_secs(4), |v| v == 1.0).await;
    assert_eq!(gone, 1.0, "the stalled socket still counts as a connection");
    let c = Client::connect_with(addr, None).await;
    assert!(c.is_ok(), "a new connection is accepted at max_connections once the slot is free");
    assert_eq!(metric(addr, QUEUED).await, 0.0);
    drop(stalled);
}

#[tokio::test]
async fn welcome_announces_the_byte_budget_and_reply_cap() {
    let node = start(config()).await;
    let c = Client::connect(node.addr()).await;
    let limits = &c.welcome["payload"]["limits"];
    assert_eq!(limits["outbound_queue_bytes"], 1 << 20);
    assert_eq!(limits["max_reply_bytes"], 1 << 20);
    assert_eq!(limits["command_rate_per_s"], 100);
    assert_eq!(limits["command_burst"], 200);
}

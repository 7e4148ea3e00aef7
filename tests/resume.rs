//! Resuming with `since`: gapless replay (paged for long gaps), `recovered`, epochs, and the
//! concurrent-publisher ordering guarantee.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;

/// Publishes `n` events with acks; returns the last offset.
async fn publish_n(p: &mut Client, room: &str, channel: &str, n: u64) -> u64 {
    let mut last = 0;
    for i in 0..n {
        last = p.publish(room, channel, json!({ "i": i })).await["offset"].as_u64().unwrap();
    }
    last
}

/// Reads `n` events and checks they are exactly `first..first+n` in order.
async fn expect_offsets(c: &mut Client, first: u64, n: u64) {
    for want in first..first + n {
        let e = c.event().await;
        assert_eq!(e["offset"], want, "gap or duplicate: {e}");
    }
}

#[tokio::test]
async fn resume_after_disconnect_replays_the_gap_then_goes_live() {
    let node = start(config()).await;
    let mut p = Client::connect(node.addr()).await;
    let mut s = Client::connect(node.addr()).await;
    let sub = s.subscribe("r", "c").await;
    let epoch = sub["epoch"].clone();
    publish_n(&mut p, "r", "c", 3).await;
    expect_offsets(&mut s, 1, 3).await;
    drop(s);
    publish_n(&mut p, "r", "c", 4).await; // 4..=7 missed
    let mut s = Client::connect(node.addr()).await;
    let r = s.ok("subscribe", json!({"room":"r","channel":"c","since":{"offset":3,"epoch":epoch}})).await;
    assert_eq!(r["recovered"], true);
    assert_eq!(r["replayed"], 4);
    assert_eq!(r["offset"], 7);
    assert_eq!(r["epoch"], epoch);
    expect_offsets(&mut s, 4, 4).await;
    p.publish("r", "c", json!("live")).await;
    let e = s.event().await;
    assert_eq!(e["offset"], 8);
    assert_eq!(e["payload"], "live");
}

#[tokio::test]
async fn a_gap_longer_than_one_page_is_replayed_in_order() {
    let mut cfg = config();
    cfg.channels.replay_page = 10;
    cfg.limits.outbound_queue = 16;
    let node = start(cfg).await;
    let mut p = Client::connect(node.addr()).await;
    publish_n(&mut p, "r", "c", 250).await;
    let mut s = Client::connect(node.addr()).await;
    let r = s.ok("subscribe", json!({"room":"r","channel":"c","since":{"offset":5}})).await;
    assert_eq!(r["recovered"], true);
    assert_eq!(r["replayed"], 245);
    expect_offsets(&mut s, 6, 245).await;
    p.publish("r", "c", json!("live")).await;
    assert_eq!(s.event().await["offset"], 251);
}

#[tokio::test]
async fn live_events_during_a_long_replay_are_neither_lost_nor_doubled() {
    let mut cfg = config();
    cfg.channels.replay_page = 7;
    let node = start(cfg).await;
    let mut p = Client::connect(node.addr()).await;
    publish_n(&mut p, "r", "c", 500).await;
    let addr = node.addr();
    let publisher = tokio::spawn(async move {
        let mut p2 = Client::connect(addr).await;
        for i in 0..300 {
            p2.publish_silent("r", "c", json!({ "live": i })).await;
        }
        p2.ok("ping", json!({})).await; // all 300 were processed before this answer
    });
    let mut s = Client::connect(node.addr()).await;
    s.ok("subscribe", json!({"room":"r","channel":"c","since":{"offset":0}})).await;
    publisher.await.unwrap();
    expect_offsets(&mut s, 1, 800).await;
}

#[tokio::test]
async fn since_older_than_retention_is_not_recovered_but_replays_what_is_left() {
    let node = start(config()).await;
    let mut p = Client::connect(node.addr()).await;
    p.ok("create_channel", json!({"room":"r","channel":"small","history_size":5})).await;
    publish_n(&mut p, "r", "small", 12).await; // retained: 8..=12
    let mut s = Client::connect(node.addr()).await;
    let r = s.ok("subscribe", json!({"room":"r","channel":"small","since":{"offset":2}})).await;
    assert_eq!(r["recovered"], false);
    assert_eq!(r["replayed"], 5);
    expect_offsets(&mut s, 8, 5).await;
}

#[tokio::test]
async fn another_epoch_is_not_recovered() {
    let node = start(config()).await;
    let mut p = Client::connect(node.addr()).await;
    publish_n(&mut p, "r", "c", 2).await;
    let mut s = Client::connect(node.addr()).await;
    let r = s.ok("subscribe", json!({"room":"r","channel":"c","since":{"offset":1,"epoch":"not-this-one"}})).await;
    assert_eq!(r["recovered"], false);
    assert_eq!(r["replayed"], 2);
    expect_offsets(&mut s, 1, 2).await;
}

#[tokio::test]
async fn since_at_the_top_replays_nothing() {
    let node = start(config()).await;
    let mut p = Client::connect(node.addr()).await;
    publish_n(&mut p, "r", "c", 3).await;
    let mut s = Client::connect(node.addr()).await;
    let r = s.ok("subscribe", json!({"room":"r","channel":"c","since":{"offset":3}})).await;
    assert_eq!(r["recovered"], true);
    assert_eq!(r["replayed"], 0);
    p.publish("r", "c", json!(1)).await;
    assert_eq!(s.event().await["offset"], 4);
}

#[tokio::test]
async fn concurrent_publishers_give_every_subscriber_one_contiguous_sequence() {
    const PUBLISHERS: u64 = 4;
    const EACH: u64 = 2000;
    let mut cfg = config();
    // The subscribers read only once everything is published: room for all of it.
    cfg.limits.outbound_queue = 16_384;
    cfg.limits.outbound_queue_bytes = 16 << 20;
    cfg.limits.max_reply_bytes = 1 << 20;
    let node = start(cfg).await;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let mut s = Client::connect(node.addr()).await;
        s.subscribe("load", "c").await;
        subs.push(s);
    }
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let addr = node.addr();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            for i in 0..EACH {
                c.publish_silent("load", "c", json!({ "p": p, "i": i })).await;
            }
            c.ok("ping", json!({})).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for s in &mut subs {
        let mut seen_per_publisher = vec![0u64; PUBLISHERS as usize];
        let mut ids = HashSet::new();
        for want in 1..=PUBLISHERS * EACH {
            let e: Value = s.event().await;
            assert_eq!(e["offset"], want);
            let p = e["payload"]["p"].as_u64().unwrap() as usize;
            // Each publisher's own events keep their order.
            assert_eq!(e["payload"]["i"], seen_per_publisher[p]);
            seen_per_publisher[p] += 1;
            assert!(ids.insert(e["id"].as_str().unwrap().to_owned()), "duplicate id");
        }
        s.silent_for(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_replay_during_a_live_flood_runs_to_its_end_or_closes_with_4008_never_stalls() {
    let mut cfg = config();
    cfg.channels.history_size = 20_000;
    cfg.limits.outbound_queue_bytes = 4 << 20;
    cfg.limits.outbound_queue = 100_000;
    let node = start(cfg).await;
    let addr = node.addr();
    let pad = "x".repeat(1000);
    let mut p = Client::connect(addr).await;
    for i in 0..8000 {
        p.publish_silent("r", "flood", json!({ "i": i, "pad": pad })).await;
    }
    p.ok("ping", json!({})).await;
    let mut s = Client::connect(addr).await;
    s.send_json(&json!({"type":"command","id":"sub","command":"subscribe","args":{"room":"r","channel":"flood","since":{"offset":0}}}))
        .await;
    // Live events pile up in the subscription's hold while the replay runs (past half the budget).
    let flood = tokio::spawn(async move {
        let pad = "y".repeat(1000);
        for i in 0..3000 {
            p.publish_silent("r", "flood", json!({ "live": i, "pad": pad })).await;
        }
        p.ok("ping", json!({})).await;
    });
    let reply = s.wait_for("sub").await;
    // At least the backlog (live events that beat the subscription are replayed too).
    assert!(reply["result"]["replayed"].as_u64() >= Some(8000), "{reply}");
    let mut next = 1u64;
    // Every frame comes within WAIT (a stall panics): all 11,000 in order, or a 4008 close.
    while next <= 11_000 {
        match s.next_read().await {
            Read::Frame(e) => {
                assert_eq!(e["offset"], next, "{e}");
                next += 1;
            }
            Read::Closed(code) => {
                assert_eq!(code, Some(4008), "closed at offset {next}");
                break;
            }
        }
    }
    flood.await.unwrap();
}

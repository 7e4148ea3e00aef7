//! What a client can make the bus hold is bounded: reads create no channel, idle channels created
//! on use go away, channels per room (and per node on the memory backplane) are capped, replies
//! are cut to `limits.max_reply_bytes` and paginated, commands are rate-limited per connection.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

fn key(room: &str, channel: &str) -> Value {
    json!({ "room": room, "channel": channel })
}

#[tokio::test]
async fn ten_thousand_reads_on_distinct_names_create_no_channel() {
    let mut cfg = config();
    cfg.limits.command_rate_per_s = 1_000_000;
    cfg.limits.command_burst = 1_000_000;
    cfg.limits.http_history_rate_per_s = 1_000_000;
    cfg.http.api_key = Some("bounds-key-0123456789".into());
    let node = start(cfg).await;
    let mut c = Client::connect(node.addr()).await;
    for i in 0..10_000 {
        let (cmd, name) = (["history", "presence", "channel_info"][i % 3], format!("n{i}"));
        let frame = json!({"type":"command","id":format!("q{i}"),"command":cmd,"args":key("reads", &name)});
        c.send_json(&frame).await;
    }
    let mut answered = 0;
    while answered < 10_000 {
        let v = c.recv().await;
        let expect = if v["error"]["code"] == "NOT_FOUND" { "error" } else { "reply" };
        assert_eq!(v["type"], expect, "{v}");
        answered += 1;
    }
    let auth = [("authorization", "Bearer bounds-key-0123456789")];
    for i in 0..200 {
        let (status, _) = http(node.addr(), "GET", &format!("/v1/history?room=reads&channel=h{i}"), &auth, "").await;
        assert_eq!(status, 200);
    }
    assert_eq!(c.ok("list_channels", json!({"room": "reads"})).await, json!({"channels": [], "next_cursor": null}));
    c.err("channel_info", key("reads", "n1"), "NOT_FOUND").await;
}

#[tokio::test]
async fn idle_channels_created_on_use_expire_but_used_and_declared_ones_stay() {
    let mut cfg = config();
    cfg.channels.history_ttl_s = 1;
    cfg.channels.dedupe_window_s = 1;
    let node = start(cfg).await;
    let mut c = Client::connect(node.addr()).await;
    c.publish("idle", "gone", json!(1)).await;
    c.ok("create_channel", key("idle", "declared")).await;
    let mut watcher = Client::connect(node.addr()).await;
    watcher.subscribe("idle", "watched").await;
    // Expired: no events within retention, nobody subscribed.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = c.command("channel_info", key("idle", "gone")).await;
        if v["error"]["code"] == "NOT_FOUND" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "an idle channel never expired: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.ok("channel_info", key("idle", "declared")).await;
    c.ok("channel_info", key("idle", "watched")).await;
    // Used again, it starts over with a new epoch (the old history had expired anyway).
    assert_eq!(c.publish("idle", "gone", json!(2)).await["offset"], 1);
}

#[tokio::test]
async fn channels_per_room_are_capped_with_limit_exceeded() {
    let mut cfg = config();
    cfg.channels.max_channels_per_room = 3;
    let node = start(cfg).await;
    let mut c = Client::connect(node.addr()).await;
    for ch in ["a", "b", "c"] {
        c.publish("capped", ch, json!(1)).await;
    }
    let v = c.request(json!({"type":"event","room":"capped","channel":"d","payload":1})).await;
    assert_eq!(v["error"]["code"], "LIMIT_EXCEEDED", "{v}");
    c.err("subscribe", key("capped", "e"), "LIMIT_EXCEEDED").await;
    c.err("create_channel", key("capped", "f"), "LIMIT_EXCEEDED").await;
    // Existing channels keep working, other rooms are not affected, and a deleted one frees room.
    c.publish("capped", "a", json!(2)).await;
    c.publish("other", "d", json!(1)).await;
    c.ok("delete_channel", key("capped", "c")).await;
    c.publish("capped", "d", json!(1)).await;
}

#[tokio::test]
async fn the_memory_backplane_caps_channels_and_history_bytes_per_node() {
    let mut cfg = config();
    cfg.channels.max_channels = 5;
    cfg.channels.memory_max_bytes = 1 << 20;
    let node = start(cfg).await;
    let memory = backplane_kind() == "memory";
    let mut c = Client::connect(node.addr()).await;
    for i in 0..5 {
        c.publish(&format!("r{i}"), "c", json!(i)).await;
    }
    let v = c.request(json!({"type":"event","room":"r5","channel":"c","payload":1})).await;
    // On Redis the node holds no channels: only the per-room cap applies there.
    assert_eq!(v["type"], if memory { "error" } else { "reply" }, "{v}");
    // History bytes: about 1 MiB of 4 KiB events, then LIMIT_EXCEEDED (memory) or stored (Redis).
    let pad = "x".repeat(4096);
    let mut refused = None;
    for i in 0..400 {
        let v = c.request(json!({"type":"event","room":"r0","channel":"c","payload":{"i":i,"pad":pad}})).await;
        if v["type"] == "error" {
            refused = Some(v);
            break;
        }
    }
    match refused {
        Some(v) => {
            assert!(memory, "{v}");
            assert_eq!(v["error"]["code"], "LIMIT_EXCEEDED", "{v}");
            assert!(v["error"]["message"].as_str().unwrap().contains("memory"), "{v}");
        }
        None => assert!(!memory, "1.6 MB of history stored under a 1 MiB cap"),
    }
}

#[tokio::test]
async fn history_is_cut_to_the_reply_byte_cap_and_pages_without_gaps() {
    let mut cfg = config();
    cfg.limits.max_frame_bytes = 4096;
    cfg.limits.max_reply_bytes = 16 * 1024;
    let node = start(cfg).await;
    let mut c = Client::connect(node.addr()).await;
    let pad = "x".repeat(1000);
    for i in 0..50 {
        c.publish("big", "c", json!({ "i": i, "pad": pad })).await;
    }
    let mut seen = Vec::new();
    let mut since = 0;
    loop {
        c.send_text(format!(
            r#"{{"type":"command","id":"h{since}","command":"history","args":{{"room":"big","channel":"c","since":{since},"limit":1000}}}}"#
        ))
        .await;
        let text = c.recv_text().await;
        assert!(text.len() <= 16 * 1024, "a reply of {} bytes over the 16 KiB cap", text.len());
        let v: Value = serde_json::from_str(&text).unwrap();
        let events = v["result"]["events"].as_array().unwrap().clone();
        assert!(!events.is_empty());
        seen.extend(events.iter().map(|e| e["offset"].as_u64().unwrap()));
        since = *seen.last().unwrap();
        if v["result"]["has_more"] == false {
            break;
        }
        assert!(events.len() < 50, "the cap cut nothing");
    }
    assert_eq!(seen, (1..=50).collect::<Vec<u64>>());
    // The newest page reads backwards the same way.
    let v = c.ok("history", json!({"room":"big","channel":"c","limit":1000})).await;
    assert_eq!(v["has_more"], true);
    assert_eq!(v["events"].as_array().unwrap().last().unwrap()["offset"], 50);
}

#[tokio::test]
async fn presence_and_list_channels_paginate_with_cursors() {
    let node = start(config()).await;
    let mut subs = Vec::new();
    for _ in 0..5 {
        let mut s = Client::connect(node.addr()).await;
        s.subscribe("pg", "c").await;
        subs.push(s);
    }
    let mut c = Client::connect(node.addr()).await;
    let mut ids = Vec::new();
    let mut cursor = Value::Null;
    for want in [2, 2, 1] {
        let mut args = json!({"room":"pg","channel":"c","limit":2});
        if !cursor.is_null() {
            args["cursor"] = cursor.clone();
        }
        let page = c.ok("presence", args).await;
        assert_eq!(page["count"], 5);
        assert_eq!(page["clients"].as_array().unwrap().len(), want, "{page}");
        ids.extend(page["clients"].as_array().unwrap().iter().map(|e| e["client_id"].as_str().unwrap().to_owned()));
        cursor = page["next_cursor"].clone();
    }
    assert!(cursor.is_null(), "a last page has no cursor");
    let all: BTreeSet<String> = subs.iter().map(|s| s.client_id.clone()).collect();
    assert_eq!(ids, all.into_iter().collect::<Vec<_>>(), "ascending by client id, each once");
    for ch in ["e", "a", "d", "b"] {
        c.ok("create_channel", key("pg", ch)).await;
    }
    let first = c.ok("list_channels", json!({"room":"pg","limit":3})).await;
    let names = |v: &Value| v["channels"].as_array().unwrap().iter().map(|c| c["channel"].clone()).collect::<Vec<_>>();
    assert_eq!(names(&first), [json!("a"), json!("b"), json!("c")]);
    let second = c.ok("list_channels", json!({"room":"pg","limit":3,"cursor":first["next_cursor"]})).await;
    assert_eq!(names(&second), [json!("d"), json!("e")]);
    assert_eq!(second["next_cursor"], Value::Null);
    let e = c.err("presence", json!({"room":"pg","channel":"c","limit":0}), "VALIDATION_ERROR").await;
    assert_eq!(e["field"], "limit");
}

#[tokio::test]
async fn a_command_flood_is_rate_limited_and_the_node_stays_responsive() {
    let mut cfg = config();
    cfg.limits.command_rate_per_s = 100;
    cfg.limits.command_burst = 200;
    let node = start(cfg).await;
    let mut flooder = Client::connect(node.addr()).await;
    let mut other = Client::connect(node.addr()).await;
    let (mut ok, mut limited) = (0, 0);
    // As fast as the node answers: 50 batches of 100 pipelined pings.
    for batch in 0..50 {
        for i in 0..100 {
            flooder.send_json(&json!({"type":"command","id":format!("f{batch}-{i}"),"command":"ping"})).await;
        }
        for _ in 0..100 {
            let v = flooder.recv().await;
            match (v["type"].as_str(), v["error"]["code"].as_str()) {
                (Some("reply"), _) => ok += 1,
                (Some("error"), Some("RATE_LIMITED")) => {
                    assert!(v["error"]["retry_after_ms"].as_u64().unwrap() > 0);
                    limited += 1
                }
                _ => panic!("{v}"),
            }
        }
        if batch % 10 == 0 {
            // Meanwhile another client is answered.
            other.ok("ping", json!({})).await;
        }
    }
    assert!((200..1000).contains(&ok), "{ok} pings answered out of 5000");
    assert_eq!(ok + limited, 5000);
    // Refusals are not violations: the flooder is still connected.
    tokio::time::sleep(Duration::from_millis(50)).await;
    flooder.ok("ping", json!({})).await;
}

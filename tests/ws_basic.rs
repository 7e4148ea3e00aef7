//! Core protocol over real WebSockets: welcome, commands, publish/subscribe, echo,
//! idempotency, private messages.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn welcome_frame_follows_the_contract() {
    let node = start(config()).await;
    let c = Client::connect(node.addr()).await;
    let w = &c.welcome;
    assert_eq!(w["version"], "1.0");
    let p = &w["payload"];
    assert!(p["client_id"].as_str().unwrap().starts_with("c_"));
    assert_eq!(p["user"], serde_json::Value::Null);
    assert_eq!(p["node"], node.node_id());
    assert_eq!(p["protocol"], "1.0");
    assert!(p["server"].as_str().unwrap().starts_with("arqonbus 0."));
    assert_eq!(p["heartbeat_s"], 25);
    assert_eq!(p["limits"]["max_frame_bytes"], 65536);
    assert_eq!(p["limits"]["max_subscriptions"], 256);
    assert!(p["limits"]["publish_rate_per_s"].is_u64());
    assert!(p["limits"]["publish_burst"].is_u64());
}

#[tokio::test]
async fn ping_and_status() {
    let node = start(config()).await;
    let mut c = Client::connect(node.addr()).await;
    let pong = c.ok("ping", json!({})).await;
    assert_eq!(pong["pong"], true);
    assert!(pong["server_time"].as_str().unwrap().ends_with('Z'));
    let st = c.ok("status", json!({})).await;
    assert_eq!(st["node"], node.node_id());
    assert_eq!(st["protocol"], "1.0");
    assert_eq!(st["connections"], 1);
    assert_eq!(st["backplane"]["kind"], backplane_kind());
    assert_eq!(st["backplane"]["healthy"], true);
    let nodes = st["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["node"], node.node_id());
    assert_eq!(nodes[0]["connections"], 1);
    // A command frame without args works too; unknown args are refused.
    let v = c.request(json!({"type":"command","command":"ping"})).await;
    assert_eq!(v["type"], "reply");
    let e = c.err("ping", json!({"x": 1}), "VALIDATION_ERROR").await;
    assert_eq!(e["field"], "x");
    c.err("nope", json!({}), "UNKNOWN_COMMAND").await;
}

#[tokio::test]
async fn publish_reaches_every_subscriber_with_contiguous_offsets() {
    let node = start(config()).await;
    let mut a = Client::connect(node.addr()).await;
    let mut b = Client::connect(node.addr()).await;
    let mut p = Client::connect(node.addr()).await;
    let r = a.subscribe("science", "explore").await;
    assert_eq!(r["offset"], serde_json::Value::Null);
    assert_eq!(r["recovered"], serde_json::Value::Null);
    assert_eq!(r["replayed"], 0);
    assert!(r["epoch"].is_string());
    b.subscribe("science", "explore").await;
    for i in 1..=5u64 {
        let ack = p.publish("science", "explore", json!({ "n": i })).await;
        assert_eq!(ack["offset"], i);
        assert_eq!(ack["duplicate"], false);
        assert!(ack["id"].as_str().unwrap().starts_with("arq_"));
    }
    for c in [&mut a, &mut b] {
        for i in 1..=5u64 {
            let e = c.event().await;
            assert_eq!(e["offset"], i);
            assert_eq!(e["payload"]["n"], i);
            assert_eq!(e["room"], "science");
            assert_eq!(e["channel"], "explore");
            assert_eq!(e["from"], p.client_id.as_str());
            assert_eq!(e["version"], "1.0");
            assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
        }
    }
    // The publisher is not subscribed: it gets nothing but acks.
    p.silent_for(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn echo_false_hides_own_events_and_metadata_passes_through() {
    let node = start(config()).await;
    let mut a = Client::connect(node.addr()).await;
    let mut b = Client::connect(node.addr()).await;
    a.ok("subscribe", json!({"room":"r","channel":"c","echo":false})).await;
    b.subscribe("r", "c").await;
    let v = a
        .request(
            json!({"type":"event","room":"r","channel":"c","payload":1,"metadata":{"traceparent":"00-abc-def-01"}}),
        )
        .await;
    assert_eq!(v["type"], "reply");
    let e = b.event().await;
    assert_eq!(e["metadata"]["traceparent"], "00-abc-def-01");
    a.silent_for(Duration::from_millis(200)).await;
    // b publishes: a receives it (echo only concerns a's own events).
    b.publish("r", "c", json!(2)).await;
    assert_eq!(a.event().await["payload"], 2);
}

#[tokio::test]
async fn publish_without_id_is_silent_on_success() {
    let node = start(config()).await;
    let mut a = Client::connect(node.addr()).await;
    a.subscribe("r", "c").await;
    a.publish_silent("r", "c", json!("x")).await;
    let e = a.event().await;
    assert_eq!(e["payload"], "x");
    a.silent_for(Duration::from_millis(200)).await;
    // Without id an error still comes, with request_id null.
    a.send_json(&json!({"type":"event","room":"r r","channel":"c","payload":1})).await;
    let err = a.recv().await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["request_id"], serde_json::Value::Null);
}

#[tokio::test]
async fn idempotent_publish_stores_once() {
    let node = start(config()).await;
    let mut s = Client::connect(node.addr()).await;
    let mut p = Client::connect(node.addr()).await;
    s.subscribe("r", "c").await;
    let ev = json!({"type":"event","room":"r","channel":"c","payload":1,"idempotency_key":"k1"});
    let first = p.request(ev.clone()).await["result"].clone();
    let second = p.request(ev.clone()).await["result"].clone();
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(first["offset"], second["offset"]);
    assert_eq!(first["id"], second["id"]);
    // The same key on another channel is another event.
    let other = p.request(json!({"type":"event","room":"r","channel":"d","payload":1,"idempotency_key":"k1"})).await;
    assert_eq!(other["result"]["duplicate"], false);
    // A new key takes the next offset: duplicates took none.
    let third = p.publish("r", "c", json!(3)).await;
    assert_eq!(third["offset"], 2);
    assert_eq!(s.event().await["offset"], 1);
    assert_eq!(s.event().await["offset"], 2);
    s.silent_for(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn private_messages_reach_a_client_and_fail_when_nobody_is_there() {
    let node = start(config()).await;
    let mut a = Client::connect(node.addr()).await;
    let mut b = Client::connect(node.addr()).await;
    let v = a.request(json!({"type":"private","to":{"client": b.client_id},"payload":{"hi":1}})).await;
    assert_eq!(v["type"], "reply", "{v}");
    assert_eq!(v["result"]["delivered"], 1);
    let m = b.recv().await;
    assert_eq!(m["type"], "private");
    assert_eq!(m["from"], a.client_id.as_str());
    assert_eq!(m["to"]["client"], b.client_id.as_str());
    assert_eq!(m["payload"]["hi"], 1);
    assert!(m.get("offset").is_none());
    let v = a.request(json!({"type":"private","to":{"client":"c_nobody"},"payload":1})).await;
    assert_eq!(v["error"]["code"], "NOT_CONNECTED");
    let v = a.request(json!({"type":"private","to":{"user":"ghost"},"payload":1})).await;
    assert_eq!(v["error"]["code"], "NOT_CONNECTED");
}

#[tokio::test]
async fn subscribe_errors() {
    let mut cfg = config();
    cfg.limits.max_subscriptions = 2;
    let node = start(cfg).await;
    let mut a = Client::connect(node.addr()).await;
    a.subscribe("r", "c1").await;
    a.err("subscribe", json!({"room":"r","channel":"c1"}), "ALREADY_SUBSCRIBED").await;
    a.subscribe("r", "c2").await;
    a.err("subscribe", json!({"room":"r","channel":"c3"}), "LIMIT_EXCEEDED").await;
    a.ok("unsubscribe", json!({"room":"r","channel":"c1"})).await;
    a.err("unsubscribe", json!({"room":"r","channel":"c1"}), "NOT_SUBSCRIBED").await;
    a.subscribe("r", "c3").await;
    let e = a.err("subscribe", json!({"room":"r","channel":"bad name"}), "VALIDATION_ERROR").await;
    assert_eq!(e["field"], "channel");
    let e = a.err("subscribe", json!({"channel":"x"}), "VALIDATION_ERROR").await;
    assert_eq!(e["field"], "room");
    let e = a.err("subscribe", json!({"room":"r","channel":"c9","since":{"offset":-1}}), "VALIDATION_ERROR").await;
    assert_eq!(e["field"], "since.offset");
}

#[tokio::test]
async fn unsubscribed_clients_stop_receiving() {
    let node = start(config()).await;
    let mut a = Client::connect(node.addr()).await;
    a.subscribe("r", "c").await;
    a.publish("r", "c", json!(1)).await;
    assert_eq!(a.event().await["offset"], 1);
    a.ok("unsubscribe", json!({"room":"r","channel":"c"})).await;
    a.publish("r", "c", json!(2)).await;
    a.silent_for(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn reserved_rooms_refuse_publishing() {
    let node = start(config()).await;
    let mut a = Client::connect(node.addr()).await;
    let v = a.request(json!({"type":"event","room":"_sys","channel":"activity","payload":1})).await;
    assert_eq!(v["error"]["code"], "FORBIDDEN");
    a.err("create_channel", json!({"room":"_x","channel":"c"}), "FORBIDDEN").await;
}

#[tokio::test]
async fn activity_stream_reports_connections() {
    let node = start(config()).await;
    let mut admin = Client::connect(node.addr()).await;
    admin.subscribe("_sys", "activity").await;
    let other = Client::connect(node.addr()).await;
    // Skip our own "subscribed" event, then see the other client connect.
    loop {
        let e = admin.event().await;
        if e["payload"]["kind"] == "connected" && e["payload"]["client_id"] == other.client_id.as_str() {
            break;
        }
    }
    drop(other);
    loop {
        let e = admin.event().await;
        if e["payload"]["kind"] == "disconnected" {
            break;
        }
    }
}

/// The next `error` activity event about `client_id`, skipping every other activity.
async fn error_activity(watcher: &mut Client, client_id: &str) -> Value {
    loop {
        let e = watcher.event().await;
        assert_eq!((e["room"].as_str(), e["channel"].as_str()), (Some("_sys"), Some("activity")), "{e}");
        if e["payload"]["kind"] == "error" && e["payload"]["client_id"] == client_id {
            return e;
        }
    }
}

#[tokio::test]
async fn activity_stream_reports_errors_without_payloads() {
    let mut cfg = config();
    cfg.limits.max_violations = 2;
    let node = start(cfg).await;
    let mut admin = Client::connect(node.addr()).await;
    admin.subscribe("_sys", "activity").await;
    let mut bad = Client::connect(node.addr()).await;
    let who = bad.client_id.clone();

    // A bad frame: VALIDATION_ERROR, reported with what is known of it and nothing it carried.
    let frame =
        json!({"type":"event","id":"b1","room":"science","channel":"x","payload":{"secret":"MARKER-7"},"bogus":1});
    let v = bad.request(frame).await;
    assert_eq!(v["error"]["code"], "VALIDATION_ERROR", "{v}");
    let e = error_activity(&mut admin, &who).await;
    assert_eq!(
        e["payload"],
        json!({"kind":"error","client_id":who,"user":null,"code":"VALIDATION_ERROR","type":"event"})
    );
    assert!(!e.to_string().contains("MARKER"), "{e}");

    // A refused well-formed command names the command and its channel (and resets the count).
    bad.err("unsubscribe", json!({"room":"science","channel":"x"}), "NOT_SUBSCRIBED").await;
    let e = error_activity(&mut admin, &who).await;
    assert_eq!(
        e["payload"],
        json!({"kind":"error","client_id":who,"user":null,"code":"NOT_SUBSCRIBED","type":"command",
               "command":"unsubscribe","room":"science","channel":"x"})
    );
    // A refused publish names its channel.
    let v = bad.request(json!({"type":"event","room":"_sys","channel":"x","payload":"MARKER-8"})).await;
    assert_eq!(v["error"]["code"], "FORBIDDEN", "{v}");
    let e = error_activity(&mut admin, &who).await;
    assert_eq!(
        e["payload"],
        json!({"kind":"error","client_id":who,"user":null,"code":"FORBIDDEN","type":"event","room":"_sys","channel":"x"})
    );
    assert!(!e.to_string().contains("MARKER"), "{e}");

    // Two violations in a row (max_violations = 2): the second error closes with 1008, and its
    // activity event says so.
    bad.send_text("not json MARKER-9").await;
    bad.send_text("{\"type\":\"nope\"}").await;
    assert_eq!(bad.closed().await, Some(1008));
    let e = error_activity(&mut admin, &who).await;
    assert_eq!(e["payload"], json!({"kind":"error","client_id":who,"user":null,"code":"INVALID_JSON"}));
    let e = error_activity(&mut admin, &who).await;
    assert_eq!(e["payload"], json!({"kind":"error","client_id":who,"user":null,"code":"UNKNOWN_TYPE","close":1008}));
    assert!(!e.to_string().contains("MARKER"), "{e}");
}

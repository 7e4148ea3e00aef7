//! Channel administration, presence and history (§4.3, §4.6–4.13), on one node and on a
//! 2-node cluster sharing one in-memory bus.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(200);

fn key(room: &str, channel: &str) -> Value {
    json!({ "room": room, "channel": channel })
}

/// `room`/`channel` args plus `extra`.
fn args(room: &str, channel: &str, extra: Value) -> Value {
    let mut a = key(room, channel);
    for (k, v) in extra.as_object().expect("object") {
        a[k] = v.clone();
    }
    a
}

/// RFC 3339 UTC with exactly three fraction digits and `Z`.
fn assert_timestamp(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    assert!(s.len() == 24 && s.ends_with('Z') && s.as_bytes()[19] == b'.', "{s}");
    assert!(chrono::DateTime::parse_from_rfc3339(s).is_ok(), "{s}");
}

fn offsets(result: &Value) -> Vec<u64> {
    let events = result["events"].as_array().unwrap_or_else(|| panic!("no events: {result}"));
    events.iter().map(|e| e["offset"].as_u64().expect("offset")).collect()
}

/// The next frame, which must be a `system` frame of `event` for `room:channel`.
async fn system(c: &mut Client, event: &str, room: &str, channel: &str) -> Value {
    let f = c.recv().await;
    assert_eq!(f["type"], "system", "{f}");
    assert_eq!(f["event"], event, "{f}");
    assert_eq!(f["version"], "1.0", "{f}");
    assert_eq!((f["room"].as_str(), f["channel"].as_str()), (Some(room), Some(channel)), "{f}");
    f
}

/// Expects a `join` or `leave` of `who` (no auth: user and info are null).
async fn presence_frame(c: &mut Client, event: &str, room: &str, channel: &str, who: &str) {
    let f = system(c, event, room, channel).await;
    assert_eq!(f["payload"], json!({"client_id": who, "user": null, "info": null}), "{f}");
}

/// Waits on a `_sys:activity` subscriber until `client_id` has disconnected (its
/// subscriptions and presence are released before that event).
async fn await_disconnect(watcher: &mut Client, client_id: &str) {
    loop {
        let e = watcher.event().await;
        if e["payload"]["kind"] == "disconnected" && e["payload"]["client_id"] == client_id {
            return;
        }
    }
}

async fn publish_n(c: &mut Client, room: &str, channel: &str, n: u64) {
    for i in 1..=n {
        c.publish(room, channel, json!({ "n": i })).await;
    }
}

#[tokio::test]
async fn create_channel_returns_its_info_and_refuses_duplicates() {
    let node = start(config()).await;
    let mut c = Client::connect(node.addr()).await;
    let a = args("science", "lab", json!({"description":"Lab chatter","history_size":5000,"presence_events":true}));
    let info = c.ok("create_channel", a).await;
    assert_eq!(info["room"], "science");
    assert_eq!(info["channel"], "lab");
    assert_eq!(info["description"], "Lab chatter");
    assert_eq!(info["history_size"], 5000);
    assert_eq!(info["history_ttl_s"], 86400);
    assert_eq!(info["presence_events"], true);
    assert_eq!(info["offset"], Value::Null);
    assert_eq!(info["subscribers"], 0);
    assert!(info["epoch"].as_str().is_some_and(|e| !e.is_empty()), "{info}");
    assert_timestamp(&info["created_at"]);
    assert_eq!(c.ok("channel_info", key("science", "lab")).await, info);
    c.err("create_channel", key("science", "lab"), "CHANNEL_EXISTS").await;
    // A channel that was auto-created exists too.
    c.publish("science", "auto", json!(1)).await;
    c.err("create_channel", key("science", "auto"), "CHANNEL_EXISTS").await;
    c.err("create_channel", key("_mine", "c"), "FORBIDDEN").await;
    // Argument bounds name the argument.
    let bad = [
        (json!({"history_size": 100_001}), "history_size"),
        (json!({"history_size": -1}), "history_size"),
        (json!({"history_ttl_s": 0}), "history_ttl_s"),
        (json!({"history_ttl_s": 2_592_001}), "history_ttl_s"),
        (json!({"description": "d".repeat(257)}), "description"),
        (json!({"presence_events": "yes"}), "presence_events"),
        (json!({"colour": "red"}), "colour"),
    ];
    for (extra, field) in bad {
        let e = c.err("create_channel", args("science", "x", extra), "VALIDATION_ERROR").await;
        assert_eq!(e["field"], field, "{e}");
    }
    // Limits are inclusive.
    let edge = json!({"history_size": 0, "history_ttl_s": 2_592_000, "description": "d".repeat(256)});
    let info = c.ok("create_channel", args("science", "edge", edge)).await;
    assert_eq!(info["history_size"], 0);
    assert_eq!(info["history_ttl_s"], 2_592_000);
}

#[tokio::test]
async fn description_limit_counts_characters_not_bytes() {
    let node = start(config()).await;
    let mut c = Client::connect(node.addr()).await;
    let text = "é".repeat(256); // 256 characters, 512 bytes
    let info = c.ok("create_channel", args("r", "c", json!({ "description": text }))).await;
    assert_eq!(info["description"], text.as_str());
    let e = c.err("create_channel", args("r", "d", json!({"description": "é".repeat(257)})), "VALIDATION_ERROR").await;
    assert_eq!(e["field"], "description");
}

#[tokio::test]
async fn default_channel_settings() {
    let node = start(config()).await;
    let mut c = Client::connect(node.addr()).await;
    let declared = c.ok("create_channel", key("d", "declared")).await;
    // Created on use by a subscription (a read such as channel_info creates nothing).
    c.subscribe("d", "auto").await;
    c.ok("unsubscribe", key("d", "auto")).await;
    let auto = c.ok("channel_info", key("d", "auto")).await;
    for info in [&declared, &auto] {
        assert_eq!(info["description"], Value::Null, "{info}");
        assert_eq!(info["history_size"], 1000, "{info}");
        assert_eq!(info["history_ttl_s"], 86400, "{info}");
        assert_eq!(info["presence_events"], false, "{info}");
        assert_eq!(info["offset"], Value::Null, "{info}");
        assert_eq!(info["subscribers"], 0, "{info}");
        assert_timestamp(&info["created_at"]);
    }
}

#[tokio::test]
async fn delete_channel_ends_subscriptions_on_every_node_and_resets_the_stream() {
    let nodes = cluster(config(), 2).await;
    let mut admin = Client::connect(nodes[0].addr()).await;
    let mut a = Client::connect(nodes[0].addr()).await;
    let mut b = Client::connect(nodes[1].addr()).await;
    let old_epoch = admin.ok("create_channel", key("r", "doomed")).await["epoch"].clone();
    a.subscribe("r", "doomed").await;
    b.subscribe("r", "doomed").await;
    publish_n(&mut admin, "r", "doomed", 3).await;
    for c in [&mut a, &mut b] {
        for want in 1..=3 {
            assert_eq!(c.event().await["offset"], want);
        }
    }
    assert_eq!(admin.ok("delete_channel", key("r", "doomed")).await, json!({}));
    for c in [&mut a, &mut b] {
        let f = system(c, "unsubscribed", "r", "doomed").await;
        assert_eq!(f["payload"], json!({"reason": "channel_deleted"}));
    }
    admin.err("delete_channel", key("r", "doomed"), "NOT_FOUND").await;
    // Recreated: a new epoch, no history, offsets from 1.
    let info = admin.ok("create_channel", key("r", "doomed")).await;
    assert_ne!(info["epoch"], old_epoch);
    assert_eq!(info["offset"], Value::Null);
    let h = admin.ok("history", key("r", "doomed")).await;
    assert_eq!((h["events"].clone(), h["offset"].clone()), (json!([]), Value::Null), "{h}");
    assert_eq!(admin.publish("r", "doomed", json!("new")).await["offset"], 1);
    // The old subscriptions are over: nothing arrives, and the channel can be subscribed again.
    a.silent_for(QUIET).await;
    b.silent_for(QUIET).await;
    a.err("unsubscribe", key("r", "doomed"), "NOT_SUBSCRIBED").await;
    a.subscribe("r", "doomed").await;
    let since = json!({"since": {"offset": 3, "epoch": old_epoch}});
    let r = b.ok("subscribe", args("r", "doomed", since)).await;
    assert_eq!((r["recovered"].clone(), r["replayed"].clone()), (json!(false), json!(1)), "{r}");
    assert_eq!(r["epoch"], info["epoch"]);
    assert_eq!(b.event().await["payload"], "new");
}

#[tokio::test]
async fn missing_channels_are_not_found_when_auto_create_is_off() {
    let mut cfg = config();
    cfg.channels.auto_create = false;
    let node = start(cfg).await;
    let mut c = Client::connect(node.addr()).await;
    for cmd in ["delete_channel", "channel_info", "subscribe"] {
        c.err(cmd, key("r", "ghost"), "NOT_FOUND").await;
    }
    // Reads of a channel that does not exist find nothing, and create nothing.
    let empty = json!({"events": [], "epoch": null, "offset": null, "has_more": false});
    assert_eq!(c.ok("history", key("r", "ghost")).await, empty);
    assert_eq!(c.ok("presence", key("r", "ghost")).await, json!({"clients": [], "count": 0, "next_cursor": null}));
    let v = c.request(json!({"type":"event","room":"r","channel":"ghost","payload":1})).await;
    assert_eq!(v["error"]["code"], "NOT_FOUND", "{v}");
    c.err("unsubscribe", key("r", "ghost"), "NOT_SUBSCRIBED").await;
    assert_eq!(c.ok("list_channels", json!({"room": "r"})).await, json!({"channels": [], "next_cursor": null}));
    // Once declared, everything works.
    c.ok("create_channel", key("r", "ghost")).await;
    c.subscribe("r", "ghost").await;
    assert_eq!(c.publish("r", "ghost", json!(1)).await["offset"], 1);
    assert_eq!(c.event().await["offset"], 1);
    assert_eq!(c.ok("channel_info", key("r", "ghost")).await["offset"], 1);
    assert_eq!(offsets(&c.ok("history", key("r", "ghost")).await), vec![1]);
    assert_eq!(c.ok("presence", key("r", "ghost")).await["count"], 1);
    // With auto-create on, deleting a missing channel is NOT_FOUND as well.
    let node = start(config()).await;
    let mut c = Client::connect(node.addr()).await;
    c.err("delete_channel", key("r", "ghost"), "NOT_FOUND").await;
}

#[tokio::test]
async fn list_channels_is_sorted_by_name_and_scoped_to_the_room() {
    let nodes = cluster(config(), 2).await;
    let mut a = Client::connect(nodes[0].addr()).await;
    let mut b = Client::connect(nodes[1].addr()).await;
    for name in ["zeta", "beta.2", "alpha", "Alpha", "beta-1"] {
        a.ok("create_channel", key("lst", name)).await;
    }
    b.publish("lst", "mid", json!(1)).await; // auto-created, on the other node
    a.ok("create_channel", key("other", "aaa")).await;
    let list = b.ok("list_channels", json!({"room": "lst"})).await;
    let names: Vec<_> = list["channels"].as_array().unwrap().iter().map(|c| c["channel"].as_str().unwrap()).collect();
    assert_eq!(names, ["Alpha", "alpha", "beta-1", "beta.2", "mid", "zeta"]);
    let mid = &list["channels"][4];
    assert_eq!(mid["room"], "lst");
    assert_eq!(mid["offset"], 1);
    assert_eq!(*mid, a.ok("channel_info", key("lst", "mid")).await);
    let none = json!({"channels": [], "next_cursor": null});
    assert_eq!(a.ok("list_channels", json!({"room": "empty"})).await, none);
    // Listing creates nothing.
    assert_eq!(a.ok("list_channels", json!({"room": "empty"})).await, none);
    let e = a.err("list_channels", json!({"room": "bad room"}), "VALIDATION_ERROR").await;
    assert_eq!(e["field"], "room");
}

#[tokio::test]
async fn channel_info_counts_subscribers_on_every_node() {
    let nodes = cluster(config(), 2).await;
    let mut a = Client::connect(nodes[0].addr()).await;
    let mut b = Client::connect(nodes[1].addr()).await;
    let mut c = Client::connect(nodes[1].addr()).await;
    let opts = json!({"description": "counted", "history_size": 10, "history_ttl_s": 60});
    let created = a.ok("create_channel", args("r", "info", opts)).await;
    let epoch = a.subscribe("r", "info").await["epoch"].clone();
    b.subscribe("r", "info").await;
    c.ok("subscribe", args("r", "info", json!({"presence": false}))).await;
    publish_n(&mut a, "r", "info", 2).await;
    for client in [&mut a, &mut b] {
        let info = client.ok("channel_info", key("r", "info")).await;
        assert_eq!(info["subscribers"], 3, "presence:false subscriptions count too: {info}");
        assert_eq!(info["offset"], 2);
        assert_eq!(info["epoch"], epoch);
        assert_eq!(info["description"], "counted");
        assert_eq!((info["history_size"].clone(), info["history_ttl_s"].clone()), (json!(10), json!(60)));
        assert_eq!(info["created_at"], created["created_at"]);
    }
    c.ok("unsubscribe", key("r", "info")).await;
    assert_eq!(a.ok("channel_info", key("r", "info")).await["subscribers"], 2);
}

/// Presence entries of a `presence` result, by client id.
fn entry<'a>(result: &'a Value, client_id: &str) -> Option<&'a Value> {
    result["clients"].as_array().expect("clients").iter().find(|e| e["client_id"] == client_id)
}

#[tokio::test]
async fn presence_lists_subscribers_across_nodes() {
    let nodes = cluster(config(), 2).await;
    let mut watcher = Client::connect(nodes[0].addr()).await;
    watcher.subscribe("_sys", "activity").await;
    let mut a = Client::connect(nodes[0].addr()).await;
    let mut b = Client::connect(nodes[1].addr()).await;
    let mut hidden = Client::connect(nodes[1].addr()).await;
    a.subscribe("p", "c").await;
    b.subscribe("p", "c").await;
    hidden.ok("subscribe", args("p", "c", json!({"presence": false}))).await;
    for (asker, node) in [(&mut a, 0), (&mut hidden, 1)] {
        let p = asker.ok("presence", key("p", "c")).await;
        assert_eq!(p["count"], 2, "from node-{node}: {p}");
        assert_eq!(p["clients"].as_array().unwrap().len(), 2, "{p}");
    }
    let p = b.ok("presence", key("p", "c")).await;
    for (who, node) in [(&a.client_id, &nodes[0]), (&b.client_id, &nodes[1])] {
        let e = entry(&p, who).unwrap_or_else(|| panic!("{who} missing: {p}"));
        assert_eq!(e["node"], node.node_id());
        assert_eq!((e["user"].clone(), e["info"].clone()), (Value::Null, Value::Null));
        assert_timestamp(&e["joined_at"]);
    }
    assert!(entry(&p, &hidden.client_id).is_none(), "presence:false is listed: {p}");
    // Unsubscribe removes the entry at once.
    a.ok("unsubscribe", key("p", "c")).await;
    let p = hidden.ok("presence", key("p", "c")).await;
    assert_eq!(p["count"], 1, "{p}");
    assert!(entry(&p, &b.client_id).is_some(), "{p}");
    // Disconnecting removes it too.
    let gone = b.client_id.clone();
    drop(b);
    await_disconnect(&mut watcher, &gone).await;
    let p = a.ok("presence", key("p", "c")).await;
    assert_eq!(p, json!({"clients": [], "count": 0, "next_cursor": null}));
}

#[tokio::test]
async fn presence_events_deliver_join_and_leave_across_nodes() {
    let nodes = cluster(config(), 2).await;
    let (room, ch) = ("pe", "lobby");
    let mut a = Client::connect(nodes[0].addr()).await;
    a.ok("create_channel", args(room, ch, json!({"presence_events": true}))).await;
    a.subscribe(room, ch).await;
    let me = a.client_id.clone();
    presence_frame(&mut a, "join", room, ch, &me).await;
    // A hidden subscriber causes no join.
    let mut hidden = Client::connect(nodes[1].addr()).await;
    hidden.ok("subscribe", args(room, ch, json!({"presence": false}))).await;
    a.silent_for(QUIET).await;
    hidden.silent_for(QUIET).await;
    // A visible one is announced to every subscriber, itself included.
    let mut b = Client::connect(nodes[1].addr()).await;
    b.subscribe(room, ch).await;
    let bid = b.client_id.clone();
    for c in [&mut a, &mut b, &mut hidden] {
        presence_frame(c, "join", room, ch, &bid).await;
    }
    // Unsubscribing announces a leave to the others.
    b.ok("unsubscribe", key(room, ch)).await;
    for c in [&mut a, &mut hidden] {
        presence_frame(c, "leave", room, ch, &bid).await;
    }
    b.silent_for(QUIET).await;
    // The hidden subscriber leaves silently.
    hidden.ok("unsubscribe", key(room, ch)).await;
    a.silent_for(QUIET).await;
    // Disconnecting announces a leave.
    let mut d = Client::connect(nodes[1].addr()).await;
    d.subscribe(room, ch).await;
    let did = d.client_id.clone();
    presence_frame(&mut a, "join", room, ch, &did).await;
    drop(d);
    presence_frame(&mut a, "leave", room, ch, &did).await;
    // Channels without presence_events (the default) send none.
    let mut e = Client::connect(nodes[1].addr()).await;
    e.subscribe(room, "plain").await;
    a.subscribe(room, "plain").await;
    e.ok("unsubscribe", key(room, "plain")).await;
    a.silent_for(QUIET).await;
    e.silent_for(QUIET).await;
}

#[tokio::test]
async fn history_selects_events_as_documented() {
    let node = start(config()).await;
    let mut c = Client::connect(node.addr()).await;
    // The doc's example: latest offset 120, events 21–120 retained.
    let epoch = c.ok("create_channel", args("science", "explore", json!({"history_size": 100}))).await["epoch"].clone();
    publish_n(&mut c, "science", "explore", 120).await;
    let cases: [(Value, Vec<u64>, bool); 12] = [
        (json!({}), (71..=120).collect(), true),
        (json!({"limit": 3}), vec![118, 119, 120], true),
        (json!({"limit": 3, "reverse": true}), vec![120, 119, 118], true),
        (json!({"since": 50, "limit": 3}), vec![51, 52, 53], true),
        (json!({"before": 50, "limit": 3}), vec![47, 48, 49], true),
        (json!({"before": 50, "limit": 3, "reverse": true}), vec![49, 48, 47], true),
        (json!({"since": 10, "before": 30, "limit": 5}), vec![21, 22, 23, 24, 25], true),
        (json!({"since": 110, "before": 114}), vec![111, 112, 113], false),
        (json!({"before": 23, "limit": 5}), vec![21, 22], false),
        (json!({"since": 0, "limit": 1000}), (21..=120).collect(), false),
        (json!({"since": 120}), vec![], false),
        (json!({"before": 21}), vec![], false),
    ];
    for (extra, want, more) in cases {
        let r = c.ok("history", args("science", "explore", extra.clone())).await;
        assert_eq!(offsets(&r), want, "history {extra}");
        assert_eq!(r["has_more"], more, "has_more of {extra}");
        assert_eq!(r["offset"], 120, "{extra}");
        assert_eq!(r["epoch"], epoch, "{extra}");
    }
    // A channel that never stored an event.
    c.ok("create_channel", key("science", "empty")).await;
    let r = c.ok("history", key("science", "empty")).await;
    assert_eq!(
        (r["events"].clone(), r["offset"].clone(), r["has_more"].clone()),
        (json!([]), Value::Null, json!(false))
    );
    assert!(r["epoch"].is_string(), "{r}");
    // A channel that does not exist: nothing, no epoch, and it is not created.
    let r = c.ok("history", key("science", "never")).await;
    assert_eq!(r, json!({"events": [], "epoch": null, "offset": null, "has_more": false}));
    c.err("channel_info", key("science", "never"), "NOT_FOUND").await;
}

#[tokio::test]
async fn history_returns_events_exactly_as_delivered() {
    let nodes = cluster(config(), 2).await;
    let mut sub = Client::connect(nodes[1].addr()).await;
    let mut p = Client::connect(nodes[0].addr()).await;
    sub.subscribe("r", "exact").await;
    p.publish("r", "exact", json!({"a": [1, 2]})).await;
    let v = p.request(json!({"type":"event","room":"r","channel":"exact","payload":"m","metadata":{"k":"v"}})).await;
    assert_eq!(v["type"], "reply");
    let delivered = vec![sub.event().await, sub.event().await];
    let h = sub.ok("history", key("r", "exact")).await;
    assert_eq!(h["events"], Value::Array(delivered), "history differs from delivery");
}

#[tokio::test]
async fn status_lists_every_cluster_node() {
    let nodes = cluster(config(), 2).await;
    let mut a = Client::connect(nodes[0].addr()).await;
    let _b1 = Client::connect(nodes[1].addr()).await;
    let mut b2 = Client::connect(nodes[1].addr()).await;
    for (c, me, conns) in [(&mut a, &nodes[0], 1), (&mut b2, &nodes[1], 2)] {
        let counts = |st: &Value| {
            let n = st["nodes"].as_array().unwrap();
            n.len() == 2 && n.iter().all(|n| n["connections"] == if n["node"] == "node-0" { 1 } else { 2 })
        };
        let st = status_until(c, counts).await;
        assert_eq!(st["node"], me.node_id());
        assert_eq!(st["connections"], conns);
        let mut listed: Vec<_> = st["nodes"].as_array().unwrap().iter().collect();
        listed.sort_by_key(|n| n["node"].as_str().unwrap().to_owned());
        assert_eq!(listed.len(), 2, "{st}");
        for (n, (node, conns)) in listed.iter().zip([(&nodes[0], 1), (&nodes[1], 2)]) {
            assert_eq!(n["node"], node.node_id(), "{st}");
            assert_eq!(n["connections"], conns, "{st}");
            assert_timestamp(&n["last_seen"]);
        }
    }
}

//! Several gateway processes on one real Redis: exactly-once ordered delivery across nodes,
//! a gateway killed with SIGKILL mid-stream (its clients resume elsewhere with nothing lost or
//! doubled, its presence vanishes within one node TTL), and idempotency across nodes.

mod follow;
mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use follow::{follow, Dead};
use serde_json::json;
use support::common::Client;
use support::*;

fn env(redis: &Redis, node: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ARQONBUS_BACKPLANE__URL", redis.url()),
        ("ARQONBUS_SERVER__NODE_ID", node.to_owned()),
        ("ARQONBUS_BACKPLANE__NODE_TTL_S", "2".into()),
        ("ARQONBUS_BACKPLANE__CANARY_INTERVAL_MS", "200".into()),
        // Retention above the streams these tests publish: a follower closed with 4008 on a
        // loaded machine must resume within retention (recovered:true), as a real one would.
        ("ARQONBUS_CHANNELS__HISTORY_SIZE", "100000".into()),
    ]
}

async fn gateways(redis: &Redis, n: usize) -> Vec<Gateway> {
    let mut out = Vec::new();
    for i in 0..n {
        let g = Gateway::spawn(&env(redis, &format!("gw{i}"))).await;
        g.wait_ready(200, Duration::from_secs(15)).await;
        out.push(g);
    }
    out
}

/// Publishes `n` events (no acks) with payload `{"p": tag, "i": i}`, pausing briefly every
/// `batch` so the stream stays in flight for a while.
async fn publish_n(addr: SocketAddr, channels: Vec<String>, n: usize, tag: usize, batch: usize) {
    let mut c = Client::connect(addr).await;
    for i in 0..n {
        for ch in &channels {
            c.publish_silent("load", ch, json!({ "p": tag, "i": i })).await;
        }
        if i % batch == batch - 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // No acked marker at the end: the followers wait for every offset (on a loaded machine the
    // node may take longer than one frame timeout to work through the queued publishes).
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_gateways_deliver_every_event_once_in_offset_order() {
    let redis = Redis::start();
    let gws = gateways(&redis, 3).await;
    let addrs: Vec<SocketAddr> = gws.iter().map(Gateway::addr).collect();
    let channels: Vec<String> = (0..3).map(|i| format!("c{i}")).collect();
    let per_publisher = 300;
    let total = (per_publisher * addrs.len()) as u64;
    let dead: Dead = Arc::default();
    // Two followers per gateway and channel, all subscribed before anything is published.
    let mut followers = Vec::new();
    for (gi, _) in addrs.iter().enumerate() {
        for ch in &channels {
            for _ in 0..2 {
                let (addrs, ch, dead) = (addrs.clone(), ch.clone(), dead.clone());
                followers.push(tokio::spawn(async move {
                    follow(addrs, gi, "load", &ch, total, dead, Duration::from_secs(60)).await
                }));
            }
        }
    }
    // Wait until every follower is subscribed: the channel_info subscriber counts say so.
    let mut probe = Client::connect(addrs[0]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    for ch in &channels {
        loop {
            let info = probe.command("channel_info", json!({ "room": "load", "channel": ch })).await;
            if info["result"]["subscribers"] == 6 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let publishers: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(tag, a)| tokio::spawn(publish_n(*a, channels.clone(), per_publisher, tag, 50)))
        .collect();
    for p in publishers {
        p.await.expect("publisher");
    }
    for (i, f) in followers.into_iter().enumerate() {
        let seen = f.await.expect("follower");
        seen.assert_contiguous(total, &format!("follower {i}"));
        assert_eq!(seen.client_ids.len(), 1, "follower {i} never had to reconnect");
        // Every publisher's events arrive in the order it sent them.
        for tag in 0..addrs.len() {
            let mine: Vec<u64> =
                seen.payloads.iter().filter(|p| p["p"] == tag).map(|p| p["i"].as_u64().unwrap()).collect();
            assert_eq!(mine, (0..per_publisher as u64).collect::<Vec<_>>(), "follower {i}, publisher {tag}");
        }
    }
    let st = probe.ok("status", json!({})).await;
    assert_eq!(st["backplane"], json!({ "kind": "redis", "healthy": true }));
    let mut nodes: Vec<String> =
        st["nodes"].as_array().unwrap().iter().map(|n| n["node"].as_str().unwrap().to_owned()).collect();
    nodes.sort();
    assert_eq!(nodes, ["gw0", "gw1", "gw2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_gateways_clients_resume_elsewhere_with_nothing_lost_or_doubled() {
    let redis = Redis::start();
    let mut gws = gateways(&redis, 3).await;
    let addrs: Vec<SocketAddr> = gws.iter().map(Gateway::addr).collect();
    let total: u64 = 20_000;
    let dead: Dead = Arc::new(Mutex::new(HashSet::new()));
    // Followers: three on gw1 (the victim), one on gw2, one on gw0.
    let mut followers = Vec::new();
    for first in [1, 1, 1, 2, 0] {
        let (addrs, dead) = (addrs.clone(), dead.clone());
        followers.push(tokio::spawn(async move {
            follow(addrs, first, "load", "stream", total, dead, Duration::from_secs(120)).await
        }));
    }
    let mut probe = Client::connect(addrs[0]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let p = probe.ok("presence", json!({ "room": "load", "channel": "stream" })).await;
        if p["count"] == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publisher = tokio::spawn(publish_n(addrs[0], vec!["stream".into()], total as usize, 0, 200));
    // Kill gw1 while the stream is in flight.
    loop {
        let info = probe.ok("channel_info", json!({ "room": "load", "channel": "stream" })).await;
        if info["offset"].as_u64().unwrap_or(0) >= 4_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    dead.lock().unwrap().insert(addrs[1]);
    gws[1].kill9();
    let killed_at = Instant::now();
    // Its presence entries vanish within one node TTL (2 s), with some slack for the poll.
    loop {
        let p = probe.ok("presence", json!({ "room": "load", "channel": "stream" })).await;
        if p["clients"].as_array().unwrap().iter().all(|c| c["node"] != "gw1") {
            break;
        }
        // One node TTL (2 s), plus the time a loaded machine may take to answer the query.
        assert!(killed_at.elapsed() < Duration::from_millis(4500), "gw1's presence is still listed: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publisher.await.expect("publisher");
    for (i, f) in followers.into_iter().enumerate() {
        let seen = f.await.expect("follower");
        seen.assert_contiguous(total, &format!("follower {i}"));
        if i < 3 {
            assert!(seen.client_ids.len() >= 2, "follower {i} was on the killed gateway and reconnected");
        }
        // Every resume was a recovery within retention: nothing was replayed from scratch.
        for (epoch, recovered) in &seen.subscribes[1..] {
            assert_eq!(recovered, &json!(true), "follower {i} resumed in epoch {epoch}");
        }
        assert!(seen.unsubscribed.is_empty(), "follower {i}: {:?}", seen.unsubscribed);
    }
    let st = probe.ok("status", json!({})).await;
    let nodes: Vec<&str> = st["nodes"].as_array().unwrap().iter().map(|n| n["node"].as_str().unwrap()).collect();
    assert!(!nodes.contains(&"gw1"), "the killed node is no longer listed: {st}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_sent_to_two_gateways_makes_one_event() {
    let redis = Redis::start();
    let gws = gateways(&redis, 2).await;
    let mut sub = Client::connect(gws[0].addr()).await;
    sub.subscribe("orders", "new").await;
    let mut a = Client::connect(gws[0].addr()).await;
    let mut b = Client::connect(gws[1].addr()).await;
    let frame = json!({ "type": "event", "room": "orders", "channel": "new", "payload": {"n": 1}, "idempotency_key": "order-17" });
    let (ra, rb) = tokio::join!(a.request(frame.clone()), b.request(frame));
    let (ra, rb) = (&ra["result"], &rb["result"]);
    assert_eq!(ra["id"], rb["id"]);
    assert_eq!(ra["offset"], 1);
    assert_eq!(rb["offset"], 1);
    assert_ne!(ra["duplicate"], rb["duplicate"], "exactly one of them stored the event: {ra} {rb}");
    assert_eq!(sub.event().await["offset"], 1);
    sub.silent_for(Duration::from_millis(300)).await;
    let h = sub.ok("history", json!({ "room": "orders", "channel": "new" })).await;
    assert_eq!(h["events"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_messages_and_presence_span_gateways() {
    let redis = Redis::start();
    let gws = gateways(&redis, 2).await;
    let mut a = Client::connect(gws[0].addr()).await;
    let mut b = Client::connect(gws[1].addr()).await;
    b.ok("subscribe", json!({ "room": "chat", "channel": "lobby" })).await;
    let p = a.ok("presence", json!({ "room": "chat", "channel": "lobby" })).await;
    assert_eq!(p["count"], 1);
    assert_eq!(p["clients"][0]["client_id"], b.client_id.as_str());
    assert_eq!(p["clients"][0]["node"], "gw1");
    let sent = a.request(json!({ "type": "private", "to": { "client": b.client_id }, "payload": {"hi": true} })).await;
    assert_eq!(sent["type"], "reply", "{sent}");
    let got = b.recv().await;
    assert_eq!(got["type"], "private", "{got}");
    assert_eq!(got["payload"], json!({"hi": true}));
    let missing = a.request(json!({ "type": "private", "to": { "client": "c_nobody" }, "payload": 1 })).await;
    assert_eq!(missing["error"]["code"], "NOT_CONNECTED", "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_limited_to_arqonbus_keys_is_enough() {
    let redis = Redis::start_with(RedisOpts {
        acl_user: Some(("arqonbus".into(), "s3cret-pass".into())),
        ..Default::default()
    });
    assert!(redis.url().contains("arqonbus:s3cret-pass@"), "{}", redis.url());
    let gws = gateways(&redis, 2).await;
    let mut sub = Client::connect(gws[1].addr()).await;
    sub.subscribe("acl", "c").await;
    let mut publisher = Client::connect(gws[0].addr()).await;
    for i in 1..=5u64 {
        assert_eq!(publisher.publish("acl", "c", json!(i)).await["offset"], i);
        assert_eq!(sub.event().await["offset"], i);
    }
    let st = sub.ok("status", json!({})).await;
    assert_eq!(st["backplane"]["healthy"], true);
    assert_eq!(st["nodes"].as_array().unwrap().len(), 2);
}

/// A private CA and a server certificate for 127.0.0.1, made with the openssl CLI.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=arqonbus test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_reach_redis_over_tls_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let file = |n: &str| certs.path().join(n).to_string_lossy().into_owned();
    let tls_port = free_port();
    let redis = Redis::start_with(RedisOpts {
        args: vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            file("server.pem"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
        ..Default::default()
    });
    let mut gws = Vec::new();
    for i in 0..2 {
        let g = Gateway::spawn(&[
            ("ARQONBUS_BACKPLANE__URL", format!("rediss://127.0.0.1:{tls_port}")),
            ("ARQONBUS_BACKPLANE__TLS_CA_FILE", file("ca.pem")),
            ("ARQONBUS_SERVER__NODE_ID", format!("tls{i}")),
        ])
        .await;
        g.wait_ready(200, Duration::from_secs(15)).await;
        gws.push(g);
    }
    let mut sub = Client::connect(gws[1].addr()).await;
    sub.subscribe("tls", "c").await;
    let mut publisher = Client::connect(gws[0].addr()).await;
    assert_eq!(publisher.publish("tls", "c", json!("secret")).await["offset"], 1);
    assert_eq!(sub.event().await["payload"], "secret");
    // The gateways' connections really are the TLS ones.
    let clients = redis.admin_cli(&["CLIENT", "LIST"]);
    let on_tls = clients.lines().filter(|l| l.contains(&format!("laddr=127.0.0.1:{tls_port}"))).count();
    assert!(on_tls >= 4, "two connections per gateway on the TLS port:\n{clients}");
}

//! Several nodes sharing one in-memory bus: cross-node delivery, private messages, status.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn events_cross_nodes_in_order_and_status_lists_every_node() {
    let nodes = cluster(config(), 3).await;
    let mut subs = Vec::new();
    for n in &nodes {
        let mut s = Client::connect(n.addr()).await;
        s.subscribe("r", "c").await;
        subs.push(s);
    }
    let mut pubs = Vec::new();
    for n in &nodes {
        pubs.push(Client::connect(n.addr()).await);
    }
    for round in 0..10 {
        for p in pubs.iter_mut() {
            p.publish("r", "c", json!(round)).await;
        }
    }
    for s in &mut subs {
        for want in 1..=30 {
            assert_eq!(s.event().await["offset"], want);
        }
    }
    let all_two = |st: &Value| st["nodes"].as_array().unwrap().iter().all(|n| n["connections"] == 2);
    let st = status_until(&mut subs[0], all_two).await;
    let mut listed: Vec<_> =
        st["nodes"].as_array().unwrap().iter().map(|n| n["node"].as_str().unwrap().to_owned()).collect();
    listed.sort();
    assert_eq!(listed, ["node-0", "node-1", "node-2"]);
    assert!(st["nodes"].as_array().unwrap().iter().all(|n| n["connections"] == 2));
}

#[tokio::test]
async fn private_messages_reach_clients_on_other_nodes() {
    let nodes = cluster(config(), 2).await;
    let mut a = Client::connect(nodes[0].addr()).await;
    let mut b = Client::connect(nodes[1].addr()).await;
    let v = a.request(json!({"type":"private","to":{"client": b.client_id},"payload":"hello"})).await;
    assert_eq!(v["result"]["delivered"], 1, "{v}");
    let m = b.recv().await;
    assert_eq!(m["payload"], "hello");
    assert_eq!(m["from"], a.client_id.as_str());
}

#[tokio::test]
async fn resume_on_another_node_has_no_gap_and_no_duplicate() {
    let nodes = cluster(config(), 2).await;
    let mut p = Client::connect(nodes[0].addr()).await;
    let mut s = Client::connect(nodes[0].addr()).await;
    let epoch = s.subscribe("r", "c").await["epoch"].clone();
    for i in 0..5 {
        p.publish("r", "c", json!(i)).await;
    }
    for want in 1..=5 {
        assert_eq!(s.event().await["offset"], want);
    }
    drop(s);
    for i in 5..9 {
        p.publish("r", "c", json!(i)).await;
    }
    let mut s = Client::connect(nodes[1].addr()).await;
    let r = s.ok("subscribe", json!({"room":"r","channel":"c","since":{"offset":5,"epoch":epoch}})).await;
    assert_eq!(r["recovered"], true);
    for want in 6..=9 {
        assert_eq!(s.event().await["offset"], want);
    }
    p.publish("r", "c", json!("live")).await;
    assert_eq!(s.event().await["offset"], 10);
}

#[tokio::test]
async fn a_node_leaving_disappears_from_status() {
    let mut nodes = cluster(config(), 2).await;
    let mut a = Client::connect(nodes[0].addr()).await;
    nodes.pop().unwrap().shutdown().await;
    let st = a.ok("status", json!({})).await;
    assert_eq!(st["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(st["nodes"][0]["node"], "node-0");
}

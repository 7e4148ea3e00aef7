//! Redis trouble is never silent: a restart without persistence (readiness 503 → 200,
//! publishes refused with UNAVAILABLE and never acked, then a new epoch reported), a restart
//! with AOF (nothing lost), a killed pub/sub connection (the gap is filled from the stream),
//! and a counter that went back as after a failover (new epoch, no offset reused).

mod follow;
mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::common::{metric, Client, Read};
use support::*;

async fn gateway(redis: &Redis) -> Gateway {
    let g = Gateway::spawn(&[
        // Retention above what these tests publish: a gap is always fillable from the stream.
        ("ARQONBUS_CHANNELS__HISTORY_SIZE", "10000".into()),
        ("ARQONBUS_BACKPLANE__URL", redis.url()),
        ("ARQONBUS_BACKPLANE__CANARY_INTERVAL_MS", "200".into()),
        ("ARQONBUS_BACKPLANE__COMMAND_TIMEOUT_MS", "500".into()),
        ("ARQONBUS_BACKPLANE__SWEEP_INTERVAL_MS", "300".into()),
    ])
    .await;
    g.wait_ready(200, Duration::from_secs(15)).await;
    g
}

/// Publishes with an id; the whole answer frame.
async fn try_publish(c: &mut Client, channel: &str, payload: Value) -> Value {
    c.request(json!({ "type": "event", "room": "r", "channel": channel, "payload": payload })).await
}

/// Reads frames until an event with `offset` or a system frame; returns what ended it.
async fn next_event_or_system(c: &mut Client) -> Value {
    loop {
        match c.next_read().await {
            Read::Frame(v) if v["type"] == "event" || v["type"] == "system" => return v,
            Read::Frame(_) => {}
            Read::Closed(code) => panic!("connection closed ({code:?}); existing WebSockets must stay open"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_persistence_is_reported_as_a_new_epoch_never_a_silent_gap() {
    let mut redis = Redis::start();
    let gw = gateway(&redis).await;
    let mut sub = Client::connect(gw.addr()).await;
    let first = sub.subscribe("r", "c").await;
    let mut publisher = Client::connect(gw.addr()).await;
    for i in 1..=20u64 {
        assert_eq!(publisher.publish("r", "c", json!(i)).await["offset"], i);
        assert_eq!(sub.event().await["offset"], i);
    }
    redis.kill();
    gw.wait_ready(503, Duration::from_secs(10)).await;
    // While cut off: refused with a retry hint, never acked. UNAVAILABLE once the node knows it
    // is cut off (nothing sent); TIMEOUT in the moment before, when the publish went to a
    // connection that was already dead (outcome unknown to the node).
    let refused = try_publish(&mut publisher, "c", json!("lost")).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(matches!(refused["error"]["code"].as_str(), Some("UNAVAILABLE" | "TIMEOUT")), "{refused}");
    assert!(refused["error"]["retry_after_ms"].as_u64().unwrap() > 0);
    redis.restart();
    gw.wait_ready(200, Duration::from_secs(20)).await;
    // The subscriber is told its history is gone (the stream was lost with Redis).
    let told = next_event_or_system(&mut sub).await;
    assert_eq!(told["event"], "unsubscribed", "{told}");
    assert_eq!(told["payload"]["reason"], "history_lost");
    // Resuming reports the loss: a new epoch and recovered:false.
    let since = json!({ "offset": 20, "epoch": first["epoch"] });
    let again = sub.ok("subscribe", json!({ "room": "r", "channel": "c", "since": since })).await;
    assert_eq!(again["recovered"], false, "{again}");
    assert_ne!(again["epoch"], first["epoch"]);
    let ack = publisher.publish("r", "c", json!("after")).await;
    let ev = sub.event().await;
    assert_eq!(ev["offset"], ack["offset"]);
    assert_eq!(ev["payload"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_aof_loses_nothing_and_keeps_the_epoch() {
    let mut redis = Redis::start_with(RedisOpts { aof: true, ..Default::default() });
    let gw = gateway(&redis).await;
    let mut sub = Client::connect(gw.addr()).await;
    let first = sub.subscribe("r", "c").await;
    let mut publisher = Client::connect(gw.addr()).await;
    for i in 1..=20u64 {
        publisher.publish("r", "c", json!(i)).await;
    }
    redis.stop();
    gw.wait_ready(503, Duration::from_secs(10)).await;
    // Refused (UNAVAILABLE, or TIMEOUT right after the stop: see above); the offsets below
    // show it was not stored.
    let refused = try_publish(&mut publisher, "c", json!("refused")).await;
    assert!(matches!(refused["error"]["code"].as_str(), Some("UNAVAILABLE" | "TIMEOUT")), "{refused}");
    redis.restart();
    gw.wait_ready(200, Duration::from_secs(20)).await;
    for i in 21..=40u64 {
        assert_eq!(publisher.publish("r", "c", json!(i)).await["offset"], i);
    }
    // The live subscriber saw every acked event once, in order, across the restart.
    for want in 1..=40u64 {
        let ev = next_event_or_system(&mut sub).await;
        assert_eq!(ev["offset"], want, "{ev}");
        assert_eq!(ev["payload"], want);
    }
    let h = sub.ok("history", json!({ "room": "r", "channel": "c", "limit": 100 })).await;
    assert_eq!(h["epoch"], first["epoch"]);
    let offsets: Vec<u64> = h["events"].as_array().unwrap().iter().map(|e| e["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, (1..=40).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_pubsub_connection_leaves_no_hole() {
    let redis = Redis::start();
    let gw = gateway(&redis).await;
    let total = 6000u64;
    let addrs = vec![gw.addr()];
    let dead = follow::Dead::default();
    let follower =
        tokio::spawn(async move { follow::follow(addrs, 0, "r", "c", total, dead, Duration::from_secs(60)).await });
    let mut probe = Client::connect(gw.addr()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    // NOT_FOUND until the follower's subscribe has created the channel.
    while probe.command("channel_info", json!({ "room": "r", "channel": "c" })).await["result"]["subscribers"] != 1 {
        assert!(Instant::now() < deadline, "the follower subscribes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut publisher = Client::connect(gw.addr()).await;
    let mut kills = 0;
    for i in 1..=total {
        publisher.publish_silent("r", "c", json!(i)).await;
        if i % 1500 == 0 {
            // Cut the node's Redis subscriber connection while events keep coming.
            let out = redis.admin_cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
            kills += out.parse::<u64>().unwrap_or(0);
        }
        if i % 300 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(kills >= 2, "pub/sub connections killed: {kills}");
    let seen = follower.await.expect("follower");
    seen.assert_contiguous(total, "subscriber");
    // Filling a long gap at once may overrun the outbox (4008); the client then resumes
    // within retention, never with a hole.
    for (epoch, recovered) in &seen.subscribes[1..] {
        assert_eq!(recovered, &json!(true), "resumed in epoch {epoch}");
    }
    assert!(seen.unsubscribed.is_empty(), "{:?}", seen.unsubscribed);
    // The repair is visible to operators.
    let (status, metrics) = support::common::http(gw.addr(), "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    let repaired: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("arqonbus_backplane_gap_events_repaired_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(repaired > 0, "lost pub/sub messages were filled from the stream: {repaired}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_that_went_back_gets_a_new_epoch_and_no_offset_is_reused() {
    let redis = Redis::start();
    let gw = gateway(&redis).await;
    let mut sub = Client::connect(gw.addr()).await;
    let first = sub.subscribe("r", "c").await;
    let mut publisher = Client::connect(gw.addr()).await;
    for i in 1..=10u64 {
        publisher.publish("r", "c", json!(i)).await;
        assert_eq!(sub.event().await["offset"], i);
    }
    // What an asynchronous failover does: the new master lacks the last writes.
    redis.admin_cli(&["HSET", "arqonbus:{r:c}:meta", "offset", "6"]);
    redis.admin_cli(&["XTRIM", "arqonbus:{r:c}:stream", "MAXLEN", "6"]);
    let told = next_event_or_system(&mut sub).await;
    assert_eq!(told["event"], "unsubscribed", "{told}");
    assert_eq!(told["payload"]["reason"], "history_lost");
    let again = sub
        .ok("subscribe", json!({ "room": "r", "channel": "c", "since": { "offset": 10, "epoch": first["epoch"] } }))
        .await;
    assert_eq!(again["recovered"], false);
    assert_ne!(again["epoch"], first["epoch"]);
    let ack = publisher.publish("r", "c", json!("next")).await;
    assert!(ack["offset"].as_u64().unwrap() > 10, "offsets 7..10 are never handed out again: {ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_before_redis_waits_unready_then_serves() {
    let mut redis = Redis::start();
    redis.stop();
    // Alive (liveness) but not ready while Redis is away.
    let gw = Gateway::spawn(&[
        ("ARQONBUS_BACKPLANE__URL", redis.url()),
        ("ARQONBUS_BACKPLANE__CANARY_INTERVAL_MS", "200".into()),
    ])
    .await;
    assert_eq!(gw.ready().await, 503);
    redis.restart();
    gw.wait_ready(200, Duration::from_secs(20)).await;
    let mut sub = Client::connect(gw.addr()).await;
    // A client retries UNAVAILABLE after `retry_after_ms` (the connection may still be settling
    // on a loaded machine); it must succeed soon after readiness.
    let mut answer = Value::Null;
    for _ in 0..5 {
        answer = sub.command("subscribe", json!({ "room": "r", "channel": "c" })).await;
        if answer["type"] == "reply" {
            break;
        }
        assert_eq!(answer["error"]["code"], "UNAVAILABLE", "{answer}");
        tokio::time::sleep(Duration::from_millis(answer["error"]["retry_after_ms"].as_u64().unwrap())).await;
    }
    assert_eq!(answer["type"], "reply", "{answer}");
    let mut publisher = Client::connect(gw.addr()).await;
    assert_eq!(publisher.publish("r", "c", json!("late")).await["offset"], 1);
    assert_eq!(sub.event().await["payload"], "late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_redis_credentials_stop_start_up_loudly() {
    let redis = Redis::start_with(RedisOpts {
        acl_user: Some(("arqonbus".into(), "right-password".into())),
        ..Default::default()
    });
    let url = format!("redis://arqonbus:wrong-password@127.0.0.1:{}", redis.port());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_arqonbus"))
        .arg("serve")
        .env("ARQONBUS_BACKPLANE__URL", url)
        .env("ARQONBUS_SERVER__LISTEN", format!("127.0.0.1:{}", free_port()))
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out).await.expect("exits by itself").unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("redis backplane: cannot connect"), "{stderr}");
    assert!(!stderr.contains("wrong-password"), "the password is never printed: {stderr}");
}

/// Publishes `id` with an idempotency key; the answer frame and how long it took.
async fn publish_keyed(c: &mut Client, key: &str) -> (Value, Duration) {
    let started = Instant::now();
    let frame = json!({ "type": "event", "room": "r", "channel": "paused", "payload": key, "idempotency_key": key });
    let answer = c.request(frame).await;
    (answer, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_answers_every_publish_in_time_and_a_retry_with_the_key_never_duplicates() {
    let redis = Redis::start();
    let gw = gateway(&redis).await; // command_timeout_ms = 500
    let mut publishers = Vec::new();
    for _ in 0..8 {
        publishers.push(Client::connect(gw.addr()).await);
    }
    assert_eq!(publish_keyed(&mut publishers[0], "warm-up").await.0["type"], "reply");
    redis.admin_cli(&["CLIENT", "PAUSE", "3000", "WRITE"]);
    // Eight connections publish three events each while Redis holds every write.
    let tasks: Vec<_> = publishers
        .into_iter()
        .enumerate()
        .map(|(p, mut c)| {
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..3 {
                    let key = format!("k{p}-{i}");
                    let (answer, took) = publish_keyed(&mut c, &key).await;
                    answers.push((key, answer, took));
                }
                (c, answers)
            })
        })
        .collect();
    let mut unknown = Vec::new();
    let mut retry_with = Vec::new();
    for t in tasks {
        let (c, answers) = t.await.expect("publisher");
        for (key, answer, took) in answers {
            // The deadline is end to end: 500 ms, plus scheduling slack — never the pause.
            assert!(took < Duration::from_millis(2500), "{key} answered after {took:?}: {answer}");
            match (answer["type"].as_str(), answer["error"]["code"].as_str()) {
                // Acked only when stored (the pause may end while the last ones run).
                (Some("reply"), _) => {}
                (Some("error"), Some("UNAVAILABLE")) => {}
                (Some("error"), Some("TIMEOUT")) => unknown.push(key.clone()),
                _ => panic!("{key}: {answer}"),
            }
            assert!(answer["type"] == "reply" || answer["error"]["retry_after_ms"].as_u64() > Some(0), "{answer}");
            if answer["type"] != "reply" {
                retry_with.push(key);
            }
        }
        drop(c);
    }
    assert!(!retry_with.is_empty(), "the pause refused nothing");
    // After the pause, a client retries each refused publish with the same key.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    gw.wait_ready(200, Duration::from_secs(15)).await;
    let mut c = Client::connect(gw.addr()).await;
    for key in &retry_with {
        let (answer, _) = publish_keyed(&mut c, key).await;
        assert_eq!(answer["type"], "reply", "{key}: {answer}");
    }
    // Every key is stored exactly once, whatever the first answer was.
    let history = c.ok("history", json!({ "room": "r", "channel": "paused", "limit": 1000 })).await;
    let mut stored: Vec<String> =
        history["events"].as_array().unwrap().iter().map(|e| e["payload"].as_str().unwrap().to_owned()).collect();
    stored.sort();
    let mut want: Vec<String> = (0..8).flat_map(|p| (0..3).map(move |i| format!("k{p}-{i}"))).collect();
    want.push("warm-up".into());
    want.sort();
    assert_eq!(stored, want, "TIMEOUT answers (outcome unknown): {unknown:?}");
}

/// Activity events leave the client's path: while Redis holds every write, new clients still
/// connect and their first command is answered at once; once Redis answers again, their
/// `connected` events reach `_sys:activity` (or are counted as not published), in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_events_never_hold_up_a_connect_while_redis_stalls() {
    let redis = Redis::start();
    let gw = Gateway::spawn(&[
        ("ARQONBUS_BACKPLANE__URL", redis.url()),
        ("ARQONBUS_BACKPLANE__CANARY_INTERVAL_MS", "200".into()),
        // Longer than the pause: a connect that waited for its activity publish would wait it out.
        ("ARQONBUS_BACKPLANE__COMMAND_TIMEOUT_MS", "6000".into()),
    ])
    .await;
    gw.wait_ready(200, Duration::from_secs(15)).await;
    let mut watcher = Client::connect(gw.addr()).await;
    watcher.subscribe("_sys", "activity").await;
    redis.admin_cli(&["CLIENT", "PAUSE", "3000", "WRITE"]);
    let paused = Instant::now();
    let mut ids = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let mut c = Client::connect(gw.addr()).await;
        c.ok("ping", json!({})).await;
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "connect + ping took {took:?} while Redis was paused");
        ids.push(c.client_id.clone());
        clients.push(c);
    }
    assert!(paused.elapsed() < Duration::from_millis(3000), "the clients connected during the pause");
    // After the pause the queued events are published, in connect order.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while seen.len() < ids.len() && Instant::now() < deadline {
        let Ok(read) = tokio::time::timeout(Duration::from_millis(500), watcher.next_read()).await else {
            let failed =
                metric(gw.addr(), "arqonbus_activity_events_dropped_total{reason=\"publish_failed\"}").await as usize;
            if seen.len() + failed >= ids.len() {
                break;
            }
            continue;
        };
        if let Read::Frame(v) = read {
            if v["type"] == "event" && v["payload"]["kind"] == "connected" {
                seen.push(v["payload"]["client_id"].as_str().unwrap().to_owned());
            }
        }
    }
    let failed = metric(gw.addr(), "arqonbus_activity_events_dropped_total{reason=\"publish_failed\"}").await as usize;
    assert!(
        seen.len() + failed >= ids.len(),
        "seen {} of {}, {failed} counted as not published",
        seen.len(),
        ids.len()
    );
    let order: Vec<&String> = ids.iter().filter(|id| seen.contains(id)).collect();
    assert_eq!(seen.iter().collect::<Vec<_>>(), order, "activity events keep their order");
    assert_eq!(metric(gw.addr(), "arqonbus_activity_events_dropped_total{reason=\"queue_full\"}").await, 0.0);
}

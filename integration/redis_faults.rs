//! The link to Redis misbehaves, through the fault proxy (`support::FaultProxy`).
//!
//! Frozen for 12 s with its sockets left open: every publish is still answered within
//! `command_timeout_ms` + 1 s, readiness is 503 within its bound and back by itself, nothing
//! acked is lost, nothing is stored twice, and a subscriber connected throughout gets every
//! stored event once, in order. Slow (added delay and a bandwidth limit) under two gateways:
//! exactly once, with the publish latency reported.

mod follow;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::common::Client;
use support::*;

/// The publish deadline of these gateways (the default).
const COMMAND_TIMEOUT_MS: u64 = 2000;
const CANARY_MS: u64 = 1000;

async fn gateway_via(proxy: &FaultProxy, node: &str) -> Gateway {
    gateway_at(proxy.url(), node, &[]).await
}

async fn gateway_at(url: String, node: &str, more: &[(&str, String)]) -> Gateway {
    let mut env = vec![
        ("ARQONBUS_BACKPLANE__URL", url),
        ("ARQONBUS_SERVER__NODE_ID", node.to_owned()),
        ("ARQONBUS_CHANNELS__HISTORY_SIZE", "100000".into()),
        ("ARQONBUS_BACKPLANE__COMMAND_TIMEOUT_MS", COMMAND_TIMEOUT_MS.to_string()),
        ("ARQONBUS_BACKPLANE__CANARY_INTERVAL_MS", CANARY_MS.to_string()),
        ("ARQONBUS_BACKPLANE__SWEEP_INTERVAL_MS", "1000".into()),
    ];
    env.extend(more.iter().cloned());
    let g = Gateway::spawn(&env).await;
    g.wait_ready(200, Duration::from_secs(15)).await;
    g
}

/// One keyed publish: the answer frame and how long it took.
async fn publish_keyed(c: &mut Client, channel: &str, key: &str) -> (Value, Duration) {
    let started = Instant::now();
    let frame = json!({ "type": "event", "room": "f", "channel": channel, "payload": key, "idempotency_key": key });
    let answer = c.request(frame).await;
    (answer, started.elapsed())
}

/// What one publisher saw: per key, its answers in order.
type Answers = Vec<(String, Value, Duration)>;

/// Publishes keyed events `<tag>-<i>` one after the other until `stop`.
async fn publisher(addr: SocketAddr, channel: &'static str, tag: usize, stop: Arc<Mutex<bool>>) -> Answers {
    let mut c = Client::connect(addr).await;
    let mut out = Vec::new();
    let mut i = 0;
    while !*stop.lock().unwrap() {
        let key = format!("p{tag}-{i}");
        let (answer, took) = publish_keyed(&mut c, channel, &key).await;
        out.push((key, answer, took));
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out
}

/// Reads events of one subscription until the payload `end`; the (offset, payload) pairs.
/// Reads the socket itself: the client's own reads give up after 10 s without a frame, and a
/// frozen link is longer than that.
async fn collect_until_end(mut c: Client) -> Result<Vec<(u64, String)>, String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut got = Vec::new();
    loop {
        let msg = match tokio::time::timeout(Duration::from_secs(60), c.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => continue,
            other => return Err(format!("subscription ended ({other:?}) after {} events", got.len())),
        };
        let v: Value = serde_json::from_str(msg.as_str()).expect("JSON");
        if v["type"] == "event" {
            let payload = v["payload"].as_str().unwrap_or_default().to_owned();
            got.push((v["offset"].as_u64().unwrap(), payload.clone()));
            if payload == "end" {
                return Ok(got);
            }
        } else if v["type"] == "system" && v["event"] == "unsubscribed" {
            return Err(format!("unsubscribed after {} events: {v}", got.len()));
        }
    }
}

/// `history` of a channel: offset → payload.
async fn history(c: &mut Client, channel: &str) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    let mut since = 0u64;
    loop {
        let h = c.ok("history", json!({ "room": "f", "channel": channel, "since": since, "limit": 1000 })).await;
        let events = h["events"].as_array().unwrap().clone();
        if events.is_empty() {
            return out;
        }
        for e in events {
            since = e["offset"].as_u64().unwrap();
            out.insert(since, e["payload"].as_str().unwrap().to_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_link_answers_every_publish_in_time_and_loses_or_doubles_nothing() {
    let redis = Redis::start();
    let proxy = FaultProxy::start(redis.port());
    let gw = gateway_via(&proxy, "frozen").await;
    let channel = "frozen";
    // A subscriber connected from before the freeze until after it.
    let mut sub = Client::connect(gw.addr()).await;
    sub.subscribe("f", channel).await;
    let subscriber = tokio::spawn(collect_until_end(sub));

    let stop = Arc::new(Mutex::new(false));
    let publishers: Vec<_> = (0..4).map(|p| tokio::spawn(publisher(gw.addr(), channel, p, stop.clone()))).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Freeze both directions for 12 s; readiness must fall within its documented bound:
    // no canary back for 3 periods plus the command timeout.
    proxy.set(Dir::Both, Fault::BlackHole);
    let frozen_at = Instant::now();
    let bound = Duration::from_millis(3 * CANARY_MS + COMMAND_TIMEOUT_MS);
    gw.wait_ready(503, bound + Duration::from_millis(1500)).await;
    eprintln!("readiness 503 after {:?} (bound {bound:?})", frozen_at.elapsed());
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(frozen_at.elapsed())).await;
    proxy.clear();
    let thawed_at = Instant::now();
    gw.wait_ready(200, Duration::from_secs(20)).await;
    eprintln!("readiness 200 again {:?} after the thaw", thawed_at.elapsed());
    // The node did not wait for the kernel: it declared the silent connections dead.
    for connection in ["commands", "pubsub"] {
        let series = format!("arqonbus_backplane_connections_replaced_total{{connection=\"{connection}\"}}");
        let replaced = support::common::metric(gw.addr(), &series).await;
        assert!(replaced >= 1.0, "{series} = {replaced}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    *stop.lock().unwrap() = true;

    let mut answers = Answers::new();
    for p in publishers {
        answers.extend(p.await.expect("publisher"));
    }
    // Every publish was answered within the command timeout plus 1 s, with what is known.
    let limit = Duration::from_millis(COMMAND_TIMEOUT_MS + 1000);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (key, answer, took) in &answers {
        assert!(*took <= limit, "{key} answered after {took:?} (limit {limit:?}): {answer}");
        let code = match answer["type"].as_str() {
            Some("reply") => "ack",
            _ => answer["error"]["code"].as_str().unwrap_or("?"),
        };
        assert!(matches!(code, "ack" | "UNAVAILABLE" | "TIMEOUT"), "{key}: {answer}");
        *counts.entry(code).or_default() += 1;
    }
    eprintln!("answers during the test: {counts:?}");
    assert!(counts.contains_key("UNAVAILABLE"), "the freeze refused nothing: {counts:?}");

    // The client retries every refused or unknown publish with its key until it is acked.
    let mut c = Client::connect(gw.addr()).await;
    let acked: Vec<&String> = answers.iter().filter(|(_, a, _)| a["type"] == "reply").map(|(k, _, _)| k).collect();
    let mut retried = 0;
    for (key, answer, _) in answers.iter().filter(|(_, a, _)| a["type"] != "reply") {
        let mut last = answer.clone();
        for _ in 0..20 {
            let (again, took) = publish_keyed(&mut c, channel, key).await;
            assert!(took <= limit, "{key} retry answered after {took:?}: {again}");
            last = again;
            if last["type"] == "reply" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(last["type"], "reply", "{key} never acked on retry: {last}");
        retried += 1;
    }
    let end = c.request(json!({ "type": "event", "room": "f", "channel": channel, "payload": "end" })).await;
    assert_eq!(end["type"], "reply", "{end}");

    // History: every key once, every acked one present, offsets contiguous.
    let stored = history(&mut c, channel).await;
    let offsets: Vec<u64> = stored.keys().copied().collect();
    assert_eq!(offsets, (1..=offsets.len() as u64).collect::<Vec<_>>(), "offsets are contiguous");
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for payload in stored.values() {
        *per_key.entry(payload.as_str()).or_default() += 1;
    }
    for (key, n) in &per_key {
        assert_eq!(*n, 1, "{key} stored {n} times");
    }
    for key in answers.iter().map(|(k, _, _)| k) {
        assert!(per_key.contains_key(key.as_str()), "{key} missing from history");
    }
    for key in &acked {
        assert!(per_key.contains_key(key.as_str()), "acked {key} missing from history");
    }
    eprintln!("{} publishes, {retried} retried, {} stored", answers.len(), stored.len());

    // The subscriber connected throughout got every stored event once, in order.
    let seen = tokio::time::timeout(Duration::from_secs(30), subscriber)
        .await
        .expect("the subscriber gets everything within 30 s")
        .expect("subscriber task")
        .expect("subscription lasted");
    let want: Vec<(u64, String)> = stored.into_iter().collect();
    assert_eq!(seen.len(), want.len(), "subscriber got {} events, history holds {}", seen.len(), want.len());
    assert_eq!(seen, want, "subscriber saw exactly the history, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_narrow_link_still_delivers_exactly_once_across_two_gateways() {
    let redis = Redis::start();
    let proxy = FaultProxy::start(redis.port());
    let gws = [gateway_via(&proxy, "slow-a").await, gateway_via(&proxy, "slow-b").await];
    // 50 ms added each way, and 1 MB/s each way.
    proxy.set(Dir::Both, Fault::Delay(Duration::from_millis(50)));
    proxy.set(Dir::Both, Fault::Bandwidth(1 << 20));
    let channel = "slow";
    let per_publisher = 150u64;
    let total = per_publisher * 2;
    let addrs: Vec<SocketAddr> = gws.iter().map(Gateway::addr).collect();
    let followers: Vec<_> = (0..2)
        .map(|i| {
            let addrs = addrs.clone();
            tokio::spawn(async move {
                follow::follow(addrs, i, "f", channel, total, follow::Dead::default(), Duration::from_secs(120)).await
            })
        })
        .collect();
    // Both followers subscribed before anything is published.
    let mut probe = Client::connect(addrs[0]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = probe.command("channel_info", json!({ "room": "f", "channel": channel })).await;
        if info["result"]["subscribers"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "followers subscribe: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let publishers: Vec<_> = addrs
        .iter()
        .enumerate()
        .map(|(p, addr)| {
            let addr = *addr;
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                let mut took = Vec::new();
                for i in 0..per_publisher {
                    let key = format!("s{p}-{i}");
                    let (answer, t) = publish_keyed(&mut c, channel, &key).await;
                    assert_eq!(answer["type"], "reply", "{key}: {answer}");
                    took.push(t);
                }
                took
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for p in publishers {
        latencies.extend(p.await.expect("publisher"));
    }
    let elapsed = started.elapsed();
    for (i, f) in followers.into_iter().enumerate() {
        let seen = f.await.expect("follower");
        seen.assert_contiguous(total, &format!("follower {i}"));
        assert!(seen.unsubscribed.is_empty(), "{:?}", seen.unsubscribed);
    }
    let stored = history(&mut probe, channel).await;
    let mut keys: Vec<&String> = stored.values().collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len() as u64, total, "every key stored exactly once");
    latencies.sort();
    let pct = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    eprintln!(
        "publish ack latency through +50 ms each way and 1 MB/s: p50 {:?}, p99 {:?}, max {:?}; {} acked publishes in {:?}",
        pct(0.5),
        pct(0.99),
        latencies.last().unwrap(),
        latencies.len(),
        elapsed
    );
}

/// Publishes `payload` with key `key` to `f:<channel>`; the answer frame.
async fn publish_big(c: &mut Client, channel: &str, key: &str, payload: &str) -> Value {
    c.request(json!({ "type": "event", "room": "f", "channel": channel, "payload": payload, "idempotency_key": key }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_publishes_with_a_clear_error_and_recovers() {
    let redis = Redis::start_with(RedisOpts {
        args: ["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"].map(String::from).to_vec(),
        ..Default::default()
    });
    let gw = gateway_at(redis.url(), "full", &[]).await;
    let mut c = Client::connect(gw.addr()).await;
    let blob = "x".repeat(20_000);
    // Fill Redis: every answer is an ack (stored) until the first refusal.
    let mut refused = None;
    for i in 0..400 {
        let key = format!("fill-{i}");
        let answer = publish_big(&mut c, "full", &key, &blob).await;
        if answer["type"] == "error" {
            refused = Some((key, answer));
            break;
        }
        assert_eq!(answer["type"], "reply", "{answer}");
    }
    let (key, answer) = refused.expect("a 2 MB Redis fills up");
    // The documented error: UNAVAILABLE (not stored) with the reason and a retry hint.
    assert_eq!(answer["error"]["code"], "UNAVAILABLE", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("out of memory") && message.contains("nothing was stored"), "{answer}");
    assert!(answer["error"]["retry_after_ms"].as_u64() > Some(0), "{answer}");
    // Still refused on retry, never acked; reads work; the node stays ready.
    for _ in 0..3 {
        let again = publish_big(&mut c, "full", &key, &blob).await;
        assert_eq!(again["error"]["code"], "UNAVAILABLE", "{again}");
    }
    let before = history(&mut c, "full").await;
    assert!(!before.values().any(|p| p.len() < 100), "only the fill events are stored");
    for _ in 0..5 {
        assert_eq!(gw.ready().await, 200, "readiness stays true: reads work");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let series = "arqonbus_backplane_publish_failures_total{reason=\"out_of_memory\"}";
    let counted = support::common::metric(gw.addr(), series).await;
    assert!(counted >= 4.0, "{series} = {counted}");
    assert!(gw.output().contains("redis is out of memory"), "a warning says why:\n{}", gw.output());

    // A raised limit: the refused publish goes through (once).
    redis.admin_cli(&["CONFIG", "SET", "maxmemory", "64mb"]);
    let stored = publish_big(&mut c, "full", &key, "small").await;
    assert_eq!(stored["type"], "reply", "{stored}");
    assert_eq!(stored["result"]["offset"].as_u64(), Some(before.len() as u64 + 1), "{stored}");
    // Full again, then FLUSHDB: publishes succeed again.
    redis.admin_cli(&["CONFIG", "SET", "maxmemory", "2mb"]);
    let again = publish_big(&mut c, "full", "after-limit", &blob).await;
    assert_eq!(again["error"]["code"], "UNAVAILABLE", "{again}");
    redis.admin_cli(&["FLUSHDB"]);
    let mut last = Value::Null;
    for _ in 0..20 {
        last = publish_big(&mut c, "full", "after-flush", "small").await;
        if last["type"] == "reply" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["type"], "reply", "{last}");
    assert_eq!(gw.ready().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_stream_is_reported_as_lost_history_never_a_silent_restart() {
    let redis = Redis::start_with(RedisOpts {
        args: ["--maxmemory-policy", "allkeys-lru"].map(String::from).to_vec(),
        ..Default::default()
    });
    // Sweeps far apart: nothing but this test touches the channel's keys while Redis evicts.
    let gw = gateway_at(redis.url(), "evict", &[("ARQONBUS_BACKPLANE__SWEEP_INTERVAL_MS", "600000".into())]).await;
    let mut sub = Client::connect(gw.addr()).await;
    let first = sub.subscribe("f", "ev").await;
    let mut publisher = Client::connect(gw.addr()).await;
    for i in 1..=10u64 {
        assert_eq!(publisher.publish("f", "ev", json!(i)).await["offset"], i);
        assert_eq!(sub.event().await["offset"], i);
    }
    // Fill Redis past a limit until the channel's stream is evicted; the meta hash is read
    // meanwhile (recently used), so the stream is the older key.
    let meta = "arqonbus:{f:ev}:meta";
    let stream = "arqonbus:{f:ev}:stream";
    let used: u64 = redis
        .admin_cli(&["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory");
    redis.admin_cli(&["CONFIG", "SET", "maxmemory", &(used + 1_000_000).to_string()]);
    let fill =
        "for i = 1, 50 do redis.call('SET', 'junk:' .. ARGV[1] .. ':' .. i, string.rep('x', 10000)) end return 1";
    let mut evicted = false;
    for round in 0..200 {
        redis.admin_cli(&["HGET", meta, "epoch"]);
        redis.admin_cli(&["EVAL", fill, "0", &round.to_string()]);
        let keys = redis.admin_cli(&["KEYS", "arqonbus:{f:ev}:*"]);
        if !keys.contains(stream) {
            eprintln!("stream evicted after {} rounds; channel keys left: {keys:?}", round + 1);
            evicted = true;
            break;
        }
    }
    assert!(evicted, "the stream was never evicted");
    redis.admin_cli(&["CONFIG", "SET", "maxmemory", "0"]);
    // The next publish finds the history lost: a new epoch, never offsets restarting silently.
    let ack = publisher.publish("f", "ev", json!("after")).await;
    let told = loop {
        let v = sub.recv().await;
        if v["type"] == "system" || v["type"] == "event" {
            break v;
        }
    };
    assert_eq!(told["event"], "unsubscribed", "{told}");
    assert_eq!(told["payload"]["reason"], "history_lost", "{told}");
    let since = json!({ "offset": 10, "epoch": first["epoch"] });
    let again = sub.ok("subscribe", json!({ "room": "f", "channel": "ev", "since": since })).await;
    assert_eq!(again["recovered"], false, "{again}");
    assert_ne!(again["epoch"], first["epoch"], "{again}");
    eprintln!("after eviction: ack {ack}, resubscribe {again}");
    // The stream alone gone before its expiry (what eviction of only the stream leaves): the
    // next publish, or a resume, finds it and takes a new epoch too.
    assert_eq!(sub.event().await["payload"], "after");
    let epoch = again["epoch"].clone();
    let top = publisher.publish("f", "ev", json!("kept")).await["offset"].as_u64().unwrap();
    assert_eq!(sub.event().await["offset"], top);
    assert_eq!(redis.admin_cli(&["DEL", stream]), "1");
    publisher.publish("f", "ev", json!("after the stream")).await;
    let told = sub.recv().await;
    assert_eq!(told["event"], "unsubscribed", "{told}");
    assert_eq!(told["payload"]["reason"], "history_lost", "{told}");
    let since = json!({ "offset": top, "epoch": epoch });
    let resumed = sub.ok("subscribe", json!({ "room": "f", "channel": "ev", "since": since })).await;
    assert_eq!(resumed["recovered"], false, "{resumed}");
    assert_ne!(resumed["epoch"], epoch, "{resumed}");
}

//! Gateways on Redis Cluster and on Sentinel, as real processes: sharded pub/sub routed to
//! every master, recovery across gateways, and failover (switch-over and a killed master)
//! while a publisher keeps publishing with acks.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::common::{metric, Client, Read};
use support::*;

const ROOM: &str = "bus";
/// How long a gateway may take to become ready (first canary through Redis).
const READY: Duration = Duration::from_secs(20);

/// `arqonbus:{room:channel}:meta`: the channel's meta hash (its hash tag decides the slot of
/// every key and of the live pub/sub channel of the channel).
fn meta_key(channel: &str) -> String {
    format!("arqonbus:{{{ROOM}:{channel}}}:meta")
}

fn stream_key(channel: &str) -> String {
    format!("arqonbus:{{{ROOM}:{channel}}}:stream")
}

fn live_key(channel: &str) -> String {
    format!("arqonbus:{{{ROOM}:{channel}}}:live")
}

/// Gateway environment: the backplane settings plus a quick canary and sweep.
fn gateway_env<'a>(backplane: &[(&'a str, String)]) -> Vec<(&'a str, String)> {
    let mut env: Vec<(&'a str, String)> = vec![
        ("ARQONBUS_BACKPLANE__CANARY_INTERVAL_MS", "200".into()),
        ("ARQONBUS_BACKPLANE__SWEEP_INTERVAL_MS", "500".into()),
        ("ARQONBUS_BACKPLANE__NODE_TTL_S", "5".into()),
        ("ARQONBUS_BACKPLANE__COMMAND_TIMEOUT_MS", "1500".into()),
        ("ARQONBUS_CHANNELS__HISTORY_SIZE", "100000".into()),
    ];
    env.extend(backplane.iter().cloned());
    env
}

async fn spawn_gateway(backplane: &[(&str, String)]) -> Gateway {
    let env = gateway_env(backplane);
    let g = Gateway::spawn(&env).await;
    g.wait_ready(200, READY).await;
    g
}

/// The next frame within `d`; `None` when nothing came. Panics when the server closes.
async fn next_frame(c: &mut Client, d: Duration) -> Option<Value> {
    match tokio::time::timeout(d, c.next_read()).await {
        Ok(Read::Frame(v)) => Some(v),
        Ok(Read::Closed(code)) => panic!("connection closed ({code:?})"),
        Err(_) => None,
    }
}

/// Reads `n` channel events (any other frame fails the test); returns them per channel, in
/// arrival order, as `(offset, payload, id)`.
async fn read_events(c: &mut Client, n: usize, within: Duration) -> BTreeMap<String, Vec<(u64, Value, String)>> {
    let deadline = Instant::now() + within;
    let mut got: BTreeMap<String, Vec<(u64, Value, String)>> = BTreeMap::new();
    let mut count = 0;
    while count < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(v) = next_frame(c, left).await else {
            let summary: Vec<String> = got.iter().map(|(ch, e)| format!("{ch}: {} events", e.len())).collect();
            panic!("only {count} of {n} events within {within:?}: {summary:?}");
        };
        assert_eq!(v["type"], "event", "expected only events: {v}");
        assert_eq!(v["room"], ROOM, "{v}");
        let ch = v["channel"].as_str().expect("channel").to_owned();
        let offset = v["offset"].as_u64().expect("offset");
        let id = v["id"].as_str().expect("id").to_owned();
        got.entry(ch).or_default().push((offset, v["payload"].clone(), id));
        count += 1;
    }
    got
}

/// `redis-cluster://127.0.0.1:P0?node=127.0.0.1:P1&node=…`.
fn cluster_url(cluster: &RedisCluster) -> String {
    let ports = cluster.ports();
    let nodes: Vec<String> = ports[1..].iter().map(|p| format!("node=127.0.0.1:{p}")).collect();
    format!("redis-cluster://127.0.0.1:{}?{}", ports[0], nodes.join("&"))
}

/// A 3-master cluster, the master serving each of 24 channel names (every master serves at
/// least one), and two gateways on the cluster.
async fn cluster_with_gateways() -> (RedisCluster, BTreeMap<String, u16>, Gateway, Gateway) {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3)).await.expect("cluster starts");
    let channels: Vec<String> = (0..24).map(|i| format!("c{i:02}")).collect();
    let owners: BTreeMap<String, u16> = tokio::task::block_in_place(|| {
        let owners: BTreeMap<String, u16> =
            channels.iter().map(|c| (c.clone(), cluster.owner_of(&meta_key(c)))).collect();
        for c in &channels {
            assert_eq!(cluster.owner_of(&live_key(c)), owners[c], "one slot per channel");
        }
        owners
    });
    let used: BTreeSet<u16> = owners.values().copied().collect();
    assert_eq!(used, cluster.ports().into_iter().collect(), "every master serves some channel: {owners:?}");
    let url = cluster_url(&cluster);
    let a = spawn_gateway(&[("ARQONBUS_BACKPLANE__URL", url.clone())]).await;
    let b = spawn_gateway(&[("ARQONBUS_BACKPLANE__URL", url)]).await;
    (cluster, owners, a, b)
}

/// Subscribers on one node of the cluster (a shard channel counts on its master only).
fn shard_subscribers(cluster: &RedisCluster, port: u16, channel: &str) -> u64 {
    let out = cluster.cli(port, &["PUBSUB", "SHARDNUMSUB", &live_key(channel)]);
    out.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("SHARDNUMSUB answered {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_delivers_every_channel_on_every_master_exactly_once_in_order() {
    const N: u64 = 8;
    const SUBSCRIBERS: usize = 4;
    const PUBLISHERS: usize = 3;
    let (cluster, owners, a, b) = cluster_with_gateways().await;
    let channels: Vec<String> = owners.keys().cloned().collect();

    // Subscribers on gateway A: subscriber k takes channels i with i % 4 ∈ {k, k+1}, so every
    // channel has two subscribers.
    let mut subs = Vec::new();
    let mut wants: Vec<BTreeSet<String>> = Vec::new();
    let mut epochs: HashMap<String, String> = HashMap::new();
    for k in 0..SUBSCRIBERS {
        let mut c = Client::connect(a.addr()).await;
        let mine: BTreeSet<String> = channels
            .iter()
            .enumerate()
            .filter(|(i, _)| i % SUBSCRIBERS == k || i % SUBSCRIBERS == (k + 1) % SUBSCRIBERS)
            .map(|(_, ch)| ch.clone())
            .collect();
        for ch in &mine {
            let r = c.subscribe(ROOM, ch).await;
            assert_eq!(r["offset"], Value::Null, "a fresh channel: {r}");
            let epoch = r["epoch"].as_str().expect("epoch").to_owned();
            assert_eq!(epochs.entry(ch.clone()).or_insert_with(|| epoch.clone()), &epoch, "one epoch per channel");
        }
        subs.push(c);
        wants.push(mine);
    }
    // Interest routing: gateway A listens on each channel's master, gateway B nowhere.
    for ch in &channels {
        assert_eq!(shard_subscribers(&cluster, owners[ch], ch), 1, "{ch} on :{}", owners[ch]);
    }

    // Publishers on gateway B, each owning a third of the channels, interleaving them.
    let mut tasks = Vec::new();
    for j in 0..PUBLISHERS {
        let mine: Vec<String> = channels.iter().skip(j).step_by(PUBLISHERS).cloned().collect();
        let addr = b.addr();
        tasks.push(tokio::spawn(async move {
            let mut p = Client::connect(addr).await;
            let mut acks: Vec<(String, u64, String)> = Vec::new();
            for i in 1..=N {
                for ch in &mine {
                    let r = p.publish(ROOM, ch, json!({ "ch": ch, "i": i })).await;
                    assert_eq!(r["offset"], i, "offsets of {ch} are contiguous from 1: {r}");
                    assert_eq!(r["duplicate"], false);
                    acks.push((ch.clone(), i, r["id"].as_str().expect("id").to_owned()));
                }
            }
            acks
        }));
    }
    let mut acked: HashMap<(String, u64), String> = HashMap::new();
    for t in tasks {
        for (ch, i, id) in t.await.expect("publisher") {
            acked.insert((ch, i), id);
        }
    }
    assert_eq!(acked.len() as u64, channels.len() as u64 * N);

    // Every subscriber gets every event of its channels once, offsets 1..N in order.
    for (c, mine) in subs.iter_mut().zip(&wants) {
        let got = read_events(c, mine.len() * N as usize, Duration::from_secs(20)).await;
        assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), *mine, "events of exactly its channels");
        for (ch, events) in &got {
            let offsets: Vec<u64> = events.iter().map(|e| e.0).collect();
            assert_eq!(offsets, (1..=N).collect::<Vec<_>>(), "{ch} (master :{})", owners[ch]);
            for (offset, payload, id) in events {
                assert_eq!(payload, &json!({ "ch": ch, "i": offset }), "{ch}");
                assert_eq!(&acked[&(ch.clone(), *offset)], id, "{ch} #{offset}: the acked message");
            }
        }
        c.silent_for(Duration::from_millis(300)).await;
    }

    // History of a channel on each master, from either gateway.
    let mut reader = Client::connect(b.addr()).await;
    for port in cluster.ports() {
        let ch = channels.iter().find(|c| owners[*c] == port).expect("a channel on every master");
        let h = reader.ok("history", json!({ "room": ROOM, "channel": ch, "limit": 100 })).await;
        assert_eq!(h["offset"], N, "{ch} on :{port}: {h}");
        assert_eq!(h["epoch"], epochs[ch].as_str());
        let events = h["events"].as_array().expect("events");
        let offsets: Vec<u64> = events.iter().map(|e| e["offset"].as_u64().unwrap()).collect();
        assert_eq!(offsets, (1..=N).collect::<Vec<_>>(), "{ch} on :{port}");
        for e in events {
            let i = e["offset"].as_u64().unwrap();
            assert_eq!(e["id"], acked[&(ch.clone(), i)].as_str());
            assert_eq!(e["payload"], json!({ "ch": ch, "i": i }));
        }
        let page = reader.ok("history", json!({ "room": ROOM, "channel": ch, "since": 5, "limit": 2 })).await;
        let offsets: Vec<u64> =
            page["events"].as_array().unwrap().iter().map(|e| e["offset"].as_u64().unwrap()).collect();
        assert_eq!(offsets, vec![6, 7], "{ch} on :{port}: {page}");
        // The meta key lives on that master, holding the top offset.
        assert_eq!(cluster.cli(port, &["HGET", &meta_key(ch), "offset"]), N.to_string());
    }
}

/// Publishes `{"ch", "i"}`, which must get offset `i`; remembers the message id.
async fn publish_numbered(p: &mut Client, ch: &str, i: u64, ids: &mut HashMap<(String, u64), String>) {
    let r = p.publish(ROOM, ch, json!({ "ch": ch, "i": i })).await;
    assert_eq!(r["offset"], i, "{ch}: {r}");
    ids.insert((ch.to_owned(), i), r["id"].as_str().expect("id").to_owned());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_recovery_on_the_other_gateway_replays_exactly_the_missed_events() {
    let (_cluster, owners, a, b) = cluster_with_gateways().await;
    // Two channels per master.
    let mut channels: Vec<String> = Vec::new();
    for port in owners.values().copied().collect::<BTreeSet<_>>() {
        channels.extend(owners.iter().filter(|(_, p)| **p == port).take(2).map(|(c, _)| c.clone()));
    }
    assert_eq!(channels.len(), 6);

    let mut s = Client::connect(a.addr()).await;
    let mut epochs = HashMap::new();
    for ch in &channels {
        epochs.insert(ch.clone(), s.subscribe(ROOM, ch).await["epoch"].as_str().unwrap().to_owned());
    }
    let mut p = Client::connect(b.addr()).await;
    let mut ids: HashMap<(String, u64), String> = HashMap::new();
    for i in 1..=3 {
        for ch in &channels {
            publish_numbered(&mut p, ch, i, &mut ids).await;
        }
    }
    let got = read_events(&mut s, channels.len() * 3, Duration::from_secs(20)).await;
    for ch in &channels {
        assert_eq!(got[ch].iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 2, 3], "{ch}");
    }
    drop(s);

    // Missed while disconnected.
    for i in 4..=8 {
        for ch in &channels {
            publish_numbered(&mut p, ch, i, &mut ids).await;
        }
    }

    // Back, on the other gateway.
    let mut s = Client::connect(b.addr()).await;
    for ch in &channels {
        let since = json!({ "offset": 3, "epoch": epochs[ch] });
        let r = s.ok("subscribe", json!({ "room": ROOM, "channel": ch, "since": since })).await;
        assert_eq!(r["recovered"], true, "{ch} (master :{}): {r}", owners[ch]);
        assert_eq!(r["replayed"], 5, "{r}");
        assert_eq!(r["offset"], 8, "{r}");
        assert_eq!(r["epoch"], epochs[ch].as_str());
    }
    // Live events from gateway A now.
    let mut p2 = Client::connect(a.addr()).await;
    for i in 9..=10 {
        for ch in &channels {
            publish_numbered(&mut p2, ch, i, &mut ids).await;
        }
    }
    let got = read_events(&mut s, channels.len() * 7, Duration::from_secs(20)).await;
    for ch in &channels {
        let events = &got[ch];
        assert_eq!(events.iter().map(|e| e.0).collect::<Vec<_>>(), (4..=10).collect::<Vec<_>>(), "{ch}");
        for (offset, payload, id) in events {
            assert_eq!(payload, &json!({ "ch": ch, "i": offset }));
            assert_eq!(&ids[&(ch.clone(), *offset)], id);
        }
    }
    s.silent_for(Duration::from_millis(300)).await;
}

// ---------------------------------------------------------------------------------------
// Sentinel: failover while a publisher publishes with acks.

/// What one subscriber saw of one channel in one epoch.
#[derive(Debug, Clone)]
struct Segment {
    epoch: String,
    /// `None` for the first subscription (no `since`).
    recovered: Option<bool>,
    /// `(offset, seq)` in arrival order.
    events: Vec<(u64, u64)>,
}

/// A subscriber's view: per channel, its epochs in order.
type View = BTreeMap<String, Vec<Segment>>;

/// Reads a subscriber's frames until it got the marker event of every channel. A
/// subscription ended with `history_lost` is taken up again with `since` (a new segment).
async fn collect(mut c: Client, mut view: View, deadline: Instant) -> View {
    let mut marked: BTreeSet<String> = BTreeSet::new();
    while marked.len() < view.len() {
        if Instant::now() >= deadline {
            panic!(
                "no marker on {:?} in time; saw {view:?}",
                view.keys().filter(|k| !marked.contains(*k)).collect::<Vec<_>>()
            );
        }
        let Some(v) = next_frame(&mut c, Duration::from_millis(500)).await else { continue };
        let ch = v["channel"].as_str().unwrap_or_default().to_owned();
        match (v["type"].as_str(), v["event"].as_str()) {
            (Some("event"), _) => {
                let offset = v["offset"].as_u64().expect("offset");
                let seq = v["payload"]["seq"].as_u64().expect("seq");
                view.get_mut(&ch).expect("a subscribed channel").last_mut().unwrap().events.push((offset, seq));
                if v["payload"]["marker"] == true {
                    marked.insert(ch);
                }
            }
            (Some("system"), Some("unsubscribed")) => {
                assert_eq!(v["payload"]["reason"], "history_lost", "{v}");
                let segs = view.get_mut(&ch).expect("a subscribed channel");
                let last = segs.last().unwrap();
                let offset = last.events.last().map_or(0, |e| e.0);
                let since = json!({ "offset": offset, "epoch": last.epoch });
                let args = json!({ "room": ROOM, "channel": ch, "since": since });
                let r = loop {
                    let r = c.command("subscribe", args.clone()).await;
                    if r["type"] == "reply" {
                        break r["result"].clone();
                    }
                    assert_eq!(r["error"]["code"], "UNAVAILABLE", "{r}");
                    assert!(Instant::now() < deadline, "cannot subscribe again: {r}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                };
                let epoch = r["epoch"].as_str().expect("epoch").to_owned();
                segs.push(Segment { epoch, recovered: r["recovered"].as_bool(), events: Vec::new() });
            }
            _ => panic!("unexpected frame: {v}"),
        }
    }
    c.silent_for(Duration::from_millis(300)).await;
    view
}

/// Subscribes `c` to `channels`; the initial view.
async fn subscribe_all(c: &mut Client, channels: &[String]) -> View {
    let mut view = View::new();
    for ch in channels {
        let r = c.subscribe(ROOM, ch).await;
        let epoch = r["epoch"].as_str().expect("epoch").to_owned();
        view.insert(ch.clone(), vec![Segment { epoch, recovered: None, events: Vec::new() }]);
    }
    view
}

/// What the publisher did.
#[derive(Debug, Default)]
struct PubLog {
    /// seq → (channel, acked offset).
    acked: BTreeMap<u64, (String, u64)>,
    /// seq → error code, for refused publishes.
    failed: BTreeMap<u64, String>,
    /// seq of the next publish.
    next: u64,
}

/// Publishes with acks round-robin over `channels` until `stop`.
async fn publish_until(mut p: Client, channels: Vec<String>, log: Arc<Mutex<PubLog>>, stop: Arc<AtomicBool>) -> Client {
    let mut seq = 0u64;
    while !stop.load(Ordering::Acquire) {
        let ch = &channels[seq as usize % channels.len()];
        let ok = publish_seq(&mut p, ch, json!({ "seq": seq }), seq, &log).await;
        tokio::time::sleep(Duration::from_millis(if ok { 3 } else { 50 })).await;
        seq += 1;
    }
    p
}

/// Publishes `payload` (carrying `seq`) with an ack and logs the outcome; true when acked.
async fn publish_seq(p: &mut Client, ch: &str, payload: Value, seq: u64, log: &Mutex<PubLog>) -> bool {
    let r = p.request(json!({ "type": "event", "room": ROOM, "channel": ch, "payload": payload })).await;
    let mut log = log.lock().unwrap();
    let ok = r["type"] == "reply";
    if ok {
        log.acked.insert(seq, (ch.to_owned(), r["result"]["offset"].as_u64().expect("offset")));
    } else {
        log.failed.insert(seq, r["error"]["code"].as_str().unwrap_or("?").to_owned());
    }
    log.next = seq + 1;
    ok
}

/// Polls `f` every 50 ms until it returns a value; panics with `what` after `timeout`.
async fn poll_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `f` every 50 ms until it holds; panics with `what` after `timeout`.
async fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every event of a channel's stream, paging `history`: `(epoch, [(offset, seq)])`.
async fn full_history(c: &mut Client, ch: &str) -> (String, Vec<(u64, u64)>) {
    let mut out = Vec::new();
    let mut since = 0u64;
    loop {
        let h = c.ok("history", json!({ "room": ROOM, "channel": ch, "since": since, "limit": 1000 })).await;
        let events = h["events"].as_array().expect("events");
        for e in events {
            out.push((e["offset"].as_u64().unwrap(), e["payload"]["seq"].as_u64().unwrap()));
        }
        match events.last() {
            Some(e) => since = e["offset"].as_u64().unwrap(),
            None => return (h["epoch"].as_str().unwrap().to_owned(), out),
        }
    }
}

/// How the master goes away.
#[derive(Debug, Clone, Copy)]
enum Disruption {
    /// `SENTINEL FAILOVER`: a coordinated switch-over.
    Failover,
    /// SIGKILL of the master; the sentinels promote the replica.
    KillMaster,
}

/// Master + replica + 3 sentinels, two gateways configured through the sentinels (one by URL,
/// one by `sentinel_service` + `sentinels`); a publisher on one gateway publishes with acks on
/// three channels while the master goes away, subscribers on both gateways.
///
/// Afterwards, per channel and subscriber: offsets contiguous in each epoch, no duplicate, every
/// acked event delivered with its acked offset, and an acked event missing (from the subscriber
/// or the history) only when the channel's epoch changed, which the subscriber was told.
async fn failover_during_traffic(how: Disruption) {
    let sentinel = tokio::task::spawn_blocking(RedisSentinel::start).await.expect("sentinel starts");
    let addrs = sentinel.sentinel_addrs();
    let service = sentinel.service_name();
    let nodes: Vec<String> = addrs[1..].iter().map(|a| format!("node={a}")).collect();
    let url = format!("redis-sentinel://{}?sentinelServiceName={service}&{}", addrs[0], nodes.join("&"));
    let g1 = spawn_gateway(&[("ARQONBUS_BACKPLANE__URL", url)]).await;
    let g2 = spawn_gateway(&[
        ("ARQONBUS_BACKPLANE__SENTINEL_SERVICE", service.to_owned()),
        ("ARQONBUS_BACKPLANE__SENTINELS", format!("[{}]", addrs.join(","))),
    ])
    .await;
    let old_master = sentinel.master_port();

    let channels: Vec<String> = (0..3).map(|i| format!("f{i}")).collect();
    let mut s1 = Client::connect(g1.addr()).await;
    let mut s2 = Client::connect(g2.addr()).await;
    let v1 = subscribe_all(&mut s1, &channels).await;
    let v2 = subscribe_all(&mut s2, &channels).await;
    let initial: HashMap<String, String> = v1.iter().map(|(ch, s)| (ch.clone(), s[0].epoch.clone())).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let c1 = tokio::spawn(collect(s1, v1, deadline));
    let c2 = tokio::spawn(collect(s2, v2, deadline));

    let log = Arc::new(Mutex::new(PubLog::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let p = Client::connect(g2.addr()).await;
    let publisher = tokio::spawn(publish_until(p, channels.clone(), log.clone(), stop.clone()));
    let acked = || log.lock().unwrap().acked.len();
    wait_until(Duration::from_secs(20), "30 acked publishes before the failover", || acked() >= 30).await;

    let (sentinel, new_master) = tokio::task::spawn_blocking(move || {
        let mut sentinel = sentinel;
        let new = match how {
            Disruption::Failover => sentinel.failover(),
            Disruption::KillMaster => {
                let killed = sentinel.kill_master();
                sentinel.wait_for_new_master(killed, Duration::from_secs(30))
            }
        };
        (sentinel, new)
    })
    .await
    .expect("failover");
    let failed_over = Instant::now();
    assert_ne!(new_master, old_master);
    // The gateways follow the new master: an event acked after the failover is stored there.
    // From then on nothing acked may be lost; before, acks of the deposed master may be (then
    // the channel has a new epoch).
    let after = log.lock().unwrap().next;
    let stored_on_new_master = || {
        let (seq, (ch, offset)) = log.lock().unwrap().acked.range(after..).next_back().map(|(s, a)| (*s, a.clone()))?;
        let id = format!("{offset}-0");
        let out = tokio::task::block_in_place(|| redis_cli(new_master, None, &["XRANGE", &stream_key(&ch), &id, &id]));
        out.contains(&format!("\"seq\":{seq}}}")).then_some(seq)
    };
    let followed =
        poll_until(Duration::from_secs(30), "an acked publish stored on the new master", stored_on_new_master).await;
    // Promptly: a deposed master that is still up takes writes until the sentinels reconfigure
    // it, seconds later, so the gateways must not wait for that.
    let lag = failed_over.elapsed();
    assert!(lag < Duration::from_secs(5), "the gateways followed the new master only after {lag:?}");
    let acked_after = || log.lock().unwrap().acked.range(followed..).count();
    wait_until(Duration::from_secs(30), "30 acked publishes on the new master", || acked_after() >= 30).await;
    g1.wait_ready(200, READY).await;
    g2.wait_ready(200, READY).await;
    stop.store(true, Ordering::Release);
    let mut p = publisher.await.expect("publisher");

    // A marker closes each channel's stream: a subscriber that has it has everything before it.
    // Each try under a new seq: a refused publish may still have been stored.
    let mut seq = log.lock().unwrap().next;
    for ch in &channels {
        while !publish_seq(&mut p, ch, json!({ "seq": seq, "marker": true }), seq, &log).await {
            seq += 1;
            assert!(Instant::now() < deadline, "cannot publish the marker of {ch}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seq += 1;
    }
    let views = [c1.await.expect("subscriber on gateway 1"), c2.await.expect("subscriber on gateway 2")];

    let log = std::mem::take(&mut *log.lock().unwrap());
    let mut reader = Client::connect(g1.addr()).await;
    for ch in &channels {
        let history = full_history(&mut reader, ch).await;
        let top = history.1.last().map_or(0, |e| e.0);
        // The gateways write to the new master.
        assert_eq!(redis_cli(new_master, None, &["HGET", &meta_key(ch), "offset"]), top.to_string(), "{ch}");
        let acks: Vec<(u64, u64)> =
            log.acked.iter().filter(|(_, (c, _))| c == ch).map(|(seq, (_, off))| (*seq, *off)).collect();
        check_channel(ch, &initial[ch], &acks, followed, &log, &history, &views);
    }
    let errors: BTreeSet<&str> = log.failed.values().map(String::as_str).collect();
    // UNAVAILABLE: not stored; TIMEOUT: sent, outcome unknown (each try used its own seq, and the
    // checks above accept a refused publish that was stored after all).
    assert!(
        errors.iter().all(|e| *e == "UNAVAILABLE" || *e == "TIMEOUT"),
        "publishes failed only with UNAVAILABLE or TIMEOUT: {errors:?}"
    );
    let changed: Vec<&String> = channels.iter().filter(|ch| views[0][*ch].len() > 1).collect();
    eprintln!(
        "{how:?}: {} acked, {} refused ({errors:?}); seq {after}: failover done, seq {followed}: stored on the \
         new master {lag:?} later; old master :{old_master}, new :{new_master}; new epoch on {changed:?}",
        log.acked.len(),
        log.failed.len()
    );
    drop(sentinel);
}

/// The checks of [`failover_during_traffic`] for one channel.
fn check_channel(
    ch: &str,
    initial_epoch: &str,
    acks: &[(u64, u64)],
    followed: u64,
    log: &PubLog,
    (history_epoch, history): &(String, Vec<(u64, u64)>),
    views: &[View],
) {
    let acked_offset: HashMap<u64, u64> = acks.iter().copied().collect();
    let sent = |seq: u64| acked_offset.contains_key(&seq) || log.failed.contains_key(&seq);
    // A new epoch keeps what the stream still holds of the old one: a gap to the new offsets.
    let epoch_changed = history_epoch != initial_epoch;
    check_stream(ch, "history", history, !epoch_changed, &acked_offset, &sent);
    let in_history: BTreeSet<u64> = history.iter().map(|e| e.1).collect();
    for (n, view) in views.iter().enumerate() {
        let segs = &view[ch];
        assert_eq!(segs[0].epoch, initial_epoch, "{ch}: subscriber {n} started in the channel's epoch");
        for (k, seg) in segs.iter().enumerate() {
            let who = format!("subscriber {n}, epoch #{k} {}", seg.epoch);
            // Live delivery within the first epoch is contiguous; a later one starts with the
            // replay of the new epoch's stream, which may have the gap.
            check_stream(ch, &who, &seg.events, k == 0, &acked_offset, &sent);
            if k == 0 {
                assert_eq!(seg.events.first().map_or(1, |e| e.0), 1, "{ch} {who}: from the first event");
            } else {
                assert_ne!(seg.epoch, segs[k - 1].epoch, "{ch} {who}: history_lost means a new epoch");
                assert_eq!(seg.recovered, Some(false), "{ch} {who}: the new epoch is not a recovery");
            }
        }
        assert_eq!(&segs.last().unwrap().epoch, history_epoch, "{ch} subscriber {n}: ends in the channel's epoch");
        let received: BTreeSet<u64> = segs.iter().flat_map(|s| s.events.iter().map(|e| e.1)).collect();
        for &(seq, offset) in acks {
            assert!(
                received.contains(&seq) || epoch_changed,
                "{ch}: acked seq {seq} (offset {offset}) never reached subscriber {n} in an unchanged epoch \
                 {initial_epoch}"
            );
            assert!(
                received.contains(&seq) || seq < followed,
                "{ch}: seq {seq} (offset {offset}), acked after the gateways followed the new master, never reached \
                 subscriber {n}"
            );
            assert!(
                received.contains(&seq) || !in_history.contains(&seq),
                "{ch}: acked seq {seq} (offset {offset}) is in the history but never reached subscriber {n}"
            );
        }
    }
    for &(seq, offset) in acks {
        assert!(
            in_history.contains(&seq) || (epoch_changed && seq < followed),
            "{ch}: acked seq {seq} (offset {offset}) is missing from the history (epoch {initial_epoch} → \
             {history_epoch})"
        );
    }
}

/// One stream of `(offset, seq)`: offsets ascending (and contiguous when `contiguous`), no seq
/// twice, only sent seqs, acked ones at their acked offset.
fn check_stream(
    ch: &str,
    who: &str,
    events: &[(u64, u64)],
    contiguous: bool,
    acked_offset: &HashMap<u64, u64>,
    sent: &impl Fn(u64) -> bool,
) {
    for w in events.windows(2) {
        if contiguous {
            assert_eq!(w[1].0, w[0].0 + 1, "{ch} {who}: offsets contiguous and in order: {events:?}");
        } else {
            assert!(w[1].0 > w[0].0, "{ch} {who}: offsets in order: {events:?}");
        }
    }
    let mut seqs = BTreeSet::new();
    for &(offset, seq) in events {
        assert!(seqs.insert(seq), "{ch} {who}: seq {seq} twice");
        assert!(sent(seq), "{ch} {who}: seq {seq} was never published");
        if let Some(&acked) = acked_offset.get(&seq) {
            assert_eq!(offset, acked, "{ch} {who}: seq {seq} delivered at another offset than acked");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_switchover_during_traffic_loses_no_acked_event_silently() {
    failover_during_traffic(Disruption::Failover).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_killed_master_during_traffic_loses_no_acked_event_silently() {
    failover_during_traffic(Disruption::KillMaster).await;
}

// ---------------------------------------------------------------------------------------
// Cluster: hash slots moving and masters failing over under subscribed channels.

/// Gateways on `cluster` that check the slot map every 300 ms, with `more` settings.
async fn cluster_gateways(cluster: &RedisCluster, more: &[(&'static str, String)]) -> (Gateway, Gateway) {
    let mut env = vec![
        ("ARQONBUS_BACKPLANE__URL", cluster_url(cluster)),
        ("ARQONBUS_BACKPLANE__SLOT_CHECK_INTERVAL_MS", "300".to_owned()),
    ];
    env.extend(more.iter().cloned());
    (spawn_gateway(&env).await, spawn_gateway(&env).await)
}

/// Waits until the master on `port` holds `n` subscriptions (one per gateway) to `ch`.
async fn wait_shard_subscribers(cluster: &RedisCluster, port: u16, ch: &str, n: u64) {
    let what = format!("{n} subscriptions to {ch} on :{port}");
    wait_until(Duration::from_secs(10), &what, || {
        tokio::task::block_in_place(|| shard_subscribers(cluster, port, ch)) == n
    })
    .await;
}

/// Subscribers on gateways `a` and `b` to every channel, each collecting until its markers,
/// and a publisher on `a` publishing with acks round-robin until stopped.
struct Traffic {
    /// Each channel's epoch at the start.
    initial: HashMap<String, String>,
    deadline: Instant,
    views: [tokio::task::JoinHandle<View>; 2],
    log: Arc<Mutex<PubLog>>,
    stop: Arc<AtomicBool>,
    publisher: tokio::task::JoinHandle<Client>,
}

impl Traffic {
    async fn start(a: &Gateway, b: &Gateway, channels: &[String]) -> Traffic {
        let mut s1 = Client::connect(a.addr()).await;
        let mut s2 = Client::connect(b.addr()).await;
        let v1 = subscribe_all(&mut s1, channels).await;
        let v2 = subscribe_all(&mut s2, channels).await;
        let initial = v1.iter().map(|(ch, s)| (ch.clone(), s[0].epoch.clone())).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        let views = [tokio::spawn(collect(s1, v1, deadline)), tokio::spawn(collect(s2, v2, deadline))];
        let log = Arc::new(Mutex::new(PubLog::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let p = Client::connect(a.addr()).await;
        let publisher = tokio::spawn(publish_until(p, channels.to_vec(), log.clone(), stop.clone()));
        Traffic { initial, deadline, views, log, stop, publisher }
    }

    /// Acked publishes from seq `from` on.
    fn acked_since(&self, from: u64) -> usize {
        self.log.lock().unwrap().acked.range(from..).count()
    }

    /// The seq of the next publish.
    fn next(&self) -> u64 {
        self.log.lock().unwrap().next
    }

    /// Stops the publisher, publishes a marker on each channel, and returns the publisher's log
    /// and what each subscriber saw.
    async fn finish(self, channels: &[String]) -> (PubLog, [View; 2]) {
        self.stop.store(true, Ordering::Release);
        let mut p = self.publisher.await.expect("publisher");
        let mut seq = self.log.lock().unwrap().next;
        // Each try under a new seq: a refused publish may have been stored after all.
        for ch in channels {
            while !publish_seq(&mut p, ch, json!({ "seq": seq, "marker": true }), seq, &self.log).await {
                seq += 1;
                assert!(Instant::now() < self.deadline, "cannot publish the marker of {ch}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seq += 1;
        }
        let [v1, v2] = self.views;
        let views = [v1.await.expect("subscriber on gateway A"), v2.await.expect("subscriber on gateway B")];
        let log = std::mem::take(&mut *self.log.lock().unwrap());
        (log, views)
    }
}

/// `redis-cli --cluster reshard` moves the slots of four channels (subscribed on two gateways)
/// to another master while a publisher publishes with acks. Sweeps are rare here (60 s), so
/// what reaches the subscribers after the move comes through their subscriptions made again on
/// the new master: every acked event reaches every subscriber once, in order, in the same
/// epoch, and a `since` resume afterwards on either gateway is gapless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_reshard_during_traffic_delivers_every_acked_event_once_in_order() {
    const MOVE: usize = 1500;
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3)).await.expect("cluster starts");
    let (from, to) = (cluster.ports()[0], cluster.ports()[1]);
    let moving: BTreeSet<u16> = tokio::task::block_in_place(|| cluster.first_slots(from, MOVE)).into_iter().collect();
    let slot = |ch: &str| fred::util::redis_keyslot(live_key(ch).as_bytes());
    let (mut moved, mut staying) = (Vec::new(), Vec::new());
    for ch in (0..).map(|i| format!("r{i}")) {
        if moving.contains(&slot(&ch)) {
            if moved.len() < 4 {
                moved.push(ch);
            }
        } else if staying.len() < 2 {
            staying.push(ch);
        }
        if moved.len() == 4 && staying.len() == 2 {
            break;
        }
    }
    let channels: Vec<String> = moved.iter().chain(&staying).cloned().collect();
    let owners: HashMap<String, u16> = tokio::task::block_in_place(|| {
        staying.iter().map(|ch| (ch.clone(), cluster.owner_of(&meta_key(ch)))).collect()
    });
    let (a, b) = cluster_gateways(&cluster, &[("ARQONBUS_BACKPLANE__SWEEP_INTERVAL_MS", "60000".into())]).await;

    let t = Traffic::start(&a, &b, &channels).await;
    let initial = t.initial.clone();
    for ch in &moved {
        wait_shard_subscribers(&cluster, from, ch, 2).await;
    }
    wait_until(Duration::from_secs(20), "60 acked publishes before the reshard", || t.acked_since(0) >= 60).await;
    let before: HashMap<String, u64> = {
        let log = t.log.lock().unwrap();
        let last = |ch: &String| log.acked.values().filter(|(c, _)| c == ch).map(|a| a.1).max().unwrap_or(0);
        channels.iter().map(|ch| (ch.clone(), last(ch))).collect()
    };

    let started = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.reshard(from, to, MOVE);
        cluster
    })
    .await
    .expect("reshard");
    let took = started.elapsed();
    tokio::task::block_in_place(|| {
        for ch in &moved {
            assert_eq!(cluster.owner_of(&meta_key(ch)), to, "{ch} moved");
        }
        for ch in &staying {
            assert_eq!(cluster.owner_of(&meta_key(ch)), owners[ch], "{ch} stayed");
        }
    });
    // Both gateways listen on the new master now, and no longer on the old one.
    for ch in &moved {
        wait_shard_subscribers(&cluster, to, ch, 2).await;
        assert_eq!(tokio::task::block_in_place(|| shard_subscribers(&cluster, from, ch)), 0, "{ch} on :{from}");
    }
    let n = t.next();
    wait_until(Duration::from_secs(20), "60 acked publishes after the reshard", || t.acked_since(n) >= 60).await;
    let (log, views) = t.finish(&channels).await;

    let mut reader = Client::connect(b.addr()).await;
    for ch in &channels {
        let history = full_history(&mut reader, ch).await;
        assert_eq!(history.0, initial[ch], "{ch}: the same epoch after the move");
        let acks: Vec<(u64, u64)> =
            log.acked.iter().filter(|(_, (c, _))| c == ch).map(|(seq, (_, off))| (*seq, *off)).collect();
        // followed = 0: every acked event reaches every subscriber.
        check_channel(ch, &initial[ch], &acks, 0, &log, &history, &views);
        let top = history.1.last().expect("events").0;
        assert_eq!(history.1.len() as u64, top, "{ch}: offsets 1..={top} all in the history");
        for (n, view) in views.iter().enumerate() {
            assert_eq!(view[ch].len(), 1, "{ch}: subscriber {n} was never unsubscribed: {:?}", view[ch]);
            assert_eq!(view[ch][0].events, history.1, "{ch}: subscriber {n} got exactly the history");
        }
        // A resume from before the move, on either gateway: every event after it, once, in order.
        for g in [&a, &b] {
            let mut c = Client::connect(g.addr()).await;
            let since = json!({ "offset": before[ch], "epoch": initial[ch] });
            let r = c.ok("subscribe", json!({ "room": ROOM, "channel": ch, "since": since })).await;
            assert_eq!(r["recovered"], true, "{ch}: {r}");
            assert_eq!(r["offset"], top, "{ch}: {r}");
            let got = read_events(&mut c, (top - before[ch]) as usize, Duration::from_secs(10)).await;
            let got: Vec<(u64, u64)> =
                got[ch].iter().map(|(o, payload, _)| (*o, payload["seq"].as_u64().expect("seq"))).collect();
            assert_eq!(got, history.1[before[ch] as usize..], "{ch}: the resume from {}", before[ch]);
            c.silent_for(Duration::from_millis(200)).await;
        }
    }
    let moves = [
        metric(a.addr(), "arqonbus_backplane_slot_moves_total").await,
        metric(b.addr(), "arqonbus_backplane_slot_moves_total").await,
    ];
    assert!(moves.iter().all(|m| *m >= 1.0), "each gateway counted the moves: {moves:?}");
    let errors: BTreeSet<&str> = log.failed.values().map(String::as_str).collect();
    assert!(errors.iter().all(|e| *e == "UNAVAILABLE" || *e == "TIMEOUT"), "refusals: {errors:?}");
    eprintln!(
        "reshard of {MOVE} slots :{from} → :{to} in {took:?}; {} acked, {} refused ({errors:?}); slot moves \
         counted {moves:?}",
        log.acked.len(),
        log.failed.len()
    );
}

/// A Cluster with a replica per master; `CLUSTER FAILOVER` on the replica of a subscribed
/// channel's master while a publisher publishes with acks. Either nothing acked is lost, or the
/// loss shows as a new epoch with `recovered:false`; never a silent gap. The gateways listen on
/// the promoted master afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_during_traffic_loses_no_acked_event_silently() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start_with_replicas(3)).await.expect("cluster starts");
    let channels: Vec<String> = (0..3).map(|i| format!("f{i}")).collect();
    let (old_master, replica) = tokio::task::block_in_place(|| {
        let m = cluster.owner_of(&meta_key(&channels[0]));
        (m, cluster.replica_of(m).expect("a replica per master"))
    });
    let (a, b) = cluster_gateways(&cluster, &[]).await;
    let t = Traffic::start(&a, &b, &channels).await;
    let initial = t.initial.clone();
    wait_until(Duration::from_secs(20), "30 acked publishes before the failover", || t.acked_since(0) >= 30).await;

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.failover(replica);
        cluster
    })
    .await
    .expect("failover");
    let failed_over = Instant::now();
    assert_eq!(tokio::task::block_in_place(|| cluster.owner_of(&meta_key(&channels[0]))), replica);
    // From the first event of the failed-over channel acked and stored on the promoted master
    // on, nothing acked may be lost.
    let after = t.next();
    let stored_on_new_master = || {
        let last = t
            .log
            .lock()
            .unwrap()
            .acked
            .range(after..)
            .rfind(|(_, (c, _))| *c == channels[0])
            .map(|(s, (_, o))| (*s, *o));
        let (seq, offset) = last?;
        let id = format!("{offset}-0");
        let out =
            tokio::task::block_in_place(|| cluster.cli(replica, &["XRANGE", &stream_key(&channels[0]), &id, &id]));
        out.contains(&format!("\"seq\":{seq}}}")).then_some(seq)
    };
    let followed =
        poll_until(Duration::from_secs(30), "an acked publish stored on the promoted master", stored_on_new_master)
            .await;
    let lag = failed_over.elapsed();
    wait_shard_subscribers(&cluster, replica, &channels[0], 2).await;
    wait_until(Duration::from_secs(30), "30 acked publishes after the failover", || t.acked_since(followed) >= 30)
        .await;
    a.wait_ready(200, READY).await;
    b.wait_ready(200, READY).await;
    let (log, views) = t.finish(&channels).await;

    let mut reader = Client::connect(a.addr()).await;
    for ch in &channels {
        let history = full_history(&mut reader, ch).await;
        let top = history.1.last().map_or(0, |e| e.0);
        let owner = tokio::task::block_in_place(|| cluster.owner_of(&meta_key(ch)));
        assert_eq!(cluster.cli(owner, &["HGET", &meta_key(ch), "offset"]), top.to_string(), "{ch}");
        let acks: Vec<(u64, u64)> =
            log.acked.iter().filter(|(_, (c, _))| c == ch).map(|(seq, (_, off))| (*seq, *off)).collect();
        check_channel(ch, &initial[ch], &acks, followed, &log, &history, &views);
    }
    let moves = [
        metric(a.addr(), "arqonbus_backplane_slot_moves_total").await,
        metric(b.addr(), "arqonbus_backplane_slot_moves_total").await,
    ];
    let errors: BTreeSet<&str> = log.failed.values().map(String::as_str).collect();
    assert!(errors.iter().all(|e| *e == "UNAVAILABLE" || *e == "TIMEOUT"), "refusals: {errors:?}");
    let changed: Vec<&String> = channels.iter().filter(|ch| views[0][*ch].len() > 1).collect();
    eprintln!(
        "cluster failover :{old_master} → :{replica}: {} acked, {} refused ({errors:?}); seq {followed} stored on the \
         promoted master {lag:?} after; slot moves counted {moves:?}; new epoch on {changed:?}",
        log.acked.len(),
        log.failed.len()
    );
}

/// A channel's slot moved by hand, one step at a time, with a subscriber on one gateway and a
/// publisher on the other. While the channel's keys are on the importing master and the slot
/// is not yet reassigned (the old master answers `ASK`), a publish is acked or refused with
/// UNAVAILABLE or TIMEOUT, never INTERNAL; once the slot is reassigned (`MOVED`), publishes are
/// acked and stored on the new master. The subscriber gets every stored event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_publishes_during_a_hand_driven_slot_move_are_never_wrongly_answered() {
    let cluster = tokio::task::spawn_blocking(|| RedisCluster::start(3)).await.expect("cluster starts");
    let ch = "m0";
    let slot = fred::util::redis_keyslot(meta_key(ch).as_bytes());
    let from = tokio::task::block_in_place(|| cluster.owner_of(&meta_key(ch)));
    let to = *cluster.ports().iter().find(|p| **p != from).expect("another master");
    let (a, b) = cluster_gateways(&cluster, &[]).await;
    let mut s = Client::connect(a.addr()).await;
    let mut p = Client::connect(b.addr()).await;
    let log = Mutex::new(PubLog::default());
    assert!(publish_seq(&mut p, ch, json!({ "seq": 0 }), 0, &log).await);
    let epoch = s.subscribe(ROOM, ch).await["epoch"].as_str().expect("epoch").to_owned();
    assert!(publish_seq(&mut p, ch, json!({ "seq": 1 }), 1, &log).await);

    tokio::task::block_in_place(|| cluster.begin_slot_move(slot, from, to));
    for seq in 2..5 {
        publish_seq(&mut p, ch, json!({ "seq": seq }), seq, &log).await;
    }
    tokio::task::block_in_place(|| cluster.finish_slot_move(slot, to));
    // After the move: acked, on the new master (a refusal is retried under a new seq).
    let mut seq = 5;
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.lock().unwrap().acked.range(5..).count() < 3 {
        if !publish_seq(&mut p, ch, json!({ "seq": seq }), seq, &log).await {
            assert!(Instant::now() < deadline, "no publish acked after the move: {:?}", log.lock().unwrap().failed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seq += 1;
    }
    let log = std::mem::take(&mut *log.lock().unwrap());
    let errors: BTreeSet<&str> = log.failed.values().map(String::as_str).collect();
    assert!(errors.iter().all(|e| *e == "UNAVAILABLE" || *e == "TIMEOUT"), "refusals: {errors:?}");
    let (last_seq, (_, top)) = log.acked.iter().next_back().map(|(s, a)| (*s, a.clone())).expect("acked");
    let id = format!("{top}-0");
    let stored = tokio::task::block_in_place(|| cluster.cli(to, &["XRANGE", &stream_key(ch), &id, &id]));
    assert!(stored.contains(&format!("\"seq\":{last_seq}}}")), "stored on the new master :{to}: {stored}");

    let mut reader = Client::connect(b.addr()).await;
    let history = full_history(&mut reader, ch).await;
    assert_eq!(history.0, epoch, "the same epoch");
    assert_eq!(history.1.last().map(|e| e.0), Some(top), "the last ack is the top");
    let acked_offset: HashMap<u64, u64> = log.acked.iter().map(|(s, (_, o))| (*s, *o)).collect();
    let sent = |seq: u64| acked_offset.contains_key(&seq) || log.failed.contains_key(&seq);
    check_stream(ch, "history", &history.1, true, &acked_offset, &sent);
    for seq in acked_offset.keys() {
        assert!(history.1.iter().any(|e| e.1 == *seq), "acked seq {seq} in the history: {history:?}");
    }
    // The subscriber (from offset 2 on): exactly the history, live or repaired.
    let got = read_events(&mut s, history.1.len() - 1, Duration::from_secs(10)).await;
    let got: Vec<(u64, u64)> =
        got[ch].iter().map(|(o, payload, _)| (*o, payload["seq"].as_u64().expect("seq"))).collect();
    assert_eq!(got, history.1[1..], "the subscriber's events");
    s.silent_for(Duration::from_millis(300)).await;
    wait_shard_subscribers(&cluster, to, ch, 1).await;
    eprintln!("hand-driven move of slot {slot} :{from} → :{to}: {} acked, refused {:?}", log.acked.len(), log.failed);
}

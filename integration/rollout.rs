//! Rollouts and scale-ups with real gateway processes on one real Redis:
//!
//! - a node with 1,000 subscribed clients is drained (SIGTERM) while events keep being published
//!   on another node: every client is told `draining`, reconnects to the survivor after its
//!   `reconnect_after_ms`, resumes with `since` and gets every event exactly once. The test
//!   prints how the reconnects spread out and how long the full resume took (docs/kubernetes.md
//!   records a run); it asserts no time.
//! - a node with 600 clients sees a second node join and sheds down to the mean, a few clients
//!   at a time: every shed client resumes on the new node with nothing lost.
//! - shutdown with Redis gone does not wait on Redis.

mod mover;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mover::{mover, percentile, Trace};
use serde_json::json;
use support::common::{http, metric, Client};
use support::*;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const API_KEY: &str = "rollout-test-api-key-0123456789";

fn env(redis: &Redis, node: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ARQONBUS_BACKPLANE__URL", redis.url()),
        ("ARQONBUS_SERVER__NODE_ID", node.to_owned()),
        ("ARQONBUS_BACKPLANE__NODE_TTL_S", "4".into()),
        ("ARQONBUS_BACKPLANE__CANARY_INTERVAL_MS", "200".into()),
        ("ARQONBUS_HTTP__API_KEY", API_KEY.into()),
        ("ARQONBUS_CHANNELS__HISTORY_SIZE", "100000".into()),
    ]
}

fn with(mut env: Vec<(&'static str, String)>, more: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    env.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// Publishes through `POST /v1/publish` on `addr` every `every` (or as fast as the node
/// acknowledges, if slower) until `stop`, then one last event with `"end": true`; returns how
/// many were published and over how long.
fn publisher(
    addr: SocketAddr,
    channel: &'static str,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<(u64, Duration)> {
    tokio::spawn(async move {
        let started = Instant::now();
        let auth = format!("Bearer {API_KEY}");
        let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
        let mut n = 0;
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let end = stop.load(Ordering::Acquire);
            let body = json!({ "room": "roll", "channel": channel, "payload": { "n": n, "end": end } });
            let (status, text) = http(addr, "POST", "/v1/publish", &headers, &body.to_string()).await;
            assert_eq!(status, 200, "publish {n}: {text}");
            n += 1;
            if end {
                return (n, started.elapsed());
            }
        }
    })
}

/// Starts `n` movers on `first` (a few at a time), each going to `then` after a close, and
/// waits until all of them are subscribed.
async fn movers(n: usize, first: SocketAddr, then: SocketAddr, channel: &'static str) -> Vec<JoinHandle<Trace>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(tokio::spawn(mover(first, then, "roll", channel, Duration::from_secs(120))));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut probe = Client::connect(first).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = probe.command("channel_info", json!({ "room": "roll", "channel": channel })).await;
        if info["result"]["subscribers"] == n as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "not every mover subscribed: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_with_1000_clients_hands_every_one_to_the_survivor_with_nothing_lost() {
    const CLIENTS: usize = 1000;
    let redis = Redis::start();
    let drain = [
        ("ARQONBUS_SERVER__DRAIN_DELAY_MS", "1000"),
        ("ARQONBUS_SERVER__DRAIN_JITTER_MS", "5000"),
        ("ARQONBUS_SERVER__SHUTDOWN_GRACE_MS", "15000"),
    ];
    let mut a = Gateway::spawn(&with(env(&redis, "drained"), &drain)).await;
    let b = Gateway::spawn(&with(env(&redis, "survivor"), &drain)).await;
    a.wait_ready(200, Duration::from_secs(15)).await;
    b.wait_ready(200, Duration::from_secs(15)).await;
    let clients = movers(CLIENTS, a.addr(), b.addr(), "drain").await;

    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publisher(b.addr(), "drain", Duration::from_millis(20), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.sigterm();
    let sigterm = Instant::now();
    let status = a.wait_exit().await;
    let exited = sigterm.elapsed();
    assert!(status.success(), "the drained node exits 0: {status}\n{}", a.output());
    // Publishing goes on until every client is back on the survivor and caught up.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(b.addr(), "arqonbus_connections").await < CLIENTS as f64 {
        assert!(Instant::now() < deadline, "not every client reached the survivor");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Release);
    let (published, publishing) = publishing.await.expect("publisher");

    let mut traces = Vec::new();
    for c in clients {
        traces.push(c.await.expect("mover"));
    }
    let first_advice = traces.iter().filter_map(|t| t.advisories.first()).map(|a| a.at).min().expect("advised");
    let mut reconnects = Vec::new();
    let mut resumed = Vec::new();
    let mut replayed = 0;
    for (i, t) in traces.iter().enumerate() {
        let who = format!("client {i}");
        t.assert_exactly_once(&who);
        assert_eq!(t.end, Some(published), "{who}");
        assert_eq!(t.client_ids.len(), 2, "{who} moved exactly once: {t:?}");
        assert_eq!(t.advisories.len(), 1, "{who} was told to move once");
        let advice = &t.advisories[0];
        assert_eq!(advice.reason, None, "a drain gives no rebalance reason");
        assert!(advice.reconnect_after_ms <= 5000, "{who}: jitter bounded by drain_jitter_ms");
        assert_eq!(t.closes, [Some(1012)], "{who}");
        let resume = &t.resumes[0];
        assert_eq!(resume.recovered, json!(true), "{who} resumed within retention");
        replayed += resume.replayed;
        reconnects.push(resume.at - first_advice);
        resumed.push(resume.caught_up.expect("caught up") - sigterm);
    }
    reconnects.sort();
    resumed.sort();
    let spread = reconnects[reconnects.len() - 1] - reconnects[0];
    println!(
        "MEASURED drain of {CLIENTS} clients (drain_delay_ms 1000, drain_jitter_ms 5000), {published} events \
         published on the survivor ({:.0}/s): draining sent {} after SIGTERM; reconnects (after the first \
         `draining`) p0 {} p50 {} p90 {} p99 {} p100 {}, spread {}; full resume (every client caught up) {} \
         after SIGTERM ({} after the first `draining`); drained node exited after {}; {replayed} events \
         replayed in all; 0 lost, 0 duplicated",
        published as f64 / publishing.as_secs_f64(),
        ms(first_advice - sigterm),
        ms(reconnects[0]),
        ms(percentile(&reconnects, 50)),
        ms(percentile(&reconnects, 90)),
        ms(percentile(&reconnects, 99)),
        ms(reconnects[reconnects.len() - 1]),
        ms(spread),
        ms(resumed[resumed.len() - 1]),
        ms(resumed[resumed.len() - 1] - (first_advice - sigterm)),
        ms(exited),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_above_the_mean_sheds_to_a_new_node_down_to_the_mean_with_nothing_lost() {
    const CLIENTS: usize = 600;
    let redis = Redis::start();
    let cluster = [
        ("ARQONBUS_CLUSTER__REBALANCE", "true"),
        ("ARQONBUS_CLUSTER__REBALANCE_TOLERANCE", "0.1"),
        ("ARQONBUS_CLUSTER__REBALANCE_RATE_PER_S", "100"),
        ("ARQONBUS_SERVER__DRAIN_JITTER_MS", "1000"),
    ];
    let a = Gateway::spawn(&with(env(&redis, "old"), &cluster)).await;
    a.wait_ready(200, Duration::from_secs(15)).await;
    // The new node's address is known before it exists: clients told to move go there.
    let b_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
    let clients = movers(CLIENTS, a.addr(), b_addr, "rebalance").await;
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publisher(a.addr(), "rebalance", Duration::from_millis(20), stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(metric(a.addr(), "arqonbus_rebalance_shed_total").await, 0.0, "alone, a node never sheds");
    assert_eq!(metric(a.addr(), "arqonbus_cluster_peers").await, 1.0);

    let mut b_env = with(env(&redis, "new"), &cluster);
    b_env.push(("ARQONBUS_SERVER__LISTEN", b_addr.to_string()));
    let b = Gateway::spawn(&b_env).await;
    b.wait_ready(200, Duration::from_secs(15)).await;
    let joined = Instant::now();
    // Wait until every advised client is on the new node and the old one sheds no more.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (-1.0, Instant::now());
    let (on_a, on_b, shed) = loop {
        let shed = metric(a.addr(), "arqonbus_rebalance_shed_total").await;
        let (on_a, on_b) =
            (metric(a.addr(), "arqonbus_connections").await, metric(b.addr(), "arqonbus_connections").await);
        if shed != last.0 {
            last = (shed, Instant::now());
        }
        if shed > 0.0 && on_a + on_b == CLIENTS as f64 && last.1.elapsed() > Duration::from_secs(4) {
            break (on_a, on_b, shed);
        }
        assert!(Instant::now() < deadline, "rebalancing did not settle: A {on_a}, B {on_b}, shed {shed}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.store(true, Ordering::Release);
    let (published, _) = publishing.await.expect("publisher");
    let mean = CLIENTS as f64 / 2.0;
    println!(
        "MEASURED rebalance: {CLIENTS} clients, rate 100/s, drain_jitter_ms 1000: A {on_a} / B {on_b} after \
         shedding {shed}; the last shed within {} of B turning ready (polled every 0.2 s)",
        ms(last.1 - joined)
    );
    assert!(on_a >= mean, "A never sheds below the mean: {on_a}");
    assert!(on_a <= mean * 1.1, "A is within the tolerance of the mean: {on_a}");
    assert_eq!(on_b, CLIENTS as f64 - on_a);
    assert_eq!(metric(b.addr(), "arqonbus_rebalance_shed_total").await, 0.0, "B, below the mean, never sheds");
    assert_eq!(metric(b.addr(), "arqonbus_cluster_peers").await, 2.0);

    let mut moved = 0;
    for (i, c) in clients.into_iter().enumerate() {
        let t = c.await.expect("mover");
        let who = format!("client {i}");
        t.assert_exactly_once(&who);
        assert_eq!(t.end, Some(published), "{who}");
        if t.client_ids.len() > 1 {
            moved += 1;
            assert_eq!(t.client_ids.len(), 2, "{who} moved once: {t:?}");
            assert_eq!(t.advisories.len(), 1, "{who}");
            assert_eq!(t.advisories[0].reason.as_deref(), Some("rebalance"), "{who}");
            assert!(t.advisories[0].reconnect_after_ms <= 1000, "{who}");
            assert_eq!(t.closes, [Some(1012)], "{who}");
            assert_eq!(t.resumes[0].recovered, json!(true), "{who}");
        } else {
            assert!(t.advisories.is_empty() && t.closes.is_empty(), "{who} stayed put: {t:?}");
        }
    }
    assert_eq!(moved as f64, shed, "every shed client moved, and only those");
    assert_eq!(moved as f64, on_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_redis_gone_does_not_wait_on_redis() {
    let mut redis = Redis::start();
    // A command timeout far above what shutdown may take: waiting on Redis would show.
    let mut g =
        Gateway::spawn(&with(env(&redis, "lonely"), &[("ARQONBUS_BACKPLANE__COMMAND_TIMEOUT_MS", "8000")])).await;
    g.wait_ready(200, Duration::from_secs(15)).await;
    redis.kill();
    g.wait_ready(503, Duration::from_secs(30)).await;
    g.sigterm();
    let t0 = Instant::now();
    let status = g.wait_exit().await;
    let took = t0.elapsed();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(4), "shutdown waited {took:?} on a dead Redis:\n{}", g.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_membership_outside_kubernetes_stops_start_up_naming_the_key() {
    let home = tempfile::tempdir().expect("temp dir");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_arqonbus"));
    cmd.arg("serve").current_dir(home.path()).env_clear();
    cmd.env("HOME", home.path()).env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("ARQONBUS_SERVER__LISTEN", "127.0.0.1:0")
        .env("ARQONBUS_CLUSTER__KUBE_MEMBERSHIP", "true")
        .env("ARQONBUS_CLUSTER__KUBE_SERVICE", "arqonbus-headless");
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output()).await.expect("exits").expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("cluster.kube_membership") && stderr.contains("Kubernetes"), "{stderr}");
}

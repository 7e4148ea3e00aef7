//! The reconnect storm with real processes: two gateways on one real Redis, 2,000 subscribers
//! over 100 channels on node A, publishers on node B. Node A is killed (SIGKILL, no drain);
//! every subscriber reconnects to B, subscribes again with `since` and must end with exactly
//! its channel's events, each once, in order. The load driver is the bench's own storm mode
//! (`arqonbus bench --kill-pid`); the test also checks the channels' final offsets against
//! what was published, independently of the bench. It prints the time to full resume and the
//! Redis calls per resubscribe; it asserts no time (docs/performance.md records the 10,000
//! client run).

mod support;

use std::time::Duration;

use arqonbus_bench::{BenchArgs, StormArgs};
use serde_json::json;
use support::common::Client;
use support::*;

const SUBSCRIBERS: usize = 2000;
const CHANNELS: usize = 100;

fn env(redis: &Redis, node: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ARQONBUS_BACKPLANE__URL", redis.url()),
        ("ARQONBUS_SERVER__NODE_ID", node.to_owned()),
        ("ARQONBUS_BACKPLANE__NODE_TTL_S", "4".into()),
        ("ARQONBUS_CHANNELS__HISTORY_SIZE", "100000".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_with_2000_subscribers_resumes_every_one_on_the_survivor_with_nothing_lost() {
    let redis = Redis::start();
    let mut a = Gateway::spawn(&env(&redis, "storm-a")).await;
    let b = Gateway::spawn(&env(&redis, "storm-b")).await;
    a.wait_ready(200, Duration::from_secs(15)).await;
    b.wait_ready(200, Duration::from_secs(15)).await;

    let args = BenchArgs {
        url: a.ws_url(),
        publish_url: Some(b.ws_url()),
        room: "storm".into(),
        subscribers: SUBSCRIBERS,
        channels: CHANNELS,
        publishers: 2,
        rate: 200.0,
        warmup_secs: 2,
        duration_secs: 2,
        ack: true,
        storm: StormArgs {
            kill_pid: Some(a.pid()),
            redis_url: Some(redis.url()),
            storm_timeout_secs: 120,
            ..StormArgs::default()
        },
        ..BenchArgs::default()
    };
    let report = arqonbus_bench::run(args).await.expect("the storm runs");
    let status = a.kill9();
    assert!(!status.success(), "node A was killed by the bench: {status}");
    let storm = report.storm.as_ref().expect("a storm report");

    // Every subscriber was on A, and every one is back, resumed within retention.
    assert_eq!(report.subscribers_connected, SUBSCRIBERS as u64, "{report}");
    assert_eq!(storm.subscribers, SUBSCRIBERS as u64, "{report}");
    assert_eq!(storm.resubscribed, SUBSCRIBERS as u64, "{report}");
    assert_eq!(storm.live, SUBSCRIBERS as u64, "{report}");
    assert_eq!(storm.not_recovered, 0, "{report}");
    // Nothing lost, nothing doubled, nothing out of order, per subscriber and channel.
    assert_eq!((report.gaps, report.missing, report.duplicates, report.out_of_order), (0, 0, 0, 0), "{report}");
    assert_eq!(report.delivered_total, report.expected_deliveries, "{report}");
    // Every publish was answered. The survivor may refuse some while the storm loads its Redis
    // (UNAVAILABLE, retry_after_ms: nothing stored, as the protocol allows); none may time out
    // with an unknown outcome.
    assert_eq!(report.acks + report.ack_errors, report.published_total, "{report}");
    let refused = report.errors_by_code.get("UNAVAILABLE").copied().unwrap_or(0);
    assert_eq!(report.errors, refused, "only UNAVAILABLE refusals: {report}");
    assert_eq!(report.ack_errors, refused, "{report}");

    // Every acknowledged publish is in its channel's stream exactly once, and every subscriber
    // got every stored event of its channel.
    let mut probe = Client::connect(b.addr()).await;
    let mut stored = 0;
    for c in 0..CHANNELS {
        let info = probe.ok("channel_info", json!({ "room": "storm", "channel": format!("c{c}") })).await;
        stored += info["offset"].as_u64().unwrap_or(0);
    }
    assert_eq!(stored, report.acks, "{report}");
    assert_eq!(report.delivered_total, stored * (SUBSCRIBERS / CHANNELS) as u64, "{report}");

    let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{:.2} s", v as f64 / 1000.0));
    println!(
        "MEASURED storm of {SUBSCRIBERS} subscribers over {CHANNELS} channels: all resubscribed {} and all live {} \
         after SIGKILL; {} reconnect attempts; {} events replayed; {} published meanwhile ({refused} refused \
         UNAVAILABLE); Redis calls per resubscribe {:?} ({:?}); 0 lost, 0 duplicated",
        ms(storm.all_resubscribed_ms),
        ms(storm.all_live_ms),
        storm.reconnect_attempts,
        storm.replayed,
        storm.published_during,
        storm.redis_calls_per_resubscribe_total,
        storm.redis_calls_per_resubscribe,
    );
}

//! The bench's drivers against the bare reference server, in one process: the fan-out scenario
//! measures every delivery, and `--reference-url` reports the ratios of two runs.

use arqonbus_bench::{run, BenchArgs, Reference};

async fn reference_url() -> String {
    let server = Reference::bind("127.0.0.1:0".parse().expect("address")).await.expect("bind");
    let addr = server.local_addr().expect("local address");
    tokio::spawn(server.run());
    format!("ws://{addr}/ws")
}

fn fan_out(url: &str) -> BenchArgs {
    BenchArgs {
        url: url.to_string(),
        subscribers: 30,
        channels: 3,
        publishers: 2,
        rate: 300.0,
        warmup_secs: 0,
        duration_secs: 1,
        ..BenchArgs::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fan_out_scenario_measures_the_reference_server() {
    let url = reference_url().await;
    let report = run(BenchArgs { ack: true, ..fan_out(&url) }).await.expect("bench run");
    assert_eq!((report.subscribers_connected, report.publishers_connected), (30, 2));
    assert!(report.published_total > 0, "{report}");
    assert_eq!(report.delivered_total, report.expected_deliveries, "{report}");
    assert_eq!(report.delivered_total, report.published_total * 10, "10 subscribers per channel: {report}");
    assert_eq!(report.acks, report.published_total, "every publish acknowledged: {report}");
    // The reference numbers events per channel, so the bench checks order as for ArqonBus.
    assert_eq!((report.gaps, report.missing, report.duplicates, report.out_of_order), (0, 0, 0, 0), "{report}");
    assert_eq!(report.errors, 0, "{report}");
    let latency = report.latency_us.as_ref().expect("latency measured");
    assert_eq!(latency.count, report.delivered, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_url_runs_the_scenario_twice_and_reports_ratios() {
    let url = reference_url().await;
    let other = reference_url().await;
    let report = run(BenchArgs { reference_url: Some(other.clone()), ..fan_out(&url) }).await.expect("bench run");
    let reference = report.reference.as_ref().expect("the reference run");
    assert_eq!(reference.url, other);
    assert_eq!(report.url, url);
    assert!(reference.delivered_total > 0 && report.delivered_total > 0, "{report}");
    // The ratios are this run's figures over the reference's (full delivery is checked above;
    // here a loaded machine may end a drain before the last frames arrive).
    let x = report.vs_reference.as_ref().expect("ratios");
    let share = |r: &arqonbus_bench::BenchReport| {
        ((r.delivered_total as f64 / r.expected_deliveries as f64) * 100.0).round() / 100.0
    };
    assert_eq!((x.delivered_share, x.reference_delivered_share), (Some(share(&report)), Some(share(reference))));
    let per_s = ((report.delivered_per_s / reference.delivered_per_s) * 100.0).round() / 100.0;
    assert_eq!(x.delivered_per_s, Some(per_s), "{x:?}");
    assert!(x.p99.is_some(), "{x:?}");
    let text = report.to_string();
    assert!(text.contains("Reference server (same scenario, run first)"), "{text}");
    assert!(text.contains("ArqonBus / reference"), "{text}");
}

//! Building and printing the final report.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::net::UrlLists;
use super::stats::Stats;
use super::{BenchArgs, BenchReport, LatencySummary, Ratios, StormReport};

/// Prints the final report to stdout: text, or one JSON line.
pub fn print(report: &BenchReport, json: bool) {
    if json {
        match serde_json::to_string(report) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("bench: cannot encode the report as JSON: {e}"),
        }
    } else {
        println!("{report}");
    }
}

/// `a / b`, rounded to 2 decimals; None when `b` is 0.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| (a / b * 100.0).round() / 100.0)
}

/// ArqonBus's figures divided by the reference's.
pub fn ratios(bus: &BenchReport, reference: &BenchReport) -> Ratios {
    let share = |r: &BenchReport| ratio(r.delivered_total as f64, r.expected_deliveries as f64);
    let lat = |f: fn(&LatencySummary) -> u64| match (&bus.latency_us, &reference.latency_us) {
        (Some(a), Some(b)) => ratio(f(a) as f64, f(b) as f64),
        _ => None,
    };
    Ratios {
        delivered_per_s: ratio(bus.delivered_per_s, reference.delivered_per_s),
        delivered_share: share(bus),
        reference_delivered_share: share(reference),
        p50: lat(|l| l.p50),
        p90: lat(|l| l.p90),
        p99: lat(|l| l.p99),
        p999: lat(|l| l.p999),
        max: lat(|l| l.max),
    }
}

/// Per-second rate over a window (0 for an empty window).
pub fn per_second(count: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs > 0.0 {
        (count as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}

/// Server memory per connection in KiB: (after − before) / connections.
pub fn rss_per_connection(before: Option<u64>, after: Option<u64>, connections: u64) -> Option<f64> {
    let (before, after) = (before?, after?);
    if connections == 0 {
        return None;
    }
    let delta = after as f64 - before as f64;
    Some((delta / connections as f64 * 100.0).round() / 100.0)
}

/// Collects the final numbers.
pub fn build(
    args: &BenchArgs,
    urls: &UrlLists,
    s: &Stats,
    window: Duration,
    interrupted: bool,
    (rss_before, rss_after): (Option<u64>, Option<u64>),
    connections: u64,
) -> BenchReport {
    let published = s.published_window.load(Relaxed);
    let delivered = s.delivered_window.load(Relaxed);
    let limit = s.server_rate_limit.load(Relaxed);
    BenchReport {
        url: urls.subscribe.first().cloned().unwrap_or_default(),
        urls: urls.subscribe.clone(),
        publish_urls: urls.publish.clone(),
        room: args.room.clone(),
        channels: args.channels,
        subscribers: args.subscribers,
        subscribers_connected: s.subs_connected.load(Relaxed),
        publishers: args.publishers,
        publishers_connected: s.pubs_connected.load(Relaxed),
        connections,
        connect_failures: s.connect_failures.load(Relaxed),
        connect_failure_reasons: s.failure_reasons(),
        subscribe_failures: s.subscribe_failures.load(Relaxed),
        disconnects: s.disconnects.load(Relaxed),
        warmup_secs: args.warmup_secs as f64,
        duration_secs: (window.as_secs_f64() * 1000.0).round() / 1000.0,
        target_rate: args.rate,
        published,
        published_per_s: per_second(published, window),
        published_total: s.published.load(Relaxed),
        acks: s.acks.load(Relaxed),
        ack_errors: s.ack_errors.load(Relaxed),
        ack_latency_us: s.ack_latency_summary(),
        delivered,
        delivered_per_s: per_second(delivered, window),
        delivered_total: s.delivered_total.load(Relaxed),
        expected_deliveries: s.expected_deliveries(),
        latency_us: s.latency_summary(),
        gaps: s.gaps.load(Relaxed),
        skipped_offsets: s.skipped.load(Relaxed),
        missing: s.missing.load(Relaxed),
        duplicates: s.duplicates.load(Relaxed),
        out_of_order: s.out_of_order.load(Relaxed),
        errors: s.errors_total.load(Relaxed),
        errors_by_code: s.errors_by_code(),
        server_publish_rate_limit: (limit > 0).then_some(limit),
        server_rss_before_kib: rss_before,
        server_rss_after_kib: rss_after,
        rss_per_connection_kib: rss_per_connection(rss_before, rss_after, connections),
        interrupted,
        storm: None,
        reference: None,
        vs_reference: None,
    }
}

fn latency_line(l: &Option<LatencySummary>) -> String {
    match l {
        Some(l) => format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}  (n={})",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean, l.count
        ),
        None => "no samples".to_string(),
    }
}

fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(", ")
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self;
        writeln!(f, "ArqonBus bench report{}", if r.interrupted { " (interrupted)" } else { "" })?;
        write!(f, "  target          {}", r.urls.join(", "))?;
        if r.publishers > 0 && r.publish_urls != r.urls {
            write!(f, "  publish {}", r.publish_urls.join(", "))?;
        }
        writeln!(f, "  room {}  channels {}", r.room, r.channels)?;
        writeln!(
            f,
            "  connections     {} (subscribers {}/{}, publishers {}/{})",
            r.connections, r.subscribers_connected, r.subscribers, r.publishers_connected, r.publishers
        )?;
        writeln!(
            f,
            "  failures        connect {}  subscribe {}  disconnects {}",
            r.connect_failures, r.subscribe_failures, r.disconnects
        )?;
        if !r.connect_failure_reasons.is_empty() {
            writeln!(f, "  connect errors  {}", counts(&r.connect_failure_reasons))?;
        }
        if r.publishers > 0 {
            writeln!(f, "  window          {:.1} s measured after {:.0} s warm-up", r.duration_secs, r.warmup_secs)?;
            writeln!(
                f,
                "  published       {} ({:.1}/s, target {}/s)  total {}",
                r.published, r.published_per_s, r.target_rate, r.published_total
            )?;
            writeln!(
                f,
                "  delivered       {} ({:.1}/s)  total {} of {} expected",
                r.delivered, r.delivered_per_s, r.delivered_total, r.expected_deliveries
            )?;
            writeln!(f, "  latency (us)    {}", latency_line(&r.latency_us))?;
            if r.ack_latency_us.is_some() || r.acks > 0 || r.ack_errors > 0 {
                writeln!(f, "  acks            {}  errors {}", r.acks, r.ack_errors)?;
                writeln!(f, "  ack latency(us) {}", latency_line(&r.ack_latency_us))?;
            }
        }
        writeln!(
            f,
            "  ordering        gaps {} (skipped {}, missing {})  duplicates {}  out-of-order {}",
            r.gaps, r.skipped_offsets, r.missing, r.duplicates, r.out_of_order
        )?;
        write!(f, "  errors          {}", r.errors)?;
        if !r.errors_by_code.is_empty() {
            write!(f, "  ({})", counts(&r.errors_by_code))?;
        }
        if let Some(limit) = r.server_publish_rate_limit {
            write!(f, "\n  server limit    publish_rate_per_s {limit}")?;
        }
        if let (Some(before), Some(after)) = (r.server_rss_before_kib, r.server_rss_after_kib) {
            write!(f, "\n  server RSS      before {before} KiB  after {after} KiB")?;
            if let Some(per) = r.rss_per_connection_kib {
                write!(f, "  per connection {per:.2} KiB")?;
            }
        }
        if let Some(storm) = &r.storm {
            write!(f, "\n{storm}")?;
        }
        if let (Some(reference), Some(x)) = (&r.reference, &r.vs_reference) {
            write!(f, "\n\nReference server (same scenario, run first)\n{reference}\n\n")?;
            let x_of = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));
            let share = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1} %", v * 100.0));
            writeln!(f, "ArqonBus / reference")?;
            writeln!(
                f,
                "  delivered/s     {}  (delivered: ArqonBus {}, reference {})",
                x_of(x.delivered_per_s),
                share(x.delivered_share),
                share(x.reference_delivered_share)
            )?;
            write!(
                f,
                "  latency         p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                x_of(x.p50),
                x_of(x.p90),
                x_of(x.p99),
                x_of(x.p999),
                x_of(x.max)
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for StormReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self;
        let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{:.2} s", v as f64 / 1000.0));
        writeln!(f, "Reconnect storm ({}; resumed on {})", s.killed, s.resume_urls.join(", "))?;
        writeln!(
            f,
            "  resumed         {} of {} resubscribed, {} live again  (not recovered {}, replayed {} events)",
            s.resubscribed, s.subscribers, s.live, s.not_recovered, s.replayed
        )?;
        writeln!(
            f,
            "  time to resume  all resubscribed {}  all live {}  (after the kill; {} events published meanwhile)",
            ms(s.all_resubscribed_ms),
            ms(s.all_live_ms),
            s.published_during
        )?;
        writeln!(f, "  resubscribed ms {}", latency_line(&s.resubscribe_ms))?;
        writeln!(f, "  live ms         {}", latency_line(&s.live_ms))?;
        write!(f, "  reconnects      {} attempts", s.reconnect_attempts)?;
        if !s.reconnect_failures.is_empty() {
            write!(f, "  failed: {}", counts(&s.reconnect_failures))?;
        }
        if let (Some(per), Some(total)) = (&s.redis_calls_per_resubscribe, s.redis_calls_per_resubscribe_total) {
            let parts: Vec<String> = per.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
            write!(f, "\n  redis calls     {total:.2} per resubscribe ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        assert_eq!(per_second(1000, Duration::from_secs(4)), 250.0);
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(rss_per_connection(Some(1000), Some(6000), 1000), Some(5.0));
        assert_eq!(rss_per_connection(Some(1000), Some(900), 100), Some(-1.0));
        assert_eq!(rss_per_connection(Some(1000), None, 100), None);
        assert_eq!(rss_per_connection(Some(1000), Some(2000), 0), None);
    }

    #[test]
    fn report_renders_as_text_and_json() {
        let args = BenchArgs::default();
        let stats = Stats::new(args.channels);
        stats.error("RATE_LIMITED");
        let urls = UrlLists::from_args(&args).expect("default URL");
        let report = build(&args, &urls, &stats, Duration::from_secs(2), false, (Some(100), Some(300)), 10);
        let text = report.to_string();
        assert_eq!(text.lines().nth(1), Some("  target          ws://127.0.0.1:8080/ws  room bench  channels 10"));
        assert!(text.contains("RATE_LIMITED=1"), "{text}");
        assert!(text.contains("per connection 20.00 KiB"), "{text}");
        let json = serde_json::to_string(&report).expect("serializable");
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["errors_by_code"]["RATE_LIMITED"], 1);
        assert_eq!(v["latency_us"], serde_json::Value::Null);
        assert_eq!(v["url"], "ws://127.0.0.1:8080/ws");
        assert_eq!(v["urls"], serde_json::json!(["ws://127.0.0.1:8080/ws"]));
        assert_eq!(v["publish_urls"], serde_json::json!(["ws://127.0.0.1:8080/ws"]));
    }

    #[test]
    fn report_lists_cluster_urls() {
        let target = |args: &BenchArgs| {
            let urls = UrlLists::from_args(args).expect("valid URLs");
            let report = build(args, &urls, &Stats::new(args.channels), Duration::ZERO, false, (None, None), 0);
            let line = report.to_string().lines().nth(1).unwrap_or_default().to_string();
            (report, line)
        };
        let b = "ws://127.0.0.1:18302/ws";
        let a = "ws://127.0.0.1:18301/ws";

        let args = BenchArgs { url: format!("{a},{b}"), ..BenchArgs::default() };
        let (report, line) = target(&args);
        assert_eq!(line, format!("  target          {a}, {b}  room bench  channels 10"));
        assert_eq!((report.url.as_str(), report.urls.len(), report.publish_urls.len()), (a, 2, 2));

        let args = BenchArgs { url: b.into(), publish_url: Some(a.into()), ..BenchArgs::default() };
        let (report, line) = target(&args);
        assert_eq!(line, format!("  target          {b}  publish {a}  room bench  channels 10"));
        let v = serde_json::to_value(&report).expect("serializable");
        assert_eq!(v["url"], b);
        assert_eq!(v["urls"], serde_json::json!([b]));
        assert_eq!(v["publish_urls"], serde_json::json!([a]));

        // Without publishers the publish URLs are not shown.
        let args = BenchArgs { url: b.into(), publish_url: Some(a.into()), publishers: 0, ..BenchArgs::default() };
        assert_eq!(target(&args).1, format!("  target          {b}  room bench  channels 10"));
    }
}

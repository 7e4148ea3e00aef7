//! Counters and latency histograms shared by all bench connections.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use super::scan::Frame;
use super::storm::StormStats;
use super::track::Seen;
use super::LatencySummary;

/// Latency shards: subscribers record into `index % SHARDS` to keep lock contention low.
const SHARDS: usize = 16;
/// Highest latency recorded exactly (µs); larger values are clamped to it.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Wall-clock time in nanoseconds since the unix epoch (the payload `t`).
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).unwrap_or(0)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Everything the connections count; read by the progress line and the final report.
#[derive(Debug)]
pub struct Stats {
    /// Subscribers that completed connect + welcome + subscribe.
    pub subs_connected: AtomicU64,
    /// Publishers that completed connect + welcome.
    pub pubs_connected: AtomicU64,
    /// Subscribers done setting up (connected, failed or refused).
    pub subs_settled: AtomicU64,
    /// Publishers done setting up (connected or failed).
    pub pubs_settled: AtomicU64,
    /// Connections currently open.
    pub open: AtomicU64,
    /// Connections that failed to open (TCP, handshake, welcome, timeout).
    pub connect_failures: AtomicU64,
    /// Subscribers whose subscribe command got an error.
    pub subscribe_failures: AtomicU64,
    /// Open connections that ended before the bench closed them.
    pub disconnects: AtomicU64,
    /// Events sent.
    pub published: AtomicU64,
    /// Events sent during the measurement window.
    pub published_window: AtomicU64,
    /// Acks received (`--ack`).
    pub acks: AtomicU64,
    /// Publishes answered with an error (`--ack`).
    pub ack_errors: AtomicU64,
    /// Events received by subscribers.
    pub delivered_total: AtomicU64,
    /// Received events that were published during the measurement window.
    pub delivered_window: AtomicU64,
    /// Offset jumps (times an offset arrived ahead of the expected one).
    pub gaps: AtomicU64,
    /// Offsets skipped by those jumps.
    pub skipped: AtomicU64,
    /// Skipped offsets never delivered (added when a subscriber closes).
    pub missing: AtomicU64,
    /// Offsets delivered again (or older than the subscription).
    pub duplicates: AtomicU64,
    /// Skipped offsets that arrived late.
    pub out_of_order: AtomicU64,
    /// Error frames, unexpected close codes and disruptive system frames.
    pub errors_total: AtomicU64,
    /// Events sent per channel.
    pub chan_published: Vec<AtomicU64>,
    /// Subscribers per channel.
    pub chan_subs: Vec<AtomicU64>,
    /// `limits.publish_rate_per_s` from a welcome frame (0 = unknown).
    pub server_rate_limit: AtomicU64,
    /// Reconnect storm counters.
    pub storm: StormStats,
    window_start_ns: AtomicU64,
    window_end_ns: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    failures: Mutex<BTreeMap<String, u64>>,
    latency: Vec<Mutex<Histogram<u64>>>,
    ack_latency: Mutex<Histogram<u64>>,
}

impl Stats {
    /// Fresh counters for `channels` channels.
    pub fn new(channels: usize) -> Self {
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        Self {
            subs_connected: AtomicU64::new(0),
            pubs_connected: AtomicU64::new(0),
            subs_settled: AtomicU64::new(0),
            pubs_settled: AtomicU64::new(0),
            open: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            subscribe_failures: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            published: AtomicU64::new(0),
            published_window: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            ack_errors: AtomicU64::new(0),
            delivered_total: AtomicU64::new(0),
            delivered_window: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            missing: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            chan_published: zeros(channels),
            chan_subs: zeros(channels),
            server_rate_limit: AtomicU64::new(0),
            storm: StormStats::default(),
            window_start_ns: AtomicU64::new(u64::MAX),
            window_end_ns: AtomicU64::new(u64::MAX),
            errors: Mutex::new(BTreeMap::new()),
            failures: Mutex::new(BTreeMap::new()),
            latency: (0..SHARDS).map(|_| Mutex::new(histogram())).collect(),
            ack_latency: Mutex::new(histogram()),
        }
    }

    /// Events published at or after `t_ns` (unix ns) belong to the measurement window.
    pub fn set_window_start(&self, t_ns: u64) {
        self.window_start_ns.store(t_ns, Relaxed);
    }

    /// Events published after `t_ns` (unix ns) are past the measurement window.
    pub fn set_window_end(&self, t_ns: u64) {
        self.window_end_ns.store(t_ns, Relaxed);
    }

    /// Whether an event published at `t_ns` is inside the measurement window.
    pub fn in_window(&self, t_ns: u64) -> bool {
        t_ns >= self.window_start_ns.load(Relaxed) && t_ns <= self.window_end_ns.load(Relaxed)
    }

    /// Counts one received event; records its latency when it was published in the window.
    /// Returns its offset.
    pub fn delivered(&self, shard: usize, frame: &Frame<'_>) -> Option<u64> {
        self.delivered_total.fetch_add(1, Relaxed);
        if let Some(t) = frame.payload_t() {
            if self.in_window(t) {
                self.delivered_window.fetch_add(1, Relaxed);
                let us = now_ns().saturating_sub(t) / 1000;
                lock(&self.latency[shard % SHARDS]).saturating_record(us.max(1));
            }
        }
        frame.offset
    }

    /// Records an ack latency (publish to reply).
    pub fn ack_latency(&self, sent_ns: u64) {
        let us = now_ns().saturating_sub(sent_ns) / 1000;
        lock(&self.ack_latency).saturating_record(us.max(1));
    }

    /// Counts one offset classification.
    pub fn seen(&self, seen: Seen) {
        match seen {
            Seen::InOrder => {}
            Seen::Gap(n) => {
                self.gaps.fetch_add(1, Relaxed);
                self.skipped.fetch_add(n, Relaxed);
            }
            Seen::OutOfOrder => {
                self.out_of_order.fetch_add(1, Relaxed);
            }
            Seen::Duplicate => {
                self.duplicates.fetch_add(1, Relaxed);
            }
        }
    }

    /// Counts an error frame by code (or any other anomaly by name).
    pub fn error(&self, code: &str) {
        self.errors_total.fetch_add(1, Relaxed);
        *lock(&self.errors).entry(code.to_string()).or_insert(0) += 1;
    }

    /// Counts a failed connection attempt by reason.
    pub fn connect_failed(&self, reason: &str) {
        self.connect_failures.fetch_add(1, Relaxed);
        *lock(&self.failures).entry(reason.to_string()).or_insert(0) += 1;
    }

    /// Error counts by code.
    pub fn errors_by_code(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    /// Connect failures by reason.
    pub fn failure_reasons(&self) -> BTreeMap<String, u64> {
        lock(&self.failures).clone()
    }

    /// Deliveries expected if every subscriber received every event of its channel.
    pub fn expected_deliveries(&self) -> u64 {
        self.chan_published
            .iter()
            .zip(&self.chan_subs)
            .map(|(p, s)| p.load(Relaxed).saturating_mul(s.load(Relaxed)))
            .sum()
    }

    /// Delivery latency percentiles over the window (None when nothing was recorded).
    pub fn latency_summary(&self) -> Option<LatencySummary> {
        let mut all = histogram();
        for shard in &self.latency {
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&*lock(shard));
        }
        summarize(&all)
    }

    /// Ack latency percentiles (None without `--ack`).
    pub fn ack_latency_summary(&self) -> Option<LatencySummary> {
        summarize(&lock(&self.ack_latency))
    }
}

/// Percentiles of a histogram in its unit (µs here).
pub fn summarize(h: &Histogram<u64>) -> Option<LatencySummary> {
    if h.is_empty() {
        return None;
    }
    Some(LatencySummary {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: (h.mean() * 10.0).round() / 10.0,
    })
}

#[cfg(test)]
mod tests {
    use super::super::scan::parse_frame;
    use super::*;

    #[test]
    fn window_and_latency() {
        let stats = Stats::new(2);
        let t = now_ns() - 2_000_000; // published 2 ms ago
        let text = format!(r#"{{"type":"event","offset":1,"payload":{{"t":{t}}}}}"#);
        let frame = parse_frame(&text);
        assert_eq!(stats.delivered(3, &frame), Some(1));
        assert_eq!(stats.delivered_window.load(Relaxed), 0); // before the window opened
        stats.set_window_start(t);
        stats.delivered(3, &frame);
        assert_eq!(stats.delivered_total.load(Relaxed), 2);
        assert_eq!(stats.delivered_window.load(Relaxed), 1);
        let lat = stats.latency_summary().expect("one sample");
        assert_eq!(lat.count, 1);
        stats.set_window_end(t - 1);
        stats.delivered(3, &frame);
        assert_eq!(stats.delivered_window.load(Relaxed), 1);
        assert!(lat.p50 >= 2000 && lat.p50 < 1_000_000, "{lat:?}");
    }

    #[test]
    fn counters() {
        let stats = Stats::new(2);
        stats.seen(Seen::Gap(3));
        stats.seen(Seen::Duplicate);
        stats.seen(Seen::OutOfOrder);
        stats.seen(Seen::InOrder);
        assert_eq!(stats.gaps.load(Relaxed), 1);
        assert_eq!(stats.skipped.load(Relaxed), 3);
        stats.error("RATE_LIMITED");
        stats.error("RATE_LIMITED");
        stats.error("close:4008");
        assert_eq!(stats.errors_total.load(Relaxed), 3);
        assert_eq!(stats.errors_by_code().get("RATE_LIMITED"), Some(&2));
        stats.chan_published[0].store(10, Relaxed);
        stats.chan_subs[0].store(3, Relaxed);
        stats.chan_published[1].store(5, Relaxed);
        assert_eq!(stats.expected_deliveries(), 30);
        assert!(stats.latency_summary().is_none());
    }
}

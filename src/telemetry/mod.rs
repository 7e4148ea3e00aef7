//! Telemetry: metrics, logs and traces. It fails open: nothing here can stop delivery.
//!
//! Metrics are process-wide Prometheus handles (atomic counters; no lock on the hot path),
//! rendered by `GET /metrics`. Logs go through `tracing`; payloads and tokens are never logged
//! at info or warn. Traces (OpenTelemetry over OTLP, `otel.rs`, `trace.rs`) are off unless an
//! endpoint is configured. This is the only module that imports `opentelemetry`.

mod logs;
mod otel;
pub mod trace;

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub use logs::init_logging;
pub use otel::{enabled as tracing_enabled, resolve as resolve_tracing, start as start_tracing, Resolved, Tracing};

/// Every metric the node exports.
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: IntGauge,
    /// Connections refused (label `reason`: `limit`, `unauthorized`, `protocol`).
    pub refused: IntCounterVec,
    /// Client frames received, by `type`.
    pub messages_in: IntCounterVec,
    /// Frames queued to clients by fan-out (events, system and private frames).
    pub messages_out: IntCounter,
    /// Events stored by publishes from this node.
    pub published: IntCounter,
    /// Error frames and HTTP errors sent, by `code`.
    pub errors: IntCounterVec,
    /// Live subscriptions on this node.
    pub subscriptions: IntGauge,
    /// Connections closed with 4008 because their outbound queue was full.
    pub slow_consumers: IntCounter,
    /// Connections closed by the server, by close `code`.
    pub closes: IntCounterVec,
    /// Live events the backplane missed and filled in from the stream (Redis).
    pub gap_repaired: IntCounter,
    /// Local subscriptions ended by the backplane, by `reason` (`history_lost`, `channel_deleted`).
    pub backplane_gone: IntCounterVec,
    /// Connections dropped because their socket accepted no bytes for `limits.write_timeout_ms`.
    pub write_timeouts: IntCounter,
    /// 1 when the node reaches its backplane (the readiness check), 0 when not; set at each scrape.
    pub backplane_healthy: IntGauge,
    /// Publish latency, frame received → ack ready, by `source` (`ws`, `http`).
    pub publish_duration: HistogramVec,
    /// Event stored → frame queued to this node's subscribers (on Redis: the cross-node latency).
    pub delivery_lag: Histogram,
    /// Backplane calls, by `op`.
    pub backplane_duration: HistogramVec,
    /// Commands, by `command`.
    pub command_duration: HistogramVec,
    /// Bytes of WebSocket text frames received.
    pub bytes_in: IntCounter,
    /// Bytes of frames written to WebSocket clients.
    pub bytes_out: IntCounter,
    /// Trace spans dropped: export queue full, or the collector refused or did not answer.
    pub trace_spans_dropped: IntCounter,
    /// Events published to the channels of `telemetry.metric_channels`, by `channel`.
    pub channel_published: IntCounterVec,
    /// Bytes queued to clients and not yet written to their sockets (every connection's budget use).
    pub outbound_queued_bytes: IntGauge,
    /// Clients this node advised to reconnect elsewhere because it held more than its share.
    pub rebalance_shed: IntCounter,
    /// Nodes of the cluster as this node sees them, itself included (0: membership is off).
    pub cluster_peers: IntGauge,
    /// `_sys:activity` events dropped: the node's activity queue was full.
    pub activity_dropped: IntCounter,
}

// Names and labels are constants: construction cannot fail at run time (a test covers it).
fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid metric")
}

fn vec(name: &str, help: &str, label: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric")
}

/// Latency buckets for WebSocket work: 100 µs … 10 s.
const LATENCY_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

fn histogram(name: &str, help: &str) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())).expect("valid metric")
}

fn histogram_vec(name: &str, help: &str, label: &str) -> HistogramVec {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), &[label]).expect("valid metric")
}

fn build() -> Metrics {
    let m = Metrics {
        registry: Registry::new_custom(Some("arqonbus".into()), None).expect("valid prefix"),
        connections: gauge("connections", "Open WebSocket connections"),
        refused: vec("connections_refused_total", "Connections refused at the handshake", "reason"),
        messages_in: vec("messages_in_total", "Client frames received", "type"),
        messages_out: counter("messages_out_total", "Frames queued to clients by fan-out"),
        published: counter("published_total", "Events stored by publishes from this node"),
        errors: vec("errors_total", "Errors sent to clients", "code"),
        subscriptions: gauge("subscriptions", "Live subscriptions on this node"),
        slow_consumers: counter(
            "slow_consumer_disconnects_total",
            "Connections closed with 4008 (outbound queue full)",
        ),
        closes: vec("closes_total", "Connections closed by the server, by close code", "code"),
        gap_repaired: counter(
            "backplane_gap_events_repaired_total",
            "Live events missed on the backplane and delivered from the stream instead",
        ),
        backplane_gone: vec(
            "backplane_channel_losses_total",
            "Channels whose local subscriptions the backplane ended, by reason",
            "reason",
        ),
        write_timeouts: counter(
            "write_timeouts_total",
            "Connections dropped because their socket accepted no bytes for the write timeout",
        ),
        backplane_healthy: gauge("backplane_healthy", "1 when the node reaches its backplane, 0 when not"),
        publish_duration: histogram_vec(
            "publish_duration_seconds",
            "Publish latency: frame received to ack ready",
            "source",
        ),
        delivery_lag: histogram(
            "delivery_lag_seconds",
            "Event stored to frame queued to this node's subscribers (cross-node latency on Redis)",
        ),
        backplane_duration: histogram_vec("backplane_request_duration_seconds", "Backplane calls", "op"),
        command_duration: histogram_vec("command_duration_seconds", "Commands", "command"),
        bytes_in: counter("bytes_in_total", "Bytes of WebSocket text frames received"),
        bytes_out: counter("bytes_out_total", "Bytes of frames written to WebSocket clients"),
        trace_spans_dropped: counter(
            "trace_spans_dropped_total",
            "Trace spans dropped: export queue full, or the collector refused or did not answer",
        ),
        channel_published: vec(
            "channel_events_published_total",
            "Events published to the channels of telemetry.metric_channels",
            "channel",
        ),
        outbound_queued_bytes: gauge(
            "outbound_queued_bytes",
            "Bytes queued to clients (events, replays, replies) and not yet written to their sockets",
        ),
        rebalance_shed: counter(
            "rebalance_shed_total",
            "Clients advised to reconnect elsewhere because this node held more than its share",
        ),
        cluster_peers: gauge("cluster_peers", "Nodes of the cluster as this node sees them, itself included"),
        activity_dropped: counter(
            "activity_dropped_total",
            "_sys:activity events dropped because the node's activity queue was full",
        ),
    };
    let collectors: [Box<dyn prometheus::core::Collector>; 22] = [
        Box::new(m.backplane_healthy.clone()),
        Box::new(m.publish_duration.clone()),
        Box::new(m.delivery_lag.clone()),
        Box::new(m.backplane_duration.clone()),
        Box::new(m.command_duration.clone()),
        Box::new(m.bytes_in.clone()),
        Box::new(m.bytes_out.clone()),
        Box::new(m.trace_spans_dropped.clone()),
        Box::new(m.channel_published.clone()),
        Box::new(m.write_timeouts.clone()),
        Box::new(m.outbound_queued_bytes.clone()),
        Box::new(m.gap_repaired.clone()),
        Box::new(m.backplane_gone.clone()),
        Box::new(m.connections.clone()),
        Box::new(m.refused.clone()),
        Box::new(m.messages_in.clone()),
        Box::new(m.messages_out.clone()),
        Box::new(m.published.clone()),
        Box::new(m.errors.clone()),
        Box::new(m.subscriptions.clone()),
        Box::new(m.slow_consumers.clone()),
        Box::new(m.closes.clone()),
    ];
    let cluster: [Box<dyn prometheus::core::Collector>; 3] =
        [Box::new(m.rebalance_shed.clone()), Box::new(m.cluster_peers.clone()), Box::new(m.activity_dropped.clone())];
    for c in collectors.into_iter().chain(cluster) {
        if let Err(e) = m.registry.register(c) {
            tracing::warn!(error = %e, "metric registration failed");
        }
    }
    // Every known label value exists from the start at 0, so that rates and alerts see a
    // series before the first event.
    for code in crate::protocol::ErrorCode::ALL {
        m.errors.with_label_values(&[code.as_str()]);
    }
    for reason in ["history_lost", "channel_deleted"] {
        m.backplane_gone.with_label_values(&[reason]);
    }
    for code in ["1001", "1003", "1007", "1008", "1009", "1012", "4001", "4008"] {
        m.closes.with_label_values(&[code]);
    }
    for reason in REFUSALS {
        m.refused.with_label_values(&[reason]);
    }
    m
}

/// The `reason` labels of `arqonbus_connections_refused_total`.
pub const REFUSALS: [&str; 9] =
    ["draining", "origin", "protocol", "rate", "unauthorized", "auth_unavailable", "limit", "user_limit", "pending"];

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(build)
}

/// Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&metrics().registry.gather(), &mut buf) {
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    String::from_utf8(buf).unwrap_or_default()
}

static METRIC_CHANNELS: OnceLock<Vec<String>> = OnceLock::new();

/// Sets the channels (`room:channel`) that get their own metric label; the first call wins.
pub fn set_metric_channels(channels: &[String]) {
    let _ = METRIC_CHANNELS.set(channels.to_vec());
}

/// Counts a publish on `channel` when it is on the allow-list.
pub fn channel_published(channel: &str) {
    if let Some(list) = METRIC_CHANNELS.get().filter(|l| !l.is_empty()) {
        if list.iter().any(|c| c == channel) {
            metrics().channel_published.with_label_values(&[channel]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_build_and_render() {
        super::metrics().errors.with_label_values(&["INTERNAL"]).inc();
        let text = super::render();
        assert!(text.contains("arqonbus_errors_total{code=\"INTERNAL\"}"), "{text}");
        assert!(text.contains("arqonbus_connections"));
    }
}

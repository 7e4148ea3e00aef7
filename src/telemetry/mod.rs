//! Telemetry: metrics and logs. It fails open: nothing here can stop delivery.
//!
//! Metrics are process-wide Prometheus handles (atomic counters; no lock on the hot path),
//! rendered by `GET /metrics`. Logs go through `tracing`; payloads and tokens are never logged
//! at info or warn.

use std::sync::OnceLock;

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::config::{LogConfig, LogFormat};

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
    /// Bytes queued to clients and not yet written to their sockets (every connection's budget use).
    pub outbound_queued_bytes: IntGauge,
    /// Clients this node advised to reconnect elsewhere because it held more than its share.
    pub rebalance_shed: IntCounter,
    /// Nodes of the cluster as this node sees them, itself included (0: membership is off).
    pub cluster_peers: IntGauge,
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
        outbound_queued_bytes: gauge(
            "outbound_queued_bytes",
            "Bytes queued to clients (events, replays, replies) and not yet written to their sockets",
        ),
        rebalance_shed: counter(
            "rebalance_shed_total",
            "Clients advised to reconnect elsewhere because this node held more than its share",
        ),
        cluster_peers: gauge("cluster_peers", "Nodes of the cluster as this node sees them, itself included"),
    };
    let collectors: [Box<dyn prometheus::core::Collector>; 13] = [
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
    let cluster: [Box<dyn prometheus::core::Collector>; 2] =
        [Box::new(m.rebalance_shed.clone()), Box::new(m.cluster_peers.clone())];
    for c in collectors.into_iter().chain(cluster) {
        if let Err(e) = m.registry.register(c) {
            tracing::warn!(error = %e, "metric registration failed");
        }
    }
    m
}

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

/// Installs the global log subscriber; a second call is a no-op (tests start many nodes).
pub fn init_logging(cfg: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
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

//! The global `tracing` subscriber: logs to stderr (text, or JSON lines that carry the current
//! span's `trace_id` and `span_id`), and, when tracing is on, spans to OpenTelemetry.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use super::otel::Tracing;
use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber; a second call is a no-op (tests start many nodes).
pub fn init_logging(cfg: &LogConfig, tracing: Option<&Tracing>) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match cfg.format {
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(true).with_span_list(false).boxed(),
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
    };
    // The spans of a message are recorded whatever the log level.
    let spans = tracing.map(|t| {
        let targets = tracing_subscriber::filter::Targets::new().with_target("arqonbus", tracing::Level::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(t.provider().tracer("arqonbus"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(targets)
    });
    let _ = tracing_subscriber::registry().with(logs.with_filter(filter)).with(spans).try_init();
    if let Some(t) = tracing {
        let r = t.resolved();
        tracing::info!(protocol = ?r.protocol, endpoint = ?r.endpoint, ratio = ?r.ratio, "tracing to OTLP");
    }
}

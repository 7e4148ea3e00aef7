//! The spans of a message's life, and the W3C trace context (`traceparent`, `tracestate`) that
//! links them across nodes: the publish span (PRODUCER) is the child of the client's context,
//! its context travels inside the stored event (`metadata.traceparent`), and each node that fans
//! the event out records a deliver span (CONSUMER) in the same trace. Every function here is a
//! no-op, costing one atomic load, while tracing is off.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde::Deserialize;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::otel::enabled;
use crate::protocol::ChannelKey;

/// A remote parent: `traceparent` and, optionally, `tracestate`.
pub type Parent<'a> = (&'a str, Option<&'a str>);

fn remote_context(parent: Parent<'_>) -> opentelemetry::Context {
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert("traceparent".to_owned(), parent.0.to_owned());
    if let Some(state) = parent.1 {
        carrier.insert("tracestate".to_owned(), state.to_owned());
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// `00-<trace id>-<span id>-<flags>` of a span.
fn traceparent_of(span: &Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if !sc.is_valid() {
        return None;
    }
    span.record("trace_id", tracing::field::display(sc.trace_id()));
    span.record("span_id", tracing::field::display(sc.span_id()));
    Some(format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
}

/// Whether a `traceparent` says its trace is sampled (flags bit 0); malformed: no.
fn sampled(traceparent: &str) -> bool {
    traceparent.rsplit('-').next().and_then(|f| u8::from_str_radix(f, 16).ok()).is_some_and(|f| f & 1 == 1)
}

/// The PRODUCER span of one publish.
pub struct Publish {
    span: Span,
    traceparent: String,
}

impl Publish {
    /// Starts it as the child of `parent` (the client's context) when given.
    pub fn start(key: &ChannelKey, message_id: &str, source: &'static str, parent: Option<Parent<'_>>) -> Option<Self> {
        if !enabled() {
            return None;
        }
        let span = tracing::info_span!(
            target: "arqonbus::trace",
            "publish",
            otel.name = %format_args!("publish {key}"),
            otel.kind = "producer",
            otel.status_code = Empty,
            messaging.system = "arqonbus",
            messaging.destination.name = %key,
            messaging.operation.type = "send",
            messaging.message.id = %message_id,
            arqonbus.source = source,
            arqonbus.offset = Empty,
            trace_id = Empty,
            span_id = Empty,
        );
        if let Some(p) = parent {
            let _ = span.set_parent(remote_context(p));
        }
        let traceparent = traceparent_of(&span)?;
        Some(Self { span, traceparent })
    }

    /// The span, to instrument the publish with.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The context the stored event carries (`metadata.traceparent`).
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The event's offset once stored.
    pub fn stored(&self, offset: u64) {
        self.span.record("arqonbus.offset", offset as i64);
        let _g = self.span.enter();
        tracing::debug!(offset, "event stored");
    }

    /// The publish failed with `code`.
    pub fn failed(&self, code: &str) {
        self.span.record("otel.status_code", "ERROR");
        let _g = self.span.enter();
        tracing::debug!(code, "publish failed");
    }
}

#[derive(Deserialize)]
struct FrameProbe<'a> {
    #[serde(borrow, default)]
    metadata: Option<MetaProbe<'a>>,
}

#[derive(Deserialize)]
struct MetaProbe<'a> {
    #[serde(borrow, default)]
    traceparent: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    tracestate: Option<std::borrow::Cow<'a, str>>,
}

/// Records the CONSUMER span of a node fanning an event out to `recipients` local connections,
/// in the trace of the publish (from the frame's `metadata.traceparent`), when it is sampled.
pub fn delivered(key: &ChannelKey, frame: &str, offset: u64, recipients: u64) {
    if !enabled() {
        return;
    }
    let Ok(probe) = serde_json::from_str::<FrameProbe<'_>>(frame) else { return };
    let Some(meta) = probe.metadata else { return };
    let Some(tp) = meta.traceparent.as_deref().filter(|tp| sampled(tp)) else { return };
    let span = tracing::info_span!(
        target: "arqonbus::trace",
        "deliver",
        otel.name = %format_args!("deliver {key}"),
        otel.kind = "consumer",
        messaging.system = "arqonbus",
        messaging.destination.name = %key,
        messaging.operation.type = "process",
        messaging.batch.message_count = recipients as i64,
        arqonbus.offset = offset as i64,
    );
    let _ = span.set_parent(remote_context((tp, meta.tracestate.as_deref())));
}

/// A span of reading history (`history`, a `subscribe` replay, a live gap repair): its own
/// trace, with the channel and how many events it read. `Span::none()` while tracing is off.
pub fn reading(what: &'static str, key: &ChannelKey) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: "arqonbus::trace",
        "read",
        otel.name = %format_args!("{what} {key}"),
        otel.kind = "internal",
        messaging.system = "arqonbus",
        messaging.destination.name = %key,
        messaging.operation.type = "receive",
        messaging.batch.message_count = Empty,
        trace_id = Empty,
        span_id = Empty,
    )
}

/// Records how many events a reading span read.
pub fn read_count(span: &Span, n: u64) {
    if !span.is_none() {
        span.record("messaging.batch.message_count", n as i64);
        let _ = traceparent_of(span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_flag() {
        assert!(sampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        assert!(!sampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"));
        assert!(!sampled("garbage"));
    }

    #[test]
    fn frames_give_their_trace_context() {
        let frame = r#"{"type":"event","payload":{"metadata":{"traceparent":"fake"}},"metadata":{"traceparent":"00-a-b-01","k":"v"}}"#;
        let p: FrameProbe<'_> = serde_json::from_str(frame).unwrap();
        assert_eq!(p.metadata.unwrap().traceparent.as_deref(), Some("00-a-b-01"));
    }
}

//! Publishing: `event` frames (and `POST /v1/publish`), and `private` frames.

use std::time::Instant;

use serde_json::json;
use tracing::Instrument;

use super::{backplane_error, to_raw, Node, Outcome, Session};
use crate::backplane::{PublishRequest, Published};
use crate::protocol::{
    event_template, metadata_with, private_frame, timestamp_now, ErrorBody, ErrorCode, EventFields, EventFrame,
    PrivateFrame,
};
use crate::telemetry::{self, metrics, trace};

/// Who publishes: a client connection, or the HTTP API.
pub struct Origin<'a> {
    /// `from` of the event.
    pub client_id: &'a str,
    /// `user` of the event.
    pub user: Option<&'a str>,
    /// `ws` or `http` (a metric label and a span attribute).
    pub source: &'static str,
    /// The caller's trace context outside the event (the HTTP `traceparent`, `tracestate`
    /// headers); otherwise the event's `metadata` carries it.
    pub parent: Option<trace::Parent<'a>>,
}

/// A new message id: `arq_` + UUIDv7.
pub fn message_id() -> String {
    format!("arq_{}", uuid::Uuid::now_v7())
}

/// Stores and fans out one event; permission checks are the caller's.
pub async fn publish_event(node: &Node, origin: &Origin<'_>, ev: EventFrame) -> Result<Published, ErrorBody> {
    if ev.key.is_reserved() {
        return Err(ErrorBody::new(ErrorCode::Forbidden, "rooms beginning with _ are reserved for the server"));
    }
    let id = message_id();
    let timestamp = timestamp_now();
    let meta = ev.metadata.as_ref();
    let parent = origin.parent.or_else(|| meta.and_then(|m| Some((m.get("traceparent")?, m.get("tracestate")))));
    let trace = trace::Publish::start(&ev.key, &id, origin.source, parent);
    // Traced: the stored event carries the publish span's context, so that every node that
    // delivers it, and every client that receives it, continues the same trace.
    let traced_meta = trace.as_ref().map(|t| metadata_with(meta.map(|m| m.raw()), "traceparent", t.traceparent()));
    let template = event_template(&EventFields {
        id: &id,
        key: &ev.key,
        from: origin.client_id,
        user: origin.user,
        timestamp: &timestamp,
        payload: &ev.payload,
        metadata: traced_meta.as_deref().or(meta.map(|m| m.raw())),
    });
    let request = PublishRequest {
        key: ev.key.clone(),
        message_id: id,
        template,
        origin: origin.client_id.to_owned(),
        idempotency_key: ev.idempotency_key,
        dedupe_window_s: node.config.channels.dedupe_window_s,
        create: node.create_options(&ev.key),
    };
    let span = trace.as_ref().map_or_else(tracing::Span::none, |t| t.span().clone());
    let result = node.backplane.publish(request).instrument(span).await.map_err(|e| backplane_error(e, Some(&ev.key)));
    match (&result, &trace) {
        (Ok(p), Some(t)) => t.stored(p.offset),
        (Err(e), Some(t)) => t.failed(e.code.as_str()),
        _ => {}
    }
    let published = result?;
    if !published.duplicate {
        metrics().published.inc();
        telemetry::channel_published(ev.key.as_str());
    }
    Ok(published)
}

/// An `event` frame from a WebSocket client.
pub async fn from_client(s: &mut Session, ev: EventFrame) -> Result<Outcome, ErrorBody> {
    if !ev.key.is_reserved() && !s.identity.permissions.can_publish(&ev.key) {
        return Err(ErrorBody::new(ErrorCode::Forbidden, format!("no publish permission on {}", ev.key)));
    }
    s.take_publish_token()?;
    let started = Instant::now();
    let origin = Origin { client_id: &s.conn.client_id, user: s.identity.user.as_deref(), source: "ws", parent: None };
    let published = publish_event(&s.node, &origin, ev).await?;
    metrics().publish_duration.with_label_values(&["ws"]).observe(started.elapsed().as_secs_f64());
    Ok(Outcome::Reply(to_raw(&published)))
}

/// A `private` frame: delivered to every connection of the target, on every node, not stored.
pub async fn private(s: &mut Session, p: PrivateFrame) -> Result<Outcome, ErrorBody> {
    if !s.identity.permissions.private {
        return Err(ErrorBody::new(ErrorCode::Forbidden, "no permission to send private messages"));
    }
    s.take_publish_token()?;
    let id = super::publish::message_id();
    let frame = private_frame(
        &id,
        &s.conn.client_id,
        s.identity.user.as_deref(),
        &p.to,
        &p.payload,
        p.metadata.as_ref().map(|m| m.raw()),
    );
    let delivered = s.node.backplane.send_private(&p.to, &frame).await.map_err(|e| backplane_error(e, None))?;
    if delivered == 0 {
        return Err(ErrorBody::new(ErrorCode::NotConnected, "no connected recipient"));
    }
    Ok(Outcome::Reply(to_raw(&json!({ "id": id, "delivered": delivered }))))
}

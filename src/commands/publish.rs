//! Publishing: `event` frames (and `POST /v1/publish`), and `private` frames.

use serde_json::json;

use super::{backplane_error, to_raw, Node, Outcome, Session};
use crate::backplane::{PublishRequest, Published};
use crate::protocol::{
    event_template, private_frame, timestamp_now, ErrorBody, ErrorCode, EventFields, EventFrame, PrivateFrame,
};
use crate::telemetry::metrics;

/// Who publishes: a client connection, or the HTTP API.
pub struct Origin<'a> {
    /// `from` of the event.
    pub client_id: &'a str,
    /// `user` of the event.
    pub user: Option<&'a str>,
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
    let template = event_template(&EventFields {
        id: &id,
        key: &ev.key,
        from: origin.client_id,
        user: origin.user,
        timestamp: &timestamp,
        payload: &ev.payload,
        metadata: ev.metadata.as_ref().map(|m| m.raw()),
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
    let published = node.backplane.publish(request).await.map_err(|e| backplane_error(e, Some(&ev.key)))?;
    if !published.duplicate {
        metrics().published.inc();
    }
    Ok(published)
}

/// An `event` frame from a WebSocket client.
pub async fn from_client(s: &mut Session, ev: EventFrame) -> Result<Outcome, ErrorBody> {
    if !ev.key.is_reserved() && !s.identity.permissions.can_publish(&ev.key) {
        return Err(ErrorBody::new(ErrorCode::Forbidden, format!("no publish permission on {}", ev.key)));
    }
    s.take_publish_token()?;
    let origin = Origin { client_id: &s.conn.client_id, user: s.identity.user.as_deref() };
    let published = publish_event(&s.node, &origin, ev).await?;
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

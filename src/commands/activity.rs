//! The `_sys:activity` stream: connections, subscriptions, channel changes and errors, as
//! events.

use serde_json::{json, Value};

use super::{publish::message_id, Node};
use crate::backplane::PublishRequest;
use crate::protocol::{event_template, timestamp_now, ChannelKey, EventFields};

/// What happened.
#[derive(Debug, Clone, Copy)]
pub enum Activity {
    /// A client connected.
    Connected,
    /// A client disconnected.
    Disconnected,
    /// A client subscribed.
    Subscribed,
    /// A client unsubscribed.
    Unsubscribed,
    /// A channel was declared.
    ChannelCreated,
    /// A channel was deleted.
    ChannelDeleted,
}

impl Activity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::Subscribed => "subscribed",
            Self::Unsubscribed => "unsubscribed",
            Self::ChannelCreated => "channel_created",
            Self::ChannelDeleted => "channel_deleted",
        }
    }
}

/// What is known of a frame the server answered with an `error`. Never the payload, never
/// an argument value other than a valid room and channel name.
#[derive(Debug, Default)]
pub struct ErrorContext {
    /// The frame's `type`, once it was read and known.
    pub frame_type: Option<&'static str>,
    /// The command name (at most 64 characters), on `command` frames.
    pub command: Option<String>,
    /// The channel the frame addressed, when it named a valid one.
    pub key: Option<ChannelKey>,
}

/// Publishes one activity event; failures are logged, never returned to the client.
pub async fn publish(node: &Node, kind: Activity, client_id: &str, user: Option<&str>, key: Option<&ChannelKey>) {
    let mut payload = json!({ "kind": kind.as_str(), "client_id": client_id, "user": user });
    add_key(&mut payload, key);
    publish_payload(node, &payload).await;
}

/// Publishes the `error` activity event of an `error` frame sent to a client: its `code`, what
/// the frame was, and `close` when this error closed the connection (1008).
pub async fn publish_error(
    node: &Node,
    client_id: &str,
    user: Option<&str>,
    code: &str,
    ctx: &ErrorContext,
    close: Option<u16>,
) {
    let mut payload = json!({ "kind": "error", "client_id": client_id, "user": user, "code": code });
    if let Some(t) = ctx.frame_type {
        payload["type"] = t.into();
    }
    if let Some(c) = &ctx.command {
        payload["command"] = c.as_str().into();
    }
    add_key(&mut payload, ctx.key.as_ref());
    if let Some(c) = close {
        payload["close"] = c.into();
    }
    publish_payload(node, &payload).await;
}

fn add_key(payload: &mut Value, key: Option<&ChannelKey>) {
    if let Some(k) = key {
        payload["room"] = k.room().into();
        payload["channel"] = k.channel().into();
    }
}

async fn publish_payload(node: &Node, payload: &Value) {
    let target = ChannelKey::new("_sys", "activity");
    let id = message_id();
    let timestamp = timestamp_now();
    let payload = crate::protocol::raw(payload.to_string());
    let template = event_template(&EventFields {
        id: &id,
        key: &target,
        from: &node.id,
        user: None,
        timestamp: &timestamp,
        payload: &payload,
        metadata: None,
    });
    let request = PublishRequest {
        key: target,
        message_id: id,
        template,
        origin: node.id.clone(),
        idempotency_key: None,
        dedupe_window_s: 1,
        create: Some(node.default_options()),
    };
    if let Err(e) = node.backplane.publish(request).await {
        tracing::debug!(error = %e, "activity event not published");
    }
}

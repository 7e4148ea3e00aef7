//! The `_sys:activity` stream: connections, subscriptions and channel changes, as events.

use serde_json::json;

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

/// Publishes one activity event; failures are logged, never returned to the client.
pub async fn publish(node: &Node, kind: Activity, client_id: &str, user: Option<&str>, key: Option<&ChannelKey>) {
    let target = ChannelKey::new("_sys", "activity");
    let mut payload = json!({ "kind": kind.as_str(), "client_id": client_id, "user": user });
    if let Some(k) = key {
        payload["room"] = k.room().into();
        payload["channel"] = k.channel().into();
    }
    let id = message_id();
    let timestamp = timestamp_now();
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

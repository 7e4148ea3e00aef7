//! The `_sys:activity` stream: connections, subscriptions, channel changes and errors, as
//! events.
//!
//! Events leave the client's path: a session only queues one ([`ActivityQueue::push`], never
//! waits), and one task per node publishes them in order. When the backplane is slow or down the
//! queue fills; what does not fit is dropped and counted
//! (`arqonbus_activity_events_dropped_total{reason="queue_full"}`), and so is an event the
//! backplane refused (`reason="publish_failed"`). A connect, subscribe or disconnect therefore
//! never waits for an activity publish.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{publish::message_id, Node};
use crate::backplane::PublishRequest;
use crate::protocol::{event_template, timestamp_now, ChannelKey, EventFields};
use crate::telemetry::metrics;

/// Activity events waiting to be published, at most (each well under 1 KiB: a kind, a client
/// id, a user, a channel name).
pub const QUEUE_EVENTS: usize = 1024;

/// Longest the publisher keeps publishing queued events once the node stops.
const FLUSH: Duration = Duration::from_secs(2);

/// The sending end of a node's activity queue.
pub struct ActivityQueue {
    tx: mpsc::Sender<Value>,
}

impl ActivityQueue {
    /// A queue of `capacity` events and its receiving end, for [`run_publisher`].
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Value>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx }, rx)
    }

    /// Queues one event's payload without waiting; a full queue drops it (counted).
    pub fn push(&self, payload: Value) {
        if self.tx.try_send(payload).is_err() {
            metrics().activity_dropped.with_label_values(&["queue_full"]).inc();
        }
    }
}

/// Publishes queued activity events, one at a time and in order, until `stop`; then what is
/// still queued, for at most [`FLUSH`] (the node's last `disconnected` events).
pub async fn run_publisher(node: Arc<Node>, mut rx: mpsc::Receiver<Value>, stop: CancellationToken) {
    loop {
        let payload = tokio::select! {
            biased;
            p = rx.recv() => match p {
                Some(p) => p,
                None => return,
            },
            _ = stop.cancelled() => break,
        };
        publish_payload(&node, &payload).await;
    }
    rx.close();
    let _ = tokio::time::timeout(FLUSH, async {
        while let Some(p) = rx.recv().await {
            publish_payload(&node, &p).await;
        }
    })
    .await;
}

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

/// Queues one activity event.
pub fn publish(node: &Node, kind: Activity, client_id: &str, user: Option<&str>, key: Option<&ChannelKey>) {
    let mut payload = json!({ "kind": kind.as_str(), "client_id": client_id, "user": user });
    add_key(&mut payload, key);
    node.activity.push(payload);
}

/// Queues the `error` activity event of an `error` frame sent to a client: its `code`, what
/// the frame was, and `close` when this error closed the connection (1008).
pub fn publish_error(
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
    node.activity.push(payload);
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
        metrics().activity_dropped.with_label_values(&["publish_failed"]).inc();
        tracing::debug!(error = %e, "activity event not published");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dropped_full() -> u64 {
        metrics().activity_dropped.with_label_values(&["queue_full"]).get()
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (queue, mut rx) = ActivityQueue::new(2);
        let before = dropped_full();
        for i in 0..5 {
            queue.push(json!({ "i": i }));
        }
        assert_eq!(dropped_full() - before, 3, "three events did not fit");
        assert_eq!(rx.try_recv().expect("first")["i"], 0, "the queue keeps the oldest, in order");
        assert_eq!(rx.try_recv().expect("second")["i"], 1);
        assert!(rx.try_recv().is_err());
    }
}

//! The `_sys:activity` stream: connections, subscriptions, channel changes and errors, as
//! events.
//!
//! Activity never waits on the backplane in a client's path: commands put events on the node's
//! bounded [`ActivityQueue`] and go on; one task per node ([`run`]) publishes them in order.
//! When [`QUEUE`] events are already waiting (a reconnect storm: every client connects and
//! subscribes at once) further events are dropped and counted
//! (`arqonbus_activity_dropped_total`), so a burst of clients costs no backplane round trips
//! for activity and the stream stays best-effort, as it always was when the backplane failed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{publish::message_id, Node};
use crate::backplane::PublishRequest;
use crate::protocol::{event_template, timestamp_now, ChannelKey, EventFields};
use crate::telemetry::metrics;

/// Activity events waiting to be published, at most; more are dropped and counted.
pub const QUEUE: usize = 1024;
/// After the node stopped serving, how long the events still queued may take to publish.
const FLUSH: Duration = Duration::from_millis(500);

/// One queued event: its payload and when it happened.
struct Queued {
    payload: Value,
    timestamp: String,
}

/// The node's side of the activity queue: pushing never waits.
pub struct ActivityQueue {
    tx: mpsc::Sender<Queued>,
}

/// The publishing task's side of the queue (see [`run`]).
pub struct ActivityReceiver {
    rx: mpsc::Receiver<Queued>,
}

/// A new, empty activity queue.
pub fn queue() -> (ActivityQueue, ActivityReceiver) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (ActivityQueue { tx }, ActivityReceiver { rx })
}

impl ActivityQueue {
    fn push(&self, payload: Value) {
        if self.tx.try_send(Queued { payload, timestamp: timestamp_now() }).is_err() {
            metrics().activity_dropped.inc();
        }
    }
}

/// Publishes the node's queued activity events, in order, until `stop`; then, for at most
/// [`FLUSH`], what is still queued (the `disconnected` events of a draining node's clients).
/// An event being published when `stop` comes is abandoned: activity is best-effort and a
/// stopping node never waits on an unreachable backplane for it.
pub async fn run(node: Arc<Node>, mut queue: ActivityReceiver, stop: CancellationToken) {
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            e = queue.rx.recv() => e,
        };
        let Some(event) = next else { break };
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = publish_payload(&node, event) => {}
        }
    }
    let _ = tokio::time::timeout(FLUSH, async {
        while let Ok(event) = queue.rx.try_recv() {
            publish_payload(&node, event).await;
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

/// Queues one activity event (see the module docs); never waits.
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

/// Publishes one queued event; failures are logged, never returned to a client.
async fn publish_payload(node: &Node, event: Queued) {
    let target = ChannelKey::new("_sys", "activity");
    let id = message_id();
    let timestamp = event.timestamp;
    let payload = crate::protocol::raw(event.payload.to_string());
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

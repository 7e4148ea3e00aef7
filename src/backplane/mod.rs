//! The backplane: what nodes share.
//!
//! Owns the [`Backplane`] trait — append-and-publish with offsets and epochs, subscribe by
//! interest, history reads, presence, the channel registry and the node registry — and its
//! implementations (`memory`, and `redis` for many nodes). Incoming traffic goes the
//! other way through [`Inbound`], a handler the node gives the backplane at construction: the
//! backplane never holds the router. Imports only `protocol`, `config` (its own section) and `telemetry` (counters).

mod memory;
mod redis;
mod timed;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::protocol::{ChannelKey, EventTemplate, Frame, Target};

pub use memory::{MemoryBackplane, MemoryBus};
pub use redis::{RedisBackplane, RedisStartError};
pub use timed::Timed;

/// Errors of backplane operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackplaneError {
    /// The channel does not exist (and may not be created implicitly).
    #[error("channel not found")]
    NotFound,
    /// The channel exists already.
    #[error("channel exists")]
    Exists,
    /// A configured cap (channels per room or node, history memory) would be exceeded.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The backplane cannot be reached now; nothing was applied; retry later.
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
    /// The backplane refused a write because it is out of memory (Redis `maxmemory` reached
    /// with `noeviction`); nothing was applied. Reads still work.
    #[error("backplane out of memory: {0}")]
    OutOfMemory(String),
    /// The request reached the backplane but no answer came within the deadline: it may or
    /// may not have been applied (a publish: retry with the same idempotency key).
    #[error("backplane timeout: {0}")]
    Timeout(String),
    /// Anything else.
    #[error("backplane failure: {0}")]
    Internal(String),
}

/// Result alias for backplane calls.
pub type BpResult<T> = Result<T, BackplaneError>;

/// Per-channel options, set by `create_channel` or the configured defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelOptions {
    /// Free text, `None` when not given.
    pub description: Option<String>,
    /// Events kept (0 = no history).
    pub history_size: u64,
    /// Seconds an event is kept.
    pub history_ttl_s: u64,
    /// Whether subscribers get `join`/`leave` frames.
    pub presence_events: bool,
}

/// What `channel_info` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelInfo {
    /// Room name.
    pub room: String,
    /// Channel name.
    pub channel: String,
    /// Free text, `null` when not given.
    pub description: Option<String>,
    /// Events kept.
    pub history_size: u64,
    /// Seconds an event is kept.
    pub history_ttl_s: u64,
    /// Presence events on or off.
    pub presence_events: bool,
    /// Latest offset, `None` when nothing was published.
    pub offset: Option<u64>,
    /// Current epoch.
    pub epoch: String,
    /// Subscriptions on every node.
    pub subscribers: u64,
    /// RFC 3339.
    pub created_at: String,
}

/// A publish: the event rendered by the backplane with the offset it assigns.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    /// Where.
    pub key: ChannelKey,
    /// The message id (`arq_…`) the event carries.
    pub message_id: String,
    /// The event, serialized around its offset.
    pub template: EventTemplate,
    /// Sender client id (for `echo:false`).
    pub origin: String,
    /// Dedupe key, remembered for `dedupe_window_s`.
    pub idempotency_key: Option<String>,
    /// Seconds an idempotency key is remembered.
    pub dedupe_window_s: u64,
    /// Options to create the channel with when it does not exist; `None`: NotFound.
    pub create: Option<ChannelOptions>,
}

/// The result of a publish, sent back in the ack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The message id (the first one's, for a duplicate).
    pub id: String,
    /// Its offset.
    pub offset: u64,
    /// Whether this publish was a duplicate and stored nothing.
    pub duplicate: bool,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the stream.
    pub offset: u64,
    /// The event frame exactly as delivered.
    pub frame: Frame,
}

/// A channel's stream position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    /// Current epoch.
    pub epoch: String,
    /// Latest offset (0 when nothing was published).
    pub top: u64,
    /// Oldest offset still retained (`top + 1` when none is).
    pub first: u64,
}

/// A history query (§4 `history`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Exclusive lower bound.
    pub since: Option<u64>,
    /// Exclusive upper bound.
    pub before: Option<u64>,
    /// Most events returned.
    pub limit: usize,
    /// Most bytes of event frames returned (at least one event is, when any matches).
    pub max_bytes: usize,
}

/// What a history query found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    /// Matching events, ascending.
    pub events: Vec<StoredEvent>,
    /// The channel's position.
    pub pos: StreamPosition,
    /// More events match than were returned (`limit` or `max_bytes` cut the page).
    pub has_more: bool,
}

/// Where a page of a listing starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Entries strictly after this name (client id or channel name) in ascending order.
    pub after: Option<String>,
    /// Most entries returned.
    pub limit: usize,
}

/// A page of a channel's presence.
#[derive(Debug, Clone, PartialEq)]
pub struct PresencePage {
    /// Entries, ascending by client id.
    pub entries: Vec<PresenceEntry>,
    /// Everyone in the channel's presence.
    pub count: u64,
    /// Whether entries after the last one exist.
    pub has_more: bool,
}

/// Caps and lifetimes the backplane enforces on channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Channels per room.
    pub per_room: usize,
    /// Channels per node (memory backplane).
    pub per_node: usize,
    /// Bytes of stored history and idempotency results per node (memory backplane).
    pub memory_bytes: usize,
    /// Seconds an idempotency key is remembered: a channel is kept at least this long after
    /// its last publish.
    pub dedupe_window_s: u64,
}

impl From<&crate::config::ChannelsConfig> for ChannelLimits {
    fn from(c: &crate::config::ChannelsConfig) -> Self {
        Self {
            per_room: c.max_channels_per_room,
            per_node: c.max_channels,
            memory_bytes: c.memory_max_bytes,
            dedupe_window_s: c.dedupe_window_s,
        }
    }
}

impl ChannelLimits {
    /// How long a channel created on use lives with no publish and nobody subscribed.
    pub fn idle_ttl_s(&self, options: &ChannelOptions) -> u64 {
        options.history_ttl_s.max(self.dedupe_window_s)
    }
}

/// A live event arriving from the backplane.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// Where.
    pub key: ChannelKey,
    /// Its offset.
    pub offset: u64,
    /// Sender client id.
    pub origin: String,
    /// The frame to deliver.
    pub frame: Frame,
}

/// Somebody in a channel's presence.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PresenceEntry {
    /// Client id.
    pub client_id: String,
    /// User id, if authenticated.
    pub user: Option<String>,
    /// The node holding the connection.
    pub node: String,
    /// RFC 3339.
    pub joined_at: String,
    /// From the token's `arqonbus.info` claim.
    pub info: Value,
}

/// A live node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// Node id.
    pub node: String,
    /// Its WebSocket connections.
    pub connections: u64,
    /// RFC 3339: when it was last heard from.
    pub last_seen: String,
}

/// Why subscribers lose a subscription without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneReason {
    /// `delete_channel`.
    ChannelDeleted,
    /// The stream was lost; the channel has a new epoch.
    HistoryLost,
}

impl GoneReason {
    /// The `payload.reason` of the `unsubscribed` frame.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ChannelDeleted => "channel_deleted",
            Self::HistoryLost => "history_lost",
        }
    }
}

/// What a backplane calls on the node. Implementations must not block: they hand frames to
/// bounded queues and return.
pub trait Inbound: Send + Sync {
    /// A channel event, in offset order per channel.
    fn on_event(&self, event: &LiveEvent);
    /// A channel `system` frame (presence join/leave), in order with the channel's events.
    fn on_system(&self, key: &ChannelKey, frame: &Frame);
    /// Every local subscription to `key` ends.
    fn on_channel_gone(&self, key: &ChannelKey, reason: GoneReason);
    /// A private frame; returns how many local connections received it.
    fn on_private(&self, target: &Target, frame: &Frame) -> usize;
    /// Local subscriptions to `key`.
    fn local_subscribers(&self, key: &ChannelKey) -> u64;
    /// Local WebSocket connections.
    fn connections(&self) -> u64;
}

/// The shared state of a cluster (one node or many).
#[async_trait]
pub trait Backplane: Send + Sync {
    /// `memory` or `redis`, as reported by `status`.
    fn kind(&self) -> &'static str;
    /// Whether the backplane is reachable now.
    async fn healthy(&self) -> bool;

    /// Makes sure a channel exists; `create`: options to create it with, else NotFound.
    async fn ensure_channel(&self, key: &ChannelKey, create: Option<&ChannelOptions>) -> BpResult<()>;
    /// Declares a channel; Exists if it does.
    async fn create_channel(&self, key: &ChannelKey, options: ChannelOptions) -> BpResult<ChannelInfo>;
    /// Deletes a channel and its history; subscribers everywhere lose it.
    async fn delete_channel(&self, key: &ChannelKey) -> BpResult<()>;
    /// A page of a room's channels, by name; `true` when more follow.
    async fn list_channels(&self, room: &str, page: Page) -> BpResult<(Vec<ChannelInfo>, bool)>;
    /// One channel.
    async fn channel_info(&self, key: &ChannelKey) -> BpResult<ChannelInfo>;

    /// Dedupe → offset → append → live fan-out, atomically and in offset order.
    async fn publish(&self, request: PublishRequest) -> BpResult<Published>;
    /// Epoch, top and first retained offset.
    async fn position(&self, key: &ChannelKey) -> BpResult<StreamPosition>;
    /// Retained events with `from <= offset <= to`, ascending, at most `limit` and about
    /// `max_bytes` (at least one).
    async fn read_range(
        &self,
        key: &ChannelKey,
        from: u64,
        to: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BpResult<Vec<StoredEvent>>;
    /// Retained events for a history query, ascending. NotFound for an unknown channel (a read
    /// never creates one).
    async fn history(&self, key: &ChannelKey, query: HistoryQuery) -> BpResult<HistoryPage>;

    /// This node wants live events of `key` (counted: one call per local subscription).
    async fn subscribe(&self, key: &ChannelKey) -> BpResult<()>;
    /// One local subscription to `key` ended.
    async fn unsubscribe(&self, key: &ChannelKey) -> BpResult<()>;

    /// Delivers a private frame on every node; returns the connections reached.
    async fn send_private(&self, target: &Target, frame: &Frame) -> BpResult<usize>;

    /// Adds a presence entry; `announce` is delivered to subscribers when the channel has
    /// presence events on.
    async fn presence_join(&self, key: &ChannelKey, entry: PresenceEntry, announce: Frame) -> BpResult<()>;
    /// Removes a presence entry, announcing as for `presence_join`.
    async fn presence_leave(&self, key: &ChannelKey, client_id: &str, announce: Frame) -> BpResult<()>;
    /// A page of a channel's presence, ascending by client id. NotFound for an unknown channel.
    async fn presence(&self, key: &ChannelKey, page: Page) -> BpResult<PresencePage>;

    /// Live nodes.
    async fn nodes(&self) -> BpResult<Vec<NodeInfo>>;
    /// This node leaves the cluster (shutdown).
    async fn leave(&self);
}

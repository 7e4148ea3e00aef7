//! Redis key and pub/sub channel names.
//!
//! Everything of one channel carries the hash tag `{room:channel}`, so a script touching the
//! meta hash, the stream and the live channel stays in one Cluster slot; the node registry
//! carries `{nodes}`.

use crate::protocol::ChannelKey;

/// Names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    fn chan(&self, key: &ChannelKey, what: &str) -> String {
        format!("{}:{{{}}}:{what}", self.prefix, key.as_str())
    }

    /// HASH: epoch, offset (top), created_at, options.
    pub fn meta(&self, key: &ChannelKey) -> String {
        self.chan(key, "meta")
    }

    /// STREAM: the history, entry id = offset.
    pub fn stream(&self, key: &ChannelKey) -> String {
        self.chan(key, "stream")
    }

    /// STRING with the dedupe window as TTL: `<message id>|<offset>`.
    pub fn idem(&self, key: &ChannelKey, idempotency_key: &str) -> String {
        format!("{}:idem:{idempotency_key}", self.chan(key, ""))
    }

    /// HASH: client id → presence entry JSON.
    pub fn presence(&self, key: &ChannelKey) -> String {
        self.chan(key, "presence")
    }

    /// ZSET (all scores 0, read by name): the client ids of the presence hash, for pages.
    pub fn presence_index(&self, key: &ChannelKey) -> String {
        self.chan(key, "presence_ids")
    }

    /// HASH: node → its subscriptions to the channel.
    pub fn subs(&self, key: &ChannelKey) -> String {
        self.chan(key, "subs")
    }

    /// Shard pub/sub channel of live events, presence frames and deletion.
    pub fn live(&self, key: &ChannelKey) -> String {
        self.chan(key, "live")
    }

    /// The channel key of a live channel name (the inverse of [`Keys::live`]).
    pub fn parse_live(&self, name: &str) -> Option<ChannelKey> {
        let rest = name.strip_prefix(&self.prefix)?.strip_prefix(":{")?.strip_suffix("}:live")?;
        let (room, channel) = rest.split_once(':')?;
        ChannelKey::parse(room, channel).ok()
    }

    /// ZSET (all scores 0, read by name): the channel names of a room.
    pub fn room(&self, room: &str) -> String {
        format!("{}:room:{room}:index", self.prefix)
    }

    /// ZSET: node → last heartbeat (ms, server clock).
    pub fn nodes(&self) -> String {
        format!("{}:{{nodes}}:seen", self.prefix)
    }

    /// HASH: node → WebSocket connections.
    pub fn node_conns(&self) -> String {
        format!("{}:{{nodes}}:connections", self.prefix)
    }

    /// SET: `room:channel` of every channel where the node has presence entries.
    pub fn node_presence(&self, node: &str) -> String {
        format!("{}:node:{node}:presence", self.prefix)
    }

    /// Shard pub/sub channel of one node: canary and private-message answers.
    pub fn ctl(&self, node: &str) -> String {
        format!("{}:node:{node}:ctl", self.prefix)
    }

    /// Shard pub/sub channel every node listens to: private messages.
    pub fn private(&self) -> String {
        format!("{}:private", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_keys_share_one_hash_tag() {
        let k = Keys::new("arqonbus");
        let key = ChannelKey::new("science", "explore");
        assert_eq!(k.meta(&key), "arqonbus:{science:explore}:meta");
        assert_eq!(k.idem(&key, "x1"), "arqonbus:{science:explore}::idem:x1");
        assert_eq!(k.parse_live(&k.live(&key)), Some(key));
        assert_eq!(k.parse_live("arqonbus:{a}:live"), None);
        assert_eq!(k.parse_live("other:{a:b}:live"), None);
    }
}

//! A [`Backplane`] that times every call of the one it wraps
//! (`arqonbus_backplane_request_duration_seconds{op}`).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::*;
use crate::telemetry::metrics;

/// Times the calls of `inner`.
pub struct Timed(pub Arc<dyn Backplane>);

async fn timed<T>(op: &'static str, call: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = call.await;
    metrics().backplane_duration.with_label_values(&[op]).observe(started.elapsed().as_secs_f64());
    out
}

#[async_trait]
impl Backplane for Timed {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    async fn healthy(&self) -> bool {
        self.0.healthy().await
    }
    async fn ensure_channel(&self, key: &ChannelKey, create: Option<&ChannelOptions>) -> BpResult<()> {
        timed("ensure_channel", self.0.ensure_channel(key, create)).await
    }
    async fn create_channel(&self, key: &ChannelKey, options: ChannelOptions) -> BpResult<ChannelInfo> {
        timed("create_channel", self.0.create_channel(key, options)).await
    }
    async fn delete_channel(&self, key: &ChannelKey) -> BpResult<()> {
        timed("delete_channel", self.0.delete_channel(key)).await
    }
    async fn list_channels(&self, room: &str, page: Page) -> BpResult<(Vec<ChannelInfo>, bool)> {
        timed("list_channels", self.0.list_channels(room, page)).await
    }
    async fn channel_info(&self, key: &ChannelKey) -> BpResult<ChannelInfo> {
        timed("channel_info", self.0.channel_info(key)).await
    }
    async fn publish(&self, request: PublishRequest) -> BpResult<Published> {
        timed("publish", self.0.publish(request)).await
    }
    async fn position(&self, key: &ChannelKey) -> BpResult<StreamPosition> {
        timed("position", self.0.position(key)).await
    }
    async fn read_range(
        &self,
        key: &ChannelKey,
        from: u64,
        to: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BpResult<Vec<StoredEvent>> {
        timed("read", self.0.read_range(key, from, to, limit, max_bytes)).await
    }
    async fn history(&self, key: &ChannelKey, query: HistoryQuery) -> BpResult<HistoryPage> {
        timed("history", self.0.history(key, query)).await
    }
    async fn subscribe(&self, key: &ChannelKey) -> BpResult<()> {
        timed("subscribe", self.0.subscribe(key)).await
    }
    async fn unsubscribe(&self, key: &ChannelKey) -> BpResult<()> {
        timed("unsubscribe", self.0.unsubscribe(key)).await
    }
    async fn send_private(&self, target: &Target, frame: &Frame) -> BpResult<usize> {
        timed("private", self.0.send_private(target, frame)).await
    }
    async fn presence_join(&self, key: &ChannelKey, entry: PresenceEntry, announce: Frame) -> BpResult<()> {
        timed("presence_join", self.0.presence_join(key, entry, announce)).await
    }
    async fn presence_leave(&self, key: &ChannelKey, client_id: &str, announce: Frame) -> BpResult<()> {
        timed("presence_leave", self.0.presence_leave(key, client_id, announce)).await
    }
    async fn presence(&self, key: &ChannelKey, page: Page) -> BpResult<PresencePage> {
        timed("presence", self.0.presence(key, page)).await
    }
    async fn nodes(&self) -> BpResult<Vec<NodeInfo>> {
        timed("nodes", self.0.nodes()).await
    }
    async fn leave(&self) {
        self.0.leave().await
    }
}

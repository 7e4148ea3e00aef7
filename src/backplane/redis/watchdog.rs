//! Connections that stopped answering are declared dead and replaced, instead of waiting for
//! the kernel: a black-holed link (packets dropped, no reset) keeps its sockets open for many
//! minutes, and fred's own unresponsive check never fires while the node keeps writing.
//!
//! - The command connection: when a command it carries (the canary publish, sent every
//!   `canary_interval_ms`) gets no answer within `command_timeout_ms`, fred is told to reconnect
//!   it at once. Publishes in flight on it end with TIMEOUT (outcome unknown); until a new
//!   connection is up, publishes are refused with UNAVAILABLE, nothing sent.
//! - The pub/sub connection: when the canary has not come back through it for the readiness
//!   bound (three canary periods plus `command_timeout_ms`) while it still counts as connected,
//!   it is reconnected too; the live path then subscribes again and fills any gap from the
//!   streams.
//!
//! Each connection is replaced at most once per readiness bound, so a Redis that stays
//! unreachable is not hammered. TCP keepalive (set at connection set-up) catches a peer that is
//! gone while the node has nothing to send.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;

use super::Inner;
use crate::telemetry::metrics;

/// When each connection was last replaced (ms since the node started).
pub(super) struct Watchdog {
    commands_at: u64,
    pubsub_at: u64,
}

impl Watchdog {
    pub fn new(inner: &Inner) -> Self {
        let now = inner.now_ms();
        Self { commands_at: now, pubsub_at: now }
    }

    /// After each canary publish: `timed_out` when it got no answer within the command timeout.
    pub fn check(&mut self, inner: &Arc<Inner>, timed_out: bool) {
        let now = inner.now_ms();
        let bound = readiness_bound_ms(inner);
        if timed_out && inner.client.is_connected() && now.saturating_sub(self.commands_at) > bound {
            self.commands_at = now;
            replace(inner, "commands", inner.client.clone());
        }
        let heard = inner.canary_at.load(Ordering::Acquire).max(self.pubsub_at);
        if inner.sub.is_connected() && now.saturating_sub(heard) > bound {
            self.pubsub_at = now;
            replace(inner, "pubsub", inner.sub.clone());
        }
    }
}

/// How long the canary may be missing before readiness turns 503 (see `Inner::healthy`).
pub(super) fn readiness_bound_ms(inner: &Inner) -> u64 {
    inner.cfg.canary_interval_ms * 3 + inner.cfg.command_timeout_ms
}

/// Reconnects `client` in the background (bounded: fred keeps retrying on its own after).
fn replace<C: ClientLike + Clone + Send + Sync + 'static>(inner: &Inner, which: &'static str, client: C) {
    tracing::warn!(
        connection = which,
        timeout_ms = inner.cfg.command_timeout_ms,
        "the redis connection stopped answering; replacing it"
    );
    metrics().backplane_replaced.with_label_values(&[which]).inc();
    let limit = Duration::from_millis(inner.cfg.command_timeout_ms * 2);
    tokio::spawn(async move {
        if let Ok(Err(e)) = tokio::time::timeout(limit, client.force_reconnection()).await {
            tracing::debug!(connection = which, error = %e, "reconnect failed; fred keeps trying");
        }
    });
}

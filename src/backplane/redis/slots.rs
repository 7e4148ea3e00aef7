//! Redis Cluster: sharded subscriptions follow their hash slot when it moves.
//!
//! A shard channel's subscription lives on the connection to the master that served its slot
//! when the node subscribed. When the slot moves (`redis-cli --cluster reshard`, `CLUSTER
//! SETSLOT … NODE`) or its master fails over, Redis ends that subscription with a
//! `sunsubscribe` push, which fred drops without telling anyone, or (a deposed master that
//! kept its clients) simply stops receiving the channel's messages. Either way nothing arrives
//! any more, with no error.
//!
//! So the node remembers, per subscribed channel, the master its subscription went to, and
//! every `slot_check_interval_ms` compares that with the Cluster's slot map (`CLUSTER SLOTS`,
//! one command under the command timeout). A channel found elsewhere is counted
//! (`arqonbus_backplane_slot_moves_total`), the subscriber connection's routing is refreshed,
//! the channel is subscribed on its new master, and the live task sweeps: events published
//! meanwhile come from the stream, in order, each once (or the channel ends with
//! `history_lost` when the stream no longer has them).
//!
//! The publish script and every other command follow `MOVED` (fred refreshes its routing) and
//! `ASK` (fred sends `ASKING`) by themselves: such a reply means the command did not run.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::cluster::ClusterRouting;

use super::live::Ctl;
use super::{lock, Inner};
use crate::telemetry::metrics;

/// Records where the subscriptions to `channels` live: the master fred routes their slot to.
/// Called right after they were subscribed.
pub(super) fn placed<'a>(inner: &Inner, channels: impl IntoIterator<Item = &'a str>) {
    if !inner.sub.is_clustered() {
        return;
    }
    let routing = inner.sub.cached_cluster_state();
    let mut placed = lock(&inner.placed);
    for channel in channels {
        let slot = fred::util::redis_keyslot(channel.as_bytes());
        match routing.as_ref().and_then(|r| r.get_server(slot)) {
            Some(server) => placed.insert(channel.to_owned(), server.clone()),
            None => placed.remove(channel),
        };
    }
}

/// Cluster only: checks the slot map every `slot_check_interval_ms`, each check bounded by
/// twice the command timeout.
pub(super) async fn watch(inner: Arc<Inner>) {
    if !inner.sub.is_clustered() {
        return;
    }
    let period = Duration::from_millis(inner.cfg.slot_check_interval_ms);
    let limit = Duration::from_millis(inner.cfg.command_timeout_ms) * 2;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = tick.tick() => match tokio::time::timeout(limit, check(&inner)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "slot map check failed; next tick retries"),
                Err(_) => tracing::debug!("slot map check took longer than {limit:?}; next tick retries"),
            },
        }
    }
}

/// The shard channels the node listens to: its own two and every tracked channel's.
fn subscribed(inner: &Inner) -> Vec<String> {
    let mut channels: Vec<String> = lock(&inner.tracks).keys().map(|k| inner.keys.live(k)).collect();
    channels.extend([inner.own_ctl.clone(), inner.private.clone()]);
    channels
}

/// One check: subscribes again, on their slot's master now, the channels whose subscription is
/// elsewhere (or unknown), then has the live task sweep.
async fn check(inner: &Arc<Inner>) -> Result<(), fred::error::Error> {
    if !inner.client.is_connected() || !inner.sub.is_connected() {
        return Ok(()); // a reconnect resubscribes everything anyway
    }
    let slots: Value = inner.client.cluster_slots().await?;
    let host = inner.client.active_connections().into_iter().next().map(|s| s.host).unwrap_or_default();
    let map = ClusterRouting::from_cluster_slots(slots, host)?;
    let (moved, unknown) = misplaced(inner, &map);
    if moved.is_empty() && unknown.is_empty() {
        return Ok(());
    }
    if !moved.is_empty() {
        metrics().slot_moves.inc_by(moved.len() as u64);
        tracing::warn!(
            channels = moved.len(),
            "subscribed channels now served by another Redis master (slot moved or failed over); \
             subscribing there and repairing from the streams"
        );
        // Both clients' routing: the slot map as Redis has it now (the sweep reads next).
        inner.sub.sync_cluster().await?;
        inner.client.sync_cluster().await?;
    }
    {
        let _g = inner.interest.lock().await;
        // Again under the lock: a subscribe or unsubscribe may have come meanwhile.
        let (moved, unknown) = misplaced(inner, &map);
        let mut by_slot: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for c in moved.into_iter().chain(unknown) {
            by_slot.entry(fred::util::redis_keyslot(c.as_bytes())).or_default().push(c);
        }
        // One SSUBSCRIBE per slot (one across slots is refused).
        for group in by_slot.into_values() {
            inner.sub.ssubscribe(group.clone()).await?;
            placed(inner, group.iter().map(String::as_str));
        }
    }
    let _ = inner.ctl.send(Ctl::Sweep);
    Ok(())
}

/// The subscribed channels whose subscription is on another master than `map` names for their
/// slot, and those whose master is not known; forgets the places of channels no longer
/// subscribed.
fn misplaced(inner: &Inner, map: &ClusterRouting) -> (Vec<String>, Vec<String>) {
    let channels = subscribed(inner);
    let mut placed = lock(&inner.placed);
    let keep: HashSet<&str> = channels.iter().map(String::as_str).collect();
    placed.retain(|c, _| keep.contains(c.as_str()));
    let mut moved = Vec::new();
    let mut unknown = Vec::new();
    for c in &channels {
        let owner = map.get_server(fred::util::redis_keyslot(c.as_bytes()));
        match (placed.get(c), owner) {
            // No master serves the slot right now (failing over): nowhere to go yet.
            (_, None) => {}
            (Some(at), Some(owner)) if at == owner => {}
            (Some(_), _) => moved.push(c.clone()),
            (None, _) => unknown.push(c.clone()),
        }
    }
    (moved, unknown)
}

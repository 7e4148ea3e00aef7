//! The live path: pub/sub messages in, checked per channel, handed to the node in offset order.
//!
//! One task reads the subscriber connection. For every subscribed channel it knows the epoch and
//! the last offset it delivered; an event one past it is delivered, an older one is a duplicate
//! (dropped), a newer one reveals a gap that is read from the stream and delivered first. An
//! epoch change, or a gap the stream no longer holds, ends the local subscriptions with
//! `history_lost` (clients re-subscribe and get `recovered:false`): never a silent hole. After a
//! reconnect, a lagging receiver, and every `sweep_interval_ms`, each channel is compared with
//! its stream's top so that a lost tail is found even when no later event comes.
//!
//! Message formats: live channel `E\n<epoch>\n<offset>\n<origin>\n<frame>`, `S\n<frame>`
//! (presence frame), `D` (deleted); node channel `C\n<n>` (canary), `A\n<request>\n<count>`
//! (private answer); private channel `Q\n<request>\n<sender>\n<c|u>\n<target>\n<frame>`.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::Message;
use tokio::sync::{broadcast, mpsc};
use tracing::Instrument;

use super::{bp, lock, new_epoch, num, Inner, Span};
use crate::backplane::{BpResult, GoneReason, LiveEvent};
use crate::protocol::{ChannelKey, Frame, Target};
use crate::telemetry::metrics;

/// Bytes of live messages held for a channel until its starting position is known; past it
/// messages are dropped, and the gap they leave is filled from the stream like any other.
const PENDING_BYTES: usize = 4 << 20;
/// Events read from the stream per page when filling a gap, and their bytes at most.
const REPAIR_PAGE: usize = 1000;
const REPAIR_BYTES: usize = 4 << 20;

/// What the node tracks of one channel with local subscribers.
pub(super) struct Track {
    /// Local subscriptions.
    pub count: usize,
    /// Epoch and last delivered offset, once known.
    state: Option<(String, u64)>,
    /// Messages that arrived before the position was known, and their bytes.
    pending: Vec<Incoming>,
    pending_bytes: usize,
}

impl Track {
    fn new() -> Self {
        Self { count: 0, state: None, pending: Vec::new(), pending_bytes: 0 }
    }
}

/// Requests to the live task from the node's own calls.
pub(super) enum Ctl {
    /// A channel's first local subscription: deliver from after `top`.
    Init { key: ChannelKey, epoch: String, top: u64 },
    /// Compare every channel with its stream now (its subscription moved).
    Sweep,
}

/// A decoded live-channel message.
enum Incoming {
    Event { epoch: String, offset: u64, origin: String, frame: Frame },
    System(Frame),
    Deleted,
}

impl Incoming {
    /// Bytes it holds.
    fn size(&self) -> usize {
        match self {
            Self::Event { epoch, origin, frame, .. } => epoch.len() + origin.len() + frame.len(),
            Self::System(f) => f.len(),
            Self::Deleted => 0,
        }
    }
}

fn decode(payload: &str) -> Option<Incoming> {
    match payload.as_bytes().first()? {
        b'E' => {
            let mut p = payload.splitn(5, '\n');
            p.next();
            let epoch = p.next()?.to_owned();
            let offset = p.next()?.parse().ok()?;
            let origin = p.next()?.to_owned();
            let frame = Frame::from(p.next()?.to_owned());
            Some(Incoming::Event { epoch, offset, origin, frame })
        }
        b'S' => Some(Incoming::System(Frame::from(payload.get(2..)?.to_owned()))),
        b'D' => Some(Incoming::Deleted),
        _ => None,
    }
}

/// The live task.
pub(super) async fn run(
    inner: Arc<Inner>,
    mut messages: broadcast::Receiver<Message>,
    mut reconnects: broadcast::Receiver<Server>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
) {
    let mut sweep = tokio::time::interval(Duration::from_millis(inner.cfg.sweep_interval_ms));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A resubscribe that failed is tried again at every sweep until it succeeds.
    let mut resubscribe_pending = false;
    loop {
        tokio::select! {
            biased;
            _ = inner.cancel.cancelled() => return,
            Some(c) = ctl.recv() => match c {
                Ctl::Init { key, epoch, top } => init(&inner, key, epoch, top).await,
                Ctl::Sweep => sweep_all(&inner).await,
            },
            r = reconnects.recv() => match r {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    resubscribe_pending = !resubscribe(&inner).await;
                    sweep_all(&inner).await;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            m = messages.recv() => match m {
                Ok(msg) => on_message(&inner, msg).await,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "live receiver lagged; repairing from the streams");
                    sweep_all(&inner).await;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = sweep.tick() => {
                if resubscribe_pending {
                    resubscribe_pending = !resubscribe(&inner).await;
                }
                sweep_all(&inner).await;
            }
        }
    }
}

/// Subscribes the (reconnected) subscriber connection again to every shard channel it tracks,
/// and to the node's control channels (also when subscribing to them at start failed): on
/// Cluster one SSUBSCRIBE per hash slot (one across slots is refused), else one for all. Not
/// fred's `resubscribe_all`: that first sends SUBSCRIBE and PSUBSCRIBE without channels, which
/// Redis refuses, so it never gets to the shard channels. False when it failed.
async fn resubscribe(inner: &Inner) -> bool {
    let result: Result<(), fred::error::Error> = async {
        let mut channels: BTreeSet<String> = inner.sub.tracked_shard_channels().iter().map(|c| c.to_string()).collect();
        channels.extend([inner.own_ctl.clone(), inner.private.clone()]);
        if !inner.sub.is_clustered() {
            return inner.sub.ssubscribe(channels.into_iter().collect::<Vec<_>>()).await;
        }
        for (_, group) in fred::util::group_by_hash_slot(channels)? {
            let names: Vec<String> = group.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect();
            inner.sub.ssubscribe(group).await?;
            super::slots::placed(inner, names.iter().map(String::as_str));
        }
        Ok(())
    }
    .await;
    if let Err(e) = &result {
        tracing::warn!(error = %e, "resubscribe after reconnect failed; the sweep retries");
    }
    result.is_ok()
}

async fn on_message(inner: &Arc<Inner>, msg: Message) {
    let Some(payload) = msg.value.as_string() else { return };
    let channel = &*msg.channel;
    if channel == inner.own_ctl {
        on_node_message(inner, &payload);
    } else if channel == inner.private {
        on_private(inner, &payload);
    } else if let (Some(key), Some(inc)) = (inner.keys.parse_live(channel), decode(&payload)) {
        deliver(inner, &key, inc).await;
    }
}

fn on_node_message(inner: &Inner, payload: &str) {
    let mut p = payload.split('\n');
    match p.next() {
        Some("C") => inner.canary_at.store(inner.now_ms().max(1), Ordering::Release),
        Some("A") => {
            let (Some(req), Some(n)) = (p.next().and_then(|r| r.parse().ok()), p.next().and_then(|n| n.parse().ok()))
            else {
                return;
            };
            if let Some(tx) = lock(&inner.private_waiters).get(&req) {
                let _ = tx.send(n);
            }
        }
        _ => {}
    }
}

fn on_private(inner: &Arc<Inner>, payload: &str) {
    let mut p = payload.splitn(6, '\n');
    let (Some("Q"), Some(req), Some(sender), Some(kind), Some(target), Some(frame)) =
        (p.next(), p.next(), p.next(), p.next(), p.next(), p.next())
    else {
        return;
    };
    let target = match kind {
        "c" => Target::Client(target.to_owned()),
        _ => Target::User(target.to_owned()),
    };
    let n = inner.inbound.on_private(&target, &Frame::from(frame.to_owned()));
    let answer = format!("A\n{req}\n{n}");
    let (inner, to) = (inner.clone(), inner.keys.ctl(sender));
    tokio::spawn(async move {
        let r: Result<i64, _> = inner.client.spublish(to, answer).await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot answer a private message");
        }
    });
}

/// What to do after looking at a message under the lock.
enum Next {
    Done,
    Gap { from: u64, to: u64, epoch: String },
    Gone(GoneReason),
}

/// Delivers one live message of a tracked channel in order, filling gaps first.
async fn deliver(inner: &Arc<Inner>, key: &ChannelKey, inc: Incoming) {
    let next = {
        let mut tracks = lock(&inner.tracks);
        let Some(t) = tracks.get_mut(key) else { return };
        let Some((epoch, last)) = t.state.as_mut() else {
            let size = inc.size();
            if t.pending_bytes + size <= PENDING_BYTES {
                t.pending_bytes += size;
                t.pending.push(inc);
            }
            return;
        };
        match &inc {
            Incoming::System(f) => {
                inner.inbound.on_system(key, f);
                Next::Done
            }
            Incoming::Deleted => Next::Gone(GoneReason::ChannelDeleted),
            Incoming::Event { epoch: e, .. } if e != epoch => Next::Gone(GoneReason::HistoryLost),
            Incoming::Event { offset, .. } if *offset <= *last => Next::Done,
            Incoming::Event { offset, origin, frame, .. } if *offset == *last + 1 => {
                *last = *offset;
                let ev = LiveEvent { key: key.clone(), offset: *offset, origin: origin.clone(), frame: frame.clone() };
                inner.inbound.on_event(&ev);
                Next::Done
            }
            Incoming::Event { offset, .. } => Next::Gap { from: *last + 1, to: *offset - 1, epoch: epoch.clone() },
        }
    };
    match next {
        Next::Done => {}
        Next::Gone(reason) => gone(inner, key, reason),
        Next::Gap { from, to, epoch } => {
            tracing::info!(channel = %key, from, to, "gap in live events; filling it from the stream");
            let span = crate::telemetry::trace::reading("repair", key);
            let repaired = repair(inner, key, from, to, &epoch).instrument(span.clone()).await;
            crate::telemetry::trace::read_count(&span, to + 1 - from);
            if repaired {
                // Now one past the last delivered offset (or a duplicate): deliver it the same way.
                Box::pin(deliver(inner, key, inc)).await;
            }
        }
    }
}

/// Reads `from..=to` from the stream and delivers it; false when it could not (the next event
/// or sweep retries; lost history ends the subscriptions).
async fn repair(inner: &Arc<Inner>, key: &ChannelKey, from: u64, to: u64, epoch: &str) -> bool {
    let mut cursor = from;
    while cursor <= to {
        let span = Span { from: cursor, to: Some(to), limit: REPAIR_PAGE, max_bytes: REPAIR_BYTES, ..Span::POSITION };
        let read = match inner.read(key, span).await {
            Ok(r) => r,
            Err(crate::backplane::BackplaneError::NotFound) => {
                gone(inner, key, GoneReason::HistoryLost);
                return false;
            }
            Err(e) => {
                tracing::warn!(channel = %key, error = %e, "cannot fill a gap now; will retry");
                return false;
            }
        };
        if read.pos.epoch != epoch || read.events.first().is_none_or(|(o, _, _)| *o != cursor) {
            tracing::warn!(channel = %key, from = cursor, "events no longer in the stream: history lost");
            gone(inner, key, GoneReason::HistoryLost);
            return false;
        }
        let mut tracks = lock(&inner.tracks);
        let Some((_, last)) = tracks.get_mut(key).and_then(|t| t.state.as_mut()) else { return false };
        for (offset, frame, origin) in read.events {
            if offset == *last + 1 {
                *last = offset;
                inner.inbound.on_event(&LiveEvent { key: key.clone(), offset, origin, frame });
                metrics().gap_repaired.inc();
            }
            cursor = offset + 1;
        }
    }
    true
}

/// Local subscriptions to `key` end; the node stops listening to it.
fn gone(inner: &Arc<Inner>, key: &ChannelKey, reason: GoneReason) {
    if lock(&inner.tracks).remove(key).is_none() {
        return;
    }
    tracing::info!(channel = %key, reason = reason.as_str(), "subscriptions ended by the backplane");
    metrics().backplane_gone.with_label_values(&[reason.as_str()]).inc();
    inner.inbound.on_channel_gone(key, reason);
    let (inner, key) = (inner.clone(), key.clone());
    tokio::spawn(async move {
        let _g = inner.interest.lock().await;
        if !lock(&inner.tracks).contains_key(&key) {
            let _ = inner.sub.sunsubscribe(inner.keys.live(&key)).await;
            let _: Result<(), _> = inner.client.hdel(inner.keys.subs(&key), &inner.node).await;
        }
    });
}

async fn init(inner: &Arc<Inner>, key: ChannelKey, epoch: String, top: u64) {
    let pending = {
        let mut tracks = lock(&inner.tracks);
        let Some(t) = tracks.get_mut(&key) else { return };
        if t.state.is_some() {
            return;
        }
        t.state = Some((epoch.clone(), top));
        t.pending_bytes = 0;
        std::mem::take(&mut t.pending)
    };
    inner.saw(&key, &epoch, top);
    for inc in pending {
        deliver(inner, &key, inc).await;
    }
}

/// Compares every tracked channel with its stream and repairs what the live path missed.
async fn sweep_all(inner: &Arc<Inner>) {
    let tracked: Vec<(ChannelKey, String, u64)> = lock(&inner.tracks)
        .iter()
        .filter_map(|(k, t)| t.state.as_ref().map(|(e, l)| (k.clone(), e.clone(), *l)))
        .collect();
    for (key, epoch, last) in tracked {
        // Also tells Redis the channel is in use (a channel created on use expires when idle).
        let pos = match inner.read(&key, Span { touch: true, ..Span::POSITION }).await {
            Ok(r) => r.pos,
            Err(crate::backplane::BackplaneError::NotFound) => {
                gone(inner, &key, GoneReason::HistoryLost);
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "sweep cannot read now");
                return;
            }
        };
        if pos.epoch != epoch {
            gone(inner, &key, GoneReason::HistoryLost);
        } else if pos.top < last {
            // Redis lost writes this node saw (failover, restart): never reuse those offsets.
            let args = vec![epoch.clone(), last.to_string(), new_epoch()];
            let r = inner.eval(&inner.scripts.guard, vec![inner.keys.meta(&key)], args).await;
            tracing::warn!(channel = %key, seen = last, top = pos.top, guarded = ?r.map(|v| num(&v)), "offsets went back: new epoch");
            gone(inner, &key, GoneReason::HistoryLost);
        } else if pos.top > last {
            tracing::info!(channel = %key, from = last + 1, to = pos.top, "missed live events; filling from the stream");
            repair(inner, &key, last + 1, pos.top, &epoch).await;
        }
    }
}

/// One more local subscription to `key`; the first one subscribes the node in Redis.
pub(super) async fn subscribe(inner: &Arc<Inner>, key: &ChannelKey) -> BpResult<()> {
    inner.connected()?;
    let _g = inner.interest.lock().await;
    let first = {
        let mut tracks = lock(&inner.tracks);
        let t = tracks.entry(key.clone()).or_insert_with(Track::new);
        t.count += 1;
        t.count == 1
    };
    let result: BpResult<()> = async {
        if first {
            let live = inner.keys.live(key);
            inner.sub.ssubscribe(live.clone()).await.map_err(bp)?;
            super::slots::placed(inner, [live.as_str()]);
            let pos = inner.read(key, Span { touch: true, ..Span::POSITION }).await?.pos;
            let _ = inner.ctl.send(Ctl::Init { key: key.clone(), epoch: pos.epoch, top: pos.top });
        }
        let _: i64 = inner.client.hincrby(inner.keys.subs(key), &inner.node, 1).await.map_err(bp)?;
        Ok(())
    }
    .await;
    if result.is_err() && release(inner, key) {
        let _ = inner.sub.sunsubscribe(inner.keys.live(key)).await;
    }
    result
}

/// Drops one local subscription; true when it was the last.
fn release(inner: &Inner, key: &ChannelKey) -> bool {
    let mut tracks = lock(&inner.tracks);
    let Some(t) = tracks.get_mut(key) else { return false };
    t.count = t.count.saturating_sub(1);
    if t.count == 0 {
        tracks.remove(key);
        return true;
    }
    false
}

/// One local subscription to `key` ended; the last one unsubscribes the node in Redis.
pub(super) async fn unsubscribe(inner: &Arc<Inner>, key: &ChannelKey) -> BpResult<()> {
    let _g = inner.interest.lock().await;
    let tracked = lock(&inner.tracks).contains_key(key);
    if !tracked {
        return Ok(());
    }
    let last = release(inner, key);
    let _: Result<i64, _> = inner.client.hincrby(inner.keys.subs(key), &inner.node, -1).await;
    if last {
        inner.sub.sunsubscribe(inner.keys.live(key)).await.map_err(bp)?;
    }
    Ok(())
}

/// Sends a private frame through every node and adds up their answers.
pub(super) async fn send_private(inner: &Arc<Inner>, target: &Target, frame: &Frame) -> BpResult<usize> {
    inner.connected()?;
    let req = inner.next_request.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel();
    lock(&inner.private_waiters).insert(req, tx);
    let (kind, target) = match target {
        Target::Client(c) => ("c", c),
        Target::User(u) => ("u", u),
    };
    let msg = format!("Q\n{req}\n{}\n{kind}\n{target}\n{}", inner.node, frame.as_str());
    let sent: Result<i64, _> = inner.client.spublish(inner.private.clone(), msg).await;
    let result = match sent {
        Ok(receivers) => {
            let mut total = 0;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(inner.cfg.command_timeout_ms);
            for _ in 0..receivers {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(n)) => total += n,
                    _ => break,
                }
            }
            Ok(total)
        }
        Err(e) => Err(bp(e)),
    };
    lock(&inner.private_waiters).remove(&req);
    result
}

/// Sentinel only: which server the sentinels name master, asked at every canary tick.
///
/// fred asks the sentinels only when a connection breaks. A deposed master that is still up
/// (`SENTINEL FAILOVER`, a partition) keeps taking writes until the sentinels reconfigure it,
/// seconds later, and drops them then; acks given meanwhile would be for lost events. So the
/// node asks the sentinels itself and reconnects as soon as most of them name another server
/// (most, so that one stale sentinel cannot make it reconnect over and over).
struct MasterWatch {
    service: String,
    timeout: Duration,
    /// Per configured sentinel: the settings to reach it, and the open connection.
    sentinels: Vec<(Config, Option<Client>)>,
}

impl MasterWatch {
    fn new(inner: &Inner) -> Option<Self> {
        let mut config = inner.client.client_config();
        let ServerConfig::Sentinel { hosts, service_name, username, password } = config.server.clone() else {
            return None;
        };
        config.username = username;
        config.password = password;
        config.database = None;
        // A sentinel that does not answer is skipped for this tick, not waited for.
        config.fail_fast = true;
        let sentinels = hosts
            .into_iter()
            .map(|server| (Config { server: ServerConfig::Centralized { server }, ..config.clone() }, None))
            .collect();
        let timeout = Duration::from_millis(inner.cfg.command_timeout_ms);
        Some(Self { service: service_name, timeout, sentinels })
    }

    /// `(host, port)` of the master most sentinels name now, if they do.
    async fn master(&mut self) -> Option<(String, u16)> {
        let (service, t) = (self.service.as_str(), self.timeout);
        let asks = self.sentinels.iter_mut().map(|(config, conn)| async move {
            let answer = tokio::time::timeout(t, ask(config, conn, service, t)).await;
            match answer {
                Ok(Ok(Some(addr))) => Some(addr),
                _ => {
                    // Connect afresh next time.
                    if let Some(c) = conn.take() {
                        tokio::spawn(async move { c.quit().await });
                    }
                    None
                }
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        let majority = self.sentinels.len() / 2 + 1;
        let named = answers.iter().flatten();
        named.clone().find(|addr| named.clone().filter(|a| a == addr).count() >= majority).cloned()
    }
}

/// `SENTINEL get-master-addr-by-name` on one sentinel, connecting first when needed.
async fn ask(
    config: &Config,
    conn: &mut Option<Client>,
    service: &str,
    t: Duration,
) -> Result<Option<(String, u16)>, fred::error::Error> {
    let c = match conn {
        Some(c) => c,
        None => {
            let c = Builder::from_config(config.clone())
                .with_connection_config(|c| {
                    c.connection_timeout = t;
                    c.internal_command_timeout = t;
                    c.max_command_attempts = 1;
                })
                .with_performance_config(|p| p.default_command_timeout = t)
                .build()?;
            let c = conn.insert(c);
            c.init().await?;
            c
        }
    };
    let cmd = fred::types::CustomCommand::new_static("SENTINEL", fred::types::ClusterHash::FirstKey, false);
    let v: Value = c.custom(cmd, vec!["get-master-addr-by-name", service]).await?;
    let v = v.into_array();
    Ok(match (v.first().and_then(Value::as_string), v.get(1).and_then(num)) {
        (Some(host), Some(port)) => u16::try_from(port).ok().map(|p| (host, p)),
        _ => None,
    })
}

/// Reconnects `c` (which then asks the sentinels for the master) when it is connected to a server
/// other than `master`.
async fn follow<C: ClientLike>(c: &C, master: &(String, u16), timeout: Duration) {
    if !c.is_connected() {
        return; // fred reconnects by itself, through the sentinels
    }
    let Some(at) = c.active_connections().into_iter().next() else { return };
    if *at.host == *master.0 && at.port == master.1 {
        return;
    }
    tracing::warn!(from = %format!("{}:{}", at.host, at.port), to = %format!("{}:{}", master.0, master.1),
        "the sentinels name another master; reconnecting");
    if let Ok(Err(e)) = tokio::time::timeout(timeout, c.force_reconnection()).await {
        tracing::warn!(error = %e, "reconnect to the new master failed; retrying");
    }
}

/// Heartbeat, dead-node reaping, the readiness canary and, on Sentinel, following the master.
pub(super) async fn maintain(inner: Arc<Inner>) {
    let mut watch = MasterWatch::new(&inner);
    let mut dog = super::watchdog::Watchdog::new(&inner);
    let mut canary = tokio::time::interval(Duration::from_millis(inner.cfg.canary_interval_ms));
    let beat_ms = (inner.cfg.node_ttl_s * 1000 / 4).clamp(250, 2000);
    let mut beat = tokio::time::interval(Duration::from_millis(beat_ms));
    let mut count = tokio::time::interval(Duration::from_millis(100));
    let mut n: u64 = 0;
    let mut written = u64::MAX;
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => return,
            _ = count.tick() => {
                // Other nodes' `status` shows this node's connections at most ~100 ms late.
                let now = inner.inbound.connections();
                if now != written && inner.client.is_connected() {
                    let r: Result<(), _> = inner.client.hset(inner.keys.node_conns(), (inner.node.as_str(), now)).await;
                    if r.is_ok() {
                        written = now;
                    }
                }
            }
            _ = canary.tick() => {
                n += 1;
                let r: Result<i64, _> = inner.client.spublish(inner.own_ctl.clone(), format!("C\n{n}")).await;
                let timed_out = r.as_ref().is_err_and(|e| *e.kind() == ErrorKind::Timeout);
                match r {
                    Ok(_) => inner.answered_at.store(inner.now_ms().max(1), Ordering::Release),
                    Err(e) => tracing::debug!(error = %e, "canary publish failed"),
                }
                dog.check(&inner, timed_out);
                if let Some(w) = watch.as_mut() {
                    if let Some(master) = w.master().await {
                        follow(&inner.client, &master, w.timeout).await;
                        follow(&inner.sub, &master, w.timeout).await;
                    }
                }
            }
            _ = beat.tick() => {
                let keys = vec![inner.keys.nodes(), inner.keys.node_conns()];
                let args = vec![inner.node.clone(), inner.inbound.connections().to_string()];
                if inner.eval(&inner.scripts.heartbeat, keys.clone(), args).await.is_err() {
                    continue;
                }
                let ttl = (inner.cfg.node_ttl_s * 1000).to_string();
                if let Ok(dead) = inner.eval(&inner.scripts.reap, keys, vec![ttl, String::new()]).await {
                    for node in dead.into_array().iter().filter_map(Value::as_string) {
                        inner.reap_presence(&node).await;
                    }
                }
            }
        }
    }
}

//! The embedded in-memory backplane: the single-node default and the multi-node test bus.
//!
//! One [`MemoryBus`] holds the cluster state; each node attaches with its [`Inbound`] handler
//! and gets a [`MemoryBackplane`]. A publish holds its channel's lock while it assigns the
//! offset, appends and hands the frame to interested nodes, so offsets are contiguous and every
//! node sees a channel's events in offset order. Handlers never block, so the lock is short.
//!
//! What the bus holds is bounded: channels per room and per node, and bytes of history and
//! idempotency results per node ([`ChannelLimits`]). A background sweep trims expired events
//! and removes channels created on use that nobody subscribes to and nothing was published to
//! for their idle time (declared channels stay until deleted).

mod chan;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::*;
use crate::protocol::timestamp_now;
use crate::sync::{lock, read, write};
use chan::Chan;

/// The channels and their per-room index.
#[derive(Default)]
struct Channels {
    map: HashMap<ChannelKey, Arc<Mutex<Chan>>>,
    rooms: HashMap<String, BTreeSet<String>>,
}

impl Channels {
    fn insert(&mut self, key: &ChannelKey, chan: Chan) -> Arc<Mutex<Chan>> {
        let chan = Arc::new(Mutex::new(chan));
        self.map.insert(key.clone(), chan.clone());
        self.rooms.entry(key.room().to_owned()).or_default().insert(key.channel().to_owned());
        chan
    }

    fn remove(&mut self, key: &ChannelKey) -> Option<Arc<Mutex<Chan>>> {
        let chan = self.map.remove(key)?;
        if let Some(names) = self.rooms.get_mut(key.room()) {
            names.remove(key.channel());
            if names.is_empty() {
                self.rooms.remove(key.room());
            }
        }
        Some(chan)
    }

    /// LimitExceeded when one more channel in `key`'s room would pass a cap (the server's own
    /// `_` rooms are not counted against them).
    fn check_caps(&self, key: &ChannelKey, limits: &ChannelLimits) -> BpResult<()> {
        if key.is_reserved() {
            return Ok(());
        }
        let reserved = self.rooms.iter().filter(|(r, _)| r.starts_with('_')).map(|(_, n)| n.len()).sum::<usize>();
        if self.map.len() - reserved >= limits.per_node {
            return Err(BackplaneError::LimitExceeded(format!(
                "this node holds its maximum of {} channels",
                limits.per_node
            )));
        }
        if self.rooms.get(key.room()).map_or(0, BTreeSet::len) >= limits.per_room {
            let msg = format!("room {} holds its maximum of {} channels", key.room(), limits.per_room);
            return Err(BackplaneError::LimitExceeded(msg));
        }
        Ok(())
    }
}

/// An attached node and its handler.
type NodeEntry = (Arc<str>, Arc<dyn Inbound>);

/// The shared in-memory cluster state.
pub struct MemoryBus {
    channels: RwLock<Channels>,
    nodes: RwLock<Vec<NodeEntry>>,
    limits: ChannelLimits,
    /// Bytes of stored frames and idempotency results, every channel together.
    bytes: AtomicUsize,
    sweeping: AtomicBool,
}

impl MemoryBus {
    /// A new, empty bus enforcing `limits`.
    pub fn new(limits: ChannelLimits) -> Arc<Self> {
        Arc::new(Self {
            channels: RwLock::default(),
            nodes: RwLock::default(),
            limits,
            bytes: AtomicUsize::new(0),
            sweeping: AtomicBool::new(false),
        })
    }

    /// Attaches a node: its `inbound` receives what the bus routes to it. The first attach
    /// starts the sweep, which ends when the bus is dropped.
    pub fn attach(self: &Arc<Self>, node: &str, inbound: Arc<dyn Inbound>) -> MemoryBackplane {
        let node: Arc<str> = node.into();
        write(&self.nodes).push((node.clone(), inbound.clone()));
        if !self.sweeping.swap(true, Ordering::AcqRel) {
            tokio::spawn(sweep_loop(Arc::downgrade(self), self.sweep_period()));
        }
        MemoryBackplane { bus: self.clone(), node, inbound }
    }

    /// Often enough that expiry is prompt for the shortest lifetimes, at most every 10 s.
    fn sweep_period(&self) -> Duration {
        Duration::from_millis((self.limits.dedupe_window_s * 250).clamp(250, 10_000))
    }

    /// Bytes of history and idempotency results held now.
    pub fn stored_bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// Channels held now.
    pub fn channel_count(&self) -> usize {
        read(&self.channels).map.len()
    }

    fn get(&self, key: &ChannelKey) -> Option<Arc<Mutex<Chan>>> {
        read(&self.channels).map.get(key).cloned()
    }

    fn get_or_create(&self, key: &ChannelKey, create: Option<&ChannelOptions>) -> BpResult<Arc<Mutex<Chan>>> {
        if let Some(c) = self.get(key) {
            return Ok(c);
        }
        let options = create.ok_or(BackplaneError::NotFound)?;
        let mut chans = write(&self.channels);
        if let Some(c) = chans.map.get(key) {
            return Ok(c.clone());
        }
        chans.check_caps(key, &self.limits)?;
        Ok(chans.insert(key, Chan::new(options.clone(), false)))
    }

    /// Runs `f` on the live channel (created when `create` allows), retrying once if it was
    /// removed between the lookup and the lock. NotFound when it does not exist.
    fn with_live<R>(
        &self,
        key: &ChannelKey,
        create: Option<&ChannelOptions>,
        f: impl FnOnce(&mut Chan) -> BpResult<R>,
    ) -> BpResult<R> {
        for _ in 0..2 {
            let chan = self.get_or_create(key, create)?;
            let mut c = lock(&chan);
            if c.deleted {
                continue;
            }
            let before = c.bytes;
            let r = f(&mut c);
            self.account(before, c.bytes);
            return r;
        }
        Err(BackplaneError::NotFound)
    }

    fn account(&self, before: usize, after: usize) {
        if after >= before {
            self.bytes.fetch_add(after - before, Ordering::AcqRel);
        } else {
            self.bytes.fetch_sub(before - after, Ordering::AcqRel);
        }
    }

    fn subscribers(&self, key: &ChannelKey) -> u64 {
        read(&self.nodes).iter().map(|(_, n)| n.local_subscribers(key)).sum()
    }

    /// Trims expired events everywhere and removes idle channels created on use.
    fn sweep(&self) {
        let now = Instant::now();
        let all: Vec<(ChannelKey, Arc<Mutex<Chan>>)> =
            read(&self.channels).map.iter().map(|(k, c)| (k.clone(), c.clone())).collect();
        for (key, chan) in all {
            let idle = {
                let mut c = lock(&chan);
                let before = c.bytes;
                c.trim(now);
                self.account(before, c.bytes);
                c.is_idle(now, &self.limits)
            };
            if idle {
                let mut chans = write(&self.channels);
                let mut c = lock(&chan);
                if c.is_idle(now, &self.limits) && !c.deleted {
                    c.deleted = true;
                    self.account(c.bytes, 0);
                    chans.remove(&key);
                }
            }
        }
    }
}

async fn sweep_loop(bus: Weak<MemoryBus>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(bus) = bus.upgrade() else { return };
        bus.sweep();
    }
}

/// One node's view of a [`MemoryBus`].
pub struct MemoryBackplane {
    bus: Arc<MemoryBus>,
    node: Arc<str>,
    inbound: Arc<dyn Inbound>,
}

#[async_trait]
impl Backplane for MemoryBackplane {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn healthy(&self) -> bool {
        true
    }

    async fn ensure_channel(&self, key: &ChannelKey, create: Option<&ChannelOptions>) -> BpResult<()> {
        self.bus.with_live(key, create, |c| {
            c.touch();
            Ok(())
        })
    }

    async fn create_channel(&self, key: &ChannelKey, options: ChannelOptions) -> BpResult<ChannelInfo> {
        let mut chans = write(&self.bus.channels);
        if chans.map.contains_key(key) {
            return Err(BackplaneError::Exists);
        }
        chans.check_caps(key, &self.bus.limits)?;
        let chan = Chan::new(options, true);
        let info = chan.info(key, 0);
        chans.insert(key, chan);
        Ok(info)
    }

    async fn delete_channel(&self, key: &ChannelKey) -> BpResult<()> {
        let chan = write(&self.bus.channels).remove(key).ok_or(BackplaneError::NotFound)?;
        let mut c = lock(&chan);
        c.deleted = true;
        for i in &c.interest {
            i.inbound.on_channel_gone(key, GoneReason::ChannelDeleted);
        }
        c.interest.clear();
        self.bus.account(c.bytes, 0);
        c.clear();
        Ok(())
    }

    async fn list_channels(&self, room: &str, page: Page) -> BpResult<(Vec<ChannelInfo>, bool)> {
        let mut chans: Vec<(ChannelKey, Arc<Mutex<Chan>>)> = {
            let all = read(&self.bus.channels);
            let Some(names) = all.rooms.get(room) else { return Ok((Vec::new(), false)) };
            let start = page.after.as_ref().map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
            names
                .range::<String, _>((start, std::ops::Bound::Unbounded))
                .take(page.limit + 1)
                .filter_map(|name| {
                    let key = ChannelKey::new(room, name);
                    all.map.get(&key).map(|c| (key, c.clone()))
                })
                .collect()
        };
        let more = chans.len() > page.limit;
        chans.truncate(page.limit);
        let out = chans.iter().map(|(k, c)| lock(c).info(k, self.bus.subscribers(k))).collect();
        Ok((out, more))
    }

    async fn channel_info(&self, key: &ChannelKey) -> BpResult<ChannelInfo> {
        let chan = self.bus.get(key).ok_or(BackplaneError::NotFound)?;
        let subscribers = self.bus.subscribers(key);
        let info = lock(&chan).info(key, subscribers);
        Ok(info)
    }

    async fn publish(&self, req: PublishRequest) -> BpResult<Published> {
        let max = self.bus.limits.memory_bytes;
        let held = &self.bus.bytes;
        self.bus.with_live(&req.key, req.create.as_ref(), |c| {
            if let Some(first) = req.idempotency_key.as_deref().and_then(|k| c.remembered(k)) {
                return Ok(Published { duplicate: true, ..first });
            }
            let frame = req.template.render(c.top + 1);
            let grows = c.cost(&frame, req.idempotency_key.as_deref(), &req.message_id);
            if held.load(Ordering::Acquire) + grows > max {
                return Err(BackplaneError::LimitExceeded(
                    "this node's history memory is full (channels.memory_max_bytes); retry later".into(),
                ));
            }
            c.top += 1;
            let offset = c.top;
            c.append(offset, frame.clone());
            let live = LiveEvent { key: req.key.clone(), offset, origin: req.origin.clone(), frame };
            for i in &c.interest {
                i.inbound.on_event(&live);
            }
            let result = Published { id: req.message_id.clone(), offset, duplicate: false };
            if let Some(k) = &req.idempotency_key {
                c.remember(k.clone(), result.clone(), Duration::from_secs(req.dedupe_window_s));
            }
            Ok(result)
        })
    }

    async fn position(&self, key: &ChannelKey) -> BpResult<StreamPosition> {
        self.bus.with_live(key, None, |c| Ok(c.position()))
    }

    async fn read_range(
        &self,
        key: &ChannelKey,
        from: u64,
        to: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BpResult<Vec<StoredEvent>> {
        self.bus.with_live(key, None, |c| Ok(c.range(from, to, limit, max_bytes).0))
    }

    async fn history(&self, key: &ChannelKey, q: HistoryQuery) -> BpResult<HistoryPage> {
        self.bus.with_live(key, None, |c| Ok(c.history(q)))
    }

    async fn subscribe(&self, key: &ChannelKey) -> BpResult<()> {
        let (node, inbound) = (&self.node, &self.inbound);
        self.bus.with_live(key, None, |c| {
            c.add_interest(node, inbound);
            Ok(())
        })
    }

    async fn unsubscribe(&self, key: &ChannelKey) -> BpResult<()> {
        let Some(chan) = self.bus.get(key) else { return Ok(()) };
        lock(&chan).remove_interest(&self.node);
        Ok(())
    }

    async fn send_private(&self, target: &Target, frame: &Frame) -> BpResult<usize> {
        Ok(read(&self.bus.nodes).iter().map(|(_, n)| n.on_private(target, frame)).sum())
    }

    async fn presence_join(&self, key: &ChannelKey, entry: PresenceEntry, announce: Frame) -> BpResult<()> {
        self.bus.with_live(key, None, |c| {
            c.touch();
            c.presence.insert(entry.client_id.clone(), entry);
            if c.options.presence_events {
                c.interest.iter().for_each(|i| i.inbound.on_system(key, &announce));
            }
            Ok(())
        })
    }

    async fn presence_leave(&self, key: &ChannelKey, client_id: &str, announce: Frame) -> BpResult<()> {
        let Some(chan) = self.bus.get(key) else { return Ok(()) };
        let mut c = lock(&chan);
        c.touch();
        if c.presence.remove(client_id).is_some() && c.options.presence_events {
            c.interest.iter().for_each(|i| i.inbound.on_system(key, &announce));
        }
        Ok(())
    }

    async fn presence(&self, key: &ChannelKey, page: Page) -> BpResult<PresencePage> {
        let chan = self.bus.get(key).ok_or(BackplaneError::NotFound)?;
        let c = lock(&chan);
        let start = page.after.as_ref().map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let mut entries: Vec<PresenceEntry> = c
            .presence
            .range::<String, _>((start, std::ops::Bound::Unbounded))
            .take(page.limit + 1)
            .map(|(_, e)| e.clone())
            .collect();
        let has_more = entries.len() > page.limit;
        entries.truncate(page.limit);
        Ok(PresencePage { entries, count: c.presence.len() as u64, has_more })
    }

    async fn nodes(&self) -> BpResult<Vec<NodeInfo>> {
        let now = timestamp_now();
        Ok(read(&self.bus.nodes)
            .iter()
            .map(|(id, n)| NodeInfo { node: id.to_string(), connections: n.connections(), last_seen: now.clone() })
            .collect())
    }

    async fn leave(&self) {
        write(&self.bus.nodes).retain(|(id, _)| *id != self.node);
    }
}

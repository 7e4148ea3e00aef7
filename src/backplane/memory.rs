//! The embedded in-memory backplane: the single-node default and the multi-node test bus.
//!
//! One [`MemoryBus`] holds the cluster state; each node attaches with its [`Inbound`] handler
//! and gets a [`MemoryBackplane`]. A publish holds its channel's lock while it assigns the
//! offset, appends and hands the frame to interested nodes, so offsets are contiguous and every
//! node sees a channel's events in offset order. Handlers never block, so the lock is short.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::*;
use crate::protocol::timestamp_now;

/// Publishes between two sweeps of expired idempotency keys.
const IDEM_SWEEP_EVERY: u32 = 1024;

struct Stored {
    offset: u64,
    frame: Frame,
    at: Instant,
}

struct Interest {
    node: Arc<str>,
    count: usize,
    inbound: Arc<dyn Inbound>,
}

struct Chan {
    options: ChannelOptions,
    epoch: String,
    created_at: String,
    top: u64,
    events: VecDeque<Stored>,
    idem: HashMap<String, (Published, Instant)>,
    idem_inserts: u32,
    interest: Vec<Interest>,
    presence: BTreeMap<String, PresenceEntry>,
    deleted: bool,
}

impl Chan {
    fn new(options: ChannelOptions) -> Self {
        Self {
            options,
            epoch: new_epoch(),
            created_at: timestamp_now(),
            top: 0,
            events: VecDeque::new(),
            idem: HashMap::new(),
            idem_inserts: 0,
            interest: Vec::new(),
            presence: BTreeMap::new(),
            deleted: false,
        }
    }

    /// Drops events past the size and age limits.
    fn trim(&mut self) {
        let size = self.options.history_size as usize;
        while self.events.len() > size {
            self.events.pop_front();
        }
        let ttl = Duration::from_secs(self.options.history_ttl_s);
        while self.events.front().is_some_and(|e| e.at.elapsed() > ttl) {
            self.events.pop_front();
        }
    }

    fn position(&mut self) -> StreamPosition {
        self.trim();
        let first = self.events.front().map_or(self.top + 1, |e| e.offset);
        StreamPosition { epoch: self.epoch.clone(), top: self.top, first }
    }

    /// Retained events with offsets in `from..=to`, ascending, at most `limit`.
    fn range(&mut self, from: u64, to: u64, limit: usize) -> Vec<StoredEvent> {
        let first = self.position().first;
        let start = (from.max(first) - first) as usize;
        self.events
            .iter()
            .skip(start)
            .take_while(|e| e.offset <= to)
            .take(limit)
            .map(|e| StoredEvent { offset: e.offset, frame: e.frame.clone() })
            .collect()
    }

    fn info(&self, key: &ChannelKey, subscribers: u64) -> ChannelInfo {
        ChannelInfo {
            room: key.room().to_owned(),
            channel: key.channel().to_owned(),
            description: self.options.description.clone(),
            history_size: self.options.history_size,
            history_ttl_s: self.options.history_ttl_s,
            presence_events: self.options.presence_events,
            offset: (self.top > 0).then_some(self.top),
            epoch: self.epoch.clone(),
            subscribers,
            created_at: self.created_at.clone(),
        }
    }

    fn remember(&mut self, key: String, result: Published, window: Duration) {
        self.idem_inserts += 1;
        if self.idem_inserts >= IDEM_SWEEP_EVERY {
            self.idem_inserts = 0;
            let now = Instant::now();
            self.idem.retain(|_, (_, until)| *until > now);
        }
        self.idem.insert(key, (result, Instant::now() + window));
    }
}

fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// An attached node and its handler.
type NodeEntry = (Arc<str>, Arc<dyn Inbound>);

/// The shared in-memory cluster state.
#[derive(Default)]
pub struct MemoryBus {
    channels: RwLock<HashMap<ChannelKey, Arc<Mutex<Chan>>>>,
    nodes: RwLock<Vec<NodeEntry>>,
}

impl MemoryBus {
    /// A new, empty bus.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Attaches a node: its `inbound` receives what the bus routes to it.
    pub fn attach(self: &Arc<Self>, node: &str, inbound: Arc<dyn Inbound>) -> MemoryBackplane {
        let node: Arc<str> = node.into();
        write(&self.nodes).push((node.clone(), inbound.clone()));
        MemoryBackplane { bus: self.clone(), node, inbound }
    }

    fn get(&self, key: &ChannelKey) -> Option<Arc<Mutex<Chan>>> {
        read(&self.channels).get(key).cloned()
    }

    fn get_or_create(&self, key: &ChannelKey, create: Option<&ChannelOptions>) -> BpResult<Arc<Mutex<Chan>>> {
        if let Some(c) = self.get(key) {
            return Ok(c);
        }
        let options = create.ok_or(BackplaneError::NotFound)?;
        let mut map = write(&self.channels);
        Ok(map.entry(key.clone()).or_insert_with(|| Arc::new(Mutex::new(Chan::new(options.clone())))).clone())
    }

    fn subscribers(&self, key: &ChannelKey) -> u64 {
        read(&self.nodes).iter().map(|(_, n)| n.local_subscribers(key)).sum()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn lock(c: &Mutex<Chan>) -> std::sync::MutexGuard<'_, Chan> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// One node's view of a [`MemoryBus`].
pub struct MemoryBackplane {
    bus: Arc<MemoryBus>,
    node: Arc<str>,
    inbound: Arc<dyn Inbound>,
}

impl MemoryBackplane {
    /// Locks a live channel, or NotFound (also when it was deleted meanwhile).
    fn live(&self, key: &ChannelKey, create: Option<&ChannelOptions>) -> BpResult<Arc<Mutex<Chan>>> {
        for _ in 0..2 {
            let chan = self.bus.get_or_create(key, create)?;
            if !lock(&chan).deleted {
                return Ok(chan);
            }
        }
        Err(BackplaneError::NotFound)
    }
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
        self.live(key, create).map(|_| ())
    }

    async fn create_channel(&self, key: &ChannelKey, options: ChannelOptions) -> BpResult<ChannelInfo> {
        let mut map = write(&self.bus.channels);
        if map.contains_key(key) {
            return Err(BackplaneError::Exists);
        }
        let chan = Chan::new(options);
        let info = chan.info(key, 0);
        map.insert(key.clone(), Arc::new(Mutex::new(chan)));
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
        c.events.clear();
        Ok(())
    }

    async fn list_channels(&self, room: &str) -> BpResult<Vec<ChannelInfo>> {
        let chans: Vec<_> = read(&self.bus.channels)
            .iter()
            .filter(|(k, _)| k.room() == room)
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        let mut out: Vec<_> = chans.iter().map(|(k, c)| lock(c).info(k, self.bus.subscribers(k))).collect();
        out.sort_by(|a, b| a.channel.cmp(&b.channel));
        Ok(out)
    }

    async fn channel_info(&self, key: &ChannelKey) -> BpResult<ChannelInfo> {
        let chan = self.bus.get(key).ok_or(BackplaneError::NotFound)?;
        let subscribers = self.bus.subscribers(key);
        let info = lock(&chan).info(key, subscribers);
        Ok(info)
    }

    async fn publish(&self, req: PublishRequest) -> BpResult<Published> {
        let chan = self.live(&req.key, req.create.as_ref())?;
        let mut c = lock(&chan);
        if let Some(k) = &req.idempotency_key {
            if let Some((first, until)) = c.idem.get(k) {
                if *until > Instant::now() {
                    return Ok(Published { duplicate: true, ..first.clone() });
                }
            }
        }
        c.top += 1;
        let offset = c.top;
        let frame = req.template.render(offset);
        if c.options.history_size > 0 {
            c.events.push_back(Stored { offset, frame: frame.clone(), at: Instant::now() });
            c.trim();
        }
        let live = LiveEvent { key: req.key.clone(), offset, origin: req.origin, frame };
        for i in &c.interest {
            i.inbound.on_event(&live);
        }
        let result = Published { id: req.message_id, offset, duplicate: false };
        if let Some(k) = req.idempotency_key {
            c.remember(k, result.clone(), Duration::from_secs(req.dedupe_window_s));
        }
        Ok(result)
    }

    async fn position(&self, key: &ChannelKey) -> BpResult<StreamPosition> {
        let chan = self.live(key, None)?;
        let pos = lock(&chan).position();
        Ok(pos)
    }

    async fn read_range(&self, key: &ChannelKey, from: u64, to: u64, limit: usize) -> BpResult<Vec<StoredEvent>> {
        let chan = self.live(key, None)?;
        let events = lock(&chan).range(from, to, limit);
        Ok(events)
    }

    async fn history(&self, key: &ChannelKey, q: HistoryQuery) -> BpResult<(Vec<StoredEvent>, StreamPosition)> {
        let chan = self.live(key, None)?;
        let mut c = lock(&chan);
        let pos = c.position();
        let upper = q.before.map_or(pos.top, |b| b.saturating_sub(1));
        let events = match (q.since, q.before) {
            (Some(since), _) => c.range(since + 1, upper, q.limit),
            (None, _) => {
                let from = upper.saturating_sub(q.limit as u64 - 1).max(1);
                c.range(from, upper, q.limit)
            }
        };
        Ok((events, pos))
    }

    async fn subscribe(&self, key: &ChannelKey) -> BpResult<()> {
        let chan = self.live(key, None)?;
        let mut c = lock(&chan);
        match c.interest.iter_mut().find(|i| i.node == self.node) {
            Some(i) => i.count += 1,
            None => c.interest.push(Interest { node: self.node.clone(), count: 1, inbound: self.inbound.clone() }),
        }
        Ok(())
    }

    async fn unsubscribe(&self, key: &ChannelKey) -> BpResult<()> {
        let Some(chan) = self.bus.get(key) else { return Ok(()) };
        let mut c = lock(&chan);
        if let Some(pos) = c.interest.iter().position(|i| i.node == self.node) {
            c.interest[pos].count -= 1;
            if c.interest[pos].count == 0 {
                c.interest.swap_remove(pos);
            }
        }
        Ok(())
    }

    async fn send_private(&self, target: &Target, frame: &Frame) -> BpResult<usize> {
        Ok(read(&self.bus.nodes).iter().map(|(_, n)| n.on_private(target, frame)).sum())
    }

    async fn presence_join(&self, key: &ChannelKey, entry: PresenceEntry, announce: Frame) -> BpResult<()> {
        let chan = self.live(key, None)?;
        let mut c = lock(&chan);
        c.presence.insert(entry.client_id.clone(), entry);
        if c.options.presence_events {
            c.interest.iter().for_each(|i| i.inbound.on_system(key, &announce));
        }
        Ok(())
    }

    async fn presence_leave(&self, key: &ChannelKey, client_id: &str, announce: Frame) -> BpResult<()> {
        let Some(chan) = self.bus.get(key) else { return Ok(()) };
        let mut c = lock(&chan);
        if c.presence.remove(client_id).is_some() && c.options.presence_events {
            c.interest.iter().for_each(|i| i.inbound.on_system(key, &announce));
        }
        Ok(())
    }

    async fn presence(&self, key: &ChannelKey) -> BpResult<Vec<PresenceEntry>> {
        let chan = self.live(key, None)?;
        let entries = lock(&chan).presence.values().cloned().collect();
        Ok(entries)
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

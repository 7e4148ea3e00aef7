//! One channel of the in-memory backplane: its stream, idempotency results, interest and
//! presence, and the bytes they hold.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::*;
use crate::protocol::timestamp_now;

/// Publishes between two sweeps of expired idempotency keys on the publish path.
const IDEM_SWEEP_EVERY: u32 = 1024;
/// Bytes counted per stored event besides its frame (offset, time, queue slot).
const EVENT_OVERHEAD: usize = 32;
/// Bytes counted per idempotency result besides its key and message id.
const IDEM_OVERHEAD: usize = 64;

struct Stored {
    offset: u64,
    frame: Frame,
    at: Instant,
}

/// A node's interest in a channel.
pub(super) struct Interest {
    node: Arc<str>,
    count: usize,
    pub inbound: Arc<dyn Inbound>,
}

/// One channel.
pub(super) struct Chan {
    pub options: ChannelOptions,
    epoch: String,
    created_at: String,
    pub top: u64,
    events: VecDeque<Stored>,
    idem: HashMap<String, (Published, Instant)>,
    idem_inserts: u32,
    pub interest: Vec<Interest>,
    pub presence: BTreeMap<String, PresenceEntry>,
    pub deleted: bool,
    /// Declared with `create_channel`: never removed for being idle.
    declared: bool,
    /// Last publish, subscription or presence change.
    last_active: Instant,
    /// Bytes of stored frames and idempotency results.
    pub bytes: usize,
}

fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn idem_cost(key: &str, id: &str) -> usize {
    key.len() + id.len() + IDEM_OVERHEAD
}

impl Chan {
    pub fn new(options: ChannelOptions, declared: bool) -> Self {
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
            declared,
            last_active: Instant::now(),
            bytes: 0,
        }
    }

    /// Marks the channel as in use now.
    pub fn touch(&mut self) {
        self.last_active = Instant::now();
    }

    /// Whether nobody uses the channel and it outlived its idle time (declared ones never).
    pub fn is_idle(&self, now: Instant, limits: &ChannelLimits) -> bool {
        !self.declared
            && self.interest.is_empty()
            && self.presence.is_empty()
            && now.saturating_duration_since(self.last_active) >= Duration::from_secs(limits.idle_ttl_s(&self.options))
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.events.pop_front() {
            self.bytes -= e.frame.len() + EVENT_OVERHEAD;
        }
    }

    /// Drops events past the size and age limits, and expired idempotency results.
    pub fn trim(&mut self, now: Instant) {
        let size = self.options.history_size as usize;
        while self.events.len() > size {
            self.pop_front();
        }
        let ttl = Duration::from_secs(self.options.history_ttl_s);
        while self.events.front().is_some_and(|e| now.saturating_duration_since(e.at) > ttl) {
            self.pop_front();
        }
        let before = self.idem.len();
        let mut freed = 0;
        self.idem.retain(|k, (p, until)| {
            let keep = *until > now;
            if !keep {
                freed += idem_cost(k, &p.id);
            }
            keep
        });
        if self.idem.len() != before {
            self.bytes -= freed;
        }
    }

    /// Removes everything stored.
    pub fn clear(&mut self) {
        self.events.clear();
        self.idem.clear();
        self.bytes = 0;
    }

    pub fn position(&mut self) -> StreamPosition {
        let size = self.options.history_size as usize;
        while self.events.len() > size {
            self.pop_front();
        }
        let ttl = Duration::from_secs(self.options.history_ttl_s);
        while self.events.front().is_some_and(|e| e.at.elapsed() > ttl) {
            self.pop_front();
        }
        let first = self.events.front().map_or(self.top + 1, |e| e.offset);
        StreamPosition { epoch: self.epoch.clone(), top: self.top, first }
    }

    /// Retained events with offsets in `from..=to`, ascending, at most `limit` and about
    /// `max_bytes` (at least one); `true` when more in the range were left out.
    pub fn range(&mut self, from: u64, to: u64, limit: usize, max_bytes: usize) -> (Vec<StoredEvent>, bool) {
        let first = self.position().first;
        let start = (from.max(first) - first) as usize;
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in self.events.iter().skip(start).take_while(|e| e.offset <= to) {
            if out.len() >= limit || (!out.is_empty() && bytes + e.frame.len() > max_bytes) {
                return (out, true);
            }
            bytes += e.frame.len();
            out.push(StoredEvent { offset: e.offset, frame: e.frame.clone() });
        }
        (out, false)
    }

    /// The newest events at or below `upper`, at most `limit` and about `max_bytes` (at least
    /// one), ascending; `true` when older ones were left out.
    fn tail(&mut self, upper: u64, limit: usize, max_bytes: usize) -> (Vec<StoredEvent>, bool) {
        let first = self.position().first;
        if upper < first {
            return (Vec::new(), false);
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let newest = ((upper - first) as usize).min(self.events.len().saturating_sub(1));
        for e in self.events.range(..=newest).rev() {
            if out.len() >= limit || (!out.is_empty() && bytes + e.frame.len() > max_bytes) {
                out.reverse();
                return (out, true);
            }
            bytes += e.frame.len();
            out.push(StoredEvent { offset: e.offset, frame: e.frame.clone() });
        }
        out.reverse();
        (out, false)
    }

    pub fn history(&mut self, q: HistoryQuery) -> HistoryPage {
        let pos = self.position();
        let upper = q.before.map_or(pos.top, |b| b.saturating_sub(1)).min(pos.top);
        let (events, has_more) = match q.since {
            Some(since) => self.range(since + 1, upper, q.limit, q.max_bytes),
            None if upper == 0 => (Vec::new(), false),
            None => self.tail(upper, q.limit, q.max_bytes),
        };
        HistoryPage { events, pos, has_more }
    }

    pub fn info(&self, key: &ChannelKey, subscribers: u64) -> ChannelInfo {
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

    /// The first publish with this idempotency key, while remembered.
    pub fn remembered(&self, key: &str) -> Option<Published> {
        let (first, until) = self.idem.get(key)?;
        (*until > Instant::now()).then(|| first.clone())
    }

    /// Bytes a publish of `frame` would add.
    pub fn cost(&self, frame: &Frame, idem: Option<&str>, id: &str) -> usize {
        let stored = if self.options.history_size > 0 { frame.len() + EVENT_OVERHEAD } else { 0 };
        stored + idem.map_or(0, |k| idem_cost(k, id))
    }

    /// Stores an event (when the channel keeps history).
    pub fn append(&mut self, offset: u64, frame: Frame) {
        self.touch();
        if self.options.history_size > 0 {
            self.bytes += frame.len() + EVENT_OVERHEAD;
            self.events.push_back(Stored { offset, frame, at: Instant::now() });
            self.position();
        }
    }

    pub fn remember(&mut self, key: String, result: Published, window: Duration) {
        self.idem_inserts += 1;
        if self.idem_inserts >= IDEM_SWEEP_EVERY {
            self.idem_inserts = 0;
            self.trim(Instant::now());
        }
        self.bytes += idem_cost(&key, &result.id);
        if let Some((old, _)) = self.idem.insert(key.clone(), (result, Instant::now() + window)) {
            self.bytes -= idem_cost(&key, &old.id);
        }
    }

    pub fn add_interest(&mut self, node: &Arc<str>, inbound: &Arc<dyn Inbound>) {
        self.touch();
        match self.interest.iter_mut().find(|i| i.node == *node) {
            Some(i) => i.count += 1,
            None => self.interest.push(Interest { node: node.clone(), count: 1, inbound: inbound.clone() }),
        }
    }

    pub fn remove_interest(&mut self, node: &Arc<str>) {
        self.touch();
        if let Some(pos) = self.interest.iter().position(|i| i.node == *node) {
            self.interest[pos].count -= 1;
            if self.interest[pos].count == 0 {
                self.interest.swap_remove(pos);
            }
        }
    }
}

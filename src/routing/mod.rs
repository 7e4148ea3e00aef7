//! Routing: which local connection receives what.
//!
//! Owns the local subscription registry (sharded by channel), the connection and user
//! indexes for private messages, and fan-out. A frame arrives serialized once and its bytes
//! are shared by every receiver; delivery never waits on a client (a full outbox closes that
//! client with 4008). Implements [`Inbound`] for the backplane. Knows nothing of sockets.

mod conn;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::backplane::{GoneReason, Inbound, LiveEvent};
use crate::protocol::{close, event_timestamp_ms, unsubscribed_frame, ChannelKey, Frame, Target};
use crate::sync::{lock, read, write};
use crate::telemetry::metrics;

pub use conn::{ConnHandle, Outbox, OutboxLimits};

const SHARDS: usize = 64;

/// Live frames held for a subscription while its gap is replayed; their bytes are taken from
/// the connection's budget while held.
struct ReplayBuffer {
    frames: Vec<(Option<u64>, Frame)>,
    limit: usize,
}

/// One subscription of one connection.
pub struct Sub {
    /// The subscriber.
    pub conn: Arc<ConnHandle>,
    /// Whether it receives its own events.
    pub echo: bool,
    /// Whether it shows in presence.
    pub presence: bool,
    buffering: AtomicBool,
    /// The top of the range replayed from history: a live frame at or below it that arrives
    /// after the subscription went live (its pub/sub message was slower than the history read)
    /// was delivered by the replay already, and is dropped.
    replayed_to: AtomicU64,
    buffer: Mutex<Option<ReplayBuffer>>,
}

impl Sub {
    fn push(&self, offset: Option<u64>, frame: &Frame) -> bool {
        if offset.is_some_and(|o| o <= self.replayed_to.load(Ordering::Acquire)) {
            return false;
        }
        if self.buffering.load(Ordering::Acquire) {
            let mut guard = lock(&self.buffer);
            if let Some(buf) = guard.as_mut() {
                if buf.frames.len() >= buf.limit {
                    if self.conn.close(close::SLOW_CONSUMER) {
                        metrics().slow_consumers.inc();
                    }
                    return false;
                }
                if !self.conn.hold(frame.len()) {
                    return false;
                }
                buf.frames.push((offset, frame.clone()));
                return true;
            }
        }
        self.conn.deliver(frame.clone())
    }
}

impl Drop for Sub {
    /// Held frames that were never queued give their bytes back.
    fn drop(&mut self) {
        let buf = self.buffer.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        for (_, frame) in buf.map(|b| b.frames).unwrap_or_default() {
            self.conn.unhold(frame.len());
            self.conn.release(frame.len());
        }
    }
}

type Shard = RwLock<HashMap<ChannelKey, Vec<Arc<Sub>>>>;

/// The node's local routing table.
pub struct Router {
    shards: Box<[Shard]>,
    conns: RwLock<HashMap<Arc<str>, Arc<ConnHandle>>>,
    users: RwLock<HashMap<Arc<str>, Vec<Arc<ConnHandle>>>>,
    count: AtomicU64,
}

/// Returned by [`Router::subscribe`] when the connection already subscribes.
#[derive(Debug, PartialEq, Eq)]
pub struct AlreadySubscribed;

impl Default for Router {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            conns: RwLock::default(),
            users: RwLock::default(),
            count: AtomicU64::new(0),
        }
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn shard(&self, key: &ChannelKey) -> &Shard {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }

    /// Makes a connection reachable for private messages.
    pub fn register(&self, conn: &Arc<ConnHandle>) {
        write(&self.conns).insert(conn.client_id.clone(), conn.clone());
        if let Some(u) = &conn.user {
            write(&self.users).entry(u.clone()).or_default().push(conn.clone());
        }
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets a connection; returns the subscriptions it still had (for the caller to
    /// release in the backplane and presence).
    pub fn unregister(&self, conn: &Arc<ConnHandle>) -> Vec<(ChannelKey, Arc<Sub>)> {
        if write(&self.conns).remove(&conn.client_id).is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(u) = &conn.user {
            let mut users = write(&self.users);
            if let Some(list) = users.get_mut(u) {
                list.retain(|c| !Arc::ptr_eq(c, conn));
                if list.is_empty() {
                    users.remove(u);
                }
            }
        }
        conn.subscriptions().into_iter().filter_map(|k| self.unsubscribe(conn, &k).map(|s| (k, s))).collect()
    }

    /// Up to `n` open connections (any, in no particular order): those the node advises to
    /// reconnect elsewhere when it holds more than its share of the cluster's connections.
    pub fn pick(&self, n: usize) -> Vec<Arc<ConnHandle>> {
        read(&self.conns).values().filter(|c| !c.closing().is_cancelled()).take(n).cloned().collect()
    }

    /// Adds a subscription. With `buffering`, live frames are held until [`Router::go_live`].
    pub fn subscribe(
        &self,
        conn: &Arc<ConnHandle>,
        key: &ChannelKey,
        echo: bool,
        presence: bool,
        buffer_limit: Option<usize>,
    ) -> Result<Arc<Sub>, AlreadySubscribed> {
        let mut shard = write(self.shard(key));
        let subs = shard.entry(key.clone()).or_default();
        if subs.iter().any(|s| Arc::ptr_eq(&s.conn, conn)) {
            return Err(AlreadySubscribed);
        }
        let sub = Arc::new(Sub {
            conn: conn.clone(),
            echo,
            presence,
            buffering: AtomicBool::new(buffer_limit.is_some()),
            replayed_to: AtomicU64::new(0),
            buffer: Mutex::new(buffer_limit.map(|limit| ReplayBuffer { frames: Vec::new(), limit })),
        });
        subs.push(sub.clone());
        conn.add_sub(key.clone());
        metrics().subscriptions.inc();
        Ok(sub)
    }

    /// Ends buffering: queues held frames whose offset is above `after` (in order), then
    /// delivers live frames above `after` only. Returns false when the connection was closed
    /// meanwhile.
    pub fn go_live(&self, sub: &Sub, after: u64) -> bool {
        // Before the buffer is taken: a late frame at or below `after` never slips through.
        sub.replayed_to.store(after, Ordering::Release);
        let mut guard = lock(&sub.buffer);
        let held = guard.take().map(|b| b.frames).unwrap_or_default();
        let mut ok = true;
        for (offset, frame) in held {
            sub.conn.unhold(frame.len());
            if ok && offset.is_none_or(|o| o > after) {
                ok = sub.conn.push_reserved(frame);
            } else {
                sub.conn.release(frame.len());
            }
        }
        sub.buffering.store(false, Ordering::Release);
        ok && !sub.conn.closing().is_cancelled()
    }

    /// Removes a subscription; returns it if it existed.
    pub fn unsubscribe(&self, conn: &Arc<ConnHandle>, key: &ChannelKey) -> Option<Arc<Sub>> {
        let mut shard = write(self.shard(key));
        let subs = shard.get_mut(key)?;
        let i = subs.iter().position(|s| Arc::ptr_eq(&s.conn, conn))?;
        let sub = subs.swap_remove(i);
        if subs.is_empty() {
            shard.remove(key);
        }
        conn.remove_sub(key);
        metrics().subscriptions.dec();
        Some(sub)
    }
}

impl Inbound for Router {
    fn on_event(&self, ev: &LiveEvent) {
        let shard = read(self.shard(&ev.key));
        let Some(subs) = shard.get(&ev.key) else { return };
        let mut n = 0;
        for sub in subs {
            if !sub.echo && *sub.conn.client_id == *ev.origin {
                continue;
            }
            n += u64::from(sub.push(Some(ev.offset), &ev.frame));
        }
        drop(shard);
        let m = metrics();
        m.messages_out.inc_by(n);
        if let Some(stored) = event_timestamp_ms(ev.frame.as_str()) {
            let lag_ms = (chrono::Utc::now().timestamp_millis() - stored).max(0);
            m.delivery_lag.observe(lag_ms as f64 / 1000.0);
        }
        crate::telemetry::trace::delivered(&ev.key, ev.frame.as_str(), ev.offset, n);
    }

    fn on_system(&self, key: &ChannelKey, frame: &Frame) {
        if let Some(subs) = read(self.shard(key)).get(key) {
            subs.iter().for_each(|s| {
                s.push(None, frame);
            });
        }
    }

    fn on_channel_gone(&self, key: &ChannelKey, reason: GoneReason) {
        let Some(subs) = write(self.shard(key)).remove(key) else { return };
        let frame = unsubscribed_frame(key, reason.as_str());
        for sub in subs {
            sub.conn.remove_sub(key);
            metrics().subscriptions.dec();
            sub.conn.deliver(frame.clone());
        }
    }

    fn on_private(&self, target: &Target, frame: &Frame) -> usize {
        let targets: Vec<Arc<ConnHandle>> = match target {
            Target::Client(id) => read(&self.conns).get(id.as_str()).cloned().into_iter().collect(),
            Target::User(u) => read(&self.users).get(u.as_str()).cloned().unwrap_or_default(),
        };
        targets.iter().filter(|c| c.deliver(frame.clone())).count()
    }

    fn local_subscribers(&self, key: &ChannelKey) -> u64 {
        read(self.shard(key)).get(key).map_or(0, |s| s.len() as u64)
    }

    fn connections(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &ChannelKey, offset: u64) -> LiveEvent {
        LiveEvent { key: key.clone(), offset, origin: "c_other".into(), frame: Frame::from(format!("event {offset}")) }
    }

    #[test]
    fn a_live_frame_already_replayed_is_dropped_even_when_it_arrives_after_go_live() {
        let router = Router::new();
        let (conn, mut rx) = ConnHandle::new("c_me".into(), None, OutboxLimits { frames: 64, bytes: 1 << 20 });
        let key = ChannelKey::parse("room", "chan").expect("names");
        let sub = router.subscribe(&conn, &key, true, false, Some(16)).expect("subscribed");
        // Held while the gap replays: 5 is in the replayed range, 6 is above it.
        router.on_event(&event(&key, 5));
        router.on_event(&event(&key, 6));
        assert!(router.go_live(&sub, 5));
        // Published before the history read, but its live message comes late.
        router.on_event(&event(&key, 5));
        router.on_event(&event(&key, 7));
        let got: Vec<String> = std::iter::from_fn(|| rx.try_recv()).map(|f| f.to_string()).collect();
        assert_eq!(got, ["event 6", "event 7"]);
        assert_eq!(conn.queued_bytes(), "event 6".len() + "event 7".len(), "a dropped frame takes no budget");
    }
}

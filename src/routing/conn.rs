//! One connection as routing sees it: an outbox (a bounded queue of frames), its
//! subscriptions, and a way to ask the transport to close it with a code.
//!
//! Everything queued to a client — live events, replayed events, replies, errors, system and
//! private frames, and live events held while a gap replays — draws on one byte budget
//! (`limits.outbound_queue_bytes`). Bytes are returned when the writer has handed them to the
//! socket. A frame that would exceed the budget is not queued: the connection is closed with 4008
//! (slow consumer) and the client resumes with `since`. A shared frame counts at its full length
//! for every connection it is queued to.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::protocol::{close, ChannelKey, Frame};
use crate::sync::lock;
use crate::telemetry::metrics;

/// A connection's limits: frames and bytes queued at most.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    /// Frames queued at most.
    pub frames: usize,
    /// Bytes queued at most.
    pub bytes: usize,
}

/// A connection's handle, shared by the router, the session and the transport.
pub struct ConnHandle {
    /// `c_` + 32 hex.
    pub client_id: Arc<str>,
    /// Authenticated user.
    pub user: Option<Arc<str>>,
    /// The outbox: frames waiting for the writer. A plain deque, not a channel: an idle
    /// connection's empty deque holds no memory (a channel keeps a block of slots allocated).
    queue: Mutex<Queue>,
    /// Wakes the writer when a frame is queued (a stored permit if it is not waiting yet).
    queued_signal: Notify,
    limits: OutboxLimits,
    /// Bytes taken from the budget: queued, held for a replay, or being written.
    queued: AtomicUsize,
    /// The part of `queued` held for subscriptions whose gap replays (not in the outbox yet).
    held: AtomicUsize,
    closing: CancellationToken,
    close_code: AtomicU16,
    drained: Notify,
    /// Replays waiting in `send_paced` (the writer only notifies when there are some).
    pacing: AtomicUsize,
    subs: Mutex<Vec<ChannelKey>>,
}

impl ConnHandle {
    /// A handle and the receiving end of its outbox (for the transport's writer).
    pub fn new(client_id: Arc<str>, user: Option<Arc<str>>, limits: OutboxLimits) -> (Arc<Self>, Outbox) {
        let handle = Self {
            client_id,
            user,
            queue: Mutex::new(Queue::default()),
            queued_signal: Notify::new(),
            limits,
            queued: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            closing: CancellationToken::new(),
            close_code: AtomicU16::new(0),
            drained: Notify::new(),
            pacing: AtomicUsize::new(0),
            subs: Mutex::new(Vec::new()),
        };
        let handle = Arc::new(handle);
        (handle.clone(), Outbox { conn: handle })
    }

    /// Takes `n` bytes from the budget; over it, the connection is closed with 4008 and `false`
    /// is returned.
    pub fn reserve(&self, n: usize) -> bool {
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > self.limits.bytes {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.slow_consumer("outbound byte budget exceeded");
            return false;
        }
        metrics().outbound_queued_bytes.add(n as i64);
        true
    }

    /// Gives `n` bytes back to the budget (written, or dropped unsent).
    pub fn release(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
        metrics().outbound_queued_bytes.sub(n as i64);
    }

    /// Bytes taken from the budget now.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Takes `n` bytes from the budget for a live frame held while a replay runs.
    pub fn hold(&self, n: usize) -> bool {
        let ok = self.reserve(n);
        if ok {
            self.held.fetch_add(n, Ordering::AcqRel);
        }
        ok
    }

    /// A held frame leaves the hold: queued (`push_reserved` next) or dropped (`release` next).
    pub fn unhold(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }

    fn slow_consumer(&self, why: &str) {
        if self.close(close::SLOW_CONSUMER) {
            metrics().slow_consumers.inc();
            tracing::warn!(client_id = %self.client_id, why, "slow consumer: closing with 4008");
        }
    }

    /// Queues a frame without waiting. Over the frame or byte budget the connection is closed
    /// with 4008 (it resumes with `since`) and `false` is returned.
    pub fn deliver(&self, frame: Frame) -> bool {
        self.reserve(frame.len()) && self.push_reserved(frame)
    }

    /// Queues a frame whose bytes were already reserved; gives them back when it cannot.
    pub fn push_reserved(&self, frame: Frame) -> bool {
        let n = frame.len();
        let mut q = self.queue();
        if q.closed {
            drop(q);
            self.release(n);
            return false;
        }
        if q.frames.len() >= self.limits.frames {
            drop(q);
            self.release(n);
            self.slow_consumer("outbound queue full");
            return false;
        }
        q.frames.push_back(frame);
        drop(q);
        self.queued_signal.notify_one();
        true
    }

    /// Whether the outbox is at most half full. Held frames do not count: they leave the hold
    /// only once the replay is done, so waiting for them would wait forever (they still count
    /// against the budget, which closes a client that falls too far behind).
    fn has_room_for_replay(&self) -> bool {
        let outbox = self.queued_bytes().saturating_sub(self.held.load(Ordering::Acquire));
        self.queue().frames.len() < self.limits.frames / 2 && outbox <= self.limits.bytes / 2
    }

    /// Queues a replayed frame once at least half of the budget (frames and bytes) is free, so
    /// replay never crowds out live traffic into a 4008. False when the connection closed.
    pub async fn send_paced(&self, frame: Frame) -> bool {
        if !self.has_room_for_replay() {
            // While the queue is over half full the writer has batches to flush, and each flush
            // notifies: registering before the check below means no wake-up is missed.
            self.pacing.fetch_add(1, Ordering::SeqCst);
            let closed = loop {
                let wait = self.drained.notified();
                if self.has_room_for_replay() || self.closing.is_cancelled() {
                    break self.closing.is_cancelled();
                }
                tokio::select! {
                    _ = wait => {}
                    _ = self.closing.cancelled() => break true,
                }
            };
            self.pacing.fetch_sub(1, Ordering::SeqCst);
            if closed {
                return false;
            }
        }
        self.deliver(frame)
    }

    /// Called by the writer after it handed `bytes` to the socket.
    pub fn written(&self, bytes: usize) {
        metrics().bytes_out.inc_by(bytes as u64);
        self.release(bytes);
        if self.pacing.load(Ordering::SeqCst) > 0 {
            self.drained.notify_waiters();
        }
    }

    /// Asks the transport to close the connection with `code`; the first code wins.
    /// Returns whether this call set it.
    pub fn close(&self, code: u16) -> bool {
        let first = self.close_code.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok();
        self.closing.cancel();
        first
    }

    /// Queues `frame` (a reconnect advisory) and asks the transport to close with 1012 once the
    /// frames queued before it and the frame itself are written. False when the connection was
    /// closing already or its budget was exhausted (then it closes with 4008).
    pub fn advise_reconnect(&self, frame: Frame) -> bool {
        !self.closing.is_cancelled() && self.deliver(frame) && self.close(close::SERVICE_RESTART)
    }

    /// The close code asked for, if any.
    pub fn close_code(&self) -> Option<u16> {
        match self.close_code.load(Ordering::Acquire) {
            0 => None,
            c => Some(c),
        }
    }

    /// Resolves when the connection is closing.
    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    /// Whether the connection subscribes to `key`.
    pub fn is_subscribed(&self, key: &ChannelKey) -> bool {
        self.subs().contains(key)
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.subs().len()
    }

    /// The subscribed channels.
    pub fn subscriptions(&self) -> Vec<ChannelKey> {
        self.subs().clone()
    }

    pub(super) fn add_sub(&self, key: ChannelKey) {
        self.subs().push(key);
    }

    pub(super) fn remove_sub(&self, key: &ChannelKey) -> bool {
        let mut subs = self.subs();
        match subs.iter().position(|k| k == key) {
            Some(i) => {
                subs.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn subs(&self) -> MutexGuard<'_, Vec<ChannelKey>> {
        lock(&self.subs)
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }
}

/// Frames queued to the writer.
#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    /// The writer is gone: nothing more is queued.
    closed: bool,
}

/// A deque that grew past this many frames (a burst) gives its memory back once empty, so a
/// connection that goes idle again holds no burst-sized buffer.
const KEEP_FRAMES: usize = 64;

/// The receiving end of a connection's outbox, held by the transport's writer.
pub struct Outbox {
    conn: Arc<ConnHandle>,
}

impl Outbox {
    /// The next queued frame; waits for one. `None` once closed.
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            // Registered before the check: a frame queued in between leaves a permit.
            let signal = self.conn.queued_signal.notified();
            {
                let mut q = self.conn.queue();
                if let Some(f) = pop(&mut q) {
                    return Some(f);
                }
                if q.closed {
                    return None;
                }
            }
            signal.await;
        }
    }

    /// The next queued frame, if any.
    pub fn try_recv(&mut self) -> Option<Frame> {
        pop(&mut self.conn.queue())
    }

    /// Stops queueing (later frames are refused and their bytes given back) and returns what
    /// is still queued.
    pub fn close(&mut self) -> VecDeque<Frame> {
        let mut q = self.conn.queue();
        q.closed = true;
        std::mem::take(&mut q.frames)
    }
}

fn pop(q: &mut Queue) -> Option<Frame> {
    let f = q.frames.pop_front()?;
    if q.frames.is_empty() && q.frames.capacity() > KEEP_FRAMES {
        q.frames = VecDeque::new();
    }
    Some(f)
}

//! One connection as routing sees it: an outbox (a bounded queue of frames), its
//! subscriptions, and a way to ask the transport to close it with a code.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::protocol::{close, ChannelKey, Frame};
use crate::telemetry::metrics;

/// A connection's handle, shared by the router, the session and the transport.
pub struct ConnHandle {
    /// `c_` + 32 hex.
    pub client_id: Arc<str>,
    /// Authenticated user.
    pub user: Option<Arc<str>>,
    tx: mpsc::Sender<Frame>,
    capacity: usize,
    closing: CancellationToken,
    close_code: AtomicU16,
    drained: Notify,
    /// Replays waiting in `send_paced` (the writer only notifies when there are some).
    pacing: AtomicUsize,
    subs: Mutex<Vec<ChannelKey>>,
}

impl ConnHandle {
    /// A handle and the receiving end of its outbox (for the transport's writer).
    pub fn new(client_id: Arc<str>, user: Option<Arc<str>>, capacity: usize) -> (Arc<Self>, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(capacity);
        let handle = Self {
            client_id,
            user,
            tx,
            capacity,
            closing: CancellationToken::new(),
            close_code: AtomicU16::new(0),
            drained: Notify::new(),
            pacing: AtomicUsize::new(0),
            subs: Mutex::new(Vec::new()),
        };
        (Arc::new(handle), rx)
    }

    /// Queues a live frame without waiting. A full queue means a slow consumer: the
    /// connection is closed with 4008 (it resumes with `since`), and `false` is returned.
    pub fn deliver(&self, frame: Frame) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.close(close::SLOW_CONSUMER) {
                    metrics().slow_consumers.inc();
                    tracing::warn!(client_id = %self.client_id, "slow consumer: outbound queue full, closing with 4008");
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a frame, waiting for room (replies and errors; the reader task waits).
    pub async fn send(&self, frame: Frame) -> bool {
        self.tx.send(frame).await.is_ok()
    }

    /// Queues a replayed frame once at least half of the queue is free, so replay never
    /// crowds out live traffic into a 4008.
    pub async fn send_paced(&self, frame: Frame) -> bool {
        if self.tx.capacity() <= self.capacity / 2 {
            // While the queue is over half full the writer has batches to flush, and each flush
            // notifies: registering before the check below means no wake-up is missed.
            self.pacing.fetch_add(1, Ordering::SeqCst);
            let closed = loop {
                let wait = self.drained.notified();
                if self.tx.capacity() > self.capacity / 2 || self.closing.is_cancelled() {
                    break false;
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
        self.send(frame).await
    }

    /// Called by the writer after it flushed a batch.
    pub fn notify_drained(&self) {
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

    fn subs(&self) -> std::sync::MutexGuard<'_, Vec<ChannelKey>> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

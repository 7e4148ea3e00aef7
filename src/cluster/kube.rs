//! Kubernetes-aware membership: the ready pods behind the node's headless Service.
//!
//! A list + watch loop over the EndpointSlices labelled `kubernetes.io/service-name=<service>`:
//! list, then watch from the list's resource version; a watch the server ends is resumed from
//! the last version seen; an expired version (410) is listed again at once; any other failure
//! is listed again after a jittered exponential backoff. Every request has a deadline, and the
//! last known peer set stays in force while the API cannot be reached. A pod's name is its
//! node id (the chart sets `server.node_id` to the pod name).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Where the ready peers are published.
type PeerTx = watch::Sender<Option<Arc<BTreeSet<String>>>>;

/// Peers tracked at most (more endpoints than this are ignored, with a warning).
const MAX_PEERS: usize = 4096;
/// Status code of an expired resource version.
const GONE: u16 = 410;

/// The ready pods of each EndpointSlice: pure state, fed by list and watch results.
#[derive(Debug, Default)]
pub struct Endpoints {
    slices: BTreeMap<String, BTreeSet<String>>,
}

impl Endpoints {
    /// Pods of a slice that are ready (a missing condition means ready, as the API defines it).
    fn ready_pods(slice: &EndpointSlice) -> BTreeSet<String> {
        slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .filter_map(|e| e.target_ref.as_ref().and_then(|r| r.name.clone()).or_else(|| e.hostname.clone()))
            .collect()
    }

    /// Adds or replaces a slice.
    pub fn upsert(&mut self, slice: &EndpointSlice) {
        let Some(name) = slice.metadata.name.clone() else { return };
        let pods = Self::ready_pods(slice);
        if !self.slices.contains_key(&name) && self.slices.len() >= MAX_PEERS {
            tracing::warn!(slice = %name, "too many EndpointSlices: ignored");
            return;
        }
        self.slices.insert(name, pods);
    }

    /// Removes a slice.
    pub fn remove(&mut self, slice: &EndpointSlice) {
        if let Some(name) = &slice.metadata.name {
            self.slices.remove(name);
        }
    }

    /// Replaces every slice (a fresh list).
    pub fn replace(&mut self, slices: &[EndpointSlice]) {
        self.slices.clear();
        slices.iter().for_each(|s| self.upsert(s));
    }

    /// The ready pods of every slice (at most [`MAX_PEERS`]).
    pub fn peers(&self) -> BTreeSet<String> {
        self.slices.values().flatten().take(MAX_PEERS).cloned().collect()
    }
}

/// The ready peers as last seen: `None` until the first list succeeded.
#[derive(Debug, Clone)]
pub struct Peers(watch::Receiver<Option<Arc<BTreeSet<String>>>>);

impl Peers {
    /// The ready pods now, if the API has answered at least once.
    pub fn current(&self) -> Option<Arc<BTreeSet<String>>> {
        self.0.borrow().clone()
    }
}

/// Deadlines and pauses of the loop.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// First pause after a failure; also the pause between two watches.
    pub min_backoff: Duration,
    /// Longest pause after failures in a row.
    pub max_backoff: Duration,
    /// How long the API server keeps one watch open (seconds).
    pub watch_timeout_s: u32,
    /// Deadline of a list, and of a watch's first answer.
    pub request_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            watch_timeout_s: 290,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Watches the ready endpoints of `service` in `namespace` until `stop`.
pub fn spawn(
    client: kube::Client,
    namespace: &str,
    service: &str,
    timing: Timing,
    tracker: &TaskTracker,
    stop: CancellationToken,
) -> Peers {
    let (tx, rx) = watch::channel(None);
    let api: Api<EndpointSlice> = Api::namespaced(client, namespace);
    let selector = format!("kubernetes.io/service-name={service}");
    tracing::info!(%namespace, %service, "watching the peers' EndpointSlices");
    tracker.spawn(run(api, selector, timing, tx, stop));
    Peers(rx)
}

enum Waited<T> {
    Done(T),
    TimedOut,
    Stopped,
}

async fn within<F: Future>(stop: &CancellationToken, limit: Duration, f: F) -> Waited<F::Output> {
    tokio::select! {
        biased;
        _ = stop.cancelled() => Waited::Stopped,
        r = tokio::time::timeout(limit, f) => r.map_or(Waited::TimedOut, Waited::Done),
    }
}

/// Sleeps unless stopped first; false when stopped.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    matches!(within(stop, d, std::future::pending::<()>()).await, Waited::TimedOut)
}

/// Exponential backoff with jitter: each pause is random in the upper half of its step.
struct Backoff {
    step: Duration,
    t: Timing,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.t.max_backoff);
        let half = step.as_millis() as u64 / 2;
        Duration::from_millis(half + (uuid::Uuid::new_v4().as_u128() % (u128::from(half) + 1)) as u64)
    }
}

fn publish(tx: &PeerTx, table: &Endpoints) {
    let peers = table.peers();
    tx.send_if_modified(|cur| {
        if cur.as_deref() == Some(&peers) {
            return false;
        }
        tracing::info!(peers = ?peers, "ready peers changed");
        *cur = Some(Arc::new(peers));
        true
    });
}

/// How a watch ended.
enum Ended {
    Stopped,
    /// The resource version expired: list again now.
    Relist,
    /// Something failed: list again after a pause.
    Failed(String),
}

async fn run(api: Api<EndpointSlice>, selector: String, t: Timing, tx: PeerTx, stop: CancellationToken) {
    let mut table = Endpoints::default();
    let mut backoff = Backoff { step: t.min_backoff, t };
    loop {
        let failure = match within(&stop, t.request_timeout, api.list(&ListParams::default().labels(&selector))).await {
            Waited::Stopped => return,
            Waited::Done(Ok(list)) => {
                table.replace(&list.items);
                publish(&tx, &table);
                let version = list.metadata.resource_version.unwrap_or_default();
                match watch_from(&api, &selector, version, (&mut table, &tx, &mut backoff), t, &stop).await {
                    Ended::Stopped => return,
                    Ended::Relist => continue,
                    Ended::Failed(e) => e,
                }
            }
            Waited::Done(Err(e)) => format!("list failed: {e}"),
            Waited::TimedOut => "list timed out".to_owned(),
        };
        tracing::warn!(error = %failure, "EndpointSlice watch failed; the last known peers stay in force");
        if !pause(&stop, backoff.next()).await {
            return;
        }
    }
}

/// Watches from `version` until the watch fails (a watch the server ends is resumed). The
/// backoff starts over once a watch works (an event came, or the server ended it): a list that
/// works followed by a watch that fails at once (say, no `watch` permission) still backs off.
async fn watch_from(
    api: &Api<EndpointSlice>,
    selector: &str,
    mut version: String,
    (table, tx, backoff): (&mut Endpoints, &PeerTx, &mut Backoff),
    t: Timing,
    stop: &CancellationToken,
) -> Ended {
    // A watch that stays silent past the server's own timeout is dead.
    let silence = Duration::from_secs(u64::from(t.watch_timeout_s) + 30);
    loop {
        let params = WatchParams::default().labels(selector).timeout(t.watch_timeout_s);
        let stream = match within(stop, t.request_timeout, api.watch(&params, &version)).await {
            Waited::Stopped => return Ended::Stopped,
            Waited::Done(Ok(s)) => s,
            Waited::Done(Err(e)) => return Ended::Failed(format!("watch failed: {e}")),
            Waited::TimedOut => return Ended::Failed("watch timed out".into()),
        };
        let mut stream = std::pin::pin!(stream);
        loop {
            let event = match within(stop, silence, stream.next()).await {
                Waited::Stopped => return Ended::Stopped,
                Waited::TimedOut => return Ended::Failed("watch silent".into()),
                Waited::Done(None) => break,
                Waited::Done(Some(Err(e))) => return Ended::Failed(format!("watch failed: {e}")),
                Waited::Done(Some(Ok(ev))) => ev,
            };
            let seen = match event {
                WatchEvent::Added(s) | WatchEvent::Modified(s) => {
                    table.upsert(&s);
                    s.metadata.resource_version
                }
                WatchEvent::Deleted(s) => {
                    table.remove(&s);
                    s.metadata.resource_version
                }
                WatchEvent::Bookmark(b) => Some(b.metadata.resource_version),
                WatchEvent::Error(status) if status.code == GONE => return Ended::Relist,
                WatchEvent::Error(status) => return Ended::Failed(format!("watch error: {}", status.message)),
            };
            backoff.step = t.min_backoff;
            if let Some(v) = seen {
                version = v;
            }
            publish(tx, table);
        }
        // The server ended the watch (its timeout): resume from the last version, after a
        // short pause so that a server ending every watch at once is not hammered.
        backoff.step = t.min_backoff;
        if !pause(stop, t.min_backoff).await {
            return Ended::Stopped;
        }
    }
}

#[cfg(test)]
#[path = "kube_tests.rs"]
mod tests;

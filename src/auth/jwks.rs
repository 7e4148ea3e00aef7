//! A JWK set from a URL or a file, cached and refreshed, so that an identity provider can
//! rotate its signing keys without a restart.
//!
//! - The set is loaded at start and re-read every `auth.jwks_refresh_s` by a background task.
//! - A token whose `kid` is not in the set forces one refresh (at most one per
//!   [`FORCED_REFRESH_EVERY`], so random `kid`s cannot make the node hammer the provider) and
//!   is accepted if the new set has it. A key that left the set is refused from then on.
//! - A failed refresh keeps the last good set and logs a warning. With no set at all (the URL
//!   was unreachable since start), tokens are refused as unavailable (HTTP 503), never let in.
//! - Every fetch has a deadline (`auth.jwks_timeout_ms`) and a byte cap ([`MAX_JWKS_BYTES`]).
//!
//! The URL may carry a credential: it never reaches a log line or an error message.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use reqwest::{redirect, Url};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::fetch::{self, read_capped, Capped};
use super::keys::{KeySet, VerifyKey};
use crate::sync::{lock, read, write};

/// Shortest time between two refreshes forced by unknown `kid`s.
pub const FORCED_REFRESH_EVERY: Duration = Duration::from_secs(10);
/// Largest JWK set read; a larger one is a failed refresh.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Where the set comes from.
pub enum JwksSource {
    /// An http(s) URL (`auth.jwks_url`).
    Url(Url),
    /// A file (`auth.jwks_file`).
    File(PathBuf),
}

/// What a `kid` lookup found.
pub enum Lookup {
    /// The key.
    Found(Arc<VerifyKey>),
    /// The set has no such key, even after a refresh.
    Unknown,
    /// No set could be loaded yet: nothing can be verified.
    NoKeys,
}

/// The cached set and how it is refreshed.
pub struct JwksStore {
    source: JwksSource,
    client: reqwest::Client,
    timeout: Duration,
    refresh_every: Duration,
    algorithm: Option<Algorithm>,
    current: RwLock<Option<Arc<KeySet>>>,
    /// One fetch at a time; waiters on a forced refresh share the one in flight.
    fetching: tokio::sync::Mutex<()>,
    /// Completed fetch attempts, to see whether one finished while waiting for the lock.
    attempts: AtomicU64,
    last_forced: Mutex<Option<Instant>>,
}

impl JwksStore {
    /// A store with no set yet; [`JwksStore::refresh`] loads one.
    pub fn new(
        source: JwksSource,
        timeout: Duration,
        refresh_every: Duration,
        algorithm: Option<Algorithm>,
    ) -> Result<Arc<Self>, String> {
        // Key sets are public documents: the environment's proxy settings apply (unlike the
        // webhook, which carries tokens); a redirect is not followed.
        let client = fetch::client(timeout, redirect::Policy::none(), true)?;
        Ok(Arc::new(Self {
            source,
            client,
            timeout,
            refresh_every,
            algorithm,
            current: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            last_forced: Mutex::new(None),
        }))
    }

    /// The key for `kid`, forcing one refresh when the set does not have it.
    pub async fn key(&self, kid: &str) -> Lookup {
        if let Some(k) = self.cached(kid) {
            return Lookup::Found(k);
        }
        let seen = self.attempts.load(Ordering::Acquire);
        {
            let _one = self.fetching.lock().await;
            // A fetch that finished while this one waited has already answered the question.
            if self.attempts.load(Ordering::Acquire) == seen && self.may_force() {
                tracing::debug!("unknown JWT kid: refreshing the JWK set");
                let _ = self.refresh_locked().await;
            }
        }
        match self.cached(kid) {
            Some(k) => Lookup::Found(k),
            None if self.snapshot().is_none() => Lookup::NoKeys,
            None => Lookup::Unknown,
        }
    }

    /// Fetches the set once; on failure the last good set stays and the reason is returned.
    pub async fn refresh(&self) -> Result<(), String> {
        let _one = self.fetching.lock().await;
        self.refresh_locked().await
    }

    /// Re-reads the set every `refresh_every` (sooner while none is loaded) until `stop`.
    pub fn spawn_refresher(self: &Arc<Self>, tracker: &TaskTracker, stop: CancellationToken) {
        let store = Arc::downgrade(self);
        tracker.spawn(async move {
            loop {
                let Some(wait) = store.upgrade().map(|s| s.next_wait()) else { return };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                let Some(s) = store.upgrade() else { return };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = s.refresh() => {}
                }
            }
        });
    }

    fn next_wait(&self) -> Duration {
        match self.snapshot() {
            Some(_) => self.refresh_every,
            None => self.refresh_every.min(FORCED_REFRESH_EVERY),
        }
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        read(&self.current).clone()
    }

    fn cached(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        self.snapshot().and_then(|set| set.get(kid))
    }

    /// Whether a forced refresh may run now; if so, it is counted as run.
    fn may_force(&self) -> bool {
        let mut last = lock(&self.last_forced);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < FORCED_REFRESH_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Fetch, parse, swap in. The caller holds `fetching`.
    async fn refresh_locked(&self) -> Result<(), String> {
        let result = match self.fetch().await {
            Ok(bytes) => KeySet::parse(&bytes, self.algorithm),
            Err(e) => Err(e),
        };
        self.attempts.fetch_add(1, Ordering::AcqRel);
        let old = self.snapshot();
        match result {
            Ok((set, skipped)) => {
                let kids: Vec<String> = set.kids().into_iter().map(str::to_owned).collect();
                if old.as_ref().is_none_or(|o| o.kids() != set.kids()) {
                    tracing::info!(?kids, ?skipped, "JWK set loaded");
                } else {
                    tracing::debug!(?kids, "JWK set refreshed, unchanged");
                }
                *write(&self.current) = Some(Arc::new(set));
                Ok(())
            }
            Err(e) => {
                match old {
                    Some(o) => {
                        tracing::warn!(reason = %e, kids = ?o.kids(), "JWK set refresh failed; keeping the last good set")
                    }
                    None => {
                        tracing::warn!(reason = %e, "JWK set unavailable; tokens are refused with 503 until it loads")
                    }
                }
                Err(e)
            }
        }
    }

    /// The raw set, within the deadline and the byte cap.
    async fn fetch(&self) -> Result<Vec<u8>, String> {
        match &self.source {
            JwksSource::Url(url) => {
                let resp = self
                    .client
                    .get(url.clone())
                    .send()
                    .await
                    .map_err(|e| fetch::describe(&e, "the JWKS URL", self.timeout))?;
                if !resp.status().is_success() {
                    return Err(format!("the JWKS URL answered HTTP {}", resp.status().as_u16()));
                }
                read_capped(resp, MAX_JWKS_BYTES).await.map_err(|e| match e {
                    Capped::TooLarge => format!("the JWK set is over {MAX_JWKS_BYTES} bytes"),
                    Capped::Http(e) => fetch::describe(&e, "the JWKS URL", self.timeout),
                })
            }
            JwksSource::File(path) => {
                let path_owned = path.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    std::fs::File::open(&path_owned)?.take(MAX_JWKS_BYTES as u64 + 1).read_to_end(&mut out)?;
                    Ok::<_, std::io::Error>(out)
                });
                let out = tokio::time::timeout(self.timeout, read)
                    .await
                    .map_err(|_| format!("reading auth.jwks_file took over {} ms", self.timeout.as_millis()))?
                    .map_err(|e| format!("reading auth.jwks_file failed: {e}"))?
                    .map_err(|e| format!("cannot read auth.jwks_file {}: {e}", path.display()))?;
                if out.len() > MAX_JWKS_BYTES {
                    return Err(format!("auth.jwks_file is over {MAX_JWKS_BYTES} bytes"));
                }
                Ok(out)
            }
        }
    }
}

//! The Redis backplane: many stateless nodes share one Redis (standalone, Cluster or Sentinel).
//!
//! Per channel: a meta hash (epoch, top offset, options), a stream (entry id = offset) and a
//! shard pub/sub channel; publish is one Lua script (dedupe → epoch → offset → XADD → SPUBLISH
//! of the rendered event → idempotency result), so history and live order are the same. A node
//! subscribes in Redis only to channels its clients use. The live path (`live.rs`) checks each
//! channel's offsets and fills any gap from the stream, sweeps every subscribed channel
//! periodically and after a reconnect, and turns a lost stream into a new epoch that clients
//! see (`history_lost`). Readiness is a canary published and received through pub/sub. On
//! Sentinel the node also asks the sentinels for the master at every canary tick and reconnects
//! as soon as most of them name another server. On Cluster, publishes follow `MOVED`
//! (`redirect.rs`) and subscriptions follow their slot when it moves or fails over (`slots.rs`).

mod durable;
mod keys;
mod live;
mod pressure;
mod redirect;
mod scripts;
mod slots;
mod watchdog;

use std::collections::HashMap;

pub(super) use crate::sync::lock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::SubscriberClient;
use fred::prelude::Value;
use fred::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::BackplaneConfig;
use crate::protocol::{presence_frame, timestamp_now};
use keys::Keys;
use live::{Ctl, Track};
use scripts::Scripts;

/// Most entries of the "last offset seen" map before it is cleared (it only guards failover).
const SEEN_CAP: usize = 100_000;

fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Replies of a server that cannot take the command now but will soon (restart, failover, a
/// resharding Cluster), and fred's error for a command with no connection to go to (between a
/// disconnect and the reconnect): none of them applied the command. Also fred's answer when a
/// command's one attempt is used up by a `MOVED` (its slot map is refreshed then, so a retry
/// goes to the new master) or a cut connection: for a fail-fast publish, see [`bp_sent`].
const TRANSIENT: [&str; 7] =
    ["LOADING", "CLUSTERDOWN", "READONLY", "MASTERDOWN", "TRYAGAIN", "Failed to route command", USED_UP];

/// fred's error for a command whose attempts are used up.
const USED_UP: &str = "Too many failed write attempts";

/// Maps a Redis error: connection trouble is `Unavailable` (retry), the rest `Internal`.
fn bp(e: fred::error::Error) -> BackplaneError {
    use fred::error::ErrorKind as K;
    if pressure::is_oom(&e) {
        return BackplaneError::OutOfMemory(e.to_string());
    }
    match e.kind() {
        K::IO | K::Timeout | K::Canceled | K::Backpressure | K::Routing | K::Cluster | K::Sentinel => {
            BackplaneError::Unavailable(e.to_string())
        }
        _ if TRANSIENT.iter().any(|t| e.details().starts_with(t)) => BackplaneError::Unavailable(e.to_string()),
        _ => BackplaneError::Internal(e.to_string()),
    }
}

/// fred's answer to a fail-fast command while the connection is down: it was never written.
const NOT_WRITTEN: &str = "Connection closed unexpectedly.";

/// Maps the error of a fail-fast command: refused before the write, it is `Unavailable`; a
/// lost connection or a missing answer after the write leaves its outcome unknown (`Timeout`);
/// an error reply means Redis did not run it.
fn bp_sent(e: fred::error::Error) -> BackplaneError {
    use fred::error::ErrorKind as K;
    match e.kind() {
        K::Canceled if e.details() == NOT_WRITTEN => BackplaneError::Unavailable(e.to_string()),
        K::IO | K::Timeout | K::Canceled => BackplaneError::Timeout(e.to_string()),
        // Not a redirect (`redirect.rs` follows those): sent, then cut off.
        K::Unknown if e.details().starts_with(USED_UP) => BackplaneError::Timeout(e.to_string()),
        _ => bp(e),
    }
}

fn num(v: &Value) -> Option<u64> {
    match v {
        Value::Integer(i) => u64::try_from(*i).ok(),
        other => other.as_string()?.parse().ok(),
    }
}

fn frame_of(v: Value) -> Frame {
    match v {
        Value::String(s) => Frame::from(s.to_string()),
        other => Frame::from(other.as_string().unwrap_or_default()),
    }
}

/// A read: position plus retained events `(offset, frame, origin)`.
struct Read {
    pos: StreamPosition,
    events: Vec<(u64, Frame, String)>,
    /// The limit or the byte cap left events of the range out.
    more: bool,
}

/// What to read of a channel's stream.
#[derive(Debug, Clone, Copy)]
struct Span {
    from: u64,
    /// Inclusive upper bound; `None`: the top.
    to: Option<u64>,
    limit: usize,
    /// The newest `limit` at or below `to` instead of the oldest from `from`.
    tail: bool,
    /// Bytes of frames at most (at least one event is read).
    max_bytes: usize,
    /// Give a channel created on use its idle lifetime back (it is in use).
    touch: bool,
}

impl Span {
    /// Only the position.
    const POSITION: Span = Span { from: 0, to: None, limit: 0, tail: false, max_bytes: 0, touch: false };
}

/// Shared state of one node's Redis backplane.
struct Inner {
    node: String,
    cfg: BackplaneConfig,
    keys: Keys,
    /// This node's control channel and the private-message channel (named once: every live
    /// message is compared with them).
    own_ctl: String,
    private: String,
    client: Client,
    sub: SubscriberClient,
    scripts: Scripts,
    inbound: Arc<dyn Inbound>,
    limits: ChannelLimits,
    /// Channels with local subscribers: what the live path tracks.
    tracks: Mutex<HashMap<ChannelKey, Track>>,
    /// Serializes Redis SSUBSCRIBE/SUNSUBSCRIBE so interest changes apply in order.
    interest: tokio::sync::Mutex<()>,
    /// Cluster: the master each shard channel's subscription went to (see `slots.rs`).
    placed: Mutex<HashMap<String, Server>>,
    ctl: mpsc::UnboundedSender<Ctl>,
    /// Highest (epoch, offset) this node saw per channel, to detect counters going back.
    seen: Mutex<HashMap<ChannelKey, (String, u64)>>,
    /// ms since start when the last canary came back.
    canary_at: AtomicU64,
    /// ms since start when a command last got its answer on the command connection (canary
    /// publishes): a connection that fred still calls connected but that answers nothing is
    /// not written to.
    answered_at: AtomicU64,
    started: std::time::Instant,
    next_request: AtomicU64,
    private_waiters: Mutex<HashMap<u64, mpsc::UnboundedSender<usize>>>,
    cancel: CancellationToken,
}

/// One node's handle on the Redis backplane.
pub struct RedisBackplane {
    inner: Arc<Inner>,
}

/// Why the Redis backplane could not start.
#[derive(Debug, thiserror::Error)]
#[error("redis backplane: {0}")]
pub struct RedisStartError(String);

fn fred_config(cfg: &BackplaneConfig) -> Result<Config, RedisStartError> {
    let url = cfg.url.as_ref().map_or("redis://127.0.0.1:6379", |u| u.expose());
    let mut c = Config::from_url(url).map_err(|e| RedisStartError(format!("backplane.url: {}", e.details())))?;
    if let Some(service) = &cfg.sentinel_service {
        let hosts = cfg
            .sentinels
            .iter()
            .filter_map(|s| s.rsplit_once(':'))
            .filter_map(|(h, p)| Some(Server::new(h, p.parse::<u16>().ok()?)))
            .collect();
        c.server = ServerConfig::Sentinel {
            hosts,
            service_name: service.clone(),
            username: cfg.username.clone(),
            password: cfg.password.as_ref().map(|p| p.expose().to_owned()),
        };
    }
    if let Some(ca) = &cfg.tls_ca_file {
        c.tls = Some(tls_with_ca(ca)?);
    }
    if let Some(u) = &cfg.username {
        c.username = Some(u.clone());
    }
    if let Some(p) = &cfg.password {
        c.password = Some(p.expose().to_owned());
    }
    Ok(c)
}

/// TLS that trusts only the CA certificates of a PEM file (a private CA, self-hosted Redis).
fn tls_with_ca(path: &std::path::Path) -> Result<TlsConfig, RedisStartError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let fail = |why: String| RedisStartError(format!("backplane.tls_ca_file {}: {why}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(e.to_string()))? {
        roots.add(cert.map_err(|e| fail(e.to_string()))?).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfig { connector: TlsConnector::from(config), hostnames: fred::types::config::TlsHostMapping::None })
}

/// TCP keepalive: an idle connection whose peer is gone (a Redis host that vanished) is probed
/// after 5 s, every 2 s, and closed by the kernel after the system's count of unanswered probes
/// (9 on Linux: about 25 s), not after the default two hours. A connection with commands waiting is the watchdog's (`watchdog.rs`).
/// Nagle stays as the OS sets it.
fn dead_peer_detection() -> fred::types::config::TcpConfig {
    let keepalive =
        fred::socket2::TcpKeepalive::new().with_time(Duration::from_secs(5)).with_interval(Duration::from_secs(2));
    fred::types::config::TcpConfig { keepalive: Some(keepalive), ..Default::default() }
}

/// Longest wait of [`Backplane::leave`] on a Redis that answers.
const LEAVE_LIMIT: Duration = Duration::from_secs(1);

impl RedisBackplane {
    /// Connects (waiting at most a few seconds: a node may start before Redis is reachable and
    /// stays unready until it is) and starts the live path, heartbeat and canary.
    pub async fn connect(
        cfg: &BackplaneConfig,
        limits: ChannelLimits,
        node: &str,
        inbound: Arc<dyn Inbound>,
    ) -> Result<Self, RedisStartError> {
        let timeout = Duration::from_millis(cfg.command_timeout_ms);
        let wait = Duration::from_secs(10);
        let mut config = fred_config(cfg)?;
        // One probe connection that fails fast: wrong credentials or settings stop start-up
        // loudly; an unreachable Redis does not (the node waits for it, unready).
        let probe = Builder::from_config(config.clone())
            .with_connection_config(|c| c.connection_timeout = timeout)
            .build()
            .map_err(|e| RedisStartError(e.details().to_string()))?;
        let probed = match tokio::time::timeout(wait, probe.init()).await {
            Ok(Err(e)) if matches!(e.kind(), ErrorKind::Auth | ErrorKind::Config | ErrorKind::Url) => {
                return Err(RedisStartError(format!("cannot connect: {}", e.details())));
            }
            Ok(Ok(_)) => {
                let _ = probe.quit().await;
                true
            }
            _ => false,
        };
        // Redis answered the probe: wait for the real connections; else do not hold up start-up.
        let wait = if probed { wait } else { Duration::from_millis(200) };
        // From here on a first connection that fails is retried like a lost one.
        config.fail_fast = false;
        let builder = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                // A command cut by a disconnect is not sent again: a publish is never applied
                // twice behind the client's back (it gets UNAVAILABLE and retries with its key).
                c.max_command_attempts = 1;
                // A connection whose last write has waited a command timeout for its answer is
                // dead (fred's check; under steady writes `watchdog.rs` catches it instead).
                c.unresponsive.max_timeout = Some(timeout);
                c.unresponsive.interval = (timeout / 4).min(Duration::from_millis(500));
                c.tcp = dead_peer_detection();
            })
            .with_performance_config(|p| {
                p.default_command_timeout = timeout;
                // Live messages waiting for the live task: bounded (16,384 × the largest frame);
                // a live task that falls further behind repairs from the streams.
                p.broadcast_channel_capacity = 1 << 14;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2000, 2))
            .clone();
        let client = builder.build().map_err(|e| RedisStartError(e.details().to_string()))?;
        let sub = builder.build_subscriber_client().map_err(|e| RedisStartError(e.details().to_string()))?;
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let keys = Keys::new(&cfg.key_prefix);
        let inner = Arc::new(Inner {
            node: node.to_owned(),
            cfg: cfg.clone(),
            own_ctl: keys.ctl(node),
            private: keys.private(),
            keys,
            client,
            sub,
            scripts: Scripts::new(),
            inbound,
            limits,
            tracks: Mutex::new(HashMap::new()),
            interest: tokio::sync::Mutex::new(()),
            placed: Mutex::new(HashMap::new()),
            ctl: ctl_tx,
            seen: Mutex::new(HashMap::new()),
            canary_at: AtomicU64::new(0),
            answered_at: AtomicU64::new(0),
            started: std::time::Instant::now(),
            next_request: AtomicU64::new(1),
            private_waiters: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
        });
        // Subscribe to messages before connecting so nothing is missed.
        let messages = inner.sub.message_rx();
        let reconnects = inner.sub.reconnect_rx();
        tokio::spawn(redirect::keep_connected(inner.client.clone(), inner.cancel.clone()));
        tokio::spawn(redirect::keep_connected(inner.sub.clone(), inner.cancel.clone()));
        let (a, b) = tokio::join!(
            tokio::time::timeout(wait, inner.client.wait_for_connect()),
            tokio::time::timeout(wait, inner.sub.wait_for_connect()),
        );
        let reachable = matches!((a, b), (Ok(Ok(())), Ok(Ok(()))));
        if !reachable {
            // The node serves /healthz, stays unready, and connects when Redis comes (e.g. both
            // starting at once on Kubernetes); the live path subscribes on that first connection.
            tracing::error!("redis not reachable yet; the node stays unready until it is");
        }
        if reachable {
            // One SSUBSCRIBE per channel: on Redis Cluster the two live in different slots, and
            // a multi-channel SSUBSCRIBE across slots is refused (CROSSSLOT).
            for channel in [inner.own_ctl.clone(), inner.private.clone()] {
                match inner.sub.ssubscribe(channel.clone()).await {
                    Ok(()) => slots::placed(&inner, [channel.as_str()]),
                    Err(e) => tracing::error!(error = %e, "cannot subscribe to the node's control channels yet"),
                }
            }
        }
        tokio::spawn(live::run(inner.clone(), messages, reconnects, ctl_rx));
        tokio::spawn(live::maintain(inner.clone()));
        tokio::spawn(slots::watch(inner.clone()));
        let node = Self { inner };
        // Start ready: wait (bounded) for the first canary to come back through pub/sub.
        let deadline = tokio::time::Instant::now() + if reachable { wait } else { Duration::ZERO };
        while !node.healthy().await && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(node)
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Connected, and the canary came back through pub/sub lately (a round trip, not just an
    /// open socket).
    fn healthy(&self) -> bool {
        let at = self.canary_at.load(Ordering::Acquire);
        let fresh = self.now_ms().saturating_sub(at) <= self.cfg.canary_interval_ms * 3 + self.cfg.command_timeout_ms;
        at > 0 && fresh && self.client.is_connected() && self.sub.is_connected()
    }

    /// Whether the command connection is up and answered within two canary periods plus the
    /// command timeout (sooner than readiness gives up, which needs three).
    fn answering(&self) -> bool {
        let at = self.answered_at.load(Ordering::Acquire);
        let limit = self.cfg.canary_interval_ms * 2 + self.cfg.command_timeout_ms;
        at > 0 && self.now_ms().saturating_sub(at) <= limit && self.client.is_connected()
    }

    fn connected(&self) -> BpResult<()> {
        if self.client.is_connected() {
            Ok(())
        } else {
            Err(BackplaneError::Unavailable("not connected to redis".into()))
        }
    }

    async fn eval(
        &self,
        script: &fred::types::scripts::Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> BpResult<Value> {
        self.connected()?;
        // Two attempts: an ASK is followed (with one, fred ends its connection task on it);
        // these scripts are safe to run again after a cut connection.
        let opts = fred::types::config::Options { max_attempts: Some(2), ..Default::default() };
        let client = self.client.with_options(&opts);
        let sha = script.sha1().clone();
        match client.evalsha::<Value, _, _, _>(sha.clone(), keys.clone(), args.clone()).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                script.load(&self.client).await.map_err(bp)?;
                client.evalsha(sha, keys, args).await.map_err(bp)
            }
            r => r.map_err(bp),
        }
    }

    /// The node's highest known offset of a channel, for the failover guard.
    fn floor(&self, key: &ChannelKey) -> (String, u64) {
        lock(&self.seen).get(key).cloned().unwrap_or_default()
    }

    fn saw(&self, key: &ChannelKey, epoch: &str, offset: u64) {
        let mut seen = lock(&self.seen);
        if seen.len() >= SEEN_CAP && !seen.contains_key(key) {
            seen.clear();
        }
        match seen.get_mut(key) {
            Some((e, o)) if e == epoch => *o = (*o).max(offset),
            Some(entry) => *entry = (epoch.to_owned(), offset),
            None => {
                seen.insert(key.clone(), (epoch.to_owned(), offset));
            }
        }
    }

    /// The shortest life of a channel created on use once idle (ms): the dedupe window, and
    /// three sweeps, so that the nodes subscribed to it touch it well before it expires.
    fn idle_floor_ms(&self) -> u64 {
        (self.limits.dedupe_window_s * 1000).max(self.cfg.sweep_interval_ms * 3)
    }

    /// Reads a channel's position and events.
    async fn read(&self, key: &ChannelKey, span: Span) -> BpResult<Read> {
        let args = vec![
            span.from.to_string(),
            span.to.map(|t| t.to_string()).unwrap_or_default(),
            span.limit.to_string(),
            if span.tail { "1" } else { "0" }.to_owned(),
            span.max_bytes.to_string(),
            if span.touch { self.idle_floor_ms() } else { 0 }.to_string(),
            new_epoch(),
        ];
        let k = &self.keys;
        let keys = vec![k.meta(key), k.stream(key), k.presence(key), k.presence_index(key), k.subs(key)];
        let v = self.eval(&self.scripts.read, keys, args).await?;
        if v.is_null() {
            return Err(BackplaneError::NotFound);
        }
        let mut it = v.into_array().into_iter();
        let bad = || BackplaneError::Internal("malformed read result".into());
        let epoch = it.next().as_ref().and_then(Value::as_string).ok_or_else(bad)?;
        let top = it.next().as_ref().and_then(num).ok_or_else(bad)?;
        let first = it.next().as_ref().and_then(num).ok_or_else(bad)?;
        let more = it.next().as_ref().and_then(num).ok_or_else(bad)? == 1;
        let mut events = Vec::new();
        while let (Some(o), Some(f), Some(origin)) = (it.next(), it.next(), it.next()) {
            events.push((num(&o).ok_or_else(bad)?, frame_of(f), origin.as_string().unwrap_or_default()));
        }
        Ok(Read { pos: StreamPosition { epoch, top, first }, events, more })
    }

    /// LimitExceeded when `key`'s room holds `limits.per_room` channels (after dropping names
    /// whose channel expired); the server's own `_` rooms are not capped.
    async fn check_room_cap(&self, key: &ChannelKey) -> BpResult<()> {
        if key.is_reserved() {
            return Ok(()); // the server's own rooms
        }
        let index = self.keys.room(key.room());
        let cap = self.limits.per_room as u64;
        let count: u64 = self.client.zcard(&index).await.map_err(bp)?;
        if count < cap {
            return Ok(());
        }
        let names: Vec<String> = self.client.zrange(&index, 0, -1, None, false, None, false).await.map_err(bp)?;
        let mut left = names.len() as u64;
        for name in names {
            let Ok(k) = ChannelKey::parse(key.room(), &name) else { continue };
            let exists: bool = self.client.exists(self.keys.meta(&k)).await.map_err(bp)?;
            if !exists {
                let _: () = self.client.zrem(&index, &name).await.map_err(bp)?;
                left -= 1;
            }
        }
        if left < cap {
            return Ok(());
        }
        let msg = format!("room {} holds its maximum of {} channels", key.room(), cap);
        Err(BackplaneError::LimitExceeded(msg))
    }

    /// Creates a channel within the room's cap; false when it existed.
    async fn create(&self, key: &ChannelKey, options: &ChannelOptions, declared: bool) -> BpResult<bool> {
        self.check_room_cap(key).await?;
        let [has_desc, desc, size, ttl, pe] = Self::options_args(options);
        let idle = (options.history_ttl_s * 1000).max(self.idle_floor_ms());
        let declared = if declared { "1" } else { "0" }.to_owned();
        let args = vec![new_epoch(), timestamp_now(), has_desc, desc, size, ttl, pe, declared, idle.to_string()];
        let created = self.eval(&self.scripts.create, vec![self.keys.meta(key), self.keys.stream(key)], args).await?;
        let created = num(&created) == Some(1);
        if created {
            self.register_in_room(key).await;
        }
        Ok(created)
    }

    /// Publishes, creating the channel first (within its room's cap) when it does not exist and
    /// the request allows it. `sent` is set once the publish script is on its way to Redis.
    async fn publish(&self, req: &PublishRequest, sent: &AtomicBool) -> BpResult<Published> {
        if let Some(p) = self.publish_once(req, sent).await? {
            return Ok(p);
        }
        let options = req.create.as_ref().ok_or(BackplaneError::NotFound)?;
        self.create(&req.key, options, false).await?;
        self.publish_once(req, sent).await?.ok_or(BackplaneError::NotFound)
    }

    /// Runs a script that must not run twice: never queued while the connection is down (then
    /// nothing is sent: `Unavailable`), never retried after a write; a lost or late answer is
    /// `Timeout` (it may have run).
    async fn eval_once(
        &self,
        script: &fred::types::scripts::Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> BpResult<Value> {
        use fred::types::config::Options;
        use fred::types::{ClusterHash, CustomCommand};
        let opts = Options {
            fail_fast: true,
            max_attempts: Some(1),
            timeout: Some(Duration::from_millis(self.cfg.command_timeout_ms)),
            ..Default::default()
        };
        let (slot, all) = evalsha_args(script, keys, args);
        let cmd = CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot), false);
        match redirect::send(self, &opts, cmd.clone(), all.clone(), slot).await {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                // Not run: load it and send it once more.
                script.load(&self.client).await.map_err(bp)?;
                redirect::send(self, &opts, cmd, all, slot).await.map_err(bp_sent)
            }
            r => r.map_err(bp_sent),
        }
    }

    /// One run of the publish script; `None` when the channel does not exist.
    async fn publish_once(&self, req: &PublishRequest, sent: &AtomicBool) -> BpResult<Option<Published>> {
        let mut keys = vec![self.keys.meta(&req.key), self.keys.stream(&req.key)];
        if let Some(k) = &req.idempotency_key {
            keys.push(self.keys.idem(&req.key, k));
        }
        let (floor_epoch, floor) = self.floor(&req.key);
        let args = vec![
            req.message_id.clone(),
            req.template.head().to_owned(),
            req.template.tail().to_owned(),
            req.origin.clone(),
            req.dedupe_window_s.to_string(),
            new_epoch(),
            self.keys.live(&req.key),
            floor_epoch,
            floor.to_string(),
            self.idle_floor_ms().to_string(),
        ];
        // The command connection answers nothing lately: refuse before anything is sent, so
        // the answer is a certain UNAVAILABLE rather than an unknown outcome.
        if !self.answering() {
            return Err(BackplaneError::Unavailable("redis is not reachable".into()));
        }
        sent.store(true, Ordering::Release);
        let (v, confirmed) = if self.cfg.min_replicas_acked > 0 {
            durable::eval_and_wait(self, &self.scripts.publish, keys, args).await?
        } else {
            (self.eval_once(&self.scripts.publish, keys, args).await?, 0)
        };
        let replicated = || {
            let wanted = u64::from(self.cfg.min_replicas_acked);
            if confirmed < wanted {
                Err(durable::unconfirmed(self, confirmed))
            } else {
                Ok(())
            }
        };
        let parts = v.into_array();
        let bad = || BackplaneError::Internal("malformed publish result".into());
        match parts.first().and_then(Value::as_string).as_deref() {
            Some("ok") => {
                let epoch = parts.get(1).and_then(Value::as_string).ok_or_else(bad)?;
                let offset = parts.get(2).and_then(num).ok_or_else(bad)?;
                self.saw(&req.key, &epoch, offset);
                let p = Published { id: req.message_id.clone(), offset, duplicate: false };
                replicated()?;
                Ok(Some(p))
            }
            Some("dup") => {
                let cached = parts.get(1).and_then(Value::as_string).ok_or_else(bad)?;
                let (id, offset) = cached.rsplit_once('|').ok_or_else(bad)?;
                let offset = offset.parse().map_err(|_| bad())?;
                let p = Published { id: id.to_owned(), offset, duplicate: true };
                replicated()?;
                Ok(Some(p))
            }
            Some("nf") => Ok(None),
            _ => Err(bad()),
        }
    }

    async fn live_nodes(&self) -> BpResult<(u64, Vec<(String, u64, u64)>)> {
        let ttl = (self.cfg.node_ttl_s * 1000).to_string();
        let v = self.eval(&self.scripts.nodes, vec![self.keys.nodes(), self.keys.node_conns()], vec![ttl]).await?;
        let mut it = v.into_array().into_iter();
        let now = it.next().as_ref().and_then(num).unwrap_or_default();
        let mut out = Vec::new();
        while let (Some(n), Some(seen), Some(c)) = (it.next(), it.next(), it.next()) {
            out.push((n.as_string().unwrap_or_default(), num(&seen).unwrap_or_default(), num(&c).unwrap_or_default()));
        }
        Ok((now, out))
    }

    fn options_args(options: &ChannelOptions) -> [String; 5] {
        [
            if options.description.is_some() { "1" } else { "0" }.to_owned(),
            options.description.clone().unwrap_or_default(),
            options.history_size.to_string(),
            options.history_ttl_s.to_string(),
            if options.presence_events { "1" } else { "0" }.to_owned(),
        ]
    }

    async fn register_in_room(&self, key: &ChannelKey) {
        let values = (0.0, key.channel());
        let r: Result<(), _> = self.client.zadd(self.keys.room(key.room()), None, None, false, false, values).await;
        if let Err(e) = r {
            tracing::warn!(channel = %key, error = %e, "cannot add channel to its room's registry");
        }
    }

    async fn info(&self, key: &ChannelKey, live: &[(String, u64, u64)]) -> BpResult<ChannelInfo> {
        self.connected()?;
        let meta: HashMap<String, String> = self.client.hgetall(self.keys.meta(key)).await.map_err(bp)?;
        if !meta.contains_key("epoch") {
            return Err(BackplaneError::NotFound);
        }
        let subs: HashMap<String, i64> = self.client.hgetall(self.keys.subs(key)).await.map_err(bp)?;
        let subscribers =
            subs.iter().filter(|(n, _)| live.iter().any(|(l, _, _)| l == *n)).map(|(_, c)| (*c).max(0) as u64).sum();
        let get = |k: &str| meta.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or_default();
        let top = get("offset");
        Ok(ChannelInfo {
            room: key.room().to_owned(),
            channel: key.channel().to_owned(),
            description: meta.get("description").cloned(),
            history_size: get("history_size"),
            history_ttl_s: get("history_ttl_s"),
            presence_events: meta.get("presence_events").is_some_and(|v| v == "1"),
            offset: (top > 0).then_some(top),
            epoch: meta.get("epoch").cloned().unwrap_or_default(),
            subscribers,
            created_at: meta.get("created_at").cloned().unwrap_or_default(),
        })
    }

    async fn presence_change(
        &self,
        key: &ChannelKey,
        client_id: &str,
        entry: &str,
        announce: &Frame,
    ) -> BpResult<bool> {
        let keys = vec![self.keys.meta(key), self.keys.presence(key), self.keys.presence_index(key)];
        let args = vec![client_id.to_owned(), entry.to_owned(), self.keys.live(key), announce.as_str().to_owned()];
        let v = self.eval(&self.scripts.presence, keys, args).await?;
        Ok(num(&v) == Some(1))
    }

    /// Removes every presence entry a dead node left behind, announcing each leave.
    async fn reap_presence(&self, dead: &str) {
        let set = self.keys.node_presence(dead);
        let channels: Vec<String> = self.client.smembers(&set).await.unwrap_or_default();
        for c in channels {
            let Some((room, channel)) = c.split_once(':') else { continue };
            let Ok(key) = ChannelKey::parse(room, channel) else { continue };
            let entries: HashMap<String, String> =
                self.client.hgetall(self.keys.presence(&key)).await.unwrap_or_default();
            for entry in entries.values().filter_map(|json| serde_json::from_str::<PresenceEntry>(json).ok()) {
                if entry.node != dead {
                    continue;
                }
                let announce = presence_frame("leave", &key, &entry.client_id, entry.user.as_deref(), &entry.info);
                let _ = self.presence_change(&key, &entry.client_id, "", &announce).await;
            }
            let _: Result<(), _> = self.client.hdel(self.keys.subs(&key), dead).await;
        }
        let _: Result<(), _> = self.client.del(&set).await;
        tracing::info!(node = dead, "removed a dead node's presence");
    }
}

#[async_trait]
impl Backplane for RedisBackplane {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn healthy(&self) -> bool {
        self.inner.healthy()
    }

    async fn ensure_channel(&self, key: &ChannelKey, create: Option<&ChannelOptions>) -> BpResult<()> {
        let i = &self.inner;
        i.connected()?;
        let exists: bool = i.client.exists(i.keys.meta(key)).await.map_err(bp)?;
        if exists {
            return Ok(());
        }
        let options = create.ok_or(BackplaneError::NotFound)?;
        i.create(key, options, false).await.map(|_| ())
    }

    async fn create_channel(&self, key: &ChannelKey, options: ChannelOptions) -> BpResult<ChannelInfo> {
        let i = &self.inner;
        if !i.create(key, &options, true).await? {
            return Err(BackplaneError::Exists);
        }
        i.info(key, &[]).await
    }

    async fn delete_channel(&self, key: &ChannelKey) -> BpResult<()> {
        let i = &self.inner;
        let k = &i.keys;
        let keys = vec![k.meta(key), k.stream(key), k.presence(key), k.presence_index(key), k.subs(key)];
        let deleted = i.eval(&i.scripts.delete, keys, vec![k.live(key)]).await?;
        let _: Result<(), _> = i.client.zrem(k.room(key.room()), key.channel()).await;
        if num(&deleted) != Some(1) {
            return Err(BackplaneError::NotFound);
        }
        Ok(())
    }

    async fn list_channels(&self, room: &str, page: Page) -> BpResult<(Vec<ChannelInfo>, bool)> {
        let i = &self.inner;
        let index = i.keys.room(room);
        let args = vec![page.after.unwrap_or_default(), page.limit.to_string()];
        let v = i.eval(&i.scripts.room_page, vec![index.clone()], args).await?;
        let mut it = v.into_array().into_iter();
        let more = it.next().as_ref().and_then(num) == Some(1);
        let (_, live) = i.live_nodes().await?;
        let mut out = Vec::new();
        for name in it.filter_map(|n| n.as_string()) {
            let Ok(key) = ChannelKey::parse(room, &name) else { continue };
            match i.info(&key, &live).await {
                Ok(info) => out.push(info),
                Err(BackplaneError::NotFound) => {
                    let _: Result<(), _> = i.client.zrem(&index, &name).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok((out, more))
    }

    async fn channel_info(&self, key: &ChannelKey) -> BpResult<ChannelInfo> {
        let (_, live) = self.inner.live_nodes().await?;
        self.inner.info(key, &live).await
    }

    async fn publish(&self, req: PublishRequest) -> BpResult<Published> {
        let i = &self.inner;
        i.connected()?;
        // One deadline for the whole answer. Until the script is sent nothing can be stored
        // (UNAVAILABLE); after, a late or lost answer leaves the outcome unknown (TIMEOUT).
        let sent = AtomicBool::new(false);
        let waits = if i.cfg.min_replicas_acked > 0 { i.cfg.wait_timeout_ms } else { 0 };
        let deadline = Duration::from_millis(i.cfg.command_timeout_ms + waits);
        match tokio::time::timeout(deadline, i.publish(&req, &sent)).await {
            Ok(r) => r.inspect_err(pressure::publish_refused),
            Err(_) if sent.load(Ordering::Acquire) => {
                Err(BackplaneError::Timeout(format!("no answer to a publish within {deadline:?}")))
            }
            Err(_) => Err(BackplaneError::Unavailable(format!("publish not sent within {deadline:?}"))),
        }
    }

    async fn position(&self, key: &ChannelKey) -> BpResult<StreamPosition> {
        Ok(self.inner.read(key, Span::POSITION).await?.pos)
    }

    async fn read_range(
        &self,
        key: &ChannelKey,
        from: u64,
        to: u64,
        limit: usize,
        max_bytes: usize,
    ) -> BpResult<Vec<StoredEvent>> {
        let span = Span { from, to: Some(to), limit, max_bytes, ..Span::POSITION };
        let r = self.inner.read(key, span).await?;
        Ok(r.events.into_iter().map(|(offset, frame, _)| StoredEvent { offset, frame }).collect())
    }

    async fn history(&self, key: &ChannelKey, q: HistoryQuery) -> BpResult<HistoryPage> {
        if q.before == Some(0) {
            let pos = self.position(key).await?;
            return Ok(HistoryPage { events: Vec::new(), pos, has_more: false });
        }
        let to = q.before.map(|b| b - 1);
        let (from, tail) = match q.since {
            Some(since) => (since + 1, false),
            None => (1, true),
        };
        let span = Span { from, to, limit: q.limit, tail, max_bytes: q.max_bytes, touch: false };
        let r = self.inner.read(key, span).await?;
        let events = r.events.into_iter().map(|(offset, frame, _)| StoredEvent { offset, frame }).collect();
        Ok(HistoryPage { events, pos: r.pos, has_more: r.more })
    }

    async fn subscribe(&self, key: &ChannelKey) -> BpResult<()> {
        live::subscribe(&self.inner, key).await
    }

    async fn unsubscribe(&self, key: &ChannelKey) -> BpResult<()> {
        live::unsubscribe(&self.inner, key).await
    }

    async fn send_private(&self, target: &Target, frame: &Frame) -> BpResult<usize> {
        live::send_private(&self.inner, target, frame).await
    }

    async fn presence_join(&self, key: &ChannelKey, entry: PresenceEntry, announce: Frame) -> BpResult<()> {
        let i = &self.inner;
        let json = serde_json::to_string(&entry).map_err(|e| BackplaneError::Internal(e.to_string()))?;
        let set = i.keys.node_presence(&i.node);
        let _: () = i.client.sadd(&set, key.as_str()).await.map_err(bp)?;
        if !i.presence_change(key, &entry.client_id, &json, &announce).await? {
            return Err(BackplaneError::NotFound);
        }
        Ok(())
    }

    async fn presence_leave(&self, key: &ChannelKey, client_id: &str, announce: Frame) -> BpResult<()> {
        self.inner.presence_change(key, client_id, "", &announce).await.map(|_| ())
    }

    async fn presence(&self, key: &ChannelKey, page: Page) -> BpResult<PresencePage> {
        let i = &self.inner;
        let keys = vec![i.keys.meta(key), i.keys.presence(key), i.keys.presence_index(key)];
        let args = vec![page.after.unwrap_or_default(), page.limit.to_string()];
        let v = i.eval(&i.scripts.presence_page, keys, args).await?;
        if v.is_null() {
            return Err(BackplaneError::NotFound);
        }
        let mut it = v.into_array().into_iter();
        let count = it.next().as_ref().and_then(num).unwrap_or_default();
        let has_more = it.next().as_ref().and_then(num) == Some(1);
        let (_, live) = i.live_nodes().await?;
        // Entries of a node that died are left out until the reaper removes them.
        let entries = it
            .filter_map(|v| v.as_string())
            .filter_map(|json| serde_json::from_str::<PresenceEntry>(&json).ok())
            .filter(|e| live.iter().any(|(n, _, _)| *n == e.node))
            .collect();
        Ok(PresencePage { entries, count, has_more })
    }

    async fn nodes(&self) -> BpResult<Vec<NodeInfo>> {
        let (_, live) = self.inner.live_nodes().await?;
        Ok(live
            .into_iter()
            .map(|(node, seen, connections)| NodeInfo {
                connections: if node == self.inner.node { self.inner.inbound.connections() } else { connections },
                node,
                last_seen: chrono::DateTime::from_timestamp_millis(seen as i64)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// Bounded: at most [`LEAVE_LIMIT`] (or the command timeout, if shorter) with Redis
    /// answering, and no wait at all when it has stopped answering.
    async fn leave(&self) {
        let i = &self.inner;
        i.cancel.cancel();
        let live = i.healthy();
        let deadline = Duration::from_millis(i.cfg.command_timeout_ms).min(LEAVE_LIMIT);
        let ttl = (i.cfg.node_ttl_s * 1000).to_string();
        let (sub, client) = (i.sub.clone(), i.client.clone());
        let quit = async move {
            let _ = tokio::join!(sub.quit(), client.quit());
        };
        let reap_and_quit = async {
            let reaped =
                i.eval(&i.scripts.reap, vec![i.keys.nodes(), i.keys.node_conns()], vec![ttl, i.node.clone()]).await;
            if let Ok(dead) = reaped {
                for node in dead.into_array().iter().filter_map(Value::as_string) {
                    i.reap_presence(&node).await;
                }
            }
            let _ = tokio::join!(i.sub.quit(), i.client.quit());
        };
        // QUIT waits for Redis' answer: without a live Redis the clients are told to stop in
        // the background (each bounded by the command timeout) and the node does not wait.
        if !live || tokio::time::timeout(deadline, reap_and_quit).await.is_err() {
            tokio::spawn(quit);
        }
    }
}

/// The hash slot and the arguments of `EVALSHA sha numkeys keys… args…` sent as a custom
/// command. The slot is the first key's (fred would hash the first string: the script's sha).
pub(super) fn evalsha_args(
    script: &fred::types::scripts::Script,
    keys: Vec<String>,
    args: Vec<String>,
) -> (u16, Vec<Value>) {
    let slot = keys.first().map_or(0, |k| fred::util::redis_keyslot(k.as_bytes()));
    let mut all: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
    all.push(Value::from(script.sha1().clone()));
    all.push(Value::from(keys.len() as i64));
    all.extend(keys.into_iter().map(Value::from));
    all.extend(args.into_iter().map(Value::from));
    (slot, all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::error::{Error, ErrorKind};

    #[test]
    fn failover_and_reconnect_errors_are_unavailable() {
        for msg in [
            "READONLY You can't write against a read only replica.",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "LOADING Redis is loading the dataset in memory",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "Failed to route command.",
        ] {
            assert!(matches!(bp(Error::new(ErrorKind::Unknown, msg)), BackplaneError::Unavailable(_)), "{msg}");
        }
        assert!(matches!(bp(Error::new(ErrorKind::IO, "reset")), BackplaneError::Unavailable(_)));
        let script = Error::new(ErrorKind::Unknown, "ERR user_script:1: Script attempted to access a non local key");
        assert!(matches!(bp(script), BackplaneError::Internal(_)));
    }
}

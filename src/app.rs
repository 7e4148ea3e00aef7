//! The composition root: the only place that names concrete backends.
//!
//! Builds a node from a [`Config`] — router, backplane (memory or Redis), authenticator (none,
//! jwt, webhook) —
//! binds the listener and runs it until [`RunningNode::shutdown`], which drains in the one
//! documented order.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{
    jwt_algorithm, Authenticator, JwksSource, JwksStore, JwtAuthenticator, JwtKeys, JwtRules, NoAuth, VerifyKey,
    WebhookAuthenticator,
};
use crate::backplane::{Backplane, ChannelLimits, Inbound, MemoryBus, RedisBackplane, RedisStartError, Timed};
use crate::commands::Node;
use crate::config::{AuthConfig, AuthKind, BackplaneKind, Config};
use crate::routing::Router;
use crate::transport::Shared;

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The backplane could not be set up.
    #[error(transparent)]
    Backplane(#[from] RedisStartError),
    /// The authenticator could not be set up (a key file is missing or invalid): a
    /// configuration error.
    #[error("invalid configuration: {0}")]
    Auth(String),
    /// `cluster.kube_membership` is on outside a Kubernetes pod (no in-cluster API address or
    /// service account): a configuration error.
    #[error("invalid configuration: cluster.kube_membership: {0}")]
    Cluster(String),
}

impl StartError {
    /// Whether the configuration is at fault (the binary then exits with 64, as for a value
    /// that `Config::validate` refuses).
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Auth(_) | Self::Cluster(_))
    }
}

/// A node that is serving.
pub struct RunningNode {
    node: Arc<Node>,
    addr: SocketAddr,
    drain: CancellationToken,
    stop_accepting: CancellationToken,
    tracker: TaskTracker,
    server: JoinHandle<()>,
    /// The `_sys:activity` publisher: stopped (after a short flush) once connections are gone.
    activity: JoinHandle<()>,
    stop_activity: CancellationToken,
}

/// A node id for a node whose configuration names none: the host name and a random suffix.
pub fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| crate::protocol::validate_name(h).is_ok() && h.len() <= 56);
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{}-{suffix}", host.as_deref().unwrap_or("arqonbus"))
}

/// The node id, its router, and the router as the handler a backplane delivers to.
fn identity_and_router(config: &Config) -> (String, Arc<Router>, Arc<dyn Inbound>) {
    let id = config.server.node_id.clone().unwrap_or_else(default_node_id);
    let router = Router::new();
    let inbound: Arc<dyn Inbound> = router.clone();
    (id, router, inbound)
}

/// Starts a node on its own embedded backplane (or the configured one).
pub async fn start(config: Config) -> Result<RunningNode, StartError> {
    match config.backplane.effective_kind() {
        BackplaneKind::Memory => {
            let bus = MemoryBus::new(ChannelLimits::from(&config.channels));
            start_on_bus(config, bus).await
        }
        BackplaneKind::Redis => {
            let (id, router, inbound) = identity_and_router(&config);
            let limits = ChannelLimits::from(&config.channels);
            let backplane = RedisBackplane::connect(&config.backplane, limits, &id, inbound).await?;
            serve(config, id, router, Arc::new(backplane)).await
        }
    }
}

/// Starts a node attached to a shared in-memory bus (several nodes in one process).
pub async fn start_on_bus(config: Config, bus: Arc<MemoryBus>) -> Result<RunningNode, StartError> {
    let (id, router, inbound) = identity_and_router(&config);
    let backplane: Arc<dyn Backplane> = Arc::new(bus.attach(&id, inbound));
    serve(config, id, router, backplane).await
}

async fn authenticator(
    config: &Config,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) -> Result<Arc<dyn Authenticator>, StartError> {
    let a = &config.auth;
    Ok(match a.kind {
        AuthKind::None => Arc::new(NoAuth),
        AuthKind::Jwt => {
            let rules =
                JwtRules { issuer: a.jwt_issuer.clone(), audience: a.jwt_audience.clone(), leeway_s: a.jwt_leeway_s };
            Arc::new(JwtAuthenticator::new(jwt_keys(a, tracker, stop).await?, rules))
        }
        AuthKind::Webhook => {
            // validate() refuses a webhook without a URL; never fall back to no auth.
            let url = a.webhook_url.as_ref().ok_or_else(|| auth_error("auth.webhook_url", "is required"))?;
            let timeout = Duration::from_millis(a.webhook_timeout_ms);
            let cache = Duration::from_secs(a.webhook_cache_s);
            Arc::new(WebhookAuthenticator::new(url.expose(), timeout, cache).map_err(StartError::Auth)?)
        }
    })
}

fn auth_error(key: &str, reason: impl std::fmt::Display) -> StartError {
    StartError::Auth(format!("{key}: {reason}"))
}

/// Largest PEM key file read.
const MAX_PEM_BYTES: u64 = 64 * 1024;

/// The one JWT key source of `[auth]` (validate() has checked that there is exactly one).
async fn jwt_keys(a: &AuthConfig, tracker: &TaskTracker, stop: &CancellationToken) -> Result<JwtKeys, StartError> {
    let alg = jwt_algorithm(a.jwt_algorithm.as_deref()).map_err(StartError::Auth)?;
    if let Some(secret) = &a.jwt_secret {
        let key =
            VerifyKey::from_secret(secret.expose().as_bytes(), alg).map_err(|e| auth_error("auth.jwt_algorithm", e))?;
        return Ok(JwtKeys::Static(Arc::new(key)));
    }
    if let Some(path) = &a.jwt_public_key_file {
        let name = "auth.jwt_public_key_file";
        let size = std::fs::metadata(path).map_err(|e| auth_error(name, format!("{}: {e}", path.display())))?.len();
        if size > MAX_PEM_BYTES {
            return Err(auth_error(name, format!("{} is over {MAX_PEM_BYTES} bytes", path.display())));
        }
        let pem = std::fs::read(path).map_err(|e| auth_error(name, format!("{}: {e}", path.display())))?;
        let key = VerifyKey::from_pem(&pem, alg).map_err(|e| auth_error(name, format!("{} {e}", path.display())))?;
        tracing::info!(alg = ?key.alg, "JWT public key loaded");
        return Ok(JwtKeys::Static(Arc::new(key)));
    }
    let (source, name) = match (&a.jwks_url, &a.jwks_file) {
        (Some(url), _) => {
            let url = url.expose().parse().map_err(|e| auth_error("auth.jwks_url", e))?;
            (JwksSource::Url(url), "auth.jwks_url")
        }
        (None, Some(path)) => (JwksSource::File(path.clone()), "auth.jwks_file"),
        (None, None) => return Err(auth_error("auth.jwt_secret", "is required")),
    };
    let is_file = matches!(source, JwksSource::File(_));
    let timeout = Duration::from_millis(a.jwks_timeout_ms);
    let store =
        JwksStore::new(source, timeout, Duration::from_secs(a.jwks_refresh_s), alg).map_err(StartError::Auth)?;
    if let Err(e) = store.refresh().await {
        // A file is the operator's own: a broken one stops start-up. A URL may be down for a
        // moment: the node starts and answers tokens with 503 until a set loads.
        if is_file {
            return Err(auth_error(name, e));
        }
    }
    store.spawn_refresher(tracker, stop.clone());
    Ok(JwtKeys::Jwks(store))
}

async fn serve(
    config: Config,
    id: String,
    router: Arc<Router>,
    backplane: Arc<dyn Backplane>,
) -> Result<RunningNode, StartError> {
    let addr = config.listen_addr();
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    let drain = CancellationToken::new();
    let tracker = TaskTracker::new();
    let auth = authenticator(&config, &tracker, &drain).await?;
    let backplane: Arc<dyn Backplane> = Arc::new(Timed(backplane));
    let (activity_queue, activity_rx) = crate::commands::activity_queue();
    let node = Arc::new(Node::new(id, config, backplane, router, auth, activity_queue));
    let stop_activity = CancellationToken::new();
    let activity = tokio::spawn(crate::commands::run_activity(node.clone(), activity_rx, stop_activity.clone()));
    let stop_accepting = CancellationToken::new();
    let shared = Shared::new(node.clone(), drain.clone(), tracker.clone());
    start_cluster(&node, &tracker, &drain)?;
    let server = tokio::spawn(crate::transport::serve(listener, shared, stop_accepting.clone()));
    tracing::info!(node = %node.id, %addr, backplane = node.backplane.kind(), auth = node.auth.enabled(), "arqonbus serving");
    Ok(RunningNode { node, addr, drain, stop_accepting, tracker, server, activity, stop_activity })
}

/// Kubernetes membership (its API client is named here only) and the rebalancing loop, when
/// `[cluster]` turns them on; both stop when the node drains.
fn start_cluster(node: &Arc<Node>, tracker: &TaskTracker, drain: &CancellationToken) -> Result<(), StartError> {
    let c = &node.config.cluster;
    let peers = if c.kube_membership {
        // In-cluster only (the pod's service account): no kubeconfig support in the binary.
        let config = kube::Config::incluster()
            .map_err(|e| StartError::Cluster(format!("not in a Kubernetes pod (no in-cluster Kubernetes API): {e}")))?;
        let client = kube::Client::try_from(config)
            .map_err(|e| StartError::Cluster(format!("cannot set up the Kubernetes API client: {e}")))?;
        let ns =
            if c.kube_namespace.is_empty() { client.default_namespace().to_owned() } else { c.kube_namespace.clone() };
        let timing = crate::cluster::kube::Timing::default();
        Some(crate::cluster::kube::spawn(client, &ns, &c.kube_service, timing, tracker, drain.clone()))
    } else {
        None
    };
    if c.rebalance || peers.is_some() {
        tracker.spawn(crate::cluster::run(node.clone(), peers, drain.clone()));
    }
    Ok(())
}

impl RunningNode {
    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's id.
    pub fn node_id(&self) -> &str {
        &self.node.id
    }

    /// Drains and stops: readiness false → wait `server.drain_delay_ms` → `draining` to every
    /// client → close 1012 → wait
    /// at most `server.shutdown_grace_ms` → stop the listener → leave the backplane.
    pub async fn shutdown(self) {
        let grace = Duration::from_millis(self.node.config.server.shutdown_grace_ms);
        self.node.draining.store(true, Ordering::Release);
        tracing::info!(node = %self.node.id, "draining");
        tokio::time::sleep(Duration::from_millis(self.node.config.server.drain_delay_ms)).await;
        self.drain.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!("shutdown grace period over with connections still open");
        }
        self.stop_accepting.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.server).await;
        // The clients' `disconnected` events are queued by now: a short, bounded flush.
        self.stop_activity.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.activity).await;
        self.node.backplane.leave().await;
        tracing::info!(node = %self.node.id, "stopped");
    }
}

//! The composition root: the only place that names concrete backends.
//!
//! Builds a node from a [`Config`] — router, backplane (memory or Redis), authenticator (none,
//! jwt, webhook) —
//! binds the listener and runs it until [`RunningNode::shutdown`], which drains in the one
//! documented order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, JwtAuthenticator, NoAuth, WebhookAuthenticator};
use crate::backplane::{Backplane, ChannelLimits, Inbound, MemoryBus, RedisBackplane, RedisStartError};
use crate::commands::Node;
use crate::config::{AuthKind, BackplaneKind, Config};
use crate::routing::Router;
use crate::transport::{routes, Shared};

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
    /// The authenticator could not be set up.
    #[error("cannot set up authentication: {0}")]
    Auth(String),
}

/// A node that is serving.
pub struct RunningNode {
    node: Arc<Node>,
    addr: SocketAddr,
    drain: CancellationToken,
    stop_accepting: CancellationToken,
    tracker: TaskTracker,
    server: JoinHandle<()>,
}

fn default_node_id() -> String {
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

fn authenticator(config: &Config) -> Result<Arc<dyn Authenticator>, StartError> {
    let a = &config.auth;
    Ok(match (a.kind, &a.jwt_secret, &a.webhook_url) {
        (AuthKind::Jwt, Some(secret), _) => {
            Arc::new(JwtAuthenticator::new(secret.expose(), a.jwt_issuer.as_deref(), a.jwt_audience.as_deref()))
        }
        (AuthKind::Webhook, _, Some(url)) => Arc::new(
            WebhookAuthenticator::new(
                url.expose(),
                Duration::from_millis(a.webhook_timeout_ms),
                Duration::from_secs(a.webhook_cache_s),
            )
            .map_err(StartError::Auth)?,
        ),
        (AuthKind::None, _, _) => Arc::new(NoAuth),
        // validate() refuses these; never fall back to no auth.
        (AuthKind::Jwt, None, _) => return Err(StartError::Auth("auth.jwt_secret is required".into())),
        (AuthKind::Webhook, _, None) => return Err(StartError::Auth("auth.webhook_url is required".into())),
    })
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
    let auth = authenticator(&config)?;
    let node = Arc::new(Node::new(id, config, backplane, router, auth));
    let drain = CancellationToken::new();
    let stop_accepting = CancellationToken::new();
    let tracker = TaskTracker::new();
    let shared = Shared {
        node: node.clone(),
        drain: drain.clone(),
        tracker: tracker.clone(),
        admitted: Arc::new(AtomicUsize::new(0)),
    };
    let app = routes(shared).into_make_service_with_connect_info::<SocketAddr>();
    let stop = stop_accepting.clone();
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            tracing::error!(error = %e, "listener failed");
        }
    });
    tracing::info!(node = %node.id, %addr, backplane = node.backplane.kind(), auth = node.auth.enabled(), "arqonbus serving");
    Ok(RunningNode { node, addr, drain, stop_accepting, tracker, server })
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
        self.node.backplane.leave().await;
        tracing::info!(node = %self.node.id, "stopped");
    }
}

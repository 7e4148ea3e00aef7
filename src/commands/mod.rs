//! Commands: what a client frame does.
//!
//! Owns the per-connection [`Session`], frame dispatch, the publish path shared with HTTP, and
//! one file per command (`subscribe.rs`, `history.rs`, …), each parsing its args and applying
//! them side by side. A command returns a reply; it never touches a socket: frames go to the
//! connection's outbox ([`ConnHandle`]). Imports routing, backplane, auth and protocol.

mod activity;
pub mod args;
mod channel_info;
mod create_channel;
mod delete_channel;
pub mod history;
mod list_channels;
mod ping;
mod presence;
mod publish;
mod refresh;
mod status;
mod subscribe;
mod unsubscribe;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::auth::{Authenticator, Identity};
use crate::backplane::{Backplane, BackplaneError, ChannelOptions};
use crate::config::Config;
use crate::protocol::{
    error_frame, parse_client_frame, raw, reply_frame, ClientFrame, ErrorBody, ErrorCode, Rejection,
};
use crate::routing::{ConnHandle, Router};
use crate::telemetry::metrics;

pub use activity::{
    queue as activity_queue, run as run_activity, Activity, ActivityQueue, ActivityReceiver, ErrorContext,
};
pub use args::Args;
pub use publish::{publish_event, Origin};

/// What a node shares between its connections and its HTTP API.
pub struct Node {
    /// This node's id.
    pub id: String,
    /// The validated configuration.
    pub config: Config,
    /// Cluster state.
    pub backplane: Arc<dyn Backplane>,
    /// Local routing.
    pub router: Arc<Router>,
    /// Credentials check.
    pub auth: Arc<dyn Authenticator>,
    /// Start time, for `uptime_s`.
    pub started: Instant,
    /// Set when the node drains: readiness turns false.
    pub draining: AtomicBool,
    /// Node-wide bucket for `POST /v1/publish`.
    pub http_limiter: DefaultDirectRateLimiter,
    /// Node-wide bucket for `GET /v1/history`.
    pub http_history_limiter: DefaultDirectRateLimiter,
    /// `_sys:activity` events waiting to be published ([`run_activity`] publishes them).
    activity: ActivityQueue,
}

impl Node {
    /// Assembles a node.
    pub fn new(
        id: String,
        config: Config,
        backplane: Arc<dyn Backplane>,
        router: Arc<Router>,
        auth: Arc<dyn Authenticator>,
        activity: ActivityQueue,
    ) -> Self {
        let rate = config.limits.http_publish_rate_per_s;
        let http_limiter = RateLimiter::direct(quota(rate, rate));
        let rate = config.limits.http_history_rate_per_s;
        let http_history_limiter = RateLimiter::direct(quota(rate, rate));
        Self {
            id,
            config,
            backplane,
            router,
            auth,
            started: Instant::now(),
            draining: AtomicBool::new(false),
            http_limiter,
            http_history_limiter,
            activity,
        }
    }

    /// Channel options from the configured defaults.
    pub fn default_options(&self) -> ChannelOptions {
        ChannelOptions {
            description: None,
            history_size: self.config.channels.history_size,
            history_ttl_s: self.config.channels.history_ttl_s,
            presence_events: false,
        }
    }

    /// Options for implicit creation, or `None` when `auto_create` is off. The server's own
    /// `_` rooms are always created on use.
    pub fn create_options(&self, key: &crate::protocol::ChannelKey) -> Option<ChannelOptions> {
        (self.config.channels.auto_create || key.is_reserved()).then(|| self.default_options())
    }

    /// Makes sure `key` exists, creating it when channels are created on use.
    pub async fn ensure_channel(&self, key: &crate::protocol::ChannelKey) -> Result<(), ErrorBody> {
        let create = self.create_options(key);
        self.backplane.ensure_channel(key, create.as_ref()).await.map_err(|e| backplane_error(e, Some(key)))
    }

    /// Bytes the items of one reply may take (`limits.max_reply_bytes` less room for the
    /// envelope around them).
    pub fn reply_budget(&self) -> usize {
        self.config.limits.max_reply_bytes.saturating_sub(REPLY_ROOM)
    }

    /// Whether the node is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

fn quota(rate: u32, burst: u32) -> Quota {
    let r = std::num::NonZeroU32::new(rate.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    let b = std::num::NonZeroU32::new(burst.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    Quota::per_second(r).allow_burst(b)
}

/// Bytes of a reply kept for its envelope (request id, field names, cursor): the items of a
/// reply get `limits.max_reply_bytes` less this.
pub const REPLY_ROOM: usize = 4096;

/// Takes one token from `limiter`, or says when to retry; `what` names the limit.
pub fn take_token(limiter: &DefaultDirectRateLimiter, what: &str) -> Result<(), ErrorBody> {
    limiter.check().map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ErrorBody::new(ErrorCode::RateLimited, format!("{what} rate limit exceeded"))
            .retry_after(wait.as_millis() as u64 + 1)
    })
}

/// Serializes `items` in order while they fit in `max_bytes` (the first always does); `true`
/// when some were left out.
pub fn fit<T: Serialize>(items: &[T], max_bytes: usize) -> (Vec<Box<RawValue>>, bool) {
    let mut out = Vec::with_capacity(items.len());
    let mut used = 0;
    for item in items {
        let v = to_raw(item);
        used += v.get().len() + 1;
        if used > max_bytes && !out.is_empty() {
            return (out, true);
        }
        out.push(v);
    }
    (out, false)
}

/// Maps a backplane failure onto the client-visible error table.
pub fn backplane_error(e: BackplaneError, key: Option<&crate::protocol::ChannelKey>) -> ErrorBody {
    match e {
        BackplaneError::NotFound => {
            let what = key.map_or_else(|| "channel".to_owned(), |k| format!("channel {k}"));
            ErrorBody::new(ErrorCode::NotFound, format!("{what} does not exist"))
        }
        BackplaneError::Exists => ErrorBody::new(ErrorCode::ChannelExists, "channel already exists"),
        BackplaneError::LimitExceeded(m) => ErrorBody::new(ErrorCode::LimitExceeded, m),
        BackplaneError::Unavailable(m) => {
            tracing::warn!(error = %m, "backplane unavailable");
            ErrorBody::new(ErrorCode::Unavailable, "backplane unavailable, nothing was stored; retry later")
                .retry_after(1000)
        }
        BackplaneError::Timeout(m) => {
            tracing::warn!(error = %m, "backplane answered too late");
            let msg =
                "no answer from the backplane in time: the outcome is unknown; retry with the same idempotency_key";
            ErrorBody::new(ErrorCode::Timeout, msg).retry_after(1000)
        }
        BackplaneError::Internal(m) => {
            tracing::error!(error = %m, "backplane failure");
            ErrorBody::new(ErrorCode::Internal, "internal error")
        }
    }
}

/// Serializes a reply result.
pub fn to_raw<T: Serialize>(v: &T) -> Box<RawValue> {
    raw(serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
}

/// The channel a command's args name, when both names are valid (for error activity only).
fn args_key(args: &serde_json::Map<String, serde_json::Value>) -> Option<crate::protocol::ChannelKey> {
    let room = args.get("room")?.as_str()?;
    let channel = args.get("channel")?.as_str()?;
    crate::protocol::ChannelKey::parse(room, channel).ok()
}

/// The commands of §4 (metric labels; anything else is `unknown`).
const COMMANDS: [&str; 11] = [
    "ping",
    "status",
    "subscribe",
    "unsubscribe",
    "history",
    "presence",
    "create_channel",
    "delete_channel",
    "list_channels",
    "channel_info",
    "refresh",
];

/// What a handler produced.
pub enum Outcome {
    /// A result to send as the `reply`.
    Reply(Box<RawValue>),
    /// The handler sent its reply itself (subscribe sends the reply before the replay).
    Sent,
}

/// What the transport should do after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Close the connection with this code.
    Close(u16),
}

/// One connection's state above the transport.
pub struct Session {
    /// The node.
    pub node: Arc<Node>,
    /// The connection's outbox and subscriptions.
    pub conn: Arc<ConnHandle>,
    /// Who it is.
    pub identity: Identity,
    limiter: DefaultDirectRateLimiter,
    /// Bounds the commands one connection runs.
    commands: DefaultDirectRateLimiter,
    /// Bounds the `error` activity events one connection can cause (a client hammering past
    /// its rate limit must not turn every refusal into a publish).
    error_activity: DefaultDirectRateLimiter,
    violations: u32,
}

/// `error` activity events per connection and second (burst twice that); refusals beyond it
/// are only counted in `arqonbus_errors_total`.
pub const ERROR_ACTIVITY_PER_S: u32 = 5;

impl Session {
    /// Registers the connection with the router and announces it.
    pub async fn open(node: Arc<Node>, conn: Arc<ConnHandle>, identity: Identity) -> Self {
        let l = &node.config.limits;
        let limiter = RateLimiter::direct(quota(l.publish_rate_per_s, l.publish_burst));
        let commands = RateLimiter::direct(quota(l.command_rate_per_s, l.command_burst));
        node.router.register(&conn);
        let error_activity = RateLimiter::direct(quota(ERROR_ACTIVITY_PER_S, ERROR_ACTIVITY_PER_S * 2));
        let s = Self { node, conn, identity, limiter, commands, error_activity, violations: 0 };
        s.activity(Activity::Connected, None);
        s
    }

    /// Unix seconds at which the credentials expire.
    pub fn expires_at(&self) -> Option<i64> {
        self.identity.expires_at
    }

    /// Handles one text frame.
    pub async fn handle_text(&mut self, text: &str) -> Flow {
        let frame = match parse_client_frame(text) {
            Ok(f) => f,
            Err(r) => {
                let ctx = ErrorContext { frame_type: r.frame_type, ..Default::default() };
                return self.reject(r, ctx).await;
            }
        };
        let kind = match &frame {
            ClientFrame::Event(_) => "event",
            ClientFrame::Private(_) => "private",
            ClientFrame::Command(_) => "command",
        };
        metrics().messages_in.with_label_values(&[kind]).inc();
        // What an error activity event may say about the frame (cheap: an Arc clone for
        // events, the name for commands, which are not the hot path).
        let mut ctx = ErrorContext { frame_type: Some(kind), ..Default::default() };
        let (request_id, result) = match frame {
            ClientFrame::Event(ev) => {
                ctx.key = Some(ev.key.clone());
                (ev.id.clone(), publish::from_client(self, ev).await)
            }
            ClientFrame::Private(p) => (p.id.clone(), publish::private(self, p).await),
            ClientFrame::Command(c) => {
                ctx.command = Some(c.command.chars().take(64).collect());
                ctx.key = args_key(&c.args);
                let id = c.id.clone();
                let result = match take_token(&self.commands, "command") {
                    Ok(()) => self.command(c).await,
                    Err(e) => Err(e),
                };
                (Some(id), result)
            }
        };
        match result {
            Ok(outcome) => {
                self.violations = 0;
                if let (Some(id), Outcome::Reply(r)) = (request_id, outcome) {
                    self.conn.deliver(reply_frame(&id, &r));
                }
                Flow::Continue
            }
            Err(error) => self.reject(Rejection { request_id, frame_type: Some(kind), error }, ctx).await,
        }
    }

    async fn command(&mut self, c: crate::protocol::CommandFrame) -> Result<Outcome, ErrorBody> {
        tracing::debug!(client_id = %self.conn.client_id, command = %c.command, "command");
        let started = Instant::now();
        let name = COMMANDS.iter().find(|n| **n == c.command).copied().unwrap_or("unknown");
        let result = self.dispatch(c).await;
        metrics().command_duration.with_label_values(&[name]).observe(started.elapsed().as_secs_f64());
        result
    }

    async fn dispatch(&mut self, c: crate::protocol::CommandFrame) -> Result<Outcome, ErrorBody> {
        let args = args::Args::new(c.args);
        match c.command.as_str() {
            "ping" => ping::run(args),
            "status" => status::run(self, args).await,
            "subscribe" => subscribe::run(self, &c.id, args).await,
            "unsubscribe" => unsubscribe::run(self, args).await,
            "history" => history::run(self, args).await,
            "presence" => presence::run(self, args).await,
            "create_channel" => create_channel::run(self, args).await,
            "delete_channel" => delete_channel::run(self, args).await,
            "list_channels" => list_channels::run(self, args).await,
            "channel_info" => channel_info::run(self, args).await,
            "refresh" => refresh::run(self, args).await,
            other => {
                let name: String = other.chars().take(64).collect();
                Err(ErrorBody::new(ErrorCode::UnknownCommand, format!("unknown command {name:?}")))
            }
        }
    }

    /// Answers a refused frame with its `error`, reports it on `_sys:activity`, and counts
    /// protocol violations (the tenth in a row closes with 1008).
    async fn reject(&mut self, r: Rejection, ctx: ErrorContext) -> Flow {
        let code = r.error.code;
        metrics().errors.with_label_values(&[code.as_str()]).inc();
        tracing::debug!(client_id = %self.conn.client_id, error = code.as_str(), "frame refused");
        self.conn.deliver(error_frame(r.request_id.as_deref(), &r.error));
        let mut flow = Flow::Continue;
        if code.is_violation() {
            self.violations += 1;
            if self.violations >= self.node.config.limits.max_violations {
                tracing::info!(client_id = %self.conn.client_id, "too many protocol violations, closing with 1008");
                flow = Flow::Close(crate::protocol::close::POLICY_VIOLATION);
            }
        } else {
            self.violations = 0;
        }
        let close = match flow {
            Flow::Close(c) => Some(c),
            Flow::Continue => None,
        };
        if close.is_none() && self.error_activity.check().is_err() {
            return flow;
        }
        let user = self.identity.user.as_deref();
        activity::publish_error(&self.node, &self.conn.client_id, user, code.as_str(), &ctx, close);
        flow
    }

    /// Queues an activity event for `_sys:activity`.
    fn activity(&self, kind: Activity, key: Option<&crate::protocol::ChannelKey>) {
        activity::publish(&self.node, kind, &self.conn.client_id, self.identity.user.as_deref(), key);
    }

    /// Releases everything the connection held: subscriptions, presence, interest.
    pub async fn close(self) {
        for (key, sub) in self.node.router.unregister(&self.conn) {
            unsubscribe::release(&self, &key, &sub).await;
        }
        self.activity(Activity::Disconnected, None);
    }

    /// Checks and takes a publish token.
    fn take_publish_token(&self) -> Result<(), ErrorBody> {
        take_token(&self.limiter, "publish")
    }

    /// Checks subscribe permission on `key` (which also governs history, presence and
    /// channel info).
    fn check_readable(&self, key: &crate::protocol::ChannelKey) -> Result<(), ErrorBody> {
        if self.identity.permissions.can_subscribe(key) {
            Ok(())
        } else {
            Err(ErrorBody::new(ErrorCode::Forbidden, format!("no subscribe permission on {key}")))
        }
    }

    fn require_admin(&self) -> Result<(), ErrorBody> {
        if self.identity.permissions.admin {
            Ok(())
        } else {
            Err(ErrorBody::new(ErrorCode::Forbidden, "this command needs admin permission"))
        }
    }
}

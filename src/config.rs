//! Configuration: built-in defaults → TOML file → `ARQONBUS_*` environment, in that order.
//!
//! Nested keys use `__` in the environment (`ARQONBUS_LIMITS__MAX_FRAME_BYTES`). Unknown keys
//! and invalid values stop start-up with a message naming the key; `validate()` runs once.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

mod auth;
mod cluster;
mod hardening;
pub mod net;
mod telemetry;

pub use auth::{ApiKeyConfig, ApiScope, AuthConfig, AuthKind, HttpConfig, JWT_ALGORITHMS};
pub use cluster::ClusterConfig;
pub use hardening::FRAME_OVERHEAD;
pub use telemetry::{OtlpProtocol, TelemetryConfig};

/// The file read when `--config` is not given, if it exists in the working directory.
pub const DEFAULT_FILE: &str = "arqonbus.toml";

/// A configuration error: the key and why its value was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value failed validation.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// Dotted key, e.g. `limits.max_frame_bytes`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The file or environment could not be read into the typed config.
    #[error("invalid configuration: {0}")]
    Load(String),
    /// `--config` named a file that does not exist.
    #[error("invalid configuration: config file {0} does not exist")]
    MissingFile(PathBuf),
}

/// A secret string: never printed, never logged.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"********\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("********")
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listener, identity and lifecycle.
    pub server: ServerConfig,
    /// Per-connection limits.
    pub limits: LimitsConfig,
    /// Channel defaults and history.
    pub channels: ChannelsConfig,
    /// Which backplane carries events between nodes.
    pub backplane: BackplaneConfig,
    /// Client authentication.
    pub auth: AuthConfig,
    /// The HTTP publish/history API.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// OpenTelemetry traces.
    pub telemetry: TelemetryConfig,
    /// Kubernetes-aware membership and connection rebalancing.
    pub cluster: ClusterConfig,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address for HTTP and WebSocket.
    pub listen: String,
    /// Node name shown to clients; default: host name + random suffix.
    pub node_id: Option<String>,
    /// Connections this node accepts before answering 503.
    pub max_connections: usize,
    /// Time between readiness turning false and clients being told to leave, so that load
    /// balancers stop sending new connections first.
    pub drain_delay_ms: u64,
    /// Longest wait for connections to close after a drain starts.
    pub shutdown_grace_ms: u64,
    /// `reconnect_after_ms` in `draining` frames is spread over 0..this.
    pub drain_jitter_ms: u64,
    /// Browser origins allowed to open a WebSocket (`scheme://host[:port]`, `*` for one host
    /// label, or `["*"]` for any). Empty: only same-origin requests and clients without `Origin`.
    pub allowed_origins: Vec<String>,
    /// Addresses (IP or CIDR) of proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Longest wait for a request's headers, and for the next request on an idle keep-alive
    /// connection; past it the connection is closed.
    pub header_timeout_ms: u64,
    /// Longest wait for a request body (`POST /v1/publish`); past it: 408.
    pub body_timeout_ms: u64,
    /// TCP connections that are not (yet) WebSockets — HTTP requests, handshakes in progress,
    /// idle keep-alive — held at once; more are closed at accept.
    pub max_pending_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            node_id: None,
            max_connections: 10_000,
            drain_delay_ms: 0,
            shutdown_grace_ms: 10_000,
            drain_jitter_ms: 5_000,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            max_pending_connections: 1024,
        }
    }
}

/// `[limits]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest accepted frame; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Publish token bucket refill per connection.
    pub publish_rate_per_s: u32,
    /// Publish token bucket size per connection.
    pub publish_burst: u32,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Frames queued to one client before it is closed with 4008.
    pub outbound_queue: usize,
    /// Bytes queued to one client (events, replays, replies, system frames) before it is closed
    /// with 4008.
    pub outbound_queue_bytes: usize,
    /// Largest reply the server builds (history, presence and channel lists are cut to fit).
    pub max_reply_bytes: usize,
    /// A socket that accepts no bytes for this long is closed at once (ms).
    pub write_timeout_ms: u64,
    /// Command token bucket refill per connection.
    pub command_rate_per_s: u32,
    /// Command token bucket size per connection.
    pub command_burst: u32,
    /// WebSocket connections per authenticated user on this node (0 = no limit).
    pub max_connections_per_user: usize,
    /// WebSocket handshakes per client IP and second (0 = no limit); burst twice this.
    pub connect_rate_per_ip: u32,
    /// Seconds between server pings; silence for twice this closes the connection.
    pub heartbeat_s: u64,
    /// Protocol violations in a row before close 1008.
    pub max_violations: u32,
    /// Node-wide token bucket refill for `POST /v1/publish`.
    pub http_publish_rate_per_s: u32,
    /// Node-wide token bucket refill for `GET /v1/history`.
    pub http_history_rate_per_s: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 65_536,
            publish_rate_per_s: 50,
            publish_burst: 100,
            max_subscriptions: 256,
            outbound_queue: 1024,
            outbound_queue_bytes: 1 << 20,
            max_reply_bytes: 1 << 20,
            write_timeout_ms: 10_000,
            command_rate_per_s: 100,
            command_burst: 200,
            max_connections_per_user: 100,
            connect_rate_per_ip: 0,
            heartbeat_s: 25,
            max_violations: 10,
            http_publish_rate_per_s: 1000,
            http_history_rate_per_s: 1000,
        }
    }
}

/// `[channels]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    /// Create channels on first use; off: undeclared channels are NOT_FOUND.
    pub auto_create: bool,
    /// Default events kept per channel.
    pub history_size: u64,
    /// Default seconds an event is kept.
    pub history_ttl_s: u64,
    /// Seconds an idempotency key is remembered.
    pub dedupe_window_s: u64,
    /// Events per page when replaying a gap.
    pub replay_page: usize,
    /// Live events buffered per subscription while its gap replays.
    pub replay_buffer: usize,
    /// Channels one room may hold (every backplane).
    pub max_channels_per_room: usize,
    /// Channels this node may hold (memory backplane).
    pub max_channels: usize,
    /// Bytes of history and idempotency results this node may hold (memory backplane); past it
    /// publishes are refused with LIMIT_EXCEEDED until retention frees room.
    pub memory_max_bytes: usize,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            auto_create: true,
            history_size: 1000,
            history_ttl_s: 86_400,
            dedupe_window_s: 300,
            replay_page: 256,
            replay_buffer: 10_000,
            max_channels_per_room: 10_000,
            max_channels: 100_000,
            memory_max_bytes: 512 << 20,
        }
    }
}

/// Which backplane to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackplaneKind {
    /// In-process; one node (or several in one process, for tests).
    Memory,
    /// Redis (standalone, Cluster or Sentinel): any number of nodes.
    Redis,
}

/// `[backplane]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackplaneConfig {
    /// `memory` or `redis`; unset: `redis` when `url` is set, else `memory`.
    pub kind: Option<BackplaneKind>,
    /// Redis URL: `redis://`, `rediss://` (TLS), `redis-cluster://host:port?node=host:port`,
    /// `redis-sentinel://host:port?sentinelServiceName=name&node=host:port` (TLS: `rediss-…`).
    pub url: Option<Secret>,
    /// ACL user name (overrides the URL's).
    pub username: Option<String>,
    /// Password (overrides the URL's).
    pub password: Option<Secret>,
    /// Sentinel: the monitored service name; with `sentinels`, overrides the URL's servers.
    pub sentinel_service: Option<String>,
    /// Sentinel: `host:port` of each sentinel.
    pub sentinels: Vec<String>,
    /// PEM file of the CA(s) to trust for `rediss://` instead of the system roots (a private CA).
    pub tls_ca_file: Option<PathBuf>,
    /// Prefix of every Redis key and pub/sub channel.
    pub key_prefix: String,
    /// How long one Redis command may take before it fails (ms).
    pub command_timeout_ms: u64,
    /// A node not heard from for this long is dead: its presence entries vanish (s).
    pub node_ttl_s: u64,
    /// Period of the readiness canary (publish → receive through pub/sub) (ms).
    pub canary_interval_ms: u64,
    /// Period of the check that every subscribed channel is at the top of its stream (ms).
    pub sweep_interval_ms: u64,
    /// Redis Cluster: period of the check that every subscribed channel's hash slot is still
    /// served by the master holding its subscription (ms).
    pub slot_check_interval_ms: u64,
    /// Replicas that must confirm a publish (Redis `WAIT`) before it is acked; 0: the master's
    /// answer is enough.
    pub min_replicas_acked: u32,
    /// How long a publish waits for those replicas (ms); then it answers TIMEOUT.
    pub wait_timeout_ms: u64,
}

impl Default for BackplaneConfig {
    fn default() -> Self {
        Self {
            kind: None,
            url: None,
            username: None,
            password: None,
            sentinel_service: None,
            sentinels: Vec::new(),
            tls_ca_file: None,
            key_prefix: "arqonbus".into(),
            command_timeout_ms: 2000,
            node_ttl_s: 10,
            canary_interval_ms: 1000,
            sweep_interval_ms: 5000,
            slot_check_interval_ms: 1000,
            min_replicas_acked: 0,
            wait_timeout_ms: 1000,
        }
    }
}

impl BackplaneConfig {
    /// The backplane in use.
    pub fn effective_kind(&self) -> BackplaneKind {
        self.kind.unwrap_or(if self.url.is_some() || !self.sentinels.is_empty() {
            BackplaneKind::Redis
        } else {
            BackplaneKind::Memory
        })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `arqonbus=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

impl Config {
    /// Loads defaults → file → environment and validates the result.
    ///
    /// `file`: the `--config` path; when `None`, `arqonbus.toml` is read if present.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let vars =
            std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()));
        check_env(vars)?;
        // Only `ARQONBUS_<SECTION>__<KEY>` is configuration; other `ARQONBUS_*` variables
        // (`ARQONBUS_CONFIG`, the load generator's `ARQONBUS_BENCH_*`, a harness's
        // `ARQONBUS_BIN`) are not read as settings.
        let env = Env::prefixed(ENV_PREFIX).split("__").filter(|k| k.as_str().contains('.'));
        Self::load_from(file, env)
    }

    fn load_from(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(p) if !p.exists() => return Err(ConfigError::MissingFile(p.to_owned())),
            Some(p) => fig = fig.merge(Toml::file_exact(p)),
            None if Path::new(DEFAULT_FILE).exists() => fig = fig.merge(Toml::file_exact(DEFAULT_FILE)),
            None => {}
        }
        let config: Config = fig.merge(env).extract().map_err(|e| ConfigError::Load(flatten(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value once; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.to_owned() });
        if let Some(key) = serde_json::to_value(self).ok().as_ref().and_then(over_toml_integers) {
            // The environment can hold more, but `arqonbus config` could not print it as a file.
            return Err(ConfigError::Load(format!("{key}: must be at most {} (the largest TOML integer)", i64::MAX)));
        }
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return bad("server.listen", "must be an IP address and port, e.g. 127.0.0.1:8080");
        }
        if let Some(id) = &self.server.node_id {
            if crate::protocol::validate_name(id).is_err() {
                return bad("server.node_id", "must be 1-64 characters of A-Z a-z 0-9 _ - .");
            }
        }
        let l = &self.limits;
        let checks: [(&'static str, bool, &str); 11] = [
            ("server.max_connections", self.server.max_connections >= 1, "must be at least 1"),
            (
                "limits.max_frame_bytes",
                (1024..=16 << 20).contains(&l.max_frame_bytes),
                "must be between 1024 and 16777216",
            ),
            ("limits.publish_rate_per_s", l.publish_rate_per_s >= 1, "must be at least 1"),
            ("limits.publish_burst", l.publish_burst >= 1, "must be at least 1"),
            ("limits.max_subscriptions", l.max_subscriptions >= 1, "must be at least 1"),
            ("limits.outbound_queue", (16..=1_000_000).contains(&l.outbound_queue), "must be between 16 and 1000000"),
            ("limits.heartbeat_s", (1..=3600).contains(&l.heartbeat_s), "must be between 1 and 3600"),
            ("limits.max_violations", l.max_violations >= 1, "must be at least 1"),
            ("limits.http_publish_rate_per_s", l.http_publish_rate_per_s >= 1, "must be at least 1"),
            ("channels.history_size", self.channels.history_size <= 100_000, "must be at most 100000"),
            (
                "channels.history_ttl_s",
                (1..=2_592_000).contains(&self.channels.history_ttl_s),
                "must be between 1 and 2592000",
            ),
        ];
        for (key, ok, reason) in checks {
            if !ok {
                return bad(key, reason);
            }
        }
        let c = &self.channels;
        if !(1..=86_400).contains(&c.dedupe_window_s) {
            return bad("channels.dedupe_window_s", "must be between 1 and 86400");
        }
        if !(1..=10_000).contains(&c.replay_page) {
            return bad("channels.replay_page", "must be between 1 and 10000");
        }
        if c.replay_buffer < 1 {
            return bad("channels.replay_buffer", "must be at least 1");
        }
        self.validate_backplane()?;
        self.validate_hardening()?;
        self.validate_telemetry()?;
        self.auth.validate()?;
        self.http.validate()?;
        self.cluster.validate()?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad("log.level", "is not a valid filter (e.g. info, debug, arqonbus=debug)");
        }
        Ok(())
    }

    fn validate_backplane(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.to_owned() });
        let b = &self.backplane;
        if b.kind == Some(BackplaneKind::Memory) && (b.url.is_some() || !b.sentinels.is_empty()) {
            return bad("backplane.kind", "is \"memory\" but backplane.url or backplane.sentinels is set");
        }
        if let Some(url) = &b.url {
            let scheme = url.expose().split("://").next().unwrap_or_default();
            let known = ["redis", "rediss", "redis-cluster", "rediss-cluster", "redis-sentinel", "rediss-sentinel"];
            if !url.expose().contains("://") || !known.contains(&scheme) {
                return bad(
                    "backplane.url",
                    "must start with redis://, rediss://, redis-cluster:// or redis-sentinel://",
                );
            }
        }
        if let Some(ca) = &b.tls_ca_file {
            if !ca.is_file() {
                return bad("backplane.tls_ca_file", "must name a readable PEM file");
            }
            if !b.url.as_ref().is_some_and(|u| u.expose().starts_with("rediss")) {
                return bad(
                    "backplane.tls_ca_file",
                    "needs a TLS url (rediss://, rediss-cluster://, rediss-sentinel://)",
                );
            }
        }
        if b.sentinels.is_empty() != b.sentinel_service.is_none() {
            return bad("backplane.sentinels", "and backplane.sentinel_service must be set together");
        }
        if b.sentinels.iter().any(|s| s.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err())) {
            return bad("backplane.sentinels", "must be host:port entries");
        }
        if b.key_prefix.is_empty() || b.key_prefix.len() > 64 || b.key_prefix.contains(['{', '}', ' ']) {
            return bad("backplane.key_prefix", "must be 1-64 characters without braces or spaces");
        }
        if b.min_replicas_acked > 0 && self.backplane.effective_kind() != BackplaneKind::Redis {
            return bad(
                "backplane.min_replicas_acked",
                "needs the redis backplane (set backplane.url); the memory backplane has no replicas",
            );
        }
        if b.min_replicas_acked > 0 && b.wait_timeout_ms >= b.command_timeout_ms {
            return bad(
                "backplane.wait_timeout_ms",
                "must be below backplane.command_timeout_ms when backplane.min_replicas_acked is set (WAIT holds the \
                 connection: a longer wait would look like a dead connection)",
            );
        }
        let checks: [(&'static str, bool, &str); 7] = [
            (
                "backplane.command_timeout_ms",
                (100..=60_000).contains(&b.command_timeout_ms),
                "must be between 100 and 60000",
            ),
            ("backplane.node_ttl_s", (2..=3600).contains(&b.node_ttl_s), "must be between 2 and 3600"),
            (
                "backplane.canary_interval_ms",
                (100..=60_000).contains(&b.canary_interval_ms),
                "must be between 100 and 60000",
            ),
            (
                "backplane.sweep_interval_ms",
                (100..=600_000).contains(&b.sweep_interval_ms),
                "must be between 100 and 600000",
            ),
            (
                "backplane.slot_check_interval_ms",
                (100..=600_000).contains(&b.slot_check_interval_ms),
                "must be between 100 and 600000",
            ),
            ("backplane.min_replicas_acked", b.min_replicas_acked <= 16, "must be between 0 and 16"),
            ("backplane.wait_timeout_ms", (10..=60_000).contains(&b.wait_timeout_ms), "must be between 10 and 60000"),
        ];
        for (key, ok, reason) in checks {
            if !ok {
                return bad(key, reason);
            }
        }
        Ok(())
    }

    /// The resolved configuration as TOML, secrets masked.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }

    /// The listen address (validated).
    pub fn listen_addr(&self) -> SocketAddr {
        self.server.listen.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }
}

const ENV_PREFIX: &str = "ARQONBUS_";

/// The sections of the configuration, as the first part of an `ARQONBUS_<SECTION>__<KEY>` name.
pub const SECTIONS: [&str; 9] =
    ["server", "limits", "channels", "backplane", "auth", "http", "log", "telemetry", "cluster"];

/// Refuses, by name, the `ARQONBUS_` variables that would not do what they say:
/// - a section name followed by a single underscore (`ARQONBUS_LIMITS_MAX_FRAME_BYTES`): a
///   mistyped setting, not a variable of another tool;
/// - a setting whose key has an empty part (`ARQONBUS_LIMITS__`, `ARQONBUS_LIMITS____X`), which
///   figment skips, where any other unknown key is refused;
/// - a setting whose quoted value (`"…"`, also inside `[…]` or `{…}`) has an escape after a
///   non-ASCII character: figment 0.10 unescapes at a character count taken for a byte offset,
///   and panics or drops text.
fn check_env(vars: impl Iterator<Item = (String, String)>) -> Result<(), ConfigError> {
    for (name, value) in vars {
        mistyped_section(&name)?;
        let name = name.trim();
        let (Some(prefix), Some(key)) = (name.get(..ENV_PREFIX.len()), name.get(ENV_PREFIX.len()..)) else {
            continue;
        };
        let key = key.replace("__", ".");
        if !prefix.eq_ignore_ascii_case(ENV_PREFIX) || !key.contains('.') {
            continue;
        }
        let why = if key.trim().split('.').any(str::is_empty) {
            "names no key (parts are joined by a double underscore, e.g. ARQONBUS_LIMITS__MAX_FRAME_BYTES)"
        } else if value.trim_start().starts_with(['"', '[', '{'])
            && value.find(|c: char| !c.is_ascii()).is_some_and(|at| value[at..].contains('\\'))
        {
            "a quoted value cannot have a \\ escape after a non-ASCII character (write the character itself)"
        } else {
            continue;
        };
        return Err(ConfigError::Load(format!("environment variable {name}: {why}")));
    }
    Ok(())
}

/// `ARQONBUS_LIMITS_MAX_FRAME_BYTES` and the like: a section name followed by one underscore.
fn mistyped_section(name: &str) -> Result<(), ConfigError> {
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else { return Ok(()) };
    let lower = rest.to_ascii_lowercase();
    if lower.contains("__") {
        return Ok(());
    }
    if let Some(section) = SECTIONS.iter().find(|s| lower.starts_with(&format!("{s}_"))) {
        let key = &rest[section.len() + 1..];
        return Err(ConfigError::Load(format!(
            "{name}: nested keys take a double underscore: ARQONBUS_{}__{key}",
            section.to_ascii_uppercase()
        )));
    }
    Ok(())
}

/// The dotted key of the first integer over `i64::MAX`, the largest a TOML file holds.
fn over_toml_integers(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_u64() && n.as_i64().is_none() => Some(String::new()),
        Value::Object(m) => m.iter().find_map(|(k, v)| {
            over_toml_integers(v).map(|rest| if rest.is_empty() { k.clone() } else { format!("{k}.{rest}") })
        }),
        Value::Array(items) => items.iter().find_map(over_toml_integers),
        _ => None,
    }
}

/// Figment errors can be chained; show each with the key path and the source.
fn flatten(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let from = e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_default();
            if key.is_empty() {
                format!("{} ({from})", e.kind)
            } else {
                format!("{key}: {} (from {from})", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn sections_name_every_part_of_the_configuration() {
        let v = toml::Value::try_from(Config::default()).unwrap();
        let mut names: Vec<&str> = v.as_table().unwrap().keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut want = SECTIONS.to_vec();
        want.sort_unstable();
        assert_eq!(names, want);
    }

    #[test]
    fn other_arqonbus_variables_are_not_settings_but_mistyped_ones_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ARQONBUS_BIN", "/usr/local/bin/arqonbus");
            jail.set_env("ARQONBUS_BENCH_URL", "ws://127.0.0.1:8080/ws");
            jail.set_env("ARQONBUS_LIMITS__HEARTBEAT_S", "7");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.limits.heartbeat_s, 7);
            jail.set_env("ARQONBUS_LIMITS_HEARTBEAT_S", "9");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("ARQONBUS_LIMITS__HEARTBEAT_S"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn precedence_env_over_file_over_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("a.toml", "[limits]\nmax_frame_bytes = 2048\npublish_burst = 7\n")?;
            jail.set_env("ARQONBUS_LIMITS__MAX_FRAME_BYTES", "4096");
            let c = Config::load(Some(Path::new("a.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.limits.max_frame_bytes, 4096);
            assert_eq!(c.limits.publish_burst, 7);
            assert_eq!(c.limits.max_subscriptions, 256);
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ARQONBUS_LIMITS__HEARTBEAT_S", "0");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("limits.heartbeat_s"), "{e}");
            jail.set_env("ARQONBUS_LIMITS__HEARTBEAT_S", "abc");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("heartbeat_s"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn integers_a_config_file_cannot_hold_are_refused() {
        // Found by tests/fuzz_config.rs: accepted from the environment, then `arqonbus config`
        // printed "# cannot render configuration" instead of the configuration.
        figment::Jail::expect_with(|jail| {
            jail.set_env("ARQONBUS_SERVER__MAX_CONNECTIONS", "9223372036854775808");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("server.max_connections: must be at most 9223372036854775807"), "{e}");
            jail.set_env("ARQONBUS_SERVER__MAX_CONNECTIONS", "9223372036854775807");
            let printed = Config::load(None).map_err(|e| e.to_string())?.to_toml();
            assert!(printed.contains("max_connections = 9223372036854775807"), "{printed}");
            Ok(())
        });
    }

    #[test]
    fn variables_that_name_no_key_are_refused() {
        // Found by tests/fuzz_config.rs: figment skipped these silently.
        for name in ["ARQONBUS_LIMITS__", "ARQONBUS_LIMITS____MAX_FRAME_BYTES", "arqonbus___x"] {
            figment::Jail::expect_with(|jail| {
                jail.set_env(name, "2048");
                let e = Config::load(None).unwrap_err().to_string();
                assert!(e.contains(&format!("environment variable {name}: names no key")), "{e}");
                Ok(())
            });
        }
    }

    #[test]
    fn quoted_values_figment_would_cut_are_refused() {
        // Found by tests/fuzz_config.rs: figment panicked on the first, and read "é\n" from the
        // second.
        for value in [r#""טּ\᨞""#, r#""éé\n""#, r#"["é\t"]"#] {
            figment::Jail::expect_with(|jail| {
                jail.set_env("ARQONBUS_SERVER__NODE_ID", value);
                let e = Config::load(None).unwrap_err().to_string();
                assert!(e.contains("environment variable ARQONBUS_SERVER__NODE_ID: a quoted value"), "{e}");
                Ok(())
            });
        }
        figment::Jail::expect_with(|jail| {
            jail.set_env("ARQONBUS_SERVER__NODE_ID", r#""node\u002da""#);
            assert_eq!(Config::load(None).map_err(|e| e.to_string())?.server.node_id.as_deref(), Some("node-a"));
            // Unquoted, the value is taken as it is: here, refused as a name.
            jail.set_env("ARQONBUS_SERVER__NODE_ID", "é\\n");
            assert!(Config::load(None).unwrap_err().to_string().contains("server.node_id: must be"));
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("arqonbus.toml", "[limits]\nmax_frame_byte = 2048\n")?;
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("max_frame_byte"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn replica_acknowledged_publishes_need_redis_and_a_wait_below_the_command_timeout() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ARQONBUS_BACKPLANE__MIN_REPLICAS_ACKED", "1");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("backplane.min_replicas_acked") && e.contains("needs the redis backplane"), "{e}");
            jail.set_env("ARQONBUS_BACKPLANE__URL", "redis://127.0.0.1:6379");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!((c.backplane.min_replicas_acked, c.backplane.wait_timeout_ms), (1, 1000));
            jail.set_env("ARQONBUS_BACKPLANE__WAIT_TIMEOUT_MS", "2000");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("backplane.wait_timeout_ms") && e.contains("below"), "{e}");
            jail.set_env("ARQONBUS_BACKPLANE__WAIT_TIMEOUT_MS", "500");
            jail.set_env("ARQONBUS_BACKPLANE__MIN_REPLICAS_ACKED", "17");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("backplane.min_replicas_acked: must be between 0 and 16"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn webhook_auth_needs_an_http_url() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ARQONBUS_AUTH__KIND", "webhook");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("auth.webhook_url") && e.contains("required"), "{e}");
            for bad in ["ftp://auth.example/check", "not a url", "http://", "/check"] {
                jail.set_env("ARQONBUS_AUTH__WEBHOOK_URL", bad);
                let e = Config::load(None).unwrap_err().to_string();
                assert!(e.contains("auth.webhook_url"), "{bad}: {e}");
            }
            jail.set_env("ARQONBUS_AUTH__WEBHOOK_URL", "https://auth.example:8443/check?x=1");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.auth.kind, AuthKind::Webhook);
            assert_eq!(c.auth.webhook_timeout_ms, 2000);
            assert_eq!(c.auth.webhook_cache_s, 0);
            jail.set_env("ARQONBUS_AUTH__WEBHOOK_TIMEOUT_MS", "0");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("auth.webhook_timeout_ms"), "{e}");
            jail.set_env("ARQONBUS_AUTH__WEBHOOK_TIMEOUT_MS", "500");
            jail.set_env("ARQONBUS_AUTH__WEBHOOK_CACHE_S", "90000");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.contains("auth.webhook_cache_s"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn secrets_are_masked() {
        let mut c = Config::default();
        c.http.api_key = Some(Secret::from("0123456789abcdef-secret"));
        c.backplane.url = Some(Secret::from("rediss://user:redis-pass-secret@redis.example:6380"));
        c.backplane.password = Some(Secret::from("redis-pass-secret"));
        c.auth.webhook_url = Some(Secret::from("https://hook:hook-pass-secret@auth.example/check"));
        let out = c.to_toml();
        assert!(!out.contains("0123456789abcdef-secret"));
        assert!(!out.contains("redis-pass-secret") && !out.contains("hook-pass-secret"), "{out}");
        assert!(out.contains("********"));
    }
}

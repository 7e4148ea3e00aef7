//! `arqonbus bench`: a load generator for any ArqonBus server (wire protocol v1).
//!
//! # What it does
//!
//! It runs as its own process against a server URL, or the URLs of several gateway nodes
//! (plain `ws://` only; see [Clusters](#clusters)), and:
//! 1. opens `--subscribers` connections (at most `--connect-concurrency` being set up at
//!    once); subscriber *i* reads the `welcome` frame and subscribes to channel
//!    `c{i % channels}` of `--room`. The reply's `result.offset` (latest, or null) tells it
//!    the first offset to expect;
//! 2. opens `--publishers` connections;
//! 3. with `--server-pid`, waits a few seconds for things to settle and reads the server's
//!    VmRSS before and after connecting, giving the server memory per connection;
//! 4. holds everything idle for `--hold-secs` (the idle/memory mode: `--publishers 0`);
//! 5. publishes `{"type":"event","room":R,"channel":C,"payload":{"t":<unix ns>,"seq":N,"pad":"x…"}}`
//!    at `--rate` events/s in total (split evenly over publishers, cycling over channels)
//!    for `--warmup-secs` and then `--duration-secs` (the measurement window). Publishers
//!    are paced by a tokio interval and catch up after a late wake-up with a burst. Without
//!    `--ack` events carry no `id` (fire and forget); with `--ack` each has an id and the
//!    publisher counts `reply` (ack) and `error` answers and measures ack latency;
//! 6. waits (at most 5 s) for in-flight deliveries, closes every connection, and reports.
//!
//! Subscribers check each channel's offsets: contiguous and in order is normal; an offset
//! ahead of the expected one is a *gap*, a skipped offset arriving later is *out-of-order*,
//! an offset already seen (or older than the subscription) is a *duplicate*. Delivery
//! latency is receive time − payload `t` (both wall clock, same host), in µs. Frames are
//! scanned cheaply (top-level field walk, no JSON tree), as the bench shares the CPU with
//! the server.
//!
//! The run is bounded: every connection setup times out after 15 s, closing after 2 s,
//! draining after 5 s; Ctrl-C ends the run early and still reports.
//!
//! # Server settings it needs
//!
//! The server's default per-connection publish limit (50/s, burst 100) would reject most
//! publishes with `RATE_LIMITED`. Start the server with, e.g.:
//!
//! ```text
//! ARQONBUS_LIMITS__PUBLISH_RATE_PER_S=1000000 ARQONBUS_LIMITS__PUBLISH_BURST=1000000 arqonbus serve
//! ```
//!
//! With auth on, put the token in the URL: `--url 'ws://127.0.0.1:8080/ws?token=…'`.
//! For tens of thousands of connections raise the open-files limit of both processes
//! (`ulimit -n 200000`), and use `--source-ips K` (loopback targets only) so the
//! connections come from 127.0.0.1..127.0.0.K, each good for ~28 000 ephemeral ports.
//!
//! # Clusters
//!
//! `--url` takes several comma-separated URLs, one per gateway node: subscriber *i*
//! connects to URL *i mod n*. `--publish-url` (same form; default: the `--url` list) does
//! the same for publishers: publisher *j* connects to URL *j mod m*. So
//! `--url B --publish-url A` publishes on node A and measures delivery on node B, i.e.
//! cross-node delivery through the backplane; `--url A,B` alone mixes local and cross-node
//! deliveries. A URL may be repeated to give its node a larger share (entries are trimmed;
//! a URL cannot itself contain a comma). The latency is still one clock: the bench stamps
//! `t` when publishing and reads its own clock on receipt.
//!
//! `--source-ips` applies per target: each node's connections cycle over the K source
//! addresses. With more than one node, connect failures are counted per node (prefixed
//! with the URL without its query, which may hold a token), and the report's `target` line
//! lists the subscriber URLs and, when they differ, the publish URLs (`urls` and
//! `publish_urls` in JSON; `url` stays the first subscriber URL). A single URL behaves and
//! reports exactly as before.
//!
//! # The reference server
//!
//! `arqonbus bench --reference-server 127.0.0.1:18399` runs a bare tokio-tungstenite
//! broadcast server until Ctrl-C: no protocol beyond what the drivers need, described at
//! [`Reference`]. `--reference-url ws://127.0.0.1:18399/ws`
//! then runs the same scenario twice in one bench run, first against the reference (one node:
//! subscribers and publishers all go to it), then against `--url`, and reports both and
//! ArqonBus ÷ reference for deliveries/s and each latency percentile (`reference` and
//! `vs_reference` in JSON). The machine is shared and noisy: only ratios from one run compare.
//!
//! # Reconnect storm
//!
//! With `--kill-pid PID` (or `--kill-cmd CMD`, run with `sh -c`) the run is a reconnect storm:
//! every subscriber connects to `--url` (node A, the one PID or CMD kills), publishers publish
//! through `--publish-url` (node B), and after `--warmup-secs` the bench kills node A. Every
//! subscriber whose connection drops reconnects to `--resume-url` (default: the publish URLs)
//! and subscribes again with `since` (its last offset and the channel's epoch), retrying with
//! backoff (50 ms doubling to 1 s) when a connection or subscribe fails. The bench waits until
//! every subscriber is *live again* (the survivor answered and every event up to the reply's
//! `offset` has arrived; at most `--storm-timeout-secs`), publishes `--duration-secs` more,
//! drains, and asks a survivor for each channel's final offset (`channel_info`): a subscriber
//! whose last offset is below it counts the rest as *missing*. The storm report gives the time
//! from the kill until every subscriber was resubscribed and live again, per-subscriber
//! percentiles of both, reconnect attempts and failures, events replayed, replies with
//! `recovered: false`, and with `--redis-url` the Redis calls per resubscribe: `INFO
//! commandstats` is read when publishing starts, at the kill and at full resume, and the calls
//! of the storm window minus what the same number of publishes cost before the kill, divided by
//! the resubscribes, are reported by command.
//!
//! A process may hold a limited number of file descriptors: the bench holds one per subscriber
//! (the dead node's sockets are closed before their replacements open), so 10,000 subscribers
//! fit a 20,000 limit; spread them with `--source-ips` as for any large run.
//!
//! # Examples
//!
//! ```text
//! arqonbus bench --url ws://127.0.0.1:8080/ws --subscribers 1000 --channels 10 \
//!     --publishers 4 --rate 2000 --duration-secs 30 --warmup-secs 5
//! arqonbus bench --subscribers 50000 --publishers 0 --hold-secs 30 --source-ips 4 \
//!     --server-pid $(pidof arqonbus)        # idle connections: server KiB per connection
//! arqonbus bench --publishers 2 --rate 500 --ack --json
//! # two nodes sharing a backplane: publish on 18301, deliver on 18302 (cross-node only)
//! arqonbus bench --url ws://127.0.0.1:18302/ws --publish-url ws://127.0.0.1:18301/ws \
//!     --subscribers 1000 --channels 10 --publishers 2 --rate 1000
//! # subscribers and publishers spread over both nodes
//! arqonbus bench --url ws://127.0.0.1:18301/ws,ws://127.0.0.1:18302/ws --subscribers 2000
//! # ArqonBus against the bare reference server, in one run
//! arqonbus bench --reference-server 127.0.0.1:18399 &
//! arqonbus bench --url ws://127.0.0.1:18300/ws --reference-url ws://127.0.0.1:18399/ws \
//!     --subscribers 1000 --channels 1 --publishers 1 --rate 500
//! # reconnect storm: 10,000 subscribers on node A (pid 4242) resume on node B
//! arqonbus bench --url ws://127.0.0.1:18301/ws --publish-url ws://127.0.0.1:18302/ws \
//!     --subscribers 10000 --channels 100 --publishers 2 --rate 200 --source-ips 4 \
//!     --kill-pid 4242 --redis-url redis://127.0.0.1:16400
//! ```
//!
//! # Reading the output
//!
//! While running, a progress line per second goes to stderr: phase, elapsed time, open
//! connections, subscribers/publishers set up, published/s and delivered/s over the last
//! second, and errors, gaps, duplicates and connect failures so far.
//!
//! At the end the report goes to stdout (with `--json`, one JSON line of [`BenchReport`]):
//! - *published* / *delivered* count events **published in the measurement window** (the
//!   warm-up is excluded), delivered ones even if they arrive during the final drain;
//!   `/s` divides by the window length. Delivered should be published × subscribers per
//!   channel; *total* counts include the warm-up, and *expected* is what full delivery of
//!   everything published would give (with `--ack`, less the publishes the server refused: an
//!   error answer other than TIMEOUT means nothing was stored);
//! - *latency* percentiles are over the same deliveries; a high p99.9 or max under a rate
//!   the server can sustain usually means a GC-like stall or an overloaded core;
//! - *gaps*, *missing* (skipped offsets never delivered), *duplicates* and *out-of-order*
//!   must all be 0 for a correct server;
//! - *errors* lists `error` frames by code (e.g. `RATE_LIMITED`: raise the server's
//!   limits), unexpected server closes as `close:<code>` (e.g. `close:4008`, a slow
//!   consumer: the bench or server is overloaded) and `system:draining`/`system:unsubscribed`;
//! - *connect failures* are listed by reason (e.g. `Too many open files`: raise `ulimit -n`),
//!   prefixed with the node's URL when there are several;
//! - *server RSS* (with `--server-pid`): before/after VmRSS and the delta per connection.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod conn;
mod driver;
mod net;
mod pace;
mod publish;
mod redis_info;
mod reference;
mod report;
mod scan;
mod stats;
mod storm;
mod track;

use std::collections::BTreeMap;

use serde::Serialize;

pub use reference::Reference;

/// Examples shown at the end of `arqonbus bench --help`.
const EXAMPLES: &str = "\
Examples:
  arqonbus bench --url ws://127.0.0.1:8080/ws --subscribers 1000 --channels 10 --publishers 4 --rate 2000
  # cluster: publish on node A (18301), measure delivery on node B (18302), i.e. cross-node
  arqonbus bench --url ws://127.0.0.1:18302/ws --publish-url ws://127.0.0.1:18301/ws
  # subscribers and publishers spread round-robin over two nodes
  arqonbus bench --url ws://127.0.0.1:18301/ws,ws://127.0.0.1:18302/ws --subscribers 2000
  # the bare reference server, then ArqonBus and the reference measured in one run
  arqonbus bench --reference-server 127.0.0.1:18399
  arqonbus bench --url ws://127.0.0.1:18300/ws --reference-url ws://127.0.0.1:18399/ws
  # reconnect storm: kill node A (pid 4242) under 10,000 subscribers, resume on node B
  arqonbus bench --url ws://127.0.0.1:18301/ws --publish-url ws://127.0.0.1:18302/ws --subscribers 10000 \
      --channels 100 --source-ips 4 --kill-pid 4242 --redis-url redis://127.0.0.1:16400";

/// Options of `arqonbus bench`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_long_help = EXAMPLES)]
pub struct BenchArgs {
    /// Server WebSocket URL, or several comma-separated (one per node of a cluster):
    /// subscriber i connects to URL i mod n. ws:// only; add ?token=… when auth is on.
    #[arg(long, env = "ARQONBUS_BENCH_URL", default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Comma-separated URLs the publishers connect to, round-robin (publisher j to URL j
    /// mod m); default: the --url list. `--url B --publish-url A` measures cross-node
    /// delivery from node A to node B.
    #[arg(long)]
    pub publish_url: Option<String>,
    /// Room of the bench channels (channels are c0..c{N-1}).
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// Number of subscriber connections (one channel each, round-robin).
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Number of channels.
    #[arg(long, default_value_t = 10)]
    pub channels: usize,
    /// Number of publisher connections (0: no publishing, e.g. with --hold-secs).
    #[arg(long, default_value_t = 2)]
    pub publishers: usize,
    /// Total target publish rate in events/s, split over the publishers.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Length of the measurement window in seconds (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u64,
    /// Publishing before the measurement window, excluded from the numbers.
    #[arg(long, default_value_t = 2)]
    pub warmup_secs: u64,
    /// Length of the payload padding string, in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Most connections being set up at the same time.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Spread connections over source addresses 127.0.0.1..127.0.0.K (loopback targets only).
    #[arg(long, default_value_t = 1)]
    pub source_ips: usize,
    /// Publish with ids and wait for acks (counts acks, errors and ack latency).
    #[arg(long)]
    pub ack: bool,
    /// Print the final report as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Keep all connections open and idle this long before publishing.
    #[arg(long, default_value_t = 0)]
    pub hold_secs: u64,
    /// Server process id: report its VmRSS before/after connecting and per connection.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Run the same scenario first against this bare reference server (see
    /// --reference-server), then against --url, and report ArqonBus / reference ratios.
    #[arg(long, value_name = "URL")]
    pub reference_url: Option<String>,
    /// Do not load-test: run the bare reference server on ADDR (e.g. 127.0.0.1:18399) until
    /// Ctrl-C.
    #[arg(long, value_name = "ADDR")]
    pub reference_server: Option<std::net::SocketAddr>,
    /// Reconnect storm: kill the node of --url while publishing goes on (see the docs).
    #[command(flatten)]
    pub storm: StormArgs,
}

/// Options of the reconnect-storm mode (on when `--kill-pid` or `--kill-cmd` is given).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Reconnect storm")]
pub struct StormArgs {
    /// After the warm-up, SIGKILL this process: the node every subscriber (--url) is on.
    #[arg(long, value_name = "PID", conflicts_with = "kill_cmd")]
    pub kill_pid: Option<u32>,
    /// After the warm-up, run this shell command (`sh -c`) to kill the subscribers' node,
    /// e.g. `docker kill gw-a` or `kubectl delete pod gw-a --grace-period=0 --force`.
    #[arg(long, value_name = "CMD")]
    pub kill_cmd: Option<String>,
    /// Comma-separated URLs the subscribers reconnect to, round-robin (default: the
    /// --publish-url list, the surviving nodes).
    #[arg(long, value_name = "URLS")]
    pub resume_url: Option<String>,
    /// Redis of the cluster (redis://[user:password@]host:port): `INFO commandstats` is read
    /// around the storm to count Redis calls per resubscribe.
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Longest wait for every subscriber to be live again after the kill.
    #[arg(long, default_value_t = 60)]
    pub storm_timeout_secs: u64,
}

impl Default for StormArgs {
    fn default() -> Self {
        Self { kill_pid: None, kill_cmd: None, resume_url: None, redis_url: None, storm_timeout_secs: 60 }
    }
}

impl StormArgs {
    /// Whether the run is a reconnect storm.
    pub fn enabled(&self) -> bool {
        self.kill_pid.is_some() || self.kill_cmd.is_some()
    }
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            url: "ws://127.0.0.1:8080/ws".to_string(),
            publish_url: None,
            room: "bench".to_string(),
            subscribers: 100,
            channels: 10,
            publishers: 2,
            rate: 1000.0,
            duration_secs: 10,
            warmup_secs: 2,
            payload_bytes: 64,
            connect_concurrency: 200,
            source_ips: 1,
            ack: false,
            json: false,
            hold_secs: 0,
            server_pid: None,
            reference_url: None,
            reference_server: None,
            storm: StormArgs::default(),
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// The final numbers of a bench run (see the module docs for how to read them).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// First subscriber URL (the server URL of a single-URL run).
    pub url: String,
    /// Subscriber URLs (`--url`), in round-robin order.
    pub urls: Vec<String>,
    /// Publisher URLs (`--publish-url`, by default the same as `urls`).
    pub publish_urls: Vec<String>,
    /// Room used.
    pub room: String,
    /// Channels used.
    pub channels: usize,
    /// Subscribers requested.
    pub subscribers: usize,
    /// Subscribers connected and subscribed.
    pub subscribers_connected: u64,
    /// Publishers requested.
    pub publishers: usize,
    /// Publishers connected.
    pub publishers_connected: u64,
    /// Connections established (subscribers + publishers).
    pub connections: u64,
    /// Connections that could not be established.
    pub connect_failures: u64,
    /// Connect failures by reason.
    pub connect_failure_reasons: BTreeMap<String, u64>,
    /// Subscribe commands answered with an error.
    pub subscribe_failures: u64,
    /// Connections ended by the server or the network before the bench closed them.
    pub disconnects: u64,
    /// Warm-up length in seconds.
    pub warmup_secs: f64,
    /// Measurement window length in seconds (as run).
    pub duration_secs: f64,
    /// Target publish rate (events/s).
    pub target_rate: f64,
    /// Events published in the window.
    pub published: u64,
    /// `published` per second of the window.
    pub published_per_s: f64,
    /// Events published in total (warm-up included).
    pub published_total: u64,
    /// Acks received (`--ack`).
    pub acks: u64,
    /// Publishes answered with an error (`--ack`).
    pub ack_errors: u64,
    /// Ack latency, µs (`--ack`).
    pub ack_latency_us: Option<LatencySummary>,
    /// Deliveries of events published in the window.
    pub delivered: u64,
    /// `delivered` per second of the window.
    pub delivered_per_s: f64,
    /// All deliveries (warm-up included).
    pub delivered_total: u64,
    /// Deliveries if every subscriber got every event of its channel (with `--ack`, publishes
    /// the server refused, answering with an error other than TIMEOUT, are not expected).
    pub expected_deliveries: u64,
    /// Delivery latency (receive time − payload `t`), µs.
    pub latency_us: Option<LatencySummary>,
    /// Offset jumps seen.
    pub gaps: u64,
    /// Offsets skipped by those jumps.
    pub skipped_offsets: u64,
    /// Skipped offsets never delivered.
    pub missing: u64,
    /// Offsets delivered again (or older than the subscription).
    pub duplicates: u64,
    /// Skipped offsets delivered late.
    pub out_of_order: u64,
    /// Error frames, unexpected closes and disruptive system frames.
    pub errors: u64,
    /// Those by code (`RATE_LIMITED`, `close:4008`, `system:draining`, …).
    pub errors_by_code: BTreeMap<String, u64>,
    /// `limits.publish_rate_per_s` announced by the server's welcome.
    pub server_publish_rate_limit: Option<u64>,
    /// Server VmRSS before connecting, KiB (`--server-pid`).
    pub server_rss_before_kib: Option<u64>,
    /// Server VmRSS with all connections up, KiB (`--server-pid`).
    pub server_rss_after_kib: Option<u64>,
    /// (after − before) / connections, KiB.
    pub rss_per_connection_kib: Option<f64>,
    /// The run was cut short by Ctrl-C.
    pub interrupted: bool,
    /// Reconnect storm results (`--kill-pid`/`--kill-cmd`).
    pub storm: Option<StormReport>,
    /// The same scenario against the bare reference server (`--reference-url`), run first.
    pub reference: Option<Box<BenchReport>>,
    /// This run's figures divided by the reference's (`--reference-url`).
    pub vs_reference: Option<Ratios>,
}

/// ArqonBus ÷ reference, from one `--reference-url` run (None where the reference has no figure).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratios {
    /// Deliveries per second of the window.
    pub delivered_per_s: Option<f64>,
    /// Share of the expected deliveries made by ArqonBus (1.0: all).
    pub delivered_share: Option<f64>,
    /// Share of the expected deliveries made by the reference.
    pub reference_delivered_share: Option<f64>,
    /// Latency p50.
    pub p50: Option<f64>,
    /// Latency p90.
    pub p90: Option<f64>,
    /// Latency p99.
    pub p99: Option<f64>,
    /// Latency p99.9.
    pub p999: Option<f64>,
    /// Largest latency.
    pub max: Option<f64>,
}

/// What a reconnect storm measured (see the module docs).
#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    /// How the node was killed (`kill -KILL <pid>` or the command).
    pub killed: String,
    /// URLs the subscribers reconnected to.
    pub resume_urls: Vec<String>,
    /// Subscribers connected when the node was killed.
    pub subscribers: u64,
    /// Subscribers whose `subscribe` with `since` was answered on a survivor.
    pub resubscribed: u64,
    /// Subscribers that also received every event up to the reply's offset (live again).
    pub live: u64,
    /// Kill → the last subscriber resubscribed, ms.
    pub all_resubscribed_ms: Option<u64>,
    /// Kill → the last subscriber live again, ms: the time to full resume.
    pub all_live_ms: Option<u64>,
    /// Kill → resubscribed, per subscriber, ms.
    pub resubscribe_ms: Option<LatencySummary>,
    /// Kill → live again, per subscriber, ms.
    pub live_ms: Option<LatencySummary>,
    /// Connection attempts to the survivors (first tries and retries).
    pub reconnect_attempts: u64,
    /// Attempts that failed, by reason.
    pub reconnect_failures: BTreeMap<String, u64>,
    /// Events replayed to resuming subscribers (`replayed` of the replies).
    pub replayed: u64,
    /// Replies with `recovered: false` (history lost: a gap the client is told about).
    pub not_recovered: u64,
    /// Events published from the kill until every subscriber was live again.
    pub published_during: u64,
    /// Redis calls per resubscribe by command (`--redis-url`): the calls between the kill and
    /// full resume, minus what the same number of publishes cost before the kill.
    pub redis_calls_per_resubscribe: Option<BTreeMap<String, f64>>,
    /// Their sum.
    pub redis_calls_per_resubscribe_total: Option<f64>,
    /// Raw `INFO commandstats` call deltas: (before the kill, kill → full resume).
    pub redis_calls: Option<(BTreeMap<String, u64>, BTreeMap<String, u64>)>,
    /// Publishes in the pre-kill window that `redis_calls.0` covers.
    pub redis_baseline_publishes: Option<u64>,
}

/// Why a bench run could not be done.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An option is out of range.
    #[error("invalid bench arguments: {0}")]
    InvalidArgs(String),
    /// The URL is not a usable ws:// URL.
    #[error("invalid server URL: {0}")]
    InvalidUrl(String),
    /// `--server-pid` names no readable process.
    #[error("cannot read VmRSS of server pid {0} from /proc/{0}/status")]
    ServerPid(u32),
    /// The reference server could not start.
    #[error("reference server: {0}")]
    Reference(String),
    /// The storm's kill did not work.
    #[error("reconnect storm: cannot kill the node: {0}")]
    Kill(String),
    /// Not a single connection could be established.
    #[error("no connection could be established to {url}: {reasons}")]
    NoConnections {
        /// Server URL (several: comma-separated).
        url: String,
        /// Failure reasons with counts.
        reasons: String,
    },
}

/// What `arqonbus bench` does: runs the reference server (`--reference-server`) until Ctrl-C,
/// or a bench run ([`run`]) and prints its report to stdout (one JSON line with `--json`).
pub async fn cli(args: BenchArgs) -> Result<(), BenchError> {
    if let Some(addr) = args.reference_server {
        let server = reference::Reference::bind(addr)
            .await
            .map_err(|e| BenchError::Reference(format!("cannot listen on {addr}: {e}")))?;
        return server.serve_until_ctrl_c().await.map_err(|e| BenchError::Reference(e.to_string()));
    }
    let json = args.json;
    let report = run(args).await?;
    report::print(&report, json);
    Ok(())
}

/// Runs the bench and returns its report; progress goes to stderr. With `--reference-url` the
/// same scenario runs first against the reference server, then against `--url`.
pub async fn run(args: BenchArgs) -> Result<BenchReport, BenchError> {
    let Some(reference_url) = args.reference_url.clone() else {
        return driver::run(args).await;
    };
    if args.storm.enabled() {
        return Err(BenchError::InvalidArgs("--reference-url compares fan-out runs, not reconnect storms".into()));
    }
    driver::validate(&args)?;
    // The reference is one node: subscribers and publishers all go to it.
    let reference_args =
        BenchArgs { url: reference_url, publish_url: None, server_pid: None, reference_url: None, ..args.clone() };
    eprintln!("bench: run 1 of 2: the reference server");
    let reference = driver::run(reference_args).await?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    eprintln!("bench: run 2 of 2: {}", args.url);
    let mut report = driver::run(args).await?;
    report.vs_reference = Some(report::ratios(&report, &reference));
    report.reference = Some(Box::new(reference));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn default_matches_clap_defaults() {
        let parsed = Cli::parse_from(["bench"]).bench;
        let expected = BenchArgs {
            url: parsed.url.clone(), // may come from ARQONBUS_BENCH_URL
            ..BenchArgs::default()
        };
        assert_eq!(format!("{parsed:?}"), format!("{expected:?}"));
    }

    #[test]
    fn long_options_parse() {
        let a = Cli::parse_from([
            "bench",
            "--url",
            "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws",
            "--publish-url",
            "ws://127.0.0.1:3/ws",
            "--room",
            "r",
            "--subscribers",
            "5",
            "--channels",
            "2",
            "--publishers",
            "0",
            "--rate",
            "10.5",
            "--duration-secs",
            "3",
            "--warmup-secs",
            "0",
            "--payload-bytes",
            "0",
            "--connect-concurrency",
            "7",
            "--source-ips",
            "4",
            "--ack",
            "--json",
            "--hold-secs",
            "9",
            "--server-pid",
            "42",
        ])
        .bench;
        assert_eq!(a.url, "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws");
        assert_eq!(a.publish_url.as_deref(), Some("ws://127.0.0.1:3/ws"));
        assert_eq!((a.subscribers, a.channels, a.publishers), (5, 2, 0));
        assert_eq!((a.rate, a.duration_secs, a.warmup_secs), (10.5, 3, 0));
        assert_eq!((a.payload_bytes, a.connect_concurrency, a.source_ips), (0, 7, 4));
        assert!(a.ack && a.json);
        assert_eq!((a.hold_secs, a.server_pid), (9, Some(42)));
    }
}

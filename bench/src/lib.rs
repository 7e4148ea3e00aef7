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
//!   everything published would give;
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
mod report;
mod scan;
mod stats;
mod track;

use std::collections::BTreeMap;

use serde::Serialize;

/// Examples shown at the end of `arqonbus bench --help`.
const EXAMPLES: &str = "\
Examples:
  arqonbus bench --url ws://127.0.0.1:8080/ws --subscribers 1000 --channels 10 --publishers 4 --rate 2000
  # cluster: publish on node A (18301), measure delivery on node B (18302), i.e. cross-node
  arqonbus bench --url ws://127.0.0.1:18302/ws --publish-url ws://127.0.0.1:18301/ws
  # subscribers and publishers spread round-robin over two nodes
  arqonbus bench --url ws://127.0.0.1:18301/ws,ws://127.0.0.1:18302/ws --subscribers 2000";

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
    /// Deliveries if every subscriber got every event of its channel.
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
    /// Not a single connection could be established.
    #[error("no connection could be established to {url}: {reasons}")]
    NoConnections {
        /// Server URL (several: comma-separated).
        url: String,
        /// Failure reasons with counts.
        reasons: String,
    },
}

/// Runs the bench: prints progress to stderr and the final report to stdout, and returns it.
pub async fn run(args: BenchArgs) -> Result<BenchReport, BenchError> {
    driver::run(args).await
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

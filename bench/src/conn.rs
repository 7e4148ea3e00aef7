//! Shared connection context and the subscriber task (one tokio task per connection).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{watch, Semaphore};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::net::{self, short, Target, Targets, Ws};
use super::scan::{self, Frame};
use super::stats::Stats;
use super::track::OffsetTracker;
use super::{pace, BenchArgs};

/// Connections wait (publishers: idle) in this phase.
pub const PHASE_SETUP: u8 = 0;
/// Publishers publish.
pub const PHASE_RUN: u8 = 1;
/// Publishers stop (and collect outstanding acks); subscribers keep reading.
pub const PHASE_DRAIN: u8 = 2;
/// Everyone closes.
pub const PHASE_STOP: u8 = 3;

/// Time allowed for connect + welcome (+ subscribe reply) of one connection.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed for the close handshake.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Offsets of events that arrive before the subscribe reply, kept to check them afterwards.
const MAX_EARLY: usize = 1024;

/// What every connection task shares.
#[derive(Debug)]
pub struct Ctx {
    /// The servers: subscribers and publishers are spread round-robin over them.
    pub targets: Targets,
    /// Room of all bench channels.
    pub room: String,
    /// Channel names `c0..c{M-1}`.
    pub channels: Vec<String>,
    /// Counters.
    pub stats: Stats,
    /// Bounds how many connections are being set up at once.
    pub connect_gate: Semaphore,
    /// Payload padding.
    pub pad: String,
    /// Number of subscribers (publisher connection indexes follow theirs).
    pub subscribers: usize,
    /// Number of publishers.
    pub publishers: usize,
    /// Events/s of one publisher.
    pub rate_per_publisher: f64,
    /// Publish with ids and count acks.
    pub ack: bool,
}

impl Ctx {
    /// The shared context of one bench run.
    pub fn new(args: &BenchArgs, targets: Targets) -> Self {
        let channels = args.channels.max(1);
        Self {
            targets,
            room: args.room.clone(),
            channels: (0..channels).map(|c| format!("c{c}")).collect(),
            stats: Stats::new(channels),
            connect_gate: Semaphore::new(args.connect_concurrency.max(1)),
            pad: "x".repeat(args.payload_bytes),
            subscribers: args.subscribers,
            publishers: args.publishers,
            rate_per_publisher: pace::per_publisher_rate(args.rate, args.publishers),
            ack: args.ack,
        }
    }
}

enum SetupFail {
    Connect(String),
    Subscribe,
}

/// Subscriber `index`: connect, subscribe to channel `index % M`, check every delivered
/// event until the phase reaches [`PHASE_STOP`], then close.
pub async fn subscriber(ctx: Arc<Ctx>, index: usize, mut phase: watch::Receiver<u8>) {
    let ch = index % ctx.channels.len().max(1);
    let stats = &ctx.stats;
    let Some((target, slot)) = ctx.targets.for_subscriber(index) else {
        stats.connect_failed("no subscriber URL");
        stats.subs_settled.fetch_add(1, Relaxed);
        return;
    };
    let setup = {
        let Ok(_permit) = ctx.connect_gate.acquire().await else {
            return;
        };
        // Boxed: the setup state is large and would otherwise stay in every idle task.
        timeout(SETUP_TIMEOUT, Box::pin(setup_subscriber(&ctx, target, slot, index, ch))).await
    };
    let outcome = match setup {
        Ok(Ok(ok)) => Some(ok),
        Ok(Err(SetupFail::Connect(reason))) => {
            stats.connect_failed(&ctx.targets.failure(target, &reason));
            None
        }
        Ok(Err(SetupFail::Subscribe)) => {
            stats.subscribe_failures.fetch_add(1, Relaxed);
            None
        }
        Err(_) => {
            stats.connect_failed(&ctx.targets.failure(target, "setup timed out"));
            None
        }
    };
    if outcome.is_some() {
        stats.subs_connected.fetch_add(1, Relaxed);
        stats.open.fetch_add(1, Relaxed);
        if let Some(n) = stats.chan_subs.get(ch) {
            n.fetch_add(1, Relaxed);
        }
    }
    stats.subs_settled.fetch_add(1, Relaxed);
    let Some((mut ws, mut tracker)) = outcome else {
        return;
    };
    let mut ended_by_server = false;
    // One stop future for the whole loop (cheaper than a new `changed()` per frame).
    let stop = phase.wait_for(|p| *p >= PHASE_STOP);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let f = scan::parse_frame(&text);
                    if f.kind == "event" {
                        if let Some(offset) = stats.delivered(index, &f) {
                            stats.seen(tracker.observe(offset));
                        }
                    } else {
                        note_anomaly(stats, &f);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                    stats.error(&format!("close:{code}"));
                    ended_by_server = true;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    ended_by_server = true;
                    break;
                }
            },
        }
    }
    if ended_by_server {
        stats.disconnects.fetch_add(1, Relaxed);
    } else {
        close(&mut ws).await;
    }
    stats.missing.fetch_add(tracker.missing(), Relaxed);
    stats.open.fetch_sub(1, Relaxed);
}

/// Connects subscriber `index` as connection `slot` of `target` and subscribes to channel `ch`.
async fn setup_subscriber(
    ctx: &Ctx,
    target: &Target,
    slot: usize,
    index: usize,
    ch: usize,
) -> Result<(Ws, OffsetTracker), SetupFail> {
    let stats = &ctx.stats;
    let mut ws = net::connect(target, slot, net::subscriber_config()).await.map_err(SetupFail::Connect)?;
    welcome(stats, &mut ws).await.map_err(SetupFail::Connect)?;
    let channel = ctx.channels.get(ch).map(String::as_str).unwrap_or("c0");
    let cmd = format!(
        r#"{{"type":"command","id":"s1","command":"subscribe","args":{{"room":"{}","channel":"{channel}"}}}}"#,
        ctx.room
    );
    ws.send(Message::text(cmd)).await.map_err(|e| SetupFail::Connect(short(&format!("send subscribe: {e}"))))?;
    let mut early = Vec::new();
    loop {
        let text = next_text(&mut ws).await.map_err(SetupFail::Connect)?;
        let f = scan::parse_frame(&text);
        match f.kind {
            "reply" if f.request_id == Some("s1") => {
                let latest = f.result_offset().flatten();
                let mut tracker = OffsetTracker::new(latest);
                for offset in early.into_iter().filter(|&o| o > latest.unwrap_or(0)) {
                    stats.seen(tracker.observe(offset));
                }
                return Ok((ws, tracker));
            }
            "error" => {
                stats.error(f.error_code().unwrap_or("UNKNOWN"));
                if f.request_id == Some("s1") {
                    return Err(SetupFail::Subscribe);
                }
            }
            "event" => {
                if let Some(offset) = stats.delivered(index, &f) {
                    if early.len() < MAX_EARLY {
                        early.push(offset);
                    }
                }
            }
            _ => note_anomaly(stats, &f),
        }
    }
}

/// Counts error frames and disruptive system frames seen outside the normal flow.
pub fn note_anomaly(stats: &Stats, f: &Frame<'_>) {
    match (f.kind, f.event) {
        ("error", _) => stats.error(f.error_code().unwrap_or("UNKNOWN")),
        ("system", Some(ev @ ("draining" | "unsubscribed"))) => stats.error(&format!("system:{ev}")),
        _ => {}
    }
}

/// Reads the first frame, which must be the `welcome` system frame; returns its text.
pub async fn welcome(stats: &Stats, ws: &mut Ws) -> Result<Utf8Bytes, String> {
    let text = next_text(ws).await?;
    let f = scan::parse_frame(&text);
    if f.kind == "system" && f.event == Some("welcome") {
        return Ok(text);
    }
    note_anomaly(stats, &f);
    Err(format!("first frame was not welcome (type {:?})", short(f.kind)))
}

/// The next text frame (pings are answered by tungstenite while reading).
async fn next_text(ws: &mut Ws) -> Result<Utf8Bytes, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                return Err(format!("closed by server ({code})"));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(short(&format!("read: {e}"))),
            None => return Err("connection closed".to_string()),
        }
    }
}

/// Sends a close frame and waits (bounded) for the server's close.
pub async fn close(ws: &mut Ws) {
    let _ = timeout(CLOSE_TIMEOUT, async {
        let _ = ws.close(None).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

//! Shared connection context and the subscriber task (one tokio task per connection).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
    /// A reconnect storm: dropped subscribers resume on a survivor.
    pub storm: bool,
    /// Each channel's final offset, once known at the end of a storm (`u64::MAX` before).
    pub final_offsets: Vec<AtomicU64>,
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
            storm: args.storm.enabled(),
            final_offsets: (0..channels).map(|_| AtomicU64::new(u64::MAX)).collect(),
        }
    }
}

enum SetupFail {
    Connect(String),
    Subscribe,
}

/// Resolves when the run reaches [`PHASE_STOP`]; made once per subscriber.
type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a subscribe reply said.
struct Reply {
    /// `result.offset`: the channel's latest offset.
    latest: Option<u64>,
    /// `result.epoch`, as raw JSON (a quoted string), to send back in `since`.
    epoch: Option<String>,
    /// `result.recovered`.
    recovered: Option<bool>,
    /// `result.replayed`.
    replayed: u64,
    /// Offsets of events that arrived before the reply.
    early: Vec<u64>,
}

/// One subscription's state across connections.
struct Sub {
    ch: usize,
    tracker: OffsetTracker,
    epoch: Option<String>,
    /// After a resume: the reply's offset, until every event up to it has arrived.
    catching_up_to: Option<u64>,
    resumed: bool,
}

/// Subscriber `index`: connect, subscribe to channel `index % M`, check every delivered
/// event until the phase reaches [`PHASE_STOP`], then close. In a reconnect storm a dropped
/// connection is followed by a resume on a survivor.
pub async fn subscriber(ctx: Arc<Ctx>, index: usize, phase: watch::Receiver<u8>) {
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
        timeout(SETUP_TIMEOUT, Box::pin(connect_subscribed(&ctx, target, slot, index, ch, None))).await
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
    let Some((mut ws, reply)) = outcome else {
        return;
    };
    let mut sub =
        Sub { ch, tracker: OffsetTracker::new(reply.latest), epoch: reply.epoch, catching_up_to: None, resumed: false };
    for offset in reply.early.into_iter().filter(|&o| o > reply.latest.unwrap_or(0)) {
        stats.seen(sub.tracker.observe(offset));
    }
    // One stop future for the whole task (cheaper than a new `changed()` per frame).
    let mut stop_rx = phase;
    let mut stop: Stop = Box::pin(async move {
        let _ = stop_rx.wait_for(|p| *p >= PHASE_STOP).await;
    });
    loop {
        if !read_until_dropped(&ctx, index, &mut ws, &mut sub, &mut stop).await {
            close(&mut ws).await;
            stats.open.fetch_sub(1, Relaxed);
            break;
        }
        stats.disconnects.fetch_add(1, Relaxed);
        stats.open.fetch_sub(1, Relaxed);
        if !ctx.storm {
            break;
        }
        match resume(&ctx, index, &mut sub, &mut stop).await {
            Some(new) => {
                ws = new;
                stats.open.fetch_add(1, Relaxed);
            }
            None => break,
        }
    }
    stats.missing.fetch_add(sub.tracker.missing() + tail_missing(&ctx, &sub), Relaxed);
}

/// Offsets of the channel's final ones (known at the end of a storm) this subscriber never got.
fn tail_missing(ctx: &Ctx, sub: &Sub) -> u64 {
    let last = sub.tracker.last();
    match ctx.final_offsets.get(sub.ch).map(|f| f.load(Relaxed)) {
        Some(end) if end != u64::MAX => end.saturating_sub(last),
        _ => 0,
    }
}

/// Reads deliveries until the stop phase (false) or until the connection ends (true).
async fn read_until_dropped(ctx: &Ctx, index: usize, ws: &mut Ws, sub: &mut Sub, stop: &mut Stop) -> bool {
    let stats = &ctx.stats;
    loop {
        tokio::select! {
            biased;
            _ = &mut *stop => return false,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let f = scan::parse_frame(&text);
                    if f.kind == "event" {
                        if let Some(offset) = stats.delivered(index, &f) {
                            stats.seen(sub.tracker.observe(offset));
                            if sub.catching_up_to.is_some_and(|top| sub.tracker.last() >= top) {
                                sub.catching_up_to = None;
                                stats.storm.live();
                            }
                        }
                    } else {
                        note_anomaly(stats, &f);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                    stats.error(&format!("close:{code}"));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return true,
            },
        }
    }
}

/// Reconnects subscriber `index` to a survivor and subscribes with `since`, retrying with
/// backoff until it works or the run stops (None).
async fn resume(ctx: &Ctx, index: usize, sub: &mut Sub, stop: &mut Stop) -> Option<Ws> {
    let storm = &ctx.stats.storm;
    let since = sub.epoch.clone().map(|epoch| (sub.tracker.last(), epoch));
    for attempt in 0u32.. {
        let (target, slot) = ctx.targets.for_resume(index)?;
        storm.attempts.fetch_add(1, Relaxed);
        let once = async {
            let _permit = ctx.connect_gate.acquire().await.ok()?;
            let since = since.as_ref().map(|(o, e)| (*o, e.as_str()));
            Some(timeout(SETUP_TIMEOUT, Box::pin(connect_subscribed(ctx, target, slot, index, sub.ch, since))).await)
        };
        let outcome = tokio::select! {
            biased;
            _ = &mut *stop => return None,
            r = once => r?,
        };
        match outcome {
            Ok(Ok((ws, reply))) => {
                for offset in reply.early {
                    ctx.stats.seen(sub.tracker.observe(offset));
                }
                let top = reply.latest.unwrap_or(0);
                if !sub.resumed {
                    sub.resumed = true;
                    storm.resubscribed(reply.replayed, reply.recovered);
                    if sub.tracker.last() >= top {
                        storm.live();
                    } else {
                        sub.catching_up_to = Some(top);
                    }
                }
                if reply.epoch.is_some() {
                    sub.epoch = reply.epoch;
                }
                return Some(ws);
            }
            Ok(Err(SetupFail::Connect(reason))) => storm.failed(&reason),
            Ok(Err(SetupFail::Subscribe)) => storm.failed("subscribe refused"),
            Err(_) => storm.failed("setup timed out"),
        }
        tokio::select! {
            biased;
            _ = &mut *stop => return None,
            _ = tokio::time::sleep(backoff(attempt, index)) => {}
        }
    }
    None
}

/// Pause before reconnect attempt `attempt + 1`: 50 ms doubling up to 1 s, spread over
/// subscribers so retries do not come back in one wave.
pub fn backoff(attempt: u32, index: usize) -> Duration {
    let base = 50u64 << attempt.min(5);
    let base = base.min(1000);
    Duration::from_millis(base / 2 + (index as u64 * 7919) % (base / 2 + 1))
}

/// Connects subscriber `index` as connection `slot` of `target` and subscribes to channel
/// `ch`, from `since` (offset, raw epoch) when resuming.
async fn connect_subscribed(
    ctx: &Ctx,
    target: &Target,
    slot: usize,
    index: usize,
    ch: usize,
    since: Option<(u64, &str)>,
) -> Result<(Ws, Reply), SetupFail> {
    let stats = &ctx.stats;
    let mut ws = net::connect(target, slot, net::subscriber_config()).await.map_err(SetupFail::Connect)?;
    welcome(stats, &mut ws).await.map_err(SetupFail::Connect)?;
    let channel = ctx.channels.get(ch).map(String::as_str).unwrap_or("c0");
    let since = match since {
        Some((offset, epoch)) => format!(r#","since":{{"offset":{offset},"epoch":{epoch}}}"#),
        None => String::new(),
    };
    let cmd = format!(
        r#"{{"type":"command","id":"s1","command":"subscribe","args":{{"room":"{}","channel":"{channel}"{since}}}}}"#,
        ctx.room
    );
    ws.send(Message::text(cmd)).await.map_err(|e| SetupFail::Connect(short(&format!("send subscribe: {e}"))))?;
    let mut early = Vec::new();
    loop {
        let text = next_text(&mut ws).await.map_err(SetupFail::Connect)?;
        let f = scan::parse_frame(&text);
        match f.kind {
            "reply" if f.request_id == Some("s1") => {
                let field = |key| f.result.and_then(|r| scan::get(r, key));
                let reply = Reply {
                    latest: f.result_offset().flatten(),
                    epoch: field("epoch").filter(|e| e.starts_with('"')).map(str::to_string),
                    recovered: field("recovered").and_then(|r| r.parse().ok()),
                    replayed: field("replayed").and_then(scan::int_value).unwrap_or(0),
                    early,
                };
                return Ok((ws, reply));
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
pub async fn next_text(ws: &mut Ws) -> Result<Utf8Bytes, String> {
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

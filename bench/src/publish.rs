//! Publisher connections: paced publishing, optional acks.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::conn::{close, note_anomaly, welcome, Ctx, PHASE_DRAIN, PHASE_RUN, SETUP_TIMEOUT};
use super::net;
use super::pace;
use super::scan;
use super::stats::now_ns;

/// Time a publisher waits for outstanding acks after publishing stopped.
const ACK_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Publisher `j`: connect, wait for [`PHASE_RUN`], publish at its share of the rate until
/// [`PHASE_DRAIN`], collect outstanding acks, close.
pub async fn publisher(ctx: Arc<Ctx>, j: usize, mut phase: watch::Receiver<u8>) {
    let stats = &ctx.stats;
    let Some((target, slot)) = ctx.targets.for_publisher(j, ctx.subscribers) else {
        stats.connect_failed("no publish URL");
        stats.pubs_settled.fetch_add(1, Relaxed);
        return;
    };
    let setup = {
        let Ok(_permit) = ctx.connect_gate.acquire().await else {
            return;
        };
        timeout(
            SETUP_TIMEOUT,
            Box::pin(async {
                let mut ws = net::connect(target, slot, net::publisher_config()).await?;
                let text = welcome(stats, &mut ws).await?;
                Ok::<_, String>((ws, text))
            }),
        )
        .await
    };
    let outcome = match setup {
        Ok(Ok(ok)) => Some(ok),
        Ok(Err(reason)) => {
            stats.connect_failed(&ctx.targets.failure(target, &reason));
            None
        }
        Err(_) => {
            stats.connect_failed(&ctx.targets.failure(target, "setup timed out"));
            None
        }
    };
    if let Some((_, welcome_text)) = &outcome {
        let limit = scan::parse_frame(welcome_text)
            .payload
            .and_then(|p| scan::get(p, "limits"))
            .and_then(|l| scan::get(l, "publish_rate_per_s"))
            .and_then(scan::int_value);
        if let Some(limit) = limit {
            stats.server_rate_limit.store(limit, Relaxed);
        }
        stats.pubs_connected.fetch_add(1, Relaxed);
        stats.open.fetch_add(1, Relaxed);
    }
    stats.pubs_settled.fetch_add(1, Relaxed);
    let Some((mut ws, _)) = outcome else {
        return;
    };

    let rate = ctx.rate_per_publisher;
    let max_batch = pace::max_batch(rate);
    let mut ticker = tokio::time::interval(pace::tick_period(rate));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut started: Option<Instant> = None;
    let mut sent: u64 = 0;
    let mut outstanding: u64 = 0;
    let mut alive = true;
    loop {
        let p = *phase.borrow_and_update();
        if p >= PHASE_DRAIN {
            break;
        }
        tokio::select! {
            biased;
            changed = phase.changed() => if changed.is_err() { break },
            msg = ws.next() => {
                if !on_publisher_msg(&ctx, j, msg, &mut outstanding) {
                    alive = false;
                    break;
                }
            }
            _ = ticker.tick(), if p == PHASE_RUN => {
                let start = *started.get_or_insert_with(Instant::now);
                let n = pace::batch(pace::due(rate, start.elapsed()), sent, max_batch);
                for _ in 0..n {
                    let ch = pace::channel_for(j, sent, ctx.publishers, ctx.channels.len());
                    let t = now_ns();
                    let frame = event_frame(&ctx, ch, t, sent);
                    if ws.feed(Message::text(frame)).await.is_err() {
                        alive = false;
                        break;
                    }
                    sent += 1;
                    outstanding += u64::from(ctx.ack);
                    stats.published.fetch_add(1, Relaxed);
                    if stats.in_window(t) {
                        stats.published_window.fetch_add(1, Relaxed);
                    }
                    if let Some(c) = stats.chan_published.get(ch) {
                        c.fetch_add(1, Relaxed);
                    }
                }
                if !alive || (n > 0 && ws.flush().await.is_err()) {
                    alive = false;
                    break;
                }
            }
        }
    }
    if alive && outstanding > 0 {
        let deadline = Instant::now() + ACK_DRAIN_TIMEOUT;
        while outstanding > 0 && alive {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(msg) => alive = on_publisher_msg(&ctx, j, msg, &mut outstanding),
                Err(_) => break,
            }
        }
    }
    if alive {
        close(&mut ws).await;
    } else {
        stats.disconnects.fetch_add(1, Relaxed);
    }
    stats.open.fetch_sub(1, Relaxed);
}

/// Handles one incoming message on a publisher; false when the connection is over.
fn on_publisher_msg(ctx: &Ctx, j: usize, msg: Option<Result<Message, WsError>>, outstanding: &mut u64) -> bool {
    let stats = &ctx.stats;
    match msg {
        Some(Ok(Message::Text(text))) => {
            let f = scan::parse_frame(&text);
            let ours = f.request_id.is_some_and(|id| id.starts_with('a'));
            match f.kind {
                "reply" if ours => {
                    stats.acks.fetch_add(1, Relaxed);
                    *outstanding = outstanding.saturating_sub(1);
                    if let Some(t) = f.request_id.and_then(ack_time) {
                        stats.ack_latency(t);
                    }
                }
                "error" => {
                    let code = f.error_code().unwrap_or("UNKNOWN");
                    stats.error(code);
                    if ours {
                        stats.ack_errors.fetch_add(1, Relaxed);
                        *outstanding = outstanding.saturating_sub(1);
                        // Refused: nothing was stored, so no subscriber should get it (TIMEOUT
                        // leaves the outcome unknown: still expected).
                        let seq = f.request_id.and_then(ack_seq);
                        if let (Some(seq), false) = (seq, code == "TIMEOUT") {
                            let ch = pace::channel_for(j, seq, ctx.publishers, ctx.channels.len());
                            if let Some(c) = stats.chan_published.get(ch) {
                                c.fetch_sub(1, Relaxed);
                            }
                        }
                    }
                }
                _ => note_anomaly(stats, &f),
            }
            true
        }
        Some(Ok(Message::Close(frame))) => {
            let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
            stats.error(&format!("close:{code}"));
            true // the stream ends right after
        }
        Some(Ok(_)) => true,
        Some(Err(_)) | None => false,
    }
}

/// The send time encoded in an ack-mode request id `a<seq>.<t>`.
pub fn ack_time(request_id: &str) -> Option<u64> {
    let (_, t) = request_id.strip_prefix('a')?.split_once('.')?;
    scan::int_value(t)
}

/// The publisher's sequence number in an ack-mode request id `a<seq>.<t>`.
pub fn ack_seq(request_id: &str) -> Option<u64> {
    let (seq, _) = request_id.strip_prefix('a')?.split_once('.')?;
    scan::int_value(seq)
}

/// The JSON text of one bench event.
pub fn event_frame(ctx: &Ctx, ch: usize, t: u64, seq: u64) -> String {
    let channel = ctx.channels.get(ch).map(String::as_str).unwrap_or("c0");
    let mut s = String::with_capacity(112 + ctx.room.len() + ctx.pad.len());
    s.push_str(r#"{"type":"event","#);
    if ctx.ack {
        let _ = write!(s, r#""id":"a{seq}.{t}","#);
    }
    let _ = write!(
        s,
        r#""room":"{}","channel":"{channel}","payload":{{"t":{t},"seq":{seq},"pad":"{}"}}}}"#,
        ctx.room, ctx.pad
    );
    s
}

#[cfg(test)]
mod tests {
    use super::super::net::{Target, Targets};
    use super::super::BenchArgs;
    use super::*;

    #[test]
    fn ack_ids_carry_the_send_time() {
        assert_eq!(ack_time("a17.1700000000000000001"), Some(1_700_000_000_000_000_001));
        assert_eq!(ack_time("s1"), None);
        assert_eq!(ack_time("a17"), None);
        assert_eq!(ack_time("a1.x"), None);
        assert_eq!(ack_seq("a17.1700000000000000001"), Some(17));
        assert_eq!(ack_seq("s1"), None);
    }

    fn ctx(ack: bool) -> Ctx {
        let target = Target {
            url: "ws://127.0.0.1:1/ws".into(),
            addr: "127.0.0.1:1".parse().expect("test address"),
            source_ips: 1,
        };
        let args = BenchArgs { payload_bytes: 5, ack, ..BenchArgs::default() };
        Ctx::new(&args, Targets::single(target))
    }

    #[test]
    fn event_frames_round_trip_through_the_scanner() {
        let c = ctx(false);
        let text = event_frame(&c, 3, 123_456, 9);
        assert_eq!(
            text,
            r#"{"type":"event","room":"bench","channel":"c3","payload":{"t":123456,"seq":9,"pad":"xxxxx"}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["payload"]["t"], 123_456);
        assert_eq!(scan::parse_frame(&text).payload_t(), Some(123_456));

        let c = ctx(true);
        let text = event_frame(&c, 0, 77, 4);
        let f = scan::parse_frame(&text);
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["id"], "a4.77");
        assert_eq!(f.kind, "event");
        assert_eq!(ack_time("a4.77"), Some(77));
    }
}

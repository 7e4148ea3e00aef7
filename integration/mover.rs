//! A subscriber that moves when told to: it follows one channel, and when its node advises it
//! to reconnect (`system` `draining`) and closes the connection, it waits `reconnect_after_ms`
//! as a well-behaved client does, reconnects to the next gateway and resumes with `since`. It
//! records what it saw and when, so tests can check "nothing lost, nothing doubled" and measure
//! how reconnects spread out.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::support::common::{Client, Read};

/// A `draining` advisory as received.
#[derive(Debug, Clone)]
pub struct Advisory {
    pub at: Instant,
    pub reconnect_after_ms: u64,
    /// `payload.reason`, when given (`"rebalance"`).
    pub reason: Option<String>,
}

/// One subscribe reply on a new connection after the first.
#[derive(Debug, Clone)]
pub struct Resume {
    /// When the reply came.
    pub at: Instant,
    pub recovered: Value,
    pub replayed: u64,
    /// The `since` offset it asked for, and the channel's offset in the reply.
    pub since: u64,
    pub top: u64,
    /// When every event missed while away had arrived (the replay was done).
    pub caught_up: Option<Instant>,
}

/// What a mover saw.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// Event offsets in arrival order.
    pub offsets: Vec<u64>,
    /// Client ids used (one per connection).
    pub client_ids: Vec<String>,
    pub advisories: Vec<Advisory>,
    /// Close codes, one per connection that ended.
    pub closes: Vec<Option<u16>>,
    pub resumes: Vec<Resume>,
    /// The offset of the event whose payload said `"end": true`.
    pub end: Option<u64>,
    /// The epoch of the last subscribe reply.
    pub epoch: Option<String>,
}

impl Trace {
    /// Asserts offsets are exactly `1..=end`, once each, in order.
    pub fn assert_exactly_once(&self, who: &str) {
        let end = self.end.unwrap_or_else(|| panic!("{who}: never saw the last event ({} events)", self.offsets.len()));
        for (i, o) in self.offsets.iter().enumerate() {
            let around = &self.offsets[i.saturating_sub(5)..(i + 5).min(self.offsets.len())];
            assert_eq!(
                *o,
                i as u64 + 1,
                "{who}: offset {o} at position {i} (gap or duplicate): {around:?}, {:?}",
                self.resumes
            );
        }
        assert_eq!(self.offsets.len() as u64, end, "{who}: got {} events, want {end}", self.offsets.len());
    }
}

/// Follows `room:channel` on `first` until the event with `"end": true`; after a close it goes
/// to `then`. Gives up after `limit` (the trace then shows what is missing).
pub async fn mover(first: SocketAddr, then: SocketAddr, room: &str, channel: &str, limit: Duration) -> Trace {
    let deadline = Instant::now() + limit;
    let mut t = Trace::default();
    let mut addr = first;
    while Instant::now() < deadline && t.end.is_none() {
        let Ok(mut c) = tokio::time::timeout(Duration::from_secs(10), Client::connect(addr)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        t.client_ids.push(c.client_id.clone());
        let mut args = json!({ "room": room, "channel": channel });
        let resuming = t.client_ids.len() > 1;
        if let Some(epoch) = &t.epoch {
            args["since"] = json!({ "offset": t.offsets.last().copied().unwrap_or(0), "epoch": epoch });
        }
        let reply = c.command("subscribe", args).await;
        assert_eq!(reply["type"], "reply", "subscribe failed: {reply}");
        let r = &reply["result"];
        t.epoch = r["epoch"].as_str().map(str::to_owned);
        let top = r["offset"].as_u64().unwrap_or(0);
        if resuming {
            let caught = t.offsets.last().copied().unwrap_or(0) >= top;
            t.resumes.push(Resume {
                at: Instant::now(),
                recovered: r["recovered"].clone(),
                replayed: r["replayed"].as_u64().unwrap_or(0),
                since: t.offsets.last().copied().unwrap_or(0),
                top,
                caught_up: caught.then(Instant::now),
            });
        }
        let mut advisory: Option<Advisory> = None;
        loop {
            match c.next_read().await {
                Read::Frame(v) if v["type"] == "event" => {
                    let offset = v["offset"].as_u64().expect("an event has an offset");
                    t.offsets.push(offset);
                    if let Some(resume) = t.resumes.last_mut().filter(|r| r.caught_up.is_none()) {
                        if offset >= top {
                            resume.caught_up = Some(Instant::now());
                        }
                    }
                    if v["payload"]["end"] == true {
                        t.end = Some(offset);
                        break;
                    }
                }
                Read::Frame(v) if v["type"] == "system" && v["event"] == "draining" => {
                    let a = Advisory {
                        at: Instant::now(),
                        reconnect_after_ms: v["payload"]["reconnect_after_ms"].as_u64().expect("reconnect_after_ms"),
                        reason: v["payload"]["reason"].as_str().map(str::to_owned),
                    };
                    t.advisories.push(a.clone());
                    advisory = Some(a);
                }
                Read::Frame(_) => {}
                Read::Closed(code) => {
                    t.closes.push(code);
                    break;
                }
            }
        }
        if t.end.is_some() {
            break;
        }
        // The close is answered (tungstenite did so while reading it); the socket goes now,
        // as a real client's would, not when it reconnects.
        drop(c);
        // Honour the advisory as a client should; without one, a short pause.
        match advisory {
            Some(a) => tokio::time::sleep_until(a.at + Duration::from_millis(a.reconnect_after_ms)).await,
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        addr = then;
    }
    t
}

/// Percentile (0–100) of durations, by rank.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) * p).div_ceil(100)]
}

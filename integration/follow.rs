//! A subscriber that survives its node: it follows one channel, and when its connection ends
//! it reconnects to the next live gateway and resumes with `since`, recording everything it
//! saw so tests can check "no gap, no duplicate" across reconnects.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::common::{Client, Read};

/// What a follower saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Event offsets in arrival order.
    pub offsets: Vec<u64>,
    /// Event payloads in arrival order.
    pub payloads: Vec<Value>,
    /// `(epoch, recovered)` of every subscribe reply.
    pub subscribes: Vec<(String, Value)>,
    /// `unsubscribed` reasons received.
    pub unsubscribed: Vec<String>,
    /// Client ids used (one per connection).
    pub client_ids: Vec<String>,
}

impl Seen {
    fn since(&self) -> Option<Value> {
        let epoch = &self.subscribes.last()?.0;
        let offset = self.offsets.last().copied().unwrap_or(0);
        Some(json!({ "offset": offset, "epoch": epoch }))
    }

    /// Asserts offsets are exactly `1..=n`, once each, in order.
    pub fn assert_contiguous(&self, n: u64, who: &str) {
        for (i, o) in self.offsets.iter().enumerate() {
            assert_eq!(*o, i as u64 + 1, "{who}: offset {o} at position {i} (gap or duplicate)");
        }
        assert_eq!(self.offsets.len() as u64, n, "{who}: got {} events, want {n}", self.offsets.len());
    }
}

/// Gateways that are gone (a follower skips them).
pub type Dead = Arc<Mutex<HashSet<SocketAddr>>>;

/// One connection: subscribe (resuming when it can), read until `until` or the end.
async fn session(addr: SocketAddr, room: String, channel: String, seen: Arc<Mutex<Seen>>, until: u64) -> bool {
    let mut c = Client::connect(addr).await;
    seen.lock().unwrap().client_ids.push(c.client_id.clone());
    let mut args = json!({ "room": room, "channel": channel });
    if let Some(since) = seen.lock().unwrap().since() {
        args["since"] = since;
    }
    let reply = c.command("subscribe", args).await;
    assert_eq!(reply["type"], "reply", "subscribe failed: {reply}");
    let r = &reply["result"];
    seen.lock().unwrap().subscribes.push((r["epoch"].as_str().unwrap().to_owned(), r["recovered"].clone()));
    loop {
        match c.next_read().await {
            Read::Frame(v) if v["type"] == "event" => {
                let offset = v["offset"].as_u64().unwrap();
                let mut s = seen.lock().unwrap();
                s.offsets.push(offset);
                s.payloads.push(v["payload"].clone());
                if offset >= until {
                    return true;
                }
            }
            Read::Frame(v) if v["event"] == "unsubscribed" => {
                seen.lock().unwrap().unsubscribed.push(v["payload"]["reason"].as_str().unwrap_or("").to_owned());
                return false;
            }
            Read::Frame(_) => {}
            Read::Closed(_) => return false,
        }
    }
}

/// Follows `room:channel` until offset `until`, starting on `addrs[first]` and moving to the
/// next gateway not in `dead` whenever a connection ends. Gives up after `limit`.
pub async fn follow(
    addrs: Vec<SocketAddr>,
    first: usize,
    room: &str,
    channel: &str,
    until: u64,
    dead: Dead,
    limit: Duration,
) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let deadline = tokio::time::Instant::now() + limit;
    let mut i = first;
    while tokio::time::Instant::now() < deadline {
        let addr = addrs[i % addrs.len()];
        if dead.lock().unwrap().contains(&addr) {
            i += 1;
            continue;
        }
        let task = tokio::spawn(session(addr, room.to_owned(), channel.to_owned(), seen.clone(), until));
        if let Ok(true) = task.await {
            break;
        }
        // The connection ended (node killed, slow consumer, history lost): go on elsewhere.
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = seen.lock().unwrap().clone();
    s
}

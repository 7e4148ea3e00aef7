//! `subscribe`: live events of a channel, after replaying what the client missed.
//!
//! Order of work, so that nothing is lost or doubled: register the subscription in buffering
//! mode (live events are held) → declare interest in the backplane → read the stream position
//! and join presence (together) → reply → replay the gap from history in pages, paced by the
//! client's outbox → release the held live events above the replayed range → live.

use serde_json::{json, Value};

use super::{args, args::Args, backplane_error, Activity, Outcome, Session};
use crate::backplane::{PresenceEntry, StreamPosition};
use crate::protocol::{presence_frame, reply_frame, timestamp_now, ChannelKey, ErrorBody, ErrorCode};
use crate::telemetry::trace;
use tracing::Instrument;

/// `since` of a resuming client.
struct Since {
    offset: u64,
    epoch: Option<String>,
}

fn parse_since(v: Option<serde_json::Map<String, Value>>) -> Result<Option<Since>, ErrorBody> {
    let Some(mut m) = v else { return Ok(None) };
    let offset = args::uint(m.remove("offset"), "since.offset", 0, u64::MAX >> 1)?
        .ok_or_else(|| ErrorBody::field("since.offset", "since.offset is required"))?;
    let epoch = match m.remove("epoch") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) if e.len() <= 128 => Some(e),
        Some(_) => return Err(ErrorBody::field("since.epoch", "since.epoch must be a string")),
    };
    if let Some(k) = m.keys().next() {
        return Err(ErrorBody::field(format!("since.{k}"), "unknown field in since"));
    }
    Ok(Some(Since { offset, epoch }))
}

/// Where replay starts, and whether the client's position was recovered.
fn plan(since: Option<&Since>, pos: &StreamPosition) -> (u64, Option<bool>) {
    let Some(s) = since else { return (pos.top + 1, None) };
    let epoch_ok = s.epoch.as_deref().is_none_or(|e| e == pos.epoch);
    if epoch_ok && s.offset + 1 >= pos.first && s.offset <= pos.top {
        (s.offset + 1, Some(true))
    } else {
        (pos.first, Some(false))
    }
}

/// Subscribes the connection.
pub async fn run(s: &mut Session, request_id: &str, mut args: Args) -> Result<Outcome, ErrorBody> {
    let key = args.key()?;
    let since = parse_since(args.opt_object("since")?)?;
    let echo = args.opt_bool("echo")?.unwrap_or(true);
    let presence = args.opt_bool("presence")?.unwrap_or(true);
    args.finish()?;
    if !s.identity.permissions.can_subscribe(&key) {
        return Err(ErrorBody::new(ErrorCode::Forbidden, format!("no subscribe permission on {key}")));
    }
    if s.conn.is_subscribed(&key) {
        return Err(ErrorBody::new(ErrorCode::AlreadySubscribed, format!("already subscribed to {key}")));
    }
    let max = s.node.config.limits.max_subscriptions;
    if s.conn.subscription_count() >= max {
        return Err(ErrorBody::new(ErrorCode::LimitExceeded, format!("at most {max} subscriptions per connection")));
    }
    let node = s.node.clone();
    node.ensure_channel(&key).await?;

    let buffer = Some(node.config.channels.replay_buffer);
    let sub = node
        .router
        .subscribe(&s.conn, &key, echo, presence, buffer)
        .map_err(|_| ErrorBody::new(ErrorCode::AlreadySubscribed, format!("already subscribed to {key}")))?;
    // Presence goes in before the reply (once a client has its reply, others see it there) and
    // after the interest (a `join` announced before it would not come back to this node). It
    // does not depend on the position: both are awaited together, one backplane wait instead
    // of two on every subscribe, and on a resubscribe storm's critical path.
    let pos = match node.backplane.subscribe(&key).await {
        Ok(()) => {
            let joined = async {
                if presence {
                    join(s, &key).await;
                }
            };
            tokio::join!(node.backplane.position(&key), joined).0
        }
        Err(e) => Err(e),
    };
    let pos = match pos {
        Ok(p) => p,
        Err(e) => {
            if let Some(sub) = node.router.unsubscribe(&s.conn, &key) {
                super::unsubscribe::release(s, &key, &sub).await;
            }
            return Err(backplane_error(e, Some(&key)));
        }
    };
    let (start, recovered) = plan(since.as_ref(), &pos);
    let replayed = (pos.top + 1).saturating_sub(start);
    let reply = json!({
        "room": key.room(), "channel": key.channel(), "epoch": pos.epoch,
        "offset": (pos.top > 0).then_some(pos.top), "recovered": recovered, "replayed": replayed,
    });
    // The client's own `join` frame (presence events on) is held with the live events and
    // follows the replay.
    s.conn.deliver(reply_frame(request_id, &reply));
    let span = trace::reading("replay", &key);
    let sent = replay(s, &key, start, pos.top).instrument(span.clone()).await;
    trace::read_count(&span, sent);
    node.router.go_live(&sub, pos.top);
    s.activity(Activity::Subscribed, Some(&key));
    Ok(Outcome::Sent)
}

/// Sends retained events `start..=top` in pages, waiting for room in the outbox; returns how
/// many it sent.
async fn replay(s: &Session, key: &ChannelKey, start: u64, top: u64) -> u64 {
    let page = s.node.config.channels.replay_page;
    // A page never holds more than a quarter of the client's byte budget in memory.
    let page_bytes = s.node.config.limits.outbound_queue_bytes / 4;
    let mut cursor = start;
    let mut sent = 0;
    while cursor <= top {
        let events = match s.node.backplane.read_range(key, cursor, top, page, page_bytes).await {
            Ok(e) if !e.is_empty() => e,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(channel = %key, error = %e, "replay read failed; closing so the client resumes");
                s.conn.close(crate::protocol::close::SLOW_CONSUMER);
                return sent;
            }
        };
        for ev in events {
            cursor = ev.offset + 1;
            if !s.conn.send_paced(ev.frame).await {
                return sent;
            }
            sent += 1;
        }
    }
    sent
}

async fn join(s: &Session, key: &ChannelKey) {
    let entry = PresenceEntry {
        client_id: s.conn.client_id.to_string(),
        user: s.identity.user.clone(),
        node: s.node.id.clone(),
        joined_at: timestamp_now(),
        info: s.identity.permissions.info.clone(),
    };
    let announce = presence_frame("join", key, &entry.client_id, entry.user.as_deref(), &entry.info);
    if let Err(e) = s.node.backplane.presence_join(key, entry, announce).await {
        tracing::warn!(channel = %key, error = %e, "presence join failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(top: u64, first: u64) -> StreamPosition {
        StreamPosition { epoch: "e1".into(), top, first }
    }

    #[test]
    fn plans_follow_the_contract() {
        let since = |offset, epoch: Option<&str>| Since { offset, epoch: epoch.map(str::to_owned) };
        assert_eq!(plan(None, &pos(10, 1)), (11, None));
        assert_eq!(plan(Some(&since(4, Some("e1"))), &pos(10, 1)), (5, Some(true)));
        assert_eq!(plan(Some(&since(4, None)), &pos(10, 1)), (5, Some(true)));
        assert_eq!(plan(Some(&since(10, None)), &pos(10, 1)), (11, Some(true)));
        assert_eq!(plan(Some(&since(0, None)), &pos(0, 1)), (1, Some(true)));
        // Older than retention: replay what is left, not recovered.
        assert_eq!(plan(Some(&since(2, None)), &pos(10, 5)), (5, Some(false)));
        // Epoch changed.
        assert_eq!(plan(Some(&since(4, Some("old"))), &pos(10, 1)), (1, Some(false)));
        // A position the channel never reached.
        assert_eq!(plan(Some(&since(20, None)), &pos(10, 1)), (1, Some(false)));
    }
}

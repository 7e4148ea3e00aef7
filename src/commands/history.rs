//! `history`: stored events of a channel, newest page by default, capped in count and bytes.

use std::fmt::Write as _;

use super::{args::Args, backplane_error, Node, Outcome, Session, REPLY_ROOM};
use crate::backplane::{BackplaneError, HistoryQuery};
use crate::protocol::{raw, ChannelKey, ErrorBody};
use crate::telemetry::trace;
use tracing::Instrument;

/// A parsed history request (shared with `GET /v1/history`).
pub struct HistoryRequest {
    /// Which channel.
    pub key: ChannelKey,
    /// Bounds and size.
    pub query: HistoryQuery,
    /// Newest first.
    pub reverse: bool,
}

impl HistoryRequest {
    /// Parses `room`, `channel`, `limit`, `since`, `before`, `reverse`.
    pub fn parse(args: &mut Args) -> Result<Self, ErrorBody> {
        let key = args.key()?;
        let limit = args.opt_u64("limit", 1, 1000)?.unwrap_or(50) as usize;
        let since = args.opt_u64("since", 0, u64::MAX >> 1)?;
        let before = args.opt_u64("before", 0, u64::MAX >> 1)?;
        let reverse = args.opt_bool("reverse")?.unwrap_or(false);
        Ok(Self { key, query: HistoryQuery { since, before, limit, max_bytes: 0 }, reverse })
    }
}

/// Runs a history query and renders the result object as JSON text. The events fit in
/// `limits.max_reply_bytes`; `has_more` says when the limit or that cap cut the page. A channel
/// that does not exist has no history: the result is empty (a read creates nothing).
pub async fn query(node: &Node, mut req: HistoryRequest) -> Result<String, ErrorBody> {
    let key = &req.key;
    req.query.max_bytes = node.config.limits.max_reply_bytes.saturating_sub(REPLY_ROOM);
    let span = trace::reading("history", key);
    let found = node.backplane.history(key, req.query).instrument(span.clone()).await;
    trace::read_count(&span, found.as_ref().map_or(0, |p| p.events.len() as u64));
    let page = match found {
        Ok(p) => p,
        Err(BackplaneError::NotFound) => {
            return Ok(r#"{"events":[],"epoch":null,"offset":null,"has_more":false}"#.to_owned())
        }
        Err(e) => return Err(backplane_error(e, Some(key))),
    };
    let mut events = page.events;
    if req.reverse {
        events.reverse();
    }
    let mut out = String::with_capacity(96 + events.iter().map(|e| e.frame.len() + 1).sum::<usize>());
    out.push_str(r#"{"events":["#);
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e.frame.as_str());
    }
    let pos = page.pos;
    let offset = if pos.top > 0 { pos.top.to_string() } else { "null".to_owned() };
    let epoch = serde_json::Value::from(pos.epoch);
    let _ = write!(out, r#"],"epoch":{epoch},"offset":{offset},"has_more":{}}}"#, page.has_more);
    Ok(out)
}

/// The `history` command.
pub async fn run(s: &Session, mut args: Args) -> Result<Outcome, ErrorBody> {
    let req = HistoryRequest::parse(&mut args)?;
    args.finish()?;
    s.check_readable(&req.key)?;
    Ok(Outcome::Reply(raw(query(&s.node, req).await?)))
}

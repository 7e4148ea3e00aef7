//! `presence`: who is subscribed to a channel, on every node, a page at a time.

use serde_json::json;

use super::{args::Args, backplane_error, fit, to_raw, Outcome, Session};
use crate::backplane::BackplaneError;
use crate::protocol::ErrorBody;

/// Lists a page of a channel's presence (ascending by client id, after `cursor`).
pub async fn run(s: &Session, mut args: Args) -> Result<Outcome, ErrorBody> {
    let key = args.key()?;
    let page = args.page()?;
    args.finish()?;
    s.check_readable(&key)?;
    let node = &s.node;
    let found = match node.backplane.presence(&key, page).await {
        Ok(p) => p,
        Err(BackplaneError::NotFound) => {
            return Ok(Outcome::Reply(to_raw(&json!({ "clients": [], "count": 0, "next_cursor": null }))))
        }
        Err(e) => return Err(backplane_error(e, Some(&key))),
    };
    let (clients, cut) = fit(&found.entries, node.reply_budget());
    let more = cut || found.has_more;
    let next = more.then(|| clients.len().checked_sub(1).map(|i| found.entries[i].client_id.clone())).flatten();
    Ok(Outcome::Reply(to_raw(&json!({ "clients": clients, "count": found.count, "next_cursor": next }))))
}

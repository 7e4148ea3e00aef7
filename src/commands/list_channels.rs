//! `list_channels`: the channels of a room this client may subscribe to, a page at a time.

use serde_json::json;

use super::{args::Args, backplane_error, fit, to_raw, Outcome, Session};
use crate::protocol::{ChannelKey, ErrorBody};

/// Lists a page of a room's channels (ascending by name, after `cursor`).
pub async fn run(s: &Session, mut args: Args) -> Result<Outcome, ErrorBody> {
    let room = args.name("room")?;
    let page = args.page()?;
    args.finish()?;
    let (all, more) = s.node.backplane.list_channels(&room, page).await.map_err(|e| backplane_error(e, None))?;
    let last = all.last().map(|c| c.channel.clone());
    let perms = &s.identity.permissions;
    let visible: Vec<_> =
        all.into_iter().filter(|c| perms.can_subscribe(&ChannelKey::new(&c.room, &c.channel))).collect();
    let (channels, cut) = fit(&visible, s.node.reply_budget());
    // The cursor is the last name looked at: channels the client may not see still move it on.
    let next = if cut {
        channels.len().checked_sub(1).map(|i| visible[i].channel.clone())
    } else if more {
        last
    } else {
        None
    };
    Ok(Outcome::Reply(to_raw(&json!({ "channels": channels, "next_cursor": next }))))
}

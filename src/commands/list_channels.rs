//! `list_channels`: the channels of a room this client may subscribe to.

use super::{args::Args, backplane_error, to_raw, Outcome, Session};
use crate::protocol::{ChannelKey, ErrorBody};

/// Lists a room's channels.
pub async fn run(s: &Session, mut args: Args) -> Result<Outcome, ErrorBody> {
    let room = args.name("room")?;
    args.finish()?;
    let all = s.node.backplane.list_channels(&room).await.map_err(|e| backplane_error(e, None))?;
    let perms = &s.identity.permissions;
    let channels: Vec<_> =
        all.into_iter().filter(|c| perms.can_subscribe(&ChannelKey::new(&c.room, &c.channel))).collect();
    Ok(Outcome::Reply(to_raw(&serde_json::json!({ "channels": channels }))))
}

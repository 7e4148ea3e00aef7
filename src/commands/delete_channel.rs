//! `delete_channel` (admin): removes a channel and its history; subscribers everywhere get
//! `unsubscribed` with reason `channel_deleted`.

use super::{args::Args, backplane_error, to_raw, Activity, Outcome, Session};
use crate::protocol::{ErrorBody, ErrorCode};

/// Deletes a channel.
pub async fn run(s: &Session, mut args: Args) -> Result<Outcome, ErrorBody> {
    let key = args.key()?;
    args.finish()?;
    s.require_admin()?;
    if key.is_reserved() {
        return Err(ErrorBody::new(ErrorCode::Forbidden, "rooms beginning with _ are reserved for the server"));
    }
    s.node.backplane.delete_channel(&key).await.map_err(|e| backplane_error(e, Some(&key)))?;
    s.activity(Activity::ChannelDeleted, Some(&key));
    Ok(Outcome::Reply(to_raw(&serde_json::json!({}))))
}

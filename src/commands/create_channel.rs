//! `create_channel` (admin): declares a channel with its options.

use super::{args::Args, backplane_error, to_raw, Activity, Outcome, Session};
use crate::backplane::ChannelOptions;
use crate::protocol::{ErrorBody, ErrorCode};

/// Declares a channel.
pub async fn run(s: &Session, mut args: Args) -> Result<Outcome, ErrorBody> {
    let key = args.key()?;
    let defaults = s.node.default_options();
    let options = ChannelOptions {
        description: args.opt_str("description", 256)?,
        history_size: args.opt_u64("history_size", 0, 100_000)?.unwrap_or(defaults.history_size),
        history_ttl_s: args.opt_u64("history_ttl_s", 1, 2_592_000)?.unwrap_or(defaults.history_ttl_s),
        presence_events: args.opt_bool("presence_events")?.unwrap_or(false),
    };
    args.finish()?;
    s.require_admin()?;
    if key.is_reserved() {
        return Err(ErrorBody::new(ErrorCode::Forbidden, "rooms beginning with _ are reserved for the server"));
    }
    let info = s.node.backplane.create_channel(&key, options).await.map_err(|e| backplane_error(e, Some(&key)))?;
    s.activity(Activity::ChannelCreated, Some(&key));
    Ok(Outcome::Reply(to_raw(&info)))
}

//! `channel_info`: options, position and subscriber count of one channel.

use super::{args::Args, backplane_error, to_raw, Outcome, Session};
use crate::protocol::ErrorBody;

/// Describes a channel; NOT_FOUND when it does not exist (a read creates nothing).
pub async fn run(s: &Session, mut args: Args) -> Result<Outcome, ErrorBody> {
    let key = args.key()?;
    args.finish()?;
    s.check_readable(&key)?;
    let info = s.node.backplane.channel_info(&key).await.map_err(|e| backplane_error(e, Some(&key)))?;
    Ok(Outcome::Reply(to_raw(&info)))
}

//! `channel_info`: options, position and subscriber count of one channel.

use super::{args::Args, backplane_error, to_raw, Outcome, Session};
use crate::protocol::ErrorBody;

/// Describes a channel.
pub async fn run(s: &Session, mut args: Args) -> Result<Outcome, ErrorBody> {
    let key = args.key()?;
    args.finish()?;
    s.open_readable(&key).await?;
    let node = &s.node;
    let info = node.backplane.channel_info(&key).await.map_err(|e| backplane_error(e, Some(&key)))?;
    Ok(Outcome::Reply(to_raw(&info)))
}

//! `presence`: who is subscribed to a channel, on every node.

use serde_json::json;

use super::{args::Args, backplane_error, to_raw, Outcome, Session};
use crate::protocol::ErrorBody;

/// Lists a channel's presence.
pub async fn run(s: &Session, mut args: Args) -> Result<Outcome, ErrorBody> {
    let key = args.key()?;
    args.finish()?;
    s.open_readable(&key).await?;
    let node = &s.node;
    let clients = node.backplane.presence(&key).await.map_err(|e| backplane_error(e, Some(&key)))?;
    Ok(Outcome::Reply(to_raw(&json!({ "count": clients.len(), "clients": clients }))))
}

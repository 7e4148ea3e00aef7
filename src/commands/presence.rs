//! `presence`: who is subscribed to a channel, on every node.

use serde_json::json;

use super::{args::Args, backplane_error, to_raw, Outcome, Session};
use crate::protocol::{ErrorBody, ErrorCode};

/// Lists a channel's presence.
pub async fn run(s: &Session, mut args: Args) -> Result<Outcome, ErrorBody> {
    let key = args.key()?;
    args.finish()?;
    if !s.identity.permissions.can_subscribe(&key) {
        return Err(ErrorBody::new(ErrorCode::Forbidden, format!("no subscribe permission on {key}")));
    }
    let node = &s.node;
    let create = if key.is_reserved() { Some(node.default_options()) } else { node.create_options() };
    node.backplane.ensure_channel(&key, create.as_ref()).await.map_err(|e| backplane_error(e, Some(&key)))?;
    let clients = node.backplane.presence(&key).await.map_err(|e| backplane_error(e, Some(&key)))?;
    Ok(Outcome::Reply(to_raw(&json!({ "count": clients.len(), "clients": clients }))))
}

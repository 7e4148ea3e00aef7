//! `unsubscribe`, and releasing a subscription's backplane interest and presence.

use std::sync::Arc;

use super::{args::Args, to_raw, Activity, Outcome, Session};
use crate::protocol::{presence_frame, ChannelKey, ErrorBody, ErrorCode};
use crate::routing::Sub;

/// Ends a subscription.
pub async fn run(s: &mut Session, mut args: Args) -> Result<Outcome, ErrorBody> {
    let key = args.key()?;
    args.finish()?;
    let sub = s
        .node
        .router
        .unsubscribe(&s.conn, &key)
        .ok_or_else(|| ErrorBody::new(ErrorCode::NotSubscribed, format!("not subscribed to {key}")))?;
    release(s, &key, &sub).await;
    s.activity(Activity::Unsubscribed, Some(&key));
    Ok(Outcome::Reply(to_raw(&serde_json::json!({}))))
}

/// Gives back the backplane interest and presence entry of a removed subscription.
pub async fn release(s: &Session, key: &ChannelKey, sub: &Arc<Sub>) {
    let bp = &s.node.backplane;
    if let Err(e) = bp.unsubscribe(key).await {
        tracing::warn!(channel = %key, error = %e, "backplane unsubscribe failed");
    }
    if sub.presence {
        let (user, info) = (s.identity.user.as_deref(), &s.identity.permissions.info);
        let announce = presence_frame("leave", key, &s.conn.client_id, user, info);
        if let Err(e) = bp.presence_leave(key, &s.conn.client_id, announce).await {
            tracing::warn!(channel = %key, error = %e, "presence leave failed");
        }
    }
}

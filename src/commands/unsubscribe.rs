//! `unsubscribe`, and releasing a subscription's backplane interest and presence.

use std::sync::Arc;

use super::{args::Args, subscribe::presence_payload, to_raw, Activity, Outcome, Session};
use crate::protocol::{system_frame, ChannelKey, ErrorBody, ErrorCode};
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
    s.activity(Activity::Unsubscribed, Some(&key)).await;
    Ok(Outcome::Reply(to_raw(&serde_json::json!({}))))
}

/// Gives back the backplane interest and presence entry of a removed subscription.
pub async fn release(s: &Session, key: &ChannelKey, sub: &Arc<Sub>) {
    let bp = &s.node.backplane;
    if let Err(e) = bp.unsubscribe(key).await {
        tracing::warn!(channel = %key, error = %e, "backplane unsubscribe failed");
    }
    if sub.presence {
        let payload = presence_payload(&s.conn.client_id, &s.identity.user, &s.identity.permissions.info);
        let announce = system_frame("leave", Some(key), &payload);
        if let Err(e) = bp.presence_leave(key, &s.conn.client_id, announce).await {
            tracing::warn!(channel = %key, error = %e, "presence leave failed");
        }
    }
}

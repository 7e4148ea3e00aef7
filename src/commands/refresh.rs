//! `refresh`: replaces the connection's credentials before they expire, and ends the
//! subscriptions the new permissions no longer allow.

use serde_json::json;

use super::{args::Args, to_raw, unsubscribe, Activity, Outcome, Session};
use crate::auth::AuthError;
use crate::protocol::{unsubscribed_frame, ErrorBody, ErrorCode};

/// Validates a new token for the same user and adopts its permissions and expiry.
pub async fn run(s: &mut Session, mut args: Args) -> Result<Outcome, ErrorBody> {
    let token = args
        .opt_str("token", 8192)?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ErrorBody::field("token", "token is required"))?;
    args.finish()?;
    if !s.node.auth.enabled() {
        return Ok(Outcome::Reply(to_raw(&json!({ "expires_at": null }))));
    }
    let identity = s.node.auth.authenticate(Some(&token)).await.map_err(|e| match e {
        AuthError::Missing => ErrorBody::field("token", "token is required"),
        AuthError::Invalid(_) => ErrorBody::new(ErrorCode::Unauthorized, "invalid or expired token"),
        AuthError::Unavailable(_) => {
            ErrorBody::new(ErrorCode::Unavailable, "authentication is unavailable, retry later").retry_after(1000)
        }
    })?;
    if identity.user != s.identity.user {
        return Err(ErrorBody::new(ErrorCode::Forbidden, "the new token is for another user"));
    }
    let expires_at = identity
        .expires_at
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    // Subscriptions the new permissions do not allow end as an `unsubscribe` would, released
    // under the old identity (the presence `leave` matches the `join`). Their `unsubscribed`
    // frames are queued before the reply.
    let mut revoked = Vec::new();
    for key in s.conn.subscriptions().into_iter().filter(|k| !identity.permissions.can_subscribe(k)) {
        let Some(sub) = s.node.router.unsubscribe(&s.conn, &key) else { continue };
        s.conn.deliver(unsubscribed_frame(&key, "permission_revoked"));
        unsubscribe::release(s, &key, &sub).await;
        revoked.push(key);
    }
    s.identity = identity;
    for key in &revoked {
        s.activity(Activity::Unsubscribed, Some(key));
    }
    Ok(Outcome::Reply(to_raw(&json!({ "expires_at": expires_at }))))
}

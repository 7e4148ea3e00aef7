//! Authentication and permissions.
//!
//! Owns the [`Authenticator`] trait (`none`, `jwt`, `webhook`), the [`Claims`] every
//! authenticator turns into an [`Identity`], permission checks with `room:channel` patterns,
//! and the scoped keys of the HTTP API ([`api_keys`]). Imports only `protocol` and `config`.

pub(crate) mod api_keys;
mod fetch;
mod jwks;
mod jwt;
mod keys;
mod webhook;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use crate::protocol::ChannelKey;

pub use jwks::{JwksSource, JwksStore};
pub use jwt::{JwtAuthenticator, JwtKeys, JwtRules};
pub use keys::{algorithm as jwt_algorithm, VerifyKey};
pub use webhook::WebhookAuthenticator;

/// Why credentials were refused. The text of each variant is what a client may see; the
/// reasons they carry are for logs only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was given.
    #[error("a token is required (Authorization: Bearer <token> or ?token=)")]
    Missing,
    /// The token is malformed, badly signed, expired or refused. The reason (signature, expiry,
    /// claims…) is for the debug log: telling it to the client would help a forger.
    #[error("invalid token")]
    Invalid(String),
    /// The credentials could not be checked (the authentication service did not answer
    /// usably); nobody is let in on this.
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

/// The identity claims of §5, the same for every authenticator: a JWT's payload or a
/// webhook's answer, `{"sub":"alice","exp":…,"arqonbus":{…}}`.
#[derive(Debug, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Unix seconds when the credentials expire (required by JWT, optional for a webhook).
    #[serde(default)]
    pub exp: Option<i64>,
    /// The permissions; missing grants nothing.
    #[serde(default)]
    pub arqonbus: Permissions,
}

impl Claims {
    /// The identity the claims describe; an empty `sub` is refused.
    pub fn into_identity(self) -> Result<Identity, AuthError> {
        if self.sub.is_empty() {
            return Err(AuthError::Invalid("empty sub".into()));
        }
        // `info` is copied into every presence entry and `join`/`leave` frame of the user.
        let info_bytes = serde_json::to_string(&self.arqonbus.info).map_or(usize::MAX, |s| s.len());
        if info_bytes > MAX_INFO_BYTES {
            return Err(AuthError::Invalid(format!(
                "arqonbus.info takes {info_bytes} bytes, more than {MAX_INFO_BYTES}"
            )));
        }
        Ok(Identity { user: Some(self.sub), permissions: self.arqonbus, expires_at: self.exp })
    }
}

/// Largest `arqonbus.info` claim, as JSON (it is shown in presence).
pub const MAX_INFO_BYTES: usize = 4096;

/// The permission claims (§5): `{"subscribe":[…],"publish":[…],"private":bool,"admin":bool,"info":{…}}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Permissions {
    /// Patterns the client may subscribe to.
    pub subscribe: Vec<String>,
    /// Patterns the client may publish to.
    pub publish: Vec<String>,
    /// Whether it may send private messages.
    pub private: bool,
    /// Whether it may run admin commands and use `_sys`.
    pub admin: bool,
    /// Public information shown in presence.
    pub info: Value,
}

impl Permissions {
    /// Everything allowed (auth off).
    pub fn all() -> Self {
        Self {
            subscribe: vec!["*:*".into()],
            publish: vec!["*:*".into()],
            private: true,
            admin: true,
            info: Value::Null,
        }
    }

    /// May subscribe to `key` (and read its history and presence).
    pub fn can_subscribe(&self, key: &ChannelKey) -> bool {
        self.admin || (!key.is_reserved() && matches_any(&self.subscribe, key))
    }

    /// May publish to `key`. Reserved rooms are the server's: nobody publishes there.
    pub fn can_publish(&self, key: &ChannelKey) -> bool {
        !key.is_reserved() && (self.admin || matches_any(&self.publish, key))
    }
}

fn matches_any(patterns: &[String], key: &ChannelKey) -> bool {
    patterns.iter().any(|p| pattern_matches(p, key))
}

/// `room:channel` where `*` stands for one whole segment.
pub fn pattern_matches(pattern: &str, key: &ChannelKey) -> bool {
    let Some((room, channel)) = pattern.split_once(':') else { return false };
    (room == "*" || room == key.room()) && (channel == "*" || channel == key.channel())
}

/// Who a connection is and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The user id (`sub`), `None` without auth.
    pub user: Option<String>,
    /// What it may do.
    pub permissions: Permissions,
    /// Unix seconds when the credentials expire.
    pub expires_at: Option<i64>,
}

impl Identity {
    /// The anonymous, all-powerful identity of a node without auth.
    pub fn anonymous() -> Self {
        Self { user: None, permissions: Permissions::all(), expires_at: None }
    }
}

/// Checks credentials presented at the handshake or by `refresh`.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// Validates a token (or its absence).
    async fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError>;
    /// Whether credentials are checked at all.
    fn enabled(&self) -> bool;
}

/// Auth off: every client is anonymous and may do everything.
pub struct NoAuth;

#[async_trait]
impl Authenticator for NoAuth {
    async fn authenticate(&self, _token: Option<&str>) -> Result<Identity, AuthError> {
        Ok(Identity::anonymous())
    }

    fn enabled(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_segments() {
        let k = ChannelKey::new("science", "explore");
        assert!(pattern_matches("science:*", &k));
        assert!(pattern_matches("*:explore", &k));
        assert!(pattern_matches("*:*", &k));
        assert!(pattern_matches("science:explore", &k));
        assert!(!pattern_matches("science:expl", &k));
        assert!(!pattern_matches("sci*:explore", &k));
        assert!(!pattern_matches("science", &k));
    }

    #[test]
    fn reserved_rooms() {
        let sys = ChannelKey::new("_sys", "activity");
        let mut p = Permissions { subscribe: vec!["*:*".into()], publish: vec!["*:*".into()], ..Default::default() };
        assert!(!p.can_subscribe(&sys));
        assert!(!p.can_publish(&sys));
        p.admin = true;
        assert!(p.can_subscribe(&sys));
        assert!(!p.can_publish(&sys), "nobody publishes into the server's rooms");
    }
}

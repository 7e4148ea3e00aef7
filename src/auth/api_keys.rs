//! The keys of the HTTP API (`http.api_key`, `http.api_keys`): which key a request presents,
//! and whether that key's scopes and channel patterns allow what it asks.
//!
//! A presented key is compared with every configured key in constant time, without stopping at
//! the first match, so response times do not tell how much of a key was right or which entry
//! matched. Several keys may be valid at once, so a key can be rotated without downtime.

use subtle::{Choice, ConstantTimeEq};

use super::pattern_matches;
use crate::config::{ApiScope, HttpConfig};
use crate::protocol::ChannelKey;

const ALL_SCOPES: &[ApiScope] = &[ApiScope::Publish, ApiScope::History, ApiScope::Admin];

/// What a presented, valid key may do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApiGrant<'a> {
    scopes: &'a [ApiScope],
    /// `None`: every channel.
    channels: Option<&'a [String]>,
}

/// Why a valid key may not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiRefusal {
    /// The key lacks the scope.
    #[error("this API key lacks the {0} scope")]
    Scope(&'static str),
    /// No channel pattern of the key covers the channel.
    #[error("this API key does not cover {0}")]
    Channel(String),
}

/// The grant of the configured key equal to `given`, if any.
pub fn find<'a>(http: &'a HttpConfig, given: &str) -> Option<ApiGrant<'a>> {
    let given = given.as_bytes();
    let legacy = http.api_key.iter().map(|k| (k.expose(), ApiGrant { scopes: ALL_SCOPES, channels: None }));
    let scoped =
        http.api_keys.iter().map(|k| (k.key.expose(), ApiGrant { scopes: &k.scopes, channels: k.channels.as_deref() }));
    let mut found = None;
    for (key, grant) in legacy.chain(scoped) {
        let hit: Choice = key.as_bytes().ct_eq(given);
        // Keys are unique (validated), so at most one hits; every key is compared regardless.
        if bool::from(hit) {
            found = Some(grant);
        }
    }
    found
}

impl ApiGrant<'_> {
    /// Whether the key may use `scope` at all.
    pub fn has(&self, scope: ApiScope) -> Result<(), ApiRefusal> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiRefusal::Scope(scope_name(scope)))
        }
    }

    /// Whether the key may use `scope` on `key`.
    pub fn allows(&self, scope: ApiScope, key: &ChannelKey) -> Result<(), ApiRefusal> {
        self.has(scope)?;
        match self.channels {
            Some(patterns) if !patterns.iter().any(|p| pattern_matches(p, key)) => {
                Err(ApiRefusal::Channel(key.to_string()))
            }
            _ => Ok(()),
        }
    }
}

fn scope_name(s: ApiScope) -> &'static str {
    match s {
        ApiScope::Publish => "publish",
        ApiScope::History => "history",
        ApiScope::Admin => "admin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiKeyConfig, Secret};

    fn http() -> HttpConfig {
        HttpConfig {
            api_key: Some(Secret::from("legacy-key-0123456789")),
            api_keys: vec![
                ApiKeyConfig {
                    key: Secret::from("publisher-0123456789"),
                    scopes: vec![ApiScope::Publish],
                    channels: Some(vec!["science:*".into(), "*:alerts".into()]),
                },
                ApiKeyConfig {
                    key: Secret::from("reader-0123456789abc"),
                    scopes: vec![ApiScope::History],
                    channels: None,
                },
            ],
        }
    }

    #[test]
    fn keys_grant_their_scopes_on_their_channels() {
        let h = http();
        let explore = ChannelKey::new("science", "explore");
        let art = ChannelKey::new("art", "x");
        let alerts = ChannelKey::new("art", "alerts");
        assert_eq!(find(&h, "nope-0123456789abcdef"), None);
        assert_eq!(find(&h, "publisher-012345678"), None, "a prefix is not the key");
        assert_eq!(find(&h, ""), None);
        let p = find(&h, "publisher-0123456789").unwrap();
        assert_eq!(p.allows(ApiScope::Publish, &explore), Ok(()));
        assert_eq!(p.allows(ApiScope::Publish, &alerts), Ok(()));
        assert_eq!(p.allows(ApiScope::Publish, &art), Err(ApiRefusal::Channel("art:x".into())));
        assert_eq!(p.allows(ApiScope::History, &explore), Err(ApiRefusal::Scope("history")));
        let r = find(&h, "reader-0123456789abc").unwrap();
        assert_eq!(r.allows(ApiScope::History, &art), Ok(()));
        assert!(r.has(ApiScope::Publish).is_err());
        let all = find(&h, "legacy-key-0123456789").unwrap();
        for scope in [ApiScope::Publish, ApiScope::History, ApiScope::Admin] {
            assert_eq!(all.allows(scope, &art), Ok(()));
        }
        assert_eq!(ApiRefusal::Scope("history").to_string(), "this API key lacks the history scope");
    }
}

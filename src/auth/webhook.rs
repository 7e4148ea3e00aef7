//! Webhook authentication: an HTTP endpoint of the operator's checks each token.
//!
//! The server POSTs `{"token":"…"}` as JSON to `auth.webhook_url` and reads the answer:
//!
//! - 200 with the claims of §5 (`{"sub","exp"?,"arqonbus":{…}}`): accepted, parsed by the same
//!   [`Claims`] as a JWT's payload;
//! - 401 or 403: the token is refused;
//! - anything else — a timeout, a connection error, a 5xx, a redirect, another status, or a
//!   200 whose body is not such claims — is [`AuthError::Unavailable`]: nobody is let in
//!   without an answer.
//!
//! Neither the token nor the answer's values ever reach a log line or an error message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{redirect, StatusCode, Url};

use super::fetch::{self, read_capped, Capped};
use super::{AuthError, Authenticator, Claims, Identity};
use crate::sync::lock;

/// Largest webhook answer read; a larger one is a failure, not a truncated parse.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Accepted answers remembered at most; when full, expired entries go, then everything.
const MAX_CACHED: usize = 10_000;

/// Checks tokens by asking an HTTP endpoint.
pub struct WebhookAuthenticator {
    client: reqwest::Client,
    url: Url,
    timeout: Duration,
    cache: Option<Cache>,
}

impl WebhookAuthenticator {
    /// An authenticator asking `url` (http or https), waiting at most `timeout` for the whole
    /// answer, and reusing an accepted answer for the same token for `cache_ttl` (zero: never).
    pub fn new(url: &str, timeout: Duration, cache_ttl: Duration) -> Result<Self, String> {
        let url = Url::parse(url).map_err(|e| format!("auth.webhook_url: {e}"))?;
        // A redirect would forward the token to another address: never followed. The webhook
        // is addressed directly: proxy variables in the environment are ignored.
        let client = fetch::client(timeout, redirect::Policy::none(), false)?;
        let cache = (!cache_ttl.is_zero()).then(|| Cache { ttl: cache_ttl, entries: Mutex::default() });
        Ok(Self { client, url, timeout, cache })
    }

    /// One round trip to the webhook.
    async fn ask(&self, token: &str) -> Result<Identity, AuthError> {
        let body = serde_json::json!({ "token": token });
        let resp = self.client.post(self.url.clone()).json(&body).send().await.map_err(|e| self.failed(&e))?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(AuthError::Invalid("refused by the authentication webhook".into()))
            }
            other => return Err(unavailable(format!("the webhook answered HTTP {}", other.as_u16()))),
        }
        let answer = read_capped(resp, MAX_ANSWER_BYTES).await.map_err(|e| match e {
            Capped::TooLarge => unavailable(format!("the webhook's answer is over {MAX_ANSWER_BYTES} bytes")),
            Capped::Http(e) => self.failed(&e),
        })?;
        let claims: Claims = serde_json::from_slice(&answer).map_err(|e| {
            // The serde message could quote the answer's values: keep only where it failed.
            let what = format!("{:?}", e.classify()).to_lowercase();
            unavailable(format!(
                "the webhook's answer is not an identity ({what} error at line {} column {})",
                e.line(),
                e.column()
            ))
        })?;
        let identity =
            claims.into_identity().map_err(|_| unavailable("the webhook's answer has an empty sub".into()))?;
        if identity.expires_at.is_some_and(|exp| exp <= chrono::Utc::now().timestamp()) {
            return Err(AuthError::Invalid("the webhook's answer has expired".into()));
        }
        Ok(identity)
    }

    /// A transport failure, described without the URL (it may carry a key of the operator's).
    fn failed(&self, e: &reqwest::Error) -> AuthError {
        unavailable(fetch::describe(e, "the webhook", self.timeout))
    }
}

fn unavailable(reason: String) -> AuthError {
    tracing::warn!(reason = %reason, "authentication webhook gave no usable answer; credentials refused with 503");
    AuthError::Unavailable(reason)
}

#[async_trait]
impl Authenticator for WebhookAuthenticator {
    async fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        if let Some(identity) = self.cache.as_ref().and_then(|c| c.get(token)) {
            return Ok(identity);
        }
        let identity = self.ask(token).await?;
        if let Some(c) = &self.cache {
            c.put(token, &identity);
        }
        Ok(identity)
    }

    fn enabled(&self) -> bool {
        true
    }
}

/// Accepted answers by token, each until the cache time or the identity's `exp` passes.
/// Refusals and failures are never cached.
struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Identity)>>,
}

impl Cache {
    fn get(&self, token: &str) -> Option<Identity> {
        let mut entries = lock(&self.entries);
        match entries.get(token) {
            Some((until, identity)) if *until > Instant::now() => Some(identity.clone()),
            Some(_) => {
                entries.remove(token);
                None
            }
            None => None,
        }
    }

    fn put(&self, token: &str, identity: &Identity) {
        let now = Instant::now();
        let mut until = now + self.ttl;
        if let Some(exp) = identity.expires_at {
            let left = exp.saturating_sub(chrono::Utc::now().timestamp()).max(0) as u64;
            until = until.min(now + Duration::from_secs(left));
        }
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_CACHED {
            entries.retain(|_, (t, _)| *t > now);
            if entries.len() >= MAX_CACHED {
                entries.clear();
            }
        }
        entries.insert(token.to_owned(), (until, identity.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(exp: Option<i64>) -> Identity {
        Identity { user: Some("alice".into()), permissions: Default::default(), expires_at: exp }
    }

    #[test]
    fn cache_keeps_answers_until_ttl_or_exp() {
        let c = Cache { ttl: Duration::from_secs(60), entries: Mutex::default() };
        c.put("t1", &identity(None));
        assert_eq!(c.get("t1"), Some(identity(None)));
        assert_eq!(c.get("t2"), None);
        // An identity that already expired is not served from the cache.
        let past = chrono::Utc::now().timestamp() - 5;
        c.put("t3", &identity(Some(past)));
        assert_eq!(c.get("t3"), None);
        let zero = Cache { ttl: Duration::from_millis(1), entries: Mutex::default() };
        zero.put("t1", &identity(None));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(zero.get("t1"), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = Cache { ttl: Duration::from_secs(60), entries: Mutex::default() };
        for i in 0..MAX_CACHED + 5 {
            c.put(&format!("t{i}"), &identity(None));
        }
        assert!(c.entries.lock().unwrap().len() <= MAX_CACHED);
    }
}

//! JWT authentication: `sub` is the user, `exp` the expiry, `arqonbus` the permissions.
//!
//! Keys: an HMAC secret, one PEM public key, or a JWK set whose keys the token's `kid` picks
//! (see [`super::jwks`]). Each key verifies exactly one algorithm (see [`super::keys`]); the
//! token's `alg` must be that one. `exp` is required and exact; `nbf` and `iat` may be at most
//! the configured leeway in the future. Why a token was refused goes to the debug log only:
//! the client learns "invalid token".

use std::sync::Arc;

use async_trait::async_trait;
use jsonwebtoken::{decode, decode_header, Validation};
use serde::Deserialize;

use super::jwks::{JwksStore, Lookup};
use super::keys::VerifyKey;
use super::{AuthError, Authenticator, Claims, Identity};

/// Where the verification key of a token comes from.
pub enum JwtKeys {
    /// One key for every token (an HMAC secret or a PEM public key); `kid` is ignored.
    Static(Arc<VerifyKey>),
    /// A JWK set; the token's `kid` chooses the key.
    Jwks(Arc<JwksStore>),
}

/// The claims checks besides the signature.
pub struct JwtRules {
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud`, if any.
    pub audience: Option<String>,
    /// Seconds `nbf` and `iat` may lie in the future (clock skew).
    pub leeway_s: u64,
}

/// Verifies JWTs.
pub struct JwtAuthenticator {
    keys: JwtKeys,
    rules: JwtRules,
}

/// The claims plus the times only a JWT carries. Numeric dates may be fractional (RFC 7519).
#[derive(Deserialize)]
struct JwtClaims {
    #[serde(flatten)]
    claims: Claims,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
}

impl JwtAuthenticator {
    /// A verifier with these keys and rules.
    pub fn new(keys: JwtKeys, rules: JwtRules) -> Self {
        Self { keys, rules }
    }

    /// The key for this token, or why there is none.
    async fn key_for(&self, token: &str) -> Result<Arc<VerifyKey>, AuthError> {
        match &self.keys {
            JwtKeys::Static(k) => Ok(k.clone()),
            JwtKeys::Jwks(store) => {
                let header = decode_header(token).map_err(|e| invalid(format!("bad header: {e}")))?;
                let kid = header.kid.filter(|k| !k.is_empty()).ok_or_else(|| invalid("no kid in the header".into()))?;
                match store.key(&kid).await {
                    Lookup::Found(k) => Ok(k),
                    Lookup::Unknown => Err(invalid("kid not in the JWK set".into())),
                    Lookup::NoKeys => Err(AuthError::Unavailable("no JWK set loaded yet".into())),
                }
            }
        }
    }

    fn validation(&self, key: &VerifyKey) -> Validation {
        // Only the key's own algorithm: the header cannot choose another one.
        let mut v = Validation::new(key.alg);
        // `exp` is exact: a connection is closed (4001) at `exp` too.
        v.leeway = 0;
        v.validate_nbf = false; // checked below, with the leeway
        v.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = &self.rules.issuer {
            v.set_issuer(&[iss]);
        }
        match &self.rules.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        v
    }

    /// `nbf` and `iat` must not lie further in the future than the leeway.
    fn check_times(&self, c: &JwtClaims) -> Result<(), AuthError> {
        let latest = (chrono::Utc::now().timestamp() as f64) + self.rules.leeway_s as f64;
        if c.nbf.is_some_and(|nbf| nbf > latest) {
            return Err(invalid("nbf is in the future".into()));
        }
        if c.iat.is_some_and(|iat| iat > latest) {
            return Err(invalid("iat is in the future".into()));
        }
        Ok(())
    }
}

/// A refusal; its reason is for the debug log, never for the client.
fn invalid(reason: String) -> AuthError {
    AuthError::Invalid(reason)
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let result = async {
            let key = self.key_for(token).await?;
            let data = decode::<JwtClaims>(token, &key.key, &self.validation(&key))
                .map_err(|e| invalid(format!("{:?}", e.kind())))?;
            self.check_times(&data.claims)?;
            data.claims.claims.into_identity()
        }
        .await;
        if let Err(AuthError::Invalid(reason)) = &result {
            tracing::debug!(%reason, "JWT refused");
        }
        result
    }

    fn enabled(&self) -> bool {
        true
    }
}

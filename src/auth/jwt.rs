//! HS256 JWT authentication: `sub` is the user, `exp` the expiry, `arqonbus` the permissions.

use async_trait::async_trait;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{AuthError, Authenticator, Identity, Permissions};

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    arqonbus: Permissions,
}

/// Verifies HS256 tokens signed with a shared secret.
pub struct JwtAuthenticator {
    key: DecodingKey,
    validation: Validation,
}

impl JwtAuthenticator {
    /// A verifier for `secret`, optionally requiring `iss` and `aud`.
    pub fn new(secret: &str, issuer: Option<&str>, audience: Option<&str>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
        }
        match audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Self { key: DecodingKey::from_secret(secret.as_bytes()), validation }
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let c = data.claims;
        if c.sub.is_empty() {
            return Err(AuthError::Invalid("empty sub".into()));
        }
        Ok(Identity { user: Some(c.sub), permissions: c.arqonbus, expires_at: Some(c.exp) })
    }

    fn enabled(&self) -> bool {
        true
    }
}

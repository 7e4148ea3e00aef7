//! HS256 JWT authentication: `sub` is the user, `exp` the expiry, `arqonbus` the permissions.

use async_trait::async_trait;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};

use super::{AuthError, Authenticator, Claims, Identity};

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
        // `exp` is a required claim: validation has checked that it is there and in the future.
        data.claims.into_identity()
    }

    fn enabled(&self) -> bool {
        true
    }
}

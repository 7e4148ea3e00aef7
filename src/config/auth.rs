//! `[auth]` (how WebSocket clients authenticate) and `[http]` (the API keys of the HTTP API),
//! with their validation.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// Algorithms `auth.jwt_algorithm` accepts: HMAC with `auth.jwt_secret`, the others with a
/// public key (`auth.jwt_public_key_file`, `auth.jwks_url`, `auth.jwks_file`).
pub const JWT_ALGORITHMS: [&str; 12] =
    ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// Everyone may do everything (local default).
    None,
    /// JWTs: HMAC with `auth.jwt_secret`, or RSA/EC/Ed25519 public keys from a PEM file or a JWKS.
    Jwt,
    /// An HTTP endpoint (`auth.webhook_url`) checks each token and returns the claims.
    Webhook,
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `none`, `jwt` or `webhook`.
    pub kind: AuthKind,
    /// HMAC secret (HS256 unless `jwt_algorithm` says HS384/HS512), at least 32 bytes.
    pub jwt_secret: Option<Secret>,
    /// PEM file with the public key (RSA, EC P-256/P-384 or Ed25519) that verifies tokens.
    pub jwt_public_key_file: Option<PathBuf>,
    /// http(s) URL of a JWK set; the token's `kid` picks the key. Refreshed periodically.
    pub jwks_url: Option<Secret>,
    /// File holding a JWK set; re-read periodically like `jwks_url`.
    pub jwks_file: Option<PathBuf>,
    /// The one algorithm tokens must use; unset: HS256 with a secret, else the key's own.
    pub jwt_algorithm: Option<String>,
    /// Required `iss` claim, if set.
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, if set.
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated on `nbf` and `iat` (s); `exp` is exact.
    pub jwt_leeway_s: u64,
    /// Period of the JWK set refresh (s).
    pub jwks_refresh_s: u64,
    /// Longest wait for one JWK set fetch, connect to last byte (ms).
    pub jwks_timeout_ms: u64,
    /// The http(s) URL that `kind = "webhook"` POSTs `{"token":…}` to.
    pub webhook_url: Option<Secret>,
    /// Longest wait for the webhook's whole answer; past it the handshake is refused (503).
    pub webhook_timeout_ms: u64,
    /// Seconds an accepted answer is reused for the same token; 0 = ask every time.
    pub webhook_cache_s: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            kind: AuthKind::None,
            jwt_secret: None,
            jwt_public_key_file: None,
            jwks_url: None,
            jwks_file: None,
            jwt_algorithm: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_s: 30,
            jwks_refresh_s: 300,
            jwks_timeout_ms: 2000,
            webhook_url: None,
            webhook_timeout_ms: 2000,
            webhook_cache_s: 0,
        }
    }
}

fn bad(key: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid { key, reason: reason.into() })
}

impl AuthConfig {
    /// The JWT key sources that are set, by config key.
    fn jwt_sources(&self) -> Vec<&'static str> {
        let set = [
            ("auth.jwt_secret", self.jwt_secret.is_some()),
            ("auth.jwt_public_key_file", self.jwt_public_key_file.is_some()),
            ("auth.jwks_url", self.jwks_url.is_some()),
            ("auth.jwks_file", self.jwks_file.is_some()),
        ];
        set.into_iter().filter(|(_, on)| *on).map(|(k, _)| k).collect()
    }

    /// Checks the section; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sources = self.jwt_sources();
        match (self.kind, sources.as_slice()) {
            (AuthKind::Jwt, []) => {
                return bad(
                    "auth.jwt_secret",
                    "is required when auth.kind = \"jwt\" (or set auth.jwt_public_key_file, auth.jwks_url or auth.jwks_file)",
                )
            }
            (AuthKind::Jwt, [_]) => self.validate_jwt()?,
            (AuthKind::Jwt, [first, second, ..]) => {
                return bad(second, format!("cannot be combined with {first}: set exactly one JWT key source"))
            }
            // A key source without JWT auth would leave the node open while its operator
            // believes tokens are checked.
            (_, [first, ..]) => return bad("auth.kind", format!("must be \"jwt\" when {first} is set")),
            (_, []) => {}
        }
        if self.kind == AuthKind::Webhook {
            match &self.webhook_url {
                None => return bad("auth.webhook_url", "is required when auth.kind = \"webhook\""),
                Some(u) if !is_http_url(u.expose()) => {
                    return bad("auth.webhook_url", "must be an http:// or https:// URL with a host")
                }
                Some(_) => {}
            }
        }
        let ranges: [(&'static str, u64, u64, u64); 5] = [
            ("auth.webhook_timeout_ms", self.webhook_timeout_ms, 1, 60_000),
            ("auth.webhook_cache_s", self.webhook_cache_s, 0, 86_400),
            ("auth.jwt_leeway_s", self.jwt_leeway_s, 0, 300),
            ("auth.jwks_refresh_s", self.jwks_refresh_s, 1, 86_400),
            ("auth.jwks_timeout_ms", self.jwks_timeout_ms, 1, 60_000),
        ];
        for (key, value, lo, hi) in ranges {
            if !(lo..=hi).contains(&value) {
                return bad(
                    key,
                    if lo == 0 { format!("must be at most {hi}") } else { format!("must be between {lo} and {hi}") },
                );
            }
        }
        Ok(())
    }

    /// The one key source of `kind = "jwt"` and the algorithm that goes with it.
    fn validate_jwt(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.as_ref().is_some_and(|s| s.expose().len() < 32) {
            return bad("auth.jwt_secret", "must be at least 32 bytes");
        }
        let files = [("auth.jwt_public_key_file", &self.jwt_public_key_file), ("auth.jwks_file", &self.jwks_file)];
        for (key, file) in files {
            if file.as_ref().is_some_and(|f| !f.is_file()) {
                return bad(key, "must name a readable file");
            }
        }
        if self.jwks_url.as_ref().is_some_and(|u| !is_http_url(u.expose())) {
            return bad("auth.jwks_url", "must be an http:// or https:// URL with a host");
        }
        if let Some(alg) = &self.jwt_algorithm {
            if !JWT_ALGORITHMS.contains(&alg.as_str()) {
                return bad("auth.jwt_algorithm", format!("must be one of {}", JWT_ALGORITHMS.join(", ")));
            }
            let hmac = alg.starts_with("HS");
            if hmac != self.jwt_secret.is_some() {
                let why =
                    if hmac { "HMAC needs auth.jwt_secret" } else { "auth.jwt_secret needs HS256, HS384 or HS512" };
                return bad("auth.jwt_algorithm", format!("{alg} does not fit the key source: {why}"));
            }
        }
        Ok(())
    }
}

/// What an HTTP API key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiScope {
    /// `POST /v1/publish`.
    Publish,
    /// `GET /v1/history`.
    History,
    /// Reserved for admin endpoints; no endpoint needs it yet.
    Admin,
}

/// One entry of `http.api_keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The bearer key, at least 16 characters.
    pub key: Secret,
    /// What the key may do.
    pub scopes: Vec<ApiScope>,
    /// `room:channel` patterns (`*` for a whole segment) the key may use; unset: every channel.
    #[serde(default)]
    pub channels: Option<Vec<String>>,
}

/// `[http]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// One bearer key with every scope on every channel (the original form).
    pub api_key: Option<Secret>,
    /// Scoped bearer keys; several may be valid at once, so a key can be rotated.
    pub api_keys: Vec<ApiKeyConfig>,
}

impl HttpConfig {
    /// Whether any key is configured; without one the HTTP API is off (404).
    pub fn api_enabled(&self) -> bool {
        self.api_key.is_some() || !self.api_keys.is_empty()
    }

    /// Checks the section; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.api_key.as_ref().is_some_and(|k| k.expose().len() < 16) {
            return bad("http.api_key", "must be at least 16 characters");
        }
        let mut seen: Vec<&str> = self.api_key.iter().map(|k| k.expose()).collect();
        for (i, entry) in self.api_keys.iter().enumerate() {
            let key = entry.key.expose();
            if key.len() < 16 {
                return bad("http.api_keys", format!("entry {i}: key must be at least 16 characters"));
            }
            if seen.contains(&key) {
                return bad("http.api_keys", format!("entry {i}: the same key is configured twice"));
            }
            seen.push(key);
            if entry.scopes.is_empty() {
                return bad("http.api_keys", format!("entry {i}: scopes must name publish, history or admin"));
            }
            match &entry.channels {
                Some(c) if c.is_empty() => {
                    return bad(
                        "http.api_keys",
                        format!("entry {i}: channels is empty (leave it out for every channel)"),
                    )
                }
                Some(c) => {
                    if let Some(p) = c.iter().find(|p| !is_channel_pattern(p)) {
                        return bad(
                            "http.api_keys",
                            format!("entry {i}: channel pattern {p:?} is not room:channel (each a name or *)"),
                        );
                    }
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// `room:channel` where each segment is a valid name or `*`.
fn is_channel_pattern(p: &str) -> bool {
    let ok = |s: &str| s == "*" || crate::protocol::validate_name(s).is_ok();
    p.split_once(':').is_some_and(|(room, channel)| ok(room) && ok(channel))
}

/// Whether `u` is an absolute `http`/`https` URL with a host.
fn is_http_url(u: &str) -> bool {
    reqwest::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    /// The error of loading the jail's configuration (file `arqonbus.toml` and environment).
    fn load_err() -> String {
        Config::load(None).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn jwt_needs_exactly_one_key_source() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ARQONBUS_AUTH__KIND", "jwt");
            let e = load_err();
            assert!(e.contains("auth.jwt_secret") && e.contains("auth.jwks_url"), "{e}");
            jail.create_file("key.pem", "not checked here")?;
            jail.set_env("ARQONBUS_AUTH__JWT_PUBLIC_KEY_FILE", "key.pem");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!((c.auth.jwt_leeway_s, c.auth.jwks_refresh_s, c.auth.jwks_timeout_ms), (30, 300, 2000));
            jail.set_env("ARQONBUS_AUTH__JWKS_URL", "https://idp:url-secret@idp.example/.well-known/jwks.json");
            let e = load_err();
            assert!(!e.contains("url-secret"), "{e}");
            assert!(e.contains("auth.jwks_url: cannot be combined with auth.jwt_public_key_file"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn jwt_key_sources_are_checked() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("ARQONBUS_AUTH__KIND", "jwt");
            jail.set_env("ARQONBUS_AUTH__JWKS_FILE", "missing.json");
            assert!(load_err().contains("auth.jwks_file: must name a readable file"), "{}", load_err());
            jail.create_file("jwks.json", "{}")?;
            jail.set_env("ARQONBUS_AUTH__JWKS_FILE", "jwks.json");
            Config::load(None).map_err(|e| e.to_string())?;
            for (alg, named) in [("none", "must be one of"), ("HS256", "HMAC needs auth.jwt_secret")] {
                jail.set_env("ARQONBUS_AUTH__JWT_ALGORITHM", alg);
                let e = load_err();
                assert!(e.contains("auth.jwt_algorithm") && e.contains(named), "{alg}: {e}");
            }
            jail.set_env("ARQONBUS_AUTH__JWT_ALGORITHM", "EdDSA");
            Config::load(None).map_err(|e| e.to_string())?;
            jail.set_env("ARQONBUS_AUTH__JWT_LEEWAY_S", "301");
            assert!(load_err().contains("auth.jwt_leeway_s: must be at most 300"), "{}", load_err());
            jail.set_env("ARQONBUS_AUTH__JWT_LEEWAY_S", "0");
            jail.set_env("ARQONBUS_AUTH__JWKS_REFRESH_S", "0");
            assert!(load_err().contains("auth.jwks_refresh_s"), "{}", load_err());
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("ARQONBUS_AUTH__KIND", "jwt");
            jail.set_env("ARQONBUS_AUTH__JWKS_URL", "file:///etc/jwks.json");
            assert!(load_err().contains("auth.jwks_url: must be an http"), "{}", load_err());
            jail.set_env("ARQONBUS_AUTH__JWKS_URL", "http://idp:url-secret@idp.internal:8080/keys");
            let printed = Config::load(None).map_err(|e| e.to_string())?.to_toml();
            assert!(!printed.contains("url-secret") && printed.contains("jwks_url = \"********\""), "{printed}");
            jail.set_env("ARQONBUS_AUTH__JWT_SECRET", "0123456789abcdef0123456789abcdef");
            assert!(load_err().contains("auth.jwks_url: cannot be combined with auth.jwt_secret"), "{}", load_err());
            // A key source without JWT auth would leave the node open: refused.
            jail.set_env("ARQONBUS_AUTH__KIND", "none");
            assert!(load_err().contains("auth.kind: must be \"jwt\" when auth.jwt_secret is set"), "{}", load_err());
            Ok(())
        });
    }

    #[test]
    fn api_keys_from_a_file_and_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "arqonbus.toml",
                r#"
                [[http.api_keys]]
                key = "publisher-0123456789"
                scopes = ["publish"]
                channels = ["science:*", "*:alerts"]

                [[http.api_keys]]
                key = "reader-0123456789abc"
                scopes = ["history", "admin"]
                "#,
            )?;
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert!(c.http.api_enabled());
            assert_eq!(c.http.api_keys.len(), 2);
            assert_eq!(c.http.api_keys[0].scopes, [ApiScope::Publish]);
            assert_eq!(c.http.api_keys[0].channels.as_deref(), Some(&["science:*".to_owned(), "*:alerts".into()][..]));
            assert_eq!(c.http.api_keys[1].channels, None);
            let printed = c.to_toml();
            assert!(!printed.contains("publisher-0123") && !printed.contains("reader-0123"), "{printed}");
            assert!(printed.contains("science:*"), "{printed}");
            jail.set_env("ARQONBUS_HTTP__API_KEYS", r#"[{key="env-key-0123456789ab",scopes=["history"]}]"#);
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.http.api_keys.len(), 1);
            assert_eq!(c.http.api_keys[0].key.expose(), "env-key-0123456789ab");
            Ok(())
        });
    }

    #[test]
    fn bad_api_keys_are_refused_naming_the_key() {
        let cases = [
            (r#"[{key="short",scopes=["publish"]}]"#, "entry 0: key must be at least 16"),
            (r#"[{key="k-0123456789abcdef",scopes=[]}]"#, "entry 0: scopes must name"),
            (r#"[{key="k-0123456789abcdef",scopes=["publish"],channels=[]}]"#, "channels is empty"),
            (
                r#"[{key="k-0123456789abcdef",scopes=["publish"],channels=["science"]}]"#,
                "\"science\" is not room:channel",
            ),
            (r#"[{key="k-0123456789abcdef",scopes=["publish"],channels=["sci*:x"]}]"#, "is not room:channel"),
            (
                r#"[{key="k-0123456789abcdef",scopes=["publish"]},{key="k-0123456789abcdef",scopes=["history"]}]"#,
                "entry 1: the same key is configured twice",
            ),
            (r#"[{key="legacy-key-0123456789",scopes=["publish"]}]"#, "entry 0: the same key is configured twice"),
        ];
        for (value, reason) in cases {
            figment::Jail::expect_with(|jail| {
                jail.set_env("ARQONBUS_HTTP__API_KEY", "legacy-key-0123456789");
                jail.set_env("ARQONBUS_HTTP__API_KEYS", value);
                let e = load_err();
                assert!(e.contains("http.api_keys") && e.contains(reason), "{value}: {e}");
                Ok(())
            });
        }
        figment::Jail::expect_with(|jail| {
            jail.set_env("ARQONBUS_HTTP__API_KEYS", r#"[{key="k-0123456789abcdef",scopes=["write"]}]"#);
            let e = load_err();
            assert!(e.contains("api_keys") && e.contains("write"), "{e}");
            assert!(Config::load(Some(Path::new("missing.toml"))).is_err());
            Ok(())
        });
    }
}

//! The HTTP side shared by the webhook and the JWKS fetcher: one client shape and a body read
//! with a byte cap.

use std::time::Duration;

use reqwest::redirect;

/// An HTTP(S) client with one total deadline per request (connect to last byte), bundled root
/// certificates, and the given redirect policy.
pub fn client(timeout: Duration, redirects: redirect::Policy, proxy_from_env: bool) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(redirects)
        .user_agent(concat!("arqonbus/", env!("CARGO_PKG_VERSION")));
    if !proxy_from_env {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Why a capped read failed.
pub enum Capped {
    /// The body is larger than the cap.
    TooLarge,
    /// The transfer failed.
    Http(reqwest::Error),
}

/// Reads the body, refusing more than `cap` bytes (by `Content-Length` or as it streams in).
pub async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, Capped> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(Capped::TooLarge);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Capped::Http)? {
        if out.len() + chunk.len() > cap {
            return Err(Capped::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A transport failure in words, with its causes but without the URL (it may carry a
/// credential of the operator's).
pub fn describe(e: &reqwest::Error, what: &str, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("{what} did not answer within {} ms", timeout.as_millis());
    }
    let mut text = if e.is_connect() { format!("cannot connect to {what}") } else { format!("{what}: request failed") };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

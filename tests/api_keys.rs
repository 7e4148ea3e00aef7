//! Scoped keys of the HTTP API (`http.api_keys`, protocol §7): scopes and channel patterns
//! (403 for a valid key that may not), several keys valid at once so that a key can be rotated
//! without downtime, and the single `http.api_key` keeping every scope on every channel.

mod common;

use std::net::SocketAddr;

use arqonbus::config::{ApiKeyConfig, ApiScope, Config, Secret};
use common::*;
use serde_json::{json, Value};

const LEGACY: &str = "legacy-key-0123456789";
const PUBLISHER: &str = "publisher-key-0123456789";
const READER: &str = "reader-key-0123456789";
const ADMIN_ONLY: &str = "admin-only-key-0123456789";

fn key(k: &str, scopes: &[ApiScope], channels: Option<&[&str]>) -> ApiKeyConfig {
    ApiKeyConfig {
        key: Secret::from(k),
        scopes: scopes.to_vec(),
        channels: channels.map(|c| c.iter().map(|p| (*p).to_owned()).collect()),
    }
}

fn keys_config(keys: Vec<ApiKeyConfig>) -> Config {
    let mut c = config();
    c.http.api_keys = keys;
    c
}

/// A request to the HTTP API with `key` as the bearer key (None: no Authorization header).
async fn call(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, Value) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(auth.as_deref().map(|a| ("authorization", a)));
    let (status, text) = http(addr, method, path, &headers, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn publish(addr: SocketAddr, key: Option<&str>, room: &str, channel: &str) -> (u16, Value) {
    let body = json!({ "room": room, "channel": channel, "payload": "hi" }).to_string();
    call(addr, "POST", "/v1/publish", key, &body).await
}

async fn history(addr: SocketAddr, key: Option<&str>, room: &str, channel: &str) -> (u16, Value) {
    call(addr, "GET", &format!("/v1/history?room={room}&channel={channel}"), key, "").await
}

fn forbidden(message: &str) -> (u16, Value) {
    (403, json!({"error": {"code": "FORBIDDEN", "message": message}}))
}

#[tokio::test]
async fn scopes_and_channel_patterns_are_enforced() {
    let node = start(keys_config(vec![
        key(PUBLISHER, &[ApiScope::Publish], Some(&["science:*", "*:alerts"])),
        key(READER, &[ApiScope::History], Some(&["science:explore"])),
        key(ADMIN_ONLY, &[ApiScope::Admin], None),
    ]))
    .await;
    let addr = node.addr();
    let p = Some(PUBLISHER);
    assert_eq!(publish(addr, p, "science", "explore").await.1["offset"], 1);
    assert_eq!(publish(addr, p, "art", "alerts").await.1["offset"], 1);
    assert_eq!(publish(addr, p, "art", "gallery").await, forbidden("this API key does not cover art:gallery"));
    assert_eq!(history(addr, p, "science", "explore").await, forbidden("this API key lacks the history scope"));

    let r = Some(READER);
    let (status, h) = history(addr, r, "science", "explore").await;
    assert_eq!((status, h["offset"].clone()), (200, json!(1)), "{h}");
    assert_eq!(h["events"][0]["payload"], "hi");
    assert_eq!(history(addr, r, "science", "other").await, forbidden("this API key does not cover science:other"));
    assert_eq!(publish(addr, r, "science", "explore").await, forbidden("this API key lacks the publish scope"));

    // `admin` is reserved for admin endpoints: it opens neither publish nor history.
    let a = Some(ADMIN_ONLY);
    assert_eq!(publish(addr, a, "science", "explore").await, forbidden("this API key lacks the publish scope"));
    assert_eq!(history(addr, a, "science", "explore").await, forbidden("this API key lacks the history scope"));

    // Unknown or missing keys are 401, whatever they ask.
    for k in [None, Some("publisher-key-012345678"), Some("not-a-configured-key-at-all")] {
        assert_eq!(publish(addr, k, "science", "explore").await.0, 401, "{k:?}");
        assert_eq!(history(addr, k, "science", "explore").await.0, 401, "{k:?}");
    }
    // None of the refused requests published anything.
    assert_eq!(history(addr, r, "science", "explore").await.1["offset"], 1);
}

#[tokio::test]
async fn two_keys_are_valid_at_once_so_a_key_rotates_without_downtime() {
    let old = key("rotating-key-2025-0123456789", &[ApiScope::Publish, ApiScope::History], None);
    let new = key("rotating-key-2026-0123456789", &[ApiScope::Publish, ApiScope::History], None);
    // While clients move over, the node accepts both.
    let both = start(keys_config(vec![old.clone(), new.clone()])).await;
    for k in [&old, &new] {
        let (status, ack) = publish(both.addr(), Some(k.key.expose()), "r", "c").await;
        assert_eq!(status, 200, "{ack}");
    }
    assert_eq!(history(both.addr(), Some(new.key.expose()), "r", "c").await.1["offset"], 2);
    // Then the old key is removed from the configuration.
    let only_new = start(keys_config(vec![new.clone()])).await;
    assert_eq!(publish(only_new.addr(), Some(old.key.expose()), "r", "c").await.0, 401);
    assert_eq!(publish(only_new.addr(), Some(new.key.expose()), "r", "c").await.0, 200);
}

#[tokio::test]
async fn the_single_api_key_has_every_scope_on_every_channel() {
    let mut c = keys_config(vec![key(READER, &[ApiScope::History], Some(&["science:explore"]))]);
    c.http.api_key = Some(Secret::from(LEGACY));
    let node = start(c).await;
    let addr = node.addr();
    for (room, channel) in [("science", "explore"), ("art", "gallery")] {
        assert_eq!(publish(addr, Some(LEGACY), room, channel).await.0, 200);
        assert_eq!(history(addr, Some(LEGACY), room, channel).await.1["offset"], 1);
    }
    // Reserved rooms stay the server's, whatever the key.
    assert_eq!(publish(addr, Some(LEGACY), "_sys", "activity").await.0, 403);
    assert_eq!(history(addr, Some(READER), "science", "explore").await.1["offset"], 1);
}

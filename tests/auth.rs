//! JWT authentication (HS256): handshake refusal and its body, `nbf`/`iat` with the leeway,
//! permissions, private messages to users, refresh and expiry (4001).

mod common;

use arqonbus::config::{AuthKind, Secret};
use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::Duration;

const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";

fn auth_config() -> arqonbus::config::Config {
    let mut c = config();
    c.auth.kind = AuthKind::Jwt;
    c.auth.jwt_secret = Some(Secret::from(SECRET));
    c
}

fn token(sub: &str, ttl_s: i64, perms: Value) -> String {
    let exp = chrono::Utc::now().timestamp() + ttl_s;
    let claims = json!({ "sub": sub, "exp": exp, "arqonbus": perms });
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

/// An HS256 token with these claims besides `sub`.
fn token_with(sub: &str, extra: Value) -> String {
    let mut claims = json!({ "sub": sub, "exp": now() + 3600 });
    for (k, v) in extra.as_object().expect("an object") {
        claims[k] = v.clone();
    }
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn reader(sub: &str) -> String {
    token(
        sub,
        3600,
        json!({"subscribe":["science:*"],"publish":["science:explore"],"private":true,"info":{"name":sub}}),
    )
}

#[tokio::test]
async fn handshake_needs_a_valid_token() {
    let node = start(auth_config()).await;
    assert_eq!(Client::connect_with(node.addr(), None).await.err(), Some(401));
    assert_eq!(Client::connect_with(node.addr(), Some("garbage")).await.err(), Some(401));
    let forged = encode(
        &Header::default(),
        &json!({"sub":"x","exp":9999999999i64}),
        &EncodingKey::from_secret(b"wrong-secret-wrong-secret-wrong-secret"),
    )
    .unwrap();
    assert_eq!(Client::connect_with(node.addr(), Some(&forged)).await.err(), Some(401));
    assert_eq!(Client::connect_with(node.addr(), Some(&token("x", -10, json!({})))).await.err(), Some(401));
    let c = Client::connect_with(node.addr(), Some(&reader("alice"))).await.unwrap();
    assert_eq!(c.welcome["payload"]["user"], "alice");
    // Browsers pass the token in the query string.
    let url = format!("{}?token={}", ws_url(node.addr()), reader("bob"));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    drop(ws);
}

#[tokio::test]
async fn permissions_are_enforced() {
    let node = start(auth_config()).await;
    let mut a = Client::connect_with(node.addr(), Some(&reader("alice"))).await.unwrap();
    let r = a.subscribe("science", "explore").await;
    assert_eq!(r["channel"], "explore");
    a.err("subscribe", json!({"room":"art","channel":"x"}), "FORBIDDEN").await;
    a.err("subscribe", json!({"room":"_sys","channel":"activity"}), "FORBIDDEN").await;
    a.err("history", json!({"room":"art","channel":"x"}), "FORBIDDEN").await;
    let v = a.request(json!({"type":"event","room":"science","channel":"other","payload":1})).await;
    assert_eq!(v["error"]["code"], "FORBIDDEN");
    let v = a.request(json!({"type":"event","room":"science","channel":"explore","payload":1})).await;
    assert_eq!(v["type"], "reply");
    let e = a.event().await;
    assert_eq!(e["user"], "alice");
    a.err("create_channel", json!({"room":"science","channel":"new"}), "FORBIDDEN").await;
    a.err("delete_channel", json!({"room":"science","channel":"explore"}), "FORBIDDEN").await;
    // Presence shows the user and the token's info.
    let p = a.ok("presence", json!({"room":"science","channel":"explore"})).await;
    assert_eq!(p["clients"][0]["user"], "alice");
    assert_eq!(p["clients"][0]["info"]["name"], "alice");
    // An admin may do everything.
    let mut admin = Client::connect_with(node.addr(), Some(&token("root", 3600, json!({"admin":true})))).await.unwrap();
    admin.ok("create_channel", json!({"room":"science","channel":"new"})).await;
    admin.subscribe("_sys", "activity").await;
    // Without the private claim, private messages are refused.
    let mut mute = Client::connect_with(node.addr(), Some(&token("mute", 3600, json!({})))).await.unwrap();
    let v = mute.request(json!({"type":"private","to":{"user":"alice"},"payload":1})).await;
    assert_eq!(v["error"]["code"], "FORBIDDEN");
}

#[tokio::test]
async fn private_to_a_user_reaches_all_of_their_connections() {
    let node = start(auth_config()).await;
    let mut b1 = Client::connect_with(node.addr(), Some(&reader("bob"))).await.unwrap();
    let mut b2 = Client::connect_with(node.addr(), Some(&reader("bob"))).await.unwrap();
    let mut a = Client::connect_with(node.addr(), Some(&reader("alice"))).await.unwrap();
    let v = a.request(json!({"type":"private","to":{"user":"bob"},"payload":"psst"})).await;
    assert_eq!(v["result"]["delivered"], 2);
    for b in [&mut b1, &mut b2] {
        let m = b.recv().await;
        assert_eq!(m["type"], "private");
        assert_eq!(m["user"], "alice");
        assert_eq!(m["to"]["user"], "bob");
    }
    a.silent_for(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn refresh_extends_and_expiry_closes_with_4001() {
    let node = start(auth_config()).await;
    let mut a = Client::connect_with(node.addr(), Some(&token("alice", 2, json!({})))).await.unwrap();
    let r = a.ok("refresh", json!({"token": token("alice", 3600, json!({}))})).await;
    assert!(r["expires_at"].as_str().unwrap().ends_with('Z'));
    a.err("refresh", json!({"token": token("mallory", 3600, json!({}))}), "FORBIDDEN").await;
    a.err("refresh", json!({"token": "garbage"}), "UNAUTHORIZED").await;
    let e = a.err("refresh", json!({}), "VALIDATION_ERROR").await;
    assert_eq!(e["field"], "token");
    // Past the first token's expiry, the refreshed connection is still open.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    a.ok("ping", json!({})).await;
    // A connection that does not refresh is closed with 4001.
    let mut b = Client::connect_with(node.addr(), Some(&token("bob", 1, json!({})))).await.unwrap();
    assert_eq!(b.closed().await, Some(4001));
}

#[tokio::test]
async fn without_auth_refresh_reports_no_expiry() {
    let node = start(config()).await;
    let mut a = Client::connect(node.addr()).await;
    let r = a.ok("refresh", json!({"token":"anything"})).await;
    assert_eq!(r["expires_at"], Value::Null);
}

#[tokio::test]
async fn refresh_that_drops_a_permission_ends_that_subscription() {
    let node = start(auth_config()).await;
    let mut admin = Client::connect_with(node.addr(), Some(&token("root", 3600, json!({"admin":true})))).await.unwrap();
    admin.subscribe("_sys", "activity").await;
    let both = json!({"subscribe":["science:kept","science:lost"],"info":{"name":"alice"}});
    let mut a = Client::connect_with(node.addr(), Some(&token("alice", 3600, both))).await.unwrap();
    a.subscribe("science", "kept").await;
    a.subscribe("science", "lost").await;
    let lost = json!({"room":"science","channel":"lost"});
    let count = |p: &Value| p["count"].as_u64().unwrap();
    assert_eq!(count(&admin.ok("presence", lost.clone()).await), 1);

    let narrow = token("alice", 7200, json!({"subscribe":["science:kept"]}));
    a.ok("refresh", json!({ "token": narrow })).await;
    // Exactly one `unsubscribed`, before the reply, shaped as the `channel_deleted` one.
    let u = a.recv().await;
    assert_eq!(
        u,
        json!({"version":"1.0","type":"system","event":"unsubscribed","room":"science","channel":"lost",
               "payload":{"reason":"permission_revoked"}})
    );
    // Released as an `unsubscribe` would be: presence, the subscription itself, activity.
    assert_eq!(count(&admin.ok("presence", lost.clone()).await), 0);
    assert_eq!(count(&admin.ok("presence", json!({"room":"science","channel":"kept"})).await), 1);
    a.err("unsubscribe", lost.clone(), "NOT_SUBSCRIBED").await;
    a.err("subscribe", lost.clone(), "FORBIDDEN").await;
    loop {
        let e = admin.event().await;
        let p = &e["payload"];
        if p["kind"] == "unsubscribed" && p["client_id"] == a.client_id.as_str() {
            assert_eq!((p["room"].as_str(), p["channel"].as_str()), (Some("science"), Some("lost")), "{e}");
            break;
        }
    }
    // No more events from the lost channel, still events from the kept one.
    admin.publish_silent("science", "lost", json!("after")).await;
    admin.publish("science", "lost", json!("after, acked")).await;
    admin.publish("science", "kept", json!("still here")).await;
    let e = a.event().await;
    assert_eq!((e["channel"].as_str(), e["payload"].as_str()), (Some("kept"), Some("still here")), "{e}");
    a.silent_for(Duration::from_millis(200)).await;
    // A refresh that keeps every permission ends nothing.
    a.ok("refresh", json!({"token": token("alice", 7200, json!({"subscribe":["science:*"]}))})).await;
    admin.publish("science", "kept", json!("again")).await;
    assert_eq!(a.event().await["payload"], "again");
    a.silent_for(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_401_says_invalid_token_and_never_why() {
    let node = start(auth_config()).await;
    let forged = encode(
        &Header::default(),
        &json!({"sub":"x","exp":now() + 60}),
        &EncodingKey::from_secret(b"wrong-secret-wrong-secret-wrong-secret"),
    )
    .unwrap();
    let refused = [
        "garbage".to_owned(),
        "a.b.c".to_owned(),
        forged,
        token("x", -10, json!({})),
        token_with("x", json!({"nbf": now() + 3600})),
        token_with("x", json!({"exp": "soon"})),
        token_with("", json!({})),
        token_with("x", json!({"arqonbus": {"admin": "yes"}})),
    ];
    let invalid = json!({"error":{"code":"UNAUTHORIZED","message":"invalid token"}});
    for t in &refused {
        assert_eq!(refused_handshake(node.addr(), Some(t)).await, (401, invalid.clone()), "{t}");
    }
    let (status, body) = refused_handshake(node.addr(), None).await;
    assert_eq!((status, &body["error"]["code"]), (401, &json!("UNAUTHORIZED")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("a token is required"), "{body}");
    // `refresh` does not tell the reason either.
    let mut a = Client::connect_with(node.addr(), Some(&reader("alice"))).await.unwrap();
    for t in &refused {
        let e = a.err("refresh", json!({ "token": t }), "UNAUTHORIZED").await;
        assert_eq!(e["message"], "invalid or expired token", "{t}: {e}");
    }
}

#[tokio::test]
async fn nbf_and_iat_in_the_future_are_refused_beyond_the_leeway() {
    let node = start(auth_config()).await;
    let addr = node.addr();
    // The default leeway is 30 s: a clock a few seconds ahead is tolerated.
    for claim in ["nbf", "iat"] {
        let near = token_with("alice", json!({ claim: now() + 10 }));
        assert!(Client::connect_with(addr, Some(&near)).await.is_ok(), "{claim} 10 s ahead");
        let past = token_with("alice", json!({ claim: now() - 600 }));
        assert!(Client::connect_with(addr, Some(&past)).await.is_ok(), "{claim} in the past");
        for ahead in [3600, 120] {
            let far = token_with("alice", json!({ claim: now() + ahead }));
            assert_eq!(Client::connect_with(addr, Some(&far)).await.err(), Some(401), "{claim} {ahead} s ahead");
        }
        // Fractional numeric dates are allowed (RFC 7519).
        let fractional = token_with("alice", json!({ claim: now() as f64 + 3600.5 }));
        assert_eq!(Client::connect_with(addr, Some(&fractional)).await.err(), Some(401), "{claim} fractional");
    }
    // `refresh` applies the same rules: a token not valid yet does not replace the current one.
    let mut a = Client::connect_with(addr, Some(&reader("alice"))).await.unwrap();
    a.err("refresh", json!({"token": token_with("alice", json!({"nbf": now() + 3600}))}), "UNAUTHORIZED").await;
    a.err("refresh", json!({"token": token_with("alice", json!({"iat": now() + 3600}))}), "UNAUTHORIZED").await;
    a.ok("refresh", json!({"token": token_with("alice", json!({"nbf": now() + 5, "iat": now() + 5}))})).await;

    // With no leeway, 5 s ahead is too far; `exp` never had a leeway.
    let mut strict = auth_config();
    strict.auth.jwt_leeway_s = 0;
    let node = start(strict).await;
    let ahead = token_with("alice", json!({"nbf": now() + 5}));
    assert_eq!(Client::connect_with(node.addr(), Some(&ahead)).await.err(), Some(401));
    let expired = token_with("alice", json!({"exp": now() - 1}));
    assert_eq!(Client::connect_with(node.addr(), Some(&expired)).await.err(), Some(401));
    assert!(Client::connect_with(node.addr(), Some(&token_with("alice", json!({"nbf": now()})))).await.is_ok());
}

#[tokio::test]
async fn jwt_algorithm_pins_the_hmac_variant() {
    let mut c = auth_config();
    c.auth.jwt_algorithm = Some("HS384".into());
    let node = start(c).await;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let claims = json!({"sub": "alice", "exp": now() + 60});
    let hs384 = encode(&Header::new(jsonwebtoken::Algorithm::HS384), &claims, &key).unwrap();
    assert!(Client::connect_with(node.addr(), Some(&hs384)).await.is_ok());
    let hs256 = encode(&Header::default(), &claims, &key).unwrap();
    assert_eq!(Client::connect_with(node.addr(), Some(&hs256)).await.err(), Some(401));
}

#[tokio::test]
async fn a_token_whose_presence_info_is_over_4_kib_is_refused() {
    let node = start(auth_config()).await;
    let fits = token("alice", 3600, json!({"subscribe":["*:*"],"info":{"bio":"x".repeat(4000)}}));
    assert!(Client::connect_with(node.addr(), Some(&fits)).await.is_ok());
    let big = token("alice", 3600, json!({"subscribe":["*:*"],"info":{"bio":"x".repeat(5000)}}));
    assert_eq!(Client::connect_with(node.addr(), Some(&big)).await.err(), Some(401));
}

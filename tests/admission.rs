//! Who may open a WebSocket: browser origins (`server.allowed_origins`), handshakes per client IP
//! (`limits.connect_rate_per_ip`, `X-Forwarded-For` from `server.trusted_proxies` only), and
//! connections per authenticated user (`limits.max_connections_per_user`).

mod common;

use arqonbus::config::{AuthKind, Secret};
use common::*;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Opens `/ws` with extra headers: the client when upgraded, (status, body) when refused.
async fn open(
    addr: SocketAddr,
    headers: &[(&'static str, String)],
    token: Option<&str>,
) -> Result<Client, (u16, Value)> {
    let mut req = ws_url(addr).into_client_request().expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().expect("header"));
    }
    if let Some(t) = token {
        req.headers_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
    }
    Client::try_connect(req).await
}

fn origin(o: &str) -> Vec<(&'static str, String)> {
    vec![("origin", o.to_owned())]
}

#[tokio::test]
async fn by_default_only_non_browsers_and_same_origin_pages_connect() {
    let node = start(config()).await;
    let addr = node.addr();
    assert!(open(addr, &[], None).await.is_ok(), "no Origin: not a browser");
    assert!(open(addr, &origin(&format!("http://{addr}")), None).await.is_ok(), "same origin");
    let (status, body) = open(addr, &origin("https://evil.example"), None).await.err().expect("refused");
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    assert!(metric(addr, "arqonbus_connections_refused_total{reason=\"origin\"}").await >= 1.0);
}

#[tokio::test]
async fn allowed_origins_admit_listed_origins_with_label_wildcards() {
    let mut cfg = config();
    cfg.server.allowed_origins = vec!["https://*.example.com".into(), "http://localhost:3000".into()];
    let node = start(cfg).await;
    let addr = node.addr();
    for ok in ["https://app.example.com", "https://admin.example.com:443", "http://localhost:3000"] {
        assert!(open(addr, &origin(ok), None).await.is_ok(), "{ok}");
    }
    for refused in ["https://example.com", "https://a.b.example.com", "http://app.example.com", "http://localhost:3001"]
    {
        assert_eq!(open(addr, &origin(refused), None).await.err().map(|e| e.0), Some(403), "{refused}");
    }
    // `["*"]` opts out of the check.
    let mut cfg = config();
    cfg.server.allowed_origins = vec!["*".into()];
    let node = start(cfg).await;
    assert!(open(node.addr(), &origin("https://anything.example"), None).await.is_ok());
}

#[tokio::test]
async fn handshakes_per_ip_are_rate_limited_and_forwarded_addresses_count_only_from_trusted_proxies() {
    let mut cfg = config();
    cfg.limits.connect_rate_per_ip = 2; // burst 4
    let node = start(cfg).await;
    let addr = node.addr();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(open(addr, &[], None).await.expect("within the burst"));
    }
    let (status, body) = open(addr, &[], None).await.err().expect("over the rate");
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    assert!(body["error"]["retry_after_ms"].as_u64().unwrap() > 0, "{body}");
    // An untrusted peer cannot dodge its bucket with X-Forwarded-For.
    let xff = vec![("x-forwarded-for", "198.51.100.1".to_owned())];
    assert_eq!(open(addr, &xff, None).await.err().map(|e| e.0), Some(429));
    // Behind a trusted proxy, each forwarded client has its own bucket.
    let mut cfg = config();
    cfg.limits.connect_rate_per_ip = 1; // burst 2
    cfg.server.trusted_proxies = vec!["127.0.0.0/8".into()];
    let node = start(cfg).await;
    let addr = node.addr();
    let from = |ip: &str| vec![("x-forwarded-for", format!("{ip}, 127.0.0.9"))];
    for _ in 0..2 {
        held.push(open(addr, &from("198.51.100.1"), None).await.expect("within the burst"));
    }
    assert_eq!(open(addr, &from("198.51.100.1"), None).await.err().map(|e| e.0), Some(429));
    held.push(open(addr, &from("198.51.100.2"), None).await.expect("another client"));
}

const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";

fn token(sub: &str) -> String {
    let claims =
        json!({ "sub": sub, "exp": chrono::Utc::now().timestamp() + 3600, "arqonbus": {"subscribe": ["*:*"]} });
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

#[tokio::test]
async fn connections_per_user_are_capped_and_a_closed_one_frees_its_slot() {
    let mut cfg = config();
    cfg.auth.kind = AuthKind::Jwt;
    cfg.auth.jwt_secret = Some(Secret::from(SECRET));
    cfg.limits.max_connections_per_user = 2;
    let node = start(cfg).await;
    let addr = node.addr();
    let first = open(addr, &[], Some(&token("alice"))).await.expect("1st");
    let _second = open(addr, &[], Some(&token("alice"))).await.expect("2nd");
    let (status, body) = open(addr, &[], Some(&token("alice"))).await.err().expect("3rd refused");
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "LIMIT_EXCEEDED");
    let _bob = open(addr, &[], Some(&token("bob"))).await.expect("another user");
    drop(first);
    // The slot comes back when the socket is gone.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match open(addr, &[], Some(&token("alice"))).await {
            Ok(_) => break,
            Err((429, _)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("slot never freed: {e:?}"),
        }
    }
}

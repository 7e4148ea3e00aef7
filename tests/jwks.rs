//! JWK sets: a real identity-provider stand-in (an axum server on 127.0.0.1:0 inside the test)
//! serving a set that the test changes, and a set in a file. The token's `kid` picks the key;
//! keys rotate without a restart (a new `kid` is accepted after a refresh, a removed one is
//! refused); unknown `kid`s cannot make the node fetch more than once per 10 s; a failing
//! provider leaves the last good set in place, and with no set at all tokens get 503.

mod common;
mod jwt_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arqonbus::config::{AuthKind, Config, Secret};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use jwt_support::*;
use serde_json::{json, Value};

/// The identity provider's JWKS endpoint.
#[derive(Clone)]
struct Idp {
    addr: SocketAddr,
    set: Arc<Mutex<Value>>,
    failing: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
}

async fn serve_jwks(State(idp): State<Idp>) -> Response {
    idp.fetches.fetch_add(1, Ordering::SeqCst);
    if idp.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    let set = idp.set.lock().unwrap().clone();
    Json(set).into_response()
}

impl Idp {
    async fn start(keys: Vec<Value>) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idp = Idp {
            addr: listener.local_addr().unwrap(),
            set: Arc::new(Mutex::new(json!({ "keys": keys }))),
            failing: Arc::default(),
            fetches: Arc::default(),
        };
        let app = axum::Router::new().route("/jwks.json", axum::routing::get(serve_jwks)).with_state(idp.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        idp
    }

    fn serve(&self, keys: Vec<Value>) {
        *self.set.lock().unwrap() = json!({ "keys": keys });
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn config(&self, refresh_s: u64) -> Config {
        let mut c = config();
        c.auth.kind = AuthKind::Jwt;
        c.auth.jwks_url = Some(Secret::from(format!("http://{}/jwks.json", self.addr).as_str()));
        c.auth.jwks_refresh_s = refresh_s;
        c
    }
}

fn rsa1() -> Value {
    public_jwk(&rsa_key("a"), Algorithm::RS256, "rsa-1")
}

fn ec2() -> Value {
    public_jwk(&ec_key("a"), Algorithm::ES256, "ec-2")
}

fn token(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    sign(alg, Some(kid), key, claims("alice", 3600))
}

/// The handshake's answer: 101 when accepted, else the refusal's status.
async fn status(addr: SocketAddr, token: &str) -> u16 {
    Client::connect_with(addr, Some(token)).await.map(|_| 101).unwrap_or_else(|s| s)
}

/// Whether `token` is accepted; any answer other than 101 or 401 fails the test.
async fn accepted(addr: SocketAddr, token: &str) -> bool {
    match status(addr, token).await {
        101 => true,
        401 => false,
        other => panic!("unexpected handshake status {other}"),
    }
}

/// Polls until the handshake with `token` answers `want`, for up to [`WAIT`].
async fn until(addr: SocketAddr, token: &str, want: u16) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = status(addr, token).await;
        if got == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the handshake still answers {got}, not {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn keys_rotate_without_a_restart() {
    let idp = Idp::start(vec![rsa1()]).await;
    let node = start(idp.config(3600)).await;
    let addr = node.addr();
    assert_eq!(idp.fetches(), 1, "loaded once at start");
    let t1 = token(Algorithm::RS256, "rsa-1", &rsa_key("a"));
    let t2 = token(Algorithm::ES256, "ec-2", &ec_key("a"));
    assert!(accepted(addr, &t1).await);
    // No kid, a kid naming another key, another algorithm for the kid's key: refused.
    assert!(!accepted(addr, &sign(Algorithm::RS256, None, &rsa_key("a"), claims("alice", 60))).await);
    assert!(!accepted(addr, &token(Algorithm::RS256, "rsa-1", &rsa_key("b"))).await);
    assert!(!accepted(addr, &token(Algorithm::HS256, "rsa-1", &EncodingKey::from_secret(b"rsa-1"))).await);

    // The provider rotates: ec-2 in, rsa-1 out. The first ec-2 token forces one refresh.
    idp.serve(vec![ec2()]);
    assert!(accepted(addr, &t2).await, "a new kid is accepted after a refresh");
    assert_eq!(idp.fetches(), 2);
    assert!(!accepted(addr, &t1).await, "a removed kid is refused after the refresh");
    // Unknown kids do not make the node fetch again within 10 s.
    for i in 0..5 {
        assert!(!accepted(addr, &token(Algorithm::ES256, &format!("unknown-{i}"), &ec_key("a"))).await);
    }
    assert_eq!(idp.fetches(), 2, "forced refreshes are rate-limited");
    assert!(accepted(addr, &t2).await);
}

#[tokio::test]
async fn the_set_is_refreshed_periodically_and_a_failed_refresh_keeps_it() {
    let idp = Idp::start(vec![rsa1(), ec2()]).await;
    let node = start(idp.config(1)).await;
    let addr = node.addr();
    let t1 = token(Algorithm::RS256, "rsa-1", &rsa_key("a"));
    let t2 = token(Algorithm::ES256, "ec-2", &ec_key("a"));
    assert!(accepted(addr, &t1).await && accepted(addr, &t2).await);
    // Removed at the provider: refused once the node's next refresh has seen it.
    idp.serve(vec![ec2()]);
    until(addr, &t1, 401).await;
    // The provider fails: the node keeps using the last set it could load.
    idp.failing.store(true, Ordering::SeqCst);
    let seen = idp.fetches();
    let deadline = tokio::time::Instant::now() + WAIT;
    while idp.fetches() < seen + 2 {
        assert!(tokio::time::Instant::now() < deadline, "the node stopped refreshing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted(addr, &t2).await, "the last good set is kept");
    assert!(!accepted(addr, &t1).await);
}

#[tokio::test]
async fn without_any_set_tokens_get_503_until_one_loads() {
    let idp = Idp::start(vec![rsa1()]).await;
    idp.failing.store(true, Ordering::SeqCst);
    // The node starts even though the provider is down…
    let node = start(idp.config(1)).await;
    let t1 = token(Algorithm::RS256, "rsa-1", &rsa_key("a"));
    // …and refuses every token as unavailable: nobody is let in without a key to check.
    let (status, body) = refused_handshake(node.addr(), Some(&t1)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "UNAVAILABLE", "{body}");
    assert!(body["error"]["retry_after_ms"].as_u64().is_some(), "{body}");
    assert_eq!(refused_handshake(node.addr(), None).await.0, 401, "a missing token is still a 401");
    // Once the provider answers, the next refresh loads the set.
    idp.failing.store(false, Ordering::SeqCst);
    until(node.addr(), &t1, 101).await;
}

#[tokio::test]
async fn a_jwks_file_is_reread_when_a_kid_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jwks.json");
    let write = |keys: Vec<Value>| std::fs::write(&file, json!({ "keys": keys }).to_string()).unwrap();
    write(vec![ec2()]);
    let mut c = config();
    c.auth.kind = AuthKind::Jwt;
    c.auth.jwks_file = Some(file.clone());
    let node = start(c.clone()).await;
    let addr = node.addr();
    let t_ec = token(Algorithm::ES256, "ec-2", &ec_key("a"));
    let t_ed = token(Algorithm::EdDSA, "ed-3", &ed_key("a"));
    assert!(accepted(addr, &t_ec).await);
    assert!(!accepted(addr, &token(Algorithm::ES256, "ec-2", &ec_key("b"))).await, "signed by another key");
    write(vec![public_jwk(&ed_key("a"), Algorithm::EdDSA, "ed-3")]);
    assert!(accepted(addr, &t_ed).await);
    assert!(!accepted(addr, &t_ec).await);
    // A file that holds no usable key stops start-up, naming the key.
    std::fs::write(&file, r#"{"keys":[{"kty":"oct","kid":"k","k":"c2VjcmV0"}]}"#).unwrap();
    let e = arqonbus::app::start(c).await.err().expect("start-up fails");
    assert!(
        e.is_config() && e.to_string().contains("auth.jwks_file") && e.to_string().contains("no usable key"),
        "{e}"
    );
}

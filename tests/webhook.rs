//! Webhook authentication against a real webhook: an axum server on 127.0.0.1:0 inside the
//! test that answers by token. Handshake answers (401/503), permissions from the answer,
//! `refresh` through the webhook, `exp`, the answer cache, and tokens kept out of the logs.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arqonbus::config::{AuthKind, Config};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use common::*;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

/// How long the "slow" token makes the webhook wait: far past the node's timeout.
const SLOW: Duration = Duration::from_secs(5);
/// The node's webhook timeout in these tests.
const TIMEOUT_MS: u64 = 400;

/// A webhook that records every token it is asked about.
struct Hook {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Hook {
    async fn start() -> Hook {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new().route("/check", axum::routing::post(answer)).with_state(asked.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Hook { addr, asked }
    }

    fn url(&self) -> String {
        format!("http://{}/check", self.addr)
    }

    /// The tokens asked about so far.
    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }

    fn times_asked(&self, token: &str) -> usize {
        self.asked().iter().filter(|t| *t == token).count()
    }
}

fn claims(sub: &str, exp_in_s: Option<i64>, perms: Value) -> Value {
    let mut c = json!({ "sub": sub, "arqonbus": perms });
    if let Some(s) = exp_in_s {
        c["exp"] = json!(chrono::Utc::now().timestamp() + s);
    }
    c
}

fn alice_perms() -> Value {
    json!({"subscribe":["science:*"],"publish":["science:explore"],"private":false,"admin":false,"info":{"name":"Alice"}})
}

/// Answers by token. Anything after a `#` in a token is ignored, so a test can make its
/// tokens unique without changing the answer.
async fn answer(State(asked): State<Arc<Mutex<Vec<String>>>>, Json(body): Json<Value>) -> Response {
    let Some(token) = body.get("token").and_then(Value::as_str).filter(|_| body.as_object().unwrap().len() == 1) else {
        return (StatusCode::BAD_REQUEST, "expected exactly {\"token\": string}").into_response();
    };
    asked.lock().unwrap().push(token.to_owned());
    let ok = |c: Value| (StatusCode::OK, Json(c)).into_response();
    match token.split('#').next().unwrap() {
        "alice" => ok(claims("alice", Some(3600), alice_perms())),
        "alice-narrow" => ok(claims("alice", Some(7200), json!({"subscribe":["science:explore"]}))),
        "alice-noexp" => ok(claims("alice", None, alice_perms())),
        "alice-short" => ok(claims("alice", Some(2), alice_perms())),
        "alice-expired" => ok(claims("alice", Some(-10), alice_perms())),
        "bob" => ok(claims("bob", Some(3600), json!({"publish":["*:*"],"subscribe":["*:*"]}))),
        "root" => ok(claims("root", Some(3600), json!({"admin":true}))),
        "slow" => {
            tokio::time::sleep(SLOW).await;
            ok(claims("alice", Some(3600), alice_perms()))
        }
        "boom" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "teapot" => (StatusCode::IM_A_TEAPOT, "").into_response(),
        "garbage" => (StatusCode::OK, "this is not an identity").into_response(),
        "huge" => {
            let mut c = claims("alice", Some(3600), alice_perms());
            c["arqonbus"]["info"] = json!("x".repeat(100 * 1024));
            ok(c)
        }
        "nosub" => ok(json!({"arqonbus": alice_perms()})),
        "forbidden" => StatusCode::FORBIDDEN.into_response(),
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn webhook_config(hook: &Hook) -> Config {
    let mut c = config();
    c.auth.kind = AuthKind::Webhook;
    c.auth.webhook_url = Some(hook.url().as_str().into());
    c.auth.webhook_timeout_ms = TIMEOUT_MS;
    c
}

/// A handshake with `token` as bearer that should be refused: its status and JSON body.
async fn refused(addr: SocketAddr, token: Option<&str>) -> (u16, Value) {
    let mut req = ws_url(addr).into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => panic!("{token:?} was accepted"),
        Err(WsError::Http(resp)) => {
            let body =
                resp.body().as_deref().map(|b| serde_json::from_slice(b).expect("JSON body")).unwrap_or_default();
            (resp.status().as_u16(), body)
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// Connects with `token`, which the webhook must accept.
async fn connect(addr: SocketAddr, token: &str) -> Client {
    Client::connect_with(addr, Some(token)).await.unwrap_or_else(|s| panic!("{token}: refused with {s}"))
}

#[tokio::test]
async fn webhook_answers_decide_the_handshake() {
    let hook = Hook::start().await;
    let node = start(webhook_config(&hook)).await;
    let addr = node.addr();

    // No token: refused without asking the webhook.
    let (status, body) = refused(addr, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("UNAUTHORIZED")), "{body}");
    assert!(hook.asked().is_empty(), "{:?}", hook.asked());

    // 200 with claims: in, as the answer's sub.
    let a = connect(addr, "alice#1").await;
    assert_eq!(a.welcome["payload"]["user"], "alice");
    assert_eq!(hook.asked(), vec!["alice#1"]);

    // 401 and 403 from the webhook, an expired identity: 401 at the handshake.
    for token in ["nobody", "forbidden", "alice-expired"] {
        let (status, body) = refused(addr, Some(token)).await;
        assert_eq!(status, 401, "{token}: {body}");
        assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{token}: {body}");
    }

    // No usable answer: 503 UNAVAILABLE, never an open connection.
    for token in ["boom", "teapot", "garbage", "nosub", "huge"] {
        let (status, body) = refused(addr, Some(token)).await;
        assert_eq!(status, 503, "{token}: {body}");
        assert_eq!(body["error"]["code"], "UNAVAILABLE", "{token}: {body}");
        assert_eq!(body["error"]["retry_after_ms"], 1000, "{token}: {body}");
    }

    // A webhook slower than the timeout: 503 once the timeout has passed, not when it answers.
    let t0 = Instant::now();
    let (status, body) = refused(addr, Some("slow")).await;
    let took = t0.elapsed();
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("UNAVAILABLE")), "{body}");
    assert!(took >= Duration::from_millis(TIMEOUT_MS), "refused before the timeout: {took:?}");
    assert!(took < SLOW, "waited for the slow webhook: {took:?}");

    // A webhook that is down: 503 too.
    let mut cfg = webhook_config(&hook);
    cfg.auth.webhook_url = Some(format!("http://{}/check", closed_port_addr()).as_str().into());
    let down = start(cfg).await;
    let (status, body) = refused(down.addr(), Some("alice")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("UNAVAILABLE")), "{body}");
}

/// An address on this machine where nothing listens.
fn closed_port_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn permissions_from_the_webhook_are_enforced() {
    let hook = Hook::start().await;
    let node = start(webhook_config(&hook)).await;
    let mut a = connect(node.addr(), "alice").await;
    a.subscribe("science", "explore").await;
    a.err("subscribe", json!({"room":"art","channel":"x"}), "FORBIDDEN").await;
    a.err("subscribe", json!({"room":"_sys","channel":"activity"}), "FORBIDDEN").await;
    a.err("create_channel", json!({"room":"science","channel":"new"}), "FORBIDDEN").await;
    let v = a.request(json!({"type":"event","room":"science","channel":"other","payload":1})).await;
    assert_eq!(v["error"]["code"], "FORBIDDEN", "{v}");
    let v = a.request(json!({"type":"event","room":"art","channel":"x","payload":1})).await;
    assert_eq!(v["error"]["code"], "FORBIDDEN", "{v}");
    a.publish("science", "explore", json!("hello")).await;
    let e = a.event().await;
    assert_eq!((e["user"].as_str(), e["payload"].as_str()), (Some("alice"), Some("hello")), "{e}");
    // "private": false
    let _bob = connect(node.addr(), "bob").await;
    let v = a.request(json!({"type":"private","to":{"user":"bob"},"payload":1})).await;
    assert_eq!(v["error"]["code"], "FORBIDDEN", "{v}");
    // The answer's info shows in presence.
    let p = a.ok("presence", json!({"room":"science","channel":"explore"})).await;
    assert_eq!(p["clients"][0]["info"], json!({"name":"Alice"}), "{p}");
    // An admin answer may do admin things.
    let mut root = connect(node.addr(), "root").await;
    root.subscribe("_sys", "activity").await;
}

#[tokio::test]
async fn refresh_asks_the_webhook_with_the_new_token() {
    let hook = Hook::start().await;
    let node = start(webhook_config(&hook)).await;
    let mut a = connect(node.addr(), "alice").await;
    let mut bob = connect(node.addr(), "bob").await;
    a.subscribe("science", "explore").await;
    a.subscribe("science", "other").await;

    // Failures keep the old credentials: UNAUTHORIZED, FORBIDDEN (another sub), UNAVAILABLE.
    a.err("refresh", json!({"token":"nobody"}), "UNAUTHORIZED").await;
    a.err("refresh", json!({"token":"bob#again"}), "FORBIDDEN").await;
    for token in ["boom", "slow"] {
        let e = a.err("refresh", json!({ "token": token }), "UNAVAILABLE").await;
        assert_eq!(e["retry_after_ms"], 1000, "{token}: {e}");
    }
    a.ok("subscribe", json!({"room":"science","channel":"third"})).await;
    a.ok("unsubscribe", json!({"room":"science","channel":"third"})).await;

    // A narrower answer: its permissions apply and the subscription it drops ends.
    let r = a.ok("refresh", json!({"token":"alice-narrow"})).await;
    let expires_at = r["expires_at"].as_str().expect("expiry");
    assert!(expires_at.ends_with(".000Z"), "{r}");
    assert_eq!(hook.asked().last().map(String::as_str), Some("alice-narrow"));
    let u = a.recv().await;
    assert_eq!(u["event"], "unsubscribed", "{u}");
    assert_eq!((u["channel"].as_str(), u["payload"]["reason"].as_str()), (Some("other"), Some("permission_revoked")));
    a.err("subscribe", json!({"room":"science","channel":"third"}), "FORBIDDEN").await;
    bob.publish("science", "other", json!("not for alice")).await;
    bob.publish("science", "explore", json!("for alice")).await;
    assert_eq!(a.event().await["payload"], "for alice");
    a.silent_for(Duration::from_millis(200)).await;

    // An answer without exp: the connection no longer expires.
    let r = a.ok("refresh", json!({"token":"alice-noexp"})).await;
    assert_eq!(r["expires_at"], Value::Null, "{r}");
    assert_eq!(hook.times_asked("alice-noexp"), 1);
}

#[tokio::test]
async fn the_answers_exp_closes_the_connection_with_4001() {
    let hook = Hook::start().await;
    let node = start(webhook_config(&hook)).await;
    let mut a = connect(node.addr(), "alice-short").await;
    a.ok("ping", json!({})).await;
    assert_eq!(a.closed().await, Some(4001));
}

#[tokio::test]
async fn accepted_answers_are_cached_only_when_configured() {
    let hook = Hook::start().await;
    let node = start(webhook_config(&hook)).await;
    connect(node.addr(), "alice#nocache").await;
    connect(node.addr(), "alice#nocache").await;
    assert_eq!(hook.times_asked("alice#nocache"), 2, "no cache by default");

    let mut cfg = webhook_config(&hook);
    cfg.auth.webhook_cache_s = 60;
    let cached = start(cfg).await;
    for _ in 0..3 {
        let c = connect(cached.addr(), "alice#cache").await;
        assert_eq!(c.welcome["payload"]["user"], "alice");
    }
    assert_eq!(hook.times_asked("alice#cache"), 1, "answer reused");
    // Refusals are not cached.
    for _ in 0..2 {
        assert_eq!(refused(cached.addr(), Some("nobody#cache")).await.0, 401);
    }
    assert_eq!(hook.times_asked("nobody#cache"), 2);
}

#[tokio::test]
async fn tokens_never_reach_the_log() {
    let hook = Hook::start().await;
    let port = closed_port_addr().port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_arqonbus"))
        .env("ARQONBUS_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("ARQONBUS_SERVER__DRAIN_JITTER_MS", "0")
        .env("ARQONBUS_AUTH__KIND", "webhook")
        .env("ARQONBUS_AUTH__WEBHOOK_URL", hook.url())
        .env("ARQONBUS_AUTH__WEBHOOK_TIMEOUT_MS", TIMEOUT_MS.to_string())
        .env("ARQONBUS_LOG__LEVEL", "trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the binary never listened");
    let mut a = connect(addr, "alice#tok-accepted").await;
    a.ok("refresh", json!({"token":"alice#tok-refreshed"})).await;
    a.err("refresh", json!({"token":"boom#tok-refresh-failed"}), "UNAVAILABLE").await;
    assert_eq!(refused(addr, Some("nobody#tok-refused")).await.0, 401);
    assert_eq!(refused(addr, Some("boom#tok-boom")).await.0, 503);
    assert_eq!(refused(addr, Some("slow#tok-slow")).await.0, 503);
    assert_eq!(hook.asked().len(), 6, "{:?}", hook.asked());
    drop(a);
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = tokio::time::timeout(WAIT, child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The failures were logged (so the log is really here), with their reasons…
    assert!(log.contains("HTTP 500"), "{log}");
    assert!(log.contains(&format!("within {TIMEOUT_MS} ms")), "{log}");
    // …and no token, not even a part of one.
    assert!(!log.contains("tok-"), "a token reached the log:\n{log}");
}

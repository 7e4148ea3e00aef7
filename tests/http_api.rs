//! The HTTP API (§7): health, readiness, version, metrics, the API-key publish and history
//! endpoints, and the WebSocket handshake's refusals (§1.2).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use arqonbus::config::{Config, Secret};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const KEY: &str = "test-api-key-0123456789";

fn api_config() -> Config {
    let mut c = config();
    c.http.api_key = Some(Secret::from(KEY));
    c
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()))
}

/// `POST /v1/publish` with `auth` as the whole Authorization header (None: no header).
async fn publish_with(addr: SocketAddr, auth: Option<&str>, body: &str) -> (u16, Value) {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(auth.map(|a| ("authorization", a)));
    let (status, body) = http(addr, "POST", "/v1/publish", &headers, body).await;
    (status, parse(&body))
}

async fn publish(addr: SocketAddr, body: Value) -> (u16, Value) {
    publish_with(addr, Some(&format!("Bearer {KEY}")), &body.to_string()).await
}

async fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, Value) {
    let headers: Vec<_> = auth.map(|a| ("authorization", a)).into_iter().collect();
    let (status, body) = http(addr, "GET", path, &headers, "").await;
    (status, parse(&body))
}

async fn history(addr: SocketAddr, query: &str) -> (u16, Value) {
    get(addr, &format!("/v1/history?{query}"), Some(&format!("Bearer {KEY}"))).await
}

/// Asserts an HTTP error answer: status, `error.code`, and `error.field` when given.
fn assert_error(got: &(u16, Value), status: u16, code: &str, field: Option<&str>) {
    let (s, body) = got;
    assert_eq!(*s, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    if let Some(f) = field {
        assert_eq!(body["error"]["field"], f, "{body}");
    }
}

fn offsets(events: &Value) -> Vec<u64> {
    events.as_array().expect("events").iter().map(|e| e["offset"].as_u64().expect("offset")).collect()
}

#[tokio::test]
async fn health_readiness_and_version() {
    let node = start(config()).await;
    let (s, body) = get(node.addr(), "/healthz", None).await;
    assert_eq!((s, body), (200, json!({"status": "ok"})));
    let (s, body) = get(node.addr(), "/readyz", None).await;
    assert_eq!((s, body), (200, json!({"ready": true})));
    let (s, body) = get(node.addr(), "/version", None).await;
    assert_eq!(s, 200);
    assert_eq!(body, json!({"name": "arqonbus", "version": env!("CARGO_PKG_VERSION"), "protocol": "1.0"}));
}

/// The sum of every sample of a metric (all label sets).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let base = series.split('{').next()?;
            (base == name).then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http(addr, "GET", "/metrics", &[], "").await;
    assert_eq!(status, 200);
    body
}

#[tokio::test]
async fn metrics_expose_the_core_series_and_move_with_traffic() {
    let node = start(config()).await;
    let before = scrape(node.addr()).await;
    let mut sub = Client::connect(node.addr()).await;
    let mut publisher = Client::connect(node.addr()).await;
    sub.subscribe("m", "c").await;
    for i in 0..3 {
        publisher.publish("m", "c", json!(i)).await;
        sub.event().await;
    }
    let v = publisher.request(json!({"type":"event","room":"bad room","channel":"c","payload":1})).await;
    assert_eq!(v["error"]["code"], "VALIDATION_ERROR");
    let after = scrape(node.addr()).await;
    let names = [
        "arqonbus_connections",
        "arqonbus_messages_in_total",
        "arqonbus_messages_out_total",
        "arqonbus_errors_total",
        "arqonbus_subscriptions",
        "arqonbus_slow_consumer_disconnects_total",
    ];
    for name in names {
        assert!(after.contains(&format!("# TYPE {name} ")), "{name} missing:\n{after}");
    }
    // Metrics are process-wide and other tests run alongside: check lower bounds only.
    let delta = |name| metric(&after, name) - metric(&before, name);
    assert!(delta("arqonbus_messages_in_total") >= 4.0, "subscribe + 3 publishes:\n{after}");
    assert!(delta("arqonbus_messages_out_total") >= 3.0, "3 deliveries:\n{after}");
    assert!(delta("arqonbus_errors_total") >= 1.0, "1 error:\n{after}");
    assert!(after.contains(r#"arqonbus_errors_total{code="VALIDATION_ERROR"}"#), "{after}");
    assert!(metric(&after, "arqonbus_connections") >= 2.0, "2 open connections:\n{after}");
    assert!(metric(&after, "arqonbus_subscriptions") >= 1.0, "1 subscription:\n{after}");
}

#[tokio::test]
async fn http_publish_reaches_websocket_subscribers() {
    let node = start(api_config()).await;
    let mut sub = Client::connect(node.addr()).await;
    sub.subscribe("science", "explore").await;
    let body = json!({"room":"science","channel":"explore","payload":{"probe":"voyager"},"metadata":{"source":"cron"}});
    let (status, ack) = publish(node.addr(), body).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["offset"], 1);
    assert_eq!(ack["duplicate"], false);
    assert!(ack["id"].as_str().unwrap().starts_with("arq_"), "{ack}");
    let e = sub.event().await;
    assert_eq!(e["id"], ack["id"]);
    assert_eq!(e["offset"], 1);
    assert_eq!(e["from"], "http");
    assert_eq!(e["user"], Value::Null);
    assert_eq!(e["room"], "science");
    assert_eq!(e["channel"], "explore");
    assert_eq!(e["payload"], json!({"probe": "voyager"}));
    assert_eq!(e["metadata"], json!({"source": "cron"}));
    assert!(e["timestamp"].as_str().unwrap().ends_with('Z'));
    let (status, ack) = publish(node.addr(), json!({"room":"science","channel":"explore","payload":null})).await;
    assert_eq!((status, ack["offset"].clone()), (200, json!(2)));
    let e = sub.event().await;
    assert_eq!((e["offset"].clone(), e["payload"].clone()), (json!(2), Value::Null));
    assert!(e.get("metadata").is_none(), "{e}");
}

#[tokio::test]
async fn http_publish_is_idempotent() {
    let node = start(api_config()).await;
    let mut sub = Client::connect(node.addr()).await;
    sub.subscribe("r", "c").await;
    let body = json!({"room":"r","channel":"c","payload":{"n":1},"idempotency_key":"job-77"});
    let (s1, first) = publish(node.addr(), body.clone()).await;
    let (s2, second) = publish(node.addr(), body).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!((&first["id"], &first["offset"]), (&second["id"], &second["offset"]));
    // The key belongs to the channel, whichever transport repeats it.
    let ws = sub.request(json!({"type":"event","room":"r","channel":"c","payload":2,"idempotency_key":"job-77"})).await;
    assert_eq!(ws["result"]["duplicate"], true, "{ws}");
    assert_eq!(ws["result"]["id"], first["id"]);
    assert_eq!(sub.event().await["offset"], 1);
    sub.silent_for(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn http_api_requires_the_api_key() {
    let node = start(api_config()).await;
    let addr = node.addr();
    let body = r#"{"room":"r","channel":"c","payload":1}"#;
    for auth in [None, Some("Bearer wrong-key"), Some("Basic dGVzdA=="), Some(KEY)] {
        assert_error(&publish_with(addr, auth, body).await, 401, "UNAUTHORIZED", None);
        assert_error(&get(addr, "/v1/history?room=r&channel=c", auth).await, 401, "UNAUTHORIZED", None);
    }
    // Nothing was published.
    let (s, h) = history(addr, "room=r&channel=c").await;
    assert_eq!((s, h["events"].clone(), h["offset"].clone()), (200, json!([]), Value::Null));
}

#[tokio::test]
async fn http_api_is_absent_without_a_configured_key() {
    let node = start(config()).await;
    let addr = node.addr();
    let absent = http(addr, "GET", "/v1/no-such-endpoint", &[], "").await;
    assert_eq!(absent.0, 404);
    let auth = [("authorization", "Bearer anything"), ("content-type", "application/json")];
    let published = http(addr, "POST", "/v1/publish", &auth, r#"{"room":"r","channel":"c","payload":1}"#).await;
    let read = http(addr, "GET", "/v1/history?room=r&channel=c", &auth[..1], "").await;
    // "As if they did not exist": the same bare 404 as an unknown path.
    assert_eq!(published, absent);
    assert_eq!(read, absent);
}

#[tokio::test]
async fn http_publish_validates_the_body_like_an_event_frame() {
    let node = start(api_config()).await;
    let addr = node.addr();
    let auth = format!("Bearer {KEY}");
    for text in ["{not json", "[1]", "\"x\"", "null", ""] {
        assert_error(&publish_with(addr, Some(&auth), text).await, 400, "INVALID_JSON", None);
    }
    let ok = json!({"room":"r","channel":"c","payload":1});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let bad = [
        (with("extra", json!(1)), "extra"),
        (with("type", json!("event")), "type"),
        (with("id", json!("p1")), "id"),
        (with("version", json!("1.0")), "version"),
        (with("from", json!("me")), "from"),
        (with("room", json!("bad room")), "room"),
        (with("channel", json!("x".repeat(65))), "channel"),
        (json!({"room":"r","channel":"c"}), "payload"),
        (with("metadata", json!({"n": 1})), "metadata"),
        (with("idempotency_key", json!("")), "idempotency_key"),
    ];
    for (body, field) in bad {
        assert_error(&publish(addr, body).await, 400, "VALIDATION_ERROR", Some(field));
    }
    assert_error(&publish(addr, with("room", json!("_sys"))).await, 403, "FORBIDDEN", None);
    assert_error(&publish(addr, with("room", json!("_private"))).await, 403, "FORBIDDEN", None);
    // None of that stored anything.
    let (_, h) = history(addr, "room=r&channel=c").await;
    assert_eq!(h["offset"], Value::Null, "{h}");
}

#[tokio::test]
async fn http_publish_body_over_max_frame_bytes_is_413() {
    let mut cfg = api_config();
    cfg.limits.max_frame_bytes = 1024;
    let node = start(cfg).await;
    let body = |len: usize| {
        let head = r#"{"room":"r","channel":"c","payload":""#;
        format!("{head}{}\"}}", "x".repeat(len - head.len() - 2))
    };
    let auth = format!("Bearer {KEY}");
    assert_eq!(body(1025).len(), 1025);
    let got = publish_with(node.addr(), Some(&auth), &body(1025)).await;
    assert_error(&got, 413, "LIMIT_EXCEEDED", None);
    let (status, ack) = publish_with(node.addr(), Some(&auth), &body(1024)).await;
    assert_eq!(status, 200, "a body of exactly max_frame_bytes is accepted: {ack}");
    assert_eq!(ack["offset"], 1);
}

#[tokio::test]
async fn http_publish_rate_limit_is_node_wide() {
    let mut cfg = api_config();
    cfg.limits.http_publish_rate_per_s = 2;
    let node = start(cfg).await;
    let addr = node.addr();
    let body = json!({"room":"r","channel":"c","payload":1});
    assert_eq!(publish(addr, body.clone()).await.0, 200);
    assert_eq!(publish(addr, body.clone()).await.0, 200);
    let refused = publish(addr, body).await;
    assert_error(&refused, 429, "RATE_LIMITED", None);
    let retry = refused.1["error"]["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!((1..=1000).contains(&retry), "{}", refused.1);
    // Nothing was published by the refused request.
    assert_eq!(history(addr, "room=r&channel=c").await.1["offset"], 2);
    // WebSocket publishing has its own per-connection bucket.
    let mut c = Client::connect(addr).await;
    assert_eq!(c.publish("r", "c", json!(3)).await["offset"], 3);
}

#[tokio::test]
async fn http_history_matches_the_history_command() {
    let node = start(api_config()).await;
    let mut c = Client::connect(node.addr()).await;
    for i in 1..=10 {
        c.publish("h", "c", json!({ "n": i })).await;
    }
    let cases: [(&str, Value, Vec<u64>); 10] = [
        ("", json!({}), (1..=10).collect()),
        ("limit=3", json!({"limit": 3}), vec![8, 9, 10]),
        ("since=5&limit=2", json!({"since": 5, "limit": 2}), vec![6, 7]),
        ("before=5&limit=2", json!({"before": 5, "limit": 2}), vec![3, 4]),
        ("since=2&before=6", json!({"since": 2, "before": 6}), vec![3, 4, 5]),
        ("reverse=true&limit=3", json!({"reverse": true, "limit": 3}), vec![10, 9, 8]),
        ("before=5&limit=3&reverse=true", json!({"before": 5, "limit": 3, "reverse": true}), vec![4, 3, 2]),
        ("reverse=false&since=8", json!({"reverse": false, "since": 8}), vec![9, 10]),
        ("since=10", json!({"since": 10}), vec![]),
        ("before=1", json!({"before": 1}), vec![]),
    ];
    for (query, mut args, want) in cases {
        args["room"] = json!("h");
        args["channel"] = json!("c");
        let (status, over_http) = history(node.addr(), &format!("room=h&channel=c&{query}")).await;
        assert_eq!(status, 200, "{query}: {over_http}");
        assert_eq!(offsets(&over_http["events"]), want, "{query}");
        assert_eq!(over_http["offset"], 10);
        assert!(over_http["epoch"].is_string());
        let over_ws = c.ok("history", args).await;
        assert_eq!(over_http, over_ws, "{query}: HTTP and the history command differ");
    }
}

#[tokio::test]
async fn http_history_rejects_bad_parameters() {
    let node = start(api_config()).await;
    let addr = node.addr();
    let bad = [
        ("room=r&channel=c&limit=0", "limit"),
        ("room=r&channel=c&limit=1001", "limit"),
        ("room=r&channel=c&limit=ten", "limit"),
        ("room=r&channel=c&since=-1", "since"),
        ("room=r&channel=c&before=x", "before"),
        ("room=r&channel=c&reverse=maybe", "reverse"),
        ("room=r&channel=c&foo=1", "foo"),
        ("channel=c", "room"),
        ("room=bad%20room&channel=c", "room"),
        ("room=r&channel=a%3Ab", "channel"),
    ];
    for (query, field) in bad {
        assert_error(&history(addr, query).await, 400, "VALIDATION_ERROR", Some(field));
    }
    assert_error(&history(addr, "room=_sys&channel=activity").await, 403, "FORBIDDEN", None);
}

#[tokio::test]
async fn undeclared_channels_are_404_for_publish_and_empty_for_history_when_auto_create_is_off() {
    let mut cfg = api_config();
    cfg.channels.auto_create = false;
    let node = start(cfg).await;
    let addr = node.addr();
    assert_error(&publish(addr, json!({"room":"r","channel":"c","payload":1})).await, 404, "NOT_FOUND", None);
    // A read creates nothing and finds nothing.
    let (status, empty) = history(addr, "room=r&channel=c").await;
    assert_eq!((status, empty), (200, json!({"events":[],"epoch":null,"offset":null,"has_more":false})));
    let mut admin = Client::connect(addr).await;
    admin.ok("create_channel", json!({"room":"r","channel":"c"})).await;
    assert_eq!(publish(addr, json!({"room":"r","channel":"c","payload":1})).await.1["offset"], 1);
    assert_eq!(offsets(&history(addr, "room=r&channel=c").await.1["events"]), vec![1]);
}

/// Opens `/ws` offering `protocols`. Ok: the selected subprotocol (after the welcome frame);
/// Err: the refusal's status and JSON body.
async fn handshake(addr: SocketAddr, protocols: Option<&str>) -> Result<Option<String>, (u16, Value)> {
    let mut req = ws_url(addr).into_client_request().expect("request");
    if let Some(p) = protocols {
        req.headers_mut().insert("sec-websocket-protocol", p.parse().expect("header"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, resp)) => {
            let selected = resp.headers().get("sec-websocket-protocol").map(|v| v.to_str().expect("ascii").to_owned());
            let first = tokio::time::timeout(WAIT, ws.next()).await.expect("welcome in time");
            let Some(Ok(Message::Text(t))) = first else { panic!("expected the welcome frame, got {first:?}") };
            assert_eq!(parse(t.as_str())["event"], "welcome");
            Ok(selected)
        }
        Err(WsError::Http(resp)) => {
            let body = resp.body().as_deref().map(|b| parse(&String::from_utf8_lossy(b))).unwrap_or(Value::Null);
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test]
async fn handshake_subprotocol_negotiation() {
    let node = start(config()).await;
    let addr = node.addr();
    assert_eq!(handshake(addr, Some("arqonbus.v1")).await, Ok(Some("arqonbus.v1".into())));
    assert_eq!(handshake(addr, Some("chat, arqonbus.v1")).await, Ok(Some("arqonbus.v1".into())));
    assert_eq!(handshake(addr, None).await, Ok(None));
    for offer in ["chat", "arqonbus.v2, mqtt"] {
        let (status, body) = handshake(addr, Some(offer)).await.expect_err("refused");
        assert_eq!(status, 400, "{offer}: {body}");
        assert_eq!(body["error"]["code"], "UNSUPPORTED_VERSION", "{offer}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn a_full_node_answers_503_until_a_slot_frees() {
    let mut cfg = config();
    cfg.server.max_connections = 2;
    let node = start(cfg).await;
    let addr = node.addr();
    let a = Client::connect(addr).await;
    let _b = Client::connect(addr).await;
    let (status, body) = handshake(addr, None).await.expect_err("node is full");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "UNAVAILABLE", "{body}");
    assert_eq!(body["error"]["retry_after_ms"], 1000, "{body}");
    // HTTP keeps answering while the node is full.
    assert_eq!(get(addr, "/healthz", None).await.0, 200);
    drop(a);
    // The slot frees once the server has seen the disconnect; no frame announces it, so poll.
    let deadline = tokio::time::Instant::now() + WAIT;
    while Client::connect_with(addr, None).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

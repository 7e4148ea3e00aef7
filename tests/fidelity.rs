//! Payloads and metadata pass through byte for byte: what a publisher sent — digits, escapes,
//! key order, spacing — is what subscribers, `history` and `GET /v1/history` return.

mod common;

use common::*;
use serde_json::{json, Value};

/// Big integers, a float written `1.0`, escapes, key order that is not sorted, inner spacing.
const PAYLOAD: &str = r#"{"z":12345678901234567890123456789012345678901,"a":1.0,"e":"caf\u00e9 \ud83d\ude80","n":[1E+2,-0.0, 2],"m":{"b":true,"a":null}}"#;
const METADATA: &str = r#"{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","k":"\u00e9"}"#;

fn publish_frame(id: &str) -> String {
    format!(r#"{{"type":"event","id":"{id}","room":"r","channel":"exact","payload":{PAYLOAD},"metadata":{METADATA}}}"#)
}

fn carries_exactly(frame: &str) {
    assert!(frame.contains(&format!(r#""payload":{PAYLOAD}"#)), "payload rewritten: {frame}");
    assert!(frame.contains(&format!(r#""metadata":{METADATA}"#)), "metadata rewritten: {frame}");
}

#[tokio::test]
async fn payload_and_metadata_reach_subscribers_and_history_byte_for_byte() {
    let mut cfg = config();
    cfg.http.api_key = Some("fidelity-key-0123456789".into());
    let node = start(cfg).await;
    let mut sub = Client::connect(node.addr()).await;
    sub.subscribe("r", "exact").await;
    let mut p = Client::connect(node.addr()).await;
    p.send_text(publish_frame("p1")).await;
    assert_eq!(p.wait_for("p1").await["result"]["offset"], 1);
    carries_exactly(&sub.recv_text().await);

    let answer = p.request(json!({"type":"command","command":"history","args":{"room":"r","channel":"exact"}})).await;
    assert_eq!(answer["result"]["events"].as_array().map(Vec::len), Some(1));
    p.send_text(r#"{"type":"command","id":"h2","command":"history","args":{"room":"r","channel":"exact"}}"#).await;
    carries_exactly(&p.recv_text().await);

    let auth = [("authorization", "Bearer fidelity-key-0123456789")];
    let (status, body) = http(node.addr(), "GET", "/v1/history?room=r&channel=exact", &auth, "").await;
    assert_eq!(status, 200, "{body}");
    carries_exactly(&body);

    // Over HTTP too: the publish body's payload is stored as sent.
    let body = format!(r#"{{"room":"r","channel":"exact","payload":{PAYLOAD},"metadata":{METADATA}}}"#);
    let (status, ack) = http(node.addr(), "POST", "/v1/publish", &auth, &body).await;
    assert_eq!(status, 200, "{ack}");
    let ack: Value = serde_json::from_str(&ack).unwrap();
    assert_eq!(ack["offset"], 2);
    carries_exactly(&sub.recv_text().await);
}

#[tokio::test]
async fn a_duplicated_key_in_an_http_publish_body_is_refused() {
    let mut cfg = config();
    cfg.http.api_key = Some("fidelity-key-0123456789".into());
    let node = start(cfg).await;
    let auth = [("authorization", "Bearer fidelity-key-0123456789")];
    let body = r#"{"room":"r","channel":"c","channel":"d","payload":1}"#;
    let (status, answer) = http(node.addr(), "POST", "/v1/publish", &auth, body).await;
    assert_eq!(status, 400, "{answer}");
    let v: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["error"]["code"], "VALIDATION_ERROR");
    assert_eq!(v["error"]["field"], "channel");
}

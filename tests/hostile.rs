//! Hostile input over a real WebSocket (§2.6, §6.2–6.4): every malformed frame gets the
//! documented error (code, field, request_id) or close code, and the connection's fate is
//! checked. Then the protocol-violation counter: 10 in a row close with 1008.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// The default `max_frame_bytes` (§6.7).
const MAX_FRAME: usize = 65_536;

/// What is put on the wire.
enum Input {
    Text(String),
    /// A text frame whose bytes are not UTF-8.
    BadUtf8(Vec<u8>),
    Binary(Vec<u8>),
}

/// What must come back.
enum Expect {
    /// An error frame; `field: None` means the doc names no field. The connection stays open.
    Error { code: &'static str, field: Option<&'static str>, request_id: Option<String> },
    /// A reply answering this request id. The connection stays open.
    Reply(String),
    /// A close with this code, with no error frame before it.
    Close(u16),
}

struct Case {
    name: &'static str,
    input: Input,
    expect: Expect,
}

fn case(name: &'static str, frame: impl ToString, expect: Expect) -> Case {
    Case { name, input: Input::Text(frame.to_string()), expect }
}

fn error(code: &'static str, field: Option<&'static str>, rid: Option<&str>) -> Expect {
    Expect::Error { code, field, request_id: rid.map(str::to_owned) }
}

/// INVALID_JSON with request_id null (step 1).
fn inv(name: &'static str, frame: impl ToString) -> Case {
    case(name, frame, error("INVALID_JSON", None, None))
}

/// VALIDATION_ERROR field `id` with request_id null (step 2, and a command without id).
fn bad_id(name: &'static str, frame: impl ToString) -> Case {
    case(name, frame, error("VALIDATION_ERROR", Some("id"), None))
}

/// VALIDATION_ERROR naming `field`, answering request id "h".
fn field(name: &'static str, frame: impl ToString, field: &'static str) -> Case {
    case(name, frame, error("VALIDATION_ERROR", Some(field), Some("h")))
}

/// `code` without a field, answering request id "h".
fn code(name: &'static str, frame: impl ToString, code: &'static str) -> Case {
    case(name, frame, error(code, None, Some("h")))
}

/// Accepted: a reply to request id "h".
fn good(name: &'static str, frame: impl ToString) -> Case {
    case(name, frame, Expect::Reply("h".into()))
}

fn closes(name: &'static str, input: Input, code: u16) -> Case {
    Case { name, input, expect: Expect::Close(code) }
}

/// `base` with the fields of `extra` set (a `null` removes the field).
fn with(mut base: Value, extra: Value) -> Value {
    for (k, x) in extra.as_object().expect("object") {
        match x {
            Value::Null => base.as_object_mut().expect("object").remove(k),
            _ => base.as_object_mut().expect("object").insert(k.clone(), x.clone()),
        };
    }
    base
}

/// A publish with id "h" on r:c, changed by `extra`.
fn event(extra: Value) -> Value {
    with(json!({"type":"event","id":"h","room":"r","channel":"c","payload":1}), extra)
}

/// A ping command with id "h", changed by `extra`.
fn ping(extra: Value) -> Value {
    with(json!({"type":"command","id":"h","command":"ping"}), extra)
}

/// A private message with id "h" to `to`.
fn private(to: Value) -> Value {
    json!({"type":"private","id":"h","to":to,"payload":1})
}

/// A command with id "h" whose args are r:c plus `extra`.
fn cmd(command: &str, extra: Value) -> Value {
    let args = with(json!({"room":"r","channel":"c"}), extra);
    json!({"type":"command","id":"h","command":command,"args":args})
}

/// An object nested `levels` deep in total (the top-level object counts as one).
fn nested(levels: usize) -> String {
    let inner = levels - 1;
    let deep = format!("{}{}", "[".repeat(inner), "]".repeat(inner));
    format!(r#"{{"type":"event","id":"h","room":"r","channel":"c","payload":{deep}}}"#)
}

/// A valid publish frame of exactly `bytes` bytes.
fn sized_event(bytes: usize) -> String {
    let head = r#"{"type":"event","id":"h","room":"r","channel":"c","payload":""#;
    let tail = r#""}"#;
    let pad = "x".repeat(bytes - head.len() - tail.len());
    format!("{head}{pad}{tail}")
}

/// UNSUPPORTED_VERSION for a ping carrying `version`.
fn unsupported(name: &'static str, version: &str) -> Case {
    code(name, ping(json!({ "version": version })), "UNSUPPORTED_VERSION")
}

/// A publish carrying `value` in `name`, refused with VALIDATION_ERROR naming it.
fn bad_value(label: &'static str, name: &'static str, value: Value) -> Case {
    field(label, event(json!({ name: value })), name)
}

fn metadata_keys(n: usize) -> Value {
    Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect())
}

fn cases() -> Vec<Case> {
    let id128 = "i".repeat(128);
    let (n64, n65) = ("n".repeat(64), "n".repeat(65));
    let no_payload = json!({"payload": null});
    vec![
        // Step 1: JSON, depth, object; request_id null.
        inv("malformed JSON", r#"{"type":"command","id":"h","#),
        inv("not JSON at all", "hello"),
        inv("empty frame", ""),
        inv("trailing garbage", r#"{"type":"command","id":"h","command":"ping"} x"#),
        inv("JSON array", r#"[{"type":"command","id":"h","command":"ping"}]"#),
        inv("JSON string", r#""ping""#),
        inv("JSON number", "42"),
        inv("JSON null", "null"),
        inv("10,000-deep nesting", nested(10_000)),
        inv("65 levels deep", nested(65)),
        inv("129 levels deep", nested(129)),
        good("63 levels deep accepted", nested(63)),
        good("64 levels deep accepted", nested(64)),
        // Step 2: id; request_id null.
        bad_id("id number", ping(json!({"id": 5}))),
        bad_id("id empty", ping(json!({"id": ""}))),
        bad_id("id 200 chars", ping(json!({"id": "i".repeat(200)}))),
        case("id 128 chars accepted", ping(json!({"id": id128})), Expect::Reply(id128)),
        // Step 2b: a key named twice, anywhere in the envelope (not inside payload).
        field("type named twice", r#"{"type":"event","type":"command","id":"h","command":"ping"}"#, "type"),
        field(
            "room named twice",
            r#"{"type":"event","id":"h","room":"r","room":"s","channel":"c","payload":1}"#,
            "room",
        ),
        bad_id("id named twice", r#"{"type":"command","id":"h","id":"g","command":"ping"}"#),
        field(
            "args key named twice",
            r#"{"type":"command","id":"h","command":"history","args":{"room":"r","room":"s","channel":"c"}}"#,
            "args",
        ),
        field(
            "nested args key named twice",
            r#"{"type":"command","id":"h","command":"subscribe","args":{"room":"r","channel":"c","since":{"offset":1,"offset":2}}}"#,
            "args",
        ),
        field(
            "metadata key named twice",
            r#"{"type":"event","id":"h","room":"r","channel":"c","payload":1,"metadata":{"k":"a","k":"b"}}"#,
            "metadata",
        ),
        field("to key named twice", r#"{"type":"private","id":"h","to":{"user":"a","user":"b"},"payload":1}"#, "to"),
        good(
            "payload is the publisher's own and passes through as sent",
            r#"{"type":"event","id":"h","room":"r","channel":"c","payload":{"a":1,"a":2}}"#,
        ),
        // Step 3: version.
        field("version number", ping(json!({"version": 1})), "version"),
        unsupported("version 2.0", "2.0"),
        unsupported("version 1.0.0", "1.0.0"),
        unsupported("version v1", "v1"),
        good("version 1.3 accepted", ping(json!({"version": "1.3"}))),
        good("version 1 accepted", ping(json!({"version": "1"}))),
        // Step 4: type.
        field("type missing", ping(json!({"type": null})), "type"),
        field("type number", ping(json!({"type": 7})), "type"),
        code("type reply", json!({"type":"reply","id":"h","result":{}}), "UNKNOWN_TYPE"),
        code("type system", json!({"type":"system","id":"h","event":"join"}), "UNKNOWN_TYPE"),
        code("type foo", json!({"type":"foo","id":"h"}), "UNKNOWN_TYPE"),
        // Step 5: fields allowed for the type.
        field("unknown top-level field", event(json!({"extra": 1})), "extra"),
        field("forged from", event(json!({"from": "me"})), "from"),
        field("forged user", event(json!({"user": "root"})), "user"),
        field("forged timestamp", event(json!({"timestamp": "2026-11-26T12:00:00.000Z"})), "timestamp"),
        field("forged offset", event(json!({"offset": 1})), "offset"),
        field("forged request_id", ping(json!({"request_id": "x"})), "request_id"),
        field("args on an event", event(json!({"args": {}})), "args"),
        field(
            "idempotency_key on private",
            with(private(json!({"user":"u"})), json!({"idempotency_key":"k"})),
            "idempotency_key",
        ),
        // Step 6: event values.
        field("room missing", event(json!({"room": null})), "room"),
        field("room number", event(json!({"room": 5})), "room"),
        field("channel array", event(json!({"channel": ["c"]})), "channel"),
        field("payload missing on event", event(no_payload.clone()), "payload"),
        field("room with space", event(json!({"room": "a b"})), "room"),
        field("room with colon", event(json!({"room": "a:b"})), "room"),
        field("channel with slash", event(json!({"channel": "a/b"})), "channel"),
        field("room unicode", event(json!({"room": "café"})), "room"),
        field("channel emoji", event(json!({"channel": "rocket🚀"})), "channel"),
        field("room empty", event(json!({"room": ""})), "room"),
        field("room 65 chars", event(json!({"room": n65})), "room"),
        field("channel 65 chars", event(json!({"channel": n65})), "channel"),
        good("room and channel 64 chars accepted", event(json!({"room": n64, "channel": n64}))),
        bad_value("metadata array", "metadata", json!(["a"])),
        bad_value("metadata string", "metadata", json!("a=b")),
        bad_value("metadata non-string value", "metadata", json!({"n": 1})),
        bad_value("metadata 17 keys", "metadata", json!(metadata_keys(17))),
        good("metadata 16 keys accepted", event(json!({"metadata": metadata_keys(16)}))),
        bad_value("metadata 4097 bytes", "metadata", json!({"k": "v".repeat(4096)})),
        good("metadata 4096 bytes accepted", event(json!({"metadata": {"k": "v".repeat(4095)}}))),
        bad_value("idempotency_key 129 chars", "idempotency_key", json!("k".repeat(129))),
        bad_value("idempotency_key empty", "idempotency_key", json!("")),
        bad_value("idempotency_key number", "idempotency_key", json!(7)),
        // Step 6: private values.
        field("to with both keys", private(json!({"client": "c_1", "user": "u"})), "to"),
        field("to with neither key", private(json!({})), "to"),
        field("to with an empty value", private(json!({"user": ""})), "to"),
        field("to a string", private(json!("c_1")), "to"),
        field("to missing", with(private(json!(1)), json!({"to": null})), "to"),
        field("payload missing on private", with(private(json!({"user":"u"})), no_payload), "payload"),
        // Step 6: command values.
        bad_id("command without id", ping(json!({"id": null}))),
        field("command name missing", ping(json!({"command": null})), "command"),
        field("command name number", ping(json!({"command": 3})), "command"),
        code("unknown command", ping(json!({"command": "explode"})), "UNKNOWN_COMMAND"),
        field("args array", ping(json!({"args": []})), "args"),
        field("args string", ping(json!({"args": "x"})), "args"),
        field("args null", r#"{"type":"command","id":"h","command":"ping","args":null}"#, "args"),
        field("unknown arg", cmd("history", json!({"limit2": 1})), "limit2"),
        field("history limit 0", cmd("history", json!({"limit": 0})), "limit"),
        field("history limit 1001", cmd("history", json!({"limit": 1001})), "limit"),
        field("history limit string", cmd("history", json!({"limit": "5"})), "limit"),
        field("history since negative", cmd("history", json!({"since": -1})), "since"),
        field("history reverse string", cmd("history", json!({"reverse": "yes"})), "reverse"),
        good(
            "history limit 1000 accepted",
            // Not r:c, where other rows publish deeply nested payloads.
            cmd("history", json!({"limit": 1000, "channel": "untouched"})),
        ),
        field("subscribe since not an object", cmd("subscribe", json!({"since": 3})), "since"),
        field(
            "subscribe since.epoch number",
            cmd("subscribe", json!({"since": {"offset": 1, "epoch": 2}})),
            "since.epoch",
        ),
        field("subscribe bad channel", cmd("subscribe", json!({"channel": "c c"})), "channel"),
        // Transport level: a close code, and no error frame first.
        closes("binary frame", Input::Binary(br#"{"type":"command"}"#.to_vec()), 1003),
        closes("text frame with invalid UTF-8", Input::BadUtf8(vec![b'{', 0xff, 0xfe, b'}']), 1007),
        closes("frame 1 byte over max_frame_bytes", Input::Text(sized_event(MAX_FRAME + 1)), 1009),
        good("frame at max_frame_bytes accepted", sized_event(MAX_FRAME)),
        good("frame 1 byte under max_frame_bytes accepted", sized_event(MAX_FRAME - 1)),
    ]
}

async fn send(c: &mut Client, input: Input) {
    match input {
        Input::Text(t) => c.send_text(t).await,
        Input::BadUtf8(bytes) => {
            let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
            c.ws.send(Message::Frame(frame)).await.expect("send raw frame");
        }
        Input::Binary(bytes) => c.ws.send(Message::binary(bytes)).await.expect("send binary"),
    }
}

/// Runs one row on a fresh connection; Err describes how the server disagreed.
async fn run(addr: std::net::SocketAddr, case: Case) -> Result<(), String> {
    let mut c = Client::connect(addr).await;
    send(&mut c, case.input).await;
    let got = c.next_read().await;
    match (case.expect, got) {
        (Expect::Close(want), Read::Closed(code)) if code == Some(want) => return Ok(()),
        (Expect::Close(want), got) => return Err(format!("expected close {want}, got {got:?}")),
        (Expect::Reply(rid), Read::Frame(v)) => {
            if v["type"] != "reply" || v["request_id"] != rid.as_str() {
                return Err(format!("expected a reply to {rid:?}, got {v}"));
            }
        }
        (Expect::Error { code, field, request_id }, Read::Frame(v)) => {
            let rid = request_id.map_or(Value::Null, Value::from);
            let field_ok = field.is_none_or(|f| v["error"]["field"] == f);
            if v["type"] != "error" || v["error"]["code"] != code || !field_ok || v["request_id"] != rid {
                return Err(format!("expected {code} field {field:?} request_id {rid}, got {v}"));
            }
            if v["version"] != "1.0" {
                return Err(format!("error frame without version 1.0: {v}"));
            }
        }
        (_, Read::Closed(code)) => return Err(format!("connection closed ({code:?}) instead of an answer")),
    }
    // The connection stays open: a ping still works.
    c.send_json(&json!({"type":"command","id":"after","command":"ping"})).await;
    match c.next_read().await {
        Read::Frame(v) if v["type"] == "reply" && v["request_id"] == "after" => Ok(()),
        other => Err(format!("connection unusable after the answer: {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_get_the_documented_answer_and_fate() {
    let node = start(config()).await;
    let addr = node.addr();
    let table = cases();
    assert!(table.len() >= 30);
    let tasks: Vec<_> = table.into_iter().map(|case| (case.name, tokio::spawn(run(addr, case)))).collect();
    let mut failures = Vec::new();
    for (name, task) in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failures.push(format!("{name}: {why}")),
            Err(e) => failures.push(format!("{name}: panicked: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} rows disagree with the doc:\n{}", failures.len(), failures.join("\n"));
}

/// One violation of each kind, cycled.
fn violation(i: usize) -> Value {
    match i % 5 {
        0 => json!("not an object"),
        1 => json!({"type":"event","room":"a b","channel":"c","payload":1}),
        2 => json!({"type":"command","id":"v","command":"ping","version":"2.0"}),
        3 => json!({"type":"foo"}),
        _ => json!({"type":"command","id":"v","command":"nope"}),
    }
}

/// Sends `n` violations and checks each gets its error frame.
async fn violate(c: &mut Client, n: usize) {
    for i in 0..n {
        c.send_json(&violation(i)).await;
        let v = c.recv().await;
        assert_eq!(v["type"], "error", "violation {i}: {v}");
    }
}

async fn assert_open(c: &mut Client) {
    assert_eq!(c.ok("ping", json!({})).await["pong"], true);
}

#[tokio::test]
async fn ten_violations_in_a_row_close_with_1008_after_the_tenth_error() {
    let node = start(config()).await;
    let mut c = Client::connect(node.addr()).await;
    violate(&mut c, 9).await;
    c.send_text("{oops").await;
    match c.next_read().await {
        Read::Frame(v) => assert_eq!(v["error"]["code"], "INVALID_JSON", "{v}"),
        Read::Closed(code) => panic!("closed ({code:?}) before the 10th error frame"),
    }
    match c.next_read().await {
        Read::Closed(code) => assert_eq!(code, Some(1008)),
        Read::Frame(v) => panic!("expected close 1008 after the 10th violation, got {v}"),
    }
}

#[tokio::test]
async fn a_valid_frame_resets_the_violation_count() {
    let node = start(config()).await;
    let mut c = Client::connect(node.addr()).await;
    violate(&mut c, 9).await;
    assert_open(&mut c).await;
    violate(&mut c, 9).await;
    assert_open(&mut c).await;
    // A silent publish (no id) also passes validation and resets the count.
    violate(&mut c, 9).await;
    c.publish_silent("r", "c", json!(1)).await;
    violate(&mut c, 9).await;
    assert_open(&mut c).await;
    // Counting restarts from the ping: 10 more violations close.
    violate(&mut c, 9).await;
    c.send_text("[]").await;
    assert_eq!(c.recv().await["error"]["code"], "INVALID_JSON");
    assert_eq!(c.closed().await, Some(1008));
}

#[tokio::test]
async fn refusals_are_not_violations_and_reset_the_count() {
    let node = start(config()).await;
    let mut c = Client::connect(node.addr()).await;
    // Many refusals in a row never close.
    for _ in 0..12 {
        c.err("unsubscribe", json!({"room":"r","channel":"c"}), "NOT_SUBSCRIBED").await;
    }
    for _ in 0..12 {
        let v = c.request(json!({"type":"event","room":"_sys","channel":"x","payload":1})).await;
        assert_eq!(v["error"]["code"], "FORBIDDEN", "{v}");
    }
    assert_open(&mut c).await;
    // A refusal between violations resets the count like any well-formed frame.
    violate(&mut c, 9).await;
    let v = c.request(json!({"type":"event","room":"_sys","channel":"x","payload":1})).await;
    assert_eq!(v["error"]["code"], "FORBIDDEN", "{v}");
    violate(&mut c, 9).await;
    c.err("unsubscribe", json!({"room":"r","channel":"c"}), "NOT_SUBSCRIBED").await;
    violate(&mut c, 9).await;
    c.subscribe("r", "c").await;
    c.err("subscribe", json!({"room":"r","channel":"c"}), "ALREADY_SUBSCRIBED").await;
    violate(&mut c, 9).await;
    assert_open(&mut c).await;
}

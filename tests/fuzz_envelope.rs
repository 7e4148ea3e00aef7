//! Property tests of envelope parsing and validation (protocol §2.6): arbitrary bytes, JSON
//! token soup and mutated valid frames are fed to `parse_client_frame` and `parse_http_publish`
//! and held to a second, independent reading of the rules (`envelope_model`).
//!
//! Cases per property: the default below, or `PROPTEST_CASES` (the long run in
//! docs/security.md sets it).

mod envelope_model;

use arqonbus::protocol::{
    parse_client_frame, parse_http_publish, strict, ClientFrame, EventFrame, JsonError, Metadata, Rejection, Target,
};
use envelope_model::gen;
use envelope_model::json;
use envelope_model::rules::{self, EventOut, Expected, Meta, Refusal};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};
use serde_json::value::RawValue;
use serde_json::{json, Value};

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    let persistence = FileFailurePersistence::Direct("proptest-regressions/fuzz_envelope.txt");
    ProptestConfig { cases, failure_persistence: Some(Box::new(persistence)), ..ProptestConfig::default() }
}

fn check_refusal(want: &Refusal, code: &str, field: Option<&str>, rid: Option<&str>) -> Result<(), TestCaseError> {
    prop_assert_eq!(code, want.code);
    match field {
        None => prop_assert!(want.fields.is_empty(), "no field named, expected one of {:?}", want.fields),
        Some(f) => prop_assert!(want.fields.iter().any(|w| w == f), "field {:?}, expected one of {:?}", f, want.fields),
    }
    prop_assert_eq!(rid, want.request_id.as_deref());
    Ok(())
}

fn check_meta(want: &Option<Meta<'_>>, got: Option<&Metadata>) -> Result<(), TestCaseError> {
    match (want, got) {
        (None, None) => Ok(()),
        (Some(w), Some(g)) => {
            prop_assert_eq!(g.raw().get(), w.raw, "metadata must be the bytes sent");
            for (k, v) in &w.entries {
                prop_assert_eq!(g.get(k), Some(v.as_str()));
            }
            Ok(())
        }
        _ => Err(TestCaseError::fail(format!("metadata: expected {want:?}, got {got:?}"))),
    }
}

fn check_event(want: &EventOut<'_>, got: &EventFrame) -> Result<(), TestCaseError> {
    prop_assert_eq!(&got.id, &want.id);
    prop_assert_eq!(got.key.room(), want.room.as_str());
    prop_assert_eq!(got.key.channel(), want.channel.as_str());
    prop_assert_eq!(got.payload.get(), want.payload, "payload must be the bytes sent");
    prop_assert_eq!(&got.idempotency_key, &want.idempotency_key);
    check_meta(&want.metadata, got.metadata.as_ref())
}

/// The server's answer to `text` is the model's, and an accepted frame survives being written
/// out again (fields in another order, `version` added) and read back.
fn check_client(text: &str) -> Result<(), TestCaseError> {
    let got = parse_client_frame(text);
    match (rules::client_frame(text), &got) {
        (Expected::Refused(want), Err(r)) => {
            check_refusal(&want, r.error.code.as_str(), r.error.field.as_deref(), r.request_id.as_deref())?;
            prop_assert_eq!(r.frame_type, want.frame_type);
            return Ok(());
        }
        (Expected::Event(want), Ok(ClientFrame::Event(e))) => check_event(&want, e)?,
        (Expected::Private(want), Ok(ClientFrame::Private(p))) => {
            prop_assert_eq!(&p.id, &want.id);
            let to = match &p.to {
                Target::Client(c) => ("client", c.clone()),
                Target::User(u) => ("user", u.clone()),
            };
            prop_assert_eq!(&to, &want.to);
            prop_assert_eq!(p.payload.get(), want.payload, "payload must be the bytes sent");
            check_meta(&want.metadata, p.metadata.as_ref())?;
        }
        (Expected::Command(want), Ok(ClientFrame::Command(c))) => {
            prop_assert_eq!(&c.id, &want.id);
            prop_assert_eq!(&c.command, &want.command);
            prop_assert_eq!(&c.args, &want.args);
            check_meta(&want.metadata, c.metadata.as_ref())?;
        }
        (want, got) => return Err(TestCaseError::fail(format!("expected {want:?}\n got {:?}", summary(got)))),
    }
    let Ok(frame) = got else { return Ok(()) };
    let again = rewrite(&frame);
    let back = parse_client_frame(&again);
    if let (ClientFrame::Command(a), Ok(ClientFrame::Command(b))) = (&frame, &back) {
        let (a_args, b_args) = (Value::Object(a.args.clone()), Value::Object(b.args.clone()));
        prop_assert!(close(&a_args, &b_args), "args {} came back as {} from {}", a_args, b_args, again);
    }
    prop_assert_eq!(summary(&back), summary(&Ok(frame)), "rewritten as {}", again);
    Ok(())
}

fn check_http(text: &str) -> Result<(), TestCaseError> {
    match (rules::http_publish(text), parse_http_publish(text)) {
        (Err(want), Err(e)) => check_refusal(&want, e.code.as_str(), e.field.as_deref(), None),
        (Ok(want), Ok(got)) => check_event(&want, &got),
        (want, got) => Err(TestCaseError::fail(format!("expected {want:?}\n got {got:?}"))),
    }
}

/// Everything a parsed frame holds, as comparable text.
fn summary(r: &Result<ClientFrame, Rejection>) -> String {
    let meta = |m: &Option<Metadata>| m.as_ref().map(|m| m.raw().get().to_owned());
    match r {
        Err(r) => format!("{r:?}"),
        Ok(ClientFrame::Event(e)) => {
            format!("event {:?} {} {} {:?} {:?}", e.id, e.key, e.payload.get(), meta(&e.metadata), e.idempotency_key)
        }
        Ok(ClientFrame::Private(p)) => {
            format!("private {:?} {:?} {} {:?}", p.id, p.to, p.payload.get(), meta(&p.metadata))
        }
        // `args` are compared by `close`.
        Ok(ClientFrame::Command(c)) => format!("command {:?} {:?} {:?}", c.id, c.command, meta(&c.metadata)),
    }
}

/// Equal, except that fractions may differ in their last bits: serde_json reads a float to
/// within an ulp or so of the nearest one (its `float_roundtrip` feature is off), so a fraction
/// in `args` may move a little when written out and read again. No command takes a fraction.
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            (x - y).abs() <= 1e-14 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        _ => a == b,
    }
}

/// Writes an accepted frame out again: compact, `version` first, fields in reverse order.
fn rewrite(frame: &ClientFrame) -> String {
    let mut members: Vec<(&str, String)> = Vec::new();
    let (ty, id, meta) = match frame {
        ClientFrame::Event(e) => {
            members.push(("room", js(e.key.room())));
            members.push(("channel", js(e.key.channel())));
            members.push(("payload", e.payload.get().to_owned()));
            if let Some(k) = &e.idempotency_key {
                members.push(("idempotency_key", js(k)));
            }
            ("event", e.id.clone(), &e.metadata)
        }
        ClientFrame::Private(p) => {
            let to = match &p.to {
                Target::Client(c) => json!({ "client": c }),
                Target::User(u) => json!({ "user": u }),
            };
            members.push(("to", to.to_string()));
            members.push(("payload", p.payload.get().to_owned()));
            ("private", p.id.clone(), &p.metadata)
        }
        ClientFrame::Command(c) => {
            members.push(("command", js(&c.command)));
            members.push(("args", Value::Object(c.args.clone()).to_string()));
            ("command", Some(c.id.clone()), &c.metadata)
        }
    };
    members.push(("type", js(ty)));
    if let Some(id) = id {
        members.push(("id", js(&id)));
    }
    if let Some(m) = meta {
        members.push(("metadata", m.raw().get().to_owned()));
    }
    let body: Vec<String> = members.iter().rev().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{\"version\":\"1.0\",{}}}", body.join(","))
}

/// A string written as JSON text.
fn js(s: &str) -> String {
    Value::from(s).to_string()
}

fn noise() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..48)
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn arbitrary_bytes_follow_the_model(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        check_client(&text)?;
        check_http(&text)?;
    }

    #[test]
    fn json_token_soup_follows_the_model(text in gen::token_soup()) {
        check_client(&text)?;
        check_http(&text)?;
    }

    #[test]
    fn mutated_frames_follow_the_model(frame in gen::frame(), noise in noise()) {
        check_client(&gen::render(&frame, &noise))?;
    }

    #[test]
    fn mutated_http_bodies_follow_the_model(body in gen::http_body(), noise in noise()) {
        check_http(&gen::render(&body, &noise))?;
    }

    /// `strict` reads any value serde_json reads, except that a key named twice in any object is
    /// refused, naming that key.
    #[test]
    fn strict_refuses_exactly_duplicate_keys(value in gen::value(), noise in noise()) {
        let text = gen::render(&vec![("v".to_owned(), value)], &noise);
        let Ok(raw) = serde_json::from_str::<Box<RawValue>>(&text) else { return Ok(()) };
        let reference = json::parse(raw.get(), usize::MAX);
        match (strict(&raw), reference) {
            (Ok(v), Ok(node)) => {
                prop_assert!(!node.has_duplicate_key() && node.numbers_fit_f64());
                prop_assert_eq!(v, node.to_value());
            }
            (Err(JsonError::DuplicateKey(k)), Ok(node)) => {
                let twice = node.duplicate_keys();
                prop_assert!(twice.contains(&k.as_str()), "{:?} named, but the keys named twice are {:?}", k, twice);
            }
            (Err(e), Ok(node)) => prop_assert!(!node.numbers_fit_f64(), "refused {:?}", e),
            (Ok(v), Err(bad)) => prop_assert!(false, "accepted {} ({:?} for the reference)", v, bad),
            (Err(_), Err(_)) => {}
        }
    }
}

/// The generators are not vacuous: mutated frames reach every answer of §2.6.
#[test]
fn mutated_frames_reach_every_answer() {
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    let strategy = (gen::frame(), noise());
    for _ in 0..3000 {
        let Ok(tree) = strategy.new_tree(&mut runner) else { continue };
        let (frame, noise) = tree.current();
        let label = match parse_client_frame(&gen::render(&frame, &noise)) {
            Ok(ClientFrame::Event(_)) => "event".to_owned(),
            Ok(ClientFrame::Private(_)) => "private".to_owned(),
            Ok(ClientFrame::Command(_)) => "command".to_owned(),
            Err(r) => format!("{}/{}", r.error.code, r.error.field.is_some()),
        };
        seen.insert(label);
    }
    let want = [
        "event",
        "private",
        "command",
        "INVALID_JSON/false",
        "VALIDATION_ERROR/true",
        "UNSUPPORTED_VERSION/false",
        "UNKNOWN_TYPE/false",
    ];
    for w in want {
        assert!(seen.contains(w), "{w} never reached: {seen:?}");
    }
}

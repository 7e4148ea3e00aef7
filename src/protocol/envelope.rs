//! Client frames: strict parsing and validation, in the documented order.
//!
//! Order: JSON → `id` → `version` → `type` → allowed fields → field values. Each step produces
//! the error code the contract names; `Rejection::request_id` carries the client's `id` when
//! it could be read so that the error answers the right request.

use serde_json::{Map, Value};

use super::codes::{ErrorBody, ErrorCode};
use super::names::ChannelKey;

/// Metadata limits (§2).
const MAX_METADATA_KEYS: usize = 16;
const MAX_METADATA_BYTES: usize = 4096;
const MAX_ID_CHARS: usize = 128;
/// Deepest nesting of a client frame (the frame object is level 1). Server frames wrap a
/// payload a few levels deeper (a history reply adds four), so this keeps every frame the
/// server sends parseable by JSON libraries with the common 128-level limit.
pub const MAX_DEPTH: usize = 64;

/// Parses JSON text into a value no deeper than [`MAX_DEPTH`].
fn parse_json(text: &str) -> Result<Value, ErrorBody> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ErrorBody::new(ErrorCode::InvalidJson, invalid_json_message(&e)))?;
    if depth_exceeds(&value, MAX_DEPTH) {
        return Err(ErrorBody::new(ErrorCode::InvalidJson, format!("JSON nested deeper than {MAX_DEPTH} levels")));
    }
    Ok(value)
}

/// Whether `v` is nested deeper than `max` levels (scalars are level 0, an object 1).
fn depth_exceeds(v: &Value, max: usize) -> bool {
    let children: Box<dyn Iterator<Item = &Value>> = match v {
        Value::Array(a) => Box::new(a.iter()),
        Value::Object(o) => Box::new(o.values()),
        _ => return false,
    };
    max == 0 || children.into_iter().any(|c| depth_exceeds(c, max - 1))
}

/// A frame the server refused, with the request id it answers (if known).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The client's `id`, when it was present and valid.
    pub request_id: Option<String>,
    /// The frame's `type` (`event`, `private` or `command`), once it was read and known.
    pub frame_type: Option<&'static str>,
    /// The error to send.
    pub error: ErrorBody,
}

/// A validated client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    /// `type: event` — a publish.
    Event(EventFrame),
    /// `type: private` — a direct message.
    Private(PrivateFrame),
    /// `type: command`.
    Command(CommandFrame),
}

/// A publish request.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFrame {
    /// Request id; with it the client gets an ack.
    pub id: Option<String>,
    /// Where to publish.
    pub key: ChannelKey,
    /// Any JSON.
    pub payload: Value,
    /// Validated metadata.
    pub metadata: Option<Map<String, Value>>,
    /// Dedupe key.
    pub idempotency_key: Option<String>,
}

/// Target of a private message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// One connection by client id.
    Client(String),
    /// Every connection of a user.
    User(String),
}

/// A private message request.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivateFrame {
    /// Request id; with it the client gets a reply.
    pub id: Option<String>,
    /// Who receives it.
    pub to: Target,
    /// Any JSON.
    pub payload: Value,
    /// Validated metadata.
    pub metadata: Option<Map<String, Value>>,
}

/// A command request; `args` are validated by the command itself.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandFrame {
    /// Request id (required).
    pub id: String,
    /// Command name, not yet checked against the known commands.
    pub command: String,
    /// Arguments (empty when absent).
    pub args: Map<String, Value>,
    /// Validated metadata (trace context).
    pub metadata: Option<Map<String, Value>>,
}

const EVENT_FIELDS: &[&str] = &["version", "type", "id", "room", "channel", "payload", "metadata", "idempotency_key"];
const PRIVATE_FIELDS: &[&str] = &["version", "type", "id", "to", "payload", "metadata"];
const COMMAND_FIELDS: &[&str] = &["version", "type", "id", "command", "args", "metadata"];

/// Parses one text frame into a validated client frame.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, Rejection> {
    let value = parse_json(text).map_err(|error| Rejection { request_id: None, frame_type: None, error })?;
    let Value::Object(mut obj) = value else {
        return Err(Rejection {
            request_id: None,
            frame_type: None,
            error: ErrorBody::new(ErrorCode::InvalidJson, "a frame must be a JSON object"),
        });
    };
    let id = match obj.remove("id") {
        None => None,
        Some(v) => {
            Some(bounded_string(v, "id").map_err(|error| Rejection { request_id: None, frame_type: None, error })?)
        }
    };
    let reject = |error: ErrorBody| Rejection { request_id: id.clone(), frame_type: None, error };
    check_version(obj.get("version")).map_err(reject)?;
    let kind = match obj.get("type") {
        None => return Err(reject(ErrorBody::field("type", "type is required"))),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(reject(ErrorBody::field("type", "type must be a string"))),
    };
    let (frame_type, allowed) = match kind.as_str() {
        "event" => ("event", EVENT_FIELDS),
        "private" => ("private", PRIVATE_FIELDS),
        "command" => ("command", COMMAND_FIELDS),
        other => {
            let msg = format!("unknown frame type {:?}: expected event, private or command", truncate(other));
            return Err(reject(ErrorBody::new(ErrorCode::UnknownType, msg)));
        }
    };
    let reject = |error: ErrorBody| Rejection { request_id: id.clone(), frame_type: Some(frame_type), error };
    if let Some(field) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        let msg = format!("field {:?} is not allowed on a {kind} frame", truncate(field));
        return Err(reject(ErrorBody::field(truncate(field), msg)));
    }
    let metadata = obj.remove("metadata").map(validate_metadata).transpose().map_err(reject)?;
    match kind.as_str() {
        "event" => parse_event(obj, id.clone(), metadata).map(ClientFrame::Event),
        "private" => parse_private(obj, id.clone(), metadata).map(ClientFrame::Private),
        _ => parse_command(obj, id.clone(), metadata).map(ClientFrame::Command),
    }
    .map_err(reject)
}

fn invalid_json_message(e: &serde_json::Error) -> String {
    if e.to_string().contains("recursion limit") {
        format!("JSON nested deeper than {MAX_DEPTH} levels")
    } else {
        format!("not valid JSON: {e}")
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn check_version(v: Option<&Value>) -> Result<(), ErrorBody> {
    match v {
        None => Ok(()),
        Some(Value::String(s)) => {
            let ok = match s.split_once('.') {
                None => s == "1",
                Some((major, minor)) => {
                    major == "1" && !minor.is_empty() && minor.len() <= 9 && minor.bytes().all(|b| b.is_ascii_digit())
                }
            };
            if ok {
                Ok(())
            } else {
                let msg = format!("protocol version {:?} is not supported; this server speaks 1.0", truncate(s));
                Err(ErrorBody::new(ErrorCode::UnsupportedVersion, msg))
            }
        }
        Some(_) => Err(ErrorBody::field("version", "version must be a string such as \"1.0\"")),
    }
}

/// A string of 1–128 characters (ids and idempotency keys).
fn bounded_string(v: Value, field: &str) -> Result<String, ErrorBody> {
    match v {
        Value::String(s) if !s.is_empty() && s.chars().count() <= MAX_ID_CHARS => Ok(s),
        _ => Err(ErrorBody::field(field, format!("{field} must be a string of 1-{MAX_ID_CHARS} characters"))),
    }
}

fn validate_metadata(v: Value) -> Result<Map<String, Value>, ErrorBody> {
    let Value::Object(map) = v else {
        return Err(ErrorBody::field("metadata", "metadata must be an object of strings"));
    };
    if map.len() > MAX_METADATA_KEYS {
        return Err(ErrorBody::field("metadata", format!("metadata may have at most {MAX_METADATA_KEYS} keys")));
    }
    let mut bytes = 0;
    for (k, v) in &map {
        let Value::String(s) = v else {
            return Err(ErrorBody::field("metadata", "metadata values must be strings"));
        };
        bytes += k.len() + s.len();
    }
    if bytes > MAX_METADATA_BYTES {
        return Err(ErrorBody::field("metadata", format!("metadata may hold at most {MAX_METADATA_BYTES} bytes")));
    }
    Ok(map)
}

/// Parses the body of `POST /v1/publish`: an event without `type`, `id` or `version`.
pub fn parse_http_publish(text: &str) -> Result<EventFrame, ErrorBody> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ErrorBody::new(ErrorCode::InvalidJson, invalid_json_message(&e)))?;
    let Value::Object(mut obj) = value else {
        return Err(ErrorBody::new(ErrorCode::InvalidJson, "the body must be a JSON object"));
    };
    const ALLOWED: &[&str] = &["room", "channel", "payload", "metadata", "idempotency_key"];
    if let Some(field) = obj.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return Err(ErrorBody::field(truncate(field), format!("field {:?} is not allowed", truncate(field))));
    }
    let metadata = obj.remove("metadata").map(validate_metadata).transpose()?;
    parse_event(obj, None, metadata)
}

/// Reads a required room or channel name.
pub(crate) fn take_name(obj: &mut Map<String, Value>, field: &'static str) -> Result<String, ErrorBody> {
    match obj.remove(field) {
        None => Err(ErrorBody::field(field, format!("{field} is required"))),
        Some(Value::String(s)) => {
            super::names::validate_name(&s).map_err(|e| ErrorBody::field(field, format!("{field} {e}")))?;
            Ok(s)
        }
        Some(_) => Err(ErrorBody::field(field, format!("{field} must be a string"))),
    }
}

fn take_payload(obj: &mut Map<String, Value>) -> Result<Value, ErrorBody> {
    obj.remove("payload").ok_or_else(|| ErrorBody::field("payload", "payload is required"))
}

fn parse_event(
    mut obj: Map<String, Value>,
    id: Option<String>,
    metadata: Option<Map<String, Value>>,
) -> Result<EventFrame, ErrorBody> {
    let room = take_name(&mut obj, "room")?;
    let channel = take_name(&mut obj, "channel")?;
    let payload = take_payload(&mut obj)?;
    let idempotency_key = obj.remove("idempotency_key").map(|v| bounded_string(v, "idempotency_key")).transpose()?;
    Ok(EventFrame { id, key: ChannelKey::new(&room, &channel), payload, metadata, idempotency_key })
}

fn parse_private(
    mut obj: Map<String, Value>,
    id: Option<String>,
    metadata: Option<Map<String, Value>>,
) -> Result<PrivateFrame, ErrorBody> {
    let bad = || ErrorBody::field("to", "to must be {\"client\":\"<client_id>\"} or {\"user\":\"<user id>\"}");
    let to = match obj.remove("to") {
        Some(Value::Object(to)) if to.len() == 1 => match to.into_iter().next() {
            Some((k, Value::String(s))) if !s.is_empty() && s.len() <= 256 && k == "client" => Target::Client(s),
            Some((k, Value::String(s))) if !s.is_empty() && s.len() <= 256 && k == "user" => Target::User(s),
            _ => return Err(bad()),
        },
        None => return Err(ErrorBody::field("to", "to is required")),
        _ => return Err(bad()),
    };
    let payload = take_payload(&mut obj)?;
    Ok(PrivateFrame { id, to, payload, metadata })
}

fn parse_command(
    mut obj: Map<String, Value>,
    id: Option<String>,
    metadata: Option<Map<String, Value>>,
) -> Result<CommandFrame, ErrorBody> {
    let id = id.ok_or_else(|| ErrorBody::field("id", "id is required on a command"))?;
    let command = match obj.remove("command") {
        Some(Value::String(s)) => s,
        None => return Err(ErrorBody::field("command", "command is required")),
        Some(_) => return Err(ErrorBody::field("command", "command must be a string")),
    };
    let args = match obj.remove("args") {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ErrorBody::field("args", "args must be an object")),
    };
    Ok(CommandFrame { id, command, args, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (Option<String>, ErrorCode, Option<String>) {
        let r = parse_client_frame(text).unwrap_err();
        (r.request_id, r.error.code, r.error.field)
    }

    #[test]
    fn accepts_a_publish() {
        let f = parse_client_frame(
            r#"{"type":"event","id":"p1","room":"r","channel":"c","payload":{"a":1},"idempotency_key":"k"}"#,
        )
        .unwrap();
        let ClientFrame::Event(e) = f else { panic!("not an event") };
        assert_eq!(e.key.as_str(), "r:c");
        assert_eq!(e.idempotency_key.as_deref(), Some("k"));
    }

    #[test]
    fn validation_order_and_fields() {
        assert_eq!(err("nope").1, ErrorCode::InvalidJson);
        assert_eq!(err("[1]").1, ErrorCode::InvalidJson);
        assert_eq!(err(r#"{"id":5,"type":"event"}"#), (None, ErrorCode::ValidationError, Some("id".into())));
        assert_eq!(err(r#"{"id":"a","version":"2.0","type":"event"}"#).1, ErrorCode::UnsupportedVersion);
        assert_eq!(err(r#"{"id":"a","version":1,"type":"event"}"#).2.as_deref(), Some("version"));
        assert_eq!(err(r#"{"id":"a","type":"bogus"}"#), (Some("a".into()), ErrorCode::UnknownType, None));
        assert_eq!(
            err(r#"{"type":"event","room":"r","channel":"c","payload":1,"from":"x"}"#).2.as_deref(),
            Some("from")
        );
        assert_eq!(err(r#"{"type":"command","command":"ping"}"#).2.as_deref(), Some("id"));
        assert_eq!(err(r#"{"type":"event","room":"r r","channel":"c","payload":1}"#).2.as_deref(), Some("room"));
        assert_eq!(err(r#"{"type":"event","room":"r","channel":"c"}"#).2.as_deref(), Some("payload"));
    }

    #[test]
    fn rejections_name_the_frame_type_once_known() {
        let ty = |text: &str| parse_client_frame(text).unwrap_err().frame_type;
        assert_eq!(ty("nope"), None);
        assert_eq!(ty(r#"{"type":"bogus"}"#), None);
        assert_eq!(ty(r#"{"type":"event","room":"r r","channel":"c","payload":1}"#), Some("event"));
        assert_eq!(ty(r#"{"type":"private","payload":1}"#), Some("private"));
        assert_eq!(ty(r#"{"type":"command","command":"ping","bogus":1}"#), Some("command"));
    }

    #[test]
    fn versions() {
        for ok in ["1", "1.0", "1.7", "1.10"] {
            assert!(check_version(Some(&Value::String(ok.into()))).is_ok(), "{ok}");
        }
        for bad in ["2.0", "1.", "1.x", "", "01.0", "1.0.0", "v1"] {
            assert!(check_version(Some(&Value::String(bad.into()))).is_err(), "{bad}");
        }
    }

    #[test]
    fn depth_limit_is_exact() {
        let nested = |levels: usize| {
            let inner = "[".repeat(levels - 1) + &"]".repeat(levels - 1);
            format!(r#"{{"type":"event","room":"r","channel":"c","payload":{inner}}}"#)
        };
        assert!(parse_client_frame(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(err(&nested(MAX_DEPTH + 1)).1, ErrorCode::InvalidJson);
    }

    #[test]
    fn deep_nesting_is_invalid_json() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let text = format!(r#"{{"type":"event","room":"r","channel":"c","payload":{deep}}}"#);
        assert_eq!(err(&text).1, ErrorCode::InvalidJson);
    }
}

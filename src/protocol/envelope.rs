//! Client frames: strict parsing and validation, in the documented order.
//!
//! Order: JSON (nesting, an object) → `id` → duplicate keys → `version` → `type` → allowed
//! fields → field values. Each step produces the error code the contract names;
//! `Rejection::request_id` carries the client's `id` when it could be read so that the error
//! answers the right request. `payload` and `metadata` are kept as the exact text the client sent.

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::codes::{ErrorBody, ErrorCode};
use super::json::{strict, JsonError, Members};
use super::names::ChannelKey;

#[cfg(test)]
use super::json::MAX_DEPTH;

/// Metadata limits (§2).
const MAX_METADATA_KEYS: usize = 16;
const MAX_METADATA_BYTES: usize = 4096;
const MAX_ID_CHARS: usize = 128;

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
#[derive(Debug, Clone)]
pub enum ClientFrame {
    /// `type: event` — a publish.
    Event(EventFrame),
    /// `type: private` — a direct message.
    Private(PrivateFrame),
    /// `type: command`.
    Command(CommandFrame),
}

/// Validated `metadata`: an object of at most 16 strings and 4 KiB, kept as sent.
#[derive(Debug, Clone)]
pub struct Metadata {
    raw: Box<RawValue>,
    entries: Vec<(String, String)>,
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.raw.get() == other.raw.get()
    }
}

impl Metadata {
    /// The exact JSON text the client sent.
    pub fn raw(&self) -> &RawValue {
        &self.raw
    }

    /// The value of one key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// `metadata` with `key` set to the string `value`, everything else kept byte for byte (the other
/// keys, their order, their escapes); a new key goes first. No metadata gives `{"key":"value"}`.
pub fn metadata_with(metadata: Option<&RawValue>, key: &str, value: &str) -> Box<RawValue> {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    let entry = format!("{}:{}", quoted(key), quoted(value));
    let Some(raw) = metadata else { return super::raw(format!("{{{entry}}}")) };
    let text = raw.get();
    let found = Members::parse(text).ok().and_then(|m| m.get(key)).map(|v| {
        // The value's bytes lie inside `text`: splice the new value in their place.
        let start = v.get().as_ptr() as usize - text.as_ptr() as usize;
        (start, start + v.get().len())
    });
    let out = match found {
        Some((a, b)) if b <= text.len() => format!("{}{}{}", &text[..a], quoted(value), &text[b..]),
        _ if text.trim_start_matches('{').trim_start().starts_with('}') => format!("{{{entry}}}"),
        _ => format!("{{{entry},{}", text.trim_start().strip_prefix('{').unwrap_or(text)),
    };
    super::raw(out)
}

/// A publish request.
#[derive(Debug, Clone)]
pub struct EventFrame {
    /// Request id; with it the client gets an ack.
    pub id: Option<String>,
    /// Where to publish.
    pub key: ChannelKey,
    /// Any JSON, exactly as sent.
    pub payload: Box<RawValue>,
    /// Validated metadata.
    pub metadata: Option<Metadata>,
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
#[derive(Debug, Clone)]
pub struct PrivateFrame {
    /// Request id; with it the client gets a reply.
    pub id: Option<String>,
    /// Who receives it.
    pub to: Target,
    /// Any JSON, exactly as sent.
    pub payload: Box<RawValue>,
    /// Validated metadata.
    pub metadata: Option<Metadata>,
}

/// A command request; `args` are validated by the command itself.
#[derive(Debug, Clone)]
pub struct CommandFrame {
    /// Request id (required).
    pub id: String,
    /// Command name, not yet checked against the known commands.
    pub command: String,
    /// Arguments (empty when absent).
    pub args: Map<String, Value>,
    /// Validated metadata (trace context).
    pub metadata: Option<Metadata>,
}

const EVENT_FIELDS: &[&str] = &["version", "type", "id", "room", "channel", "payload", "metadata", "idempotency_key"];
const PRIVATE_FIELDS: &[&str] = &["version", "type", "id", "to", "payload", "metadata"];
const COMMAND_FIELDS: &[&str] = &["version", "type", "id", "command", "args", "metadata"];
const HTTP_PUBLISH_FIELDS: &[&str] = &["room", "channel", "payload", "metadata", "idempotency_key"];

/// The members of a frame, read field by field.
struct Fields<'a>(Members<'a>);

impl<'a> Fields<'a> {
    fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.0.get(key)
    }

    /// A field parsed as a plain value (scalars and short strings: no duplicate keys possible
    /// that matter, but read strictly all the same).
    fn value(&self, key: &str) -> Result<Option<Value>, ErrorBody> {
        self.raw(key).map(|r| strict(r).map_err(|e| ErrorBody::field(key, format!("{key}: {e}")))).transpose()
    }

    fn unknown(&self, allowed: &[&str]) -> Option<&str> {
        self.0 .0.iter().map(|(k, _)| k.as_str()).find(|k| !allowed.contains(k))
    }
}

fn invalid_json(e: &JsonError) -> ErrorBody {
    let msg = match e {
        JsonError::NotObject => "a frame must be a JSON object".to_owned(),
        other => other.to_string(),
    };
    ErrorBody::new(ErrorCode::InvalidJson, msg)
}

/// Parses one text frame into a validated client frame.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, Rejection> {
    let members =
        Members::parse(text).map_err(|e| Rejection { request_id: None, frame_type: None, error: invalid_json(&e) })?;
    let fields = Fields(members);
    let id = fields
        .value("id")
        .and_then(|v| v.map(|v| bounded_string(v, "id")).transpose())
        .map_err(|error| Rejection { request_id: None, frame_type: None, error })?;
    let reject = |error: ErrorBody| Rejection { request_id: id.clone(), frame_type: None, error };
    if let Some(dup) = fields.0.duplicate() {
        let key: String = dup.chars().take(64).collect();
        // A frame that names `id` twice answers no request, whichever key was seen twice first.
        let id_twice = fields.0 .0.iter().filter(|(k, _)| k == "id").count() > 1;
        let request_id = if id_twice { None } else { id.clone() };
        let error = ErrorBody::field(key.clone(), format!("duplicate key {key:?}"));
        return Err(Rejection { request_id, frame_type: None, error });
    }
    check_version(fields.value("version").map_err(reject)?.as_ref()).map_err(reject)?;
    let kind = match fields.value("type").map_err(reject)? {
        None => return Err(reject(ErrorBody::field("type", "type is required"))),
        Some(Value::String(s)) => s,
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
    if let Some(field) = fields.unknown(allowed) {
        let msg = format!("field {:?} is not allowed on a {kind} frame", truncate(field));
        return Err(reject(ErrorBody::field(truncate(field), msg)));
    }
    let metadata = fields.raw("metadata").map(validate_metadata).transpose().map_err(reject)?;
    match frame_type {
        "event" => parse_event(&fields, id.clone(), metadata).map(ClientFrame::Event),
        "private" => parse_private(&fields, id.clone(), metadata).map(ClientFrame::Private),
        _ => parse_command(&fields, id.clone(), metadata).map(ClientFrame::Command),
    }
    .map_err(reject)
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
                Some((major, minor)) => major == "1" && !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()),
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

fn validate_metadata(raw: &RawValue) -> Result<Metadata, ErrorBody> {
    let not_strings = || ErrorBody::field("metadata", "metadata must be an object of strings");
    let map = match strict(raw) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(not_strings()),
        Err(e) => return Err(ErrorBody::field("metadata", format!("metadata: {e}"))),
    };
    if map.len() > MAX_METADATA_KEYS {
        return Err(ErrorBody::field("metadata", format!("metadata may have at most {MAX_METADATA_KEYS} keys")));
    }
    let mut bytes = 0;
    let mut entries = Vec::with_capacity(map.len());
    for (k, v) in map {
        let Value::String(s) = v else { return Err(not_strings()) };
        bytes += k.len() + s.len();
        entries.push((k, s));
    }
    if bytes > MAX_METADATA_BYTES {
        return Err(ErrorBody::field("metadata", format!("metadata may hold at most {MAX_METADATA_BYTES} bytes")));
    }
    Ok(Metadata { raw: raw.to_owned(), entries })
}

/// Parses the body of `POST /v1/publish`: an event without `type`, `id` or `version`.
pub fn parse_http_publish(text: &str) -> Result<EventFrame, ErrorBody> {
    let members = Members::parse(text).map_err(|e| match e {
        JsonError::NotObject => ErrorBody::new(ErrorCode::InvalidJson, "the body must be a JSON object"),
        other => invalid_json(&other),
    })?;
    let fields = Fields(members);
    if let Some(dup) = fields.0.duplicate() {
        return Err(ErrorBody::field(truncate(dup), format!("duplicate key {:?}", truncate(dup))));
    }
    if let Some(field) = fields.unknown(HTTP_PUBLISH_FIELDS) {
        return Err(ErrorBody::field(truncate(field), format!("field {:?} is not allowed", truncate(field))));
    }
    let metadata = fields.raw("metadata").map(validate_metadata).transpose()?;
    parse_event(&fields, None, metadata)
}

/// Reads a required room or channel name.
pub(crate) fn take_name(obj: &mut Map<String, Value>, field: &'static str) -> Result<String, ErrorBody> {
    name_value(obj.remove(field), field)
}

fn name_value(v: Option<Value>, field: &'static str) -> Result<String, ErrorBody> {
    match v {
        None => Err(ErrorBody::field(field, format!("{field} is required"))),
        Some(Value::String(s)) => {
            super::names::validate_name(&s).map_err(|e| ErrorBody::field(field, format!("{field} {e}")))?;
            Ok(s)
        }
        Some(_) => Err(ErrorBody::field(field, format!("{field} must be a string"))),
    }
}

fn payload(fields: &Fields<'_>) -> Result<Box<RawValue>, ErrorBody> {
    fields.raw("payload").map(RawValue::to_owned).ok_or_else(|| ErrorBody::field("payload", "payload is required"))
}

fn parse_event(fields: &Fields<'_>, id: Option<String>, metadata: Option<Metadata>) -> Result<EventFrame, ErrorBody> {
    let room = name_value(fields.value("room")?, "room")?;
    let channel = name_value(fields.value("channel")?, "channel")?;
    let payload = payload(fields)?;
    let idempotency_key = fields.value("idempotency_key")?.map(|v| bounded_string(v, "idempotency_key")).transpose()?;
    Ok(EventFrame { id, key: ChannelKey::new(&room, &channel), payload, metadata, idempotency_key })
}

fn parse_private(
    fields: &Fields<'_>,
    id: Option<String>,
    metadata: Option<Metadata>,
) -> Result<PrivateFrame, ErrorBody> {
    let bad = || ErrorBody::field("to", "to must be {\"client\":\"<client_id>\"} or {\"user\":\"<user id>\"}");
    let to = match fields.value("to")? {
        Some(Value::Object(to)) if to.len() == 1 => match to.into_iter().next() {
            Some((k, Value::String(s))) if !s.is_empty() && s.len() <= 256 && k == "client" => Target::Client(s),
            Some((k, Value::String(s))) if !s.is_empty() && s.len() <= 256 && k == "user" => Target::User(s),
            _ => return Err(bad()),
        },
        None => return Err(ErrorBody::field("to", "to is required")),
        _ => return Err(bad()),
    };
    let payload = payload(fields)?;
    Ok(PrivateFrame { id, to, payload, metadata })
}

fn parse_command(
    fields: &Fields<'_>,
    id: Option<String>,
    metadata: Option<Metadata>,
) -> Result<CommandFrame, ErrorBody> {
    let id = id.ok_or_else(|| ErrorBody::field("id", "id is required on a command"))?;
    let command = match fields.value("command")? {
        Some(Value::String(s)) => s,
        None => return Err(ErrorBody::field("command", "command is required")),
        Some(_) => return Err(ErrorBody::field("command", "command must be a string")),
    };
    let args = match fields.value("args")? {
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
    fn metadata_with_replaces_or_adds_one_key_and_keeps_the_rest() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        let m = raw(r#"{"b":"caf\u00e9","traceparent":"old","a":"x"}"#);
        assert_eq!(
            metadata_with(Some(&m), "traceparent", "new").get(),
            r#"{"b":"caf\u00e9","traceparent":"new","a":"x"}"#
        );
        let m = raw(r#"{"z":"1" , "a":"2"}"#);
        assert_eq!(metadata_with(Some(&m), "traceparent", "t").get(), r#"{"traceparent":"t","z":"1" , "a":"2"}"#);
        assert_eq!(metadata_with(Some(&raw("{ }")), "k", "v").get(), r#"{"k":"v"}"#);
        assert_eq!(metadata_with(None, "k", "v").get(), r#"{"k":"v"}"#);
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

    // The regression cases below are inputs the property tests (tests/fuzz_envelope.rs) found.

    #[test]
    fn any_number_of_minor_digits_is_version_1() {
        let text = r#"{"type":"event","version":"1.0000000000","room":"r","channel":"c","payload":null}"#;
        assert!(parse_client_frame(text).is_ok());
    }

    #[test]
    fn an_id_named_twice_answers_no_request_whichever_key_was_seen_twice_first() {
        let text = r#"{"id":"0","version":"1","version":"1","id":"0","type":"command","command":"ping"}"#;
        assert_eq!(err(text), (None, ErrorCode::ValidationError, Some("version".into())));
    }

    #[test]
    fn unpaired_surrogates_are_invalid_json_wherever_they_are() {
        for text in [
            r#"{"type":"private","to":{"client":"_"},"payload":["\ud800"]}"#,
            r#"{"type":"event","room":"r","channel":"c","payload":1,"metadata":{"a":"\udc00"}}"#,
            r#"{"\ud800":1,"type":"event","room":"r","channel":"c","payload":1}"#,
        ] {
            assert_eq!(err(text).1, ErrorCode::InvalidJson, "{text}");
        }
        let body = r#"{"room":"r","channel":"c","payload":"\ud83d"}"#;
        assert_eq!(parse_http_publish(body).unwrap_err().code, ErrorCode::InvalidJson);
        let paired = r#"{"room":"r","channel":"c","payload":"\ud83d\ude00"}"#;
        assert_eq!(parse_http_publish(paired).unwrap().payload.get(), r#""\ud83d\ude00""#);
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

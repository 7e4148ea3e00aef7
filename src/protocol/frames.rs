//! Server frames, serialized once into shared, immutable text.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::codes::ErrorBody;
use super::envelope::Target;
use super::names::ChannelKey;

/// The protocol version every server frame carries.
pub const PROTOCOL_VERSION: &str = "1.0";

/// A serialized server frame: UTF-8 text, cheap to clone and shared by every receiver.
pub type Frame = axum::extract::ws::Utf8Bytes;

/// RFC 3339 UTC with milliseconds and `Z`.
pub fn timestamp_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The server `timestamp` of an event frame the server built, in ms since the epoch. The field
/// follows `from` and `user` (server-made strings, where `","timestamp":"` cannot occur
/// unescaped) and precedes `payload`, so its first occurrence is the envelope's.
pub fn event_timestamp_ms(frame: &str) -> Option<i64> {
    const FIELD: &str = r#","timestamp":""#;
    let at = frame.find(FIELD)? + FIELD.len();
    let text = frame.get(at..at + 24)?;
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
}

/// Serializes a value that cannot fail (our own types) to JSON text.
fn to_json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

/// Wraps already-serialized JSON so it can be embedded without re-parsing.
pub fn raw(json: String) -> Box<RawValue> {
    RawValue::from_string(json).unwrap_or_else(|_| RawValue::from_string("null".to_owned()).unwrap_or_default())
}

/// A channel event serialized around the one field only the backplane knows: its offset.
///
/// The gateway builds it once; the backplane renders it with the offset it assigns, and that
/// single rendering is stored in history and shared by every subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTemplate {
    head: String,
    tail: String,
}

impl EventTemplate {
    /// Rebuilds a template from its two parts (as carried over a backplane).
    pub fn from_parts(head: String, tail: String) -> Self {
        Self { head, tail }
    }

    /// The text before the offset.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// The text after the offset.
    pub fn tail(&self) -> &str {
        &self.tail
    }

    /// The final frame with `offset` filled in.
    pub fn render(&self, offset: u64) -> Frame {
        let mut s = String::with_capacity(self.head.len() + self.tail.len() + 20);
        s.push_str(&self.head);
        let _ = write!(s, "{offset}");
        s.push_str(&self.tail);
        Frame::from(s)
    }
}

/// The fields of a channel event other than its offset.
pub struct EventFields<'a> {
    /// `arq_` + UUIDv7.
    pub id: &'a str,
    /// Where it was published.
    pub key: &'a ChannelKey,
    /// Sender client id.
    pub from: &'a str,
    /// Sender user.
    pub user: Option<&'a str>,
    /// Server timestamp.
    pub timestamp: &'a str,
    /// The payload, exactly as the publisher sent it.
    pub payload: &'a RawValue,
    /// Optional metadata, exactly as sent.
    pub metadata: Option<&'a RawValue>,
}

/// Builds the template of a delivered `event` frame.
pub fn event_template(f: &EventFields<'_>) -> EventTemplate {
    let head = format!(
        r#"{{"version":"1.0","type":"event","id":{},"room":{},"channel":{},"offset":"#,
        to_json(f.id),
        to_json(f.key.room()),
        to_json(f.key.channel())
    );
    let mut tail = format!(
        r#","from":{},"user":{},"timestamp":{},"payload":{}"#,
        to_json(f.from),
        to_json(&f.user),
        to_json(f.timestamp),
        f.payload.get()
    );
    if let Some(m) = f.metadata {
        let _ = write!(tail, r#","metadata":{}"#, m.get());
    }
    tail.push('}');
    EventTemplate { head, tail }
}

#[derive(Serialize)]
struct PrivateOut<'a> {
    version: &'static str,
    r#type: &'static str,
    id: &'a str,
    from: &'a str,
    user: Option<&'a str>,
    timestamp: &'a str,
    to: Value,
    payload: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
}

/// Builds a delivered `private` frame.
pub fn private_frame(
    id: &str,
    from: &str,
    user: Option<&str>,
    to: &Target,
    payload: &RawValue,
    metadata: Option<&RawValue>,
) -> Frame {
    let to = match to {
        Target::Client(c) => serde_json::json!({ "client": c }),
        Target::User(u) => serde_json::json!({ "user": u }),
    };
    let timestamp = timestamp_now();
    let out = PrivateOut {
        version: PROTOCOL_VERSION,
        r#type: "private",
        id,
        from,
        user,
        timestamp: &timestamp,
        to,
        payload,
        metadata,
    };
    Frame::from(to_json(&out))
}

#[derive(Serialize)]
struct ReplyOut<'a, R: Serialize + ?Sized> {
    version: &'static str,
    r#type: &'static str,
    request_id: &'a str,
    result: &'a R,
}

/// Builds a `reply` frame.
pub fn reply_frame<R: Serialize + ?Sized>(request_id: &str, result: &R) -> Frame {
    Frame::from(to_json(&ReplyOut { version: PROTOCOL_VERSION, r#type: "reply", request_id, result }))
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    version: &'static str,
    r#type: &'static str,
    request_id: Option<&'a str>,
    error: &'a ErrorBody,
}

/// Builds an `error` frame.
pub fn error_frame(request_id: Option<&str>, error: &ErrorBody) -> Frame {
    Frame::from(to_json(&ErrorOut { version: PROTOCOL_VERSION, r#type: "error", request_id, error }))
}

#[derive(Serialize)]
struct SystemOut<'a> {
    version: &'static str,
    r#type: &'static str,
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    payload: &'a Value,
}

/// Builds a `system` frame (`welcome`, `join`, `leave`, `unsubscribed`, `draining`).
pub fn system_frame(event: &str, key: Option<&ChannelKey>, payload: &Value) -> Frame {
    let out = SystemOut {
        version: PROTOCOL_VERSION,
        r#type: "system",
        event,
        room: key.map(ChannelKey::room),
        channel: key.map(ChannelKey::channel),
        payload,
    };
    Frame::from(to_json(&out))
}

/// A `join` or `leave` frame of a channel's presence.
pub fn presence_frame(event: &str, key: &ChannelKey, client_id: &str, user: Option<&str>, info: &Value) -> Frame {
    system_frame(event, Some(key), &serde_json::json!({ "client_id": client_id, "user": user, "info": info }))
}

/// The `unsubscribed` frame of a subscription the server ended (`reason`: channel_deleted,
/// history_lost, permission_revoked).
pub fn unsubscribed_frame(key: &ChannelKey, reason: &str) -> Frame {
    system_frame("unsubscribed", Some(key), &serde_json::json!({ "reason": reason }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_renders_valid_json_with_offset() {
        let key = ChannelKey::new("science", "explore");
        let payload = raw(r#"{"x": "\"quoted\"", "n": 12345678901234567890123456789}"#.to_owned());
        let t = event_template(&EventFields {
            id: "arq_1",
            key: &key,
            from: "c_1",
            user: None,
            timestamp: "2026-01-01T00:00:00.000Z",
            payload: &payload,
            metadata: None,
        });
        let v: Value = serde_json::from_str(t.render(42).as_str()).unwrap();
        assert_eq!(v["offset"], 42);
        assert_eq!(v["room"], "science");
        assert_eq!(v["payload"]["x"], "\"quoted\"");
        assert!(t.render(42).as_str().contains(r#""payload":{"x": "\"quoted\"", "n": 12345678901234567890123456789}"#));
        assert_eq!(v["user"], Value::Null);
        assert!(v.get("metadata").is_none());
    }

    #[test]
    fn event_timestamps_are_read_back() {
        let key = ChannelKey::new("r", "c");
        let payload = raw(r#"{"timestamp":"1999-01-01T00:00:00.000Z"}"#.to_owned());
        let t = event_template(&EventFields {
            id: "arq_1",
            key: &key,
            from: "c_1",
            user: Some(r#"","timestamp":"x"#),
            timestamp: "2026-01-01T00:00:01.500Z",
            payload: &payload,
            metadata: None,
        });
        assert_eq!(event_timestamp_ms(t.render(1).as_str()), Some(1_767_225_601_500));
    }

    #[test]
    fn timestamps_have_millis_and_z() {
        let t = timestamp_now();
        assert!(t.ends_with('Z') && t.len() == 24, "{t}");
    }
}

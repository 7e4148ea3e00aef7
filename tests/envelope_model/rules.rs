//! The envelope rules of protocol v1 (docs/protocol.md §2.2–§2.6), written a second time from
//! the document as a reference model: what the server must answer to any text.

use serde_json::{Map, Value};

use super::json::{self, Node, J};

/// Deepest nesting of a frame (the frame object is level 1).
pub const MAX_DEPTH: usize = 64;

/// What the server must answer.
#[derive(Debug)]
pub enum Expected<'t> {
    Refused(Refusal),
    Event(EventOut<'t>),
    Private(PrivateOut<'t>),
    Command(CommandOut<'t>),
}

/// A refusal: its code, the `field` values it may name (empty: no field), the request id it
/// answers and the frame type, once known.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: &'static str,
    pub fields: Vec<String>,
    pub request_id: Option<String>,
    pub frame_type: Option<&'static str>,
}

/// Validated metadata: the text sent and its entries.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta<'t> {
    pub raw: &'t str,
    pub entries: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct EventOut<'t> {
    pub id: Option<String>,
    pub room: String,
    pub channel: String,
    pub payload: &'t str,
    pub metadata: Option<Meta<'t>>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug)]
pub struct PrivateOut<'t> {
    pub id: Option<String>,
    /// `client` or `user`, and the target.
    pub to: (&'static str, String),
    pub payload: &'t str,
    pub metadata: Option<Meta<'t>>,
}

#[derive(Debug)]
pub struct CommandOut<'t> {
    pub id: String,
    pub command: String,
    pub args: Map<String, Value>,
    pub metadata: Option<Meta<'t>>,
}

const EVENT: &[&str] = &["version", "type", "id", "room", "channel", "payload", "metadata", "idempotency_key"];
const PRIVATE: &[&str] = &["version", "type", "id", "to", "payload", "metadata"];
const COMMAND: &[&str] = &["version", "type", "id", "command", "args", "metadata"];
const HTTP: &[&str] = &["room", "channel", "payload", "metadata", "idempotency_key"];

fn first64(s: &str) -> String {
    s.chars().take(64).collect()
}

fn refuse(code: &'static str, fields: &[&str], request_id: Option<String>, ty: Option<&'static str>) -> Refusal {
    Refusal { code, fields: fields.iter().map(|f| first64(f)).collect(), request_id, frame_type: ty }
}

/// The top-level members of a text that is a JSON object within the depth limit.
pub fn members(text: &str) -> Option<Vec<(String, Node)>> {
    json::parse(text, MAX_DEPTH).ok().and_then(|n| n.members().map(<[_]>::to_vec))
}

fn get<'m>(m: &'m [(String, Node)], key: &str) -> Option<&'m Node> {
    m.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Keys named more than once.
fn duplicated(m: &[(String, Node)]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for (i, (k, _)) in m.iter().enumerate() {
        if m[..i].iter().any(|(p, _)| p == k) && !out.contains(&k.as_str()) {
            out.push(k);
        }
    }
    out
}

/// A string of 1–128 characters (`id`, `idempotency_key`).
fn bounded(n: &Node) -> Option<String> {
    n.as_str().filter(|s| (1..=128).contains(&s.chars().count())).map(str::to_owned)
}

/// A room or channel name: 1–64 of `A–Z a–z 0–9 _ - .`.
pub fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn name(n: Option<&Node>) -> Option<String> {
    n.and_then(Node::as_str).filter(|s| is_name(s)).map(str::to_owned)
}

fn version_ok(v: &str) -> bool {
    match v.split_once('.') {
        None => v == "1",
        Some((major, minor)) => major == "1" && !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// `metadata` (§2.4): an object of at most 16 strings and 4096 bytes, no key twice.
fn metadata<'t>(text: &'t str, n: &Node) -> Option<Meta<'t>> {
    let m = n.members()?;
    if !duplicated(m).is_empty() || m.len() > 16 {
        return None;
    }
    let entries: Vec<(String, String)> =
        m.iter().map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned()))).collect::<Option<_>>()?;
    let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
    (bytes <= 4096).then(|| Meta { raw: &text[n.span.clone()], entries })
}

/// `to`: exactly one key, `client` or `user`, with a non-empty string of at most 256 bytes.
fn target(n: &Node) -> Option<(&'static str, String)> {
    match n.members()? {
        [(k, v)] => {
            let kind = match k.as_str() {
                "client" => "client",
                "user" => "user",
                _ => return None,
            };
            let s = v.as_str().filter(|s| !s.is_empty() && s.len() <= 256)?;
            Some((kind, s.to_owned()))
        }
        _ => None,
    }
}

/// `args`: an object with no key twice at any depth, every number within `f64`.
fn args(n: &Node) -> Option<Map<String, Value>> {
    if n.has_duplicate_key() || !n.numbers_fit_f64() {
        return None;
    }
    match n.to_value() {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// What the server must answer to a WebSocket text frame (§2.6).
pub fn client_frame(text: &str) -> Expected<'_> {
    let Some(m) = members(text) else {
        return Expected::Refused(refuse("INVALID_JSON", &[], None, None));
    };
    // Step 2: `id` (its first occurrence; a second one is a duplicate, step 3).
    let id = match get(&m, "id") {
        None => None,
        Some(n) => match bounded(n) {
            Some(id) => Some(id),
            None => return Expected::Refused(refuse("VALIDATION_ERROR", &["id"], None, None)),
        },
    };
    let dups = duplicated(&m);
    if !dups.is_empty() {
        let rid = if dups.contains(&"id") { None } else { id };
        return Expected::Refused(refuse("VALIDATION_ERROR", &dups, rid, None));
    }
    let r = |code, fields: &[&str], ty| Expected::Refused(refuse(code, fields, id.clone(), ty));
    match get(&m, "version").map(|n| &n.value) {
        None => {}
        Some(J::Str(v)) if version_ok(v) => {}
        Some(J::Str(_)) => return r("UNSUPPORTED_VERSION", &[], None),
        Some(_) => return r("VALIDATION_ERROR", &["version"], None),
    }
    let (ty, allowed) = match get(&m, "type").map(|n| &n.value) {
        Some(J::Str(t)) if t == "event" => ("event", EVENT),
        Some(J::Str(t)) if t == "private" => ("private", PRIVATE),
        Some(J::Str(t)) if t == "command" => ("command", COMMAND),
        Some(J::Str(_)) => return r("UNKNOWN_TYPE", &[], None),
        _ => return r("VALIDATION_ERROR", &["type"], None),
    };
    let unknown: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).filter(|k| !allowed.contains(k)).collect();
    if !unknown.is_empty() {
        return r("VALIDATION_ERROR", &unknown, Some(ty));
    }
    let (out, bad) = match ty {
        "event" => event(text, &m, id.clone()),
        "private" => private(text, &m, id.clone()),
        _ => command(text, &m, id.clone()),
    };
    match out {
        Some(out) => out,
        None => r("VALIDATION_ERROR", &bad, Some(ty)),
    }
}

/// Checks `metadata` if present; records it as bad otherwise.
fn meta_field<'t>(text: &'t str, m: &[(String, Node)], bad: &mut Vec<&str>) -> Option<Meta<'t>> {
    let n = get(m, "metadata")?;
    let out = metadata(text, n);
    if out.is_none() {
        bad.push("metadata");
    }
    out
}

fn payload<'t>(text: &'t str, m: &[(String, Node)], bad: &mut Vec<&str>) -> &'t str {
    match get(m, "payload") {
        Some(n) => &text[n.span.clone()],
        None => {
            bad.push("payload");
            ""
        }
    }
}

type Checked<'t> = (Option<Expected<'t>>, Vec<&'static str>);

fn event_fields<'t>(text: &'t str, m: &[(String, Node)], id: Option<String>) -> (EventOut<'t>, Vec<&'static str>) {
    let mut bad = Vec::new();
    let metadata = meta_field(text, m, &mut bad);
    let room = name(get(m, "room")).unwrap_or_else(|| {
        bad.push("room");
        String::new()
    });
    let channel = name(get(m, "channel")).unwrap_or_else(|| {
        bad.push("channel");
        String::new()
    });
    let payload = payload(text, m, &mut bad);
    let idempotency_key = get(m, "idempotency_key").and_then(|n| {
        let k = bounded(n);
        if k.is_none() {
            bad.push("idempotency_key");
        }
        k
    });
    (EventOut { id, room, channel, payload, metadata, idempotency_key }, bad)
}

fn event<'t>(text: &'t str, m: &[(String, Node)], id: Option<String>) -> Checked<'t> {
    let (out, bad) = event_fields(text, m, id);
    (bad.is_empty().then_some(Expected::Event(out)), bad)
}

fn private<'t>(text: &'t str, m: &[(String, Node)], id: Option<String>) -> Checked<'t> {
    let mut bad = Vec::new();
    let metadata = meta_field(text, m, &mut bad);
    let to = get(m, "to").and_then(target);
    if to.is_none() {
        bad.push("to");
    }
    let payload = payload(text, m, &mut bad);
    let out = to.filter(|_| bad.is_empty()).map(|to| Expected::Private(PrivateOut { id, to, payload, metadata }));
    (out, bad)
}

fn command<'t>(text: &'t str, m: &[(String, Node)], id: Option<String>) -> Checked<'t> {
    let mut bad = Vec::new();
    let metadata = meta_field(text, m, &mut bad);
    if id.is_none() {
        bad.push("id");
    }
    let command = get(m, "command").and_then(Node::as_str).map(str::to_owned);
    if command.is_none() {
        bad.push("command");
    }
    let args = match get(m, "args") {
        None => Some(Map::new()),
        Some(n) => args(n),
    };
    if args.is_none() {
        bad.push("args");
    }
    let out = match (id, command, args) {
        (Some(id), Some(command), Some(args)) if bad.is_empty() => {
            Some(Expected::Command(CommandOut { id, command, args, metadata }))
        }
        _ => None,
    };
    (out, bad)
}

/// What `POST /v1/publish` must answer to a body (§7.5): the event or the refusal.
pub fn http_publish(text: &str) -> Result<EventOut<'_>, Refusal> {
    let m = members(text).ok_or_else(|| refuse("INVALID_JSON", &[], None, None))?;
    let dups = duplicated(&m);
    if !dups.is_empty() {
        return Err(refuse("VALIDATION_ERROR", &dups, None, None));
    }
    let unknown: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).filter(|k| !HTTP.contains(k)).collect();
    if !unknown.is_empty() {
        return Err(refuse("VALIDATION_ERROR", &unknown, None, None));
    }
    let (out, bad) = event_fields(text, &m, None);
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(refuse("VALIDATION_ERROR", &bad, None, None))
    }
}

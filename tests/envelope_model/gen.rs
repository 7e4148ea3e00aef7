//! Generators of client frames: valid frames of every type, mutated (fields dropped,
//! duplicated, retyped, renamed, nested, made huge or deep), then written out with random
//! whitespace and random escapes, so that one structure has many texts.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

/// A JSON value to write out. `Raw` is written verbatim (deep nesting, bad escapes).
#[derive(Debug, Clone)]
pub enum Tree {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Tree>),
    Obj(Vec<(String, Tree)>),
    Raw(String),
}

/// Members of a frame, in order.
pub type Frame = Vec<(String, Tree)>;

fn s(v: &str) -> Tree {
    Tree::Str(v.to_owned())
}

pub fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        "-?[1-9][0-9]{19,45}",
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
        prop::sample::select(vec!["0", "-0", "1.0", "1.50", "1e400", "-1E-400", "0.5e+3", "123456789012345678901"])
            .prop_map(str::to_owned),
    ]
}

/// Text of every kind: ASCII, any Unicode, characters that need escaping.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z]{0,8}",
        2 => any::<String>(),
        1 => prop::sample::select(vec!["", "é", "\u{0}", "\"", "\\", "/", "😀", "\u{2028}", "\u{7f}", "\u{ffff}", "a\nb", "k at line 1"])
            .prop_map(str::to_owned),
        1 => (1usize..300).prop_map(|n| "x".repeat(n)),
    ]
}

/// Unpaired surrogates and other escapes that are not Unicode text.
fn bad_string() -> impl Strategy<Value = Tree> {
    prop::sample::select(vec![r#""\ud800""#, r#""x\udc00""#, r#""\ud83d\u0041""#, r#""\ud83d""#, r#""\uDBFF\uDFFF""#])
        .prop_map(|t| Tree::Raw(t.to_owned()))
}

/// Arrays nested `depth` levels around `1`.
pub fn nested(depth: usize) -> Tree {
    Tree::Raw("[".repeat(depth) + "1" + &"]".repeat(depth))
}

/// Any JSON value (objects may repeat keys: payloads are free-form).
pub fn value() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        Just(Tree::Null),
        any::<bool>().prop_map(Tree::Bool),
        number().prop_map(Tree::Num),
        text().prop_map(Tree::Str),
    ];
    let leaf = prop_oneof![80 => leaf, 1 => bad_string(), 1 => (55usize..70).prop_map(nested)];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![vec(inner.clone(), 0..6).prop_map(Tree::Arr), vec((key(), inner), 0..6).prop_map(Tree::Obj),]
    })
}

/// Keys that collide often.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-c]", 1 => text()]
}

pub fn name() -> impl Strategy<Value = String> {
    prop_oneof![6 => "[a-z_][a-z0-9]{0,6}", 1 => "[A-Za-z0-9_.-]{1,64}"]
}

fn request_id() -> impl Strategy<Value = String> {
    prop_oneof![4 => "[a-z0-9]{1,8}", 1 => "\\PC{1,128}"]
}

/// Metadata: valid (up to 16 short strings), or at the edges of its limits.
fn metadata() -> impl Strategy<Value = Tree> {
    let entries = |n| vec(("[a-z]{1,6}", text().prop_map(Tree::Str)), 0..n).prop_map(Tree::Obj);
    prop_oneof![
        4 => entries(5),
        1 => entries(18),
        1 => (4000usize..4200).prop_map(|n| Tree::Obj(vec![("k".into(), Tree::Str("v".repeat(n - 1)))])),
        1 => Just(Tree::Obj(vec![("traceparent".into(), s("00-1-2-01")), ("traceparent".into(), s("x"))])),
        1 => vec(("[a-z]{1,3}", value()), 1..4).prop_map(Tree::Obj),
    ]
}

fn member(k: &str, v: Tree) -> (String, Tree) {
    (k.to_owned(), v)
}

/// Optional members: `id`, `version`, `metadata`.
fn common() -> impl Strategy<Value = Frame> {
    let version = prop::sample::select(vec!["1", "1.0", "1.7", "1.10", "1.0000000000"]);
    (prop::option::of(request_id()), prop::option::of(version), prop::option::of(metadata())).prop_map(
        |(id, version, metadata)| {
            let mut out = Vec::new();
            out.extend(id.map(|id| member("id", Tree::Str(id))));
            out.extend(version.map(|v| member("version", s(v))));
            out.extend(metadata.map(|m| member("metadata", m)));
            out
        },
    )
}

/// The address and payload of an event (also the HTTP publish body).
pub fn publish_body() -> impl Strategy<Value = Frame> {
    let key = prop::option::of(prop_oneof!["[a-z0-9]{1,8}", "\\PC{1,128}"]);
    (name(), name(), value(), key, prop::option::of(metadata())).prop_map(|(room, channel, payload, key, meta)| {
        let mut out = vec![member("room", Tree::Str(room)), member("channel", Tree::Str(channel))];
        out.push(member("payload", payload));
        out.extend(key.map(|k| member("idempotency_key", Tree::Str(k))));
        out.extend(meta.map(|m| member("metadata", m)));
        out
    })
}

fn event() -> impl Strategy<Value = Frame> {
    (common(), publish_body()).prop_map(|(mut c, body)| {
        c.retain(|(k, _)| k != "metadata");
        c.push(member("type", s("event")));
        c.extend(body);
        c
    })
}

fn private() -> impl Strategy<Value = Frame> {
    let to = (prop::sample::select(vec!["client", "user"]), "[a-z0-9_]{1,40}")
        .prop_map(|(k, v)| Tree::Obj(vec![member(k, Tree::Str(v))]));
    (common(), to, value()).prop_map(|(mut c, to, payload)| {
        c.extend([member("type", s("private")), member("to", to), member("payload", payload)]);
        c
    })
}

fn command() -> impl Strategy<Value = Frame> {
    let since = (number(), text())
        .prop_map(|(o, e)| Tree::Obj(vec![member("offset", Tree::Num(o)), member("epoch", Tree::Str(e))]));
    let arg = prop_oneof![name().prop_map(Tree::Str), since, value()];
    let args = vec((prop_oneof!["room", "channel", "since", "limit", "[a-z]{1,5}"], arg), 0..5).prop_map(Tree::Obj);
    let cmd = prop_oneof![prop::sample::select(vec!["ping", "subscribe", "history"]).prop_map(str::to_owned), text()];
    (common(), request_id(), cmd, prop::option::of(args)).prop_map(|(mut c, id, cmd, args)| {
        c.retain(|(k, _)| k != "id");
        c.extend([member("type", s("command")), member("id", Tree::Str(id)), member("command", Tree::Str(cmd))]);
        c.extend(args.map(|a| member("args", a)));
        c
    })
}

/// Field names that matter: every envelope field, server-only ones, near misses.
fn field_name() -> impl Strategy<Value = String> {
    let known = vec![
        "version",
        "type",
        "id",
        "room",
        "channel",
        "payload",
        "metadata",
        "idempotency_key",
        "to",
        "command",
        "args",
        "from",
        "user",
        "timestamp",
        "offset",
        "request_id",
        "event",
        "result",
        "error",
        "",
        "Type",
        "id ",
        "payload\u{0}",
    ];
    prop_oneof![4 => prop::sample::select(known).prop_map(str::to_owned), 1 => text()]
}

/// One change to a valid frame.
#[derive(Debug, Clone)]
pub enum Mutation {
    Drop(Index),
    Duplicate(Index, Index, Option<Tree>),
    Retype(Index, Tree),
    Rename(Index, String),
    Insert(Index, String, Tree),
    Nest(Index, bool),
    Huge(Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let huge = prop::sample::select(vec![65usize, 129, 257, 5000]);
    prop_oneof![
        any::<Index>().prop_map(Mutation::Drop),
        (any::<Index>(), any::<Index>(), prop::option::of(value())).prop_map(|(a, b, v)| Mutation::Duplicate(a, b, v)),
        (any::<Index>(), value()).prop_map(|(i, v)| Mutation::Retype(i, v)),
        (any::<Index>(), field_name()).prop_map(|(i, k)| Mutation::Rename(i, k)),
        (any::<Index>(), field_name(), value()).prop_map(|(i, k, v)| Mutation::Insert(i, k, v)),
        (any::<Index>(), any::<bool>()).prop_map(|(i, obj)| Mutation::Nest(i, obj)),
        (any::<Index>(), huge).prop_map(|(i, n)| Mutation::Huge(i, n)),
    ]
}

fn apply(frame: &mut Frame, m: Mutation) {
    if frame.is_empty() {
        return;
    }
    let at = |i: &Index, f: &Frame| i.index(f.len());
    match m {
        Mutation::Drop(i) => {
            frame.remove(at(&i, frame));
        }
        Mutation::Duplicate(i, to, v) => {
            let (k, old) = frame[at(&i, frame)].clone();
            let pos = to.index(frame.len() + 1);
            frame.insert(pos, (k, v.unwrap_or(old)));
        }
        Mutation::Retype(i, v) => {
            let i = at(&i, frame);
            frame[i].1 = v;
        }
        Mutation::Rename(i, k) => {
            let i = at(&i, frame);
            frame[i].0 = k;
        }
        Mutation::Insert(i, k, v) => {
            let pos = i.index(frame.len() + 1);
            frame.insert(pos, (k, v));
        }
        Mutation::Nest(i, obj) => {
            let i = at(&i, frame);
            let v = frame[i].1.clone();
            frame[i].1 = if obj { Tree::Obj(vec![(frame[i].0.clone(), v)]) } else { Tree::Arr(vec![v]) };
        }
        Mutation::Huge(i, n) => {
            let i = at(&i, frame);
            frame[i].1 = Tree::Str("é".repeat(n / 2) + &"a".repeat(n % 2));
        }
    }
}

/// `base` with up to three mutations.
fn mutated(base: impl Strategy<Value = Frame>) -> impl Strategy<Value = Frame> {
    (base, vec(mutation(), 0..4)).prop_map(|(mut f, ms)| {
        for m in ms {
            apply(&mut f, m);
        }
        f
    })
}

/// A valid frame of any type, with up to three mutations.
pub fn frame() -> impl Strategy<Value = Frame> {
    mutated(prop_oneof![event(), private(), command()])
}

/// An HTTP publish body with up to three mutations.
pub fn http_body() -> impl Strategy<Value = Frame> {
    mutated(publish_body())
}

/// Writes a frame out; `noise` decides whitespace and how each character is escaped.
pub fn render(frame: &Frame, noise: &[u8]) -> String {
    let mut w = Writer { out: String::new(), noise, at: 0 };
    w.object(frame);
    w.out
}

struct Writer<'n> {
    out: String,
    noise: &'n [u8],
    at: usize,
}

impl Writer<'_> {
    fn roll(&mut self) -> u8 {
        let b = self.noise.get(self.at % self.noise.len().max(1)).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn ws(&mut self) {
        let ws = [" ", "\n", "\t", "\r\n", "  "];
        let r = self.roll();
        if r >= 200 {
            self.out.push_str(ws[usize::from(r) % ws.len()]);
        }
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            let r = self.roll();
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                c if (c as u32) < 0x20 || r >= 230 => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        let hex = if r % 2 == 0 { format!("\\u{u:04x}") } else { format!("\\u{u:04X}") };
                        self.out.push_str(&hex);
                    }
                }
                '/' if r >= 128 => self.out.push_str("\\/"),
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn object(&mut self, members: &[(String, Tree)]) {
        self.out.push('{');
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.ws();
            self.string(k);
            self.ws();
            self.out.push(':');
            self.ws();
            self.value(v);
            self.ws();
        }
        self.out.push('}');
    }

    fn value(&mut self, v: &Tree) {
        match v {
            Tree::Null => self.out.push_str("null"),
            Tree::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Tree::Num(n) | Tree::Raw(n) => self.out.push_str(n),
            Tree::Str(s) => self.string(s),
            Tree::Arr(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.ws();
                    self.value(item);
                    self.ws();
                }
                self.out.push(']');
            }
            Tree::Obj(m) => self.object(m),
        }
    }
}

/// Text made of JSON's own pieces in random order: mostly not JSON, often nearly so.
pub fn token_soup() -> impl Strategy<Value = String> {
    let tokens = vec![
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\\",
        " ",
        "\"type\"",
        "\"event\"",
        "\"id\"",
        "\"room\"",
        "\"r\"",
        "\"payload\"",
        "1",
        "-0.5e3",
        "true",
        "null",
        "\"\\u00e9\"",
        "\"\\ud800\"",
        "\\u",
        "\"a\"",
        "0x1",
        "\u{feff}",
    ];
    vec(prop::sample::select(tokens), 0..40).prop_map(|t| t.concat())
}

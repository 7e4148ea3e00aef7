//! Strict JSON reading: objects with duplicate keys are refused, nesting is bounded, and values
//! that pass through (`payload`, `metadata`) are kept as the exact text the client sent.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// Deepest nesting of a client frame (the frame object is level 1). Server frames wrap a
/// payload a few levels deeper (a history reply adds four), so this keeps every frame the
/// server sends parseable by JSON libraries with the common 128-level limit.
pub const MAX_DEPTH: usize = 64;

/// Why a text is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON at all (the message says where).
    Syntax(String),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Valid JSON, but not an object.
    NotObject,
    /// An object names the same key twice (the key).
    DuplicateKey(String),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(e) => write!(f, "not valid JSON: {e}"),
            Self::TooDeep => write!(f, "JSON nested deeper than {MAX_DEPTH} levels"),
            Self::NotObject => f.write_str("not a JSON object"),
            Self::DuplicateKey(k) => write!(f, "duplicate key {:?}", k.chars().take(64).collect::<String>()),
        }
    }
}

/// Whether `text` nests arrays and objects deeper than `max` levels (strings are skipped).
/// Linear, and independent of the parser's own recursion limit.
pub fn too_deep(text: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether a string of `text` holds a `\u` escape of a surrogate that is not one half of a pair
/// (`"\ud800"`). Such a string is not Unicode text (RFC 7493): strict JSON readers refuse it,
/// so a payload carrying one could not be read by every subscriber. Linear; other malformed
/// escapes are left to the parser.
pub fn unpaired_surrogate(text: &str) -> bool {
    if !text.contains("\\u") {
        return false;
    }
    let b = text.as_bytes();
    let unit = |at: usize| {
        let hex = b.get(at + 2..at + 6)?;
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let (mut i, mut in_string, mut high) = (0, false, false);
    while i < b.len() {
        match b[i] {
            b'\\' if in_string && b.get(i + 1) == Some(&b'u') => {
                match unit(i) {
                    Some(0xd800..=0xdbff) if !high => high = true,
                    Some(0xdc00..=0xdfff) if high => high = false,
                    _ if high => return true,
                    Some(0xdc00..=0xdfff) => return true,
                    _ => {}
                }
                i += 6;
                continue;
            }
            _ if high => return true,
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            _ => {}
        }
        i += 1;
    }
    false
}

/// The members of one JSON object, in order, their values not yet parsed.
pub struct Members<'a>(pub Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'a> Members<'a> {
    /// Parses `text` as one object (bounded depth); duplicate keys are reported by
    /// [`Members::duplicate`], not here, so the caller can still read the request id.
    pub fn parse(text: &'a str) -> Result<Self, JsonError> {
        if too_deep(text, MAX_DEPTH) {
            return Err(JsonError::TooDeep);
        }
        if unpaired_surrogate(text) {
            return Err(JsonError::Syntax("a string holds an unpaired surrogate escape (\\ud800-\\udfff)".into()));
        }
        serde_json::from_str::<Members<'a>>(text).map_err(|e| {
            if e.is_data() {
                JsonError::NotObject
            } else if e.to_string().contains("recursion limit") {
                JsonError::TooDeep
            } else {
                JsonError::Syntax(e.to_string())
            }
        })
    }

    /// The first key named twice, if any.
    pub fn duplicate(&self) -> Option<&str> {
        let mut seen = HashSet::with_capacity(self.0.len());
        self.0.iter().map(|(k, _)| k.as_str()).find(|k| !seen.insert(*k))
    }

    /// The raw value of `key` (keys are unique once [`Members::duplicate`] found none).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

/// A JSON value read like `serde_json::Value`, except that an object with a duplicate key, at
/// any depth, is an error.
pub struct StrictValue(pub Value);

const DUPLICATE: &str = "arqonbus: duplicate key";

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some((k, StrictValue(v))) = map.next_entry::<String, StrictValue>()? {
            if out.contains_key(&k) {
                // The key as a JSON string, so that `strict` can read it back exactly.
                return Err(de::Error::custom(format_args!("{DUPLICATE} {}", Value::String(k))));
            }
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parses one raw value strictly (no duplicate keys at any depth).
pub fn strict(raw: &RawValue) -> Result<Value, JsonError> {
    serde_json::from_str::<StrictValue>(raw.get()).map(|v| v.0).map_err(|e| {
        let msg = e.to_string();
        match msg.strip_prefix(DUPLICATE) {
            Some(rest) => {
                let key = rest.trim().rsplit_once(" at line").map_or(rest, |(key, _)| key).trim();
                JsonError::DuplicateKey(serde_json::from_str::<String>(key).unwrap_or_else(|_| key.to_owned()))
            }
            None => JsonError::Syntax(msg),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_scan_skips_strings() {
        assert!(!too_deep(r#"{"a":"[[[[[[[["}"#, 2));
        assert!(!too_deep(r#"{"a":"\"[[[["}"#, 2));
        assert!(too_deep(r#"{"a":[[1]]}"#, 2));
        assert!(!too_deep(r#"{"a":[1],"b":[2]}"#, 2));
    }

    #[test]
    fn unpaired_surrogate_escapes_are_found() {
        for bad in [r#""\ud800""#, r#""x\udc00""#, r#""\ud83d\u0041""#, r#""\ud83d\n""#, r#"{"\uDBFF":1}"#] {
            assert!(unpaired_surrogate(bad), "{bad}");
        }
        for ok in [r#""\ud83d\ude00""#, r#""\\ud800""#, r#""\u00e9\uDBFF\uDFFF""#, r#"{"a":"b"}"#, r#"\ud800"#] {
            assert!(!unpaired_surrogate(ok), "{ok}");
        }
    }

    #[test]
    fn members_keep_raw_text_and_find_duplicates() {
        let text = r#"{"a": 1.0 ,"b":{"z":1,"y":2},"a":3}"#;
        let m = Members::parse(text).unwrap();
        assert_eq!(m.duplicate(), Some("a"));
        assert_eq!(m.get("b").unwrap().get(), r#"{"z":1,"y":2}"#);
        assert_eq!(m.get("a").unwrap().get(), "1.0");
        assert_eq!(Members::parse("[1]").err(), Some(JsonError::NotObject));
        assert_eq!(Members::parse("\"x\"").err(), Some(JsonError::NotObject));
        assert!(matches!(Members::parse("{nope"), Err(JsonError::Syntax(_))));
    }

    #[test]
    fn strict_values_refuse_nested_duplicates() {
        let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
        assert_eq!(strict(&raw(r#"{"a":{"b":1,"b":2}}"#)), Err(JsonError::DuplicateKey("b".into())));
        assert_eq!(strict(&raw(r#"[{"x\"y":1,"x\"y":2}]"#)), Err(JsonError::DuplicateKey("x\"y".into())));
        assert_eq!(strict(&raw(r#"{"a":[1,{"b":null}]}"#)).unwrap()["a"][1]["b"], Value::Null);
        // Found by tests/fuzz_envelope.rs: keys that Rust and JSON escape differently.
        for key in ["\u{2028}", "k at line 1", "\u{0}"] {
            let text = format!("[{{{k}:null,{k}:null}}]", k = Value::from(key));
            assert_eq!(strict(&raw(&text)), Err(JsonError::DuplicateKey(key.into())), "{text}");
        }
    }
}

//! Cheap, allocation-free scanning of the server's JSON frames.
//!
//! The bench shares its CPU with the server, so it does not build a JSON tree for every
//! delivered event. Instead it walks the *top level* of an object once, skipping nested
//! values by tracking strings (with escapes) and bracket depth, and hands back the raw text
//! of the fields it wants. A key that merely appears inside a string or a nested object
//! (say a payload containing `"offset":`) is therefore never mistaken for the real one.
//!
//! Keys are compared as written (no unescaping): the server writes plain ASCII keys.

/// The fields of one server frame that the bench looks at, as raw JSON text.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// `type`, unquoted (`event`, `reply`, `error`, `system`, …); empty when absent.
    pub kind: &'a str,
    /// `offset` of a delivered channel event.
    pub offset: Option<u64>,
    /// `payload`, raw JSON.
    pub payload: Option<&'a str>,
    /// `request_id`, unquoted (None when absent or null).
    pub request_id: Option<&'a str>,
    /// `error` object, raw JSON.
    pub error: Option<&'a str>,
    /// `result`, raw JSON.
    pub result: Option<&'a str>,
    /// `event` of a system frame, unquoted.
    pub event: Option<&'a str>,
}

impl<'a> Frame<'a> {
    /// The `code` of an `error` frame, if any.
    pub fn error_code(&self) -> Option<&'a str> {
        self.error.and_then(|e| get(e, "code")).and_then(str_value)
    }

    /// The publish timestamp `payload.t` (unix ns) of a bench event.
    pub fn payload_t(&self) -> Option<u64> {
        self.payload.and_then(|p| get(p, "t")).and_then(int_value)
    }

    /// `result.offset` of a reply: `Some(None)` when it is null, `None` when missing.
    pub fn result_offset(&self) -> Option<Option<u64>> {
        let raw = self.result.and_then(|r| get(r, "offset"))?;
        Some(int_value(raw))
    }
}

/// Scans the top level of one frame. Unknown or malformed input yields empty fields.
pub fn parse_frame(text: &str) -> Frame<'_> {
    let mut f = Frame::default();
    for (key, value) in fields(text) {
        match key {
            "type" => f.kind = str_value(value).unwrap_or(""),
            "offset" => f.offset = int_value(value),
            "payload" => f.payload = Some(value),
            "request_id" => f.request_id = str_value(value),
            "error" => f.error = Some(value),
            "result" => f.result = Some(value),
            "event" => f.event = str_value(value),
            _ => {}
        }
        // A delivered event has all it needs once these are known: skip the rest.
        if f.kind == "event" && f.offset.is_some() && f.payload.is_some() {
            break;
        }
    }
    f
}

/// The raw value of top-level field `key` of the JSON object `obj`.
pub fn get<'a>(obj: &'a str, key: &str) -> Option<&'a str> {
    fields(obj).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// The contents of a JSON string value, without quotes and without unescaping.
pub fn str_value(raw: &str) -> Option<&str> {
    raw.strip_prefix('"')?.strip_suffix('"')
}

/// A non-negative JSON integer; None for null, negatives, fractions or anything else.
pub fn int_value(raw: &str) -> Option<u64> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// Iterates over the top-level `(key, raw value)` pairs of a JSON object.
pub fn fields(obj: &str) -> Fields<'_> {
    let b = obj.as_bytes();
    let start = skip_ws(b, 0);
    let ok = b.get(start) == Some(&b'{');
    Fields { text: obj, pos: start + 1, done: !ok }
}

/// Iterator returned by [`fields`]; stops at the end of the object or at malformed input.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    text: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.step();
        if item.is_none() {
            self.done = true;
        }
        item
    }
}

impl<'a> Fields<'a> {
    fn step(&mut self) -> Option<(&'a str, &'a str)> {
        let b = self.text.as_bytes();
        let mut i = skip_ws(b, self.pos);
        if *b.get(i)? == b',' {
            i = skip_ws(b, i + 1);
        }
        if *b.get(i)? != b'"' {
            return None; // '}' (end) or malformed
        }
        let key_end = skip_string(b, i)?;
        let key = self.text.get(i + 1..key_end - 1)?;
        i = skip_ws(b, key_end);
        if *b.get(i)? != b':' {
            return None;
        }
        i = skip_ws(b, i + 1);
        let value_end = skip_value(b, i)?;
        let value = self.text.get(i..value_end)?;
        self.pos = value_end;
        Some((key, value))
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `b[i]` is an opening quote; returns the index just past the closing quote.
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// Returns the index just past the JSON value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"version":"1.0","type":"event","id":"arq_0190","room":"bench","channel":"c3","offset":42,"from":"cl_1","user":null,"timestamp":"2025-01-01T00:00:00.000Z","payload":{"t":1700000000123456789,"seq":7,"pad":"xx"},"metadata":{}}"#;

    #[test]
    fn event_offset_and_timestamp() {
        let f = parse_frame(EVENT);
        assert_eq!(f.kind, "event");
        assert_eq!(f.offset, Some(42));
        assert_eq!(f.payload_t(), Some(1_700_000_000_123_456_789));
    }

    #[test]
    fn keys_inside_strings_and_nested_objects_are_ignored() {
        let text = r#"{"payload":{"offset":5,"note":"\"offset\":9 \\","t":3},"type":"event","offset":11}"#;
        let f = parse_frame(text);
        assert_eq!(f.offset, Some(11));
        assert_eq!(f.payload_t(), Some(3));
        // Key order does not matter, nor does whitespace.
        let f = parse_frame(" { \"offset\" : 8 , \"type\" : \"event\", \"payload\": [1,{\"t\":2}] } ");
        assert_eq!(f.offset, Some(8));
        assert_eq!(f.kind, "event");
        assert_eq!(f.payload_t(), None);
    }

    #[test]
    fn error_codes_and_request_ids() {
        let text = r#"{"version":"1.0","type":"error","request_id":null,"error":{"message":"slow \"down\"","code":"RATE_LIMITED","retry_after_ms":20}}"#;
        let f = parse_frame(text);
        assert_eq!(f.kind, "error");
        assert_eq!(f.request_id, None);
        assert_eq!(f.error_code(), Some("RATE_LIMITED"));
        let f = parse_frame(r#"{"type":"error","request_id":"s1","error":{"code":"FORBIDDEN"}}"#);
        assert_eq!(f.request_id, Some("s1"));
        assert_eq!(f.error_code(), Some("FORBIDDEN"));
    }

    #[test]
    fn reply_offsets_latest_or_null() {
        let f = parse_frame(
            r#"{"type":"reply","request_id":"s1","result":{"room":"bench","channel":"c0","epoch":"e1","offset":17,"recovered":null,"replayed":0}}"#,
        );
        assert_eq!(f.result_offset(), Some(Some(17)));
        let f = parse_frame(r#"{"type":"reply","request_id":"s1","result":{"offset":null}}"#);
        assert_eq!(f.result_offset(), Some(None));
        let f = parse_frame(r#"{"type":"reply","request_id":"p1","result":{}}"#);
        assert_eq!(f.result_offset(), None);
    }

    #[test]
    fn welcome_limits_are_reachable() {
        let text = r#"{"version":"1.0","type":"system","event":"welcome","payload":{"client_id":"c","user":null,"limits":{"max_frame_bytes":65536,"publish_rate_per_s":50}}}"#;
        let f = parse_frame(text);
        assert_eq!(f.event, Some("welcome"));
        let rate =
            f.payload.and_then(|p| get(p, "limits")).and_then(|l| get(l, "publish_rate_per_s")).and_then(int_value);
        assert_eq!(rate, Some(50));
    }

    #[test]
    fn malformed_input_never_panics() {
        for text in [
            "",
            "{",
            "}",
            "[1,2]",
            "null",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":\"x",
            "{\"a\":{\"b\":1",
            "{\"offset\":-3}",
            "{\"offset\":1.5}",
            "{\"offset\":\"4\"}",
            "{\"é\":\"\\é\",\"offset\":2}",
            "{\"a\":1 \"offset\":2}",
            "{\"a\":\\",
            "{,}",
        ] {
            let f = parse_frame(text);
            assert!(f.offset.is_none() || text.ends_with("2}"), "{text}");
        }
        assert_eq!(parse_frame("{\"é\":\"\\é\",\"offset\":2}").offset, Some(2));
        assert_eq!(int_value("18446744073709551616"), None);
        assert_eq!(str_value("\""), None);
    }
}

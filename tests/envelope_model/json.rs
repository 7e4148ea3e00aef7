//! A reference JSON reader for the property tests, written from RFC 8259 and independent of
//! serde_json: it says whether a text is JSON, how deep it nests, and where each value sits in
//! the text, so that what the server kept can be compared byte for byte with what was sent.
//!
//! Strings must be valid Unicode (RFC 7493, I-JSON): an unpaired surrogate escape such as
//! `"\ud800"` makes the text invalid, wherever it is.

use std::ops::Range;

/// A parsed value and the bytes of the text it came from.
#[derive(Debug, Clone)]
pub struct Node {
    pub value: J,
    pub span: Range<usize>,
}

/// A JSON value; numbers keep their literal text, objects their members in order (duplicates
/// included).
#[derive(Debug, Clone)]
pub enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Node>),
    Obj(Vec<(String, Node)>),
}

/// Why a text is not acceptable JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    Syntax,
    TooDeep,
}

/// Parses a whole JSON text whose containers nest at most `max_depth` levels.
pub fn parse(text: &str, max_depth: usize) -> Result<Node, Bad> {
    let mut p = Parser { b: text.as_bytes(), i: 0, max_depth };
    p.ws();
    let node = p.value(1)?;
    p.ws();
    if p.i == p.b.len() {
        Ok(node)
    } else {
        Err(Bad::Syntax)
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    max_depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), Bad> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Bad::Syntax)
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, Bad> {
        let start = self.i;
        let value = match self.peek().ok_or(Bad::Syntax)? {
            b'{' | b'[' if depth > self.max_depth => return Err(Bad::TooDeep),
            b'{' => self.object(depth)?,
            b'[' => self.array(depth)?,
            b'"' => J::Str(self.string()?),
            b't' => self.word("true", J::Bool(true))?,
            b'f' => self.word("false", J::Bool(false))?,
            b'n' => self.word("null", J::Null)?,
            _ => J::Num(self.number()?),
        };
        Ok(Node { value, span: start..self.i })
    }

    fn word(&mut self, w: &str, v: J) -> Result<J, Bad> {
        if self.b[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            Err(Bad::Syntax)
        }
    }

    fn object(&mut self, depth: usize) -> Result<J, Bad> {
        self.eat(b'{')?;
        self.ws();
        let mut members = Vec::new();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(J::Obj(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(Bad::Syntax);
            }
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            members.push((key, self.value(depth + 1)?));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(J::Obj(members));
                }
                _ => return Err(Bad::Syntax),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<J, Bad> {
        self.eat(b'[')?;
        self.ws();
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(J::Arr(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth + 1)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(J::Arr(items));
                }
                _ => return Err(Bad::Syntax),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, Bad> {
        let digits = self.b.get(self.i..self.i + 4).ok_or(Bad::Syntax)?;
        let text = std::str::from_utf8(digits).map_err(|_| Bad::Syntax)?;
        if !text.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(Bad::Syntax);
        }
        self.i += 4;
        u32::from_str_radix(text, 16).map_err(|_| Bad::Syntax)
    }

    fn string(&mut self) -> Result<String, Bad> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or(Bad::Syntax)?;
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(out);
                }
                0..=0x1f => return Err(Bad::Syntax),
                b'\\' => {
                    self.i += 1;
                    let e = self.peek().ok_or(Bad::Syntax)?;
                    self.i += 1;
                    out.push(match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(Bad::Syntax),
                    });
                }
                _ => {
                    // The text is a &str: copy one whole UTF-8 character.
                    let len = match c {
                        0x00..=0x7f => 1,
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        _ => 4,
                    };
                    let ch = std::str::from_utf8(&self.b[self.i..self.i + len]).map_err(|_| Bad::Syntax)?;
                    out.push_str(ch);
                    self.i += len;
                }
            }
        }
    }

    /// The character of a `\uXXXX` escape (the `\u` already read); a surrogate pair is two
    /// escapes, and a surrogate without its other half is refused.
    fn unicode_escape(&mut self) -> Result<char, Bad> {
        let hi = self.hex4()?;
        let code = match hi {
            0xd800..=0xdbff => {
                if !self.b[self.i..].starts_with(b"\\u") {
                    return Err(Bad::Syntax);
                }
                self.i += 2;
                let lo = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&lo) {
                    return Err(Bad::Syntax);
                }
                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(Bad::Syntax),
            c => c,
        };
        char::from_u32(code).ok_or(Bad::Syntax)
    }

    fn number(&mut self) -> Result<String, Bad> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Bad::Syntax),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Ok(String::from_utf8_lossy(&self.b[start..self.i]).into_owned())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), Bad> {
        let start = self.i;
        self.digits();
        if self.i == start {
            Err(Bad::Syntax)
        } else {
            Ok(())
        }
    }
}

impl Node {
    /// The members of an object, if it is one.
    pub fn members(&self) -> Option<&[(String, Node)]> {
        match &self.value {
            J::Obj(m) => Some(m),
            _ => None,
        }
    }

    /// The string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            J::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether some object at any depth names a key twice.
    pub fn has_duplicate_key(&self) -> bool {
        !self.duplicate_keys().is_empty()
    }

    /// The keys that some object, at any depth, names twice.
    pub fn duplicate_keys(&self) -> Vec<&str> {
        match &self.value {
            J::Obj(m) => {
                let mut seen = std::collections::HashSet::new();
                let twice = m.iter().filter(|(k, _)| !seen.insert(k.as_str())).map(|(k, _)| k.as_str());
                twice.chain(m.iter().flat_map(|(_, v)| v.duplicate_keys())).collect()
            }
            J::Arr(items) => items.iter().flat_map(Node::duplicate_keys).collect(),
            _ => Vec::new(),
        }
    }

    /// Whether every number fits an `f64` (a literal such as `1e400` does not).
    pub fn numbers_fit_f64(&self) -> bool {
        match &self.value {
            J::Num(n) => n.parse::<f64>().is_ok_and(f64::is_finite),
            J::Arr(items) => items.iter().all(Node::numbers_fit_f64),
            J::Obj(m) => m.iter().all(|(_, v)| v.numbers_fit_f64()),
            _ => true,
        }
    }

    /// The value as a `serde_json::Value` (objects without duplicates, numbers that fit).
    pub fn to_value(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Num(n) => serde_json::from_str(n).unwrap_or(Value::Null),
            J::Str(s) => Value::String(s.clone()),
            J::Arr(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            J::Obj(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_value())).collect()),
        }
    }
}

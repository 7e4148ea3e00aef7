//! Strict command arguments: typed getters that name the arg in errors, and a final check
//! that refuses any arg the command does not know.

use serde_json::{Map, Value};

use crate::protocol::{ChannelKey, ErrorBody};

/// A command's `args` being consumed.
pub struct Args(Map<String, Value>);

impl Args {
    /// Wraps the args object.
    pub fn new(m: Map<String, Value>) -> Self {
        Self(m)
    }

    /// Required `room` and `channel`.
    pub fn key(&mut self) -> Result<ChannelKey, ErrorBody> {
        let room = self.name("room")?;
        let channel = self.name("channel")?;
        Ok(ChannelKey::new(&room, &channel))
    }

    /// A required room or channel name.
    pub fn name(&mut self, field: &'static str) -> Result<String, ErrorBody> {
        crate::protocol::take_name(&mut self.0, field)
    }

    /// An optional boolean.
    pub fn opt_bool(&mut self, field: &str) -> Result<Option<bool>, ErrorBody> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => Err(ErrorBody::field(field, format!("{field} must be a boolean"))),
        }
    }

    /// An optional non-negative integer within `min..=max`.
    pub fn opt_u64(&mut self, field: &str, min: u64, max: u64) -> Result<Option<u64>, ErrorBody> {
        let v = self.0.remove(field);
        uint(v, field, min, max)
    }

    /// An optional string of at most `max` characters.
    pub fn opt_str(&mut self, field: &str, max: usize) -> Result<Option<String>, ErrorBody> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s)),
            Some(_) => Err(ErrorBody::field(field, format!("{field} must be a string of at most {max} characters"))),
        }
    }

    /// An optional object, returned raw.
    pub fn opt_object(&mut self, field: &str) -> Result<Option<Map<String, Value>>, ErrorBody> {
        match self.0.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(ErrorBody::field(field, format!("{field} must be an object"))),
        }
    }

    /// `cursor` (a name from a previous page's `next_cursor`) and `limit` (1–1000, default 100).
    pub fn page(&mut self) -> Result<crate::backplane::Page, ErrorBody> {
        let after = self.opt_str("cursor", 128)?;
        let limit = self.opt_u64("limit", 1, 1000)?.unwrap_or(100) as usize;
        Ok(crate::backplane::Page { after, limit })
    }

    /// Refuses any arg left over.
    pub fn finish(self) -> Result<(), ErrorBody> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(k) => {
                let name: String = k.chars().take(64).collect();
                Err(ErrorBody::field(name.clone(), format!("unknown argument {name:?}")))
            }
        }
    }
}

/// An optional integer in `min..=max`; `field` names it in the error.
pub fn uint(v: Option<Value>, field: &str, min: u64, max: u64) -> Result<Option<u64>, ErrorBody> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(x) if (min..=max).contains(&x) => Ok(Some(x)),
            _ => Err(ErrorBody::field(field, format!("{field} must be an integer from {min} to {max}"))),
        },
        Some(_) => Err(ErrorBody::field(field, format!("{field} must be an integer"))),
    }
}

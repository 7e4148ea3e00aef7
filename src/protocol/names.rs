//! Room and channel names and the `room:channel` key.

use std::fmt;
use std::sync::Arc;

/// Checks a room or channel name: 1–64 characters of `A–Z a–z 0–9 _ - .`.
pub fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.len() > 64 {
        return Err("must be at most 64 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return Err("may only contain A-Z a-z 0-9 _ - .");
    }
    Ok(())
}

/// A validated `room:channel` address. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelKey(Arc<str>, u8);

impl ChannelKey {
    /// Builds a key from names that already passed [`validate_name`].
    pub fn new(room: &str, channel: &str) -> Self {
        let text = format!("{room}:{channel}");
        Self(text.into(), room.len() as u8)
    }

    /// Validates both names; the error names the offending field.
    pub fn parse(room: &str, channel: &str) -> Result<Self, (&'static str, &'static str)> {
        validate_name(room).map_err(|e| ("room", e))?;
        validate_name(channel).map_err(|e| ("channel", e))?;
        Ok(Self::new(room, channel))
    }

    /// The room name.
    pub fn room(&self) -> &str {
        &self.0[..self.1 as usize]
    }

    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.0[self.1 as usize + 1..]
    }

    /// The `room:channel` text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the room is reserved for the server (begins with `_`).
    pub fn is_reserved(&self) -> bool {
        self.room().starts_with('_')
    }
}

impl fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelKey({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert!(validate_name("science").is_ok());
        assert!(validate_name("a-b_c.d9").is_ok());
        assert!(validate_name(&"x".repeat(64)).is_ok());
        assert!(validate_name(&"x".repeat(65)).is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("a:b").is_err());
        assert!(validate_name("é").is_err());
    }

    #[test]
    fn key_splits_back() {
        let k = ChannelKey::new("_sys", "activity");
        assert_eq!(k.room(), "_sys");
        assert_eq!(k.channel(), "activity");
        assert_eq!(k.as_str(), "_sys:activity");
        assert!(k.is_reserved());
    }
}

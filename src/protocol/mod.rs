//! Protocol v1: the wire contract as types.
//!
//! Owns the client envelope (parsing and strict validation), the server frames (serialization),
//! names, error codes and close codes. It does no I/O and imports no other layer of the crate:
//! every other layer speaks to clients through the types defined here.

mod codes;
mod envelope;
mod frames;
mod json;
mod names;

pub use codes::{close, ErrorBody, ErrorCode};
pub(crate) use envelope::take_name;
pub use envelope::{
    metadata_with, parse_client_frame, parse_http_publish, ClientFrame, CommandFrame, EventFrame, Metadata,
    PrivateFrame, Rejection, Target,
};
pub use frames::{
    error_frame, event_template, event_timestamp_ms, presence_frame, private_frame, raw, reply_frame, system_frame,
    timestamp_now, unsubscribed_frame, EventFields, EventTemplate, Frame, PROTOCOL_VERSION,
};
pub use json::{strict, JsonError, MAX_DEPTH};
pub use names::{validate_name, ChannelKey};

//! Error codes (the `error.code` of an `error` frame) and WebSocket close codes.

use serde::Serialize;

/// Every error code of protocol v1, §6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The frame is not JSON, is nested too deep, or is not an object.
    InvalidJson,
    /// A field is missing, has the wrong type or value, or is not allowed.
    ValidationError,
    /// `version` is not `1` or `1.N`.
    UnsupportedVersion,
    /// `type` names no client frame type.
    UnknownType,
    /// `command` names no command.
    UnknownCommand,
    /// Missing or invalid credentials.
    Unauthorized,
    /// The credentials do not allow this.
    Forbidden,
    /// The channel does not exist.
    NotFound,
    /// `create_channel` on a channel that exists.
    ChannelExists,
    /// `subscribe` on a channel this connection already subscribes to.
    AlreadySubscribed,
    /// `unsubscribe` on a channel this connection does not subscribe to.
    NotSubscribed,
    /// A private message found no connected target.
    NotConnected,
    /// The publish token bucket is empty.
    RateLimited,
    /// A configured limit (subscriptions, sizes) would be exceeded.
    LimitExceeded,
    /// The backplane cannot be reached; nothing was stored; retry later.
    Unavailable,
    /// No answer from the backplane within the deadline after the request was sent: the outcome
    /// is unknown (a publish may have been stored). Retry with the same `idempotency_key`.
    Timeout,
    /// A bug or an unexpected failure on the server.
    Internal,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 17] = [
        Self::InvalidJson,
        Self::ValidationError,
        Self::UnsupportedVersion,
        Self::UnknownType,
        Self::UnknownCommand,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::ChannelExists,
        Self::AlreadySubscribed,
        Self::NotSubscribed,
        Self::NotConnected,
        Self::RateLimited,
        Self::LimitExceeded,
        Self::Unavailable,
        Self::Timeout,
        Self::Internal,
    ];

    /// The code as it appears on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "INVALID_JSON",
            Self::ValidationError => "VALIDATION_ERROR",
            Self::UnsupportedVersion => "UNSUPPORTED_VERSION",
            Self::UnknownType => "UNKNOWN_TYPE",
            Self::UnknownCommand => "UNKNOWN_COMMAND",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::ChannelExists => "CHANNEL_EXISTS",
            Self::AlreadySubscribed => "ALREADY_SUBSCRIBED",
            Self::NotSubscribed => "NOT_SUBSCRIBED",
            Self::NotConnected => "NOT_CONNECTED",
            Self::RateLimited => "RATE_LIMITED",
            Self::LimitExceeded => "LIMIT_EXCEEDED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Timeout => "TIMEOUT",
            Self::Internal => "INTERNAL",
        }
    }

    /// Whether an error with this code counts as a protocol violation (§6): ten in a row close
    /// the connection with 1008. Refusals of well-formed frames do not count.
    pub fn is_violation(self) -> bool {
        matches!(
            self,
            Self::InvalidJson
                | Self::ValidationError
                | Self::UnsupportedVersion
                | Self::UnknownType
                | Self::UnknownCommand
        )
    }

    /// The HTTP status used when this error answers an HTTP request.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidJson
            | Self::ValidationError
            | Self::UnsupportedVersion
            | Self::UnknownType
            | Self::UnknownCommand => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::ChannelExists | Self::AlreadySubscribed | Self::NotSubscribed | Self::NotConnected => 409,
            Self::LimitExceeded => 413,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
            Self::Timeout => 504,
            Self::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of an error frame, also the body of HTTP errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorBody {
    /// The machine-readable code.
    pub code: ErrorCode,
    /// A human-readable explanation; never contains tokens or payloads.
    pub message: String,
    /// The offending field, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// When to retry, for RATE_LIMITED, UNAVAILABLE and TIMEOUT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorBody {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), field: None, retry_after_ms: None }
    }

    /// A VALIDATION_ERROR naming `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: Some(field.into()), ..Self::new(ErrorCode::ValidationError, message) }
    }

    /// Adds `retry_after_ms`.
    pub fn retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms.max(1));
        self
    }
}

/// WebSocket close codes used by the server (§6).
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Node shutting down (heartbeat timeout uses it too: the peer went away).
    pub const GOING_AWAY: u16 = 1001;
    /// Malformed WebSocket framing.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Binary frame.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Text frame that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Ten protocol violations in a row.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// Frame over `max_frame_bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// Unexpected server failure.
    pub const INTERNAL: u16 = 1011;
    /// Node draining: reconnect elsewhere.
    pub const SERVICE_RESTART: u16 = 1012;
    /// Credentials expired and not refreshed.
    pub const TOKEN_EXPIRED: u16 = 4001;
    /// Outbound queue full: the client is too slow and must resume with `since`.
    pub const SLOW_CONSUMER: u16 = 4008;
}

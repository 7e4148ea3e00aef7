"""Values the SDK hands to its users: delivered events, gaps, acks, pages, states."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import rawjson


class Event:
    """A channel event as delivered (live, replayed after a resume, or read back from history).

    `payload` is the parsed JSON; `raw_payload` is its exact text as received, for payloads
    whose numbers or escapes must survive byte for byte.
    """

    __slots__ = ("_frame", "_text", "_raw", "offset")

    def __init__(self, frame: dict[str, Any], text: str) -> None:
        self._frame = frame
        self._text = text
        self._raw: str | None = None
        #: Position in the channel's stream (contiguous: 1, 2, 3, …).
        self.offset: int = frame["offset"]

    @property
    def room(self) -> str:
        return str(self._frame["room"])

    @property
    def channel(self) -> str:
        return str(self._frame["channel"])

    @property
    def id(self) -> str:
        """The message id (`arq_` + UUIDv7)."""
        return str(self._frame["id"])

    @property
    def sender(self) -> str | None:
        """The publishing client's id (`from` on the wire), `"http"` for HTTP publishes."""
        value = self._frame.get("from")
        return value if isinstance(value, str) else None

    @property
    def user(self) -> str | None:
        value = self._frame.get("user")
        return value if isinstance(value, str) else None

    @property
    def timestamp(self) -> str:
        return str(self._frame.get("timestamp", ""))

    @property
    def payload(self) -> Any:
        return self._frame.get("payload")

    @property
    def metadata(self) -> dict[str, str]:
        value = self._frame.get("metadata")
        return dict(value) if isinstance(value, dict) else {}

    @property
    def raw_payload(self) -> str:
        """The exact JSON text of `payload` as the server sent it."""
        if self._raw is None:
            self._raw = rawjson.field_text(self._text, "payload") or "null"
        return self._raw

    @property
    def raw(self) -> str:
        """The whole frame's text."""
        return self._text

    def __repr__(self) -> str:
        return f"Event({self.room}:{self.channel} offset={self.offset} payload={self.raw_payload[:60]})"


@dataclass(frozen=True)
class Gap:
    """Events the subscriber can never get: an item of the subscription's stream and a state.

    reason `retention`: offsets `from_offset..to_offset` (inclusive) of `epoch` are no longer
    retained (`to_offset` None when unknown). reason `epoch_changed`: the stream was lost and
    started again as `epoch`; everything from `from_offset` on in `previous_epoch` is gone, and
    offsets restart at 1 (a `retention` gap follows when the new stream's first events are gone
    too).
    """

    room: str
    channel: str
    reason: str
    epoch: str | None
    from_offset: int
    to_offset: int | None
    previous_epoch: str | None = None


@dataclass(frozen=True)
class PresenceChange:
    """A `join` or `leave` (only on channels created with `presence_events`)."""

    room: str
    channel: str
    kind: str  # "join" | "leave"
    client_id: str
    user: str | None
    info: Any


@dataclass(frozen=True)
class Position:
    """Where a subscriber is in a channel's stream: resume from it with `subscribe(since=…)`."""

    offset: int
    epoch: str | None = None


@dataclass(frozen=True)
class Published:
    """A publish ack: the event's offset and id; `duplicate` when its idempotency key was seen."""

    offset: int
    id: str
    duplicate: bool


@dataclass(frozen=True)
class PrivateSent:
    id: str
    delivered: int


@dataclass(frozen=True)
class PrivateMessage:
    id: str
    sender: str | None
    user: str | None
    to: dict[str, str]
    timestamp: str
    payload: Any
    raw_payload: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class HistoryPage:
    events: list[Event]
    epoch: str | None
    offset: int | None
    #: More events match than were returned: continue with `since` = last offset (ascending)
    #: or `before` = first offset (newest first). False when the server does not say.
    has_more: bool


@dataclass(frozen=True)
class PresenceClient:
    client_id: str
    user: str | None
    node: str
    joined_at: str
    info: Any


@dataclass(frozen=True)
class PresencePage:
    clients: list[PresenceClient]
    count: int
    next_cursor: str | None


@dataclass(frozen=True)
class ChannelPage:
    channels: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int = 65536
    publish_rate_per_s: float = 50
    publish_burst: int = 100
    max_subscriptions: int = 256
    command_rate_per_s: float | None = None
    command_burst: int | None = None
    outbound_queue_bytes: int | None = None
    max_reply_bytes: int | None = None

    @classmethod
    def from_json(cls, value: Any) -> Limits:
        if not isinstance(value, dict):
            return cls()
        known = {k: v for k, v in value.items() if k in cls.__dataclass_fields__ and v is not None}
        return cls(**known)


@dataclass(frozen=True)
class Welcome:
    client_id: str
    user: str | None
    node: str
    protocol: str
    server: str
    heartbeat_s: int
    limits: Limits

    @classmethod
    def from_payload(cls, p: dict[str, Any]) -> Welcome:
        return cls(
            client_id=str(p.get("client_id", "")),
            user=p.get("user") if isinstance(p.get("user"), str) else None,
            node=str(p.get("node", "")),
            protocol=str(p.get("protocol", "")),
            server=str(p.get("server", "")),
            heartbeat_s=int(p.get("heartbeat_s", 25)),
            limits=Limits.from_json(p.get("limits")),
        )


@dataclass(frozen=True)
class StateChange:
    """One step of the connection's life.

    state: `connecting`, `connected`, `disconnected`, `reconnecting`, `resumed`, `gap`, `closed`.
    """

    state: str
    url: str | None = None
    welcome: Welcome | None = None
    attempt: int = 0
    delay_s: float | None = None
    close_code: int | None = None
    error: Exception | None = None
    gap: Gap | None = None
    extra: dict[str, Any] = field(default_factory=dict)

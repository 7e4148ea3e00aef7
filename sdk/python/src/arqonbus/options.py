"""Tunables of a bus, with their defaults (all documented in the README)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    #: Longest wait for the first connection in `connect()`; past it: TIMEOUT.
    connect_timeout_s: float = 30.0
    #: Longest wait for one handshake + welcome.
    open_timeout_s: float = 10.0
    #: Deadline of each command (history, presence, status, …), retries included.
    request_timeout_s: float = 15.0
    #: Deadline of each publish, from the call to its ack, reconnects and retries included.
    publish_timeout_s: float = 30.0
    #: Unacked publishes held at once (offline queue + in flight); more fail with QUEUE_FULL.
    max_pending_publishes: int = 1000
    #: "wait": pace sends with the server's token bucket and wait `retry_after_ms` on
    #: RATE_LIMITED; "raise": send at once and raise RATE_LIMITED to the caller.
    rate_limit: str = "wait"
    #: Reconnect backoff: full jitter, doubling from `reconnect_initial_s` up to `reconnect_max_s`.
    reconnect_initial_s: float = 0.25
    reconnect_max_s: float = 10.0
    #: Events buffered per subscription ahead of its consumer (then read back from history).
    queue_size: int = 10_000
    #: Events read per `history` call when filling a hole.
    fill_page: int = 1000
    #: Private messages buffered for `private_messages()`; when full the oldest is dropped.
    private_queue_size: int = 1000
    #: State changes buffered per `states()` iterator; when full the oldest is dropped.
    state_queue_size: int = 1000
    #: Largest frame accepted from the server.
    max_message_bytes: int = 64 * 1024 * 1024
    #: Client-side WebSocket pings (dead-peer detection); None turns them off.
    ping_interval_s: float | None = 20.0
    ping_timeout_s: float | None = 20.0
    close_timeout_s: float = 5.0
    #: Frames the socket reader may hold before it stops reading (back-pressure).
    max_queue: int = 64

    def check(self) -> None:
        if self.rate_limit not in ("wait", "raise"):
            raise ValueError('rate_limit must be "wait" or "raise"')
        for name in ("max_pending_publishes", "queue_size", "fill_page", "private_queue_size", "state_queue_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 1 <= self.fill_page <= 1000:
            raise ValueError("fill_page must be 1-1000 (the server's history limit)")

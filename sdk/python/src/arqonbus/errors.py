"""The one error type of the SDK, and the codes it can carry.

Server codes are passed through unchanged (protocol §6.1). A few codes are the SDK's own;
they say what happened on the client side and never collide with a server code's meaning.
"""

from __future__ import annotations

from typing import Any

#: Codes the SDK raises itself (besides passing the server's through).
CLOSED = "CLOSED"  # the bus was closed (by the user, or by a fatal handshake refusal)
CONNECTION_FAILED = "CONNECTION_FAILED"  # no welcome from a node (network error, handshake timeout)
# DISCONNECTED: a non-retryable request lost its connection before the answer, or a publish
# was never sent before its deadline (then certainly not stored)
DISCONNECTED = "DISCONNECTED"
QUEUE_FULL = "QUEUE_FULL"  # the offline publish queue is full (max_pending_publishes)
UNSUBSCRIBED = "UNSUBSCRIBED"  # the server ended a subscription (channel_deleted, permission_revoked)

#: A deadline passed; for a publish that was sent, the outcome is unknown (the server sends
#: it too when Redis did not answer in time). Retry with the same idempotency key.
TIMEOUT = "TIMEOUT"
#: Server codes after which a publish is retried with the same key (nothing stored, or unknown).
RETRYABLE_PUBLISH_CODES = frozenset({"TIMEOUT", "UNAVAILABLE", "INTERNAL"})


class ArqonBusError(Exception):
    """Every failure the SDK reports: a server `error` frame, a refused handshake, or a local one.

    `code` is stable and meant to be branched on; `message` is for humans.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str | None = None,
        retry_after_ms: int | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        #: The field or argument at fault (VALIDATION_ERROR), when the server names one.
        self.field = field
        #: How long to wait before retrying (RATE_LIMITED, UNAVAILABLE).
        self.retry_after_ms = retry_after_ms
        #: Why a subscription ended (UNSUBSCRIBED): `channel_deleted`, `permission_revoked`.
        self.reason = reason
        #: On a publish error: the key to retry with so that the event is stored at most once.
        self.idempotency_key = idempotency_key
        #: On a refused handshake: the HTTP status (401, 503, 400).
        self.status = status

    @classmethod
    def from_body(cls, body: Any, *, status: int | None = None) -> ArqonBusError:
        """Builds the error from a protocol error object `{"code","message","field"?,"retry_after_ms"?}`."""
        if not isinstance(body, dict):
            return cls("INTERNAL", f"malformed error object: {body!r}", status=status)
        retry = body.get("retry_after_ms")
        field = body.get("field")
        return cls(
            str(body.get("code", "INTERNAL")),
            str(body.get("message", "")),
            field=field if isinstance(field, str) else None,
            retry_after_ms=retry if isinstance(retry, int) else None,
            status=status,
        )

    def __repr__(self) -> str:
        return f"ArqonBusError(code={self.code!r}, message={self.message!r})"

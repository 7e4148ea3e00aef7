"""One WebSocket connection to one node: handshake, welcome, and matching answers to requests.

A Link knows nothing of subscriptions or retries; the bus drives it and replaces it after
every disconnect.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from .errors import CONNECTION_FAILED, ArqonBusError
from .types import Welcome

#: Called with the `reply`/`error` frame answering a request, or None when the link died first.
Handler = Callable[[dict[str, Any] | None, str], None]

SUBPROTOCOL = Subprotocol("arqonbus.v1")


@dataclass(frozen=True)
class LinkOptions:
    open_timeout_s: float
    max_message_bytes: int
    ping_interval_s: float | None
    ping_timeout_s: float | None
    close_timeout_s: float
    max_queue: int


class Link:
    """A live connection: its welcome, its in-flight requests, and how it ended."""

    def __init__(self, ws: ClientConnection, welcome: Welcome, url: str, generation: int) -> None:
        self.ws = ws
        self.welcome = welcome
        self.url = url
        self.generation = generation
        self.pending: dict[str, Handler] = {}
        #: Set by a `draining` frame: reconnect this long after the close.
        self.reconnect_after_ms: int | None = None
        self.drain_reason: str | None = None

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    def expect(self, request_id: str, handler: Handler) -> None:
        self.pending[request_id] = handler

    def answer(self, frame: dict[str, Any], text: str) -> None:
        rid = frame.get("request_id")
        handler = self.pending.pop(rid, None) if isinstance(rid, str) else None
        if handler is not None:
            handler(frame, text)

    def fail_all(self) -> None:
        """The link is gone: every request still waiting learns it (handler gets None)."""
        pending, self.pending = self.pending, {}
        for handler in pending.values():
            handler(None, "")

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason


def _refusal(exc: InvalidStatus, url: str) -> ArqonBusError:
    status = exc.response.status_code
    try:
        body = json.loads(exc.response.body or b"")
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return ArqonBusError.from_body(body["error"], status=status)
    code = {401: "UNAUTHORIZED", 400: "UNSUPPORTED_VERSION", 503: "UNAVAILABLE"}.get(status, "UNAVAILABLE")
    return ArqonBusError(code, f"handshake refused by {url} with HTTP {status}", status=status)


async def open_link(url: str, token: str | None, generation: int, opts: LinkOptions) -> Link:
    """Connects, offers `arqonbus.v1`, sends the token as a Bearer header, waits for `welcome`.

    Raises ArqonBusError: UNAUTHORIZED (401), UNAVAILABLE (503), UNSUPPORTED_VERSION (400),
    each with `status`; CONNECTION_FAILED when no welcome came (network error, timeout).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        ws = await connect(
            url,
            subprotocols=[SUBPROTOCOL],
            additional_headers=headers,
            compression=None,
            open_timeout=opts.open_timeout_s,
            max_size=opts.max_message_bytes,
            max_queue=opts.max_queue,
            ping_interval=opts.ping_interval_s,
            ping_timeout=opts.ping_timeout_s,
            close_timeout=opts.close_timeout_s,
            proxy=None,
        )
    except InvalidStatus as exc:
        raise _refusal(exc, url) from exc
    except (OSError, InvalidHandshake, TimeoutError, asyncio.TimeoutError) as exc:
        raise ArqonBusError(CONNECTION_FAILED, f"cannot connect to {url}: {exc!r}") from exc
    try:
        first = await asyncio.wait_for(ws.recv(), opts.open_timeout_s)
        frame = json.loads(first)
    except (ConnectionClosed, TimeoutError, asyncio.TimeoutError, ValueError) as exc:
        await ws.close()
        raise ArqonBusError(CONNECTION_FAILED, f"no welcome from {url}: {exc!r}") from exc
    if not (isinstance(frame, dict) and frame.get("type") == "system" and frame.get("event") == "welcome"):
        await ws.close()
        raise ArqonBusError(CONNECTION_FAILED, f"first frame from {url} is not a welcome")
    payload = frame.get("payload")
    return Link(ws, Welcome.from_payload(payload if isinstance(payload, dict) else {}), url, generation)

"""The user-facing bus: `connect()` and the operations of protocol v1."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Generator
from typing import Any

from . import rawjson
from .core import Core, StateCallback, TokenProvider, UrlSource
from .errors import ArqonBusError
from .feed import Feed
from .options import Options
from .subscription import Subscription
from .types import (
    ChannelPage,
    Event,
    HistoryPage,
    Position,
    PresenceClient,
    PresencePage,
    PrivateMessage,
    PrivateSent,
    Published,
    StateChange,
)

_MISSING: Any = object()

#: Upper bound of pages `presence_all` follows (1000 clients a page).
MAX_PRESENCE_PAGES = 1000


class Bus(Core):
    """A connection to ArqonBus that survives reconnects. Create it with `connect()`."""

    # ---- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __await__(self) -> Generator[Any, None, Bus]:
        return self.__aenter__().__await__()

    @property
    def client_id(self) -> str | None:
        """This connection's id (changes on every reconnect)."""
        return self.welcome.client_id if self.welcome else None

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self._closed_error is None

    @property
    def pending_publishes(self) -> int:
        return self._outbox.pending

    # ---- states -----------------------------------------------------------------------------

    def on_state(self, callback: StateCallback) -> None:
        """Calls `callback(StateChange)` on every state change (from the event loop; must not block)."""
        self._state_callbacks.append(callback)

    def states(self) -> AsyncIterator[StateChange]:
        """An async iterator of state changes from now on, ending when the bus closes."""
        feed = Feed[StateChange](self.options.state_queue_size)
        self._state_feeds.append(feed)
        return feed

    # ---- subscriptions ----------------------------------------------------------------------

    def subscribe(
        self,
        room: str,
        channel: str,
        *,
        since: Position | int | None = None,
        presence: bool = True,
        echo: bool = True,
        queue_size: int | None = None,
    ) -> Subscription:
        """Subscribes to `room:channel`; iterate the result for `Event`/`Gap`/`PresenceChange`.

        `since` (a Position, or an offset) resumes after that position: the missed events come
        first, or a `Gap` says what is lost. One subscription per channel per bus: a second one
        raises ALREADY_SUBSCRIBED without asking the server.
        """
        if isinstance(since, bool):
            raise TypeError("since must be a Position or an offset")
        position = Position(since) if isinstance(since, int) else since
        sub = Subscription(
            self,
            room,
            channel,
            position,
            presence,
            echo,
            queue_size or self.options.queue_size,
            self.options.fill_page,
        )
        self._add_subscription(sub)
        return sub

    # ---- publishing -------------------------------------------------------------------------

    async def publish(
        self,
        room: str,
        channel: str,
        payload: Any = _MISSING,
        *,
        raw_payload: str | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
    ) -> Published:
        """Publishes an event and waits for its ack (stored). Retries keep `idempotency_key`.

        Give `payload` (any JSON value) or `raw_payload` (JSON text sent exactly as given).
        """
        payload_text = _payload_text(payload, raw_payload)
        key = idempotency_key or f"py-{uuid.uuid4().hex}"
        head: dict[str, Any] = {"type": "event", "room": room, "channel": channel, "idempotency_key": key}
        if metadata:
            head["metadata"] = metadata
        if self._closed_error is not None:
            raise ArqonBusError(self._closed_error.code, self._closed_error.message, idempotency_key=key)
        item = self._outbox.submit(
            key, rawjson.dumps(head)[:-1], payload_text, room, channel, timeout_s or self.options.publish_timeout_s
        )
        result = await item.future
        return Published(int(result["offset"]), str(result["id"]), bool(result.get("duplicate", False)))

    async def send_private(
        self,
        payload: Any = _MISSING,
        *,
        client: str | None = None,
        user: str | None = None,
        raw_payload: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> PrivateSent:
        """Sends a private message to one client or every connection of a user (not stored).

        At most once: if the connection drops before the answer, DISCONNECTED is raised and
        the message is not sent again. No target connected anywhere: NOT_CONNECTED.
        """
        if (client is None) == (user is None):
            raise ValueError("give exactly one of client= or user=")
        to = {"client": client} if client is not None else {"user": user}
        frame: dict[str, Any] = {"type": "private", "to": to}
        if metadata:
            frame["metadata"] = metadata
        text = _payload_text(payload, raw_payload)
        got, _ = await self._request(frame, retry=False, publish_bucket=True, payload_text=text)
        result = got.get("result") or {}
        return PrivateSent(str(result.get("id")), int(result.get("delivered", 0)))

    def private_messages(self) -> AsyncIterator[PrivateMessage]:
        """Private messages addressed to this connection or its user (bounded; oldest dropped)."""
        return self._private

    # ---- reads ------------------------------------------------------------------------------

    async def history(
        self,
        room: str,
        channel: str,
        *,
        limit: int | None = None,
        since: int | None = None,
        before: int | None = None,
        reverse: bool = False,
    ) -> HistoryPage:
        """Retained events (protocol §4.6); `has_more` says whether to read on."""
        args: dict[str, Any] = {"room": room, "channel": channel}
        for name, value in (("limit", limit), ("since", since), ("before", before)):
            if value is not None:
                args[name] = value
        if reverse:
            args["reverse"] = True
        result, text = await self._call("history", args)
        return _history_page(result, text)

    async def _history_for_fill(self, sub: Subscription, since: int, until: int | None, limit: int) -> HistoryPage:
        """History for a subscription's hole: retried until it answers or the bus closes."""
        delay = 0.2
        while True:
            try:
                return await self.history(sub.room, sub.channel, since=since, before=until, limit=limit)
            except ArqonBusError as err:
                if err.code not in ("TIMEOUT", "UNAVAILABLE", "INTERNAL", "DISCONNECTED", "RATE_LIMITED"):
                    raise
                await asyncio.sleep(max(delay, (err.retry_after_ms or 0) / 1000.0))
                delay = min(delay * 2, 5.0)

    async def presence(self, room: str, channel: str, *, cursor: str | None = None, limit: int | None = None) -> PresencePage:
        """One page of the channel's presence; follow `next_cursor` for the rest."""
        args = _page_args({"room": room, "channel": channel}, cursor, limit)
        result, _ = await self._call("presence", args)
        result = result if isinstance(result, dict) else {}
        clients = [
            PresenceClient(
                str(c.get("client_id")),
                c.get("user") if isinstance(c.get("user"), str) else None,
                str(c.get("node", "")),
                str(c.get("joined_at", "")),
                c.get("info"),
            )
            for c in result.get("clients", [])
            if isinstance(c, dict)
        ]
        nxt = result.get("next_cursor")
        return PresencePage(clients, int(result.get("count", len(clients))), nxt if isinstance(nxt, str) else None)

    async def presence_all(self, room: str, channel: str, *, page_limit: int | None = None) -> list[PresenceClient]:
        """Every presence entry, following cursors (at most MAX_PRESENCE_PAGES pages)."""
        clients: list[PresenceClient] = []
        cursor: str | None = None
        for _ in range(MAX_PRESENCE_PAGES):
            page = await self.presence(room, channel, cursor=cursor, limit=page_limit)
            clients.extend(page.clients)
            cursor = page.next_cursor
            if cursor is None:
                return clients
        raise ArqonBusError("LIMIT_EXCEEDED", f"presence of {room}:{channel} has more than {MAX_PRESENCE_PAGES} pages")

    async def status(self) -> dict[str, Any]:
        result, _ = await self._call("status")
        return dict(result) if isinstance(result, dict) else {}

    async def ping(self) -> dict[str, Any]:
        result, _ = await self._call("ping")
        return dict(result) if isinstance(result, dict) else {}

    async def channel_info(self, room: str, channel: str) -> dict[str, Any]:
        result, _ = await self._call("channel_info", {"room": room, "channel": channel})
        return dict(result) if isinstance(result, dict) else {}

    async def list_channels(self, room: str, *, cursor: str | None = None, limit: int | None = None) -> ChannelPage:
        args = _page_args({"room": room}, cursor, limit)
        result, _ = await self._call("list_channels", args)
        result = result if isinstance(result, dict) else {}
        nxt = result.get("next_cursor")
        channels = [dict(c) for c in result.get("channels", []) if isinstance(c, dict)]
        return ChannelPage(channels, nxt if isinstance(nxt, str) else None)

    # ---- administration (admin permission) --------------------------------------------------

    async def create_channel(
        self,
        room: str,
        channel: str,
        *,
        description: str | None = None,
        history_size: int | None = None,
        history_ttl_s: int | None = None,
        presence_events: bool | None = None,
    ) -> dict[str, Any]:
        """Declares a channel. Not retried after a lost connection (DISCONNECTED): check `channel_info`."""
        args: dict[str, Any] = {"room": room, "channel": channel}
        for name, value in (
            ("description", description),
            ("history_size", history_size),
            ("history_ttl_s", history_ttl_s),
            ("presence_events", presence_events),
        ):
            if value is not None:
                args[name] = value
        result, _ = await self._call("create_channel", args, retry=False)
        return dict(result) if isinstance(result, dict) else {}

    async def delete_channel(self, room: str, channel: str) -> None:
        await self._call("delete_channel", {"room": room, "channel": channel}, retry=False)

    async def command(self, name: str, args: dict[str, Any] | None = None, *, retry: bool = False) -> Any:
        """Any command by name, for what this API does not wrap; returns its `result`."""
        result, _ = await self._call(name, args, retry=retry)
        return result


def _page_args(args: dict[str, Any], cursor: str | None, limit: int | None) -> dict[str, Any]:
    """Adds the paging arguments of `presence` and `list_channels` when given."""
    if cursor is not None:
        args["cursor"] = cursor
    if limit is not None:
        args["limit"] = limit
    return args


def _payload_text(payload: Any, raw_payload: str | None) -> str:
    if raw_payload is not None:
        if payload is not _MISSING:
            raise ValueError("give payload or raw_payload, not both")
        return rawjson.check_raw(raw_payload)
    if payload is _MISSING:
        raise ValueError("a payload is required (None publishes JSON null)")
    return rawjson.dumps(payload)


def _history_page(result: Any, text: str) -> HistoryPage:
    result = result if isinstance(result, dict) else {}
    events_at = rawjson.locate(text, ("result", "events"))
    events = [Event(obj, raw) for obj, raw in rawjson.array_items(text, events_at)] if events_at is not None else []
    epoch, offset = result.get("epoch"), result.get("offset")
    return HistoryPage(
        events,
        epoch if isinstance(epoch, str) else None,
        offset if isinstance(offset, int) else None,
        bool(result.get("has_more", False)),
    )


def connect(
    url: UrlSource,
    *,
    token: str | None = None,
    token_provider: TokenProvider | None = None,
    options: Options | None = None,
    **option_values: Any,
) -> Bus:
    """A bus for `url` (a URL, a list of URLs tried in turn, or a callable returning either).

    Use `async with connect(...) as bus:` or `bus = await connect(...)` (then `await bus.close()`).
    Options are the fields of `Options`, given as keywords or as an `Options`.
    """
    if options is None:
        options = Options(**option_values)
    elif option_values:
        raise ValueError("give options= or option keywords, not both")
    return Bus(url, token, token_provider, options)

"""A subscription: an async iterator of events that never skips or repeats silently.

Reader side (called by the bus for each frame, never awaits): keeps the received position,
drops what it already has, and buffers at most `queue_size` events. Consumer side
(`__anext__`): checks contiguity, fills holes from `history`, and yields `Event`, `Gap` and
`PresenceChange` items in order.

Slow consumers: when the buffer is full, newer events are not kept; the consumer later reads
them back from the channel's history, in order, once it catches up. Memory stays bounded and
nothing within retention is lost; what retention no longer holds arrives as a `Gap`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, Union

from .errors import CLOSED, UNSUBSCRIBED, ArqonBusError
from .tracker import Cursor, on_subscribed, plan_fill
from .types import Event, Gap, Position, PresenceChange

if TYPE_CHECKING:
    from .client import Bus

Item = Union[Event, Gap, PresenceChange]

#: Own acked offsets remembered per `echo=False` subscription ahead of its consumer.
MAX_OWN_OFFSETS = 100_000


class _End:
    __slots__ = ("error",)

    def __init__(self, error: ArqonBusError | None) -> None:
        self.error = error


class Subscription:
    """Returned by `Bus.subscribe`. Await it to wait for the server's reply, iterate it for items.

    Items are `Event` (in offset order, each exactly once), `Gap` (events that can no longer
    be had; see its reason) and `PresenceChange` (join/leave on channels with presence events).
    """

    def __init__(
        self,
        bus: Bus,
        room: str,
        channel: str,
        since: Position | None,
        presence: bool,
        echo: bool,
        queue_size: int,
        fill_page: int,
    ) -> None:
        self._bus = bus
        self.room = room
        self.channel = channel
        self.presence = presence
        self.echo = echo
        self._queue_size = queue_size
        self._fill_page = fill_page
        self._since = since
        # reader side
        # received position: None until the first reply; the offset alone moves per event
        self._recv_epoch: str | None = None
        self._recv_offset: int | None = None
        self.link_generation: int | None = None
        self._queue: deque[Any] = deque()
        self._events_queued = 0
        self._waiter: asyncio.Future[None] | None = None
        self._overflow = False
        self.ready: asyncio.Future[Subscription] = asyncio.get_running_loop().create_future()
        self.ended = False
        # consumer side
        self._cursor: Cursor | None = None
        self._ready_items: deque[Item] = deque()
        self._head: Any = None
        self._own: set[int] = set()
        #: Events not kept because the consumer was `queue_size` behind (read back from history).
        self.overflowed = 0

    # ---- public API -------------------------------------------------------------------------

    def __await__(self) -> Any:
        return self._started().__await__()

    async def _started(self) -> Subscription:
        """Waits for the server's reply (at most `request_timeout_s`: then TIMEOUT, and the
        subscription stays pending: it completes once a connection is back)."""
        try:
            return await asyncio.wait_for(asyncio.shield(self.ready), self._bus.options.request_timeout_s)
        except asyncio.TimeoutError:
            raise ArqonBusError("TIMEOUT", f"no subscribe reply for {self.room}:{self.channel} yet") from None

    async def __aenter__(self) -> Subscription:
        return await self._started()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> Subscription:
        return self

    @property
    def position(self) -> Position | None:
        """The last item handed to the consumer: pass it as `since` to resume elsewhere later."""
        c = self._cursor
        return None if c is None else Position(c.last, c.epoch)

    async def close(self) -> None:
        """Unsubscribes (idempotent). Iteration then ends."""
        if self.ended:
            return
        await self._bus._unsubscribe(self)
        self.end(None)

    async def __anext__(self) -> Item:
        if self._cursor is None:
            await self.ready
        while True:
            if self._ready_items:
                return self._ready_items.popleft()
            if self._head is None:
                if not self._queue:
                    if self._overflow and self._cursor is not None:
                        self._overflow = False
                        await self._fill(None)
                        continue
                    await self._wait()
                    continue
                self._head = self._queue.popleft()
                if isinstance(self._head, Event):
                    self._events_queued -= 1
            item = self._head
            out = await self._consume(item)
            if out is not None:
                return out

    # ---- consumer side ----------------------------------------------------------------------

    async def _consume(self, item: Any) -> Item | None:
        cursor = self._cursor
        assert cursor is not None
        if isinstance(item, Event):
            if self._own:
                self._skip_own(cursor)
            verdict = cursor.classify(item.offset)
            if verdict == Cursor.DUPLICATE:
                self._head = None
                return None
            if verdict == Cursor.NEXT:
                self._head = None
                cursor.advance(item.offset)
                return item
            await self._fill(item.offset)
            return None
        if isinstance(item, Gap):
            if cursor.gap_is_ahead(item):
                await self._fill(item.from_offset)
                return None
            self._head = None
            cursor.apply_gap(item)
            return item
        if isinstance(item, _End):
            self._head = item  # stays: every later call ends the same way
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        self._head = None
        assert isinstance(item, PresenceChange)
        return item

    def _skip_own(self, cursor: Cursor) -> None:
        """With echo off, our own acked offsets never arrive: they are not holes."""
        while self._own and cursor.last + 1 in self._own:
            self._own.discard(cursor.last + 1)
            cursor.advance(cursor.last + 1)

    async def _fill(self, until: int | None) -> None:
        """Reads the missing offsets (after the cursor, before `until`) back from history."""
        cursor = self._cursor
        assert cursor is not None
        limit = self._fill_page if until is None else max(1, min(self._fill_page, until - cursor.last - 1))
        page = await self._bus._history_for_fill(self, cursor.last, until, limit)
        if page.epoch is not None and cursor.epoch is not None and page.epoch != cursor.epoch:
            # The stream was replaced under us; the server ends the old one (history_lost) and
            # the resubscribe reports the gap. Stop filling and deliver what comes.
            if until is not None:
                cursor.advance(until - 1)
            return
        full = page.has_more or len(page.events) >= limit
        gap, events, _done = plan_fill(self.room, self.channel, cursor, page.events, until, page.offset, full)
        if gap is not None:
            self._ready_items.append(gap)
            self._bus._emit_gap(gap)
        for event in events:
            if event.offset in self._own:
                self._own.discard(event.offset)
            else:
                self._ready_items.append(event)
        if gap is not None and gap.to_offset is not None:
            cursor.advance(gap.to_offset)
        if events:
            cursor.advance(events[-1].offset)
        if until is None and full:
            self._overflow = True  # more to read back: next round continues

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # ---- reader side (no awaits) ------------------------------------------------------------

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def since_to_send(self) -> Position | None:
        if self._recv_offset is None:
            return self._since
        return Position(self._recv_offset, self._recv_epoch)

    def on_reply(self, result: dict[str, Any], since: Position | None, generation: int) -> list[Gap]:
        gaps, position = on_subscribed(self.room, self.channel, since, result)
        if self._cursor is None:
            epoch = position.epoch
            start = since.offset if since is not None else position.offset
            self._cursor = Cursor(epoch, start)
        self._recv_epoch, self._recv_offset = position.epoch, position.offset
        self.link_generation = generation
        if gaps:
            self._queue.extend(gaps)
            self._wake()
        if not self.ready.done():
            self.ready.set_result(self)
        return gaps

    def on_event(self, frame: dict[str, Any], text: str) -> None:
        received = self._recv_offset
        offset = frame.get("offset")
        if received is None or not isinstance(offset, int):
            return
        if offset <= received:
            return  # already have it (replay overlap)
        if self._events_queued >= self._queue_size:
            self.overflowed += 1
            self._overflow = True
            return
        self._recv_offset = offset
        self._queue.append(Event(frame, text))
        self._events_queued += 1
        if self._waiter is not None:
            self._wake()

    def on_presence(self, change: PresenceChange) -> None:
        self._queue.append(change)
        self._wake()

    def own_ack(self, offset: int) -> None:
        if not self.echo and self._cursor is not None and offset > self._cursor.last:
            if len(self._own) >= MAX_OWN_OFFSETS:
                self._own.clear()  # bounded: a forgotten own event is read back from history and delivered
            self._own.add(offset)

    def end(self, error: ArqonBusError | None) -> None:
        if self.ended:
            return
        self.ended = True
        if not self.ready.done():
            self.ready.set_exception(error or ArqonBusError(CLOSED, "subscription closed before it started"))
            self.ready.exception()  # retrieved: not every caller awaits it
        self._queue.append(_End(error))
        self._wake()


def unsubscribed_error(room: str, channel: str, reason: str) -> ArqonBusError:
    return ArqonBusError(UNSUBSCRIBED, f"the server ended the subscription to {room}:{channel}: {reason}", reason=reason)

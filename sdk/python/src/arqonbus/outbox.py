"""The publish pipeline: a bounded queue, one sender per connection, retries with the same key.

Policy (documented in the README):
- at most `max_pending` publishes are unacked at once (queued offline or in flight); one more
  fails at once with QUEUE_FULL, nothing is dropped silently;
- every publish carries an idempotency key; on a lost connection, TIMEOUT, UNAVAILABLE or
  INTERNAL it is sent again with the same key, so the channel stores it at most once;
- RATE_LIMITED: in "wait" mode the bucket pauses for `retry_after_ms` and the publish is sent
  again; in "raise" mode the caller gets the error;
- publishes are sent in call order; each has a deadline (`publish_timeout_s`): past it the
  caller gets TIMEOUT (sent at least once: outcome unknown, retry with `idempotency_key`) or
  DISCONNECTED (never sent: certainly not stored).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .errors import DISCONNECTED, QUEUE_FULL, RETRYABLE_PUBLISH_CODES, ArqonBusError
from .link import Link
from .policy import TokenBucket


class PendingPublish:
    __slots__ = ("seq", "key", "head", "payload_text", "future", "sent", "timer", "room", "channel")

    def __init__(self, seq: int, key: str, head: str, payload_text: str, room: str, channel: str) -> None:
        self.seq = seq
        self.key = key
        self.head = head  # the frame's JSON text without its closing brace, id and payload
        self.payload_text = payload_text
        self.room = room
        self.channel = channel
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent = False
        self.timer: asyncio.TimerHandle | None = None

    def frame(self, request_id: str) -> str:
        return f'{self.head},"id":"{request_id}","payload":{self.payload_text}}}'


class Outbox:
    def __init__(
        self,
        max_pending: int,
        raise_rate_limited: bool,
        next_id: Callable[[], str],
        on_ack: Callable[[PendingPublish, dict[str, Any]], None],
    ) -> None:
        self.max_pending = max_pending
        self.raise_rate_limited = raise_rate_limited
        self._next_id = next_id
        self._on_ack = on_ack
        self._queue: deque[PendingPublish] = deque()
        self._live = 0
        self._wake = asyncio.Event()
        self._seq = 0
        self.bucket: TokenBucket | None = None
        #: RATE_LIMITED answers waited out so far ("wait" mode).
        self.rate_limited = 0

    @property
    def pending(self) -> int:
        return self._live

    def submit(self, key: str, head: str, payload_text: str, room: str, channel: str, timeout_s: float) -> PendingPublish:
        if self._live >= self.max_pending:
            raise ArqonBusError(
                QUEUE_FULL, f"{self._live} publishes are waiting for an ack (max_pending_publishes)", idempotency_key=key
            )
        self._seq += 1
        item = PendingPublish(self._seq, key, head, payload_text, room, channel)
        self._live += 1
        item.future.add_done_callback(self._finished)
        item.timer = asyncio.get_running_loop().call_later(timeout_s, self._expire, item, timeout_s)
        self._queue.append(item)
        self._wake.set()
        return item

    def _finished(self, fut: asyncio.Future[Any]) -> None:
        self._live -= 1

    def _expire(self, item: PendingPublish, timeout_s: float) -> None:
        if item.future.done():
            return
        if item.sent:
            err = ArqonBusError(
                "TIMEOUT",
                f"no ack within {timeout_s}s: the outcome is unknown; retry with the same idempotency_key",
                idempotency_key=item.key,
            )
        else:
            err = ArqonBusError(DISCONNECTED, f"not sent within {timeout_s}s: not stored", idempotency_key=item.key)
        item.future.set_exception(err)

    def _settle(self, item: PendingPublish, result: Any = None, error: ArqonBusError | None = None) -> None:
        if item.timer is not None:
            item.timer.cancel()
        if item.future.done():
            return
        if error is not None:
            error.idempotency_key = item.key
            item.future.set_exception(error)
        else:
            item.future.set_result(result)

    def requeue(self, items: Iterable[PendingPublish]) -> None:
        """Puts publishes back to be sent again (same key), keeping call order."""
        back = [i for i in items if not i.future.done()]
        if back:
            self._queue = deque(sorted([*self._queue, *back], key=lambda i: i.seq))
            self._wake.set()

    def fail_all(self, error: ArqonBusError) -> None:
        queue, self._queue = self._queue, deque()
        for item in queue:
            self._settle(item, error=ArqonBusError(error.code, error.message))

    async def run(self, link: Link) -> None:
        """Sends queued publishes on `link` until it is cancelled (the link went away)."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            item = self._queue.popleft()
            if item.future.done():
                continue
            try:
                if self.bucket is not None:
                    wait = self.bucket.take(time.monotonic())
                    if wait > 0:
                        refusals = self.rate_limited
                        await asyncio.sleep(wait)
                        if refusals != self.rate_limited:
                            # A refused publish was put back meanwhile: it goes first.
                            self.requeue([item])
                            continue
                rid = self._next_id()
                link.expect(rid, functools.partial(self._answer, item, loop=loop))
                item.sent = True
                await link.send(item.frame(rid))
            except asyncio.CancelledError:
                if not item.sent:
                    self.requeue([item])
                raise

    def _answer(
        self, item: PendingPublish, frame: dict[str, Any] | None, _text: str, *, loop: asyncio.AbstractEventLoop
    ) -> None:
        if item.future.done():
            return
        if frame is None:  # connection lost before the ack: outcome unknown, send again
            self.requeue([item])
            return
        if frame.get("type") == "reply":
            result = frame.get("result")
            self._on_ack(item, result if isinstance(result, dict) else {})
            self._settle(item, result)
            return
        err = ArqonBusError.from_body(frame.get("error"))
        delay_s = (err.retry_after_ms or 0) / 1000.0
        if err.code == "RATE_LIMITED" and not self.raise_rate_limited:
            self.rate_limited += 1
            if self.bucket is not None:
                self.bucket.pause(delay_s, time.monotonic())
                self.requeue([item])
            else:
                loop.call_later(delay_s, self.requeue, [item])
        elif err.code in RETRYABLE_PUBLISH_CODES:
            loop.call_later(max(delay_s, 0.2), self.requeue, [item])
        else:
            self._settle(item, error=err)

"""The connection machinery of a bus: reconnects, resubscribes, request matching, refresh.

`Bus` (client.py) adds the user-facing API on top. Everything here runs on one event loop;
frame handlers never await, so the order of frames on the socket is the order of effects.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Union

from websockets.exceptions import ConnectionClosed

from . import rawjson
from .errors import CLOSED, CONNECTION_FAILED, DISCONNECTED, TIMEOUT, ArqonBusError
from .feed import Feed
from .link import Link, LinkOptions, open_link
from .options import Options
from .outbox import Outbox, PendingPublish
from .policy import Backoff, TokenBucket, jwt_expiry, parse_rfc3339, refresh_delay
from .subscription import Subscription, unsubscribed_error
from .types import Gap, Position, PresenceChange, PrivateMessage, StateChange, Welcome

log = logging.getLogger("arqonbus")

Urls = Union[str, Sequence[str]]
UrlSource = Union[Urls, Callable[[], Union[Urls, Awaitable[Urls]]]]
TokenProvider = Callable[[], Union[str, Awaitable[str]]]
StateCallback = Callable[[StateChange], None]

#: Client-side pacing runs at this fraction of the server's advertised rates.
PACING_SLACK = 0.97

#: A link that lived at least this long was healthy: the next reconnect starts without delay.
HEALTHY_LINK_S = 1.0


class Core:
    def __init__(
        self, urls: UrlSource, token: str | None, token_provider: TokenProvider | None, options: Options
    ) -> None:
        options.check()
        if token is not None and token_provider is not None:
            raise ValueError("give token or token_provider, not both")
        self._urls = urls
        self._token = token
        self._token_provider = token_provider
        self.options = options
        self._link_opts = LinkOptions(
            options.open_timeout_s,
            options.max_message_bytes,
            options.ping_interval_s,
            options.ping_timeout_s,
            options.close_timeout_s,
            options.max_queue,
        )
        self._ids = itertools.count(1)
        self._link: Link | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._closed_error: ArqonBusError | None = None
        self._runner: asyncio.Task[None] | None = None
        self._last_connect_error: ArqonBusError | None = None
        self._generation = 0
        self._url_index = 0
        self._subs: dict[tuple[str, str], Subscription] = {}
        self._sent_on: dict[tuple[str, str], int] = {}
        self._outbox = Outbox(
            options.max_pending_publishes, options.rate_limit == "raise", self._next_id, self._on_ack
        )
        self._command_bucket: TokenBucket | None = None
        self._state_callbacks: list[StateCallback] = []
        self._state_feeds: list[Feed[StateChange]] = []
        self._private = Feed[PrivateMessage](options.private_queue_size)
        self._background: set[asyncio.Task[Any]] = set()
        #: The welcome of the current (or last) connection.
        self.welcome: Welcome | None = None
        #: Successful `refresh` commands so far.
        self.refreshes = 0

    # ---- ids, states, tasks -----------------------------------------------------------------

    def _next_id(self) -> str:
        return f"q{next(self._ids)}"

    def _emit(self, change: StateChange) -> None:
        for callback in list(self._state_callbacks):
            try:
                callback(change)
            except Exception:  # a user's callback must not break the connection
                log.exception("state callback failed")
        for feed in self._state_feeds:
            feed.put(change)

    def _emit_gap(self, gap: Gap) -> None:
        self._emit(StateChange("gap", gap=gap))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ---- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Connects (the first time), bounded by `connect_timeout_s`."""
        if self._runner is not None:
            return
        self._runner = asyncio.create_task(self._run())
        waiter = asyncio.create_task(self._connected.wait())
        done, _ = await asyncio.wait(
            {waiter, self._runner}, timeout=self.options.connect_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        if self._closed_error is not None:
            raise self._closed_error
        if not self._connected.is_set():
            await self.close()
            last = self._last_connect_error
            raise ArqonBusError(
                TIMEOUT, f"not connected within {self.options.connect_timeout_s}s (last attempt: {last})"
            )

    async def close(self) -> None:
        """Closes the connection (1000) and ends every subscription and pending publish."""
        if self._closing:
            return
        self._closing = True
        link = self._link
        if link is not None:
            try:
                await asyncio.wait_for(link.ws.close(), self.options.close_timeout_s)
            except (asyncio.TimeoutError, OSError):
                pass
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._finish(ArqonBusError(CLOSED, "the bus was closed"), user_close=True)

    def _finish(self, error: ArqonBusError, user_close: bool = False) -> None:
        if self._closed_error is None:
            self._closed_error = error
        for sub in list(self._subs.values()):
            sub.end(None if user_close else error)
        self._subs.clear()
        self._outbox.fail_all(error)
        self._private.close()
        self._connected.set()  # wakes every waiter, which then sees the error
        self._emit(StateChange("closed", error=None if user_close else error))
        for feed in self._state_feeds:
            feed.close()

    def _fatal(self, err: ArqonBusError, first: bool) -> bool:
        if err.code == "UNSUPPORTED_VERSION":
            return True
        if err.code == "UNAUTHORIZED":
            return first or self._token_provider is None
        return False

    async def _run(self) -> None:
        backoff = Backoff(self.options.reconnect_initial_s, self.options.reconnect_max_s)
        loop = asyncio.get_running_loop()
        delay, first = 0.0, True
        while not self._closing:
            if delay > 0:
                self._emit(StateChange("reconnecting", delay_s=delay, attempt=backoff.attempt))
                await asyncio.sleep(delay)
            url = await self._pick_url()
            self._emit(StateChange("connecting", url=url, attempt=backoff.attempt))
            try:
                token = await self._token_now()
                link = await open_link(url, token, self._generation + 1, self._link_opts)
            except ArqonBusError as err:
                if self._fatal(err, first):
                    self._finish(err)
                    return
                log.info("connect to %s failed: %s", url, err)
                self._last_connect_error = err
                self._url_index += 1
                delay = max(backoff.next_delay(), (err.retry_after_ms or 0) / 1000.0, 0.05 if first else 0.0)
                continue
            self._generation = link.generation
            started = loop.time()
            await self._serve(link, first, token)
            first = False
            self._url_index += 1
            if loop.time() - started >= HEALTHY_LINK_S:
                backoff.reset()
            if link.reconnect_after_ms is not None:
                delay = link.reconnect_after_ms / 1000.0
            else:
                delay = backoff.next_delay()

    async def _pick_url(self) -> str:
        source: Any = self._urls
        if callable(source):
            source = source()
            if inspect.isawaitable(source):
                source = await source
        urls = [source] if isinstance(source, str) else list(source)
        if not urls:
            raise ArqonBusError(CONNECTION_FAILED, "the URL provider gave no URL")
        return str(urls[self._url_index % len(urls)])

    async def _token_now(self) -> str | None:
        if self._token_provider is None:
            return self._token
        value = self._token_provider()
        if inspect.isawaitable(value):
            value = await asyncio.wait_for(value, self.options.request_timeout_s)
        return str(value)

    async def _serve(self, link: Link, first: bool, token: str | None) -> None:
        self._link = link
        self.welcome = link.welcome
        limits = link.welcome.limits
        pace = self.options.rate_limit == "wait"
        now = time.monotonic()
        # A little slower than the server's buckets, so that clock jitter does not earn a
        # RATE_LIMITED (whose retry could then land after later publishes).
        slack = PACING_SLACK
        self._outbox.bucket = TokenBucket(limits.publish_rate_per_s * slack, limits.publish_burst, now) if pace else None
        cmd_rate, cmd_burst = limits.command_rate_per_s, limits.command_burst
        self._command_bucket = (
            TokenBucket(cmd_rate * slack, cmd_burst, now) if pace and cmd_rate and cmd_burst else None
        )
        self._connected.set()
        self._emit(StateChange("connected", url=link.url, welcome=link.welcome))
        tasks = [asyncio.create_task(self._outbox.run(link)), asyncio.create_task(self._resume(link, first))]
        if self._token_provider is not None and token is not None:
            tasks.append(asyncio.create_task(self._refresh_loop(token)))
        try:
            await self._read(link)
        finally:
            self._connected.clear()
            self._link = None
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            link.fail_all()
            self._sent_on.clear()
            for sub in self._subs.values():
                sub.link_generation = None
            if not self._closing:
                self._emit(
                    StateChange(
                        "disconnected",
                        url=link.url,
                        close_code=link.close_code,
                        extra={
                            "reason": link.close_reason,
                            "reconnect_after_ms": link.reconnect_after_ms,
                            "drain_reason": link.drain_reason,
                        },
                    )
                )

    async def _read(self, link: Link) -> None:
        try:
            async for text in link.ws:
                if isinstance(text, str):
                    try:
                        self._dispatch(link, text)
                    except Exception:  # a bad frame must not stop the reader
                        log.exception("cannot handle a frame from %s", link.url)
        except ConnectionClosed:
            pass

    # ---- frames -----------------------------------------------------------------------------

    def _dispatch(self, link: Link, text: str) -> None:
        frame = json.loads(text)
        kind = frame.get("type")
        if kind == "event":
            sub = self._subs.get((frame.get("room"), frame.get("channel")))
            if sub is not None and sub.link_generation == link.generation:
                sub.on_event(frame, text)
        elif kind == "reply" or kind == "error":
            link.answer(frame, text)
        elif kind == "system":
            self._on_system(link, frame)
        elif kind == "private":
            self._private.put(_private_message(frame, text))

    def _on_system(self, link: Link, frame: dict[str, Any]) -> None:
        event = frame.get("event")
        payload = frame.get("payload") if isinstance(frame.get("payload"), dict) else {}
        assert isinstance(payload, dict)
        if event == "draining":
            after = payload.get("reconnect_after_ms")
            link.reconnect_after_ms = after if isinstance(after, int) and after >= 0 else 0
            reason = payload.get("reason")
            link.drain_reason = reason if isinstance(reason, str) else None
            return
        key = (str(frame.get("room")), str(frame.get("channel")))
        sub = self._subs.get(key)
        if sub is None:
            return
        if event in ("join", "leave"):
            user = payload.get("user")
            sub.on_presence(
                PresenceChange(
                    key[0], key[1], str(event), str(payload.get("client_id")),
                    user if isinstance(user, str) else None, payload.get("info"),
                )
            )
        elif event == "unsubscribed":
            reason = str(payload.get("reason"))
            if reason == "history_lost":
                # Subscribe again from our position: the reply says exactly what was lost.
                sub.link_generation = None
                self._sent_on.pop(key, None)
                self._spawn(self._send_subscribe(sub, link))
            else:
                del self._subs[key]
                self._sent_on.pop(key, None)
                sub.end(unsubscribed_error(key[0], key[1], reason))

    # ---- subscriptions ----------------------------------------------------------------------

    async def _resume(self, link: Link, first: bool) -> None:
        waits = [await self._send_subscribe(sub, link) for sub in list(self._subs.values())]
        if waits:
            await asyncio.wait(waits, timeout=self.options.request_timeout_s)
        if not first:
            self._emit(StateChange("resumed", url=link.url, welcome=link.welcome, extra={"subscriptions": len(waits)}))

    async def _send_subscribe(self, sub: Subscription, link: Link) -> asyncio.Future[None]:
        """Sends `subscribe` (with `since` when resuming); the future resolves on its answer."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        key = (sub.room, sub.channel)
        if self._sent_on.get(key) == link.generation or sub.ended or self._link is not link:
            done.set_result(None)
            return done
        self._sent_on[key] = link.generation
        since = sub.since_to_send()
        args: dict[str, Any] = {"room": sub.room, "channel": sub.channel}
        if since is not None:
            args["since"] = {"offset": since.offset} if since.epoch is None else {"offset": since.offset, "epoch": since.epoch}
        if not sub.presence:
            args["presence"] = False
        if not sub.echo:
            args["echo"] = False

        def answered(frame: dict[str, Any] | None, _text: str) -> None:
            if not done.done():
                done.set_result(None)
            if frame is None or self._subs.get(key) is not sub:
                return
            if frame.get("type") == "reply":
                result = frame.get("result")
                for gap in sub.on_reply(result if isinstance(result, dict) else {}, since, link.generation):
                    self._emit_gap(gap)
                return
            err = ArqonBusError.from_body(frame.get("error"))
            if err.code in ("RATE_LIMITED", "UNAVAILABLE", "INTERNAL", "TIMEOUT"):
                self._sent_on.pop(key, None)
                delay = max((err.retry_after_ms or 0) / 1000.0, 0.05)
                asyncio.get_running_loop().call_later(delay, lambda: self._spawn(self._send_subscribe(sub, link)))
                return
            del self._subs[key]
            self._sent_on.pop(key, None)
            sub.end(err)

        rid = self._next_id()
        link.expect(rid, answered)
        try:
            await self._pace_command()
            await link.send(rawjson.dumps({"type": "command", "id": rid, "command": "subscribe", "args": args}))
        except ConnectionClosed:
            pass  # the link's teardown answers `answered` with None; the next link resubscribes
        return done

    def _add_subscription(self, sub: Subscription) -> None:
        key = (sub.room, sub.channel)
        if key in self._subs:
            raise ArqonBusError("ALREADY_SUBSCRIBED", f"this bus already has a subscription to {key[0]}:{key[1]}")
        if self._closed_error is not None:
            raise self._closed_error
        self._subs[key] = sub
        link = self._link
        if link is not None and self._connected.is_set():
            self._spawn(self._send_subscribe(sub, link))

    async def _unsubscribe(self, sub: Subscription) -> None:
        key = (sub.room, sub.channel)
        if self._subs.get(key) is not sub:
            return
        del self._subs[key]
        self._sent_on.pop(key, None)
        if sub.link_generation is not None and self._link is not None and sub.link_generation == self._link.generation:
            try:
                await self._call("unsubscribe", {"room": sub.room, "channel": sub.channel}, retry=False)
            except ArqonBusError as err:
                if err.code not in ("NOT_SUBSCRIBED", DISCONNECTED, CLOSED, "TIMEOUT"):
                    raise

    def _on_ack(self, item: PendingPublish, result: dict[str, Any]) -> None:
        sub = self._subs.get((item.room, item.channel))
        offset = result.get("offset")
        if sub is not None and isinstance(offset, int):
            sub.own_ack(offset)

    # ---- requests ---------------------------------------------------------------------------

    async def _pace_command(self) -> None:
        bucket = self._command_bucket
        if bucket is not None:
            wait = bucket.take(time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)

    async def _wait_link(self, deadline: float) -> Link:
        loop = asyncio.get_running_loop()
        while True:
            if self._closed_error is not None:
                raise ArqonBusError(self._closed_error.code, self._closed_error.message)
            link = self._link
            if link is not None and self._connected.is_set():
                return link
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ArqonBusError("TIMEOUT", "not connected before the request's deadline")
            try:
                await asyncio.wait_for(self._connected.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def _request(
        self,
        frame: dict[str, Any],
        *,
        retry: bool = True,
        timeout_s: float | None = None,
        publish_bucket: bool = False,
        payload_text: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Sends a frame with a fresh `id` and returns its `reply` (frame, text).

        Waits for a connection; retries after a lost connection when `retry` (reads), waits
        `retry_after_ms` on RATE_LIMITED in "wait" mode; every attempt within one deadline.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s or self.options.request_timeout_s)
        while True:
            link = await self._wait_link(deadline)
            answer: asyncio.Future[tuple[dict[str, Any] | None, str]] = loop.create_future()
            rid = self._next_id()
            link.expect(rid, lambda f, t: None if answer.done() else answer.set_result((f, t)))
            try:
                bucket = self._outbox.bucket if publish_bucket else self._command_bucket
                if bucket is not None:
                    wait = bucket.take(time.monotonic())
                    if wait > 0:
                        await asyncio.sleep(wait)
                text = rawjson.dumps({**frame, "id": rid})
                if payload_text is not None:
                    text = f'{text[:-1]},"payload":{payload_text}}}'
                await link.send(text)
                got, text = await asyncio.wait_for(answer, max(deadline - loop.time(), 0.001))
            except asyncio.TimeoutError:
                link.pending.pop(rid, None)
                raise ArqonBusError("TIMEOUT", f"no answer within {timeout_s or self.options.request_timeout_s}s")
            except ConnectionClosed:
                got, text = await answer
            if got is None:
                if retry:
                    continue
                raise ArqonBusError(DISCONNECTED, "the connection was lost before the answer")
            if got.get("type") == "reply":
                return got, text
            err = ArqonBusError.from_body(got.get("error"))
            wait_s = (err.retry_after_ms or 0) / 1000.0
            if err.code == "RATE_LIMITED" and self.options.rate_limit == "wait" and loop.time() + wait_s < deadline:
                if bucket is not None:
                    bucket.pause(wait_s, time.monotonic())
                else:
                    await asyncio.sleep(wait_s)
                continue
            raise err

    async def _call(self, command: str, args: dict[str, Any] | None = None, *, retry: bool = True) -> tuple[Any, str]:
        frame: dict[str, Any] = {"type": "command", "command": command}
        if args:
            frame["args"] = args
        got, text = await self._request(frame, retry=retry)
        return got.get("result"), text

    # ---- token refresh ----------------------------------------------------------------------

    async def _refresh_loop(self, token: str) -> None:
        expires = jwt_expiry(token)
        while expires is not None:
            await asyncio.sleep(refresh_delay(expires, time.time()))
            if time.time() >= expires:
                return  # too late: the server closes with 4001 and the reconnect gets a new token
            try:
                new = await self._token_now()
                result, _ = await self._call("refresh", {"token": new}, retry=False)
            except (ArqonBusError, asyncio.TimeoutError) as err:
                log.warning("token refresh failed: %s", err)
                continue
            self.refreshes += 1
            got = parse_rfc3339(result.get("expires_at")) if isinstance(result, dict) else None
            expires = got if got is not None else (jwt_expiry(new) if new else None)


def _private_message(frame: dict[str, Any], text: str) -> PrivateMessage:
    to = frame.get("to")
    meta = frame.get("metadata")
    sender, user = frame.get("from"), frame.get("user")
    return PrivateMessage(
        id=str(frame.get("id")),
        sender=sender if isinstance(sender, str) else None,
        user=user if isinstance(user, str) else None,
        to=dict(to) if isinstance(to, dict) else {},
        timestamp=str(frame.get("timestamp", "")),
        payload=frame.get("payload"),
        raw_payload=rawjson.field_text(text, "payload") or "null",
        metadata=dict(meta) if isinstance(meta, dict) else {},
    )


__all__ = ["Core", "Position", "StateCallback", "TokenProvider", "UrlSource"]

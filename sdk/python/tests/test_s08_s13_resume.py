"""Reconnect and resume scenarios: S08 (server closes), S09 (restart, node killed), S10
(draining), S11 (idempotent retry), S13 (gap), and the bounded subscription queue."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from typing import Any

import arqonbus
from conftest import API_KEY, offsets, take, take_until_offset
from harness import Node, Proxy, Redis, http_json

FAST = {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.5}
FAST_PUBLISH = {"ARQONBUS_LIMITS__PUBLISH_RATE_PER_S": 100000, "ARQONBUS_LIMITS__PUBLISH_BURST": 100000}


def record(bus: arqonbus.Bus) -> list[tuple[float, arqonbus.StateChange]]:
    seen: list[tuple[float, arqonbus.StateChange]] = []
    loop = asyncio.get_running_loop()
    bus.on_state(lambda s: seen.append((loop.time(), s)))
    return seen


def names(seen: list[tuple[float, arqonbus.StateChange]]) -> list[str]:
    return [s.state for _, s in seen]


async def produce(bus: arqonbus.Bus, room: str, channel: str, first: int, last: int, pause_s: float = 0.005) -> None:
    for i in range(first, last + 1):
        ack = await bus.publish(room, channel, {"i": i})
        assert ack.offset == i and not ack.duplicate
        await asyncio.sleep(pause_s)


async def test_s08_reconnect_after_slow_consumer_close_4008(start_node: Callable[..., Node], room: str) -> None:
    node = start_node(
        "a",
        ARQONBUS_LIMITS__OUTBOUND_QUEUE=16,
        ARQONBUS_HTTP__API_KEY=API_KEY,
        ARQONBUS_LIMITS__HTTP_PUBLISH_RATE_PER_S=1000000,
    )
    total, pad = 1200, "x" * 8000
    async with arqonbus.connect(node.url, **FAST) as bus:
        await bus.create_channel(room, "firehose", history_size=5000)
        seen = record(bus)
        sub = await bus.subscribe(room, "firehose")

        def publish_all() -> None:
            for i in range(1, total + 1):
                status, body = http_json("POST", f"{node.http}/v1/publish", {"room": room, "channel": "firehose", "payload": {"i": i, "pad": pad}}, key=API_KEY)
                assert status == 200 and body["offset"] == i, body

        worker = threading.Thread(target=publish_all)
        worker.start()
        worker.join(60)  # blocks the event loop on purpose: the SDK reads nothing meanwhile
        items = await take_until_offset(sub, total, timeout=60)
    assert offsets(items) == list(range(1, total + 1))
    assert [e.payload["i"] for e in items] == list(range(1, total + 1))
    closes = [s.close_code for _, s in seen if s.state == "disconnected"]
    assert 4008 in closes, closes
    assert "resumed" in names(seen)


async def test_s08_reconnect_after_connection_cut(node: Node, room: str) -> None:
    proxy = await Proxy(node.port).start()
    try:
        async with arqonbus.connect(proxy.url, **FAST) as bus, arqonbus.connect(node.url) as pub:
            seen = record(bus)
            sub = await bus.subscribe(room, "c")
            await produce(pub, room, "c", 1, 50, 0)
            await take_until_offset(sub, 20)
            proxy.cut()
            await produce(pub, room, "c", 51, 100, 0)
            rest = await take_until_offset(sub, 100)
        assert offsets(rest) == list(range(21, 101))
        assert names(seen)[:4] == ["disconnected", "connecting", "connected", "resumed"]
    finally:
        await proxy.stop()


async def test_s09_restart_memory_node_surfaces_gap(start_node: Callable[..., Node], room: str) -> None:
    node = start_node("a")
    async with arqonbus.connect(node.url, **FAST) as bus:
        seen = record(bus)
        sub = await bus.subscribe(room, "c")
        for i in range(5):
            await bus.publish(room, "c", i)
        await take(sub, 5)
        before = sub.position
        assert before is not None and before.offset == 5
        node.kill()
        node.start()  # same port, empty memory backplane: the stream is gone
        [gap] = await take(sub, 1)
        assert isinstance(gap, arqonbus.Gap)
        assert (gap.reason, gap.from_offset, gap.to_offset) == ("epoch_changed", 6, None)
        assert gap.previous_epoch == before.epoch and gap.epoch != before.epoch
        assert ("gap", gap) in [(s.state, s.gap) for _, s in seen]
        ack = await bus.publish(room, "c", "after restart")
        [event] = await take(sub, 1)
        assert event.offset == ack.offset == 1 and event.payload == "after restart"


async def test_s09_subscriber_node_sigkilled_resumes_on_other_node(
    start_node: Callable[..., Node], redis: Redis, room: str
) -> None:
    env = {**redis.node_env(), **FAST_PUBLISH}
    a, b = start_node("a", **env), start_node("b", **env)
    async with arqonbus.connect([a.url, b.url], **FAST) as sbus, arqonbus.connect(b.url) as pbus:
        assert sbus.welcome is not None and sbus.welcome.node == "a"
        sub = await sbus.subscribe(room, "c")
        producer = asyncio.create_task(produce(pbus, room, "c", 1, 300))
        items = await take_until_offset(sub, 50)
        a.kill()
        items += await take_until_offset(sub, 300, timeout=60)
        await producer
        assert sbus.welcome.node == "b"
    assert offsets(items) == list(range(1, 301)), "every offset exactly once"
    assert not [i for i in items if isinstance(i, arqonbus.Gap)]


async def test_s10_draining_waits_reconnect_after_ms_and_moves_node(
    start_node: Callable[..., Node], redis: Redis, room: str
) -> None:
    env = {**redis.node_env(), **FAST_PUBLISH}
    a = start_node("a", ARQONBUS_SERVER__DRAIN_JITTER_MS=400, ARQONBUS_SERVER__SHUTDOWN_GRACE_MS=3000, **env)
    b = start_node("b", **env)
    async with arqonbus.connect([a.url, b.url], **FAST) as sbus, arqonbus.connect(b.url) as pbus:
        seen = record(sbus)
        sub = await sbus.subscribe(room, "c")
        producer = asyncio.create_task(produce(pbus, room, "c", 1, 200))
        items = await take_until_offset(sub, 30)
        a.signal(signal.SIGTERM)
        items += await take_until_offset(sub, 200, timeout=60)
        await producer
        assert sbus.welcome is not None and sbus.welcome.node == "b"
    assert a.wait_exit(15) == 0
    assert offsets(items) == list(range(1, 201))
    [(t_down, down)] = [(t, s) for t, s in seen if s.state == "disconnected"]
    after_ms = down.extra["reconnect_after_ms"]
    assert isinstance(after_ms, int) and 0 <= after_ms <= 400
    assert down.close_code == 1012
    t_next = next(t for t, s in seen if s.state == "connecting" and t >= t_down)
    assert t_next - t_down >= after_ms / 1000.0 - 0.02
    assert names(seen)[-4:] == ["connecting", "connected", "resumed", "closed"]


async def test_s11_ack_lost_retry_with_same_key_stores_once(node: Node, room: str) -> None:
    proxy = await Proxy(node.port).start()
    try:
        async with arqonbus.connect(proxy.url, **FAST) as bus, arqonbus.connect(node.url) as reader:
            proxy.hold_answers()  # the server stores and acks; the ack never reaches the SDK
            task = asyncio.create_task(bus.publish(room, "c", {"once": True}))
            stored = await wait_for_history(reader, room, "c", 1)
            proxy.cut()
            proxy.resume()
            ack = await asyncio.wait_for(task, 20)
            assert ack.duplicate is True and ack.offset == stored[0].offset and ack.id == stored[0].id
            page = await reader.history(room, "c")
            assert [e.payload for e in page.events] == [{"once": True}]
    finally:
        await proxy.stop()


async def test_s11_node_killed_right_after_send_stores_once(
    start_node: Callable[..., Node], redis: Redis, room: str
) -> None:
    env = redis.node_env()
    a, b = start_node("a", **env), start_node("b", **env)
    async with arqonbus.connect([a.url, b.url], **FAST) as bus, arqonbus.connect(b.url) as reader:
        for n in range(5):
            task = asyncio.create_task(bus.publish(room, "c", {"n": n}))
            if n == 2:
                await asyncio.sleep(0.002)  # the frame is on its way
                a.kill()
            ack = await asyncio.wait_for(task, 30)
            assert ack.offset == n + 1
        page = await reader.history(room, "c")
        assert [e.payload for e in page.events] == [{"n": n} for n in range(5)]


async def wait_for_history(bus: arqonbus.Bus, room: str, channel: str, count: int) -> list[arqonbus.Event]:
    for _ in range(500):
        page = await bus.history(room, channel)
        if len(page.events) >= count:
            return page.events
        await asyncio.sleep(0.02)
    raise AssertionError("the event was never stored")


async def test_s13_since_older_than_retention_yields_gap_with_range(bus: arqonbus.Bus, room: str) -> None:
    seen = record(bus)
    await bus.create_channel(room, "tiny", history_size=3)
    first = await bus.subscribe(room, "tiny")
    for i in range(1, 3):
        await bus.publish(room, "tiny", i)
    await take(first, 2)
    position = first.position
    await first.close()
    for i in range(3, 11):
        await bus.publish(room, "tiny", i)
    later = await bus.subscribe(room, "tiny", since=position)
    items = await take(later, 4)
    gap = items[0]
    assert isinstance(gap, arqonbus.Gap)
    assert (gap.reason, gap.from_offset, gap.to_offset) == ("retention", 3, 7)
    assert offsets(items[1:]) == [8, 9, 10]
    assert any(s.state == "gap" and s.gap == gap for _, s in seen)


async def test_s13_gap_across_a_reconnect(node: Node, room: str) -> None:
    proxy = await Proxy(node.port).start()
    try:
        async with arqonbus.connect(proxy.url, **FAST) as bus, arqonbus.connect(node.url) as pub:
            await pub.create_channel(room, "tiny", history_size=3)
            sub = await bus.subscribe(room, "tiny")
            await produce(pub, room, "tiny", 1, 2, 0)
            await take(sub, 2)
            proxy.refusing = True
            proxy.cut()
            await produce(pub, room, "tiny", 3, 10, 0)
            proxy.refusing = False
            items = await take(sub, 4)
        assert isinstance(items[0], arqonbus.Gap) and (items[0].from_offset, items[0].to_offset) == (3, 7)
        assert offsets(items) == [8, 9, 10]
    finally:
        await proxy.stop()


async def test_slow_consumer_queue_is_bounded_and_refilled_from_history(bus: arqonbus.Bus, room: str) -> None:
    sub = await bus.subscribe(room, "o", queue_size=10)
    for i in range(1, 101):
        await bus.publish(room, "o", i)
    items = await take(sub, 100)
    assert offsets(items) == list(range(1, 101))
    assert [e.payload for e in items] == list(range(1, 101))
    assert sub.overflowed > 0


async def test_echo_off_skips_own_events_without_refetching(node: Node, room: str) -> None:
    async with arqonbus.connect(node.url) as me, arqonbus.connect(node.url) as other:
        sub = await me.subscribe(room, "e", echo=False)
        await other.publish(room, "e", "theirs-1")
        await me.publish(room, "e", "mine")
        await other.publish(room, "e", "theirs-3")
        items: list[Any] = await take(sub, 2)
        assert [(e.offset, e.payload) for e in items] == [(1, "theirs-1"), (3, "theirs-3")]
        await other.publish(room, "e", "theirs-4")
        [next_item] = await take(sub, 1)
        assert next_item.offset == 4


async def test_s09_url_provider_is_asked_before_every_attempt(node: Node, room: str) -> None:
    proxy = await Proxy(node.port).start()
    asked = 0

    async def urls() -> list[str]:
        nonlocal asked
        asked += 1
        return [proxy.url]

    try:
        async with arqonbus.connect(urls, **FAST) as bus:
            sub = await bus.subscribe(room, "c")
            await bus.publish(room, "c", 1)
            proxy.cut()
            await bus.publish(room, "c", 2)
            assert offsets(await take(sub, 2)) == [1, 2]
        assert asked >= 2
    finally:
        await proxy.stop()

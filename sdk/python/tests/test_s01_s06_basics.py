"""Shared scenarios S01–S06 against a real node (memory backplane)."""

from __future__ import annotations

import asyncio

import pytest

import arqonbus
from conftest import offsets, take
from harness import Node


async def test_s01_connect_welcome_client_id_node_limits(node: Node) -> None:
    states: list[str] = []
    async with arqonbus.connect(node.url) as bus:
        bus.on_state(lambda s: states.append(s.state))
        welcome = bus.welcome
        assert welcome is not None
        assert bus.client_id is not None and bus.client_id.startswith("c_") and len(bus.client_id) == 34
        assert welcome.node == "a"
        assert welcome.protocol == "1.0"
        assert welcome.limits.max_frame_bytes == 65536
        assert welcome.limits.publish_rate_per_s == 50 and welcome.limits.publish_burst == 100
        assert welcome.limits.max_subscriptions == 256
        assert bus.connected
        pong = await bus.ping()
        assert pong["pong"] is True
        status = await bus.status()
        assert status["node"] == "a" and status["backplane"]["kind"] == "memory"
    assert states[-1] == "closed"


async def test_s01_states_connecting_then_connected(node: Node) -> None:
    bus = arqonbus.connect(node.url)
    seen: list[arqonbus.StateChange] = []
    bus.on_state(seen.append)
    await bus
    await bus.close()
    assert [s.state for s in seen] == ["connecting", "connected", "closed"]
    assert seen[1].welcome is not None and seen[1].url == node.url


async def test_s02_subscribe_publish_ack_and_delivery(bus: arqonbus.Bus, room: str) -> None:
    sub = await bus.subscribe(room, "explore")
    ack = await bus.publish(room, "explore", {"hello": "world", "n": [1, 2]})
    assert isinstance(ack, arqonbus.Published)
    assert ack.offset == 1 and ack.id.startswith("arq_") and ack.duplicate is False
    [event] = await take(sub, 1)
    assert isinstance(event, arqonbus.Event)
    assert event.offset == ack.offset and event.id == ack.id
    assert event.payload == {"hello": "world", "n": [1, 2]}
    assert event.room == room and event.channel == "explore"
    assert event.sender == bus.client_id
    again = await bus.publish(room, "explore", {"x": 1}, idempotency_key="same-key")
    dup = await bus.publish(room, "explore", {"x": 2}, idempotency_key="same-key")
    assert dup == arqonbus.Published(again.offset, again.id, True)
    [second] = await take(sub, 1)
    assert second.offset == again.offset
    assert sub.position == arqonbus.Position(again.offset, sub.position.epoch if sub.position else None)


async def test_s03_ordering_500_publishes_arrive_1_to_500(start_node: object, room: str) -> None:
    node = start_node("a", ARQONBUS_LIMITS__PUBLISH_RATE_PER_S=100000, ARQONBUS_LIMITS__PUBLISH_BURST=100000)  # type: ignore[operator]
    async with arqonbus.connect(node.url) as subscriber, arqonbus.connect(node.url) as publisher:
        sub = await subscriber.subscribe(room, "seq")
        acks = await asyncio.gather(*(publisher.publish(room, "seq", {"n": i}) for i in range(500)))
        assert [a.offset for a in acks] == list(range(1, 501))
        items = await take(sub, 500)
        assert offsets(items) == list(range(1, 501))
        assert [e.payload["n"] for e in items] == list(range(500))


async def test_s04_history_limit_since_before_reverse(bus: arqonbus.Bus, room: str) -> None:
    for i in range(1, 11):
        await bus.publish(room, "h", {"i": i})
    newest = await bus.history(room, "h", limit=3)
    assert [e.offset for e in newest.events] == [8, 9, 10]
    assert newest.offset == 10 and newest.epoch
    assert [e.offset for e in (await bus.history(room, "h", limit=3, reverse=True)).events] == [10, 9, 8]
    assert [e.offset for e in (await bus.history(room, "h", since=5, limit=2)).events] == [6, 7]
    assert [e.offset for e in (await bus.history(room, "h", before=5, limit=2)).events] == [3, 4]
    between = await bus.history(room, "h", since=2, before=6)
    assert [e.payload["i"] for e in between.events] == [3, 4, 5]
    assert between.events[0].raw_payload == '{"i":3}'


async def test_s04_history_has_more_and_unknown_channel_needs_issue7_server(bus: arqonbus.Bus, room: str) -> None:
    for i in range(1, 6):
        await bus.publish(room, "h", i)
    first = await bus.history(room, "h", since=0, limit=2)
    assert [e.offset for e in first.events] == [1, 2] and first.has_more is True
    rest = await bus.history(room, "h", since=first.events[-1].offset, limit=10)
    assert [e.offset for e in rest.events] == [3, 4, 5] and rest.has_more is False
    backwards = await bus.history(room, "h", limit=2, reverse=True)
    assert [e.offset for e in backwards.events] == [5, 4] and backwards.has_more is True
    unknown = await bus.history(room, "never-used")
    assert unknown.events == [] and unknown.epoch is None and unknown.offset is None and unknown.has_more is False


async def test_s05_presence_lists_both_clients(node: Node, room: str) -> None:
    async with arqonbus.connect(node.url) as a, arqonbus.connect(node.url) as b:
        await a.subscribe(room, "lobby")
        await b.subscribe(room, "lobby")
        hidden = arqonbus.connect(node.url)
        await hidden
        await hidden.subscribe(room, "lobby", presence=False)
        page = await a.presence(room, "lobby")
        assert page.count == 2
        assert {c.client_id for c in page.clients} == {a.client_id, b.client_id}
        assert all(c.node == "a" and c.user is None for c in page.clients)
        await hidden.close()


async def test_s05_presence_pagination_needs_issue7_server(node: Node, room: str) -> None:
    async with arqonbus.connect(node.url) as a, arqonbus.connect(node.url) as b, arqonbus.connect(node.url) as c:
        for bus in (a, b, c):
            await bus.subscribe(room, "lobby")
        first = await a.presence(room, "lobby", limit=2)
        assert len(first.clients) == 2 and first.next_cursor is not None
        second = await a.presence(room, "lobby", cursor=first.next_cursor, limit=2)
        assert len(second.clients) == 1 and second.next_cursor is None
        everyone = await a.presence_all(room, "lobby", page_limit=1)
        assert {x.client_id for x in everyone} == {a.client_id, b.client_id, c.client_id}


async def test_s06_private_to_client_and_not_connected(node: Node) -> None:
    async with arqonbus.connect(node.url) as alice, arqonbus.connect(node.url) as bob:
        assert bob.client_id is not None
        sent = await alice.send_private({"text": "hi bob"}, client=bob.client_id)
        assert sent.delivered == 1 and sent.id.startswith("arq_")
        [msg] = await take(bob.private_messages(), 1)
        assert msg.payload == {"text": "hi bob"} and msg.raw_payload == '{"text":"hi bob"}'
        assert msg.sender == alice.client_id and msg.to == {"client": bob.client_id}
        with pytest.raises(arqonbus.ArqonBusError) as err:
            await alice.send_private("?", client="c_00000000000000000000000000000000")
        assert err.value.code == "NOT_CONNECTED"

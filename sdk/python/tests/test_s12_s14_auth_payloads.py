"""S06 (private to a user), S12 (token refresh), S14 (payload fidelity)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import arqonbus
from conftest import JWT_SECRET, take
from harness import Node, Proxy, make_jwt

EXACT = '{"big":12345678901234567890123456789012345678901,"f":1.0,"s":"\\u00e9","nested":{"z":1,"a":[1.0,-0.0,2e3]}}'


def jwt_node(start_node: Callable[..., Node]) -> Node:
    return start_node("a", ARQONBUS_AUTH__KIND="jwt", ARQONBUS_AUTH__JWT_SECRET=JWT_SECRET)


async def test_s06_private_to_a_user_reaches_each_connection(start_node: Callable[..., Node]) -> None:
    node = jwt_node(start_node)
    alice = make_jwt(JWT_SECRET, "alice", 300)
    bob = make_jwt(JWT_SECRET, "bob", 300)
    async with (
        arqonbus.connect(node.url, token=alice) as a,
        arqonbus.connect(node.url, token=bob) as b1,
        arqonbus.connect(node.url, token=bob) as b2,
    ):
        sent = await a.send_private({"text": "hi bob"}, user="bob")
        assert sent.delivered == 2
        for bus in (b1, b2):
            [msg] = await take(bus.private_messages(), 1)
            assert msg.user == "alice" and msg.to == {"user": "bob"} and msg.payload == {"text": "hi bob"}
        try:
            await a.send_private(1, user="carol")
            raise AssertionError("expected NOT_CONNECTED")
        except arqonbus.ArqonBusError as err:
            assert err.code == "NOT_CONNECTED"


async def test_s12_token_provider_refreshes_before_expiry(start_node: Callable[..., Node], room: str) -> None:
    node = jwt_node(start_node)
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return make_jwt(JWT_SECRET, "alice", 3)

    async with arqonbus.connect(node.url, token_provider=provider) as bus:
        seen: list[str] = []
        bus.on_state(lambda s: seen.append(s.state))
        client_id = bus.client_id
        sub = await bus.subscribe(room, "c")
        await asyncio.sleep(7.5)  # more than two token lifetimes
        ack = await bus.publish(room, "c", "still here")
        [event] = await take(sub, 1)
        assert event.offset == ack.offset
        assert bus.client_id == client_id and "disconnected" not in seen, seen
        assert bus.refreshes >= 2 and calls >= 3


async def test_s12_token_provider_called_again_on_reconnect(start_node: Callable[..., Node]) -> None:
    node = jwt_node(start_node)
    proxy = await Proxy(node.port).start()
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        return make_jwt(JWT_SECRET, "alice", 300)

    try:
        async with arqonbus.connect(proxy.url, token_provider=provider, reconnect_initial_s=0.05) as bus:
            first = bus.client_id
            states = bus.states()
            proxy.cut()
            async for change in states:
                if change.state == "connected":
                    break
            assert calls == 2 and bus.client_id != first
            assert bus.welcome is not None and bus.welcome.user == "alice"
    finally:
        await proxy.stop()


async def test_s14_raw_payload_is_byte_exact_live_and_in_history_needs_byte_exact_server(bus: arqonbus.Bus, room: str) -> None:
    sub = await bus.subscribe(room, "raw")
    ack = await bus.publish(room, "raw", raw_payload=EXACT)
    [event] = await take(sub, 1)
    assert event.offset == ack.offset
    assert event.raw_payload == EXACT
    assert event.payload["big"] == 12345678901234567890123456789012345678901
    [stored] = (await bus.history(room, "raw")).events
    assert stored.raw_payload == EXACT


async def test_s14_python_values_round_trip_needs_byte_exact_server(bus: arqonbus.Bus, room: str) -> None:
    value = {"big": 12345678901234567890123456789012345678901, "s": "é ü 日本", "list": [1, 2.5, None, True]}
    sub = await bus.subscribe(room, "values")
    await bus.publish(room, "values", value)
    [event] = await take(sub, 1)
    assert event.payload == value


async def test_s14_private_raw_payload_is_byte_exact_needs_byte_exact_server(node: Node) -> None:
    async with arqonbus.connect(node.url) as a, arqonbus.connect(node.url) as b:
        assert b.client_id is not None
        await a.send_private(raw_payload=EXACT, client=b.client_id)
        [msg] = await take(b.private_messages(), 1)
        assert msg.raw_payload == EXACT

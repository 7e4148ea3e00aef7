"""S07: every error a user can trigger surfaces as ArqonBusError with the exact code."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

import arqonbus
from conftest import JWT_SECRET, take
from harness import Node, make_jwt


async def expect_code(code: str, awaitable: object) -> arqonbus.ArqonBusError:
    with pytest.raises(arqonbus.ArqonBusError) as err:
        await awaitable  # type: ignore[misc]
    assert err.value.code == code, err.value
    return err.value


async def test_s07_validation_error_bad_room_name(bus: arqonbus.Bus) -> None:
    err = await expect_code("VALIDATION_ERROR", bus.publish("bad room!", "c", 1))
    assert err.field == "room" and err.idempotency_key is not None
    err = await expect_code("VALIDATION_ERROR", bus.subscribe("ok", "bad channel!"))
    assert err.field == "channel"
    await expect_code("VALIDATION_ERROR", bus.history("ok", "c", limit=0))


async def test_s07_forbidden_and_unauthorized_with_jwt(start_node: Callable[..., Node], room: str) -> None:
    node = start_node("a", ARQONBUS_AUTH__KIND="jwt", ARQONBUS_AUTH__JWT_SECRET=JWT_SECRET)
    reader = make_jwt(JWT_SECRET, "reader", 300, {"subscribe": [f"{room}:*"], "publish": [], "private": False})
    async with arqonbus.connect(node.url, token=reader) as bus:
        assert bus.welcome is not None and bus.welcome.user == "reader"
        await expect_code("FORBIDDEN", bus.publish(room, "news", {"x": 1}))
        await expect_code("FORBIDDEN", bus.subscribe("elsewhere", "news"))
        await expect_code("FORBIDDEN", bus.send_private("hi", user="reader"))
        await expect_code("FORBIDDEN", bus.create_channel(room, "new"))
        await bus.subscribe(room, "news")  # allowed
    err = await expect_code("UNAUTHORIZED", arqonbus.connect(node.url, token="not-a-valid-token").start())
    assert err.status == 401
    expired_secret = make_jwt("another-secret-that-is-long-enough-000000", "x", 300)
    await expect_code("UNAUTHORIZED", arqonbus.connect(node.url, token_provider=lambda: expired_secret).start())


async def test_s07_not_found_when_auto_create_is_off(start_node: Callable[..., Node], room: str) -> None:
    node = start_node("a", ARQONBUS_CHANNELS__AUTO_CREATE="false")
    async with arqonbus.connect(node.url) as bus:
        await expect_code("NOT_FOUND", bus.channel_info(room, "unknown"))
        await expect_code("NOT_FOUND", bus.publish(room, "unknown", 1))
        await expect_code("NOT_FOUND", bus.subscribe(room, "unknown"))


async def test_s07_not_found_channel_info_of_unknown_channel_needs_issue7_server(bus: arqonbus.Bus, room: str) -> None:
    await expect_code("NOT_FOUND", bus.channel_info(room, "unknown"))


async def test_s07_channel_exists(bus: arqonbus.Bus, room: str) -> None:
    info = await bus.create_channel(room, "lab", description="Lab chatter", history_size=5)
    assert info["history_size"] == 5 and info["description"] == "Lab chatter"
    await expect_code("CHANNEL_EXISTS", bus.create_channel(room, "lab"))


async def test_s07_already_and_not_subscribed(bus: arqonbus.Bus, room: str) -> None:
    sub = await bus.subscribe(room, "x")
    # The SDK keeps one subscription per channel: a second is refused before reaching the server.
    with pytest.raises(arqonbus.ArqonBusError) as err:
        bus.subscribe(room, "x")
    assert err.value.code == "ALREADY_SUBSCRIBED"
    await sub.close()
    await sub.close()  # closing twice is a no-op, never NOT_SUBSCRIBED
    # The raw command passes the server's answer through.
    await expect_code("NOT_SUBSCRIBED", bus.command("unsubscribe", {"room": room, "channel": "x"}))
    again = await bus.subscribe(room, "x")  # a closed subscription frees the channel
    await bus.command("subscribe", {"room": room, "channel": "y"})
    await expect_code("ALREADY_SUBSCRIBED", bus.command("subscribe", {"room": room, "channel": "y"}))
    await again.close()


async def test_s07_not_connected(bus: arqonbus.Bus) -> None:
    await expect_code("NOT_CONNECTED", bus.send_private({"a": 1}, client="c_00000000000000000000000000000000"))
    await expect_code("NOT_CONNECTED", bus.send_private({"a": 1}, user="nobody"))


async def test_s07_rate_limited_raised_with_retry_after_in_raise_mode(node: Node, room: str) -> None:
    async with arqonbus.connect(node.url, rate_limit="raise") as bus:
        results = await asyncio.gather(*(bus.publish(room, "burst", i) for i in range(150)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors, "150 publishes at once should exceed a burst of 100"
    for err in errors:
        assert isinstance(err, arqonbus.ArqonBusError) and err.code == "RATE_LIMITED"
        assert err.retry_after_ms is not None and err.retry_after_ms >= 1
    stored = [r for r in results if isinstance(r, arqonbus.Published)]
    assert len(stored) + len(errors) == 150 and len(stored) >= 100


async def test_s07_rate_limited_waited_out_in_wait_mode(bus: arqonbus.Bus, room: str) -> None:
    acks = await asyncio.gather(*(bus.publish(room, "burst", i) for i in range(160)))
    # every publish stored exactly once (a refused one, retried, may land after later ones)
    assert sorted(a.offset for a in acks) == list(range(1, 161))
    page = await bus.history(room, "burst", limit=1000)
    assert sorted(e.payload for e in page.events) == list(range(160))


async def test_s07_limit_exceeded_max_subscriptions(start_node: Callable[..., Node], room: str) -> None:
    node = start_node("a", ARQONBUS_LIMITS__MAX_SUBSCRIPTIONS=2)
    async with arqonbus.connect(node.url) as bus:
        assert bus.welcome is not None and bus.welcome.limits.max_subscriptions == 2
        await bus.subscribe(room, "one")
        await bus.subscribe(room, "two")
        await expect_code("LIMIT_EXCEEDED", bus.subscribe(room, "three"))
        # the refused subscription is gone: its channel can be tried again later
        with pytest.raises(arqonbus.ArqonBusError):
            await bus.subscribe(room, "three")


async def test_s07_unsubscribed_channel_deleted_ends_iteration(bus: arqonbus.Bus, room: str) -> None:
    sub = await bus.subscribe(room, "doomed")
    await bus.publish(room, "doomed", 1)
    await take(sub, 1)
    await bus.delete_channel(room, "doomed")
    with pytest.raises(arqonbus.ArqonBusError) as err:
        await take(sub, 1)
    assert err.value.code == "UNSUBSCRIBED" and err.value.reason == "channel_deleted"


async def test_s07_closed_bus_and_queue_full(node: Node, room: str) -> None:
    bus = await arqonbus.connect(node.url, max_pending_publishes=3, rate_limit="raise")
    pending = [asyncio.ensure_future(bus.publish(room, "q", i)) for i in range(3)]
    await asyncio.sleep(0)
    await expect_code("QUEUE_FULL", bus.publish(room, "q", 4))
    await asyncio.gather(*pending)
    await bus.close()
    await expect_code("CLOSED", bus.publish(room, "q", 5))
    await expect_code("CLOSED", bus.history(room, "q"))


async def test_connect_to_nothing_times_out_with_the_last_error() -> None:
    from harness import free_port

    bus = arqonbus.connect(f"ws://127.0.0.1:{free_port()}/ws", connect_timeout_s=0.5, reconnect_initial_s=0.05)
    err = await expect_code("TIMEOUT", bus.start())
    assert "CONNECTION_FAILED" in err.message


async def test_s07_command_rate_limited_needs_issue7_server(node: Node) -> None:
    async with arqonbus.connect(node.url, rate_limit="raise") as bus:
        assert bus.welcome is not None
        limits = bus.welcome.limits
        assert limits.command_rate_per_s and limits.command_burst
        assert limits.outbound_queue_bytes and limits.max_reply_bytes
        burst = limits.command_burst
        results = await asyncio.gather(*(bus.ping() for _ in range(burst + 50)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors and all(isinstance(e, arqonbus.ArqonBusError) and e.code == "RATE_LIMITED" for e in errors)
        assert all(e.retry_after_ms and e.retry_after_ms >= 1 for e in errors if isinstance(e, arqonbus.ArqonBusError))
    async with arqonbus.connect(node.url) as paced:  # "wait" mode: paced under the bucket, all answered
        pongs = await asyncio.gather(*(paced.ping() for _ in range(burst + 50)))
        assert all(p["pong"] is True for p in pongs)

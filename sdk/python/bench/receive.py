"""Measures the SDK's receive path: events/s through `async for item in bus.subscribe(…)`.

Start a node whose per-connection publish limit is raised, e.g. from the repository root:

    ARQONBUS_LIMITS__PUBLISH_RATE_PER_S=1000000 ARQONBUS_LIMITS__PUBLISH_BURST=1000000 \\
    ARQONBUS_LIMITS__OUTBOUND_QUEUE=65536 cargo run --release

then run `python sdk/python/bench/receive.py --events 300000 --publishers 3`.

live mode: several publisher processes (raw WebSocket, no acks) publish as fast as they can
while one SDK subscription consumes; replay mode: the channel is filled first, then one SDK
subscription reads it all with `since=0` (the server replays in pages), so the number is the
SDK's alone. Both check that every offset arrived exactly once and in order.

external mode: only the SDK subscriber runs here; the server's own load generator publishes
(it costs far less CPU than Python publishers on a small machine):

    arqonbus bench --url ws://127.0.0.1:8080/ws --room benchlive --channels 1 --subscribers 1 \
        --publishers 2 --rate 50000 --duration-secs 12 --warmup-secs 1 &
    python sdk/python/bench/receive.py --mode external --room benchlive --channel c0 --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
import uuid

from websockets.asyncio.client import connect as ws_connect

import arqonbus


async def _flood(url: str, room: str, channel: str, count: int, pad: str) -> None:
    async with ws_connect(url, compression=None, max_size=None) as ws:
        await ws.recv()  # welcome
        for i in range(count):
            await ws.send(json.dumps({"type": "event", "room": room, "channel": channel, "payload": {"i": i, "pad": pad}}))
        await ws.send(json.dumps({"type": "command", "id": "done", "command": "ping"}))
        async for text in ws:  # errors (e.g. RATE_LIMITED) would come before the ping's reply
            frame = json.loads(text)
            if frame.get("type") == "error":
                raise SystemExit(f"publisher refused: {frame['error']}")
            if frame.get("request_id") == "done":
                return


def _publisher(url: str, room: str, channel: str, count: int, pad: str) -> None:
    asyncio.run(_flood(url, room, channel, count, pad))


def _start_publishers(url: str, room: str, channel: str, events: int, publishers: int, pad: str) -> list[multiprocessing.Process]:
    share = events // publishers
    procs = []
    for p in range(publishers):
        n = share if p < publishers - 1 else events - share * (publishers - 1)
        proc = multiprocessing.Process(target=_publisher, args=(url, room, channel, n, pad))
        proc.start()
        procs.append(proc)
    return procs


async def _consume(sub: arqonbus.Subscription, events: int, timeout_s: float) -> tuple[float, float]:
    expected, first_at = 1, 0.0
    deadline = time.monotonic() + timeout_s
    async for item in sub:
        if not isinstance(item, arqonbus.Event):
            raise SystemExit(f"unexpected item: {item}")
        if item.offset != expected:
            raise SystemExit(f"offset {item.offset}, expected {expected}")
        if expected == 1:
            first_at = time.monotonic()
        if expected == events:
            return first_at, time.monotonic()
        expected += 1
        if expected % 10000 == 0 and time.monotonic() > deadline:
            raise SystemExit(f"only {expected} events within {timeout_s}s")
    raise SystemExit("subscription ended")


async def _watch(url: str, room: str, channel: str, seconds: float) -> None:
    """external mode: consume what another load generator publishes, for `seconds`."""
    async with arqonbus.connect(url) as bus:
        sub = await bus.subscribe(room, channel)
        events = gaps = 0
        first = last_offset = None
        async for item in sub:
            now = time.monotonic()
            if isinstance(item, arqonbus.Gap):  # the consumer fell behind the channel's retention
                gaps += 1
                last_offset = item.to_offset if item.to_offset is not None else last_offset
                continue
            if not isinstance(item, arqonbus.Event):
                continue
            if first is None:
                first, last_offset = now, item.offset - 1
            if last_offset is not None and item.offset != last_offset + 1:
                raise SystemExit(f"offset {item.offset} after {last_offset}")
            last_offset = item.offset
            events += 1
            if now - first >= seconds:
                break
        assert first is not None
        took = time.monotonic() - first
        print(f"external: {events} events in {took:.2f}s = {events / took:,.0f} events/s, in order; "
              f"gaps {gaps}, subscription overflowed {sub.overflowed} times")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--publishers", type=int, default=3)
    parser.add_argument("--payload-bytes", type=int, default=64)
    parser.add_argument("--mode", choices=["live", "replay", "both", "external"], default="both")
    parser.add_argument("--room", default="bench", help="external mode: the room to watch")
    parser.add_argument("--channel", default="c0", help="external mode: the channel to watch")
    parser.add_argument("--seconds", type=float, default=8.0, help="external mode: how long to watch")
    parser.add_argument("--timeout-s", type=float, default=300.0)
    args = parser.parse_args()
    pad = "x" * args.payload_bytes
    if args.mode == "external":
        await _watch(args.url, args.room, args.channel, args.seconds)
        return

    for mode in ("live", "replay") if args.mode == "both" else (args.mode,):
        room, channel = "bench", f"rx-{uuid.uuid4().hex[:8]}"
        async with arqonbus.connect(args.url) as bus:
            await bus.create_channel(room, channel, history_size=min(args.events, 100_000) if mode == "live" else args.events)
            if mode == "live":
                sub = await bus.subscribe(room, channel)
                procs = _start_publishers(args.url, room, channel, args.events, args.publishers, pad)
                first, last = await _consume(sub, args.events, args.timeout_s)
            else:
                procs = _start_publishers(args.url, room, channel, args.events, args.publishers, pad)
                for proc in procs:
                    proc.join(args.timeout_s)
                sub = await bus.subscribe(room, channel, since=0)
                first, last = await _consume(sub, args.events, args.timeout_s)
            for proc in procs:
                proc.join(args.timeout_s)
            rate = (args.events - 1) / (last - first)
            print(f"{mode}: {args.events} events ({args.payload_bytes}-byte pad) in {last - first:.2f}s = {rate:,.0f} events/s, "
                  f"in order, none lost or doubled; subscription overflowed {sub.overflowed} times")


if __name__ == "__main__":
    asyncio.run(main())

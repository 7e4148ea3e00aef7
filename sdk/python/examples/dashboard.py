"""A live dashboard fed by the HTTP publish API.

A backend job posts readings with plain HTTP (no WebSocket, just the API key); the dashboard
shows the latest reading per host, starting from recent history, then live.

    ARQONBUS_HTTP__API_KEY=change-me-0123456789 cargo run --release
    python dashboard.py show                                   # the dashboard
    python dashboard.py feed --api-key change-me-0123456789    # the backend job
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import urllib.request
import uuid

import arqonbus

ROOM, CHANNEL = "metrics", "hosts"


def feed(http: str, api_key: str, count: int, interval_s: float) -> None:
    """Posts `count` readings of three hosts to POST /v1/publish."""
    run = uuid.uuid4().hex[:8]  # a retried POST reuses its key; another run gets new keys
    for n in range(count):
        host = f"web-{n % 3 + 1}"
        reading = {"host": host, "cpu": round(random.uniform(5, 95), 1), "rps": random.randint(100, 900), "seq": n}
        body = json.dumps({"room": ROOM, "channel": CHANNEL, "payload": reading, "idempotency_key": f"{run}-{n}"})
        request = urllib.request.Request(
            f"{http}/v1/publish",
            data=body.encode(),
            method="POST",
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            ack = json.loads(answer.read())
        print(f"posted {host} as offset {ack['offset']}", flush=True)
        time.sleep(interval_s)


async def show(url: str, updates: int | None) -> None:
    latest: dict[str, dict[str, object]] = {}
    async with arqonbus.connect(url) as bus:
        recent = await bus.history(ROOM, CHANNEL, limit=50)
        for event in recent.events:
            latest[event.payload["host"]] = event.payload
        since = recent.events[-1].offset if recent.events else 0
        updates_feed = await bus.subscribe(ROOM, CHANNEL, since=since)
        print(f"{len(latest)} hosts from history, waiting for live readings", flush=True)
        seen = 0
        async for item in updates_feed:
            if not isinstance(item, arqonbus.Event):
                continue  # a Gap: readings we missed for good; the next ones refresh the table
            latest[item.payload["host"]] = item.payload
            table = "  ".join(f"{h}: cpu {r['cpu']}% {r['rps']} rps" for h, r in sorted(latest.items()))
            print(f"#{item.offset}  {table}", flush=True)
            seen += 1
            if updates is not None and seen >= updates:
                return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["show", "feed"])
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    parser.add_argument("--http", default="http://127.0.0.1:8080")
    parser.add_argument("--api-key", help="the server's ARQONBUS_HTTP__API_KEY (feed)")
    parser.add_argument("--count", type=int, default=30, help="readings to post (feed)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between readings (feed)")
    parser.add_argument("--updates", type=int, help="stop after this many live updates (show)")
    args = parser.parse_args()
    if args.mode == "feed":
        if not args.api_key:
            parser.error("feed needs --api-key")
        feed(args.http, args.api_key, args.count, args.interval)
    else:
        asyncio.run(show(args.url, args.updates))


if __name__ == "__main__":
    main()

"""A chat room with presence: type a line to say it, /who to see who is here, Ctrl-D to leave.

    python chat.py alice            # in one terminal
    python chat.py bob              # in another
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import arqonbus

names: dict[str, str] = {}  # client id → name, learnt from each member's "hello"


def show(line: str) -> None:
    print(line, flush=True)


async def read_room(sub: arqonbus.Subscription) -> None:
    async for item in sub:
        if isinstance(item, arqonbus.Event):
            msg = item.payload
            if item.sender:
                names[item.sender] = msg["name"]
            if msg["kind"] == "hello":
                show(f"* {msg['name']} is here")
            else:
                show(f"[{msg['name']}] {msg['text']}")
        elif isinstance(item, arqonbus.PresenceChange) and item.kind == "leave":
            show(f"* {names.get(item.client_id, item.client_id)} left")
        elif isinstance(item, arqonbus.Gap):
            show("* (some older messages are no longer available)")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    parser.add_argument("--room", default="lobby")
    args = parser.parse_args()

    async with arqonbus.connect(args.url) as bus:
        try:  # join/leave frames need a declared channel
            await bus.create_channel(args.room, "chat", presence_events=True, history_size=100)
        except arqonbus.ArqonBusError as err:
            if err.code != "CHANNEL_EXISTS":
                raise
        recent = await bus.history(args.room, "chat", limit=10)
        for event in recent.events:
            if event.sender:
                names[event.sender] = event.payload["name"]
            if event.payload["kind"] == "say":
                show(f"[{event.payload['name']}] {event.payload['text']}  (earlier)")
        since = recent.events[-1].offset if recent.events else None
        sub = await bus.subscribe(args.room, "chat", since=since)
        reader = asyncio.create_task(read_room(sub))
        await bus.publish(args.room, "chat", {"kind": "hello", "name": args.name})

        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            text = line.strip()
            if text == "/who":
                here = await bus.presence_all(args.room, "chat")
                show("* online: " + ", ".join(sorted(names.get(c.client_id, c.client_id) for c in here)))
            elif text:
                await bus.publish(args.room, "chat", {"kind": "say", "name": args.name, "text": text})
        reader.cancel()


if __name__ == "__main__":
    asyncio.run(main())

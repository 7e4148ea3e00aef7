"""The examples of docs/quickstart-python.md run as they are, against a real node; the doc
shows exactly the files' code."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import API_KEY
from harness import REPO_ROOT, Node

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, *args: str) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=EXAMPLES,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        return cls(proc)

    async def expect(self, text: str, timeout: float = 15.0) -> str:
        assert self.proc.stdout is not None

        async def scan() -> str:
            assert self.proc.stdout is not None
            while line := (await self.proc.stdout.readline()).decode():
                self.lines.append(line.rstrip("\n"))
                if text in line:
                    return line
            raise AssertionError(f"{text!r} never printed; output: {self.lines}")

        try:
            return await asyncio.wait_for(scan(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{text!r} not printed within {timeout}s; output: {self.lines}") from None

    async def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def finish(self, timeout: float = 15.0) -> int:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"did not exit within {timeout}s; output: {self.lines}") from None


async def test_chat_example_with_presence(node: Node, room: str) -> None:
    alice = await Proc.start("chat.py", "alice", "--url", node.url, "--room", room)
    await alice.expect("* alice is here")
    bob = await Proc.start("chat.py", "bob", "--url", node.url, "--room", room)
    await bob.expect("* bob is here")
    await alice.expect("* bob is here")
    await alice.say("hi bob")
    await bob.expect("[alice] hi bob")
    await bob.say("/who")
    await bob.expect("* online: alice, bob")
    assert await alice.finish() == 0
    await bob.expect("* alice left")
    carol = await Proc.start("chat.py", "carol", "--url", node.url, "--room", room)
    await carol.expect("[alice] hi bob  (earlier)")
    assert await bob.finish() == 0 and await carol.finish() == 0


async def test_dashboard_example_fed_over_http(start_node: Callable[..., Node]) -> None:
    node = start_node("a", ARQONBUS_HTTP__API_KEY=API_KEY)
    show = await Proc.start("dashboard.py", "show", "--url", node.url, "--updates", "6")
    await show.expect("0 hosts from history, waiting for live readings")
    feed = await Proc.start(
        "dashboard.py", "feed", "--http", node.http, "--api-key", API_KEY, "--count", "6", "--interval", "0.05"
    )
    await feed.expect("posted web-3 as offset 6")
    assert await feed.finish() == 0
    last = await show.expect("#6 ")
    assert "web-1: cpu" in last and "web-2: cpu" in last and "web-3: cpu" in last
    assert await show.finish() == 0
    # A dashboard started later fills its table from history, then waits for live readings.
    late = await Proc.start("dashboard.py", "show", "--url", node.url, "--updates", "1")
    await late.expect("3 hosts from history, waiting for live readings")
    feed = await Proc.start("dashboard.py", "feed", "--http", node.http, "--api-key", API_KEY, "--count", "1")
    assert await feed.finish() == 0
    line = await late.expect("#7 ")
    assert "web-2: cpu" in line and "web-3: cpu" in line  # from history
    assert await late.finish() == 0


def test_quickstart_shows_the_example_files_verbatim() -> None:
    doc = (REPO_ROOT / "docs" / "quickstart-python.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    for name in ("chat.py", "dashboard.py"):
        assert (EXAMPLES / name).read_text(encoding="utf-8") in blocks, f"docs/quickstart-python.md differs from {name}"

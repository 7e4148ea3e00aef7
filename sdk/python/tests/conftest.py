"""Fixtures: the arqonbus binary (ARQONBUS_BIN, else built), nodes, Redis, waiting tools."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import arqonbus
from harness import Node, Redis, arqonbus_binary

JWT_SECRET = "test-secret-0123456789-0123456789-abcdef"
API_KEY = "test-api-key-0123456789"


@pytest.fixture(scope="session")
def binary() -> str:
    return arqonbus_binary()


@pytest.fixture
def start_node(binary: str, tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """start_node(name, **env) → a started node; every node is stopped after the test."""
    nodes: list[Node] = []

    def start(name: str = "a", **env: str) -> Node:
        node = Node(binary, tmp_path, name, {k: str(v) for k, v in env.items()})
        nodes.append(node)
        return node.start()

    yield start
    for node in nodes:
        node.kill()


@pytest.fixture
def node(start_node: Callable[..., Node]) -> Node:
    return start_node("a", ARQONBUS_HTTP__API_KEY=API_KEY)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    server = Redis(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def room() -> str:
    return f"r{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def bus(node: Node) -> AsyncIterator[arqonbus.Bus]:
    async with arqonbus.connect(node.url, reconnect_initial_s=0.05, reconnect_max_s=0.5) as b:
        yield b


async def take(it: Any, n: int, timeout: float = 20.0) -> list[Any]:
    """The next n items of an async iterator, within `timeout` seconds."""
    out: list[Any] = []

    async def run() -> None:
        while len(out) < n:
            out.append(await it.__anext__())

    try:
        await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"got {len(out)} of {n} items within {timeout}s: {out[-3:]}") from None
    return out


async def take_until_offset(sub: Any, last: int, timeout: float = 30.0) -> list[Any]:
    """Items until an Event with offset `last` arrived."""
    out: list[Any] = []

    async def run() -> None:
        async for item in sub:
            out.append(item)
            if isinstance(item, arqonbus.Event) and item.offset >= last:
                return

    try:
        await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        offsets = [i.offset for i in out if isinstance(i, arqonbus.Event)]
        raise AssertionError(f"offset {last} not reached within {timeout}s; last offsets {offsets[-5:]}") from None
    return out


def offsets(items: list[Any]) -> list[int]:
    return [i.offset for i in items if isinstance(i, arqonbus.Event)]

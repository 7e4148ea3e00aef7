"""X01: a JS publisher → Python subscriber and a Python publisher → JS subscriber agree on
payloads byte for byte. Drives the TypeScript SDK's scripts from the repository root:

    node sdk/js/test/cross/publisher.mjs URL ROOM CHANNEL PAYLOAD_FILE
    node sdk/js/test/cross/subscriber.mjs URL ROOM CHANNEL COUNT [--timeout-ms=MS]

Each prints one exact JSON payload text per line. The TypeScript build (sdk/js/dist) is made
with `npm ci` and `npm run build` when it is missing.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import arqonbus
from conftest import take
from harness import REPO_ROOT, Node

JS = REPO_ROOT / "sdk" / "js"
PAYLOADS = [
    '{"big":12345678901234567890123456789012345678901,"f":1.0,"s":"\\u00e9","nested":{"z":1,"a":[1.0,-0.0,2e3]}}',
    '{"text":"line\\nbreak \\"quoted\\" \\ud83d\\ude00 日本"}',
    "123456789012345678901234567890",
    '"\\u00e9t\\u00e9"',
    "null",
    '{"deep":[[[{"k":[]}]]],"empty":{}}',
    "-0.0",
]


def js_ready() -> None:
    assert (JS / "test" / "cross").is_dir(), "sdk/js/test/cross is missing: X01 needs the TypeScript SDK beside this one"
    node = shutil.which("node")
    assert node is not None, "node is required for X01"
    if not (JS / "dist" / "index.js").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True, timeout=600)
        subprocess.run(["npm", "run", "build"], cwd=JS, check=True, timeout=600)


async def run_node(*args: str, timeout: float = 60.0) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        "node", *args, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"node {args[0]} did not finish within {timeout}s") from None
    assert proc.returncode == 0, f"node {args[0]} exited {proc.returncode}: {err.decode(errors='replace')}"
    return out.decode().splitlines()


async def test_x01_js_publisher_to_python_subscriber(node: Node, room: str, tmp_path: Path) -> None:
    js_ready()
    payload_file = tmp_path / "payloads.jsonl"
    payload_file.write_text("".join(p + "\n" for p in PAYLOADS), encoding="utf-8")
    async with arqonbus.connect(node.url) as bus:
        sub = await bus.subscribe(room, "js-to-py")
        printed = await run_node("sdk/js/test/cross/publisher.mjs", node.url, room, "js-to-py", str(payload_file))
        assert printed == PAYLOADS
        events = await take(sub, len(PAYLOADS))
    assert [e.raw_payload for e in events] == PAYLOADS


async def test_x01_python_publisher_to_js_subscriber(node: Node, room: str) -> None:
    js_ready()
    async with arqonbus.connect(node.url) as bus:
        for text in PAYLOADS:
            await bus.publish(room, "py-to-js", raw_payload=text)
    received = await run_node(
        "sdk/js/test/cross/subscriber.mjs", node.url, room, "py-to-js", str(len(PAYLOADS)), "--timeout-ms=30000"
    )
    assert received == PAYLOADS

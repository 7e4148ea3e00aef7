"""Real processes for the tests: arqonbus nodes and redis-server on free ports, a TCP proxy
that can swallow answers and cut connections, and HS256 tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]
START_DEADLINE_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def arqonbus_binary() -> str:
    """ARQONBUS_BIN when set, else `cargo build --release` at the repository root."""
    given = os.environ.get("ARQONBUS_BIN")
    if given:
        if not os.access(given, os.X_OK):
            raise RuntimeError(f"ARQONBUS_BIN={given} is not an executable file")
        return given
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO_ROOT, check=True, timeout=3600)
    return str(REPO_ROOT / "target" / "release" / "arqonbus")


def http_json(method: str, url: str, body: Any = None, key: str | None = None, timeout: float = 5.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, json.loads(raw) if raw else None


class Node:
    """One arqonbus process on a fixed port (kept across restarts)."""

    def __init__(self, binary: str, workdir: Path, name: str, env: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.name = name
        self.port = free_port()
        self.env = dict(env or {})
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Node:
        # The server refuses unknown ARQONBUS_* variables (ARQONBUS_BIN among them): pass none on.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("ARQONBUS_")}
        env = {
            **inherited,
            "ARQONBUS_SERVER__LISTEN": f"127.0.0.1:{self.port}",
            "ARQONBUS_SERVER__NODE_ID": self.name,
            "ARQONBUS_LOG__LEVEL": "warn",
            **self.env,
        }
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.log_path.parent)
        log.close()
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"arqonbus {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if http_json("GET", f"{self.http}/readyz", timeout=1.0)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"arqonbus {self.name} not ready within {START_DEADLINE_S}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no draining, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class Redis:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (sdk/python/test.sh installs it with apt-get)")
        self.port = free_port()
        self.log_path = workdir / "redis.log"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server not ready within {START_DEADLINE_S}s")

    def node_env(self) -> dict[str, str]:
        return {
            "ARQONBUS_BACKPLANE__URL": f"redis://127.0.0.1:{self.port}",
            "ARQONBUS_BACKPLANE__KEY_PREFIX": f"t{uuid.uuid4().hex[:12]}",
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Proxy:
    """A TCP proxy in the test's event loop, in front of one node.

    `hold_answers()` stops forwarding server → client bytes (the server has them, the client
    never does) until `cut()` closes every proxied connection at once; `resume()` forwards
    again for new connections; `refusing` drops new connections at once (a node that is down).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.holding = False
        self.refusing = False

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, downstream: bool) -> None:
            try:
                while data := await src.read(65536):
                    if downstream and self.holding:
                        continue
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, False), pump(up_reader, writer, True))

    def hold_answers(self) -> None:
        self.holding = True

    def resume(self) -> None:
        self.holding = False

    def cut(self) -> None:
        writers, self._writers = self._writers, []
        for w in writers:
            w.transport.abort()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(secret: str, sub: str, ttl_s: float, perms: dict[str, Any] | None = None) -> str:
    """An HS256 token as the server expects (protocol §5.1)."""
    claims = {
        "sub": sub,
        "exp": int(time.time() + ttl_s),
        "arqonbus": perms
        if perms is not None
        else {"subscribe": ["*:*"], "publish": ["*:*"], "private": True, "admin": True},
    }
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"

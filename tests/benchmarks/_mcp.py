"""MCP server benchmarks: how soon `codeexec mcp` answers `initialize`, and what an
`execute_code` call adds over the library's execute, over stdio and over HTTP.

Raw JSON-RPC clients (a pipe, one keep-alive HTTP connection), so the numbers are the
server's and not a client SDK's; each MCP call alternates with a library call on a
session of the same image, so both see the same moments of a noisy machine.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codeexec import ContainerSession

from . import _util as u

CODEEXEC = str(Path(sys.executable).with_name("codeexec"))
INIT = {
    "protocolVersion": "2025-11-25",
    "capabilities": {},
    "clientInfo": {"name": "bench", "version": "0"},
}
CALL = {"name": "execute_code", "arguments": {"code": "pass"}}


def _env(session: str) -> dict[str, str]:
    return {**os.environ, "CODEEXEC_MCP_DEFAULT_SESSION": session, "CODEEXEC_MCP_TOKEN": "bench"}


class Stdio:
    """`codeexec mcp` on a pipe."""

    def __init__(self, session: str) -> None:
        self.began = time.perf_counter()
        self.proc = subprocess.Popen(
            [CODEEXEC, "mcp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_env(session),
        )
        self.next_id = 0

    def send(self, method: str, params: dict[str, Any] | None = None) -> None:
        assert self.proc.stdin is not None
        message = {"jsonrpc": "2.0", "method": method, "params": params or {}}
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.next_id += 1
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()
        while True:
            reply: dict[str, Any] = json.loads(self.proc.stdout.readline())
            if reply.get("id") == self.next_id:
                if "error" in reply or reply["result"].get("isError"):
                    raise RuntimeError(str(reply)[:300])
                return reply

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


class Http:
    """`codeexec mcp --http` on one keep-alive connection."""

    def __init__(self, session: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.proc = subprocess.Popen(
            [CODEEXEC, "mcp", "--http", f"127.0.0.1:{self.port}"],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_env(session),
        )
        self.session_id = ""
        self.next_id = 0
        deadline = time.monotonic() + 60
        while True:
            try:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self.call("initialize", INIT)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.1)
        self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def post(self, message: dict[str, Any]) -> str:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "Authorization": "Bearer bench",
        }
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        self.conn.request("POST", "/mcp", json.dumps(message), headers)
        response = self.conn.getresponse()
        self.session_id = response.getheader("mcp-session-id") or self.session_id
        body = response.read().decode()
        if response.status >= 400:
            raise RuntimeError(f"HTTP {response.status}: {body[:300]}")
        return body

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        body = self.post({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        for line in body.splitlines():  # an SSE stream, or plain JSON
            data = line[5:] if line.startswith("data:") else line
            if data.strip().startswith("{"):
                reply: dict[str, Any] = json.loads(data)
                if reply.get("id") == self.next_id:
                    if "error" in reply or reply["result"].get("isError"):
                        raise RuntimeError(str(reply)[:300])
                    return reply
        raise RuntimeError(f"no reply in {body[:300]!r}")

    def close(self) -> None:
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(timeout=60)


def _import_ms(module: str) -> dict[str, float]:
    argv = [sys.executable, "-c", f"import {module}"]
    return u.summary(u.timed(lambda: subprocess.run(argv, check=True), 3, warmup=1))


def initialize(session: str) -> dict[str, Any]:
    """Process start to `initialize` answered, and what importing costs of it."""
    samples = []
    for _ in range(3):
        server = Stdio(session)
        server.call("initialize", INIT)
        samples.append((time.perf_counter() - server.began) * 1000)
        server.close()
    return {
        "mcp_initialize_ms": u.summary(samples),
        "mcp_import_sdk_ms": _import_ms("mcp.server.mcpserver"),
        "mcp_import_server_ms": _import_ms("codeexec.mcp_server"),
    }


def per_call(lib: ContainerSession, n: int, session: str) -> dict[str, Any]:
    """execute_code('pass') over stdio and HTTP, each sample beside a library execute."""
    out: dict[str, Any] = {}
    for key, make in (("stdio", Stdio), ("http", Http)):
        server: Stdio | Http = make(f"{session}-{key}")
        try:
            if isinstance(server, Stdio):
                server.call("initialize", INIT)
                server.send("notifications/initialized")
            call: Callable[[], Any] = functools.partial(server.call, "tools/call", CALL)
            call()  # starts the session
            mcp: list[float] = []
            here: list[float] = []
            for _ in range(20):
                call()
                lib.execute("pass")
            for _ in range(n):
                mcp += u.timed(call, 1)
                here += u.timed(lambda: lib.execute("pass"), 1)
            out[f"mcp_{key}_exec_ms"] = u.summary(mcp)
            out[f"mcp_{key}_lib_ms"] = u.summary(here)
        finally:
            server.close()
    return out

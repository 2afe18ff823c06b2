"""The MCP server as a client runs it: a subprocess driven by the SDK's stdio client."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import ImageContent, TextContent

from tests.conftest import _session_containers, unique_name

pytestmark = [pytest.mark.docker, pytest.mark.anyio]

_PASSED_ENV = (
    "CODEEXEC_",
    "DOCKER_",
    "PIP_",
    "UV_",
    "SSL_CERT_",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _server_env(default_session: str) -> dict[str, str]:
    # The stdio client passes only HOME/PATH/...; the engine and index settings must follow.
    env = {k: v for k, v in os.environ.items() if k.startswith(_PASSED_ENV)}
    env["CODEEXEC_MCP_DEFAULT_SESSION"] = default_session
    return env


def _containers(*names: str) -> list[str]:
    return sorted(_session_containers("", names))


@asynccontextmanager
async def _server(default_session: str) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "codeexec.mcp_server"], env=_server_env(default_session)
    )
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                yield client
        finally:
            errlog.seek(0)
            sys.stderr.write(errlog.read()[-4000:])  # shown by pytest when a test fails


def _text(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return str(block.text)


async def _until_built(client: Client, args: dict[str, Any]) -> Any:
    """execute_code, called again while the session's image is still building."""
    deadline = time.monotonic() + 600
    while True:
        result = await client.call_tool("execute_code", args)
        if not (result.is_error and "still building" in _text(result)):
            return result
        assert time.monotonic() < deadline, _text(result)


async def test_stdio_sessions_end_to_end() -> None:
    default, named, extra = unique_name(), unique_name(), unique_name()
    async with _server(default) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {
            "start_code_executer",
            "execute_code",
            "stop_code_executer",
            "reuse_code_executer",
            "list_sessions",
        } <= set(tools)
        schema = tools["start_code_executer"].input_schema["properties"]["dependencies"]
        assert schema["type"] == "array" and schema["items"] == {"type": "string"}
        assert tools["execute_code"].output_schema is not None

        # execute_code before any start starts the (per-test) default session.
        first = await _until_built(client, {"code": "y = 20\ny + 1"})
        assert not first.is_error, _text(first)
        assert f"Started session {default!r}" in _text(first)
        assert first.structured_content is not None
        assert first.structured_content["value"] == "21"

        started = await client.call_tool(
            "start_code_executer", {"dependencies": ["six"], "name": named}
        )
        assert not started.is_error, _text(started)
        assert named in _text(started)
        imported = await _until_built(client, {"code": "import six\nx = 21"})
        assert imported.structured_content is not None
        assert imported.structured_content["status"] == "ok", _text(imported)
        assert imported.structured_content["session"] == named  # now the current one
        doubled = await client.call_tool("execute_code", {"code": "print('hi'); x * 2"})
        assert doubled.structured_content is not None
        assert doubled.structured_content["value"] == "42"
        assert "stdout:\nhi" in _text(doubled)

        # The user's exception is a result (isError false) whose status is "error".
        failed = await client.call_tool("execute_code", {"code": "1/0"})
        assert not failed.is_error
        assert failed.structured_content is not None
        assert failed.structured_content["status"] == "error"
        assert "ZeroDivisionError" in _text(failed)

        png = base64.b64encode(b"\x89PNG\r\n\x1a\n0000").decode()
        shown = await client.call_tool(
            "execute_code",
            {
                "code": (
                    "import base64\nclass P:\n    def _repr_png_(self):\n"
                    f"        return base64.b64decode({png!r})\nP()"
                )
            },
        )
        images = [b for b in shown.content if isinstance(b, ImageContent)]
        assert [i.mime_type for i in images] == ["image/png"] and images[0].data == png

        await client.call_tool("write_file", {"path": "notes.txt", "content": "héllo"})
        read = await client.call_tool("read_file", {"path": "notes.txt"})
        assert _text(read) == "héllo"

        sessions = await client.call_tool("list_sessions", {})
        assert sessions.structured_content is not None
        names = {s["name"] for s in sessions.structured_content["sessions"]}
        assert {default, named} <= names

        stopped = await client.call_tool("stop_code_executer", {"name": named})
        assert not stopped.is_error, _text(stopped)
        assert _containers(named) == []
        gone = await client.call_tool("execute_code", {"code": "x", "name": named})
        assert gone.is_error and "start_code_executer" in _text(gone)

        await client.call_tool("start_code_executer", {"name": extra})
        assert len(_containers(default, extra)) == 2
        closing = time.monotonic()
    # The client closed stdin and waited for the process: the containers are gone.
    took = time.monotonic() - closing
    assert _containers(default, extra) == []
    assert took < 2.0, f"the server took {took:.2f} s to clean up and exit"


def test_sigterm_removes_containers() -> None:
    default = unique_name()
    with subprocess.Popen(
        [sys.executable, "-m", "codeexec.mcp_server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **_server_env(default)},
    ) as proc:
        try:
            _drive_then_terminate(proc, default)
        finally:
            if proc.poll() is None:
                proc.kill()


def _drive_then_terminate(proc: subprocess.Popen[str], default: str) -> None:
    assert proc.stdin is not None and proc.stdout is not None

    def call(message: dict[str, Any]) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        proc.stdin.flush()
        while True:
            reply: dict[str, Any] = json.loads(proc.stdout.readline())
            if reply.get("id") == message["id"]:
                return reply

    call(
        {
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        }
    )
    proc.stdin.write('{"jsonrpc": "2.0", "method": "notifications/initialized"}\n')
    proc.stdin.flush()
    reply = call(
        {
            "id": 2,
            "method": "tools/call",
            "params": {"name": "execute_code", "arguments": {"code": "2 + 2"}},
        }
    )
    assert reply["result"]["structuredContent"]["value"] == "4", reply
    assert len(_containers(default)) == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert _containers(default) == []

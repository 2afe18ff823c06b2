"""`codeexec mcp --http`: the token, Host/Origin checks and per-client state, through the
TypeScript SDK client (two at once), the Python SDK client and raw requests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.conftest import _session_containers, unique_name
from tests.integration.test_mcp_outside_clients import CLIENTS, CODEEXEC, node

pytestmark = pytest.mark.docker


@dataclass
class HttpServer:
    url: str
    token: str
    port: int
    prefix: str  # CODEEXEC_MCP_DEFAULT_SESSION: client n's default session is prefix-n
    proc: subprocess.Popen[bytes]
    errlog: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    prefix, port = unique_name(), free_port()
    errlog = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "CODEEXEC_MCP_TOKEN"}
    with errlog.open("wb") as err:
        proc = subprocess.Popen(
            [CODEEXEC, "mcp", "--http", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stderr=err,
            env={**env, "CODEEXEC_MCP_DEFAULT_SESSION": prefix},
        )
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"^token: (\S+)$", errlog.read_text(), re.M)):
            assert proc.poll() is None and time.monotonic() < deadline, errlog.read_text()
            time.sleep(0.1)
        while _status(f"http://127.0.0.1:{port}/mcp", {}) is None:
            assert time.monotonic() < deadline, errlog.read_text()
            time.sleep(0.1)
        yield HttpServer(f"http://127.0.0.1:{port}/mcp", found[1], port, prefix, proc, errlog)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        sys.stderr.write(errlog.read_text()[-4000:])


def _status(url: str, headers: dict[str, str]) -> int | None:
    request = urllib.request.Request(
        url,
        data=b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}',
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None  # not listening yet


def test_requests_without_the_token_or_from_elsewhere_are_refused(
    http_server: HttpServer,
) -> None:
    url, bearer = http_server.url, {"Authorization": f"Bearer {http_server.token}"}
    assert _status(url, {}) == 401
    assert _status(url, {"Authorization": "Bearer wrong"}) == 401
    assert _status(url, {"Authorization": f"Basic {http_server.token}"}) == 401
    # DNS rebinding: a page on another domain resolving to 127.0.0.1 sends its own Host.
    assert _status(url, {**bearer, "Host": f"evil.example:{http_server.port}"}) == 421
    assert _status(url, {**bearer, "Origin": "http://evil.example"}) == 403
    assert _status(url, {**bearer, "Origin": f"http://localhost:{http_server.port}"}) not in (
        401,
        403,
        421,
    )
    log = http_server.errlog.read_text()
    assert log.count(http_server.token) == 2  # printed once (and once in the header hint)


def test_two_typescript_clients_at_once_are_isolated(http_server: HttpServer) -> None:
    def start(tag: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [node(), "sdk_client.mjs", "own", "http", http_server.url, http_server.token],
            cwd=CLIENTS,
            env={**os.environ, "CODEEXEC_TEST_TAG": tag},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    first, second = start("one"), start("two")
    outs = [p.communicate(timeout=600)[0] for p in (first, second)]
    sys.stdout.write("\n".join(outs))
    assert [first.returncode, second.returncode] == [0, 0], outs
    sessions = [re.search(r"^session: (\S+)$", o, re.M) for o in outs]
    names = {m[1] for m in sessions if m}
    assert len(names) == 2 and all(n.startswith(http_server.prefix) for n in names), outs
    # Each client closed its MCP session (DELETE): its sessions are removed.
    deadline = time.monotonic() + 30
    while _session_containers(http_server.prefix):
        assert time.monotonic() < deadline, "an ended MCP session left its containers"
        time.sleep(0.2)


def test_python_sdk_client_over_http_and_shutdown(http_server: HttpServer) -> None:
    async def drive() -> str:
        headers = {"Authorization": f"Bearer {http_server.token}"}
        async with create_mcp_http_client(headers=headers) as http:
            transport = streamable_http_client(
                http_server.url, http_client=http, terminate_on_close=False
            )
            async with Client(transport) as client:
                result = await client.call_tool("execute_code", {"code": "6 * 7"})
                assert result.structured_content is not None, result
                assert result.structured_content["value"] == "42"
                return str(result.structured_content["session"])

    session = anyio.run(drive)
    assert session.startswith(http_server.prefix)
    assert len(_session_containers("", (session,))) == 1  # no DELETE: it runs on
    http_server.proc.send_signal(signal.SIGTERM)
    assert http_server.proc.wait(timeout=30) == 0
    assert _session_containers("", (session,)) == set()


def test_bad_address_is_refused_before_serving() -> None:
    proc = subprocess.run(
        [CODEEXEC, "mcp", "--http", "localhost:http"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2 and "HOST:PORT" in proc.stderr

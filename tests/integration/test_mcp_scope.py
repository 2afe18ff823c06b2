"""What an MCP client may reach: its server's own sessions, shared ones, within a quota.

The server runs as a client runs it (`codeexec mcp …`, driven by the SDK's stdio
client); the other side is a person's session started with the real `codeexec`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.conftest import unique_name
from tests.integration.test_cli_e2e import codeexec
from tests.integration.test_mcp_stdio import _containers, _server_env, _text

pytestmark = [pytest.mark.docker, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def _server(
    *args: str, default: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "codeexec", "mcp", *args],
        env={**_server_env(default), **(env or {})},
        cwd=cwd,
    )
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                yield client
        finally:
            errlog.seek(0)
            sys.stderr.write(errlog.read()[-4000:])  # shown by pytest when a test fails


def _docker_inspect(name: str) -> dict[str, Any]:
    (cid,) = _containers(name)
    binary = os.environ.get("CODEEXEC_DOCKER", "docker")
    out = subprocess.run(
        [binary, "container", "inspect", cid], capture_output=True, text=True, timeout=30
    ).stdout
    data: dict[str, Any] = json.loads(out)[0]
    return data


async def _names(client: Client) -> set[str]:
    listed = await client.call_tool("list_sessions", {})
    assert listed.structured_content is not None
    return {s["name"] for s in listed.structured_content["sessions"]}


@pytest.fixture
def person() -> Any:
    """A session a person started from the CLI, holding a secret and a file."""
    name = unique_name()
    started = codeexec("start", name)
    assert started.returncode == 0, started.stderr
    wrote = codeexec("exec", "-s", name, "secret = 'cli-secret'; open('s.txt','w').write('x')")
    assert wrote.returncode == 0, wrote.stderr
    yield name
    codeexec("stop", name)


async def test_a_cli_session_is_invisible_and_untouchable_from_mcp(person: str) -> None:
    never = unique_name()  # a name nothing runs under: what "absent" looks like
    async with _server(default=unique_name()) as client:
        assert person not in await _names(client)

        def same_as_absent(result: Any, tool_text: str) -> None:
            assert result.is_error, _text(result)
            assert _text(result) == tool_text.replace(never, person)

        for tool, args in [
            ("execute_code", {"code": "secret"}),
            ("read_file", {"path": "s.txt"}),
            ("write_file", {"path": "s.txt", "content": "overwritten"}),
            ("install_packages", {"packages": ["six"]}),
            ("stop_code_executer", {}),
            ("reuse_code_executer", {}),
        ]:
            absent = await client.call_tool(tool, {**args, "name": never})
            assert absent.is_error, _text(absent)
            same_as_absent(await client.call_tool(tool, {**args, "name": person}), _text(absent))

        # Starting that name must not attach to it either: it fails and says so.
        taken = await client.call_tool("start_code_executer", {"name": person})
        assert taken.is_error and "choose another name" in _text(taken), _text(taken)
        assert person not in await _names(client)
    assert len(_containers(person)) == 1  # still there, untouched
    same = codeexec("exec", "-s", person, "secret, open('s.txt').read()")
    assert same.stdout == "('cli-secret', 'x')\n", same.stderr


async def test_a_shared_session_is_reachable(person: str) -> None:
    async with _server("--share", person, default=unique_name()) as client:
        assert person in await _names(client)
        got = await client.call_tool("execute_code", {"code": "secret", "name": person})
        assert got.structured_content is not None, _text(got)
        assert got.structured_content["value"] == "'cli-secret'"
        read = await client.call_tool("read_file", {"path": "s.txt", "name": person})
        assert _text(read) == "x"
    assert len(_containers(person)) == 1  # not the server's to remove on exit


async def test_the_session_quota(tmp_path: Path) -> None:
    first, second, third, default = unique_name(), unique_name(), unique_name(), unique_name()
    async with _server("--max-sessions", "2", default=default) as client:
        for name in (first, second):
            started = await client.call_tool("start_code_executer", {"name": name})
            assert not started.is_error, _text(started)
        refused = await client.call_tool("start_code_executer", {"name": third})
        assert refused.is_error and "at most 2 session(s)" in _text(refused)
        assert first in _text(refused) and "stop_code_executer" in _text(refused)
        auto = await client.call_tool("execute_code", {"code": "1", "name": default})  # auto-start
        assert auto.is_error and "at most 2 session(s)" in _text(auto)
        assert _containers(third) == []
        again = await client.call_tool("start_code_executer", {"name": first})
        assert not again.is_error, _text(again)  # a running one is not a new one

        await client.call_tool("stop_code_executer", {"name": first})
        started = await client.call_tool("start_code_executer", {"name": third})
        assert not started.is_error, _text(started)
    assert _containers(first, second, third, default) == []


async def test_a_persistent_server_restarted_reaches_its_earlier_sessions(
    tmp_path: Path,
) -> None:
    default, named = unique_name(), unique_name()
    try:
        async with _server("--persist", default=default, cwd=tmp_path) as client:
            first = await client.call_tool("execute_code", {"code": "x = 7"})
            assert not first.is_error, _text(first)
            await client.call_tool("start_code_executer", {"name": named})
            await client.call_tool("execute_code", {"code": "y = 8", "name": named})
        assert len(_containers(default, named)) == 2  # --persist left them running
        scope = _docker_inspect(default)["Config"]["Labels"]["codeexec.scope"]

        # The same configuration again: no --scope given, the same scope derived.
        async with _server("--persist", default=default, cwd=tmp_path) as client:
            assert {default, named} <= await _names(client)
            legacy = await client.call_tool("execute_code", {"code": "x"})
            assert legacy.structured_content is not None, _text(legacy)
            assert legacy.structured_content["value"] == "7"
            reused = await client.call_tool("reuse_code_executer", {"name": named})
            assert not reused.is_error, _text(reused)
            got = await client.call_tool("execute_code", {"code": "y"})
            assert got.structured_content is not None and got.structured_content["value"] == "8"

        # Another folder is another configuration: another scope, nothing reachable.
        elsewhere = tmp_path / "other-project"
        elsewhere.mkdir()
        async with _server("--persist", default=unique_name(), cwd=elsewhere) as client:
            assert not {default, named} & await _names(client)
            hidden = await client.call_tool("reuse_code_executer", {"name": named})
            assert hidden.is_error
        async with _server("--scope", scope, default=unique_name()) as client:
            assert {default, named} <= await _names(client)  # --scope names it outright
    finally:
        subprocess.run(
            [os.environ.get("CODEEXEC_DOCKER", "docker"), "rm", "-f", *_containers(default, named)],
            capture_output=True,
            timeout=60,
        )


async def test_session_defaults_reach_the_container() -> None:
    default = unique_name()
    args = ["--network", "none", "--memory", "300m", "--cpus", "0.5", "--idle-timeout", "120"]
    args += ["--base-image", "codeexec-base:bookworm"]
    # Were --base-image lost, the build would use this image, which does not exist.
    env = {"CODEEXEC_BASE_IMAGE": "codeexec-no-such-base:never"}
    async with _server(*args, default=default, env=env) as client:
        ran = await client.call_tool(
            "execute_code", {"code": "import socket; socket.gethostbyname('localhost')"}
        )
        assert ran.structured_content is not None, _text(ran)
        assert ran.structured_content["status"] == "ok"
        data = _docker_inspect(default)
        host, labels = data["HostConfig"], data["Config"]["Labels"]
        assert host["NetworkMode"] == "none"
        assert host["Memory"] == 300 * 2**20
        assert host["NanoCpus"] == 500_000_000
        assert labels["codeexec.idle_timeout"] == "120.0"
        assert labels["codeexec.scope"].startswith("mcp-")
        binary = os.environ.get("CODEEXEC_DOCKER", "docker")
        image = subprocess.run(
            [
                binary,
                "image",
                "inspect",
                "--format",
                '{{index .Config.Labels "codeexec.base"}}',
                data["Image"],
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert image.stdout.strip() == "codeexec-base:bookworm", image.stderr
    assert _containers(default) == []

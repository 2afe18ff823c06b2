"""The MCP tools ``run_command`` and ``list_files`` map their arguments onto one
session call and format the answer (in-memory SDK client, scripted sessions; the
real engine: tests/integration/test_commands.py and test_files.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client

from codeexec import CommandResult, FileInfo
from codeexec.mcp_server import build_server
from codeexec.registry import SessionEntry
from tests.test_mcp_server import FakeRegistry, FakeSession

pytestmark = pytest.mark.anyio


class Listing:
    def __init__(self, calls: list[tuple[Any, dict[str, Any]]]) -> None:
        self.calls = calls

    def list(self, path: str, *, recursive: bool) -> list[FileInfo]:
        self.calls.append((path, {"recursive": recursive}))
        return [
            FileInfo("a.txt", f"{path}/a.txt", "file", 3),
            FileInfo("d", f"{path}/d", "directory"),
        ]


class ShellSession(FakeSession):
    """A FakeSession with ``run`` and ``files.list`` (its own ``files`` dict replaced)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.calls: list[tuple[Any, dict[str, Any]]] = []
        self.files = Listing(self.calls)  # type: ignore[assignment]

    def run(self, command: Any, **kwargs: Any) -> CommandResult:
        self.calls.append((command, kwargs))
        return CommandResult(exit_code=3, stdout="out\n", stderr="err\n", duration_ms=2.0)


class ShellRegistry(FakeRegistry):
    def _start_session(self, entry: SessionEntry) -> tuple[Any, bool]:
        session = ShellSession(entry.name, entry.dependencies, self.reach.scope)
        self.built.append(session)
        return session, True


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry() -> Iterator[ShellRegistry]:
    reg = ShellRegistry()
    yield reg
    reg.close()


async def test_run_command_maps_arguments_and_returns_structured_output(
    registry: ShellRegistry,
) -> None:
    async with Client(build_server(registry)) as client:
        done = await client.call_tool(
            "run_command",
            {"command": ["ls", "-la"], "timeout": 5, "cwd": "sub", "env": {"A": "1"}},
        )
    assert not done.is_error
    (session,) = registry.built
    assert isinstance(session, ShellSession)
    command, kwargs = session.calls[0]
    assert command == ["ls", "-la"]
    assert kwargs == {"timeout": 5.0, "cwd": "sub", "env": {"A": "1"}, "output_limit": 2**20}
    assert done.structured_content == {
        "session": "dflt", "exit_code": 3, "stdout": "out\n", "stderr": "err\n",
        "duration_ms": 2.0, "timed_out": False, "truncated": False,
    }  # fmt: skip
    assert "exit code 3" in done.content[0].text  # type: ignore[union-attr]


async def test_run_command_refuses_a_bad_timeout(registry: ShellRegistry) -> None:
    async with Client(build_server(registry)) as client:
        bad = await client.call_tool("run_command", {"command": "ls", "timeout": 0})
    assert bad.is_error and registry.built == []


async def test_list_files(registry: ShellRegistry) -> None:
    async with Client(build_server(registry)) as client:
        listed = await client.call_tool("list_files", {"path": "res", "recursive": True})
    assert not listed.is_error
    assert listed.structured_content is not None
    assert [(f["path"], f["kind"]) for f in listed.structured_content["files"]] == [
        ("res/a.txt", "file"), ("res/d", "directory"),
    ]  # fmt: skip
    assert "res/d/" in listed.content[0].text  # type: ignore[union-attr]
    (session,) = registry.built
    assert isinstance(session, ShellSession)
    assert session.calls == [("res", {"recursive": True})]

"""Every tool's failure path through a client: the error carries its message.

A codeexec error raised on the worker thread used to reach the client as the
bare "Error executing tool X" (a task group wrapped it in an ExceptionGroup),
and a call sent right after a cancelled one got SessionBusy. In-memory SDK
client, stand-in sessions (``tests/test_mcp_server.py``); no Docker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import Client

from codeexec.errors import (
    CodeexecError,
    DockerError,
    ExecutorError,
    FileTransferError,
    NoSuchSession,
    SessionBusy,
)
from codeexec.mcp_server import build_server
from codeexec.models import ExecResult, SessionInfo
from tests.test_mcp_server import FakeRegistry, FakeSession, _text

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FailingSession(FakeSession):
    """Fails as a real session does; ``code == 'wait'`` runs until interrupted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.gone = False

    def execute(self, code: str, **kwargs: Any) -> ExecResult:
        if self.gone:
            raise NoSuchSession(f"session {self.name!r} is not running (its container is gone)")
        if not self.lock.acquire(blocking=False):
            raise SessionBusy(f"session {self.name!r} is busy with another execution")
        try:
            if code == "wait":
                self.wake.wait(30)
                time.sleep(0.05)  # the executor answers the interrupt a moment later
                return ExecResult(status="interrupted")
            return super().execute(code, **kwargs)
        finally:
            self.lock.release()

    def interrupt(self) -> None:
        super().interrupt()
        self.wake.set()

    def install(self, packages: Any, **kwargs: Any) -> ExecResult:
        raise ExecutorError("the executor stopped answering; stop_code_executer and start again")

    def write_file(self, path: str, data: bytes) -> int:
        raise FileTransferError(f"cannot write {path}: Permission denied", code="io_error")

    def read_file(self, path: str, *, max_bytes: int) -> bytes:
        raise FileTransferError(f"no such file: {path}", code="not_found")


class FailingRegistry(FakeRegistry):
    engine_down = False

    def _start_session(self, entry: Any) -> tuple[Any, bool]:
        session = FailingSession(entry.name, entry.dependencies, self.reach.scope)
        self.built.append(session)
        return session, True

    def _engine_sessions(self) -> list[SessionInfo]:
        if self.engine_down:
            raise DockerError("cannot reach the Docker engine: is dockerd running?")
        return super()._engine_sessions()


@pytest.fixture
def registry() -> Iterator[FailingRegistry]:
    reg = FailingRegistry(max_sessions=1)
    yield reg
    reg.close()


async def _error(client: Client, tool: str, args: dict[str, Any]) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error, (tool, _text(result))
    text = _text(result)
    assert text.strip() != f"Error executing tool {tool}", text  # the bare text: no message
    return text


async def test_every_tool_error_carries_its_message(registry: FailingRegistry) -> None:
    async with Client(build_server(registry)) as client:
        assert "no such file: gone.txt" in await _error(client, "read_file", {"path": "gone.txt"})
        assert "Permission denied" in await _error(
            client, "write_file", {"path": "/etc/x", "content": "x"}
        )
        assert "stopped answering" in await _error(
            client, "install_packages", {"packages": ["six"]}
        )
        assert "start_code_executer(name='nope')" in await _error(
            client, "execute_code", {"code": "1", "name": "nope"}
        )
        assert "start_code_executer(name='nope')" in await _error(
            client, "stop_code_executer", {"name": "nope"}
        )
        assert "list_sessions()" in await _error(client, "reuse_code_executer", {"name": "nope"})
        assert "at most 1 session(s)" in await _error(
            client, "start_code_executer", {"name": "other"}
        )
        registry.engine_down = True
        assert "is dockerd running" in await _error(client, "list_sessions", {})


async def test_a_gone_container_is_forgotten(registry: FailingRegistry) -> None:
    async with Client(build_server(registry)) as client:
        assert not (await client.call_tool("execute_code", {"code": "1"})).is_error
        first = registry.built[0]
        assert isinstance(first, FailingSession)
        first.gone = True
        text = await _error(client, "execute_code", {"code": "1"})
        assert "container is gone" in text and "start_code_executer" in text
        # The NoSuchSession branch forgot it: the next call starts the session afresh.
        again = await client.call_tool("execute_code", {"code": "1"})
        assert not again.is_error, _text(again)
        assert len(registry.built) == 2


async def test_a_call_right_after_a_cancel_runs(registry: FailingRegistry) -> None:
    async with Client(build_server(registry)) as client:
        assert not (await client.call_tool("execute_code", {"code": "x = 1"})).is_error
        session = registry.built[0]
        assert isinstance(session, FailingSession)
        for _ in range(5):
            session.wake.clear()
            with anyio.move_on_after(0.3):
                await client.call_tool("execute_code", {"code": "wait"})
            after = await client.call_tool("execute_code", {"code": "x"})
            assert not after.is_error, _text(after)
            assert session.interrupted


def test_error_types_stay_codeexec_errors() -> None:
    # The stand-ins above raise what the real session raises.
    for cls in (DockerError, ExecutorError, FileTransferError, NoSuchSession, SessionBusy):
        assert issubclass(cls, CodeexecError)

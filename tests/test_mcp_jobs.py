"""Jobs (start_job, get_job, cancel_job): runs longer than a client waits for a call.
In-memory SDK client, stand-in sessions; the real thing is in
tests/integration/test_mcp_outside_clients.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client

from codeexec.mcp_server import build_server
from tests.test_mcp_errors import FailingRegistry, FailingSession
from tests.test_mcp_server import _text

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry() -> Iterator[FailingRegistry]:
    reg = FailingRegistry()
    yield reg
    reg.close()


def _state(result: Any) -> dict[str, Any]:
    assert not result.is_error, _text(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


async def test_short_job_answers_with_its_result(registry: FailingRegistry) -> None:
    async with Client(build_server(registry)) as client:
        done = _state(await client.call_tool("start_job", {"code": "x = 1"}))
        assert done["state"] == "done" and done["result"]["status"] == "ok"
        assert done["job"].startswith("job-")
        again = _state(await client.call_tool("get_job", {"job": done["job"]}))
        assert again["result"] == done["result"]


async def test_long_job_polled_refused_beside_and_cancelled(registry: FailingRegistry) -> None:
    async with Client(build_server(registry)) as client:
        running = _state(await client.call_tool("start_job", {"code": "wait"}))
        job = running["job"]
        assert running["state"] == "running" and running["result"] is None
        busy = await client.call_tool("execute_code", {"code": "1"})
        assert busy.is_error and job in _text(busy) and "cancel_job" in _text(busy)
        polled = _state(await client.call_tool("get_job", {"job": job, "wait": 0.3}))
        assert polled["state"] == "running" and polled["seconds"] >= 0.3
        cancelled = _state(await client.call_tool("cancel_job", {"job": job}))
        assert cancelled["state"] == "done"
        assert cancelled["result"]["status"] == "interrupted"
        session = registry.built[0]
        assert isinstance(session, FailingSession) and session.interrupted
        after = await client.call_tool("execute_code", {"code": "1"})
        assert not after.is_error, _text(after)  # the session survived


async def test_unknown_job_and_a_failed_one(registry: FailingRegistry) -> None:
    async with Client(build_server(registry)) as client:
        big = await client.call_tool("start_job", {"code": "x" * (2**20 + 1)})
        assert big.is_error and "write_file" in _text(big) and registry.built == []
        unknown = await client.call_tool("get_job", {"job": "job-nope"})
        assert unknown.is_error and "start_job" in _text(unknown)
        assert not (await client.call_tool("execute_code", {"code": "1"})).is_error
        session = registry.built[0]
        assert isinstance(session, FailingSession)
        session.gone = True
        failed = _state(await client.call_tool("start_job", {"code": "1"}))
        assert failed["state"] == "failed" and "container is gone" in failed["failure"]
        too_long = await client.call_tool("get_job", {"job": failed["job"], "wait": 600})
        assert too_long.is_error and "'wait'" in _text(too_long)

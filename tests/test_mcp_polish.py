"""What a client sees besides results: titles, annotations, capabilities, argument
errors, text beside structured content, progress. In-memory SDK client; no Docker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mcp import Client
from mcp_types import TextContent

from codeexec.mcp_server import build_server
from tests.test_mcp_server import TOOLS, FakeRegistry, _text

pytestmark = pytest.mark.anyio

READ_ONLY = {"list_sessions", "read_file", "get_job", "list_snapshots", "list_checkpoints"}
DESTRUCTIVE = {
    "execute_code", "stop_code_executer", "write_file", "start_job", "cancel_job",
    "restore_checkpoint", "drop_checkpoint", "remove_snapshot",
}  # fmt: skip


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    reg = FakeRegistry()
    yield reg
    reg.close()


async def test_titles_annotations_and_capabilities(registry: FakeRegistry) -> None:
    async with Client(build_server(registry)) as client:
        caps = client.session.server_capabilities
        assert caps is not None
        assert caps.tools is not None and caps.prompts is not None
        assert caps.resources is None and caps.logging is None  # nothing it does not serve
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        hints = tool.annotations
        assert tool.title and hints is not None and hints.title == tool.title, name
        assert hints.read_only_hint is (name in READ_ONLY), name
        assert hints.destructive_hint is (name in DESTRUCTIVE), name
    assert tools["execute_code"].annotations.open_world_hint is True  # type: ignore[union-attr]
    assert tools["read_file"].annotations.open_world_hint is False  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"code": "1", "timeout": -1}, "argument 'timeout': Input should be greater than 0"),
        ({"cod": "1"}, "missing argument 'code'"),
        ({"code": 5}, "argument 'code': Input should be a valid string"),
    ],
)
async def test_argument_errors_are_one_line_naming_the_parameter(
    registry: FakeRegistry, args: dict[str, object], message: str
) -> None:
    async with Client(build_server(registry)) as client:
        result = await client.call_tool("execute_code", args)
    assert result.is_error
    text = _text(result)
    assert message in text and "\n" not in text and "http" not in text, text
    assert registry.built == []


async def test_text_is_a_summary_then_the_structured_json(registry: FakeRegistry) -> None:
    async with Client(build_server(registry)) as client:
        ran = await client.call_tool("execute_code", {"code": "plot"})
        listed = await client.call_tool("list_sessions", {})
    for result in (ran, listed):
        first, last = result.content[0], result.content[-1]
        assert isinstance(first, TextContent) and isinstance(last, TextContent)
        assert json.loads(last.text) == result.structured_content
        assert not first.text.startswith("{")
    assert "status: ok" in _text(ran) and [b.type for b in ran.content] == [
        "text",
        "image",
        "text",
    ]
    assert "current session: dflt; 1 session(s)" in _text(listed)
    assert "- dflt: running" in _text(listed)


class NappingRegistry(FakeRegistry):
    """Its sessions take 0.5 s over ``code == 'nap'``."""

    def _start_session(self, entry: Any) -> tuple[Any, bool]:
        session, owned = super()._start_session(entry)
        plain = session.execute

        def execute(code: str, **kwargs: Any) -> Any:
            if code == "nap":
                time.sleep(0.5)
            return plain(code, **kwargs)

        session.execute = execute
        return session, owned


async def test_progress_counts_up_across_build_and_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("codeexec._mcp_access.PROGRESS_EVERY", 0.1)
    registry = NappingRegistry()
    registry.gate = threading.Event()
    threading.Timer(0.5, registry.gate.set).start()
    seen: list[tuple[float, str]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.append((value, message or ""))

    async with Client(build_server(registry, build_wait=30)) as client:
        result = await client.call_tool(
            "execute_code", {"code": "nap"}, progress_callback=on_progress
        )
    registry.close()
    assert not result.is_error, _text(result)
    assert any(m.startswith("building") for _, m in seen), seen
    assert any(m.startswith("running") for _, m in seen), seen
    values = [v for v, _ in seen]
    assert values == sorted(set(values)), seen  # the spec: each above the one before


def test_hub_gives_each_mcp_session_its_own_registry() -> None:
    from types import SimpleNamespace

    from codeexec._mcp_access import Hub

    made: list[FakeRegistry] = []

    def make(n: int) -> FakeRegistry:
        made.append(FakeRegistry(max_sessions=1))
        return made[-1]

    def ctx(session_id: str) -> Any:
        request = SimpleNamespace(headers={"mcp-session-id": session_id})
        return SimpleNamespace(request_context=SimpleNamespace(request=request))

    hub = Hub(make, build_wait=1)
    first, second = hub(ctx("a")), hub(ctx("b"))
    assert hub(ctx("a")) is first and first is not second
    assert first.registry is not second.registry  # own current session, quota, jobs
    first.registry.start("one", ())
    second.registry.start("one", ())  # the same name in another client: its own quota
    assert first.registry.known("one") is not second.registry.known("one")
    hub.drop("a")
    assert first.registry._closed and not second.registry._closed
    assert hub(ctx("a")) is not first  # a new MCP session with that id starts afresh
    hub.close()
    assert all(r._closed for r in made)

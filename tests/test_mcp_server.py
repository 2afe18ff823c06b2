"""The MCP tool server through the SDK's in-memory client; no Docker needed.

Sessions are stand-ins (``FakeSession``) handed out by a registry whose start and
attach are replaced, so these tests cover the tool layer: schemas, result format,
tool errors, the build-in-background flow and cleanup.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import ImageContent, TextContent

from codeexec.docker import LABEL_SCOPE, Docker
from codeexec.errors import CodeexecError, ImageBuildError, NoSuchSession
from codeexec.mcp_server import MAX_CODE_BYTES, build_server
from codeexec.models import Display, ExecError, ExecResult, ResultLimits, SessionInfo
from codeexec.registry import SessionEntry, SessionRegistry
from codeexec.scope import Reach, default_scope, validate_scope

pytestmark = pytest.mark.anyio

TOOLS = {
    "start_code_executer",
    "execute_code",
    "stop_code_executer",
    "reuse_code_executer",
    "list_sessions",
    "install_packages",
    "write_file",
    "read_file",
    "save_checkpoint",
    "restore_checkpoint",
    "list_checkpoints",
    "drop_checkpoint",
    "fork_session",
    "start_job",
    "get_job",
    "cancel_job",
    "snapshot_session",
    "resume_snapshot",
    "list_snapshots",
    "remove_snapshot",
}
PNG = b"\x89PNG\r\n\x1a\nfake"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeSession:
    """Enough of ContainerSession for the tools: results are scripted by the code text."""

    def __init__(
        self, name: str, dependencies: tuple[str, ...] = (), scope: str | None = None
    ) -> None:
        self.name = name
        self.container_id = f"id-{name}"
        self.info = SessionInfo(
            name=name,
            container_id=self.container_id,
            container_name=f"codeexec-{name}",
            image="img",
            status="running",
            dependencies=dependencies,
            labels={LABEL_SCOPE: scope} if scope else {},
        )
        self.files: dict[str, bytes] = {}
        self.stopped = False
        self.is_fork = False
        self.interrupted = False

    def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: Callable[[str, str], None] | None = None,
        output_limit: int | None = None,
        result_limits: ResultLimits | None = None,
        rollback_on_error: bool = False,
    ) -> ExecResult:
        assert result_limits is not None and result_limits.output == 100_000
        if code == "1/0":
            return ExecResult(
                status="error",
                error=ExecError(
                    "ZeroDivisionError",
                    "division by zero",
                    (
                        "Traceback (most recent call last):\n",
                        "ZeroDivisionError: division by zero\n",
                    ),
                ),
            )
        if code == "plot":
            return ExecResult(
                status="ok",
                displays=(
                    Display({"image/png": PNG, "text/plain": "<Figure>"}),
                    Display({"text/markdown": "**bold**", "text/plain": "md"}),
                ),
            )
        if on_output is not None:
            on_output("stdout", "out\n")
        return ExecResult(status="ok", stdout="out\n", value=repr(code), duration_ms=1.5)

    def install(self, packages: Any, **kwargs: Any) -> ExecResult:
        return ExecResult(status="ok", stdout=f"installed {' '.join(packages)}\n")

    def write_file(self, path: str, data: bytes) -> int:
        self.files[path] = data
        return len(data)

    def read_file(self, path: str, *, max_bytes: int) -> bytes:
        return self.files[path]

    def interrupt(self) -> None:
        self.interrupted = True

    def is_running(self) -> bool:
        return not self.stopped

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        pass


class RecordingDocker(Docker):
    def __init__(self) -> None:
        super().__init__(binary="/nonexistent/docker")
        self.removed: list[tuple[str, ...]] = []

    def rm(self, *containers: str) -> None:
        self.removed.append(containers)

    def fork_markers(self) -> dict[str, str]:
        return {}


class FakeRegistry(SessionRegistry):
    """Starts FakeSessions; ``gate`` (if set) holds every build until it is set."""

    def __init__(self, **kwargs: Any) -> None:
        self.fake_docker = RecordingDocker()
        super().__init__(docker=self.fake_docker, default_name="dflt", **kwargs)
        self.gate: threading.Event | None = None
        self.fail_with: Exception | None = None
        self.running: dict[str, FakeSession] = {}  # sessions "on the engine"
        self.built: list[FakeSession] = []

    def _start_session(self, entry: SessionEntry) -> tuple[Any, bool]:
        entry.progress("Step 1/2 : FROM base")
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        entry.progress("starting container")
        session = FakeSession(entry.name, entry.dependencies, self.reach.scope)
        self.built.append(session)
        return session, True

    def _engine_sessions(self) -> list[SessionInfo]:
        return [s.info for s in self.built if not s.stopped]

    def _scope_names(self) -> set[str]:
        return {i.name for i in self._engine_sessions() if self.reach.owns(i)}

    def _attach(self, name: str) -> Any:
        if name not in self.running:
            raise NoSuchSession(f"no running session named {name!r}")
        return self.running[name]


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    reg = FakeRegistry()
    yield reg
    reg.close()


def _text(result: Any) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def _arrays(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        if schema.get("type") == "array":
            yield schema
        for value in schema.values():
            yield from _arrays(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _arrays(value)


async def test_tools_schemas_and_prompt(registry: FakeRegistry) -> None:
    async with Client(build_server(registry, max_timeout=120)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and len(tool.description) > 40, tool.name
            for array in _arrays(tool.input_schema):
                assert array.get("items") == {"type": "string"}, (tool.name, array)
            for array in _arrays(tool.output_schema):
                assert "items" in array, (tool.name, array)
        props = {name: t.input_schema["properties"] for name, t in tools.items()}
        assert props["start_code_executer"]["dependencies"]["default"] == []
        assert props["stop_code_executer"]["delete_service"]["default"] is True
        assert props["execute_code"]["timeout"]["default"] == 30.0
        assert props["execute_code"]["timeout"]["maximum"] == 120
        assert tools["execute_code"].input_schema["required"] == ["code"]
        assert tools["install_packages"].input_schema["required"] == ["packages"]
        assert "required" not in tools["stop_code_executer"].input_schema
        assert "required" not in tools["reuse_code_executer"].input_schema
        assert set(props["read_file"]["encoding"]["enum"]) == {"utf-8", "base64"}
        out = tools["execute_code"].output_schema
        assert out is not None
        assert {
            "status",
            "stdout",
            "stderr",
            "value",
            "error",
            "duration_ms",
            "truncated",
            "restarted",
            "displays",
        } <= set(out["properties"])

        prompts = (await client.list_prompts()).prompts
        assert [p.name for p in prompts] == ["math_evaluation"]
        assert [a.name for a in prompts[0].arguments or []] == ["expression"]
        got = await client.get_prompt("math_evaluation", {"expression": "x**2 - 1"})
        message = got.messages[0].content
        assert isinstance(message, TextContent) and "x**2 - 1" in message.text


async def test_bad_dependency_is_a_tool_error_without_docker() -> None:
    # The Docker CLI path does not exist: any docker call would fail differently.
    reg = SessionRegistry(docker=Docker(binary="/nonexistent/docker"), default_name="dflt")
    async with Client(build_server(reg)) as client:
        result = await client.call_tool(
            "start_code_executer", {"dependencies": ["numpy; rm -rf /"]}
        )
        assert result.is_error
        assert "not a valid pip requirement" in _text(result)
        result = await client.call_tool("install_packages", {"packages": ["--index-url=x"]})
        assert result.is_error and "pip option" in _text(result)


async def test_docker_unreachable_is_a_tool_error() -> None:
    reg = SessionRegistry(docker=Docker(binary="/nonexistent/docker"), default_name="dflt")
    async with Client(build_server(reg)) as client:
        result = await client.call_tool("execute_code", {"code": "1"})
        assert result.is_error
        assert "CODEEXEC_DOCKER" in _text(result)


async def test_execute_autostarts_and_formats_results(registry: FakeRegistry) -> None:
    async with Client(build_server(registry)) as client:
        first = await client.call_tool("execute_code", {"code": "x = 1"})
        assert not first.is_error
        assert "Started session 'dflt'" in _text(first)
        assert first.structured_content is not None
        assert first.structured_content["started_session"] is True
        assert first.structured_content["stdout"] == "out\n"

        again = await client.call_tool("execute_code", {"code": "x"})
        assert "Started" not in _text(again)
        assert "status: ok" in _text(again) and "value: 'x'" in _text(again)
        assert len(registry.built) == 1

        # An exception in the user's code is a result, not a tool error.
        failed = await client.call_tool("execute_code", {"code": "1/0"})
        assert not failed.is_error
        assert failed.structured_content is not None
        assert failed.structured_content["status"] == "error"
        assert failed.structured_content["error"]["ename"] == "ZeroDivisionError"
        assert "ZeroDivisionError: division by zero" in _text(failed)

        plot = await client.call_tool("execute_code", {"code": "plot"})
        images = [b for b in plot.content if isinstance(b, ImageContent)]
        assert len(images) == 1 and images[0].mime_type == "image/png"
        assert "**bold**" in _text(plot)
        assert plot.structured_content is not None
        assert plot.structured_content["displays"] == 2


async def test_tool_errors_say_what_to_do(registry: FakeRegistry) -> None:
    async with Client(build_server(registry)) as client:
        big = await client.call_tool("execute_code", {"code": "x" * (MAX_CODE_BYTES + 1)})
        assert big.is_error and "write_file" in _text(big)
        unknown = await client.call_tool("execute_code", {"code": "1", "name": "nope"})
        assert unknown.is_error and "start_code_executer(name='nope')" in _text(unknown)
        stop = await client.call_tool("stop_code_executer", {"name": "nope"})
        assert stop.is_error
        bad_name = await client.call_tool("execute_code", {"code": "1", "name": "a b"})
        assert bad_name.is_error and "invalid session name" in _text(bad_name)
        too_long = await client.call_tool("execute_code", {"code": "1", "timeout": 10_000})
        assert too_long.is_error
        assert registry.built == []  # none of these started anything


async def test_named_sessions_current_and_stop(registry: FakeRegistry) -> None:
    async with Client(build_server(registry)) as client:
        started = await client.call_tool(
            "start_code_executer", {"dependencies": ["six"], "name": "alpha"}
        )
        assert "Code execution service started with the name: alpha" in _text(started)
        ran = await client.call_tool("execute_code", {"code": "1"})
        assert ran.structured_content is not None
        assert ran.structured_content["session"] == "alpha"  # the current session

        clash = await client.call_tool(
            "start_code_executer", {"dependencies": ["numpy"], "name": "alpha"}
        )
        assert clash.is_error and "install_packages" in _text(clash)

        listed = await client.call_tool("list_sessions", {})
        assert listed.structured_content is not None
        assert listed.structured_content["current"] == "alpha"

        stopped = await client.call_tool("stop_code_executer", {})
        assert not stopped.is_error and "alpha" in _text(stopped)
        assert registry.built[0].stopped
        after = await client.call_tool("execute_code", {"code": "1"})
        assert after.structured_content is not None
        assert after.structured_content["session"] == "dflt"


async def test_stop_without_delete_then_reuse(registry: FakeRegistry) -> None:
    async with Client(build_server(registry)) as client:
        await client.call_tool("start_code_executer", {"name": "keep"})
        kept = await client.call_tool(
            "stop_code_executer", {"name": "keep", "delete_service": False}
        )
        assert "reuse_code_executer" in _text(kept)
        session = registry.built[0]
        assert not session.stopped
        registry.running["keep"] = session  # it still runs on the engine
        reused = await client.call_tool("reuse_code_executer", {"name": "keep"})
        assert not reused.is_error
        ran = await client.call_tool("execute_code", {"code": "1"})
        assert ran.structured_content is not None
        assert ran.structured_content["session"] == "keep"
    registry.close()
    assert registry.fake_docker.removed == []  # reused sessions are not ours to remove


async def test_slow_build_continues_in_background(registry: FakeRegistry) -> None:
    registry.gate = threading.Event()
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with Client(build_server(registry, build_wait=0.3)) as client:
        started = await client.call_tool(
            "start_code_executer", {"name": "slow"}, progress_callback=on_progress
        )
        assert not started.is_error
        assert "still building" in _text(started) and "execute_code" in _text(started)
        assert any("Step 1/2" in m for m in progress)

        early = await client.call_tool("execute_code", {"code": "1"})
        assert early.is_error and "nothing ran" in _text(early)

        threading.Timer(0.1, registry.gate.set).start()
        late = await client.call_tool("execute_code", {"code": "1"})
        assert not late.is_error, _text(late)
        assert len(registry.built) == 1


async def test_build_failure_reports_log_tail_and_can_retry(registry: FakeRegistry) -> None:
    registry.fail_with = ImageBuildError(
        "building the session image failed", log_tail="ERROR: No matching distribution"
    )
    async with Client(build_server(registry)) as client:
        failed = await client.call_tool("start_code_executer", {"dependencies": ["nosuch"]})
        assert failed.is_error
        assert "No matching distribution" in _text(failed)
        registry.fail_with = None
        retried = await client.call_tool("start_code_executer", {"dependencies": ["nosuch"]})
        assert not retried.is_error


async def test_files_and_install(registry: FakeRegistry) -> None:
    async with Client(build_server(registry)) as client:
        wrote = await client.call_tool(
            "write_file", {"path": "a.bin", "content": "AAEC", "encoding": "base64"}
        )
        assert "3 bytes" in _text(wrote)
        read = await client.call_tool("read_file", {"path": "a.bin", "encoding": "base64"})
        assert _text(read) == "AAEC"
        not_text = await client.call_tool("read_file", {"path": "a.bin"})
        assert not not_text.is_error  # b"\0\1\2" is valid UTF-8
        bad = await client.call_tool(
            "write_file", {"path": "b", "content": "!!", "encoding": "base64"}
        )
        assert bad.is_error and "base64" in _text(bad)
        installed = await client.call_tool("install_packages", {"packages": ["sympy"]})
        assert "installed sympy" in _text(installed)


async def test_close_removes_started_containers_at_once() -> None:
    reg = FakeRegistry()
    async with Client(build_server(reg)) as client:
        await client.call_tool("start_code_executer", {"name": "one"})
        await client.call_tool("start_code_executer", {"name": "two"})
        await client.call_tool("stop_code_executer", {"name": "two"})
        await client.call_tool("start_code_executer", {"name": "three"})
    reg.close()
    reg.close()
    assert reg.fake_docker.removed == [("id-one", "id-three")]


async def test_persist_leaves_containers() -> None:
    reg = FakeRegistry(persist=True)
    async with Client(build_server(reg)) as client:
        await client.call_tool("start_code_executer", {})
    reg.close()
    assert reg.fake_docker.removed == []


async def test_every_tool_and_prompt_is_documented(registry: FakeRegistry) -> None:
    doc = (Path(__file__).parent.parent / "docs" / "mcp.md").read_text(encoding="utf-8")
    async with Client(build_server(registry)) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        names += [p.name for p in (await client.list_prompts()).prompts]
    for name in names:
        assert f"`{name}`" in doc, f"docs/mcp.md does not document {name}"


async def test_quota_counts_this_scope_and_frees_on_stop() -> None:
    reg = FakeRegistry(max_sessions=2)
    async with Client(build_server(reg)) as client:
        assert not (await client.call_tool("start_code_executer", {"name": "one"})).is_error
        assert not (await client.call_tool("start_code_executer", {"name": "two"})).is_error
        full = await client.call_tool("start_code_executer", {"name": "three"})
        assert full.is_error and "at most 2 session(s)" in _text(full)
        assert "one, two" in _text(full) and "--max-sessions" in _text(full)
        assert not (await client.call_tool("start_code_executer", {"name": "two"})).is_error
        await client.call_tool("stop_code_executer", {"name": "one"})
        assert not (await client.call_tool("start_code_executer", {"name": "three"})).is_error
        listed = await client.call_tool("list_sessions", {})
        assert listed.structured_content is not None
        assert [r["name"] for r in listed.structured_content["sessions"]] == ["three", "two"]
    reg.close()


def test_scope_ids_and_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEEXEC_MCP_DEFAULT_SESSION", raising=False)
    assert default_scope(persist=False) != default_scope(persist=False)
    assert default_scope(persist=True) == default_scope(persist=True)  # a restart finds it
    assert validate_scope("team.a-1") == "team.a-1"
    for bad in ("", "a b", "-x", "x" * 41, "a=b"):
        with pytest.raises(CodeexecError, match="invalid scope"):
            validate_scope(bad)
    reach = Reach.of("s1", ["shared"])
    mine = SessionInfo("a", "id", "c", "img", "running", labels={LABEL_SCOPE: "s1"})
    other = SessionInfo("b", "id", "c", "img", "running", labels={LABEL_SCOPE: "s2"})
    person = SessionInfo("shared", "id", "c", "img", "running")
    assert [reach.reaches(i) for i in (mine, other, person)] == [True, False, True]
    assert (reach.attach_scope("a"), reach.attach_scope("shared")) == ("s1", None)
    assert Reach.of("s1", share_all=True).reaches(other)
    assert SessionRegistry(docker=RecordingDocker(), reach=reach).default_name == "s1"


def test_the_quota_counts_the_scopes_running_sessions_through_the_core() -> None:
    """The registry's quota asks the core (``maintenance.running_in_scope``): only the
    running containers labelled with its scope count, and an unnamed one (a warm pool
    container) does not."""

    class ListingDocker(RecordingDocker):
        asked: list[tuple[dict[str, str], bool]] = []

        def ps(self, labels: Any, *, all: bool = True) -> list[SessionInfo]:
            self.asked.append((dict(labels), all))
            mine = {LABEL_SCOPE: "s1"}
            return [
                SessionInfo("a", "id-a", "c", "img", "running", labels=mine),
                SessionInfo("", "id-pool", "c", "img", "running", labels=mine),
            ]

    docker = ListingDocker()
    reg = SessionRegistry(docker=docker, reach=Reach.of("s1"), max_sessions=1)
    with pytest.raises(CodeexecError, match=r"at most 1 session\(s\) at once and runs a:"):
        reg.start("b", ())
    assert docker.asked == [({"codeexec.managed": "1", LABEL_SCOPE: "s1"}, False)]
    reg.close()

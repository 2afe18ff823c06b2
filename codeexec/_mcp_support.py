"""What the MCP tools share: result formatting, tool errors and session access.

``mcp_server.py`` keeps the tools and their docstrings; this module turns an
``ExecResult`` into text, image content and structured output, a ``CodeexecError``
into the ``ToolError`` the model reads, and runs blocking session work on a worker
thread with progress notifications. Only these two modules import the ``mcp`` SDK.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent
from pydantic import ValidationError

from .errors import (
    CodeexecError,
    ContainerStartError,
    FileTransferError,
    ImageBuildError,
    NoSuchSession,
    SessionBusy,
)
from .mcp_sessions import (
    PROGRESS_EVERY,
    ExecErrorOutput,
    ExecOutput,
    SessionEntry,
    SessionRegistry,
    SessionsOutput,
)
from .models import ExecResult
from .session import ContainerSession, validate_name

log = logging.getLogger("codeexec.mcp")

OUTPUT_LIMIT = 100_000  # characters of output kept per call: it goes into the model's context
SETTLE_WAIT = 10.0  # seconds a call waits for an interrupted, cancelled one to end
# Threads for the blocking session calls: long runs hold one each, and a cancelled call's
# thread runs until its code is interrupted, so more than asyncio's default (cores + 4).
_WORKERS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="codeexec-mcp")
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


# -- the server ---------------------------------------------------------------------------


class CodeexecMCP(MCPServer):
    """``MCPServer`` with one-line argument errors and only the capabilities it serves."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, subscriptions=False, **kwargs)
        handlers = self._lowlevel_server._request_handlers
        for method in ("resources/list", "resources/templates/list", "resources/read"):
            handlers.pop(method, None)  # no resources: no ``resources`` capability

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                raise ToolError(argument_error(exc.__cause__)) from exc.__cause__
            raise


def argument_error(exc: ValidationError) -> str:
    """pydantic's report as one line that names each rejected parameter."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        if error["type"] == "missing":
            parts.append(f"missing argument {where!r}")
        else:
            parts.append(f"argument {where!r}: {error['msg']}")
    return "; ".join(parts) + " (see the tool's input schema)"


# -- errors and formatting ----------------------------------------------------------------


def tool_error(exc: CodeexecError) -> ToolError:
    message = exc.message
    if isinstance(exc, ImageBuildError) and exc.log_tail:
        message += "\n--- end of the build log ---\n" + exc.log_tail[-3000:]
    elif isinstance(exc, ContainerStartError) and exc.container_log:
        message += "\n--- end of the container log ---\n" + exc.container_log[-2000:]
    elif isinstance(exc, FileTransferError) and exc.code == "too_large":
        message += "; process it inside the session with execute_code instead"
    elif isinstance(exc, SessionBusy):
        message += " (here: wait for that call to return; its timeout bounds it)"
    elif isinstance(exc, NoSuchSession) and "start_code_executer" not in message:
        message += " (here: call start_code_executer, or list_sessions to see what runs)"
    return ToolError(message)


def tool_errors(fn: _F) -> _F:
    """Turn a ``CodeexecError`` into a ToolError: the SDK shows only those to the model."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except CodeexecError as exc:
            raise tool_error(exc) from exc

    wrapper.__doc__ = inspect.cleandoc(fn.__doc__ or "")  # the model reads it: no indents
    return wrapper  # type: ignore[return-value]


def exec_result(
    result: ExecResult, *, name: str, note: str = "", max_timeout: float
) -> CallToolResult:
    parts = [note] if note else []
    parts.append(f"status: {result.status} ({result.duration_ms:.0f} ms, session {name!r})")
    if result.stdout:
        parts.append("stdout:\n" + result.stdout.rstrip("\n"))
    if result.stderr:
        parts.append("stderr:\n" + result.stderr.rstrip("\n"))
    if result.value is not None:
        parts.append("value: " + result.value)
    if result.error is not None:
        parts.append("error:\n" + result.error.format())
    if result.status == "timeout":
        parts.append(
            "note: the code ran past its timeout and was interrupted; the variables "
            f"it set so far are kept. Pass a larger timeout (at most {max_timeout:.0f} "
            "s) or split the work into several calls."
        )
    if result.truncated:
        parts.append(
            "note: output was truncated; write large output to a file and read "
            "parts of it with read_file, or print a summary."
        )
    if result.restarted:
        parts.append(
            "note: the Python process was restarted: every variable and import is "
            "gone. Run your setup code again."
        )
    content: list[ContentBlock] = []
    for index, display in enumerate(result.displays, start=1):
        data = display.data
        image = next((m for m in _IMAGE_TYPES if isinstance(data.get(m), bytes)), None)
        if image is not None:
            raw = data[image]
            assert isinstance(raw, bytes)
            parts.append(f"display {index}: {image} (attached as an image)")
            content.append(
                ImageContent(
                    type="image", mime_type=image, data=base64.b64encode(raw).decode("ascii")
                )
            )
            continue
        mime = next(
            (
                m
                for m in ("text/markdown", "text/html", "text/plain")
                if isinstance(data.get(m), str)
            ),
            None,
        )
        text = data.get(mime, "") if mime else ""
        if mime is None or (mime == "text/plain" and text == result.value):
            continue  # the value above already shows it
        parts.append(f"display {index} ({mime}):\n{str(text)[:OUTPUT_LIMIT]}")
    return structured(
        "\n\n".join(parts), dict(exec_output(result, name, bool(note))), images=content
    )


def structured(
    summary: str, output: dict[str, Any], *, images: Sequence[ContentBlock] = ()
) -> CallToolResult:
    """A summary the model reads, images, and the structured output again as JSON text
    (the MCP spec's advice for clients that do not read ``structuredContent``)."""
    return CallToolResult(
        content=[
            TextContent(type="text", text=summary),
            *images,
            TextContent(type="text", text=json.dumps(output, ensure_ascii=False)),
        ],
        structured_content=output,
    )


def sessions_result(output: SessionsOutput) -> CallToolResult:
    rows = output["sessions"]
    lines = [f"current session: {output['current']}; {len(rows)} session(s)"]
    lines += [
        f"- {r['name']}: {r['status']}, dependencies {', '.join(r['dependencies']) or 'none'}"
        + (" (used here)" if r["used_here"] else "")
        for r in rows
    ]
    return structured("\n".join(lines), dict(output))


def exec_output(result: ExecResult, name: str, started: bool) -> ExecOutput:
    """The structured form of an execution's result (``execute_code``'s output schema)."""
    error = result.error
    return ExecOutput(
        session=name,
        status=result.status,
        stdout=result.stdout,
        stderr=result.stderr,
        value=result.value,
        error=None
        if error is None
        else ExecErrorOutput(
            ename=error.ename, evalue=error.evalue, traceback=list(error.traceback)
        ),
        duration_ms=result.duration_ms,
        truncated=result.truncated,
        restarted=result.restarted,
        displays=len(result.displays),
        display_mime_types=[list(d.mime_types) for d in result.displays],
        started_session=started,
    )


# -- progress and blocking work ----------------------------------------------------------


class Progress:
    """Progress notifications for one call (a no-op when the client asked for none).

    The count goes on across the phases of a call (build, then run): the spec
    wants each notification's progress above the one before.
    """

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._count = 0

    async def send(self, message: str) -> None:
        self._count += 1
        try:
            await self._ctx.report_progress(self._count, None, message)
        except Exception as exc:  # a progress notice must never fail the call
            log.debug("progress notification failed: %r", exc)


async def blocking(
    ctx: Context,
    fn: Callable[[], _T],
    *,
    label: str,
    latest: Callable[[], str] = lambda: "",
    on_cancel: Callable[[], None] | None = None,
    progress: Progress | None = None,
) -> _T:
    """Run ``fn`` on a worker thread, with a progress notice every ``PROGRESS_EVERY`` s.

    Plain asyncio (the SDK's transports run on it), no task group: a call costs one
    thread hop, and ``fn``'s exception comes out as it is, not in an ExceptionGroup.
    """
    progress = progress or Progress(ctx)
    began = time.monotonic()
    running = asyncio.get_running_loop().run_in_executor(_WORKERS, fn)
    try:
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(running), PROGRESS_EVERY)
            except asyncio.TimeoutError:  # not TimeoutError: Python 3.10
                line = latest().strip()[-200:]
                await progress.send(
                    f"{label}: {time.monotonic() - began:.0f} s" + (f" | {line}" if line else "")
                )
    except asyncio.CancelledError:
        if on_cancel is not None and not running.done():
            on_cancel()  # the client gave up: stop the code rather than run on
        raise


# -- sessions for tool calls ---------------------------------------------------------------


@dataclass(frozen=True)
class Use:
    """A session a tool call works on."""

    name: str
    entry: SessionEntry
    session: ContainerSession
    started: bool  # this call auto-started it
    progress: Progress  # the call's notifications, the build's included


@dataclass(frozen=True)
class SessionAccess:
    """How the tools reach the registry's sessions without blocking the event loop.

    A cancelled call returns at once while its worker thread, interrupted, still
    holds the session for a moment: ``_settling`` keeps that thread's end (per
    container) so the next call on the session waits for it instead of failing
    with SessionBusy.
    """

    registry: SessionRegistry
    build_wait: float  # seconds a call waits for an image build
    _settling: dict[str, threading.Event] = field(default_factory=dict)

    async def wait(
        self, ctx: Context, entry: SessionEntry, progress: Progress | None = None
    ) -> ContainerSession | None:
        """The entry's session once built; None if the build outlasts ``build_wait``."""
        try:
            return await entry.wait(self.build_wait, (progress or Progress(ctx)).send)
        except CodeexecError:
            self.registry.forget(entry, remove=False)
            raise

    async def use(self, ctx: Context, name: str | None) -> Use:
        """The named (or current) session, once built; the default one starts on first use."""
        reg = self.registry
        target = validate_name(name or reg.current)
        known = reg.known(target)  # no thread hop for a session this server has
        if known is not None:
            entry, started = known, False
        else:
            entry, started = await anyio.to_thread.run_sync(
                lambda: reg.get(target, auto_start=target == reg.default_name)
            )
        progress = Progress(ctx)
        session = await self.wait(ctx, entry, progress)
        if session is None:
            raise ToolError(
                f"{entry.building()}; nothing ran. Call the tool again: each "
                f"call waits up to {self.build_wait:.0f} s more for the build."
            )
        return Use(target, entry, session, started, progress)

    async def run(
        self,
        ctx: Context,
        use: Use,
        work: Callable[[Callable[[str, str], None]], ExecResult],
        *,
        label: str,
    ) -> ExecResult:
        """``work(on_output)`` on ``use``'s session, as ``call``; the progress
        heartbeat carries the latest output it printed."""
        outputs: deque[str] = deque(maxlen=1)
        return await self.call(
            ctx,
            use,
            lambda: work(lambda _stream, text: outputs.append(text)),
            label=label,
            latest=lambda: outputs[-1] if outputs else "",
        )

    async def call(
        self,
        ctx: Context,
        use: Use,
        fn: Callable[[], _T],
        *,
        label: str = "working",
        latest: Callable[[], str] = lambda: "",
    ) -> _T:
        """Run ``fn`` on ``use``'s session from a worker thread; a cancelled call interrupts it."""
        key = use.session.container_id
        earlier = self._settling.get(key)
        if earlier is not None and not earlier.is_set():  # a cancelled call is still ending
            await anyio.to_thread.run_sync(
                lambda: earlier.wait(SETTLE_WAIT), abandon_on_cancel=True
            )
        ended = threading.Event()

        def work() -> _T:
            try:
                return fn()
            finally:
                ended.set()

        def cancel() -> None:
            self._settling[key] = ended
            use.session.interrupt()

        try:
            return await blocking(
                ctx, work, label=label, latest=latest, on_cancel=cancel, progress=use.progress
            )
        except NoSuchSession:
            self.registry.forget(use.entry, remove=False)  # its container is gone: start afresh
            raise


class Hub:
    """The ``SessionAccess`` of each MCP session that calls the tools.

    Over stdio there is one client and one registry. Over HTTP each MCP session
    (``Mcp-Session-Id``) gets its own registry from ``make``, with its own scope,
    current session and quota, so clients never see each other's sessions.
    """

    def __init__(self, make: Callable[[int], SessionRegistry], build_wait: float) -> None:
        self._make = make
        self._build_wait = build_wait
        self._lock = threading.Lock()
        self._by_id: dict[str | None, SessionAccess] = {}
        self._single: SessionAccess | None = None
        self._made = 0

    @classmethod
    def single(cls, registry: SessionRegistry, build_wait: float) -> Hub:
        hub = cls(lambda _n: registry, build_wait)
        hub._single = SessionAccess(registry, build_wait)
        return hub

    def __call__(self, ctx: Context) -> SessionAccess:
        if self._single is not None:
            return self._single
        key = mcp_session_id(ctx)
        with self._lock:
            access = self._by_id.get(key)
            if access is None:
                self._made += 1
                access = self._by_id[key] = SessionAccess(self._make(self._made), self._build_wait)
        return access

    def drop(self, key: str) -> None:
        """The MCP session ended: remove its containers (unless ``persist``)."""
        with self._lock:
            access = self._by_id.pop(key, None)
        if access is not None:
            access.registry.close()

    def close(self) -> None:
        with self._lock:
            accesses, self._by_id = list(self._by_id.values()), {}
        for access in accesses + ([self._single] if self._single else []):
            access.registry.close()


def mcp_session_id(ctx: Context) -> str | None:
    """The HTTP request's ``Mcp-Session-Id`` (None over stdio)."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return None if headers is None else headers.get("mcp-session-id")

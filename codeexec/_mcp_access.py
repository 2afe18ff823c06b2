"""How MCP tool calls reach sessions: per MCP session, off the event loop, with progress.

The tools reach the server's ``ServerState`` (its ``Hub`` and largest timeout)
through the lifespan context: ``access(ctx)``. ``Hub`` hands each MCP session (one
over stdio, one per ``Mcp-Session-Id`` over HTTP) its ``SessionAccess``: the
registry of its sessions, the running ``jobs`` (``_mcp_jobs.py``) and the calls
still ending after a cancel. ``blocking`` runs a
session's blocking call on a worker thread, sending a progress notification every
``PROGRESS_EVERY`` seconds with the latest output, and interrupts the code when the
client cancels.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from .errors import CodeexecError, NoSuchSession
from .models import ExecResult
from .registry import SessionEntry, SessionRegistry
from .session import ContainerSession, validate_name

if TYPE_CHECKING:
    from ._mcp_jobs import Job

log = logging.getLogger("codeexec.mcp")

PROGRESS_EVERY = 5.0  # seconds between progress notices; far under any client timeout
SETTLE_WAIT = 10.0  # seconds a call waits for an interrupted, cancelled one to end
# Threads for the blocking session calls: long runs and jobs hold one each, and a cancelled
# call's thread runs until its code is interrupted, so more than asyncio's default (cores + 4).
WORKERS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="codeexec-mcp")
_T = TypeVar("_T")


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
    running = asyncio.get_running_loop().run_in_executor(WORKERS, fn)
    try:
        return await watch(running, progress, label=label, latest=latest)
    except asyncio.CancelledError:
        running.add_done_callback(_settled)
        if on_cancel is not None and not running.done():
            on_cancel()  # the client gave up: stop the code rather than run on
        raise


async def watch(
    future: asyncio.Future[_T],
    progress: Progress,
    *,
    label: str,
    latest: Callable[[], str],
    began: float | None = None,
    until: float | None = None,
) -> _T:
    """``future``'s result, with a progress notice every ``PROGRESS_EVERY`` s.

    Raises:
        asyncio.TimeoutError: still running at ``until`` (a ``time.monotonic()``).
    """
    began = time.monotonic() if began is None else began
    while True:
        step = PROGRESS_EVERY if until is None else min(PROGRESS_EVERY, until - time.monotonic())
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(step, 0))
        except asyncio.TimeoutError:  # not TimeoutError: Python 3.10
            if until is not None and time.monotonic() >= until:
                future.add_done_callback(_settled)
                raise
            line = latest().strip()[-200:]
            await progress.send(
                f"{label}: {time.monotonic() - began:.0f} s" + (f" | {line}" if line else "")
            )


async def built(
    entry: SessionEntry, seconds: float, notify: Callable[[str], Awaitable[None]]
) -> ContainerSession | None:
    """The entry's session once started, or None if it still builds after ``seconds``.

    Build lines (and a heartbeat every ``PROGRESS_EVERY`` s) go to ``notify``.

    Raises:
        CodeexecError: the build or start failed.
    """
    deadline = time.monotonic() + seconds
    sent, beat = 0, time.monotonic()  # the first poll reports where the build is
    while not entry.done.is_set():
        now = time.monotonic()
        if now >= deadline:
            return None
        if entry.lines.count > sent or now - beat >= PROGRESS_EVERY:
            line = entry.lines.last or "starting"
            sent, beat = entry.lines.count, now
            await notify(
                f"building session {entry.name!r} ({now - entry.started:.0f} s): {line[-200:]}"
            )
        await anyio.sleep(0.2)
    if entry.error is not None:
        raise entry.error
    return entry.session


def _settled(future: asyncio.Future[Any]) -> None:
    """Take the outcome nobody awaits any more (else asyncio logs it as never retrieved)."""
    if not future.cancelled():
        future.exception()


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
    jobs: dict[str, Job] = field(default_factory=dict)  # this MCP session's, by id
    _settling: dict[str, threading.Event] = field(default_factory=dict)

    def check_idle(self, use: Use) -> None:
        """Refuse a call on a session that one of this client's jobs is running in."""
        for job in self.jobs.values():
            if job.use.session is use.session and not job.future.done():
                raise ToolError(
                    f"session {use.name!r} is running job {job.id!r}: get_job(job="
                    f"{job.id!r}, wait=50) waits for its result, cancel_job stops it; "
                    "or use another session"
                )

    async def wait(
        self, ctx: Context, entry: SessionEntry, progress: Progress | None = None
    ) -> ContainerSession | None:
        """The entry's session once built; None if the build outlasts ``build_wait``."""
        try:
            return await built(entry, self.build_wait, (progress or Progress(ctx)).send)
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
        self.check_idle(use)
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


@dataclass(frozen=True)
class ServerState:
    """What a server's tools reach through its lifespan context (``build_server``)."""

    clients: Hub  # each MCP session's ``SessionAccess``
    max_timeout: float  # the largest ``execute_code`` timeout


def state(ctx: Context) -> ServerState:
    """The calling server's state (its lifespan context)."""
    found = ctx.request_context.lifespan_context
    assert isinstance(found, ServerState), found
    return found


def access(ctx: Context) -> SessionAccess:
    """The calling MCP session's ``SessionAccess``."""
    return state(ctx).clients(ctx)


def mcp_session_id(ctx: Context) -> str | None:
    """The HTTP request's ``Mcp-Session-Id`` (None over stdio)."""
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    return None if headers is None else headers.get("mcp-session-id")

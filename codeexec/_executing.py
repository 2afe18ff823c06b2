"""Running code in a session: execute, stream, interrupt, reset, ping, idle time.

A mixin of ``ContainerSession``. One execution runs at a time: the host's one
check is the connection's request lock (``ExecutorClient``), which answers a
second caller with ``SessionBusy`` at once; across processes the executor's own
``busy`` answer is the truth. A failed request asks docker once, in
``Channel.using``, whether the container is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from . import _cells
from ._cells import collect
from ._channel import Channel
from ._events import ClearOutput
from .client import ExecutorClient, InputHandler
from .errors import NoSuchSession
from .models import Display, ExecResult, ResultLimits, StreamEvent
from .options import check_env

INSTALL_TIMEOUT = 600.0  # install()'s default, and a %pip line's when the cell has none


class Executing:
    """``execute``, ``execute_stream``, ``interrupt``, ``reset``, ``idle_seconds``, ``ping``."""

    name: str
    default_timeout: float | None
    output_limit: int | None
    result_limits: ResultLimits | None
    _channel: Channel
    _stopped: bool

    def execute(
        self,
        code: str,
        *,
        timeout: float | None = None,
        on_output: Callable[[str, str], None] | None = None,
        output_limit: int | None = None,
        result_limits: ResultLimits | None = None,
        env: Mapping[str, str] | None = None,
        rollback_on_error: bool = False,
        on_input: InputHandler | None = None,
    ) -> ExecResult:
        """Run ``code`` in the session's namespace and return its result.

        An exception in the code is data: ``status="error"`` with ``error`` set. On
        timeout the code is interrupted and the namespace kept; code that ignores
        the interrupt is ended by restarting the executor (``restarted=True``).
        Notebook lines work (docs/outputs.md): ``!command`` runs in the container's
        shell, ``%pip install NAME...`` goes through :meth:`install`'s checks first.

        Args:
            code: Python source; the value of a final expression is returned as ``value``.
            timeout: seconds before the code is interrupted (default: the session's).
            on_output: called with ``(stream_name, text)`` as output arrives.
            output_limit: bytes of output kept (default: the session's, else 16 MiB).
            result_limits: caps on output, displays, value and traceback (default: the
                session's, else ``ResultLimits()``); past a cap an item is replaced by a
                marker and the result says ``truncated``.
            env: environment variables set for this execution only (then restored).
            rollback_on_error: when the code raises, times out, is interrupted or kills
                the Python process (say out of memory), put the session back to its
                state before this call (``rolled_back=True`` in the result). Costs a
                fork() of the process per call (docs/snapshots.md).
            on_input: answers the code's ``input(prompt)``: called with the prompt,
                returns the line (without newline), or None for end of input. Without
                it ``input()`` raises ``EOFError``.

        Raises:
            SessionBusy: another execution runs in this session.
            NoSuchSession: the container is gone (stopped, removed or idle-timed out).
            InvalidDependency: a ``%pip install`` line is malformed (nothing ran).
        """
        return collect(
            self.execute_stream(
                code, timeout=timeout, output_limit=output_limit,
                result_limits=result_limits, on_input=on_input, env=env,
                rollback_on_error=rollback_on_error,
            ),
            on_output,
        )  # fmt: skip

    def execute_stream(
        self,
        code: str,
        *,
        timeout: float | None = None,
        output_limit: int | None = None,
        result_limits: ResultLimits | None = None,
        on_input: InputHandler | None = None,
        env: Mapping[str, str] | None = None,
        rollback_on_error: bool = False,
    ) -> Iterator[StreamEvent | Display | ClearOutput | ExecResult]:
        """Like :meth:`execute`, yielding output events as they come; the last is the result.

        Each event is already cut to the caps, and nothing is kept between them.
        ``Display`` events may carry a ``display_id`` (``update=True``: it replaces
        what that id showed) and ``ClearOutput`` drops what came before.
        """
        # Every %pip line is checked before anything runs.
        segments = [
            (kind, self._install_code(part) if kind == "pip" else part)
            for kind, part in _cells.split(code)
        ]
        timeout = self._timeout(timeout)
        checked_env = check_env(env)
        total = 0.0
        with self._using() as client:
            for number, (kind, source) in enumerate(segments, start=1):
                last = number == len(segments)
                for event in client.stream(
                    str(source),
                    timeout=timeout if kind == "python" else timeout or INSTALL_TIMEOUT,
                    output_limit=output_limit or self.output_limit,
                    limits=result_limits or self.result_limits,
                    on_input=on_input,
                    env=checked_env,
                    store_history=last,  # one count per cell, as in Jupyter
                    rollback=rollback_on_error,
                ):
                    if not isinstance(event, ExecResult):
                        yield event
                        continue
                    total += event.duration_ms
                    if last or not event.ok:
                        yield event if number == 1 else replace(event, duration_ms=round(total, 3))
                        return

    def _install_code(self, packages: Sequence[str]) -> str:
        """The code that installs ``packages`` (checked as :meth:`install` checks them)."""
        raise NotImplementedError  # FilesAndPackages (_transfer.py) provides it

    def interrupt(self) -> None:
        """Raise KeyboardInterrupt in the running code (safe from another thread)."""
        client = self._channel.connected
        if client is not None:
            client.interrupt()

    def reset(self) -> None:
        """Start a fresh Python process in the container: every variable is dropped."""
        with self._using() as client:
            client.reset()

    def idle_seconds(self) -> float | None:
        """Seconds since code last ran here (the idle timeout counts from then).

        Asks over a separate connection, so looking does not reset the idle timer.
        """
        self._check_stopped()
        with self._channel.watching():
            idle = self._channel.probe().get("idle_seconds")
        return float(idle) if isinstance(idle, (int, float)) else None

    def ping(self) -> dict[str, Any]:
        """Ask the executor for its state (``busy``) without running code."""
        with self._using() as client:
            return client.ping()

    # -- internals ----------------------------------------------------------------
    def _timeout(self, timeout: float | None) -> float | None:
        return timeout if timeout is not None else self.default_timeout

    @contextmanager
    def _using(self) -> Iterator[ExecutorClient]:
        """The connection for one request (see ``Channel.using``)."""
        self._check_stopped()
        with self._channel.using() as client:
            yield client

    def _channel_client(self) -> ExecutorClient:
        """The open connection (its ``hello`` says which executor answered)."""
        with self._using() as client:
            return client

    def _check_stopped(self) -> None:
        if self._stopped:
            raise NoSuchSession(f"session {self.name!r} was stopped; start it again")

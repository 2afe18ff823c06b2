"""ExecutorClient: one persistent connection to one executor (``docs/protocol.md``).

Two transports carry the same frames (``_transport.py``): TCP to the container's
published port, or the pipes of a ``docker exec -i <container> … relay`` process
that ``docker.py`` starts. This module and ``_connection.py`` (its wire half)
are the one place where ``OSError``, timeouts and bad frames become
``ExecutorError`` subclasses.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import replace
from types import TracebackType
from typing import IO, Any

from . import protocol
from ._bounds import Budget
from ._cells import collect
from ._connection import CLOSE_WAIT, describe, matcher
from ._fileclient import FileVerbs
from ._results import CommandResult
from ._shared import constants
from ._transport import PipeTransport, SocketTransport
from .errors import (
    ConnectionLost,
    ProtocolError,
)
from .models import Display, ExecResult, ResultLimits, StreamEvent

INTERRUPT_GRACE = constants.INTERRUPT_GRACE  # the executor's default
RESULT_MARGIN = 10.0  # a killed worker is replaced before the result is sent
InputHandler = Callable[[str], "str | None"]  # the prompt of input() -> the answer


class ExecutorClient(FileVerbs):
    """One persistent, authenticated connection to one executor.

    Build it with :meth:`connect_tcp` or :meth:`over_pipes`. Calls are serialized
    (one request in flight); :meth:`interrupt` may be called from any thread while
    :meth:`execute` blocks in another. After ``ConnectionLost`` the client is closed.
    """

    @classmethod
    def connect_tcp(
        cls, host: str, port: int, token: str, *, connect_timeout: float = 5.0,
        session: str | None = None, request_timeout: float = 60.0,
        dial_timeout: float | None = None,
    ) -> ExecutorClient:  # fmt: skip
        """Connect to ``host:port`` and complete the handshake within ``connect_timeout``.

        ``dial_timeout`` bounds the TCP connect alone (default: ``connect_timeout``).

        Raises:
            ConnectionLost: nothing answered the handshake (refused, reset, EOF, timeout);
                retry until a deadline: docker-proxy accepts before the executor listens.
            HandshakeError: the peer did not prove it knows ``token`` (not this session's
                executor: nothing but a nonce was sent to it), or it refused the
                host's proof or the protocol version.
        """
        deadline = time.monotonic() + connect_timeout
        where = f"session {session!r}" if session else "the session"
        try:
            sock = socket.create_connection((host, port), timeout=dial_timeout or connect_timeout)
        except OSError as exc:
            raise ConnectionLost(
                f"cannot connect to the executor of {where} at {host}:{port}: {exc}"
            ) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport = SocketTransport(sock)
        except OSError as exc:
            sock.close()
            raise ConnectionLost(f"cannot set up the connection to {where}: {exc}") from exc
        client = cls(transport, session=session, request_timeout=request_timeout)
        client._handshake(token, deadline, f"{host}:{port}")
        return client

    @classmethod
    def over_pipes(
        cls, reader: IO[bytes], writer: IO[bytes], token: str, *,
        on_close: Callable[[], object] | None = None, hello_timeout: float = 10.0,
        session: str | None = None, request_timeout: float = 60.0,
    ) -> ExecutorClient:  # fmt: skip
        """Speak through a relay's stdout (``reader``) and stdin (``writer``).

        The client owns both pipes from now on and reads their descriptors directly;
        ``on_close`` runs once when it closes (to reap the relay). Raises like
        :meth:`connect_tcp`.
        """
        transport = PipeTransport(reader, writer, on_close)
        client = cls(transport, session=session, request_timeout=request_timeout)
        client._handshake(token, time.monotonic() + hello_timeout, "the other end of the relay")
        return client

    def execute(
        self, code: str, *, timeout: float | None = None, output_limit: int | None = None,
        on_output: Callable[[str, str], None] | None = None,
        on_display: Callable[[Display], None] | None = None,
        limits: ResultLimits | None = None, on_input: InputHandler | None = None,
        store_history: bool = True, env: Mapping[str, str] | None = None,
        rollback: bool = False,
    ) -> ExecResult:  # fmt: skip
        """Run ``code``; return its result with stdout, stderr and displays collected.

        ``on_output(name, text)`` and ``on_display(display)`` see each event as it
        is kept. ``limits`` caps what is kept (``ResultLimits``: 16 MiB of output,
        32 MiB of displays, 1 MiB each of value and traceback by default);
        ``output_limit`` overrides its ``output``. ``on_input(prompt)`` answers the
        code's ``input()`` (a ``str``, or None for end of input); without it ``input()``
        raises ``EOFError``. Displays and ``clear_output`` are folded as in ``_cells.collect``.
        ``store_history=False``: the run does not count (``execution_count``, ``_``).
        ``env`` is set for this run only.

        Raises:
            SessionBusy: another execution is running in the session.
            ConnectionLost: the executor went away or sent no result in time.
            ProtocolError: the executor sent something malformed.
        """
        events = self.stream(
            code, timeout=timeout, output_limit=output_limit, limits=limits,
            on_input=on_input, store_history=store_history, env=env, rollback=rollback,
        )  # fmt: skip
        return collect(events, on_output, on_display)

    def stream(
        self, code: str, *, timeout: float | None = None, output_limit: int | None = None,
        limits: ResultLimits | None = None, on_input: InputHandler | None = None,
        store_history: bool = True, env: Mapping[str, str] | None = None,
        rollback: bool = False,
    ) -> Generator[protocol.Event, None, None]:  # fmt: skip
        """Run ``code``, yielding ``StreamEvent`` and ``Display`` items, then the ``ExecResult``.

        Nothing is accumulated: the final result carries no stdout, stderr or displays.
        Every event is cut to ``limits`` as in :meth:`execute`, whatever the executor
        sends. Closing the generator early interrupts the execution and drains its
        frames. Raises like :meth:`execute`.
        """
        limits = limits or ResultLimits()
        if output_limit is not None:
            limits = replace(limits, output=output_limit)
        budget = Budget(limits)
        self._acquire()
        held = True
        exec_id = f"c{next(self._ids)}"
        slack = INTERRUPT_GRACE + RESULT_MARGIN
        deadline = None if timeout is None else time.monotonic() + timeout + slack
        try:
            message = protocol.exec_(
                exec_id, code, timeout, limits.output, limits=limits,
                allow_stdin=on_input is not None, store_history=store_history,
                env=env, rollback=rollback,
            )  # fmt: skip
            self._send(message, running=exec_id)
            while True:
                frame = self._read(deadline, "result")
                if frame.get("type") == "input_request" and frame.get("id") == exec_id:
                    self._answer_input(exec_id, frame, on_input)
                    continue
                item = self._exec_item(frame, exec_id, budget)
                if isinstance(item, ExecResult):
                    self._current_id, held = None, False
                    self._call_lock.release()
                    yield item
                    return
                if item is not None:
                    yield item
        except BaseException:
            if self._current_id == exec_id and not self._closed:
                self._abandon(exec_id)
            raise
        finally:
            if self._current_id == exec_id:
                self._current_id = None
            if held:
                self._call_lock.release()

    def run(
        self, argv: list[str], *, cwd: str | None = None, env: dict[str, str] | None = None,
        timeout: float | None = None, output_limit: int | None = None,
    ) -> Generator[StreamEvent | CommandResult, None, None]:  # fmt: skip
        """Run the program ``argv`` in the container, yielding its output as
        ``StreamEvent`` items, then its ``CommandResult`` (without the output).

        :meth:`interrupt` sends SIGINT to it; closing the generator early kills it.
        Raises like :meth:`execute`.
        """
        limit = ResultLimits().output if output_limit is None else output_limit
        self._acquire()
        held = True
        run_id = f"r{next(self._ids)}"
        deadline = None if timeout is None else time.monotonic() + timeout + 2 * RESULT_MARGIN
        used = 0
        try:
            message = protocol.run(run_id, argv, cwd=cwd, env=env, timeout=timeout,
                                   output_limit=output_limit)  # fmt: skip
            self._send(message, running=run_id)
            while True:
                item = self._run_item(self._read(deadline, "exit status"), run_id)
                if isinstance(item, CommandResult):
                    self._current_id, held = None, False
                    self._call_lock.release()
                    yield item
                    return
                if item is not None and used <= limit:  # the executor cut it already
                    used += len(item.text)
                    yield item
        except BaseException:
            if self._current_id == run_id and not self._closed:
                self.close()  # the executor kills the command of a closed connection
            raise
        finally:
            if self._current_id == run_id:
                self._current_id = None
            if held:
                self._call_lock.release()

    def interrupt(self) -> None:
        """Raise ``KeyboardInterrupt`` in the running code; a no-op if nothing runs.

        Thread-safe: meant for another thread (a Ctrl-C handler, a watchdog).
        """
        # Under the write lock, so an exec frame on its way is either not sent yet
        # (nothing to interrupt) or sent and marked running. A timeout, not a deadlock,
        # if a signal handler lands while this thread holds the lock.
        if self._closed or not self._write_lock.acquire(timeout=CLOSE_WAIT):
            return
        try:
            exec_id = self._current_id
            if exec_id is None:
                return
            failure = self._write(protocol.encode(protocol.interrupt(exec_id)), None)
        finally:
            self._write_lock.release()
        if failure is not None:
            raise self._lost(describe(failure)) from failure

    def ping(self) -> dict[str, Any]:
        """Return the executor's pong, e.g. ``{"type": "pong", "busy": False}``."""
        return self._call(protocol.ping(), "ping", matcher("pong", None, None))

    def reset(self) -> None:
        """Replace the executor's Python process: every variable is gone."""
        self._call(protocol.reset(), "reset", matcher("ack", "reset", None))

    def quiesce(self, seconds: float) -> None:
        """Ask the executor to close its connections and listener until SIGUSR1.

        Before a checkpoint (``snapshot.py``): gVisor cannot save a TCP endpoint that
        anything waits on. It listens again by itself after ``seconds``.
        """
        self._call({"op": "quiesce", "seconds": seconds}, "quiesce",
                   matcher("ack", "quiesce", None))  # fmt: skip

    def checkpoint(self, name: str | None = None, *, files: bool = False) -> dict[str, Any]:
        """Park a copy of the Python process (docs/snapshots.md); returns its description.

        Raises:
            CheckpointError: refused (a taken name, the cap, files too large...).
        """
        return self._checkpoint_call(protocol.checkpoint(name, files))

    def restore(self, name: str) -> dict[str, Any]:
        return self._checkpoint_call(protocol.restore(name))

    def drop(self, name: str) -> None:
        self._checkpoint_call(protocol.drop(name))

    def checkpoints(self) -> list[dict[str, Any]]:
        return list(self._checkpoint_call(protocol.checkpoints()).get("checkpoints") or [])

    def fork(self, name: str) -> dict[str, Any]:
        """Start fork ``name`` of this connection's branch inside the container."""
        return self._checkpoint_call(protocol.fork(name))

    def select_branch(self, name: str) -> None:
        """Send this connection's later requests to the fork ``name``."""
        self._call(
            protocol.branch(name), f"checkpoint branch {name!r}", matcher("ack", "branch", None)
        )

    def close_fork(self, name: str) -> None:
        self._call(
            protocol.close_fork(name), "checkpoint close_fork", matcher("ack", "close_fork", None)
        )

    def _checkpoint_call(self, message: protocol.Frame) -> dict[str, Any]:
        op = message["op"]
        return self._call(message, f"checkpoint {op}", matcher("checkpoint", op, None))

    def __enter__(self) -> ExecutorClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _exec_item(
        self, frame: protocol.Frame, exec_id: str, budget: Budget | None = None
    ) -> protocol.Event | None:
        kind, frame_id = frame.get("type"), frame.get("id")
        if kind == "error" and frame_id in (None, exec_id):
            self._current_id = None  # ours never started: interrupt() must not hit another's
            self._raise_error(frame, "execution")
        if frame_id != exec_id:
            return None  # acks, and frames of other requests
        try:
            return protocol.parse_event(frame) if budget is None else budget.take(frame)
        except ProtocolError:
            self.close()
            raise

    def _run_item(self, frame: protocol.Frame, run_id: str) -> StreamEvent | CommandResult | None:
        kind = frame.get("type")
        if kind == "error" and frame.get("id") in (None, run_id):
            self._current_id = None
            self._raise_error(frame, "command")
        if frame.get("id") != run_id or kind not in ("stream", "exit"):
            return None  # acks, and frames of other requests
        try:
            if kind == "stream":
                event = protocol.parse_event(frame)
                assert isinstance(event, StreamEvent)
                return event
            sig = frame.get("signal")
            return CommandResult(
                exit_code=int(frame["exit_code"]), duration_ms=float(frame["duration_ms"]),
                timed_out=bool(frame.get("timed_out")), signal=None if sig is None else int(sig),
                interrupted=bool(frame.get("interrupted")), truncated=bool(frame.get("truncated")),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError, AssertionError) as exc:
            self.close()
            raise ProtocolError(f"received a malformed {kind} frame: {exc!r}") from exc

    def _answer_input(
        self, exec_id: str, frame: protocol.Frame, on_input: InputHandler | None
    ) -> None:
        """Ask ``on_input`` for the answer to the code's ``input(prompt)`` and send it."""
        seq = frame.get("seq")
        if type(seq) is not int:
            raise ProtocolError("the executor sent an input_request without a 'seq'")
        answer = None if on_input is None else on_input(str(frame.get("prompt") or ""))
        self._send(protocol.input_reply(exec_id, seq, None if answer is None else str(answer)))

    def _abandon(self, exec_id: str) -> None:
        """Interrupt an execution nobody waits for and drain it, or drop the connection."""
        try:
            self._send(protocol.interrupt(exec_id))
            deadline = time.monotonic() + INTERRUPT_GRACE + RESULT_MARGIN
            while not isinstance(self._exec_item(self._read(deadline, "result"), exec_id),
                                 ExecResult):  # fmt: skip
                pass
        except Exception:
            self.close()  # the caller's own exception is the one worth raising
        except BaseException:
            self.close()
            raise
        finally:
            self._current_id = None

"""ExecutorClient: one persistent connection to one executor (``docs/protocol.md``).

Two transports carry the same frames (``_transport.py``): TCP to the container's
published port, or the pipes of a ``docker exec -i <container> … relay`` process
that ``docker.py`` starts. This module and ``_connection.py`` (its wire half)
are the one place where ``OSError``, timeouts and bad frames become
``ExecutorError`` subclasses.
"""

from __future__ import annotations

import base64
import io
import socket
import time
from collections.abc import Callable, Generator, Mapping
from contextlib import closing
from dataclasses import replace
from types import TracebackType
from typing import IO, Any

from . import protocol
from ._bounds import Budget
from ._connection import CLOSE_WAIT, Connection, describe, matcher
from ._shared import constants
from ._transport import PipeTransport, SocketTransport
from .errors import (
    ConnectionLost,
    FileTransferError,
    ProtocolError,
)
from .models import Display, ExecResult, ResultLimits, StreamEvent

INTERRUPT_GRACE = constants.INTERRUPT_GRACE  # the executor's default
RESULT_MARGIN = 10.0  # a killed worker is replaced before the result is sent


class ExecutorClient(Connection):
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
        limits: ResultLimits | None = None, env: Mapping[str, str] | None = None,
        rollback: bool = False,
    ) -> ExecResult:  # fmt: skip
        """Run ``code``; return its result with stdout, stderr and displays collected.

        ``on_output(name, text)`` and ``on_display(display)`` see each event as it
        is kept. ``limits`` caps what is kept (``ResultLimits``: 16 MiB of output,
        32 MiB of displays, 1 MiB each of value and traceback by default);
        ``output_limit`` overrides its ``output``; ``env`` is set for this run only.

        Raises:
            SessionBusy: another execution is running in the session.
            ConnectionLost: the executor went away or sent no result in time.
            ProtocolError: the executor sent something malformed.
        """
        # StringIO, not a list of pieces: a flood of tiny frames must not cost an
        # object each.
        parts = {"stdout": io.StringIO(), "stderr": io.StringIO()}
        displays: list[Display] = []
        result = ExecResult(status="error")
        events = self.stream(
            code,
            timeout=timeout,
            output_limit=output_limit,
            limits=limits,
            env=env,
            rollback=rollback,
        )
        with closing(events):
            for event in events:
                if isinstance(event, StreamEvent):
                    if on_output is not None:
                        on_output(event.name, event.text)
                    parts[event.name].write(event.text)
                elif isinstance(event, Display):
                    if on_display is not None:
                        on_display(event)
                    displays.append(event)
                else:
                    result = event
        return replace(
            result, stdout=parts["stdout"].getvalue(), stderr=parts["stderr"].getvalue(),
            displays=tuple(displays),
        )  # fmt: skip

    def stream(
        self, code: str, *, timeout: float | None = None, output_limit: int | None = None,
        limits: ResultLimits | None = None, env: Mapping[str, str] | None = None,
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
                exec_id,
                code,
                timeout,
                limits.output,
                limits=limits,
                env=env,
                rollback=rollback,
            )
            self._send(message, running=exec_id)
            while True:
                item = self._exec_item(self._read(deadline, "result"), exec_id, budget)
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

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> int:
        """Write ``data`` to ``path`` in the container; return the size written.

        Raises:
            FileTransferError: the executor refused or failed (``.code`` says why).
        """
        fid = f"f{next(self._ids)}"
        message = protocol.put_file(fid, path, data, mode)
        if len(message["data"]) + len(path) + 256 > self.frame_limit:
            raise FileTransferError(
                f"{path!r} is too large to upload in one frame ({len(data)} bytes; the limit "
                f"is about {self.frame_limit * 3 // 4} bytes)", code="too_large")  # fmt: skip
        frame = self._call(message, f"upload of {path!r}", matcher("ack", "put_file", fid))
        return int(frame.get("size", len(data)))

    def get_file(self, path: str, max_bytes: int) -> bytes:
        """Read ``path`` from the container, refused when larger than ``max_bytes``.

        Raises:
            FileTransferError: missing, too large, or unreadable (``.code`` says why).
        """
        fid = f"f{next(self._ids)}"
        message = protocol.get_file(fid, path, max_bytes)
        frame = self._call(message, f"download of {path!r}", matcher("file", None, fid))
        try:
            return base64.b64decode(frame["data"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"the executor sent {path!r} in a bad encoding") from exc

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

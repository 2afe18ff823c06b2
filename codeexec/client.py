"""ExecutorClient: one persistent connection to one executor (``docs/protocol.md``).

Two transports carry the same frames (``_transport.py``): TCP to the container's
published port, or the pipes of a ``docker exec -i <container> … relay`` process
that ``docker.py`` starts. This is the one place where ``OSError``, timeouts and bad
frames become ``ExecutorError`` subclasses.
"""

from __future__ import annotations

import base64
import io
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import replace
from types import TracebackType
from typing import IO, Any

from . import protocol
from ._bounds import Budget
from ._transport import PipeTransport, SocketTransport, Transport
from .errors import (
    ConnectionLost,
    FileTransferError,
    HandshakeError,
    ProtocolError,
    SessionBusy,
    register_secret,
)
from .models import Display, ExecResult, ResultLimits, StreamEvent

INTERRUPT_GRACE = 2.0  # the executor's default CODEEXEC_INTERRUPT_GRACE
RESULT_MARGIN = 10.0  # a killed worker is replaced before the result is sent
_CLOSE_WAIT = 2.0
_FILE_ERRORS = ("not_found", "too_large", "io_error")


class ExecutorClient:
    """One persistent, authenticated connection to one executor.

    Build it with :meth:`connect_tcp` or :meth:`over_pipes`. Calls are serialized
    (one request in flight); :meth:`interrupt` may be called from any thread while
    :meth:`execute` blocks in another. After ``ConnectionLost`` the client is closed.
    """

    def __init__(self, transport: Transport, *, session: str | None, request_timeout: float):
        self._transport = transport
        self._label = f"session {session!r}" if session else "the session"
        self.request_timeout = request_timeout
        self.frame_limit = protocol.DEFAULT_FRAME_LIMIT
        self._call_lock = threading.Lock()  # one request in flight: the busy check
        self._write_lock = threading.Lock()  # whole frames only, interrupt() included
        self._ids = itertools.count(1)
        self._current_id: str | None = None  # the running execution, for interrupt()
        self._reading = False
        self._closed = False
        self.hello: dict[str, Any] = {}

    @classmethod
    def connect_tcp(
        cls, host: str, port: int, token: str, *, connect_timeout: float = 5.0,
        session: str | None = None, request_timeout: float = 60.0,
    ) -> ExecutorClient:  # fmt: skip
        """Connect to ``host:port`` and complete the handshake within ``connect_timeout``.

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
            sock = socket.create_connection((host, port), timeout=connect_timeout)
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

    @property
    def closed(self) -> bool:
        return self._closed

    def execute(
        self, code: str, *, timeout: float | None = None, output_limit: int | None = None,
        on_output: Callable[[str, str], None] | None = None,
        on_display: Callable[[Display], None] | None = None,
        limits: ResultLimits | None = None,
    ) -> ExecResult:  # fmt: skip
        """Run ``code``; return its result with stdout, stderr and displays collected.

        ``on_output(name, text)`` and ``on_display(display)`` see each event as it
        is kept. ``limits`` caps what is kept (``ResultLimits``: 16 MiB of output,
        32 MiB of displays, 1 MiB each of value and traceback by default);
        ``output_limit`` overrides its ``output``.

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
        events = self.stream(code, timeout=timeout, output_limit=output_limit, limits=limits)
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
        limits: ResultLimits | None = None,
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
            message = protocol.exec_(exec_id, code, timeout, limits.output, limits=limits)
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
        if self._closed or not self._write_lock.acquire(timeout=_CLOSE_WAIT):
            return
        try:
            exec_id = self._current_id
            if exec_id is None:
                return
            failure = self._write(protocol.encode(protocol.interrupt(exec_id)), None)
        finally:
            self._write_lock.release()
        if failure is not None:
            raise self._lost(_describe(failure)) from failure

    def ping(self) -> dict[str, Any]:
        """Return the executor's pong, e.g. ``{"type": "pong", "busy": False}``."""
        return self._call(protocol.ping(), "ping", _matcher("pong", None, None))

    def reset(self) -> None:
        """Replace the executor's Python process: every variable is gone."""
        self._call(protocol.reset(), "reset", _matcher("ack", "reset", None))

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
        frame = self._call(message, f"upload of {path!r}", _matcher("ack", "put_file", fid))
        return int(frame.get("size", len(data)))

    def get_file(self, path: str, max_bytes: int) -> bytes:
        """Read ``path`` from the container, refused when larger than ``max_bytes``.

        Raises:
            FileTransferError: missing, too large, or unreadable (``.code`` says why).
        """
        fid = f"f{next(self._ids)}"
        message = protocol.get_file(fid, path, max_bytes)
        frame = self._call(message, f"download of {path!r}", _matcher("file", None, fid))
        try:
            return base64.b64decode(frame["data"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"the executor sent {path!r} in a bad encoding") from exc

    def close(self) -> None:
        """Close the connection (idempotent); a read blocked in another thread ends."""
        if self._closed:
            return
        self._closed = True
        got_write = self._write_lock.acquire(timeout=_CLOSE_WAIT)
        try:
            self._transport.shutdown()
            # A reader in another thread must see EOF before its descriptor is released
            # (and its number perhaps reused by another open()).
            got_call = self._call_lock.acquire(timeout=_CLOSE_WAIT if self._reading else 0)
            try:
                self._transport.close()
            finally:
                if got_call:
                    self._call_lock.release()
        finally:
            if got_write:
                self._write_lock.release()

    def __enter__(self) -> ExecutorClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    def __repr__(self) -> str:
        return f"<ExecutorClient {self._label} {'closed' if self._closed else 'open'}>"

    # -- internals ---------------------------------------------------------------------

    def _handshake(self, token: str, deadline: float, peer: str) -> None:
        """Challenge-response both ways (docs/protocol.md), keyed by the token.

        Nothing but a fresh nonce is sent before the executor has proved it knows the
        token: an impostor on a dead session's port learns nothing it could use.
        """
        register_secret(token)
        client_nonce = os.urandom(protocol.NONCE_BYTES)
        try:
            self._send(protocol.hello(client_nonce), deadline=deadline)
            frame = self._read(deadline, "hello answer")
            server_nonce = protocol.challenge_nonce(frame, token, client_nonce)
            if server_nonce is None:
                raise self._not_proven(frame, peer)
            client_proof = protocol.proof(token, "client", client_nonce, server_nonce)
            self._send(protocol.auth(client_proof), deadline=deadline)
            frame = self._read(deadline, "answer to the host's proof")
        except BaseException:
            self.close()
            raise
        if frame.get("type") == "hello" and frame.get("protocol") == protocol.PROTOCOL_VERSION:
            self.hello = frame
            return
        self.close()
        if frame.get("type") == "error":
            raise HandshakeError(
                f"the executor of {self._label} refused the host's proof ({_detail(frame)}): "
                "the token does not match the container's CODEEXEC_TOKEN"
            )
        raise ProtocolError(f"the executor of {self._label} answered the auth with {frame!r:.200}")

    def _not_proven(self, frame: protocol.Frame, peer: str) -> HandshakeError:
        if frame.get("type") == "error" and frame.get("code") == "protocol_mismatch":
            return HandshakeError(
                f"the executor of {self._label} speaks another protocol version than this "
                f"codeexec ({protocol.PROTOCOL_VERSION}); stop the session and start it again "
                "with the installed codeexec"
            )
        why = (
            "its proof of the session token is wrong"
            if frame.get("type") == "challenge"
            else f"it answered the hello with {_summary(frame)} instead of a challenge"
        )
        return HandshakeError(
            f"the program answering at {peer} is not the executor of {self._label}: {why}, "
            "so it was sent nothing but a random nonce. The session's container is probably "
            "gone and another program now holds its address (or the session runs an executor "
            f"older than protocol {protocol.PROTOCOL_VERSION}); check `codeexec ls` and start "
            "the session again"
        )

    def _acquire(self) -> None:
        # The host's one busy check: a second request on this connection is answered
        # at once, not queued (across connections the executor answers ``busy``).
        if not self._call_lock.acquire(blocking=False):
            raise self._busy()

    def _busy(self) -> SessionBusy:
        return SessionBusy(
            f"another execution is running in {self._label}; wait for it or call interrupt()"
        )

    def _lost(self, detail: str) -> ConnectionLost:
        self.close()
        return ConnectionLost(
            f"the connection to the executor of {self._label} was lost ({detail}): the "
            "container may have stopped or been removed; check `codeexec ls` and start "
            "the session again"
        )

    def _send(
        self, message: protocol.Frame, *, deadline: float | None = None, running: str = ""
    ) -> None:
        """Send one frame; with ``running``, mark that execution as started, atomically."""
        data = protocol.encode(message)
        if self._closed:
            raise self._lost("the client is closed")
        with self._write_lock:
            failure = self._write(data, deadline)
            if failure is None and running:
                self._current_id = running
        if failure is not None:  # mapped here, once the lock that close() takes is free
            raise self._lost(_describe(failure)) from failure

    def _write(self, data: bytes, deadline: float | None) -> OSError | None:
        if deadline is None:
            deadline = time.monotonic() + max(self.request_timeout, 60.0)
        try:
            self._transport.send(data, deadline)
        except OSError as exc:
            return exc
        return None

    def _read(self, deadline: float | None, what: str) -> protocol.Frame:
        if self._closed:
            raise self._lost("the client is closed")
        self._transport.deadline = deadline
        self._reading = True
        try:
            frame = protocol.read_frame(self._transport, self.frame_limit)
        except (OSError, ConnectionLost, ProtocolError) as exc:
            self._reading = False  # before close(), which waits for a reader
            if isinstance(exc, ProtocolError):
                self.close()  # the stream can no longer be trusted
                raise
            timed_out = isinstance(exc, TimeoutError)
            raise self._lost(f"no {what} arrived in time" if timed_out else _describe(exc)) from exc
        finally:
            self._reading = False
        if frame is None:
            raise self._lost("the executor closed the connection")
        return frame

    def _call(
        self, message: protocol.Frame, what: str, match: Callable[[protocol.Frame], bool]
    ) -> protocol.Frame:
        self._acquire()
        try:
            deadline = time.monotonic() + self.request_timeout
            self._send(message, deadline=deadline)
            while True:
                frame = self._read(deadline, "answer")
                if match(frame):
                    return frame
                if frame.get("type") == "error" and frame.get("id") in (None, message.get("id")):
                    self._raise_error(frame, what)
        finally:
            self._call_lock.release()

    def _raise_error(self, frame: protocol.Frame, what: str) -> None:
        code = str(frame.get("code") or "error")
        if code == "busy":
            raise self._busy()
        if code in _FILE_ERRORS and frame.get("id") and what.startswith(("upload", "download")):
            raise FileTransferError(
                f"the {what} in {self._label} failed ({_detail(frame)})", code=code
            )
        if code in ("too_large", "bad_frame"):
            self.close()  # a refused frame: the executor closes the connection
        raise ProtocolError(f"the executor of {self._label} refused the {what} ({_detail(frame)})")

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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the executor stopped reading"
    return str(exc) or type(exc).__name__


def _detail(frame: protocol.Frame) -> str:
    code = str(frame.get("code") or "error")
    return f"{code}: {frame['message']}" if frame.get("message") else code


def _summary(frame: protocol.Frame) -> str:
    """A stranger's frame, short and with control characters escaped."""
    kind, code = frame.get("type"), frame.get("code")
    return f"a {kind!r:.40} frame" + (f" ({code!r:.40})" if code is not None else "")


def _matcher(kind: str, op: str | None, frame_id: str | None) -> Callable[[protocol.Frame], bool]:
    """Recognise the answer to a request among late frames of earlier ones."""
    return lambda f: (f.get("type"), f.get("op"), f.get("id")) == (kind, op, frame_id)

"""The wire half of ``ExecutorClient``: frames out and in, locks, the handshake.

``client.py`` keeps the verbs (execute, stream, interrupt, files, ping, reset);
this keeps how one connection sends and reads whole frames under its locks, proves
both ends to each other, and maps transport failures and error frames to
``ExecutorError`` subclasses. The host's one busy check is ``_acquire`` here.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from . import protocol
from ._transport import Transport
from .errors import (
    CheckpointError,
    ConnectionLost,
    FileTransferError,
    HandshakeError,
    ProtocolError,
    SessionBusy,
    register_secret,
)

CLOSE_WAIT = 2.0
_FILE_ERRORS = ("not_found", "too_large", "io_error")


class Connection:
    """One authenticated connection to one executor; ``ExecutorClient`` adds the verbs."""

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

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the connection (idempotent); a read blocked in another thread ends."""
        if self._closed:
            return
        self._closed = True
        got_write = self._write_lock.acquire(timeout=CLOSE_WAIT)
        try:
            self._transport.shutdown()
            # A reader in another thread must see EOF before its descriptor is released
            # (and its number perhaps reused by another open()).
            got_call = self._call_lock.acquire(timeout=CLOSE_WAIT if self._reading else 0)
            try:
                self._transport.close()
            finally:
                if got_call:
                    self._call_lock.release()
        finally:
            if got_write:
                self._write_lock.release()

    def __repr__(self) -> str:
        return f"<ExecutorClient {self._label} {'closed' if self._closed else 'open'}>"

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
                f"the executor of {self._label} refused the host's proof ({detail(frame)}): "
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
            else f"it answered the hello with {summary(frame)} instead of a challenge"
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
            raise self._lost(describe(failure)) from failure

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
            raise self._lost(f"no {what} arrived in time" if timed_out else describe(exc)) from exc
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
                f"the {what} in {self._label} failed ({detail(frame)})", code=code
            )
        if what.startswith("checkpoint") and code != "bad_frame":
            raise CheckpointError(f"{frame.get('message') or code}", code=code)
        if code in ("too_large", "bad_frame"):
            self.close()  # a refused frame: the executor closes the connection
        raise ProtocolError(f"the executor of {self._label} refused the {what} ({detail(frame)})")


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the executor stopped reading"
    return str(exc) or type(exc).__name__


def detail(frame: protocol.Frame) -> str:
    code = str(frame.get("code") or "error")
    return f"{code}: {frame['message']}" if frame.get("message") else code


def summary(frame: protocol.Frame) -> str:
    """A stranger's frame, short and with control characters escaped."""
    kind, code = frame.get("type"), frame.get("code")
    return f"a {kind!r:.40} frame" + (f" ({code!r:.40})" if code is not None else "")


def matcher(kind: str, op: str | None, frame_id: str | None) -> Callable[[protocol.Frame], bool]:
    """Recognise the answer to a request among late frames of earlier ones."""
    return lambda f: (f.get("type"), f.get("op"), f.get("id")) == (kind, op, frame_id)

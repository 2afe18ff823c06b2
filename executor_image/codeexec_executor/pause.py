"""The listener, and the ``quiesce`` op that lets the engine checkpoint the sandbox.

gVisor (20221219) refuses to checkpoint a TCP endpoint that anything waits on
("endpoint still has waiters upon save"): the supervisor's listening socket and
its open connections. ``quiesce`` answers, then closes every connection and the
listener; SIGUSR1 (``docker kill --signal USR1``, sent by the host after the
checkpoint, and to a resumed copy after its restore) opens the listener again.
If no signal comes, it reopens after ``seconds`` anyway, so a host that died
mid-snapshot never leaves a session deaf for good.

A mixin of ``Server`` (server.py).
"""

from __future__ import annotations

import selectors
import signal
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .server import Conn

QUIESCE_DEFAULT = 30.0
QUIESCE_MAX = 600.0
LINGER = 2.0


class Pausing:
    """``_listen``, ``_op_quiesce`` and the SIGUSR1 that ends a quiesce."""

    host: str
    port: int
    sel: selectors.BaseSelector
    conns: set
    listener: socket.socket | None = None
    relisten_at: float | None = None  # quiesced: listen again by then
    relisten_due = False

    if TYPE_CHECKING:

        def send(self, conn: Conn | None, obj: dict) -> None: ...

        def _error(self, conn: Conn, code: str, message: str, req_id=None) -> None: ...

        def _close(self, conn: Conn) -> None: ...

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        self.port = listener.getsockname()[1]  # port 0 (tests): listen again on the same one
        listener.listen(64)
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, ("listen", listener))
        self.listener = listener
        self.relisten_at = None
        self.relisten_due = False
        signal.signal(signal.SIGUSR1, self._on_relisten_signal)
        return listener

    def _on_relisten_signal(self, signum, frame) -> None:
        self.relisten_due = True

    def _relisten_if_due(self, now: float) -> None:
        """Listen again after SIGUSR1 or when the quiesce ran out."""
        if self.listener is not None:
            self.relisten_due = False
            return
        if self.relisten_due or (self.relisten_at is not None and now >= self.relisten_at):
            self._listen()

    def _op_quiesce(self, conn: Conn, req: dict) -> None:
        """Answer, then close every connection and the listener until SIGUSR1."""
        seconds = req.get("seconds", QUIESCE_DEFAULT)
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 < seconds <= QUIESCE_MAX
        ):
            self._error(conn, "bad_request", f"'seconds' must be in (0, {QUIESCE_MAX:g}]")
            return
        listener, self.listener = self.listener, None
        if listener is not None:
            self.sel.unregister(listener)
            listener.close()
        self.relisten_at = time.monotonic() + seconds
        for other in list(self.conns):
            if other is not conn:
                self._close(other)
        conn.closing = True  # closed once the answer is flushed and the client is gone
        conn.close_at = time.monotonic() + LINGER
        self.send(conn, {"type": "ack", "op": "quiesce", "seconds": seconds})

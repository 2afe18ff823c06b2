"""A program that holds a session's address and plays its executor (docs/protocol.md).

It records every byte each connection sends it and answers like an executor would:
the hello with ``answer`` (by default a version-1 hello, which is all an executor
had to say before protocol 2), an ``exec`` with a forged result, a ``put_file`` with
an ack. A host that trusts it hands over the token, the code and the files.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from typing import Any

V1_HELLO = {"type": "hello", "protocol": 1, "python": "3.11.2", "executor": "1.0.0",
            "pid": 7, "worker_pid": 9, "busy": False, "idle_seconds": 0.0}  # fmt: skip


def frame(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj).encode("utf-8")
    return struct.pack(">I", len(body)) + body


def split_frames(data: bytes) -> list[dict[str, Any]]:
    """The complete frames in ``data`` (a trailing partial frame is left out)."""
    frames = []
    while len(data) >= 4:
        (length,) = struct.unpack(">I", data[:4])
        if len(data) < 4 + length:
            break
        frames.append(json.loads(data[4 : 4 + length]))
        data = data[4 + length :]
    return frames


def bind(port: int, timeout: float) -> socket.socket:
    """Listen on 127.0.0.1:``port``, retrying until whoever holds it lets go."""
    deadline = time.monotonic() + timeout
    while True:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
            listener.listen(16)
            return listener
        except OSError:
            listener.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


class Impostor:
    """Listens on 127.0.0.1:``port`` (0: any) until :meth:`close`."""

    def __init__(
        self, port: int = 0, *, answer: dict[str, Any] | None = None, bind_timeout: float = 0
    ) -> None:
        self.answer = answer or V1_HELLO
        self.streams: list[bytearray] = []  # what each connection sent, in order
        self._listener = bind(port, bind_timeout)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._start(self._accept)

    @property
    def received(self) -> bytes:
        """Every byte every connection sent."""
        return b"".join(bytes(s) for s in self.streams)

    def frames(self) -> list[list[dict[str, Any]]]:
        """The frames each connection sent."""
        return [split_frames(bytes(s)) for s in self.streams]

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self._listener.close()

    def __enter__(self) -> Impostor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            stream = bytearray()
            self.streams.append(stream)
            self._start(self._serve, conn, stream)

    def _serve(self, conn: socket.socket, stream: bytearray) -> None:
        conn.settimeout(0.1)
        answered = 0
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                stream += data
                frames = split_frames(bytes(stream))
                for request in frames[answered:]:
                    reply = self._reply(request)
                    if reply is not None:
                        try:
                            conn.sendall(frame(reply))
                        except OSError:
                            return
                answered = len(frames)

    def _reply(self, request: dict[str, Any]) -> dict[str, Any] | None:
        op, req_id = request.get("op"), request.get("id")
        if op == "hello":
            return self.answer
        if op == "exec":
            return {"type": "result", "id": req_id, "status": "ok", "value": "'forged'",
                    "error": None, "duration_ms": 0.1}  # fmt: skip
        if op == "put_file":
            return {"type": "ack", "op": "put_file", "id": req_id, "size": 1}
        if op == "ping":
            return {"type": "pong", "busy": False, "idle_seconds": 0.0}
        return None

"""`python -m codeexec_executor relay`: pipe stdin/stdout to the executor's TCP
port inside the container (127.0.0.1:$CODEEXEC_PORT). Frames pass through
unchanged; used for --network none containers and unreachable engines."""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time

from .constants import EXECUTOR_PORT

CHUNK = 256 * 1024
CONNECT_TIMEOUT = 10.0  # the supervisor may still be starting


def _connect(port: int) -> socket.socket:
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main(argv: list) -> int:
    port = int(argv[0]) if argv else int(os.environ.get("CODEEXEC_PORT", EXECUTOR_PORT))
    try:
        sock = _connect(port)
    except OSError as exc:
        sys.stderr.write(f"codeexec relay: cannot connect to 127.0.0.1:{port}: {exc}\n")
        return 1
    sock.settimeout(None)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    sel = selectors.DefaultSelector()
    sel.register(stdin, selectors.EVENT_READ, "in")
    sel.register(sock, selectors.EVENT_READ, "sock")
    try:
        while True:
            for key, _ in sel.select():
                if key.data == "in":
                    data = os.read(stdin, CHUNK)
                    if not data:
                        # The host is done: let the server see EOF and close.
                        sock.shutdown(socket.SHUT_WR)
                        sel.unregister(stdin)
                        continue
                    sock.sendall(data)
                else:
                    data = sock.recv(CHUNK)
                    if not data:
                        return 0
                    _write_all(stdout, data)
    except (BrokenPipeError, ConnectionError):
        return 0
    finally:
        sock.close()

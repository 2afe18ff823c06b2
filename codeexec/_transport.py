"""Byte transports for ``client.py``: a TCP socket, or a relay process's pipes.

Both are driven as non-blocking descriptors with ``selectors``, so every wait has a
deadline and no thread is needed. Errors are raw ``OSError``/``TimeoutError`` here;
``client.py`` translates them.
"""

from __future__ import annotations

import os
import select
import selectors
import socket
import time
from collections.abc import Callable
from typing import IO

_READ_SIZE = 256 * 1024
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)


def wait(fd: int, events: int, deadline: float | None) -> None:
    """Block until ``fd`` is ready, or raise ``TimeoutError`` at ``deadline``."""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, events)
        while True:
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                raise TimeoutError
            if selector.select(timeout):
                return


class _Poller:
    """Waits on one descriptor with a ``poll`` object made once, not a selector per
    wait (an epoll descriptor created and closed on every read is measurable)."""

    def __init__(self, fd: int, events: int) -> None:
        self._poll = select.poll()
        self._poll.register(fd, events)

    def wait(self, deadline: float | None) -> None:
        while True:
            if deadline is None:
                timeout = None
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                timeout = max(1, int(left * 1000 + 0.999))  # ms, rounded up
            if self._poll.poll(timeout):
                return


class Transport:
    """Non-blocking descriptors; ``read`` makes it a ``protocol.Readable``."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd
        self.deadline: float | None = None  # for read(): set before each frame
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        # Received bytes not yet returned by read(): one recv per frame, not one for
        # its header and one for its body, into a buffer made once (a fresh large
        # bytes object per recv costs an mmap/munmap pair).
        self._buf = bytearray(_READ_SIZE)
        self._view = memoryview(self._buf)
        self._start = self._end = 0
        # One reader and one writer at a time (client.py's locks), so one poller each.
        self._read_poller: _Poller | None = None
        self._write_poller: _Poller | None = None
        if hasattr(select, "poll"):
            self._read_poller = _Poller(read_fd, select.POLLIN)
            self._write_poller = _Poller(write_fd, select.POLLOUT)

    def read(self, n: int, /) -> bytes:
        """At most ``n`` bytes, ``b""`` at EOF; ``TimeoutError`` at ``self.deadline``."""
        if self._start < self._end:
            end = min(self._end, self._start + n)
            data = bytes(self._view[self._start : end])
            self._start = end
            return data
        while True:
            try:
                got = self._recv_into(self._view)
            except (BlockingIOError, InterruptedError):
                if self._read_poller is not None:
                    self._read_poller.wait(self.deadline)
                else:
                    wait(self.read_fd, selectors.EVENT_READ, self.deadline)
                continue
            if got > n:
                self._start, self._end = n, got
                got = n
            return bytes(self._view[:got])

    def send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self._send(view) :]
            except (BlockingIOError, InterruptedError):
                if self._write_poller is not None:
                    self._write_poller.wait(deadline)
                else:
                    wait(self.write_fd, selectors.EVENT_WRITE, deadline)

    def _recv_into(self, view: memoryview) -> int:
        raise NotImplementedError

    def _send(self, view: memoryview) -> int:
        raise NotImplementedError

    def shutdown(self) -> None:
        """Wake a reader blocked in another thread (it sees EOF); keep the descriptors."""

    def close(self) -> None:
        raise NotImplementedError


class SocketTransport(Transport):
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        sock.setblocking(False)
        super().__init__(sock.fileno(), sock.fileno())

    def _recv_into(self, view: memoryview) -> int:
        return self._sock.recv_into(view)

    def _send(self, view: memoryview) -> int:
        return self._sock.send(view, _NOSIGNAL)

    def shutdown(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()


class PipeTransport(Transport):
    """A relay's stdout (``reader``) and stdin (``writer``), read and written raw."""

    def __init__(
        self, reader: IO[bytes], writer: IO[bytes], on_close: Callable[[], object] | None
    ) -> None:
        self._reader, self._writer, self._on_close = reader, writer, on_close
        super().__init__(reader.fileno(), writer.fileno())

    def _recv_into(self, view: memoryview) -> int:
        return os.readv(self.read_fd, [view])

    def _send(self, view: memoryview) -> int:
        return os.write(self.write_fd, view)

    def shutdown(self) -> None:
        # EOF on its stdin ends the relay, whose stdout then ends: the reader wakes.
        try:
            self._writer.close()
        except OSError:
            pass
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    def close(self) -> None:
        try:
            self.shutdown()
        finally:
            try:
                self._reader.close()
            except OSError:
                pass

"""The file verbs of ``ExecutorClient``: transfers in chunks, listing, removal.

A file of any size travels as a series of ``put_file`` / ``get_file`` requests of
``CHUNK`` bytes each (docs/protocol.md, "Files"), under one hold of the call lock,
so memory stays bounded on both ends whatever the file's size.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import protocol
from ._connection import Connection, matcher
from .errors import FileTransferError, ProtocolError

CHUNK = 2**20  # bytes per request: a frame of ~1.4 MiB, far under the 64 MiB limit
LIST_LIMIT = 100_000  # entries one listing returns at most (the executor's maximum)


def chunks_of(data: bytes) -> Iterator[bytes]:
    """``data`` in ``CHUNK``-sized pieces; one empty piece for empty data."""
    view = memoryview(data)
    yield bytes(view[:CHUNK])
    for start in range(CHUNK, len(view), CHUNK):
        yield bytes(view[start : start + CHUNK])


class FileVerbs(Connection):
    """``put_file``, ``put_stream``, ``get_file``, ``get_stream``, ``list_files``,
    ``remove_file``, ``make_dir``."""

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> int:
        """Write ``data`` to ``path`` in the container; return the size written.

        Raises:
            FileTransferError: the executor refused or failed (``.code`` says why).
        """
        return self.put_stream(path, chunks_of(data), mode)

    def put_stream(self, path: str, chunks: Iterable[bytes], mode: int = 0o644) -> int:
        """Write the ``chunks`` (each at most ``CHUNK`` bytes; at least one, maybe
        empty) to ``path`` one request each; return the size written."""
        written = 0
        legacy = False
        self._acquire()
        try:
            for chunk in chunks:
                if legacy:
                    raise FileTransferError(
                        f"the session's executor writes {path!r} in one piece only (it is "
                        "older than this codeexec): stop the session and start it again to "
                        "move files over 32 MiB", code="too_large")  # fmt: skip
                fid = f"f{next(self._ids)}"
                message = protocol.put_file(fid, path, chunk, mode, offset=written)
                if len(message["data"]) + len(path) + 256 > self.frame_limit:
                    raise FileTransferError(
                        f"a chunk of {len(chunk)} bytes does not fit in one frame",
                        code="too_large")  # fmt: skip
                ack = self._exchange(
                    message, f"upload of {path!r}", matcher("ack", "put_file", fid)
                )
                legacy = "offset" not in ack
                written += int(ack.get("size", len(chunk)))
        finally:
            self._call_lock.release()
        return written

    def get_file(self, path: str, max_bytes: int) -> bytes:
        """Read ``path`` from the container, refused when larger than ``max_bytes``.

        Raises:
            FileTransferError: missing, too large, or unreadable (``.code`` says why).
        """
        parts: list[bytes] = []
        self.get_stream(path, max_bytes, parts.append)
        return b"".join(parts)

    def get_stream(self, path: str, max_bytes: int, write: Callable[[bytes], Any]) -> int:
        """Read ``path`` in chunks, giving each to ``write``; return the size read."""
        offset = 0
        self._acquire()
        try:
            while True:
                fid = f"f{next(self._ids)}"
                message = protocol.get_file(fid, path, max_bytes, offset=offset, length=CHUNK)
                frame = self._exchange(message, f"download of {path!r}", matcher("file", None, fid))
                data = _decoded(frame, path)
                if offset + len(data) > max_bytes:
                    raise FileTransferError(
                        f"{path!r} grew past the limit of {max_bytes} bytes while it was read",
                        code="too_large")  # fmt: skip
                write(data)
                offset += len(data)
                total = frame.get("total")
                if not isinstance(total, int) or not data or offset >= total:
                    return offset  # no total: an older executor sent the whole file
        finally:
            self._call_lock.release()

    def list_files(
        self, path: str, *, recursive: bool = False, limit: int = LIST_LIMIT
    ) -> dict[str, Any]:
        """The executor's ``files`` answer for ``path``: ``entries`` and ``truncated``."""
        fid = f"f{next(self._ids)}"
        message = protocol.list_files(fid, path, recursive=recursive, limit=limit)
        frame = self._call(message, f"listing of {path!r}", matcher("files", None, fid))
        if not isinstance(frame.get("entries"), list):
            raise ProtocolError(f"the executor sent a malformed listing of {path!r}")
        return frame

    def remove_file(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file, symlink or empty directory (a tree with ``recursive``)."""
        fid = f"f{next(self._ids)}"
        message = protocol.remove_file(fid, path, recursive=recursive)
        self._call(message, f"removal of {path!r}", matcher("ack", "remove_file", fid))

    def make_dir(self, path: str) -> None:
        """Create a directory and its parents in the container."""
        fid = f"f{next(self._ids)}"
        message = protocol.make_dir(fid, path)
        self._call(message, f"creation of {path!r}", matcher("ack", "make_dir", fid))


def _decoded(frame: protocol.Frame, path: str) -> bytes:
    try:
        return base64.b64decode(frame["data"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"the executor sent {path!r} in a bad encoding") from exc
